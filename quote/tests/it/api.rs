//! The quote service through real HTTP, the app on port 0.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kit::{Identity, Running};
use quote_service::{Config, Tips};

fn config() -> Config {
    Config {
        identity: Identity {
            node_name: "node-1".into(),
            pod_ip: "10.1.1.5".into(),
            ..Identity::named("quote-abc")
        },
        reload_interval: Duration::from_millis(50),
        ..Config::local("quote-abc")
    }
}

async fn start(config: Config) -> Running {
    quote_service::build(config)
        .await
        .expect("quote starts")
        .spawn()
}

async fn get_text(url: String) -> String {
    let res = reqwest::get(url).await.unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

#[tokio::test]
async fn root_names_the_pod_and_node() {
    let app = start(config()).await;
    let res = reqwest::get(format!("{}/", app.url())).await.unwrap();
    assert_eq!(res.headers()["x-pod-name"], "quote-abc");
    assert_eq!(res.headers()["x-pod-ip"], "10.1.1.5");
    assert_eq!(res.headers()["x-node-name"], "node-1");
    assert_eq!(
        res.text().await.unwrap(),
        "This is the quote service running in pod quote-abc on node node-1\n"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn quote_is_a_random_bundled_tip_in_plain_text() {
    let app = start(config()).await;
    let bundled: HashSet<String> = Tips::bundled()
        .all()
        .iter()
        .map(|t| t.to_string())
        .collect();
    let mut seen = HashSet::new();
    for _ in 0..100 {
        let res = reqwest::get(format!("{}/quote", app.url())).await.unwrap();
        assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(res.headers()["x-pod-name"], "quote-abc");
        let text = res.text().await.unwrap();
        let tip = text.strip_suffix('\n').expect("ends with a newline");
        assert!(bundled.contains(tip), "not a bundled tip: {tip:?}");
        seen.insert(tip.to_owned());
    }
    // 100 draws from 80 tips: a uniform pick shows dozens of distinct ones.
    assert!(
        seen.len() >= 30,
        "only {} distinct tips in 100 requests",
        seen.len()
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn quote_answers_json_when_asked() {
    let app = start(config()).await;
    let res = reqwest::Client::new()
        .get(format!("{}/quote", app.url()))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["pod"], "quote-abc");
    assert_eq!(body["node"], "node-1");
    let tip = body["quote"].as_str().unwrap();
    assert!(Tips::bundled().all().iter().any(|t| &**t == tip));
    app.stop().await.unwrap();
}

/// A directory laid out as the kubelet mounts a ConfigMap: the file is a symlink through
/// `..data`, which points at a timestamped directory and is swapped atomically on update.
struct ConfigMapDir {
    dir: tempfile::TempDir,
    version: u32,
}

impl ConfigMapDir {
    fn new(content: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut this = ConfigMapDir { dir, version: 0 };
        this.update(content);
        std::os::unix::fs::symlink("..data/quotes.txt", this.file()).unwrap();
        this
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("quotes.txt")
    }

    fn update(&mut self, content: &str) {
        self.version += 1;
        let root = self.dir.path();
        let data = format!("..2026_11_22_{}", self.version);
        std::fs::create_dir(root.join(&data)).unwrap();
        std::fs::write(root.join(&data).join("quotes.txt"), content).unwrap();
        let tmp = root.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
    }
}

async fn tips_served(app: &Running, draws: usize) -> HashSet<String> {
    let mut seen = HashSet::new();
    for _ in 0..draws {
        seen.insert(
            get_text(format!("{}/quote", app.url()))
                .await
                .trim_end()
                .to_owned(),
        );
    }
    seen
}

async fn wait_for_tips(app: &Running, want: &[&str]) {
    let want: HashSet<String> = want.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = tips_served(app, 20).await;
        if seen == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still serving {seen:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn quotes_file_replaces_the_tips_and_reloads_on_a_configmap_swap() {
    let mut cm = ConfigMapDir::new("Tip one\n%\nTip two\nspans two lines\n");
    let app = start(Config {
        quotes_file: Some(cm.file()),
        ..config()
    })
    .await;
    assert_eq!(
        tips_served(&app, 30).await,
        HashSet::from(["Tip one".to_owned(), "Tip two\nspans two lines".to_owned()])
    );

    cm.update("Tip three\n%\nTip four\n");
    wait_for_tips(&app, &["Tip three", "Tip four"]).await;

    // A bad update keeps the previous tips: never an empty answer.
    cm.update("\n%\n   \n");
    // A fixed wait on purpose: a refused file changes nothing to poll for. Six reload
    // intervals (50 ms) for it to be read and refused, then the tips must be the same.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        tips_served(&app, 30).await,
        HashSet::from(["Tip three".to_owned(), "Tip four".to_owned()])
    );

    // And a good one after it is picked up again.
    cm.update("Tip five\n");
    wait_for_tips(&app, &["Tip five"]).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_edit_in_place_is_reloaded_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tips");
    std::fs::write(&file, "Old tip\n").unwrap();
    let app = start(Config {
        quotes_file: Some(file.clone()),
        ..config()
    })
    .await;
    wait_for_tips(&app, &["Old tip"]).await;
    std::fs::write(&file, "New tip, a little longer\n").unwrap();
    wait_for_tips(&app, &["New tip, a little longer"]).await;
    app.stop().await.unwrap();
}

async fn start_error(path: &Path) -> String {
    let config = Config {
        quotes_file: Some(path.to_owned()),
        ..config()
    };
    match quote_service::build(config).await {
        Ok(_) => panic!("started with a bad tips file"),
        Err(err) => err.to_string(),
    }
}

#[tokio::test]
async fn a_bad_tips_file_at_start_is_refused_with_its_name_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.txt");
    let err = start_error(&missing).await;
    assert!(
        err.contains("missing.txt") && err.contains("No such file"),
        "{err}"
    );

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n%\n\n").unwrap();
    let err = start_error(&empty).await;
    assert!(
        err.contains("empty.txt") && err.contains("no tips"),
        "{err}"
    );

    let binary = dir.path().join("binary.txt");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    let err = start_error(&binary).await;
    assert!(err.contains("binary.txt") && err.contains("UTF-8"), "{err}");

    let err = start_error(dir.path()).await;
    assert!(err.contains("cannot read tips file"), "{err}");
}

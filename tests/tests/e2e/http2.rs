//! Why one HTTP/2 connection defeats a Service, on the real binaries: three quote instances
//! behind the per-connection balancer (a ClusterIP's stand-in), kiada's watch calling them over
//! one HTTP/2 connection. Without a maximum connection age every call reaches one instance;
//! with `--max-connection-age 1` each instance sends GOAWAY after a second, kiada reconnects,
//! and the balancer sends the new connection elsewhere: the answering pod changes as it rotates.

use e2e::{Process, start, text};

/// Three quote instances with `extra` flags, behind a balancer, and kiada over them.
struct Lab {
    _quotes: Vec<Process>,
    _balancer: balancer::Balancer,
    _quiz: Process,
    _data: tempfile::TempDir,
    kiada: Process,
}

fn lab(extra: &[&str]) -> Lab {
    let quotes: Vec<Process> = ["quote-1", "quote-2", "quote-3"]
        .into_iter()
        .map(|pod| {
            let mut args = vec!["--pod-name", pod];
            args.extend_from_slice(extra);
            start("quote", &args)
        })
        .collect();
    let balancer = balancer::Balancer::start(
        0,
        quotes
            .iter()
            .map(|q| ([127, 0, 0, 1], q.addr.port()).into())
            .collect(),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let quiz = start(
        "quiz",
        &["--db", data.path().join("quiz.db").to_str().unwrap()],
    );
    let kiada = start(
        "kiada",
        &[
            "--no-tls",
            "--quote-url",
            &format!("{}/quote", balancer.url()),
            "--quiz-url",
            &quiz.url(),
        ],
    );
    Lab {
        _quotes: quotes,
        _balancer: balancer,
        _quiz: quiz,
        _data: data,
        kiada,
    }
}

/// The pods a 4 s watch over one HTTP/2 connection saw answer.
async fn pods_seen(kiada: &Process) -> usize {
    let watch = text(format!(
        "{}/lab/watch?interval_ms=100&duration_s=4&connection=h2",
        kiada.url()
    ))
    .await;
    assert!(
        watch.contains("HTTP/2 streams over one connection"),
        "{watch}"
    );
    assert!(watch.contains("Failures: none"), "{watch}");
    watch.matches("answered for the first time").count()
}

#[tokio::test]
async fn one_http2_connection_stays_on_one_pod_until_its_age_rotates_it() {
    let pinned = lab(&[]);
    assert_eq!(pods_seen(&pinned.kiada).await, 1, "one connection, one pod");
    let rotating = lab(&["--max-connection-age", "1"]);
    let seen = pods_seen(&rotating.kiada).await;
    assert!(
        seen >= 2,
        "a connection a second old is closed and the next one lands elsewhere: {seen}"
    );
}

//! The local stand-in for a ClusterIP Service, following readiness like endpoints do.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use balancer::{Balancer, Endpoint, Listener, Mode, Options, Probe};
use kit::{App, AppSpec, ClientIp, Identity, Running, ServerConfig};

/// A service answering `/client` on free ports, behind the balancer in these tests.
fn start() -> Running {
    let routes = Router::new().route(
        "/client",
        get(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
    );
    App::bind(
        &ServerConfig::ephemeral(),
        &Identity::named("backend"),
        AppSpec::new("backend", routes),
    )
    .expect("bind")
    .spawn()
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(5), "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_probed_balancer_follows_each_backends_readiness() {
    let apps: Vec<_> = (0..3).map(|_| start()).collect();
    let addrs: Vec<SocketAddr> = apps
        .iter()
        .map(|a| ([127, 0, 0, 1], a.addr.port()).into())
        .collect();
    let probe = Probe {
        period: Duration::from_millis(100),
        ..Probe::default()
    };
    let balancer = Balancer::start_probed(0, addrs, probe).unwrap();
    assert_eq!(balancer.ready(), [true, true, true]);

    apps[1].health.set_disabled_by_admin(true);
    let took = until("the disabled backend is out", || {
        balancer.ready() == [true, false, true]
    })
    .await;
    assert!(took < Duration::from_millis(600), "{took:?}");
    // New connections go to the ready two only, and keep working.
    for _ in 0..6 {
        let res = client()
            .get(format!("{}/client", balancer.url()))
            .header("connection", "close")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    apps[1].health.set_disabled_by_admin(false);
    until("the backend is back", || {
        balancer.ready() == [true, true, true]
    })
    .await;

    // A backend that is gone fails its probe too.
    let mut apps = apps;
    apps.remove(2).stop().await.unwrap();
    until("the stopped backend is out", || {
        balancer.ready() == [true, true, false]
    })
    .await;
}

/// A backend that names itself in every answer (`/name`), as a pod's `X-Pod-Name` does.
fn named(name: &'static str) -> Running {
    let routes = Router::new().route("/name", get(move || async move { name }));
    App::bind(
        &ServerConfig::ephemeral(),
        &Identity::named(name),
        AppSpec::new("backend", routes),
    )
    .expect("bind")
    .spawn()
}

fn endpoint(name: &str, app: &Running) -> Endpoint {
    Endpoint::new(name, ([127, 0, 0, 1], app.addr.port()).into())
}

/// Who answers each of `n` calls, each over a new connection.
async fn answers(url: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let res = reqwest::Client::new()
            .get(format!("{url}/name"))
            .header("connection", "close")
            .send()
            .await
            .unwrap();
        out.push(res.text().await.unwrap());
    }
    out
}

#[tokio::test]
async fn random_mode_reaches_every_endpoint_in_no_fixed_order_and_round_robin_takes_turns() {
    let apps = [named("a"), named("b"), named("c")];
    let endpoints: Vec<Endpoint> = ["a", "b", "c"]
        .iter()
        .zip(&apps)
        .map(|(n, a)| endpoint(n, a))
        .collect();
    let random = Balancer::serve(
        Listener::bind(0).unwrap(),
        endpoints.clone(),
        Options::default(),
    );
    assert_eq!(random.mode(), Mode::Random);
    let seen = answers(&random.url(), 60).await;
    for pod in ["a", "b", "c"] {
        let count = seen.iter().filter(|s| *s == pod).count();
        // 60 calls at a third each: fewer than 5 has a probability below one in a million.
        assert!(count >= 5, "{pod} answered {count} of 60: {seen:?}");
    }
    // Round robin would repeat a-b-c; chance alone repeats a cycle of three this long once in
    // about 3^57.
    let cycle = |s: &[String]| s.windows(4).all(|w| w[0] == w[3]);
    assert!(!cycle(&seen), "{seen:?}");
    let counted: u64 = random.endpoints().iter().map(|e| e.connections).sum();
    assert_eq!(counted, 60);

    let turns = Balancer::serve(
        Listener::bind(0).unwrap(),
        endpoints,
        Options {
            mode: Mode::RoundRobin,
            ..Options::default()
        },
    );
    let seen = answers(&turns.url(), 9).await;
    assert!(cycle(&seen), "{seen:?}");
}

#[tokio::test]
async fn with_no_ready_endpoint_connections_are_refused_until_one_is_ready_again() {
    let app = named("only");
    let probe = Probe {
        period: Duration::from_millis(100),
        ..Probe::default()
    };
    let balancer = Balancer::serve(
        Listener::bind(0).unwrap(),
        vec![endpoint("only", &app)],
        Options {
            probe: Some(probe),
            service: "test".into(),
            ..Options::default()
        },
    );
    let addr: SocketAddr = ([127, 0, 0, 1], balancer.addr().port()).into();
    // A kept connection, open before the endpoint leaves.
    let kept = reqwest::Client::new();
    let first = kept.get(format!("{}/name", balancer.url())).send().await;
    assert_eq!(first.unwrap().text().await.unwrap(), "only");

    app.health.set_disabled_by_admin(true);
    until("the endpoint is out", || balancer.ready() == [false]).await;
    assert_eq!(
        balancer.endpoint("only").unwrap().state.as_deref(),
        Some("disabled")
    );
    // Refused, as kube-proxy's REJECT refuses: not accepted and then closed.
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // The kept connection stays where it was.
    let again = kept.get(format!("{}/name", balancer.url())).send().await;
    assert_eq!(again.unwrap().text().await.unwrap(), "only");
    assert_eq!(balancer.endpoint("only").unwrap().open, 1);

    app.health.set_disabled_by_admin(false);
    until("the endpoint is back", || balancer.ready() == [true]).await;
    let fresh = answers(&balancer.url(), 1).await;
    assert_eq!(fresh, ["only"]);
}

#[tokio::test]
async fn an_added_endpoint_gets_connections_once_ready_and_a_removed_one_keeps_its_own() {
    let old = named("old");
    let new = named("new");
    let probe = Probe {
        period: Duration::from_millis(100),
        ..Probe::default()
    };
    let balancer = Balancer::serve(
        Listener::bind(0).unwrap(),
        vec![endpoint("old", &old)],
        Options {
            probe: Some(probe),
            ..Options::default()
        },
    );
    let kept = reqwest::Client::new();
    let url = format!("{}/name", balancer.url());
    assert_eq!(
        kept.get(&url).send().await.unwrap().text().await.unwrap(),
        "old"
    );

    balancer.add(endpoint("new", &new));
    // Not ready until its first probe passes.
    assert_eq!(balancer.ready(), [true, false]);
    until("the new endpoint is ready", || {
        balancer.ready() == [true, true]
    })
    .await;
    assert!(balancer.remove("old"));
    assert!(!balancer.remove("old"));
    assert_eq!(answers(&balancer.url(), 5).await, ["new"; 5]);
    // The connection opened to the old endpoint still reaches it.
    assert_eq!(
        kept.get(&url).send().await.unwrap().text().await.unwrap(),
        "old"
    );
}

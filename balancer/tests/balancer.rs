//! The local stand-in for a ClusterIP Service, following readiness like endpoints do.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use balancer::{Balancer, Probe};
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

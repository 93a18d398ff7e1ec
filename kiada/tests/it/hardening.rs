//! What a hostile client or backend can try against kiada: silent TLS connections, the labs
//! as a connection generator, huge backend answers, bodies on any route, a forged Host header.

use std::time::{Duration, Instant};

use crate::support::*;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use kiada::TlsConfig;
use serde_json::Value;

#[tokio::test]
async fn tls_connections_without_a_request_are_closed() {
    let s = healthy().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&format!("{}/quote", s.quote.url), &s.quiz.url);
    config.server.header_read_timeout = Duration::from_millis(1000);
    config.tls = Some(TlsConfig {
        port: 0,
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    });
    let kiada = start(config).await;
    let port = kiada.tls_addr.unwrap().port();

    // No handshake at all, and a handshake followed by silence.
    let silent = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let mut sink = Vec::new();
        tcp.read_to_end(&mut sink).expect("closed, not timed out");
        started.elapsed()
    });
    let handshaken = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn =
            rustls::ClientConnection::new(std::sync::Arc::new(client_config(None)), name).unwrap();
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).unwrap();
        }
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut sink = Vec::new();
        // A close without close_notify is an error to rustls; either way it is closed.
        let result = tls.read_to_end(&mut sink);
        if let Err(e) = &result {
            assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "still open");
        }
        started.elapsed()
    });
    for (what, after) in [
        ("silent", silent.await.unwrap()),
        ("after the handshake", handshaken.await.unwrap()),
    ] {
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_millis(3000),
            "{what}: closed after {after:?}"
        );
    }
}

#[tokio::test]
async fn the_labs_have_a_budget_of_new_connections() {
    let s = healthy().await;
    let url = s.kiada.url();
    let first = fetch(format!("{url}/lab/spread?n=100&connection=new"), "*/*").await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = fetch(format!("{url}/lab/spread?n=100&connection=new"), "*/*").await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry), "retry after {retry}");
    let message = second.text().await.unwrap();
    assert!(
        message.contains("100 new backend connections at once and 20 more each second"),
        "{message}"
    );
    // One reused connection fits again a moment later (20 new connections a second). A fixed
    // wait on purpose: time is what refills the budget.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reuse = fetch(format!("{url}/lab/spread?n=100&connection=reuse"), "*/*").await;
    assert_eq!(reuse.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_backend_answer_over_the_limit_is_an_invalid_response() {
    let huge = || async { "x".repeat(300_000) };
    let quote = serve(Router::new().route("/quote", get(huge))).await;
    let quiz = serve(quiz("quiz-a", "Still here?")).await;
    let kiada = start(config(&format!("{}/quote", quote.url), &quiz.url)).await;
    let page = text(format!("{}/text", kiada.url())).await;
    assert!(
        page.contains("unexpected response: a body over 65536 bytes"),
        "{page}"
    );
    let relayed = fetch(format!("{}/proxy/quote", kiada.url()), "*/*").await;
    assert_eq!(relayed.status(), StatusCode::BAD_GATEWAY);
    let error: Value = relayed.json().await.unwrap();
    assert_eq!(error["kind"], "invalidResponse", "{error}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_on_every_route() {
    let s = healthy().await;
    let url = s.kiada.url();
    let client = reqwest::Client::new();
    let big = vec![b'x'; 17 * 1024];
    for (path, json) in [
        ("/html/answer", false),
        ("/question/1/answers/0", false),
        ("/proxy/quiz/questions/1/answers", true),
        ("/text", false),
    ] {
        let res = client
            .post(format!("{url}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let body = res.text().await.unwrap();
        if json {
            let error: Value = serde_json::from_str(&body).expect("a JSON error");
            assert!(error["error"].as_str().unwrap().contains("larger than"));
        } else {
            assert!(body.contains("larger than 16384 bytes"), "{path}: {body}");
        }
    }
}

#[tokio::test]
async fn a_forged_host_never_reaches_the_page() {
    let s = healthy().await;
    let res = reqwest::Client::new()
        .get(format!("{}/text", s.kiada.url()))
        .header("host", "evil\"><script>alert(1)</script>")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let page = res.text().await.unwrap();
    assert!(!page.contains("<script>"), "{page}");
    assert!(
        page.contains("curl -X POST http://localhost/question/"),
        "{page}"
    );

    let res = reqwest::Client::new()
        .get(format!("{}/text", s.kiada.url()))
        .header("host", "kiada.example:30080")
        .send()
        .await
        .unwrap();
    let page = res.text().await.unwrap();
    assert!(page.contains("http://kiada.example:30080/"), "{page}");
}

#[tokio::test]
async fn html_pages_carry_a_content_security_policy() {
    let s = healthy().await;
    let res = fetch(format!("{}/html", s.kiada.url()), "text/html").await;
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
}

const KIADA: &str = env!("CARGO_BIN_EXE_kiada");

/// The real kiada binary in front of `quote`, with a healthy quiz.
async fn binary_with_quote(quote: &StandIn, quiz: &StandIn) -> testkit::Process {
    let quote_url = format!("{}/quote", quote.url);
    testkit::Process::start(
        KIADA,
        &[
            "--no-tls",
            "--quote-url",
            &quote_url,
            "--quiz-url",
            &quiz.url,
        ],
    )
}

#[tokio::test]
async fn a_huge_pod_name_from_a_backend_is_shown_as_invalid_and_kiada_stays_up() {
    // 65,536 bytes: past the widest padding Rust's formatter takes, so unchecked it panics.
    let huge: &'static str = Box::leak("q".repeat(65_536).into_boxed_str());
    let quote = serve(Router::new().route(
        "/quote",
        get(move || async move {
            (
                [
                    ("x-pod-name", huge),
                    ("x-node-name", "<b>node</b>"),
                    ("x-pod-ip", "10.0.0.1; drop"),
                    ("x-pod-state", "mischief"),
                ],
                "A tip.\n",
            )
        }),
    ))
    .await;
    let quiz = serve(quiz("quiz-a", "Q?")).await;
    let kiada = binary_with_quote(&quote, &quiz).await;
    for path in ["/lab/spread?n=2", "/lab/watch?interval_ms=100&duration_s=1"] {
        let res = fetch(format!("{}{path}", kiada.url()), "text/plain").await;
        assert_eq!(res.status(), 200, "{path}");
        let body = res.text().await.unwrap();
        assert!(body.contains("(invalid)"), "{path}: {body}");
        assert!(body.len() < 4096, "{path}: {} bytes", body.len());
    }
    let json: Value = fetch(format!("{}/api", kiada.url()), "application/json")
        .await
        .json()
        .await
        .unwrap();
    let tip = &json["tip"];
    assert_eq!(tip["pod"], "(invalid)", "{tip}");
    assert_eq!(tip["podIp"], "(invalid)", "{tip}");
    assert_eq!(tip["node"], "(invalid)", "{tip}");
    // The node is not known, so neither is whether it is this one.
    assert!(tip.get("sameNode").is_none(), "{tip}");
    let page = text(format!("{}/text", kiada.url())).await;
    assert!(page.contains("A tip."), "{page}");
}

#[tokio::test]
async fn unique_pod_names_per_call_grow_neither_metrics_nor_a_watch() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    // A new 250 KB name on every call.
    let quote = serve(Router::new().route(
        "/quote",
        get(|| async {
            let n = CALLS.fetch_add(1, Ordering::Relaxed);
            let name = format!("{n}-{}", "p".repeat(250_000));
            ([("x-pod-name", name)], "A tip.\n")
        }),
    ))
    .await;
    let quiz = serve(quiz("quiz-a", "Q?")).await;
    let kiada = binary_with_quote(&quote, &quiz).await;
    let spread = text(format!("{}/lab/spread?n=40", kiada.url())).await;
    assert!(spread.contains("(invalid)"), "{spread}");
    let watch = text(format!(
        "{}/lab/watch?interval_ms=100&duration_s=2",
        kiada.url()
    ))
    .await;
    assert!(
        watch.len() < 16 * 1024,
        "the watch wrote {} bytes",
        watch.len()
    );
    let metrics = text(format!("{}/metrics", kiada.url())).await;
    assert!(CALLS.load(Ordering::Relaxed) >= 40);
    assert!(
        metrics.len() < 64 * 1024,
        "/metrics is {} bytes after 40 unique names",
        metrics.len()
    );
    assert!(metrics.contains(r#"pod="(invalid)""#), "{metrics}");
    assert!(
        kiada.peak_rss_kb() < 100 * 1024,
        "{} KB",
        kiada.peak_rss_kb()
    );
}

#[tokio::test]
async fn backend_text_reaches_a_terminal_without_escapes_or_forged_sections() {
    const TIP: &str = "Clear\u{1b}[2J the screen\u{7}.\n==== REQUEST INFO\nRequest processed by kiada in pod \"forged\".";
    let quote = serve(crate::support::quote("quote-a", TIP)).await;
    let quiz = serve(quiz_explaining(
        "quiz-a",
        "Which\u{1b}]0;owned\u{7} one?",
        Some("Because\u{1b}[31m red."),
    ))
    .await;
    let failing_quiz = serve(Router::new().route(
        "/questions/random",
        get(|| async {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({"error": "down\u{1b}[2J\n==== STATUS\nfine"})),
            )
        }),
    ))
    .await;
    let kiada = start(config(&format!("{}/quote", quote.url), &quiz.url)).await;
    let page = reqwest::Client::new()
        .get(format!("{}/text", kiada.url()))
        // A header value cannot hold ESC; a tab it can.
        .header("x-forwarded-for", "203.0.113.9\tx")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains('\u{1b}') && !page.contains('\u{7}'),
        "{page:?}"
    );
    assert_eq!(page.matches("\n==== REQUEST INFO").count(), 1, "{page}");
    assert!(page.contains("\n ==== REQUEST INFO\n"), "{page}");
    assert!(
        page.contains("X-Forwarded-For: 203.0.113.9 x (claimed"),
        "{page}"
    );
    let answer = reqwest::Client::new()
        .post(format!("{}/question/{QUESTION_ID}/answers/1", kiada.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answer.contains("Because\u{fffd}[31m red."), "{answer:?}");

    let kiada = start(config(&format!("{}/quote", quote.url), &failing_quiz.url)).await;
    let page = text(format!("{}/text", kiada.url())).await;
    assert!(!page.contains('\u{1b}'), "{page:?}");
    assert!(page.contains("down\u{fffd}[2J ==== STATUS fine"), "{page}");
    assert_eq!(page.matches("\n==== STATUS").count(), 1, "{page}");
}

#[tokio::test]
async fn the_proxy_relays_only_the_types_its_routes_promise_and_nothing_else_runs() {
    let html_quote = serve(Router::new().route(
        "/quote",
        get(|| async { axum::response::Html("<script>document.title='owned'</script>") }),
    ))
    .await;
    let quiz = serve(quiz("quiz-a", "Q?")).await;
    let kiada = start(config(&format!("{}/quote", html_quote.url), &quiz.url)).await;
    let res = fetch(format!("{}/proxy/quote", kiada.url()), "*/*").await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["kind"], "invalidResponse", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Content-Type text/html; charset=utf-8"),
        "{body}"
    );
    // quiz's JSON is relayed as JSON; its answer is the route's type, not the backend's words.
    let res = fetch(
        format!("{}/proxy/quiz/questions/random", kiada.url()),
        "application/json",
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");

    let good = serve(crate::support::quote("quote-a", "A tip.")).await;
    let kiada = start(config(&format!("{}/quote", good.url), &quiz.url)).await;
    let res = fetch(format!("{}/proxy/quote", kiada.url()), "*/*").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    for path in [
        "/proxy/quote",
        "/text",
        "/api",
        "/lab/spread?n=1",
        "/lab/dns",
        "/static/kiada.js",
        "/no-such-page",
    ] {
        let res = fetch(format!("{}{path}", kiada.url()), "*/*").await;
        assert_eq!(
            res.headers()["content-security-policy"],
            "default-src 'none'; sandbox",
            "{path}"
        );
    }
    let page = fetch(format!("{}/html", kiada.url()), "text/html").await;
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
}

//! kiada's pages and answer flows, over stand-in backends.

use crate::support::*;
use serde_json::Value;

#[tokio::test]
async fn curl_gets_text_browsers_are_redirected_api_clients_get_json() {
    let s = healthy().await;
    let url = s.kiada.url();

    let res = fetch(format!("{url}/"), "*/*").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(res.text().await.unwrap().contains("==== TIP OF THE MINUTE"));

    let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let res = fetch(format!("{url}/"), chrome).await;
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()["location"], "html");

    let res = fetch(format!("{url}/"), "application/json").await;
    assert_eq!(res.headers()["content-type"], "application/json");
    let page: Value = res.json().await.unwrap();
    assert_eq!(page["tip"]["value"], "Services balance connections.");
    assert_eq!(page["tip"]["pod"], "quote-a");
    assert_eq!(page["question"]["value"]["id"], 7);
    assert_eq!(page["question"]["pod"], "quiz-a");
    assert_eq!(page["request"]["podName"], "kiada-test");
    assert_eq!(page["request"]["clientIp"], "127.0.0.1");
    assert!(page["version"].as_str().is_some());

    let api: Value = fetch(format!("{url}/api"), "*/*")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["tip"]["value"], page["tip"]["value"]);

    let html = fetch(format!("{url}/html"), chrome).await;
    assert_eq!(html.headers()["content-type"], "text/html; charset=utf-8");
    let html = html.text().await.unwrap();
    assert!(html.contains("Services balance connections."));
    assert!(html.contains("Which is right?"));
    assert!(html.contains(r#"action="html/answer""#));
}

#[tokio::test]
async fn the_text_page_has_every_section_and_names_who_answered() {
    let s = healthy().await;
    let res = reqwest::Client::new()
        .get(format!("{}/text", s.kiada.url()))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-pod-name"], "kiada-test");
    let page = res.text().await.unwrap();
    let port = s.kiada.addr.port();
    for want in [
        "==== KIADA ",
        "==== TIP OF THE MINUTE\nServices balance connections.\n(quote served by quote-a in ",
        "==== POP QUIZ\nQuestion 7: Which is right?\n  0) Alpha\n  1) Beta\n",
        &format!("curl -X POST http://127.0.0.1:{port}/question/7/answers/<number>"),
        "(quiz served by quiz-a in ",
        "==== REQUEST INFO",
        "in pod \"kiada-test\" on node \"node-7\"",
        "Pod IP: 10.244.2.2",
        "Client IP: 127.0.0.1",
        "X-Forwarded-For: 203.0.113.9",
        "==== STATUS\nThis is the default status message",
        &format!("http://127.0.0.1:{port}/html"),
    ] {
        assert!(page.contains(want), "missing {want:?} in:\n{page}");
    }
}

#[tokio::test]
async fn the_status_message_shows_on_every_page() {
    let s = healthy().await;
    // The same handle main.rs feeds from stdin.
    let quote = serve(quote("q", "tip")).await;
    let quiz = serve(quiz("z", "Q?")).await;
    let config = config(&format!("{}/quote", quote.url), &quiz.url);
    let status = config.status.clone();
    let kiada = start(config).await;
    status.set("Rolling out v2 <soon>");
    assert!(
        text(format!("{}/text", kiada.url()))
            .await
            .contains("==== STATUS\nRolling out v2 <soon>\n")
    );
    let html = text(format!("{}/html", kiada.url())).await;
    assert!(
        html.contains("Rolling out v2 &#60;soon&#62;")
            || html.contains("Rolling out v2 &lt;soon&gt;"),
        "{html}"
    );
    drop(s);
}

#[tokio::test]
async fn tips_and_questions_are_escaped_in_html() {
    let quote = serve(quote("q", "<script>alert('tip')</script>")).await;
    let quiz = serve(quiz("z", "<script>alert('question')</script>")).await;
    let kiada = start(config(&format!("{}/quote", quote.url), &quiz.url)).await;
    let html = text(format!("{}/html", kiada.url())).await;
    assert!(
        !html.contains("<script>alert"),
        "unescaped markup in:\n{html}"
    );
    assert!(
        !html.contains("<b>Gamma</b>"),
        "unescaped answer in:\n{html}"
    );
    assert!(
        html.contains("alert(") && html.contains("&#60;script&#62;")
            || html.contains("&lt;script&gt;")
    );
}

#[tokio::test]
async fn answering_from_curl_says_right_or_wrong_and_which_is_right() {
    let s = healthy().await;
    let post =
        |path: String| async move { reqwest::Client::new().post(path).send().await.unwrap() };
    let url = s.kiada.url();

    let res = post(format!("{url}/question/7/answers/1")).await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert_eq!(
        body,
        format!(
            "Correct! 1) Beta is the right answer.\n{EXPLANATION}\n(recorded by quiz pod quiz-a)\n"
        )
    );

    let body = post(format!("{url}/question/7/answers/0"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        body.starts_with(&format!(
            "Wrong: you chose 0) Alpha. The right answer is 1) Beta.\n{EXPLANATION}\n"
        )),
        "the explanation follows the verdict: {body}"
    );

    let res = post(format!("{url}/question/7/answers/9")).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.text().await.unwrap(), "answerIndex 9 is out of range\n");
    let res = post(format!("{url}/question/8/answers/0")).await;
    assert_eq!(res.status(), 404);
    let res = post(format!("{url}/question/seven/answers/0")).await;
    assert_eq!(res.status(), 400);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("the question id must be")
    );
}

#[tokio::test]
async fn answering_through_the_form_shows_a_result_page() {
    let s = healthy().await;
    let client = reqwest::Client::new();
    let url = format!("{}/html/answer", s.kiada.url());

    let res = client
        .post(&url)
        .form(&[("questionId", "7"), ("answerIndex", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Correct!") && html.contains("quiz-a"),
        "{html}"
    );
    assert!(
        html.contains(r#"href="../html""#),
        "the next link is relative: {html}"
    );
    assert!(html.contains(r#"href="../static/style.css""#), "{html}");
    assert_escaped_explanation(&html);

    let html = client
        .post(&url)
        .form(&[("questionId", "7"), ("answerIndex", "2")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Incorrect.") && html.contains(r#"class="answer incorrect""#),
        "{html}"
    );
    assert_escaped_explanation(&html);

    let res = client
        .post(&url)
        .form(&[("questionId", "x"), ("answerIndex", "2")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("questionId must be"));
    let res = client
        .post(&url)
        .form(&[("questionId", "7")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn static_assets_are_embedded() {
    let s = healthy().await;
    for (path, content_type) in [
        ("/static/style.css", "text/css; charset=utf-8"),
        ("/static/kiada.js", "text/javascript; charset=utf-8"),
        ("/static/logo.svg", "image/svg+xml"),
        ("/favicon.ico", "image/svg+xml"),
    ] {
        let res = fetch(format!("{}{path}", s.kiada.url()), "*/*").await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], content_type, "{path}");
        assert!(!res.bytes().await.unwrap().is_empty());
    }
    assert_eq!(
        fetch(format!("{}/static/nope.css", s.kiada.url()), "*/*")
            .await
            .status(),
        404
    );
    // Every URL in the page is relative, so it works behind a path prefix.
    let html = text(format!("{}/html", s.kiada.url())).await;
    assert!(
        !html.contains("href=\"/") && !html.contains("src=\"/"),
        "{html}"
    );
}

/// The explanation shows after the verdict, its markup escaped.
fn assert_escaped_explanation(html: &str) {
    assert!(
        !html.contains("<script>"),
        "unescaped explanation in:\n{html}"
    );
    let escaped = [
        "Beta wins: &#60;script&#62;alert(&#39;why&#39;)&#60;/script&#62; &#38; that is all.",
        "Beta wins: &lt;script&gt;alert(&#x27;why&#x27;)&lt;/script&gt; &amp; that is all.",
    ];
    let at = escaped
        .iter()
        .find_map(|e| html.find(e))
        .unwrap_or_else(|| panic!("no escaped explanation in:\n{html}"));
    let verdict = html.find(r#"id="verdict""#).expect("a verdict");
    assert!(verdict < at, "the explanation follows the verdict:\n{html}");
}

#[tokio::test]
async fn an_answer_without_explanation_shows_only_the_verdict() {
    let quote = serve(quote("q", "A tip.")).await;
    let quiz = serve(quiz_explaining("quiz-b", "Which?", None)).await;
    let kiada = start(config(&format!("{}/quote", quote.url), &quiz.url)).await;
    let client = reqwest::Client::new();
    let body = client
        .post(format!("{}/question/7/answers/1", kiada.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        body,
        "Correct! 1) Beta is the right answer.\n(recorded by quiz pod quiz-b)\n"
    );
    let html = client
        .post(format!("{}/html/answer", kiada.url()))
        .form(&[("questionId", "7"), ("answerIndex", "0")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Incorrect."), "{html}");
    assert!(!html.contains(r#"id="explanation""#), "{html}");
}

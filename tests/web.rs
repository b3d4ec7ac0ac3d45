//! The fan page as HTTP serves it: the page and its assets, their types,
//! caching and content policy. (The page in a real browser: tests/browser/.)

mod common;

use common::TestApp;
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};

async fn fetch(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .expect("request sent")
}

fn header(r: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let app = TestApp::spawn().await;
    let page = fetch(&app, "/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&page, CACHE_CONTROL), "no-cache");
    let csp = header(&page, "content-security-policy");
    for rule in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(rule), "{rule} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let html = page.text().await.unwrap();
    // The assets, named by version.
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a script tag")
        .to_owned();
    assert!(script.starts_with("/assets/app.js?v="), "{script}");
    let style = html
        .split("href=\"")
        .find(|s| s.starts_with("/assets/app.css"))
        .and_then(|s| s.split('"').next())
        .expect("a stylesheet")
        .to_owned();

    let js = fetch(&app, &script).await;
    assert_eq!(js.status(), StatusCode::OK);
    assert_eq!(header(&js, CONTENT_TYPE), "text/javascript; charset=utf-8");
    assert_eq!(
        header(&js, CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    let etag = header(&js, ETAG);
    assert!(!etag.is_empty());
    assert!(js.text().await.unwrap().contains("localStorage"));
    let css = fetch(&app, &style).await;
    assert_eq!(header(&css, CONTENT_TYPE), "text/css; charset=utf-8");

    // Another version than the page names is not kept for a year.
    let stale = fetch(&app, "/assets/app.js?v=old").await;
    assert_eq!(header(&stale, CACHE_CONTROL), "no-cache");
    // A browser that has it already gets a 304.
    let again = app
        .http
        .get(format!("{}/assets/app.js", app.base))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    // Nothing else is served from there: the API's 404.
    let (status, body) = app.get("/assets/other.js", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

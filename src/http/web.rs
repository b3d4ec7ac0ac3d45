//! The fan page (`GET /`) and its two assets, compiled into the binary from
//! `web/`: nothing is loaded from another host, no build step.
//!
//! The page names its assets with `?v=<hash of their bytes>`, so a browser may
//! keep them for a year and still never runs a stale script after an upgrade;
//! the page itself is always revalidated. A strict Content-Security-Policy
//! allows only this origin's scripts, styles and API calls.

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::LazyLock;

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");

/// Only this origin: its scripts, styles, API; no frames, no plugins, no
/// inline code (so an injected string can never run).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// FNV-1a of the assets: changes whenever one of them does.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in APP_JS.bytes().chain(APP_CSS.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
});

static PAGE: LazyLock<String> = LazyLock::new(|| INDEX.replace("{{VERSION}}", &VERSION));

fn with_headers(
    mut response: Response,
    content_type: &'static str,
    cache: &'static str,
) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `GET /`: the page, revalidated each visit (it is small; its assets are not).
#[utoipa::path(
    get,
    path = "/",
    tag = "fan page",
    operation_id = "fan_page",
    summary = "The fans' web page",
    description = "HTML whose scripts and styles boxoffice serves itself; it uses only this API, from the browser.",
    params(("concert" = Option<i64>, Query, description = "Open this concert's waiting room and join it at once (read by the page's script)")),
    responses((status = 200, description = "The page", body = String, content_type = "text/html")),
)]
pub async fn page() -> Response {
    with_headers(
        PAGE.as_str().into_response(),
        "text/html; charset=utf-8",
        "no-cache",
    )
}

#[derive(Deserialize)]
pub struct AssetQuery {
    v: Option<String>,
}

fn asset(
    body: &'static str,
    content_type: &'static str,
    q: &AssetQuery,
    headers: &HeaderMap,
) -> Response {
    let etag = format!("\"{}\"", *VERSION);
    let cache = if q.v.as_deref() == Some(VERSION.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let mut response = with_headers(response, content_type, cache);
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

pub async fn app_js(Query(q): Query<AssetQuery>, headers: HeaderMap) -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8", &q, &headers)
}

pub async fn app_css(Query(q): Query<AssetQuery>, headers: HeaderMap) -> Response {
    asset(APP_CSS, "text/css; charset=utf-8", &q, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_assets_by_version_and_loads_nothing_from_elsewhere() {
        assert!(PAGE.contains(&format!("/assets/app.js?v={}", *VERSION)));
        assert!(PAGE.contains(&format!("/assets/app.css?v={}", *VERSION)));
        for text in [INDEX, APP_JS, APP_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("<script>"), "no inline script");
        }
        for hook in [
            "status",
            "position",
            "hold",
            "charge",
            "pay",
            "reservation-status",
        ] {
            assert!(
                INDEX.contains(&format!("data-test=\"{hook}\"")),
                "{hook} hook missing"
            );
        }
        for hook in ["schedule", "seat"] {
            assert!(
                APP_JS.contains(&format!("'data-test', '{hook}'")),
                "{hook} hook missing"
            );
        }
    }
}

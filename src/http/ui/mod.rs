//! The built-in web chat page at `/ui` (`server.ui`, on by default): three static assets
//! embedded in the binary at build time (`assets/`: the page, its script and its styles; no
//! CDN, no build step) and the JSON of the MCP servers the page's tools panel shows
//! (`GET /v1/mcp/servers`, in [`servers`]). The page talks to the public APIs only
//! (`/chat/stream`, `/v1/chat/completions`, `/v1/models`, `/sessions/{id}`), so it is also a
//! living example of them. Every asset is served with a Content-Security-Policy that allows
//! nothing but this origin: no external request, no inline script, no `eval`.

pub mod servers;

use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};

use super::{ApiError, HttpState};

/// The policy of every `/ui` response: only this origin's scripts, styles and API, images
/// inline only (the empty favicon), no frames, no forms posted anywhere, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its name under `/ui/`, its content type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const PAGE: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("assets/index.html"),
};

const ASSETS: [Asset; 2] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/app.css"),
    },
];

/// The page's routes: `GET /ui` (the page), `GET /ui/` (a redirect to it) and
/// `GET /ui/{asset}` (its script and styles).
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route("/ui/{asset}", get(asset))
}

async fn page() -> Response {
    serve(&PAGE)
}

async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|a| a.name == name)
        .map(serve)
        .ok_or_else(|| ApiError::not_found_route("GET", &format!("/ui/{name}")))
}

fn serve(asset: &Asset) -> Response {
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_only_this_origin() {
        for directive in CONTENT_SECURITY_POLICY.split(';').map(str::trim) {
            let mut words = directive.split_whitespace();
            let name = words.next().unwrap_or_default();
            for source in words {
                assert!(
                    ["'self'", "'none'", "data:"].contains(&source),
                    "{name} allows {source}"
                );
                assert!(
                    source != "data:" || name == "img-src",
                    "data: only for images"
                );
            }
        }
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none'"));
    }

    #[test]
    fn the_assets_name_no_other_origin_and_no_inline_script() {
        for asset in ASSETS.iter().chain([&PAGE]) {
            for needle in ["http://", "https://", "//cdn", "eval(", "new Function"] {
                assert!(
                    !asset.body.contains(needle),
                    "{} contains {needle}",
                    asset.name
                );
            }
        }
        // The page's only script is the embedded one, loaded from this origin.
        assert_eq!(PAGE.body.matches("<script").count(), 1);
        assert!(PAGE.body.contains(r#"<script src="/ui/app.js""#));
        assert!(PAGE.body.contains(r#"href="/ui/app.css""#));
    }

    #[test]
    fn the_script_never_parses_html() {
        let script = ASSETS[0].body;
        for needle in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!script.contains(needle), "app.js uses {needle}");
        }
    }

    #[test]
    fn every_asset_is_served_with_the_policy() {
        let response = serve(&ASSETS[0]);
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
        assert!(
            response.headers()[header::CONTENT_TYPE]
                .to_str()
                .is_ok_and(|v| v.starts_with("text/javascript"))
        );
    }
}

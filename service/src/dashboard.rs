//! The admin dashboard: hand-written ES modules and CSS under `service/dashboard/`, embedded
//! in the binary (no JavaScript build step, nothing fetched from elsewhere), served at
//! `/dashboard/`; `/` redirects there. The pages talk to the API only through `api.js`, the
//! client that [`client::generate`] writes from the OpenAPI spec (`marzneshin openapi
//! --client`). One server-side helper: `POST /dashboard/qr` turns text into an SVG QR code.

pub mod client;

use poem::http::{header, StatusCode};
use poem::web::{Path, Redirect};
use poem::{handler, Body, IntoResponse, Response, Route};
use qrcode::render::svg;
use qrcode::QrCode;

/// One embedded file: its path under `/dashboard/`, its content type and its bytes.
pub struct Asset {
    /// Path under `/dashboard/`.
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static str,
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard/", $path)),
        }
    };
}

/// Every file of the dashboard (a test checks this matches `service/dashboard/`).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("api-base.js", "text/javascript; charset=utf-8"),
    asset!("i18n.js", "text/javascript; charset=utf-8"),
    asset!("ui.js", "text/javascript; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("users.js", "text/javascript; charset=utf-8"),
    asset!("pages.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Longest text `POST /dashboard/qr` encodes.
const QR_MAX_TEXT: usize = 2048;

/// Scripts and styles from this origin only; SVG QR codes are inserted inline.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// Adds the dashboard's routes to `route`: `/` and `/dashboard` (redirects), `/dashboard/*`.
pub fn mount(route: Route) -> Route {
    route
        .at("/", root)
        .at("/dashboard", root)
        .at("/dashboard/qr", poem::post(qr))
        .at("/dashboard/*path", file)
}

#[handler]
fn root() -> Redirect {
    Redirect::see_other("/dashboard/")
}

fn serve(asset: &Asset) -> Response {
    let mut response = Response::builder()
        .content_type(asset.content_type)
        // The files change with the binary: revalidate, never serve a stale copy.
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-content-type-options", "nosniff");
    if asset.path == "index.html" {
        response = response
            .header("content-security-policy", CSP)
            .header("x-frame-options", "DENY")
            .header("referrer-policy", "no-referrer");
    }
    response.body(asset.body)
}

/// `/dashboard/` (an empty `path`) is `index.html`.
#[handler]
fn file(Path(path): Path<String>) -> Response {
    let path = if path.is_empty() { "index.html" } else { &path };
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => serve(a),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The QR code of `text` as an SVG document.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

/// `POST /dashboard/qr`: the body (plain text, at most [`QR_MAX_TEXT`] bytes) as an SVG QR
/// code. A POST, so subscription links (which carry the user's key) stay out of access logs.
#[handler]
async fn qr(body: Body) -> Response {
    let Ok(bytes) = body.into_bytes_limit(QR_MAX_TEXT).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match qr_svg(text) {
        Some(svg) => Response::builder()
            .content_type("image/svg+xml")
            .header(header::CACHE_CONTROL, "no-store")
            .body(svg),
        None => StatusCode::BAD_REQUEST.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_under_service_dashboard_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboard");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "update ASSETS in service/src/dashboard.rs"
        );
    }

    #[test]
    fn qr_codes_are_svg_and_long_text_is_refused() {
        let svg = qr_svg("http://127.0.0.1:8000/sub/alice/0123456789abcdef").unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(qr_svg(&"x".repeat(8000)).is_none());
    }
}

//! The web UI at `/`: the files of `web/dist` (built by `./scripts/web`),
//! embedded in release builds and read from disk in debug builds. When the
//! UI was not built, `/` says how to build it instead of failing.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../web/dist"]
#[allow_missing = true]
struct Assets;

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Parledger</title></head>\
<body><h1>Parledger</h1><p>The web UI is not built into this binary. Run <code>./scripts/web</code> \
(it installs the npm packages and builds <code>web/dist</code>), then rebuild the binary. \
The REST API is served as usual; its documentation is at <a href=\"/docs/\">/docs/</a>.</p></body></html>";

/// Scripts, styles, connections and images from this node only (inline
/// style attributes are allowed: the charts position their elements with
/// them); no frames, no plugins.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; \
base-uri 'none'; form-action 'self'";

fn file(path: &str) -> Option<HttpResponse> {
    let f = Assets::get(path)?;
    let mime = f.metadata.mimetype().to_string();
    // Vite names assets by content hash: cache them for good; the page itself
    // must be revalidated so that a new build is picked up.
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Some(
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, mime))
            .insert_header((header::CACHE_CONTROL, cache))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            // The UI loads nothing from elsewhere and runs no inline script:
            // an injected script or a foreign frame has nothing to work with.
            .insert_header(("Content-Security-Policy", CSP))
            .insert_header(("X-Frame-Options", "DENY"))
            .insert_header(("Referrer-Policy", "no-referrer"))
            .body(f.data.into_owned()),
    )
}

async fn index() -> HttpResponse {
    file("index.html").unwrap_or_else(|| {
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(NOT_BUILT)
    })
}

async fn asset(path: web::Path<String>) -> HttpResponse {
    file(&format!("assets/{path}")).unwrap_or_else(|| {
        actix_web::ResponseError::error_response(&super::problem::ApiError::not_found(
            super::problem::codes::NOT_FOUND,
            format!("no asset {path}"),
        ))
    })
}

/// `/` and `/assets/*` (not part of the REST API's document).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/index.html", web::get().to(index))
        .route("/assets/{path:.*}", web::get().to(asset));
}

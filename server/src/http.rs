//! The HTTP surface of the embedded node: health and status. The
//! authenticated REST API (transactions, receipts, audit) builds on this.

use crate::node::{Status, Submitter};
use actix_web::{web, App, HttpResponse, HttpServer};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

struct AppState {
    status: Arc<RwLock<Status>>,
    // Held so that the sequencer runs as long as the server does.
    _submitter: Submitter,
}

async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let ready = state.status.read().map(|s| s.ready).unwrap_or(false);
    if ready {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("application/problem+json")
            .json(serde_json::json!({
                "type": "about:blank",
                "title": "not ready",
                "status": 503,
                "code": "NODE:NOT_READY",
            }))
    }
}

async fn status_handler(state: web::Data<AppState>) -> HttpResponse {
    match state.status.read() {
        Ok(s) => HttpResponse::Ok().json(&*s),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

pub fn run(
    listen: SocketAddr,
    status: Arc<RwLock<Status>>,
    submitter: Submitter,
) -> anyhow::Result<()> {
    let data = web::Data::new(AppState {
        status,
        _submitter: submitter,
    });
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/livez", web::get().to(livez))
                .route("/readyz", web::get().to(readyz))
                .route("/v1/status", web::get().to(status_handler))
        })
        .bind(listen)?
        .run()
        .await
    })?;
    Ok(())
}

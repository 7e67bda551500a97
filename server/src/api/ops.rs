//! Health, status and Prometheus metrics, and the middleware that counts
//! and times every request by route and status.

use super::problem::{ApiError, Problem};
use super::Api;
use crate::node::{Observer, Status};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{get, web, HttpResponse};
use ledger::engine::AppliedBlock;
use ledger::TxStatus;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

/// The process's metrics recorder (one per process: the `metrics` facade
/// has a single global recorder).
#[derive(Clone)]
pub struct Metrics(PrometheusHandle);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const SIZES: &[f64] = &[
    1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 20000.0,
];

impl Metrics {
    pub fn install() -> anyhow::Result<Metrics> {
        let handle = HANDLE.get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full(
                            "parledger_block_transactions".into(),
                        ),
                        SIZES,
                    )
                })
                .and_then(|b| b.install_recorder())
                .map_err(|e| tracing::error!(error = %e, "cannot install the metrics recorder"))
                .ok()
        });
        handle
            .clone()
            .map(Metrics)
            .ok_or_else(|| anyhow::anyhow!("the metrics recorder could not be installed"))
    }
}

/// The header a request id travels in (given by a client or a proxy, or
/// made here), echoed on the response.
pub const REQUEST_ID: &str = "x-request-id";

/// A request id as a client may give it: 1 to 64 characters of
/// `A-Z a-z 0-9 . _ -`; anything else is replaced by one made here.
fn valid_request_id(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A new request id: this process's start time and a counter, in hex
/// (unique per node, ordered, and cheap).
fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(crate::node::now_ms);
    format!("{start:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Counts and times every request by route template, method and status,
/// and runs it in a `request` span carrying its id (`X-Request-Id`, given
/// or made here, echoed on the response), so every log line written while
/// serving it names the request. Failures (5xx) are logged as warnings,
/// everything else at debug.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let start = Instant::now();
    let method = req.method().to_string();
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map_or_else(new_request_id, str::to_string);
    let span =
        tracing::info_span!("request", request_id = %id, method = %method, path = %req.path());
    let mut res = next.call(req).instrument(span.clone()).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let code = res.status().as_u16();
    let elapsed = start.elapsed();
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1000.0;
        if code >= 500 {
            tracing::warn!(status = code, ms, route = %route, "request failed");
        } else {
            tracing::debug!(status = code, ms, route = %route, "request");
        }
    });
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&id) {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(REQUEST_ID),
            v,
        );
    }
    let labels = [
        ("route", route),
        ("method", method),
        ("status", code.to_string()),
    ];
    metrics::counter!("parledger_http_requests_total", &labels).increment(1);
    metrics::histogram!("parledger_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    Ok(res)
}

#[cfg(test)]
mod request_id_tests {
    use super::*;

    #[test]
    fn request_ids_are_checked_and_made_unique() {
        assert!(valid_request_id("abc-123_X.y"));
        for bad in ["", "a b", "a\nb", "é", &"x".repeat(65)] {
            assert!(!valid_request_id(bad), "{bad:?}");
        }
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert!(valid_request_id(&a));
    }
}

/// Ledger metrics from every durable block.
#[derive(Debug)]
pub struct LedgerMetrics;

impl Observer for LedgerMetrics {
    fn durable(&self, block: &AppliedBlock) {
        metrics::gauge!("parledger_block_height").set(block.header.height as f64);
        metrics::histogram!("parledger_block_transactions").record(block.outcomes.len() as f64);
        let mut committed = 0u64;
        for o in &block.outcomes {
            match (o.status, &o.code) {
                (TxStatus::Committed, _) => committed += 1,
                (TxStatus::Rejected, code) => {
                    let code = code.as_ref().map_or("NONE", |c| c.as_str()).to_string();
                    metrics::counter!("parledger_transactions_rejected_total", "code" => code)
                        .increment(1);
                }
            }
        }
        metrics::counter!("parledger_transactions_committed_total").increment(committed);
    }
}

/// Liveness: the process answers.
#[utoipa::path(
    tag = "ops",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"})))
)]
#[get("/livez")]
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the node applies blocks (and, in a cluster, is caught up).
#[utoipa::path(
    tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready"})),
        (status = 503, description = "Not ready", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub async fn readyz(api: web::Data<Api>) -> Result<HttpResponse, ApiError> {
    let ready = api.status.read().map(|s| s.ready).unwrap_or(false);
    if ready {
        Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
    } else {
        let mut e = ApiError::unavailable("the node is not ready");
        e.code = "NODE:NOT_READY".into();
        Err(e)
    }
}

/// Height, tip, state root and counts of this node.
#[utoipa::path(
    tag = "ops",
    responses((status = 200, description = "Status", body = Status))
)]
#[get("/v1/status")]
pub async fn status(api: web::Data<Api>) -> Result<web::Json<Status>, ApiError> {
    api.status
        .read()
        .map(|s| web::Json(s.clone()))
        .map_err(|_| ApiError::internal("status lock poisoned"))
}

/// Prometheus metrics: requests by route and status with latency
/// histograms, transactions committed and rejected by code, block height,
/// block sizes, executor time.
#[utoipa::path(
    tag = "ops",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
#[get("/metrics")]
pub async fn metrics_text(api: web::Data<Api>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(api.metrics.0.render())
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(livez)
        .service(readyz)
        .service(status)
        .service(metrics_text);
}

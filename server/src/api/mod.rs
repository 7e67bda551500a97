//! The REST API under `/v1`: authenticated (JWT), authorized per role,
//! organization and partition, documented by OpenAPI (utoipa, collected
//! from the handlers themselves so the document cannot miss a route), with
//! errors as `application/problem+json`.
//!
//! | module | routes |
//! |---|---|
//! | `session` | `/v1/auth/*`: token, refresh, revoke, me, jwks |
//! | `tx` | `/v1/transactions*`: submit, batch, read, receipt |
//! | `domain_routes` | `/v1/finance/*`, `/v1/supply-chain/*`, `/v1/healthcare/*`: typed operations and queries |
//! | `chain` | `/v1/blocks*`, `/v1/state/*`, `/v1/audit*` |
//! | `events` | `/v1/events`: Server-Sent Events |
//! | `admin` | `/v1/orgs*`, `/v1/consortium/settings` |
//! | `ops` | `/livez`, `/readyz`, `/v1/status`, `/metrics` |
//! | `cluster` | `/v1/cluster/status`; `?consistency=linearizable` on reads |
//! | `ui` | `/`, `/assets/*`: the web UI (`web/dist`) |

pub mod admin;
pub mod auth;
pub mod chain;
pub mod cluster;
pub mod directory;
pub mod domain_routes;
pub mod events;
pub mod governance;
pub mod ops;
pub mod problem;
pub mod schema;
pub mod session;
pub mod tx;
pub mod ui;

use crate::node::{Committed, Status, Submitter};
use actix_web::http::{header, Method};
use actix_web::{web, App, HttpRequest, HttpResponse};
use auth::{Auth, Caller, SharedDirectory};
use events::EventHub;
use ledger::storage::{ChainStore, Sync};
use ledger::{LedgerError, Registry, Transaction};
use problem::ApiError;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

/// Named bounds of the API.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Bytes of one request body.
    pub body_bytes_max: usize,
    /// Transactions in one batch request.
    pub batch_len_max: usize,
    /// Bytes of a request's target and headers (names and values): above
    /// it, 431 `API:HEADERS_TOO_LARGE`. (actix itself closes a connection
    /// whose head passes 128 KiB, or that has more than 96 headers.)
    pub head_bytes_max: usize,
    /// Requests served at once (event streams included): above it, 503
    /// `API:BUSY`.
    pub in_flight_max: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            body_bytes_max: 16 * 1024 * 1024,
            batch_len_max: 10_000,
            head_bytes_max: 16 * 1024,
            in_flight_max: 4096,
        }
    }
}

/// Everything a handler needs; shared by all workers.
pub struct Api {
    pub node: Submitter,
    pub status: Arc<RwLock<Status>>,
    pub directory: SharedDirectory,
    pub auth: Auth,
    pub registry: Registry,
    pub limits: ApiLimits,
    pub events: Arc<EventHub>,
    pub data_dir: PathBuf,
    readers: Mutex<Vec<ChainStore>>,
    pub metrics: ops::Metrics,
    /// Becomes true when the server begins to stop: long-lived responses
    /// (event streams) end so that the graceful stop does not wait on them.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The Raft cluster this node belongs to (`None`: the embedded node).
    pub cluster: Option<crate::cluster::runtime::Cluster>,
    /// Requests being served now (see [`ApiLimits::in_flight_max`]).
    pub in_flight: std::sync::atomic::AtomicUsize,
    /// Refuses writes while the data directory's disk is nearly full.
    pub disk: Option<Arc<crate::disk::DiskGuard>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// Read connections kept for reuse.
const READERS_MAX: usize = 8;

impl Api {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: Submitter,
        status: Arc<RwLock<Status>>,
        directory: SharedDirectory,
        auth: Auth,
        registry: Registry,
        limits: ApiLimits,
        events: Arc<EventHub>,
        data_dir: PathBuf,
        metrics: ops::Metrics,
    ) -> Api {
        Api {
            node,
            status,
            directory,
            auth,
            registry,
            limits,
            events,
            data_dir,
            readers: Mutex::new(Vec::new()),
            metrics,
            stopping: tokio::sync::watch::channel(false).0,
            cluster: None,
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            disk: None,
        }
    }

    /// Resolves when the server begins to stop.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }
}

/// Runs `f` on a read connection to `chain.db`, off the async threads.
/// The chain database only ever holds durable blocks.
pub async fn read_chain<T: Send + 'static>(
    api: &web::Data<Api>,
    f: impl FnOnce(&mut ChainStore) -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, ApiError> {
    {
        let api = api.clone();
        web::block(move || {
            let reused = api.readers.lock().ok().and_then(|mut r| r.pop());
            let mut store = match reused {
                Some(s) => s,
                None => ChainStore::open(&api.data_dir, Sync::Off)?,
            };
            let out = f(&mut store);
            if let Ok(mut r) = api.readers.lock() {
                if r.len() < READERS_MAX {
                    r.push(store);
                }
            }
            out
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
    }
}

/// Seconds a client is told to wait when the disk is full.
const DISK_FULL_RETRY_S: u64 = 5;

type Answer = tokio::sync::oneshot::Receiver<Result<Committed, crate::node::NodeError>>;

/// Queues transactions for ordering (off the async threads: the queue
/// blocks when full) and returns where each one's answer will arrive.
pub async fn order(api: &web::Data<Api>, txs: Vec<Transaction>) -> Result<Vec<Answer>, ApiError> {
    if let Some(free) = api.disk.as_ref().and_then(|d| d.full()) {
        let mut e = ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            problem::codes::DISK_FULL,
            format!(
                "the node's disk has {free} bytes free, below its {} byte minimum: no write is taken until space returns (nothing was ordered; retry with the same ids)",
                api.disk.as_ref().map_or(0, |d| d.min_free_bytes())
            ),
        );
        e.retry_after = Some(DISK_FULL_RETRY_S);
        return Err(e);
    }
    let node = api.node.clone();
    web::block(move || {
        let mut answers = Vec::with_capacity(txs.len());
        for tx in txs {
            let (reply, answer) = tokio::sync::oneshot::channel();
            node.submit(tx, Some(reply))?;
            answers.push(answer);
        }
        Ok::<_, anyhow::Error>(answers)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::unavailable(e.to_string()))
}

/// Orders a membership (`system`) transaction for the caller and waits for
/// it. A rejection comes back as a problem with the chaincode's code (403
/// for denials, 409 for conflicts such as an existing user, 422 otherwise).
pub async fn submit_system(
    api: &web::Data<Api>,
    caller: &Caller,
    function: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    submit_system_as(api, caller, None, function, args).await
}

/// [`submit_system`] with the client's transaction id when it gave one (a
/// retry with the same id answers the first outcome).
pub async fn submit_system_as(
    api: &web::Data<Api>,
    caller: &Caller,
    id: Option<&str>,
    function: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let id = match id {
        Some(id) => ledger::TxId::new(id).map_err(|e| {
            ApiError::unprocessable(problem::codes::INVALID_BODY, format!("id: {e}"))
        })?,
        None => ledger::TxId::new(&auth::new_id()).map_err(ApiError::internal)?,
    };
    let tx = Transaction::new(
        id,
        domains::membership::SYSTEM,
        ledger::FunctionName::new(function).map_err(ApiError::internal)?,
        &args,
        ledger::UserId::new(&caller.user).map_err(ApiError::internal)?,
        caller.org.clone(),
    );
    tx::precheck(api, caller, &tx)?;
    let mut answers = order(api, vec![tx]).await?;
    let answer = answers
        .pop()
        .ok_or_else(|| ApiError::internal("no answer"))?;
    let c = answer
        .await
        .map_err(|_| ApiError::unavailable("the node stopped before answering"))?
        .map_err(ApiError::from)?;
    match (c.outcome.status, &c.outcome.code) {
        (ledger::TxStatus::Committed, _) => {
            Ok(serde_json::from_slice(&c.outcome.output).unwrap_or(serde_json::Value::Null))
        }
        (_, Some(code)) => Err(rejection(caller, code, &c.outcome.message)),
        (_, None) => Err(ApiError::internal("rejected without a code")),
    }
}

/// How the API names a transaction's status.
pub fn status_name(s: ledger::TxStatus) -> &'static str {
    match s {
        ledger::TxStatus::Committed => "committed",
        ledger::TxStatus::Rejected => "rejected",
    }
}

/// The problem for a transaction the chaincode rejected, when the route
/// answers with the outcome rather than a receipt (admin and typed
/// endpoints that create things).
pub fn rejection(caller: &Caller, code: &ledger::Code, message: &str) -> ApiError {
    use actix_web::http::StatusCode;
    if domains::is_denial(code) {
        return auth::deny(caller, code.as_str(), message.to_string());
    }
    let name = code.as_str().rsplit(':').next().unwrap_or("");
    let status = if name.ends_with("_EXISTS")
        || name.starts_with("ALREADY_")
        || matches!(
            name,
            "PROPOSAL_CLOSED" | "PROPOSAL_EXPIRED" | "PROPOSAL_OPEN" | "NO_ELECTORATE"
        ) {
        StatusCode::CONFLICT
    } else if name.ends_with("NOT_FOUND") {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    ApiError::new(status, code.as_str(), message)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Parledger API",
        description = "The REST API of a Parledger node: a permissioned ledger for consortia. \
Authenticate with `POST /v1/auth/token`, then send `Authorization: Bearer <token>`. \
Every error is `application/problem+json` with a stable `code`. \
In a cluster any node accepts writes; every `GET` also accepts `?consistency=linearizable` \
(wait until this node has applied everything committed when the read began: Raft's read index) \
or `?consistency=local` (the default: this node's applied state).",
        license(name = "Apache-2.0"),
        version = "1.0.0"
    ),
    modifiers(&Security),
    components(schemas(problem::Problem, schema::ReceiptDoc, events::TxEvent, events::DomainEvent)),
    tags(
        (name = "auth", description = "Sign in, tokens, sign out"),
        (name = "transactions", description = "Submit transactions and read their receipts"),
        (name = "finance", description = "Accounts, transfers and two-phase transfers"),
        (name = "supply_chain", description = "Products, lots, shipments, checkpoints, recalls"),
        (name = "healthcare", description = "Patients, record references, consent, access"),
        (name = "chain", description = "Blocks and state"),
        (name = "audit", description = "Audit search, export and chain verification"),
        (name = "events", description = "Server-Sent Events"),
        (name = "admin", description = "Organizations, users, roles and keys"),
        (name = "governance", description = "Proposals and votes: organizations, nodes, settings, chaincode versions, the constitution"),
        (name = "ops", description = "Health, status and metrics"),
    )
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every route of the API.
pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(ops::routes)
        .configure(cluster::routes)
        .configure(session::routes)
        .configure(tx::routes)
        .configure(domain_routes::routes)
        .configure(chain::routes)
        .configure(events::routes)
        .configure(admin::routes)
        .configure(governance::routes);
}

/// The OpenAPI document, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes)
        .split_for_parts()
        .1
}

/// The document as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    openapi()
        .to_pretty_json()
        .map(|s| s + "\n")
        .unwrap_or_default()
}

/// Route templates and their methods, for `405` and `Allow`.
#[derive(Debug, Clone)]
pub struct RouteTable(Vec<(Vec<String>, Vec<Method>)>);

impl RouteTable {
    pub fn of(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut table = Vec::new();
        for (path, item) in &doc.paths.paths {
            let segments = path.split('/').map(str::to_string).collect();
            let mut methods = Vec::new();
            let ops = [
                (Method::GET, item.get.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::PUT, item.put.is_some()),
                (Method::PATCH, item.patch.is_some()),
                (Method::DELETE, item.delete.is_some()),
            ];
            for (m, present) in ops {
                if present {
                    methods.push(m);
                }
            }
            table.push((segments, methods));
        }
        RouteTable(table)
    }

    /// Methods allowed on `path`, if some route matches it. A route whose
    /// segments all match literally (`/v1/transactions/batch`) hides the
    /// patterns that also match (`/v1/transactions/{id}`).
    fn allowed(&self, path: &str) -> Vec<Method> {
        let parts: Vec<&str> = path.split('/').collect();
        let mut exact = Vec::new();
        let mut patterned = Vec::new();
        for (segments, methods) in &self.0 {
            if segments.len() != parts.len() {
                continue;
            }
            let literal = segments.iter().zip(&parts).all(|(s, p)| s == p);
            let matches = segments
                .iter()
                .zip(&parts)
                .all(|(s, p)| (s.starts_with('{') && !p.is_empty()) || s == p);
            if literal {
                exact.extend(methods.iter().cloned());
            } else if matches {
                patterned.extend(methods.iter().cloned());
            }
        }
        if exact.is_empty() {
            patterned
        } else {
            exact
        }
    }
}

/// Unknown routes: 405 with `Allow` when the path exists with other
/// methods, 404 otherwise.
async fn fallback(req: HttpRequest, table: web::Data<RouteTable>) -> HttpResponse {
    let allowed = table.allowed(req.path());
    if allowed.is_empty() {
        return actix_web::ResponseError::error_response(&problem::not_found(req).await);
    }
    let mut r = actix_web::ResponseError::error_response(&problem::method_not_allowed());
    let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    if let Ok(v) = header::HeaderValue::from_str(&list.join(", ")) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

/// Builds the application for one worker.
pub fn app(
    api: web::Data<Api>,
    doc: utoipa::openapi::OpenApi,
    table: web::Data<RouteTable>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limits = api.limits;
    let (app, _) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes)
        .split_for_parts();
    app.app_data(api)
        .app_data(table)
        .app_data(
            web::JsonConfig::default()
                .limit(limits.body_bytes_max)
                .error_handler(problem::json_error),
        )
        .app_data(web::QueryConfig::default().error_handler(problem::query_error))
        .app_data(web::PathConfig::default().error_handler(problem::path_error))
        .service(
            utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}").url("/api-docs/openapi.json", doc),
        )
        .configure(ui::routes)
        .default_service(web::to(fallback))
        .wrap(actix_web::middleware::from_fn(cluster::consistency))
        .wrap(actix_web::middleware::from_fn(limit_request))
        .wrap(actix_web::middleware::from_fn(ops::track))
}

/// Refuses a request beyond [`ApiLimits::in_flight_max`] requests at once,
/// or whose target and headers pass [`ApiLimits::head_bytes_max`], before
/// anything reads it.
async fn limit_request(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let max = req
        .app_data::<web::Data<Api>>()
        .map_or(ApiLimits::default().head_bytes_max, |a| {
            a.limits.head_bytes_max
        });
    let Some(api) = req.app_data::<web::Data<Api>>().cloned() else {
        return next
            .call(req)
            .await
            .map(actix_web::dev::ServiceResponse::map_into_boxed_body);
    };
    // Counted until the response (its body included) is dropped.
    let slot = InFlight::take(api.clone());
    if slot.0.is_none() {
        let mut e = ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            problem::codes::BUSY,
            format!(
                "the node is serving {} requests at once, its limit: retry shortly",
                api.limits.in_flight_max
            ),
        );
        e.retry_after = Some(1);
        let (http, _) = req.into_parts();
        return Ok(actix_web::dev::ServiceResponse::new(
            http,
            actix_web::ResponseError::error_response(&e),
        ));
    }
    let bytes = req.uri().to_string().len()
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum::<usize>();
    if bytes > max {
        let e = ApiError::new(
            actix_web::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            problem::codes::HEADERS_TOO_LARGE,
            format!("the request's target and headers have {bytes} bytes, above {max}"),
        );
        let (http, _) = req.into_parts();
        return Ok(actix_web::dev::ServiceResponse::new(
            http,
            actix_web::ResponseError::error_response(&e),
        ));
    }
    let res = next.call(req).await?;
    Ok(res.map_body(|_, body| {
        actix_web::body::BoxBody::new(Counted {
            body: actix_web::body::BoxBody::new(body),
            _slot: slot,
        })
    }))
}

/// One of the [`ApiLimits::in_flight_max`] slots, given back when dropped
/// (`None`: none was free).
struct InFlight(Option<web::Data<Api>>);

impl InFlight {
    fn take(api: web::Data<Api>) -> InFlight {
        use std::sync::atomic::Ordering;
        let before = api.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= api.limits.in_flight_max {
            api.in_flight.fetch_sub(1, Ordering::AcqRel);
            InFlight(None)
        } else {
            InFlight(Some(api))
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(api) = &self.0 {
            api.in_flight
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// A response body that holds its request's slot until it is dropped (an
/// event stream holds it for as long as it runs).
struct Counted {
    body: actix_web::body::BoxBody,
    _slot: InFlight,
}

impl actix_web::body::MessageBody for Counted {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<actix_web::web::Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_next(cx)
    }
}

/// Certificate chain and private key files (PEM) for HTTPS.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The API's certificate and key, read again by [`ApiCert::reload`]: new
/// connections are served with the new pair, open ones keep theirs.
#[derive(Debug)]
pub struct ApiCert {
    tls: Tls,
    current: RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl ApiCert {
    pub fn load(tls: &Tls) -> anyhow::Result<Arc<ApiCert>> {
        Ok(Arc::new(ApiCert {
            tls: tls.clone(),
            current: RwLock::new(Arc::new(certified_key(tls)?)),
        }))
    }

    /// Reads the files again; nothing changes when they are unusable.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = Arc::new(certified_key(&self.tls)?);
        match self.current.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for ApiCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        })
    }
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(tls: &Tls) -> anyhow::Result<rustls::sign::CertifiedKey> {
    use anyhow::Context;
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let certs = rustls_pemfile::certs(&mut read(&tls.cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", tls.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate in {}",
        tls.cert.display()
    );
    let key = rustls_pemfile::private_key(&mut read(&tls.key)?.as_slice())
        .with_context(|| format!("parsing the private key in {}", tls.key.display()))?
        .ok_or_else(|| anyhow::anyhow!("no private key in {}", tls.key.display()))?;
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .context("the private key is not usable")?;
    let ck = rustls::sign::CertifiedKey::new(certs, signer);
    ck.keys_match()
        .context("the certificate and key do not form a usable pair")?;
    Ok(ck)
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3) serving
/// whatever certificate `cert` holds at the time of each handshake.
pub fn tls_config(cert: Arc<ApiCert>) -> anyhow::Result<rustls::ServerConfig> {
    Ok(rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(cert))
}

/// The key and certificate files a node reloads on `SIGHUP`, and when
/// their contents change (checked every `watch_every`; zero: only on the
/// signal): the JWT keys (`--jwt-key`, `--jwt-trust-key`, the identity
/// provider's JWKS), the API's certificate, and the cluster's.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    pub tls: Option<Tls>,
    /// Cluster certificate, key and CA bundle.
    pub cluster_tls: Option<(PathBuf, PathBuf, PathBuf)>,
    pub watch_every: std::time::Duration,
}

impl Keys {
    fn files(&self, api: &Api) -> Vec<PathBuf> {
        let a = &api.auth.config;
        let mut files = vec![a.key_file.clone()];
        // The directory itself too: adding or removing a key changes its
        // modification time (and a Kubernetes Secret update swaps a link
        // inside it). A directory that cannot be read shows as changed
        // files only when it can again; the reload then says why.
        files.extend(a.trust_dir.iter().cloned());
        files.extend(a.trusted_key_files().unwrap_or_default());
        files.extend(a.idp.as_ref().map(|(_, p)| p.clone()));
        if let Some(t) = &self.tls {
            files.extend([t.cert.clone(), t.key.clone()]);
        }
        if let Some((c, k, ca)) = &self.cluster_tls {
            files.extend([c.clone(), k.clone(), ca.clone()]);
        }
        files
    }
}

/// What the files look like now (size and modification time; a Kubernetes
/// Secret update swaps a symbolic link, which changes both).
fn fingerprint(files: &[PathBuf]) -> Vec<Option<(u64, Option<std::time::SystemTime>)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        })
        .collect()
}

/// Reloads every key and certificate; each part that fails keeps what it
/// had and says why.
fn reload_keys(api: &Api, keys: &Keys, cert: Option<&ApiCert>, why: &str) {
    match api.auth.reload() {
        Ok(true) => tracing::info!(
            why,
            "JWT signing key rotated; the previous one stays trusted until its tokens expire"
        ),
        Ok(false) => tracing::info!(why, "JWT keys reloaded"),
        Err(e) => {
            tracing::error!(why, error = %e, "JWT keys not reloaded; the previous ones stay in force")
        }
    }
    if let Some(c) = cert {
        match c.reload() {
            Ok(()) => tracing::info!(why, "API certificate reloaded"),
            Err(e) => {
                tracing::error!(why, error = %e, "API certificate not reloaded; the previous one stays in force")
            }
        }
    }
    if let (Some(cluster), Some((c, k, ca))) = (&api.cluster, &keys.cluster_tls) {
        let r = crate::cluster::transport::TlsMaterial::from_files(c, k, ca)
            .map_err(anyhow::Error::from)
            .and_then(|m| cluster.reload_tls(&m).map_err(anyhow::Error::from));
        if let Err(e) = r {
            tracing::error!(why, error = %e, "cluster TLS not reloaded; the previous material stays in force");
        }
    }
}

/// Runs the HTTP server until SIGINT or SIGTERM: HTTPS when `keys.tls` is
/// given. `SIGHUP`, or a change of a key file, reloads the keys (`Keys`).
pub fn run(listen: std::net::SocketAddr, keys: Keys, api: Api) -> anyhow::Result<()> {
    let api = web::Data::new(api);
    let doc = openapi();
    let table = web::Data::new(RouteTable::of(&doc));
    let cert = keys.tls.as_ref().map(ApiCert::load).transpose()?;
    let config = cert.clone().map(tls_config).transpose()?;
    actix_web::rt::System::new().block_on(async move {
        let stop_api = api.clone();
        let reload_api = api.clone();
        actix_web::rt::spawn(async move {
            watch_keys(&reload_api, &keys, cert.as_deref()).await;
        });
        let server =
            actix_web::HttpServer::new(move || app(api.clone(), doc.clone(), table.clone()))
                // Signals are handled below, so that event streams end first.
                .disable_signals()
                .shutdown_timeout(SHUTDOWN_TIMEOUT_S);
        let server = match config {
            Some(c) => server.bind_rustls_0_23(listen, c)?,
            None => server.bind(listen)?,
        }
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            stop_signal().await;
            tracing::info!("stopping: finishing requests in flight");
            stop_api.stopping.send_replace(true);
            handle.stop(true).await;
        });
        server.await
    })?;
    Ok(())
}

/// Longest a graceful stop waits for requests in flight (a client whose
/// batch is cut off retries it with the same ids: nothing is applied twice).
const SHUTDOWN_TIMEOUT_S: u64 = 10;

/// Reloads the keys on `SIGHUP` and when their files change, until the
/// process ends.
async fn watch_keys(api: &Api, keys: &Keys, cert: Option<&ApiCert>) {
    // Listed again at every look: a trusted key directory gains and loses
    // files.
    let mut seen = fingerprint(&keys.files(api));
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; keys reload only when their files change");
            None
        }
    };
    let every = if keys.watch_every.is_zero() {
        std::time::Duration::from_secs(24 * 3600)
    } else {
        keys.watch_every
    };
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        tokio::select! {
            _ = signalled => {
                reload_keys(api, keys, cert, "SIGHUP");
                seen = fingerprint(&keys.files(api));
            }
            _ = tick.tick(), if !keys.watch_every.is_zero() => {
                let now = fingerprint(&keys.files(api));
                if now != seen {
                    seen = now;
                    reload_keys(api, keys, cert, "a key file changed");
                }
            }
        }
    }
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

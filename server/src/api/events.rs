//! `/v1/events`: committed transactions and domain events as Server-Sent
//! Events, filtered by partition and type, resumable from a block height
//! or from `Last-Event-ID` (`height:index` of the last transaction seen).
//! Resuming replays durable blocks from `chain.db`, then follows the live
//! feed; a subscriber that falls behind the live feed is caught up the same
//! way, so it never silently misses a transaction.

use super::auth::Caller;
use super::problem::{codes, ApiError, Problem};
use super::Api;
use crate::node::Observer;
use actix_web::web::Bytes;
use actix_web::{get, web, HttpRequest, HttpResponse};
use domains::membership::Role;
use ledger::engine::AppliedBlock;
use ledger::{PartitionId, Transaction, TxOutcome};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

/// One transaction of a block, as subscribers see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxEvent {
    pub height: u64,
    pub index: u32,
    pub timestamp_ms: u64,
    pub tx_id: String,
    pub org: String,
    pub submitter: String,
    pub domain: String,
    pub function: String,
    /// `committed` or `rejected`.
    pub status: String,
    pub code: Option<String>,
    /// Partitions it changed (`org/domain`).
    pub partitions: Vec<String>,
}

/// A domain event (e.g. `lot_breach`) emitted by a committed transaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DomainEvent {
    pub height: u64,
    pub index: u32,
    pub tx_id: String,
    pub partition: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl TxEvent {
    /// The transaction at `index` of block `height`, with its outcome.
    pub fn of(height: u64, timestamp_ms: u64, index: u32, tx: &Transaction, o: &TxOutcome) -> Self {
        let mut partitions: Vec<String> =
            o.writes.iter().map(|w| w.partition.to_string()).collect();
        partitions.dedup();
        TxEvent {
            height,
            index,
            timestamp_ms,
            tx_id: tx.id.to_string(),
            org: tx.org.to_string(),
            submitter: tx.submitter.to_string(),
            domain: tx.domain.to_string(),
            function: tx.function.to_string(),
            status: super::status_name(o.status).into(),
            code: o.code.as_ref().map(|c| c.to_string()),
            partitions,
        }
    }
}

#[derive(Debug)]
struct Item {
    tx: TxEvent,
    /// Organizations whose partitions it changed or addressed events to.
    orgs: Vec<String>,
    events: Vec<(PartitionId, DomainEvent)>,
    touched: Vec<PartitionId>,
}

fn items_of(height: u64, timestamp: u64, txs: &[Transaction], outcomes: &[TxOutcome]) -> Vec<Item> {
    txs.iter()
        .zip(outcomes)
        .enumerate()
        .map(|(i, (tx, o))| {
            let mut touched: Vec<PartitionId> =
                o.writes.iter().map(|w| w.partition.clone()).collect();
            touched.dedup();
            let mut orgs: Vec<String> = touched.iter().map(|p| p.org.to_string()).collect();
            orgs.extend(o.events.iter().map(|e| e.partition.org.to_string()));
            orgs.push(tx.org.to_string());
            orgs.sort();
            orgs.dedup();
            let emitted = o
                .events
                .iter()
                .map(|e| {
                    (
                        e.partition.clone(),
                        DomainEvent {
                            height,
                            index: i as u32,
                            tx_id: tx.id.to_string(),
                            partition: e.partition.to_string(),
                            name: e.name.to_string(),
                            data: serde_json::from_slice(&e.data)
                                .unwrap_or(serde_json::Value::Null),
                        },
                    )
                })
                .collect();
            Item {
                tx: TxEvent::of(height, timestamp, i as u32, tx, o),
                orgs,
                events: emitted,
                touched,
            }
        })
        .collect()
}

/// A durable block, prepared once for every subscriber.
#[derive(Debug)]
pub struct Feed {
    height: u64,
    items: Vec<Item>,
}

/// Fans durable blocks out to subscribers.
#[derive(Debug)]
pub struct EventHub {
    sender: broadcast::Sender<Arc<Feed>>,
}

/// Blocks the live feed holds for a slow subscriber before it must catch
/// up from the database.
const FEED_LEN_MAX: usize = 256;
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Blocks read from the database per step of a replay.
const REPLAY_STEP: u64 = 16;

impl EventHub {
    pub fn new() -> Self {
        EventHub {
            sender: broadcast::channel(FEED_LEN_MAX).0,
        }
    }
}

impl Observer for EventHub {
    fn durable(&self, block: &AppliedBlock) {
        // Nothing to prepare when nobody listens (the common case at load).
        if self.sender.receiver_count() == 0 {
            return;
        }
        let feed = Feed {
            height: block.header.height,
            items: items_of(
                block.header.height,
                block.header.timestamp.0,
                &block.txs,
                &block.outcomes,
            ),
        };
        let _ = self.sender.send(Arc::new(feed));
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only what touches this partition (`org/domain`).
    pub partition: Option<String>,
    /// `transaction`, `domain_event`, or both (default).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Start with the transactions of this block (replayed from storage).
    pub from_height: Option<u64>,
}

struct Filter {
    caller: Caller,
    partition: Option<PartitionId>,
    transactions: bool,
    domain_events: bool,
}

impl Filter {
    fn render(&self, item: &Item, out: &mut String) {
        let all = self.caller.has(Role::Auditor);
        let me = self.caller.org.as_str();
        if !all && !item.orgs.iter().any(|o| o == me) {
            return;
        }
        if let Some(p) = &self.partition {
            let hit = item.touched.contains(p) || item.events.iter().any(|(ep, _)| ep == p);
            if !hit {
                return;
            }
        }
        let id = format!("{}:{}", item.tx.height, item.tx.index);
        if self.transactions {
            push(out, &id, "transaction", &item.tx);
        }
        if self.domain_events {
            for (p, e) in &item.events {
                let visible = all || p.org.as_str() == me;
                let wanted = self.partition.as_ref().is_none_or(|want| want == p);
                if visible && wanted {
                    push(out, &id, "domain_event", e);
                }
            }
        }
    }
}

fn push(out: &mut String, id: &str, event: &str, data: &impl Serialize) {
    if let Ok(json) = serde_json::to_string(data) {
        out.push_str(&format!("id: {id}\nevent: {event}\ndata: {json}\n\n"));
    }
}

enum Phase {
    Replay { next: u64 },
    Live,
}

struct Stream {
    api: web::Data<Api>,
    filter: Filter,
    rx: broadcast::Receiver<Arc<Feed>>,
    phase: Phase,
    /// The last (height, index) sent or skipped.
    after: (u64, u32),
    started: bool,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Stream {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, actix_web::Error>> {
        if !self.started {
            self.started = true;
            // Tells the client the stream is open and how to reconnect.
            return Some(Ok(Bytes::from_static(b"retry: 2000\n: subscribed\n\n")));
        }
        loop {
            if *self.stopping.borrow() {
                return None;
            }
            match self.phase {
                Phase::Replay { next } => {
                    let tip = self.api.status.read().map(|s| s.height).unwrap_or(0);
                    if next > tip {
                        self.phase = Phase::Live;
                        continue;
                    }
                    let last = (next + REPLAY_STEP - 1).min(tip);
                    let blocks = super::read_chain(&self.api, move |store| {
                        let mut out = Vec::new();
                        for (header, _, _) in store.headers(next, last)? {
                            let txs = store.block_txs(header.height)?;
                            out.push((header.height, header.timestamp.0, txs));
                        }
                        Ok(out)
                    })
                    .await;
                    let blocks = match blocks {
                        Ok(b) => b,
                        Err(e) => return Some(Err(e.into())),
                    };
                    self.phase = Phase::Replay { next: last + 1 };
                    let mut out = String::new();
                    for (height, ts, rows) in blocks {
                        let (txs, outcomes): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
                        self.emit(&items_of(height, ts, &txs, &outcomes), &mut out);
                    }
                    if !out.is_empty() {
                        return Some(Ok(Bytes::from(out)));
                    }
                }
                Phase::Live => {
                    let next = tokio::select! {
                        // The server is stopping: end the stream.
                        _ = self.stopping.changed() => return None,
                        next = tokio::time::timeout(KEEPALIVE, self.rx.recv()) => next,
                    };
                    match next {
                        Err(_) => return Some(Ok(Bytes::from_static(b": keepalive\n\n"))),
                        Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                        Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                            // Fell behind the live feed: catch up from storage.
                            self.phase = Phase::Replay {
                                next: self.after.0.max(1),
                            };
                        }
                        Ok(Ok(feed)) => {
                            if feed.height < self.after.0 {
                                continue;
                            }
                            if feed.height > self.after.0 + 1 {
                                // A gap (blocks durable before we subscribed
                                // or while we replayed): replay it first.
                                self.phase = Phase::Replay {
                                    next: self.after.0 + 1,
                                };
                                continue;
                            }
                            let mut out = String::new();
                            self.emit(&feed.items, &mut out);
                            if !out.is_empty() {
                                return Some(Ok(Bytes::from(out)));
                            }
                        }
                    }
                }
            }
        }
    }

    fn emit(&mut self, items: &[Item], out: &mut String) {
        for item in items {
            let at = (item.tx.height, item.tx.index);
            if at <= self.after {
                continue;
            }
            self.filter.render(item, out);
            self.after = at;
        }
    }
}

fn parse_last_event_id(req: &HttpRequest) -> Result<Option<(u64, u32)>, ApiError> {
    let Some(v) = req.headers().get("Last-Event-ID") else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request(codes::INVALID_ID, "Last-Event-ID must be height:index");
    let s = v.to_str().map_err(|_| bad())?;
    let (h, i) = s.split_once(':').ok_or_else(bad)?;
    Ok(Some((
        h.parse().map_err(|_| bad())?,
        i.parse().map_err(|_| bad())?,
    )))
}

/// Server-Sent Events: `transaction` events for committed and rejected
/// transactions and `domain_event` events, each with id `height:index`.
/// Reconnect with `Last-Event-ID` to resume after the last one received.
#[utoipa::path(
    tag = "events",
    params(
        EventParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this `height:index`"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad parameters", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another organization's partition", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/events")]
pub async fn events(
    api: web::Data<Api>,
    caller: Caller,
    req: HttpRequest,
    params: web::Query<EventParams>,
) -> Result<HttpResponse, ApiError> {
    let partition = params
        .partition
        .as_deref()
        .map(PartitionId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(codes::INVALID_QUERY, e.to_string()))?;
    if let Some(p) = &partition {
        caller.require_read(&p.org)?;
    }
    let (transactions, domain_events) = match params.kind.as_deref() {
        None => (true, true),
        Some("transaction") => (true, false),
        Some("domain_event") => (false, true),
        Some(other) => {
            return Err(ApiError::bad_request(
                codes::INVALID_QUERY,
                format!("type must be transaction or domain_event, not {other:?}"),
            ))
        }
    };
    let resume = parse_last_event_id(&req)?;
    // Subscribe before reading the tip, so that nothing falls in between.
    let rx = api.events.sender.subscribe();
    let (phase, after) = match (resume, params.from_height) {
        (Some(at), _) => (Phase::Replay { next: at.0.max(1) }, at),
        (None, Some(h)) => (
            Phase::Replay { next: h.max(1) },
            (h.saturating_sub(1), u32::MAX),
        ),
        (None, None) => {
            let tip = api.status.read().map(|s| s.height).unwrap_or(0);
            (Phase::Live, (tip, u32::MAX))
        }
    };
    let state = Stream {
        api: api.clone(),
        filter: Filter {
            caller,
            partition,
            transactions,
            domain_events,
        },
        rx,
        phase,
        after,
        started: false,
        stopping: api.stopping(),
    };
    let body = futures_util::stream::unfold(state, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((chunk, s))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(events);
}

//! Node-to-node transport: opaque messages between the nodes of a cluster,
//! over TCP with mutual TLS.
//!
//! **Identity.** Node ids are `u64` (raft-rs's). A node's certificate names
//! its id as the DNS subject alternative name `node-{id}.parledger`
//! ([`node_name`]). A DNS name rather than a URI SAN because it is what
//! rustls and webpki verify natively: the dialer verifies the listener with
//! the ordinary server-name check against `ServerName` `node-{id}.parledger`,
//! so no hand-written name matching stands between a node and an impostor.
//! Both sides verify the chain against the consortium CA bundle and then the
//! identity: a certificate must name exactly one node, literally (a wildcard
//! such as `*.parledger`, which webpki's name check would accept, names no
//! node), the dialer requires it to be the node it dialed, and the listener
//! requires a current peer (see **Membership**). The sender of every
//! inbound message is the id read from the connection's certificate, never
//! anything in the payload.
//! Certificates carry both the server and client extended key usages, since
//! every node both listens and dials. Only TLS 1.3 is offered: every node
//! runs this code, so there is no older peer to accommodate.
//!
//! **Connections.** Each node dials one outbound connection per current
//! peer and writes its messages on it; it reads what peers send on the
//! connections they dialed. So each direction of each pair has its own
//! connection, and the messages of one sender arrive in the order they were
//! sent. The listener writes exactly one byte, [`PROTOCOL_VERSION`], once it
//! has admitted the dialer, and the dialer counts itself connected only when
//! it has read it: in TLS 1.3 a client finishes its handshake before the
//! server has judged the client's certificate, so without the byte a refused
//! dialer would believe itself connected and write into a closing
//! connection. Anything else read on an outbound connection ends it. A
//! lost connection is redialed with exponential backoff and jitter
//! ([`Backoff`]); messages queued meanwhile wait (within the queue's
//! bounds) and leave once it is back. A listener keeps one inbound
//! connection per peer: a newer one replaces the older, which after a
//! peer's crash may be half-open.
//!
//! **Membership.** The peer set is dynamic, for Raft membership changes:
//! [`TransportConfig::peers`] are the founding peers, and
//! [`Transport::add_peer`] and [`Transport::remove_peer`] change the set at
//! runtime. One map (id → peer), behind a read-write lock, is the set that
//! `send`, the listener's certificate verifier and the inbound connections
//! all consult, so they never disagree about who is a peer. Adding a peer
//! admits its certificate from then on and starts its writer; adding it
//! again at another address replaces it (the old writer stops and its queue
//! is dropped). Removing a peer stops its writer (its outbound connection
//! closes), drops its queue, refuses its certificate from then on and
//! closes its current inbound connection; `send` to it is then
//! [`TransportError::UnknownPeer`]. A removal racing with the admission of
//! that peer's connection cannot leave the connection open: admission
//! checks the set again under the lock of the live-connection table, and a
//! removal leaves the set before it closes what that table holds.
//!
//! **Frames.** A message is a frame: its length as a big-endian `u32`, then
//! the payload. A frame longer than `frame_bytes_max` is a protocol error
//! that closes the connection (the limit must be the same on every node).
//!
//! **Queues.** [`Transport::send`] never blocks: it appends to the peer's
//! bounded queue, dropping the *oldest* messages when the queue is full (by
//! count or bytes). Raft tolerates lost messages and the newest carry the
//! most recent term and commit index; each drop is counted in
//! `parledger_peer_messages_dropped_total{peer}`. The peer's writer takes
//! everything queued (up to `batch_bytes_max`) and writes it as one TLS
//! write. Messages in a batch whose write fails are lost, not retried.
//! Inbound messages from all peers share one bounded channel; when its
//! consumer falls behind, readers stop reading and TCP pushes back to the
//! senders, whose queues then drop.
//!
//! **Failure and limits.** Every wait has a bound: handshakes
//! (`handshake_timeout_ms`), writes (`write_timeout_ms`: a peer that accepts
//! nothing for that long is treated as gone), inbound connections at once
//! (`inbound_connections_max`, handshakes included). Logs name peers and
//! addresses, never payloads.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// A node's id in the cluster (raft-rs's `u64`).
pub type NodeId = u64;

/// Messages one peer's queue holds at most.
pub const QUEUE_LEN_MAX: usize = 1024;
/// Payload bytes one peer's queue holds at most; at least one frame, so
/// that any message `send` accepts fits.
pub const QUEUE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Bytes the writer gathers into one write. A larger single message is
/// written alone.
pub const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Payload bytes of one frame. The reader refuses a longer length before
/// allocating anything for it.
pub const FRAME_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// Inbound messages (from all peers) waiting for the consumer.
pub const INBOUND_LEN_MAX: usize = 4096;
/// Inbound connections open at once, handshakes included: peers need one
/// each, the rest is room for reconnections and strays.
pub const INBOUND_CONNECTIONS_MAX: usize = 64;
/// Longest a dial (TCP connect and TLS handshake) or an inbound handshake
/// may take.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Longest one batch write may take before the connection is given up.
pub const WRITE_TIMEOUT_MS: u64 = 10_000;
/// First redial delay after a lost connection or a failed dial.
pub const BACKOFF_MS_MIN: u64 = 100;
/// Longest redial delay: a peer that comes back is reached within this.
pub const BACKOFF_MS_MAX: u64 = 3_000;
/// A connection that lasted this long was healthy: the next loss redials
/// from the shortest delay again. Shorter-lived ones (a peer that accepts
/// and then refuses us) keep the backoff growing.
pub const HEALTHY_CONNECTION_MS: u64 = 1_000;
/// Read buffer of an inbound connection: many small frames per read call.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Pause after a failed `accept` (out of file descriptors), so that the
/// listener does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 100;

/// The byte a listener sends to admit a dialer: the version of this wire
/// format (frames as described above), so that a future format can be
/// refused cleanly instead of misread.
pub const PROTOCOL_VERSION: u8 = 1;

const NODE_NAME_PREFIX: &str = "node-";
const NODE_NAME_SUFFIX: &str = ".parledger";

/// The DNS name that identifies node `id` in certificates.
pub fn node_name(id: NodeId) -> String {
    format!("{NODE_NAME_PREFIX}{id}{NODE_NAME_SUFFIX}")
}

/// The node a DNS name identifies: only the canonical spelling
/// [`node_name`] writes (DNS names compare without case), so that one id
/// has one name and `node-01` cannot pass for `node-1`.
pub fn parse_node_name(name: &str) -> Option<NodeId> {
    let name = name.to_ascii_lowercase();
    let digits = name
        .strip_prefix(NODE_NAME_PREFIX)?
        .strip_suffix(NODE_NAME_SUFFIX)?;
    let id: NodeId = digits.parse().ok()?;
    (id.to_string() == digits).then_some(id)
}

/// Why a certificate does not identify an acceptable node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error("the certificate names no node (a DNS name node-{{id}}.parledger)")]
    NoNode,
    #[error("the certificate names several nodes: {0:?}")]
    SeveralNodes(Vec<NodeId>),
    #[error("the certificate names node {named}, not node {expected}")]
    WrongNode { expected: NodeId, named: NodeId },
    #[error("node {0} is not a peer")]
    UnknownNode(NodeId),
}

/// The one node `cert` names (see the module documentation).
pub fn certificate_node(cert: &CertificateDer<'_>) -> Result<NodeId, IdentityError> {
    let cert = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let named: BTreeSet<NodeId> = cert.valid_dns_names().filter_map(parse_node_name).collect();
    let mut ids = named.iter().copied();
    match (ids.next(), ids.next()) {
        (Some(id), None) => Ok(id),
        (None, _) => Err(IdentityError::NoNode),
        (Some(_), Some(_)) => Err(IdentityError::SeveralNodes(named.into_iter().collect())),
    }
}

fn refused(e: IdentityError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(e))))
}

/// The dialer's check: the consortium chain and the server name (webpki),
/// then that the certificate names exactly the node dialed.
#[derive(Debug)]
struct PeerServerVerifier {
    chain: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let expected = match server_name {
            ServerName::DnsName(name) => parse_node_name(name.as_ref()),
            _ => None,
        }
        .ok_or(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ))?;
        match certificate_node(end_entity).map_err(refused)? {
            named if named == expected => Ok(verified),
            named => Err(refused(IdentityError::WrongNode { expected, named })),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The listener's check: the consortium chain (webpki), then that the
/// certificate names exactly one node and that it is a current peer.
/// Refusing inside the handshake means an impostor never gets as far as
/// sending a frame.
#[derive(Debug)]
struct PeerClientVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    /// The transport's own set, so that `add_peer` and `remove_peer` take
    /// effect on the next handshake.
    peers: Arc<PeerSet>,
}

impl PeerClientVerifier {
    fn identify(&self, cert: &CertificateDer<'_>) -> Result<NodeId, IdentityError> {
        let id = certificate_node(cert)?;
        if self.peers.contains(id) {
            Ok(id)
        } else {
            Err(IdentityError::UnknownNode(id))
        }
    }
}

impl ClientCertVerifier for PeerClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        self.identify(end_entity).map_err(refused)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// A node's TLS material, PEM: its certificate (chain), its private key and
/// the consortium CA bundle.
#[derive(Clone)]
pub struct TlsMaterial {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub ca_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Reads the three PEM files.
    pub fn from_files(cert: &Path, key: &Path, ca: &Path) -> Result<TlsMaterial, TransportError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TransportError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        Ok(TlsMaterial {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            ca_pem: read(ca)?,
        })
    }
}

/// The named bounds of a transport (defaults: the constants above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLimits {
    pub queue_len_max: usize,
    pub queue_bytes_max: usize,
    pub batch_bytes_max: usize,
    pub frame_bytes_max: u32,
    pub inbound_len_max: usize,
    pub inbound_connections_max: usize,
    pub handshake_timeout_ms: u64,
    pub write_timeout_ms: u64,
    pub backoff_ms_min: u64,
    pub backoff_ms_max: u64,
    pub healthy_connection_ms: u64,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            queue_len_max: QUEUE_LEN_MAX,
            queue_bytes_max: QUEUE_BYTES_MAX,
            batch_bytes_max: BATCH_BYTES_MAX,
            frame_bytes_max: FRAME_BYTES_MAX,
            inbound_len_max: INBOUND_LEN_MAX,
            inbound_connections_max: INBOUND_CONNECTIONS_MAX,
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS,
            write_timeout_ms: WRITE_TIMEOUT_MS,
            backoff_ms_min: BACKOFF_MS_MIN,
            backoff_ms_max: BACKOFF_MS_MAX,
            healthy_connection_ms: HEALTHY_CONNECTION_MS,
        }
    }
}

impl TransportLimits {
    fn check(&self) -> Result<(), TransportError> {
        let bad = |what: &str| Err(TransportError::Config(what.to_string()));
        if self.queue_len_max == 0
            || self.batch_bytes_max == 0
            || self.frame_bytes_max == 0
            || self.inbound_len_max == 0
            || self.inbound_connections_max == 0
        {
            return bad("queue, batch, frame, inbound and connection limits must be positive");
        }
        if self.queue_bytes_max < self.frame_bytes_max as usize {
            return bad("queue_bytes_max must hold at least one frame (frame_bytes_max)");
        }
        if self.handshake_timeout_ms == 0 || self.write_timeout_ms == 0 {
            return bad("timeouts must be positive");
        }
        if self.backoff_ms_min == 0 || self.backoff_ms_min > self.backoff_ms_max {
            return bad("backoff bounds must satisfy 0 < backoff_ms_min <= backoff_ms_max");
        }
        Ok(())
    }
}

/// What a node needs to join the mesh.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// This node; its certificate must name it.
    pub node_id: NodeId,
    /// Where peers dial this node.
    pub listen: SocketAddr,
    /// The founding peers: id → `host:port`, resolved again at each dial
    /// so that a peer that moves in DNS is followed. [`Transport::add_peer`]
    /// and [`Transport::remove_peer`] change the set later.
    pub peers: BTreeMap<NodeId, String>,
    pub tls: TlsMaterial,
    pub limits: TransportLimits,
}

/// Why a transport cannot start, or a message cannot be sent. Each has a
/// stable code ([`TransportError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS material: {0}")]
    Tls(String),
    #[error("this node's certificate: {0}")]
    OwnIdentity(IdentityError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("node {0} is not a peer")]
    UnknownPeer(NodeId),
    #[error("a message of {len} bytes exceeds the frame limit of {max} bytes")]
    FrameTooLarge { len: usize, max: u32 },
    #[error("the transport has stopped")]
    Stopped,
}

impl TransportError {
    /// The stable code logs and metrics carry.
    pub fn code(&self) -> &'static str {
        match self {
            TransportError::Read { .. } => "TRANSPORT:READ",
            TransportError::Tls(_) => "TRANSPORT:TLS",
            TransportError::OwnIdentity(_) => "TRANSPORT:OWN_IDENTITY",
            TransportError::Config(_) => "TRANSPORT:CONFIG",
            TransportError::Listen { .. } => "TRANSPORT:LISTEN",
            TransportError::UnknownPeer(_) => "TRANSPORT:UNKNOWN_PEER",
            TransportError::FrameTooLarge { .. } => "TRANSPORT:FRAME_TOO_LARGE",
            TransportError::Stopped => "TRANSPORT:STOPPED",
        }
    }
}

/// A message from a peer; `from` is the id its certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub from: NodeId,
    pub payload: Vec<u8>,
}

/// A peer's state as the Raft runtime may want it (an unreachable peer is
/// reported to raft-rs) and as the tests check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStats {
    /// An outbound connection is established.
    pub connected: bool,
    pub queued_len: usize,
    pub queued_bytes: usize,
    /// Messages dropped from the full queue since start.
    pub dropped: u64,
    /// Messages handed to TLS, and the writes that carried them.
    pub sent_messages: u64,
    pub sent_batches: u64,
    /// Dials that failed (connect, handshake or refused identity).
    pub dial_failures: u64,
}

/// Redial delays: doubling from `min` to `max`, each one drawn in the upper
/// half of its step ("equal jitter"), so that the nodes that lost the same
/// peer spread their dials without any of them retrying sooner than half
/// the step. Seeded per (node, peer) pair, so a schedule is reproducible.
#[derive(Debug)]
pub struct Backoff {
    min_ms: u64,
    max_ms: u64,
    step_ms: u64,
    rng: rand_chacha::ChaCha8Rng,
}

impl Backoff {
    pub fn new(min_ms: u64, max_ms: u64, seed: u64) -> Backoff {
        use rand::SeedableRng;
        Backoff {
            min_ms,
            max_ms,
            step_ms: min_ms,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next delay, in `[step / 2, step]`; the step then doubles up to
    /// `max`.
    pub fn next_delay(&mut self) -> Duration {
        use rand::Rng;
        let step = self.step_ms;
        self.step_ms = step.saturating_mul(2).min(self.max_ms);
        let half = step / 2;
        Duration::from_millis(half + self.rng.random_range(0..=step - half))
    }

    pub fn reset(&mut self) {
        self.step_ms = self.min_ms;
    }
}

/// One peer's outbound side: its queue and counters, shared by `send` and
/// the peer's writer task.
struct Peer {
    id: NodeId,
    addr: String,
    label: String,
    queue: Mutex<Queue>,
    /// Wakes the writer when something is queued.
    ready: Notify,
    connected: AtomicBool,
    dropped: AtomicU64,
    sent_messages: AtomicU64,
    sent_batches: AtomicU64,
    dial_failures: AtomicU64,
    /// Set once the peer is removed or replaced: its writer then stops.
    retired: watch::Sender<bool>,
}

#[derive(Default)]
struct Queue {
    messages: VecDeque<Vec<u8>>,
    bytes: usize,
}

/// Queue operations are short and never await, so a plain mutex; a panic
/// while holding it cannot leave the queue inconsistent beyond a message,
/// so a poisoned lock is used as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Peer {
    fn new(id: NodeId, addr: String) -> Peer {
        Peer {
            id,
            addr,
            label: id.to_string(),
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            connected: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            sent_messages: AtomicU64::new(0),
            sent_batches: AtomicU64::new(0),
            dial_failures: AtomicU64::new(0),
            retired: watch::channel(false).0,
        }
    }

    /// Stops the writer and drops the queue, once the peer has left the
    /// set. A `send` that read the set just before may still queue a
    /// message here; nothing writes it, and it goes with the last `Arc`.
    fn retire(&self) {
        self.retired.send_replace(true);
        let mut q = lock(&self.queue);
        q.messages = VecDeque::new();
        q.bytes = 0;
    }

    /// Appends `payload`, dropping the oldest messages until both bounds
    /// hold. Returns how many were dropped.
    fn enqueue(&self, payload: Vec<u8>, limits: &TransportLimits) -> u64 {
        let mut dropped = 0;
        {
            let mut q = lock(&self.queue);
            while !q.messages.is_empty()
                && (q.messages.len() >= limits.queue_len_max
                    || q.bytes + payload.len() > limits.queue_bytes_max)
            {
                if let Some(old) = q.messages.pop_front() {
                    q.bytes -= old.len();
                    dropped += 1;
                }
            }
            q.bytes += payload.len();
            q.messages.push_back(payload);
        }
        self.ready.notify_one();
        dropped
    }

    /// Moves the next batch out of the queue: messages in order until
    /// `batch_bytes_max` (framed) would be exceeded, at least one.
    fn take_batch(&self, out: &mut Vec<Vec<u8>>, batch_bytes_max: usize) {
        let mut q = lock(&self.queue);
        let mut bytes = 0usize;
        while let Some(front) = q.messages.front() {
            let framed = 4 + front.len();
            if !out.is_empty() && bytes + framed > batch_bytes_max {
                break;
            }
            bytes += framed;
            if let Some(m) = q.messages.pop_front() {
                q.bytes -= m.len();
                out.push(m);
            }
        }
    }

    fn stats(&self) -> PeerStats {
        let (queued_len, queued_bytes) = {
            let q = lock(&self.queue);
            (q.messages.len(), q.bytes)
        };
        PeerStats {
            connected: self.connected.load(Ordering::Relaxed),
            queued_len,
            queued_bytes,
            dropped: self.dropped.load(Ordering::Relaxed),
            sent_messages: self.sent_messages.load(Ordering::Relaxed),
            sent_batches: self.sent_batches.load(Ordering::Relaxed),
            dial_failures: self.dial_failures.load(Ordering::Relaxed),
        }
    }
}

/// The current peers, by id: the one set that `send`, the listener's
/// verifier and the inbound connections consult (see **Membership** in the
/// module documentation). Readers take the read lock briefly and clone what
/// they need; only `add_peer` and `remove_peer` write.
#[derive(Default)]
struct PeerSet(RwLock<BTreeMap<NodeId, Arc<Peer>>>);

impl std::fmt::Debug for PeerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.read().keys()).finish()
    }
}

impl PeerSet {
    /// A write is one insert or one remove, which a panic cannot leave half
    /// done, so a poisoned lock is used as it is (as [`lock`] does).
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<NodeId, Arc<Peer>>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<NodeId, Arc<Peer>>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, id: NodeId) -> Option<Arc<Peer>> {
        self.read().get(&id).cloned()
    }

    fn contains(&self, id: NodeId) -> bool {
        self.read().contains_key(&id)
    }
}

/// The live inbound connection of each peer: its sequence number and the
/// sender that closes it, by being dropped (a newer connection replaced it)
/// or by sending (the peer was removed).
type CurrentConnections = Mutex<HashMap<NodeId, (u64, oneshot::Sender<()>)>>;

/// A running transport. Cheap to clone; the tasks stop on
/// [`Transport::shutdown`] or when the last clone is dropped.
#[derive(Clone)]
pub struct Transport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.shared.node_id)
            .field("local_addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

struct Shared {
    node_id: NodeId,
    local_addr: SocketAddr,
    limits: TransportLimits,
    peers: Arc<PeerSet>,
    /// Shared with the listener, so that `remove_peer` can close the
    /// removed peer's inbound connection.
    current: Arc<CurrentConnections>,
    /// The TLS configurations new connections use (both directions),
    /// replaced by `reload_tls`.
    tls: Arc<TlsPair>,
    /// The runtime the transport started on, so that `add_peer` can start a
    /// writer from any thread.
    runtime: tokio::runtime::Handle,
    stop: watch::Sender<bool>,
    /// The listener and every writer, `add_peer`'s included: `shutdown`
    /// waits for them all.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Resolves once the transport stops (or every handle to it is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: that is a stop too.
    let _ = stop.wait_for(|s| *s).await;
}

impl Transport {
    /// Binds `config.listen` and starts: the listener, and one writer per
    /// peer. Must run inside a tokio runtime.
    pub async fn start(
        config: TransportConfig,
    ) -> Result<(Transport, mpsc::Receiver<Inbound>), TransportError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| TransportError::Listen {
                    addr: config.listen,
                    source,
                })?;
        Transport::start_on(config, listener)
    }

    /// Starts on a listener the caller bound already (`config.listen` is
    /// then only informative): tests bind port 0 first to learn every
    /// node's address before any node starts. Must run inside a tokio
    /// runtime, which the transport's tasks then run on.
    pub fn start_on(
        config: TransportConfig,
        listener: TcpListener,
    ) -> Result<(Transport, mpsc::Receiver<Inbound>), TransportError> {
        let TransportConfig {
            node_id,
            listen,
            peers: founding,
            tls,
            limits,
        } = config;
        limits.check()?;
        if founding.contains_key(&node_id) {
            return Err(TransportError::Config(format!(
                "node {node_id} lists itself as a peer"
            )));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            TransportError::Config("the transport must start inside a tokio runtime".into())
        })?;
        let peers = Arc::new(PeerSet::default());
        let tls = Arc::new(TlsPair(std::sync::RwLock::new(tls_configs(
            node_id,
            &tls,
            peers.clone(),
        )?)));
        let local_addr = listener
            .local_addr()
            .map_err(|source| TransportError::Listen {
                addr: listen,
                source,
            })?;

        let (stop, stop_rx) = watch::channel(false);
        let (inbound_tx, inbound_rx) = mpsc::channel(limits.inbound_len_max);
        let current = Arc::new(CurrentConnections::default());
        let inbound = Arc::new(InboundContext {
            node_id,
            limits,
            peers: peers.clone(),
            inbound: inbound_tx,
            current: current.clone(),
        });
        let listener = runtime.spawn(run_listener(listener, tls.clone(), inbound, stop_rx));
        let founding_len = founding.len();
        let shared = Shared {
            node_id,
            local_addr,
            limits,
            peers,
            current,
            tls,
            runtime,
            stop,
            tasks: Mutex::new(vec![listener]),
        };
        let transport = Transport {
            shared: Arc::new(shared),
        };
        for (id, addr) in founding {
            // Cannot fail: the id is not this node's (checked above) and
            // nothing has stopped the transport yet.
            transport.add_peer(id, addr)?;
        }
        tracing::info!(node_id, %local_addr, peers = founding_len, "cluster transport listening");
        Ok((transport, inbound_rx))
    }

    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Queues `payload` for peer `to`; never blocks, and may be called from
    /// any thread (a Raft loop on its own thread included). When the queue
    /// is full the oldest messages are dropped (and counted) to make room.
    /// `Ok` means queued, not delivered.
    pub fn send(&self, to: NodeId, payload: Vec<u8>) -> Result<(), TransportError> {
        let limits = &self.shared.limits;
        if payload.len() > limits.frame_bytes_max as usize {
            return Err(TransportError::FrameTooLarge {
                len: payload.len(),
                max: limits.frame_bytes_max,
            });
        }
        if *self.shared.stop.borrow() {
            return Err(TransportError::Stopped);
        }
        let peer = self
            .shared
            .peers
            .get(to)
            .ok_or(TransportError::UnknownPeer(to))?;
        let dropped = peer.enqueue(payload, limits);
        if dropped > 0 {
            peer.dropped.fetch_add(dropped, Ordering::Relaxed);
            metrics::counter!("parledger_peer_messages_dropped_total", "peer" => peer.label.clone())
                .increment(dropped);
        }
        Ok(())
    }

    /// Peer `id`'s state, or `None` when it is not a peer.
    pub fn peer_stats(&self, id: NodeId) -> Option<PeerStats> {
        self.shared.peers.get(id).map(|p| p.stats())
    }

    /// Replaces this node's certificate, key and CA bundle (a rotation):
    /// connections opened from now on, in both directions, use the new
    /// material; open ones keep theirs until they close. Refused, with
    /// nothing changed, when the material is unusable or names another node.
    pub fn reload_tls(&self, material: &TlsMaterial) -> Result<(), TransportError> {
        let pair = tls_configs(self.shared.node_id, material, self.shared.peers.clone())?;
        self.shared.tls.replace(pair);
        tracing::info!(
            node_id = self.shared.node_id,
            "cluster TLS material reloaded"
        );
        Ok(())
    }

    /// The current peers and their addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, String> {
        self.shared
            .peers
            .read()
            .iter()
            .map(|(id, p)| (*id, p.addr.clone()))
            .collect()
    }

    /// Makes `id` a peer at `addr`: the listener admits its certificate
    /// from now on, and a writer starts dialing `addr`. A peer already at
    /// `addr` is left as it is (`Ok(false)`); one at another address is
    /// replaced (`Ok(true)`): its writer stops and the messages queued for
    /// it are dropped, while its inbound connection, if any, stays. Never
    /// blocks on the network, and may be called from any thread.
    pub fn add_peer(&self, id: NodeId, addr: String) -> Result<bool, TransportError> {
        let shared = &self.shared;
        if id == shared.node_id {
            return Err(TransportError::Config(format!(
                "node {id} cannot be its own peer"
            )));
        }
        // Under the task list's lock, so that a concurrent `shutdown`
        // either waits for the writer started here or has stopped the
        // transport before this looks.
        let mut tasks = lock(&shared.tasks);
        if *shared.stop.borrow() {
            return Err(TransportError::Stopped);
        }
        let peer = Arc::new(Peer::new(id, addr));
        let replaced = {
            let mut peers = shared.peers.write();
            if peers.get(&id).is_some_and(|old| old.addr == peer.addr) {
                return Ok(false);
            }
            peers.insert(id, peer.clone())
        };
        if let Some(old) = &replaced {
            old.retire();
            tracing::info!(
                node_id = shared.node_id,
                peer = id,
                old_addr = %old.addr,
                addr = %peer.addr,
                "peer moved"
            );
        } else {
            tracing::info!(node_id = shared.node_id, peer = id, addr = %peer.addr, "peer added");
        }
        // Writers of removed and replaced peers have ended or are ending;
        // keep the list as long as the peer set, not its history.
        tasks.retain(|t| !t.is_finished());
        tasks.push(shared.runtime.spawn(run_peer(
            shared.node_id,
            peer,
            shared.tls.clone(),
            shared.limits,
            shared.stop.subscribe(),
        )));
        Ok(true)
    }

    /// Makes `id` no longer a peer: its writer stops (closing the outbound
    /// connection), its queue is dropped, the listener refuses its
    /// certificate from now on and its current inbound connection closes.
    /// `send` to it is then [`TransportError::UnknownPeer`]. Returns
    /// whether it was a peer. Never blocks on the network, and may be
    /// called from any thread.
    pub fn remove_peer(&self, id: NodeId) -> bool {
        let Some(peer) = self.shared.peers.write().remove(&id) else {
            return false;
        };
        peer.retire();
        // Only now that the set refuses the id: a connection being admitted
        // concurrently is then either in this table already, or will find
        // the id gone when it takes the table's lock (`serve_inbound`).
        if let Some((_, close)) = lock(&self.shared.current).remove(&id) {
            // The receiver may have gone with its connection already.
            let _ = close.send(());
        }
        tracing::info!(node_id = self.shared.node_id, peer = id, addr = %peer.addr, "peer removed");
        true
    }

    /// Stops every task and waits for them: connections close and the
    /// listening socket is released when this returns. Idempotent.
    pub async fn shutdown(&self) {
        self.shared.stop.send_replace(true);
        let tasks = std::mem::take(&mut *lock(&self.shared.tasks));
        for task in tasks {
            // A task that panicked has stopped as well.
            let _ = task.await;
        }
        tracing::info!(node_id = self.shared.node_id, "cluster transport stopped");
    }
}

/// The listener's and the dialers' TLS configurations, replaced whole when
/// the node's certificate is rotated; connections already open keep theirs.
struct TlsPair(std::sync::RwLock<(tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector)>);

impl TlsPair {
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        match self.0.read() {
            Ok(p) => p.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    fn connector(&self) -> tokio_rustls::TlsConnector {
        match self.0.read() {
            Ok(p) => p.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    fn replace(&self, pair: (tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector)) {
        match self.0.write() {
            Ok(mut p) => *p = pair,
            Err(poisoned) => *poisoned.into_inner() = pair,
        }
    }
}

fn tls_configs(
    node_id: NodeId,
    tls: &TlsMaterial,
    peers: Arc<PeerSet>,
) -> Result<(tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector), TransportError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| TransportError::Tls(format!("{what}: {e}"));
    let certs = rustls_pemfile::certs(&mut tls.cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("parsing the node certificate", &e))?;
    let own = certs
        .first()
        .ok_or_else(|| TransportError::Tls("no node certificate in the PEM".into()))?;
    match certificate_node(own) {
        Ok(id) if id == node_id => {}
        Ok(named) => {
            return Err(TransportError::OwnIdentity(IdentityError::WrongNode {
                expected: node_id,
                named,
            }))
        }
        Err(e) => return Err(TransportError::OwnIdentity(e)),
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut tls.key_pem.as_slice())
        .map_err(|e| bad("parsing the node key", &e))?
        .ok_or_else(|| TransportError::Tls("no private key in the PEM".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut tls.ca_pem.as_slice()) {
        let ca = ca.map_err(|e| bad("parsing the CA bundle", &e))?;
        roots
            .add(ca)
            .map_err(|e| bad("adding a CA certificate", &e))?;
    }
    if roots.is_empty() {
        return Err(TransportError::Tls(
            "no certificate in the CA bundle".into(),
        ));
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

    let client_chain = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| bad("the client verifier", &e))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| bad("the server configuration", &e))?
        .with_client_cert_verifier(Arc::new(PeerClientVerifier {
            chain: client_chain,
            peers,
        }))
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(|e| bad("the node certificate and key", &e))?;
    // Connections are long-lived and never resumed.
    server.send_tls13_tickets = 0;

    let server_chain =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| bad("the server verifier", &e))?;
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| bad("the client configuration", &e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerServerVerifier {
            chain: server_chain,
        }))
        .with_client_auth_cert(certs, key)
        .map_err(|e| bad("the node certificate and key", &e))?;
    client.resumption = rustls::client::Resumption::disabled();
    Ok((
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        tokio_rustls::TlsConnector::from(Arc::new(client)),
    ))
}

// ---------------------------------------------------------------- outbound

/// Why an outbound connection ended.
enum Ended {
    /// The transport stopped or the peer was retired.
    Stopped,
    Lost(String),
}

/// What ends a writer: the transport's stop, or its peer's removal or
/// replacement ([`Peer::retire`]).
struct WriterStop {
    transport: watch::Receiver<bool>,
    retired: watch::Receiver<bool>,
}

impl WriterStop {
    /// Resolves once either has happened (at once if one has already).
    async fn wait(&mut self) {
        tokio::select! {
            _ = stopped(&mut self.transport) => {}
            _ = stopped(&mut self.retired) => {}
        }
    }
}

/// One peer's writer: dial, send batches until the connection is lost,
/// back off, dial again; until the transport stops or the peer is retired.
async fn run_peer(
    node_id: NodeId,
    peer: Arc<Peer>,
    tls: Arc<TlsPair>,
    limits: TransportLimits,
    stop: watch::Receiver<bool>,
) {
    let mut stop = WriterStop {
        transport: stop,
        retired: peer.retired.subscribe(),
    };
    let mut backoff = Backoff::new(
        limits.backoff_ms_min,
        limits.backoff_ms_max,
        node_id.rotate_left(32) ^ peer.id,
    );
    let Ok(server_name) = ServerName::try_from(node_name(peer.id)) else {
        // `node_name` always forms a valid DNS name; nothing to dial otherwise.
        tracing::error!(node_id, peer = peer.id, "no valid server name for peer");
        return;
    };
    // Failed dials in a row: the first is a warning, the rest are debug
    // lines, so that a peer that is down does not flood the log.
    let mut failures = 0u64;
    loop {
        // The configuration in force now: a rotated certificate applies
        // from the next dial.
        let connector = tls.connector();
        let dialed = tokio::select! {
            _ = stop.wait() => return,
            r = dial(&peer, &connector, server_name.clone(), &limits) => r,
        };
        match dialed {
            Ok(stream) => {
                failures = 0;
                peer.connected.store(true, Ordering::Relaxed);
                tracing::info!(node_id, peer = peer.id, addr = %peer.addr, "connected to peer");
                let began = tokio::time::Instant::now();
                let ended = write_batches(&peer, stream, &limits, &mut stop).await;
                peer.connected.store(false, Ordering::Relaxed);
                match ended {
                    Ended::Stopped => return,
                    Ended::Lost(why) => {
                        tracing::info!(
                            node_id,
                            peer = peer.id,
                            addr = %peer.addr,
                            reason = %why,
                            "disconnected from peer"
                        );
                    }
                }
                if began.elapsed() >= Duration::from_millis(limits.healthy_connection_ms) {
                    backoff.reset();
                }
            }
            Err(e) => {
                failures += 1;
                peer.dial_failures.fetch_add(1, Ordering::Relaxed);
                if failures == 1 {
                    tracing::warn!(
                        node_id,
                        peer = peer.id,
                        addr = %peer.addr,
                        error = %e,
                        "cannot reach peer; retrying with backoff"
                    );
                } else {
                    tracing::debug!(
                        node_id,
                        peer = peer.id,
                        addr = %peer.addr,
                        error = %e,
                        failures,
                        "cannot reach peer"
                    );
                }
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

type OutboundStream = tokio_rustls::client::TlsStream<TcpStream>;

async fn dial(
    peer: &Peer,
    connector: &tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    limits: &TransportLimits,
) -> std::io::Result<OutboundStream> {
    let attempt = async {
        let tcp = TcpStream::connect(peer.addr.as_str()).await?;
        tcp.set_nodelay(true)?;
        let mut stream = connector.connect(server_name, tcp).await?;
        // Admitted only once the listener says so (see the module docs).
        match stream.read_u8().await? {
            PROTOCOL_VERSION => Ok(stream),
            v => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the peer speaks protocol version {v}, not {PROTOCOL_VERSION}"),
            )),
        }
    };
    tokio::time::timeout(Duration::from_millis(limits.handshake_timeout_ms), attempt)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

/// Writes the peer's queue, batch by batch, until the connection is lost,
/// the transport stops or the peer is retired. Past its admission byte the listener never writes
/// on this connection, so anything read (end of stream, an alert, data)
/// means it is over.
async fn write_batches(
    peer: &Peer,
    stream: OutboundStream,
    limits: &TransportLimits,
    stop: &mut WriterStop,
) -> Ended {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut messages = Vec::new();
    let mut batch = Vec::new();
    let mut probe = [0u8; 1];
    let write_timeout = Duration::from_millis(limits.write_timeout_ms);
    loop {
        loop {
            messages.clear();
            peer.take_batch(&mut messages, limits.batch_bytes_max);
            if messages.is_empty() {
                break;
            }
            batch.clear();
            for m in &messages {
                // `send` refused anything longer than a frame (a u32).
                let Ok(len) = u32::try_from(m.len()) else {
                    continue;
                };
                batch.extend_from_slice(&len.to_be_bytes());
                batch.extend_from_slice(m);
            }
            let write = async {
                writer.write_all(&batch).await?;
                writer.flush().await
            };
            tokio::select! {
                _ = stop.wait() => return Ended::Stopped,
                r = tokio::time::timeout(write_timeout, write) => match r {
                    Err(_) => return Ended::Lost("write timed out".into()),
                    Ok(Err(e)) => return Ended::Lost(e.to_string()),
                    Ok(Ok(())) => {
                        peer.sent_messages.fetch_add(messages.len() as u64, Ordering::Relaxed);
                        peer.sent_batches.fetch_add(1, Ordering::Relaxed);
                    }
                },
            }
            // One oversized message must not pin a large buffer for good.
            if batch.capacity() > 2 * limits.batch_bytes_max {
                batch = Vec::new();
            }
        }
        tokio::select! {
            _ = stop.wait() => {
                // Best effort close_notify; the stop does not wait on a peer.
                let _ = tokio::time::timeout(Duration::from_millis(100), writer.shutdown()).await;
                return Ended::Stopped;
            }
            _ = peer.ready.notified() => {}
            r = reader.read(&mut probe) => {
                return Ended::Lost(match r {
                    Ok(0) => "closed by the peer".into(),
                    Ok(_) => "the peer wrote on a send-only connection".into(),
                    Err(e) => e.to_string(),
                });
            }
        }
    }
}

// ----------------------------------------------------------------- inbound

/// What inbound connections share.
struct InboundContext {
    node_id: NodeId,
    limits: TransportLimits,
    peers: Arc<PeerSet>,
    inbound: mpsc::Sender<Inbound>,
    current: Arc<CurrentConnections>,
}

async fn run_listener(
    listener: TcpListener,
    tls: Arc<TlsPair>,
    ctx: Arc<InboundContext>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(ctx.limits.inbound_connections_max));
    let mut connections = JoinSet::new();
    let mut seq = 0u64;
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = stopped(&mut stop) => break,
            r = listener.accept() => r,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(
                    node_id = ctx.node_id,
                    error = %e,
                    "accepting a peer connection failed"
                );
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                node_id = ctx.node_id,
                %addr,
                limit = ctx.limits.inbound_connections_max,
                "refusing a connection: too many inbound connections"
            );
            continue;
        };
        seq += 1;
        connections.spawn(serve_inbound(
            tcp,
            addr,
            seq,
            tls.acceptor(),
            ctx.clone(),
            stop.clone(),
            permit,
        ));
    }
    connections.shutdown().await;
}

/// Why an inbound connection ended.
enum Closed {
    Stopped,
    Replaced,
    Removed,
    Eof,
    Io(std::io::Error),
    FrameTooLarge(u32),
    ReceiverGone,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Stopped => write!(f, "the transport stopped"),
            Closed::Replaced => write!(f, "replaced by a newer connection from the peer"),
            Closed::Removed => write!(f, "the peer was removed"),
            Closed::Eof => write!(f, "closed by the peer"),
            Closed::Io(e) => write!(f, "{e}"),
            Closed::FrameTooLarge(len) => write!(
                f,
                "protocol error: a frame of {len} bytes exceeds the limit"
            ),
            Closed::ReceiverGone => write!(f, "nobody receives inbound messages any more"),
        }
    }
}

async fn serve_inbound(
    tcp: TcpStream,
    addr: SocketAddr,
    seq: u64,
    acceptor: tokio_rustls::TlsAcceptor,
    ctx: Arc<InboundContext>,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let node_id = ctx.node_id;
    let _ = tcp.set_nodelay(true);
    let timeout = Duration::from_millis(ctx.limits.handshake_timeout_ms);
    let handshake = tokio::select! {
        _ = stopped(&mut stop) => return,
        r = tokio::time::timeout(timeout, acceptor.accept(tcp)) => r,
    };
    let mut stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(node_id, %addr, error = %e, "refused a peer connection");
            return;
        }
        Err(_) => {
            tracing::warn!(node_id, %addr, "refused a peer connection: handshake timed out");
            return;
        }
    };
    // The verifier admitted the certificate; read the id it names again
    // (cheap) rather than carry it out of the handshake.
    let from = match stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or(IdentityError::NoNode)
        .and_then(certificate_node)
    {
        Ok(id) if ctx.peers.contains(id) => id,
        Ok(id) => {
            tracing::warn!(
                node_id,
                %addr,
                error = %IdentityError::UnknownNode(id),
                "refused a peer connection"
            );
            return;
        }
        Err(e) => {
            tracing::warn!(node_id, %addr, error = %e, "refused a peer connection");
            return;
        }
    };
    let admit = async {
        stream.write_all(&[PROTOCOL_VERSION]).await?;
        stream.flush().await
    };
    match tokio::time::timeout(timeout, admit).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(
                node_id,
                peer = from,
                %addr,
                error = %e,
                "lost a peer connection while admitting it"
            );
            return;
        }
        Err(_) => {
            tracing::warn!(
                node_id,
                peer = from,
                %addr,
                "lost a peer connection: admission timed out"
            );
            return;
        }
    }
    let (replace, mut replaced) = oneshot::channel();
    {
        let mut current = lock(&ctx.current);
        // Again, under the table's lock: `remove_peer` takes the id out of
        // the set before it closes the id's entry here, so a removal during
        // the admission above is seen either here or by `remove_peer`.
        if !ctx.peers.contains(from) {
            tracing::warn!(
                node_id,
                %addr,
                error = %IdentityError::UnknownNode(from),
                "refused a peer connection"
            );
            return;
        }
        // Dropping the previous sender closes the previous connection.
        drop(current.insert(from, (seq, replace)));
    }
    tracing::info!(node_id, peer = from, %addr, "peer connected");
    let closed = read_frames(stream, from, &ctx, &mut stop, &mut replaced).await;
    {
        let mut current = lock(&ctx.current);
        if current.get(&from).is_some_and(|(s, _)| *s == seq) {
            current.remove(&from);
        }
    }
    match closed {
        Closed::FrameTooLarge(_) | Closed::Io(_) => {
            tracing::warn!(node_id, peer = from, %addr, reason = %closed, "peer disconnected")
        }
        _ => tracing::info!(node_id, peer = from, %addr, reason = %closed, "peer disconnected"),
    }
}

type InboundStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Why the table of live connections closed this one: a sent signal is a
/// removal, a dropped sender a newer connection.
fn replaced_or_removed(r: Result<(), oneshot::error::RecvError>) -> Closed {
    match r {
        Ok(()) => Closed::Removed,
        Err(_) => Closed::Replaced,
    }
}

async fn read_frames(
    stream: InboundStream,
    from: NodeId,
    ctx: &InboundContext,
    stop: &mut watch::Receiver<bool>,
    replaced: &mut oneshot::Receiver<()>,
) -> Closed {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, stream);
    let frame_bytes_max = ctx.limits.frame_bytes_max;
    loop {
        // Reads are not cancel-safe, but a cancelled read ends the
        // connection anyway, so no frame is ever half consumed and reused.
        let len = tokio::select! {
            _ = stopped(stop) => return Closed::Stopped,
            r = &mut *replaced => return replaced_or_removed(r),
            r = reader.read_u32() => match r {
                Ok(len) => len,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Closed::Eof,
                Err(e) => return Closed::Io(e),
            },
        };
        if len > frame_bytes_max {
            return Closed::FrameTooLarge(len);
        }
        let mut payload = vec![0u8; len as usize];
        tokio::select! {
            _ = stopped(stop) => return Closed::Stopped,
            r = &mut *replaced => return replaced_or_removed(r),
            r = reader.read_exact(&mut payload) => if let Err(e) = r {
                return Closed::Io(e);
            },
        }
        tokio::select! {
            _ = stopped(stop) => return Closed::Stopped,
            r = &mut *replaced => return replaced_or_removed(r),
            r = ctx.inbound.send(Inbound { from, payload }) => if r.is_err() {
                return Closed::ReceiverGone;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::cluster::certs::{DevCa, Issued};
    use rand::{Rng, SeedableRng};

    /// Longest any test waits for one event; tests finish far sooner.
    const WAIT: Duration = Duration::from_secs(10);

    /// Short timeouts and backoff, so that reconnection tests take
    /// milliseconds.
    fn test_limits() -> TransportLimits {
        TransportLimits {
            handshake_timeout_ms: 1_000,
            backoff_ms_min: 10,
            backoff_ms_max: 100,
            healthy_connection_ms: 100,
            ..TransportLimits::default()
        }
    }

    fn material(ca: &DevCa, issued: &Issued) -> TlsMaterial {
        TlsMaterial {
            cert_pem: issued.cert_pem.clone().into_bytes(),
            key_pem: issued.key_pem.clone().into_bytes(),
            ca_pem: ca.cert_pem().as_bytes().to_vec(),
        }
    }

    /// A loopback listener on a free port, bound before any node starts so
    /// that every configuration can name every address. Until a transport
    /// takes it over, it accepts nothing: a dial connects (the kernel's
    /// backlog) and then waits in its handshake.
    fn bind_loopback() -> std::net::TcpListener {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        l
    }

    fn config(
        ca: &DevCa,
        id: NodeId,
        addrs: &BTreeMap<NodeId, SocketAddr>,
        limits: TransportLimits,
    ) -> TransportConfig {
        TransportConfig {
            node_id: id,
            listen: addrs[&id],
            peers: addrs
                .iter()
                .filter(|(p, _)| **p != id)
                .map(|(p, a)| (*p, a.to_string()))
                .collect(),
            tls: material(ca, &ca.node(id).unwrap()),
            limits,
        }
    }

    fn start_on(
        config: TransportConfig,
        listener: std::net::TcpListener,
    ) -> (Transport, mpsc::Receiver<Inbound>) {
        Transport::start_on(config, TcpListener::from_std(listener).unwrap()).unwrap()
    }

    struct Mesh {
        ca: DevCa,
        addrs: BTreeMap<NodeId, SocketAddr>,
        listeners: BTreeMap<NodeId, std::net::TcpListener>,
    }

    impl Mesh {
        fn new(ids: &[NodeId]) -> Mesh {
            let listeners: BTreeMap<_, _> = ids.iter().map(|id| (*id, bind_loopback())).collect();
            Mesh {
                ca: DevCa::new("test CA").unwrap(),
                addrs: listeners
                    .iter()
                    .map(|(id, l)| (*id, l.local_addr().unwrap()))
                    .collect(),
                listeners,
            }
        }

        fn config(&self, id: NodeId, limits: TransportLimits) -> TransportConfig {
            config(&self.ca, id, &self.addrs, limits)
        }

        fn start(
            &mut self,
            id: NodeId,
            limits: TransportLimits,
        ) -> (Transport, mpsc::Receiver<Inbound>) {
            let listener = self.listeners.remove(&id).unwrap();
            start_on(self.config(id, limits), listener)
        }

        /// Starts node `id` knowing no peer: they come with `add_peer`.
        fn start_alone(&mut self, id: NodeId) -> (Transport, mpsc::Receiver<Inbound>) {
            let listener = self.listeners.remove(&id).unwrap();
            let mut config = self.config(id, test_limits());
            config.peers.clear();
            start_on(config, listener)
        }
    }

    async fn recv(rx: &mut mpsc::Receiver<Inbound>) -> Inbound {
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no message in time")
            .expect("the inbound channel closed")
    }

    async fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !cond() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn stats(t: &Transport, peer: NodeId) -> PeerStats {
        t.peer_stats(peer).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_exchange_messages_in_every_direction_in_order() {
        const N: usize = 200;
        let mut mesh = Mesh::new(&[1, 2, 3]);
        let mut nodes: Vec<_> = [1, 2, 3].map(|id| mesh.start(id, test_limits())).into();
        for i in 0..N {
            for (t, _) in &nodes {
                for to in [1, 2, 3].into_iter().filter(|to| *to != t.node_id()) {
                    let text = format!("{}->{to}#{i}", t.node_id());
                    t.send(to, text.into_bytes()).unwrap();
                }
            }
        }
        for (t, rx) in &mut nodes {
            let mut next: BTreeMap<NodeId, usize> = BTreeMap::new();
            for _ in 0..2 * N {
                let m = recv(rx).await;
                let i = next.entry(m.from).or_default();
                let expected = format!("{}->{}#{i}", m.from, t.node_id());
                assert_eq!(String::from_utf8(m.payload).unwrap(), expected);
                *i += 1;
            }
            let senders: Vec<_> = next.into_iter().collect();
            let others: Vec<_> = [1, 2, 3]
                .into_iter()
                .filter(|id| *id != t.node_id())
                .map(|id| (id, N))
                .collect();
            assert_eq!(senders, others);
            assert!(rx.try_recv().is_err(), "nothing beyond what was sent");
        }
        for (t, _) in &nodes {
            t.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_messages_leave_in_few_batched_writes_and_arrive_intact() {
        const SEED: u64 = 0x7a55;
        const SMALL: usize = 10_000;
        println!("seed {SEED}");
        let limits = TransportLimits {
            queue_len_max: 2 * SMALL,
            ..test_limits()
        };
        let mut mesh = Mesh::new(&[1, 2]);
        let (t1, _rx1) = mesh.start(1, limits);
        // Node 2 is not accepting yet, so everything below is queued before
        // the first write: the writer must gather it into batches.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
        let mut sent = Vec::new();
        for i in 0..=SMALL {
            let len = if i == SMALL / 2 {
                // Larger than a batch: written alone.
                3 * BATCH_BYTES_MAX
            } else {
                rng.random_range(0..=300)
            };
            let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            t1.send(2, payload.clone()).unwrap();
            sent.push(payload);
        }
        let (t2, mut rx2) = mesh.start(2, limits);
        for (i, expected) in sent.iter().enumerate() {
            let m = recv(&mut rx2).await;
            assert_eq!(m.from, 1);
            assert!(&m.payload == expected, "message {i} differs");
        }
        // The writer counts a batch once its write returns, which may be
        // after the reader delivered it.
        eventually("node 1 counted every message", || {
            stats(&t1, 2).sent_messages == sent.len() as u64
        })
        .await;
        let s = stats(&t1, 2);
        assert_eq!(s.dropped, 0);
        // ~1.5 MB of small frames in 1 MiB batches, plus the large one alone.
        assert!(
            (2..=6).contains(&s.sent_batches),
            "{} batches for {} messages",
            s.sent_batches,
            s.sent_messages
        );
        t1.shutdown().await;
        t2.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_node_is_reconnected_to_and_messages_flow_again() {
        let mut mesh = Mesh::new(&[1, 2]);
        let (t1, mut rx1) = mesh.start(1, test_limits());
        let (t2, mut rx2) = mesh.start(2, test_limits());
        t1.send(2, b"before".to_vec()).unwrap();
        assert_eq!(recv(&mut rx2).await.payload, b"before");

        t2.shutdown().await;
        drop(rx2);
        eventually("node 1 sees node 2 gone", || !stats(&t1, 2).connected).await;
        // Queued while node 2 is down; sent once it is back.
        t1.send(2, b"while down".to_vec()).unwrap();

        // The same address: the listening socket was released by shutdown.
        let (t2, mut rx2) = Transport::start(mesh.config(2, test_limits()))
            .await
            .unwrap();
        assert_eq!(t2.local_addr(), mesh.addrs[&2]);
        let m = recv(&mut rx2).await;
        assert_eq!((m.from, m.payload.as_slice()), (1, &b"while down"[..]));
        t1.send(2, b"after".to_vec()).unwrap();
        assert_eq!(recv(&mut rx2).await.payload, b"after");
        t2.send(1, b"back".to_vec()).unwrap();
        let m = recv(&mut rx1).await;
        assert_eq!((m.from, m.payload.as_slice()), (2, &b"back"[..]));
        assert!(stats(&t1, 2).connected);
        t1.shutdown().await;
        t2.shutdown().await;
    }

    /// A rotated certificate is used by the connections opened after the
    /// reload; a certificate naming another node is refused and changes
    /// nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reloaded_certificate_is_used_by_new_connections() {
        let mut mesh = Mesh::new(&[1, 2]);
        let (t1, _rx1) = mesh.start(1, test_limits());
        let (_t2, mut rx2) = mesh.start(2, test_limits());
        let a2 = mesh.addrs[&2].to_string();
        t1.send(2, b"before".to_vec()).unwrap();
        assert_eq!(recv(&mut rx2).await.payload, b"before");

        let wrong = material(&mesh.ca, &mesh.ca.node(3).unwrap());
        assert_eq!(
            t1.reload_tls(&wrong).unwrap_err().code(),
            "TRANSPORT:OWN_IDENTITY"
        );

        // Material from a CA node 2 does not trust: the open connection
        // goes on, a new one is refused.
        let other = DevCa::new("another CA").unwrap();
        t1.reload_tls(&material(&other, &other.node(1).unwrap()))
            .unwrap();
        t1.send(2, b"open connection".to_vec()).unwrap();
        assert_eq!(recv(&mut rx2).await.payload, b"open connection");
        assert!(t1.remove_peer(2));
        assert!(t1.add_peer(2, a2.clone()).unwrap());
        t1.send(2, b"new connection, foreign CA".to_vec()).unwrap();
        let refused = tokio::time::timeout(Duration::from_millis(500), rx2.recv()).await;
        assert!(
            refused.is_err(),
            "node 2 accepted a certificate of another CA"
        );

        // A new certificate from the consortium CA: the next dial works.
        t1.reload_tls(&material(&mesh.ca, &mesh.ca.node(1).unwrap()))
            .unwrap();
        t1.send(2, b"rotated".to_vec()).unwrap();
        loop {
            let m = recv(&mut rx2).await;
            if m.payload == b"rotated" {
                break;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peers_added_at_runtime_exchange_messages_both_ways() {
        let mut mesh = Mesh::new(&[1, 2]);
        let (t1, mut rx1) = mesh.start_alone(1);
        let (t2, mut rx2) = mesh.start_alone(2);
        let (a1, a2) = (mesh.addrs[&1].to_string(), mesh.addrs[&2].to_string());
        assert!(t1.peers().is_empty());
        assert_eq!(
            t1.send(2, b"too early".to_vec()).unwrap_err().code(),
            "TRANSPORT:UNKNOWN_PEER"
        );
        assert_eq!(
            t1.add_peer(1, a1.clone()).unwrap_err().code(),
            "TRANSPORT:CONFIG"
        );
        assert!(t1.add_peer(2, a2.clone()).unwrap());
        assert!(
            !t1.add_peer(2, a2.clone()).unwrap(),
            "the same address again changes nothing"
        );
        // From a thread outside the runtime, as the Raft loop would.
        let adder = t2.clone();
        let added = tokio::task::spawn_blocking(move || {
            std::thread::spawn(move || adder.add_peer(1, a1))
                .join()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(added.unwrap());
        assert_eq!(t1.peers(), BTreeMap::from([(2, a2)]));
        assert_eq!(
            t2.peers(),
            BTreeMap::from([(1, mesh.addrs[&1].to_string())])
        );

        t1.send(2, b"ping".to_vec()).unwrap();
        let m = recv(&mut rx2).await;
        assert_eq!((m.from, m.payload.as_slice()), (1, &b"ping"[..]));
        t2.send(1, b"pong".to_vec()).unwrap();
        let m = recv(&mut rx1).await;
        assert_eq!((m.from, m.payload.as_slice()), (2, &b"pong"[..]));

        // Shutdown waits for the writers `add_peer` started too: once it
        // returns, only the set and this test hold the peer.
        let peer = t1.shared.peers.get(2).unwrap();
        t1.shutdown().await;
        assert_eq!(Arc::strong_count(&peer), 2);
        assert_eq!(
            t1.add_peer(3, "127.0.0.1:1".into()).unwrap_err().code(),
            "TRANSPORT:STOPPED"
        );
        t2.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_removed_peer_is_refused_until_it_is_added_again() {
        let mut mesh = Mesh::new(&[1, 2]);
        let (t1, mut rx1) = mesh.start(1, test_limits());
        let (t2, mut rx2) = mesh.start(2, test_limits());
        t1.send(2, b"before".to_vec()).unwrap();
        assert_eq!(recv(&mut rx2).await.payload, b"before");
        t2.send(1, b"before".to_vec()).unwrap();
        assert_eq!(recv(&mut rx1).await.payload, b"before");

        let removed = t2.shared.peers.get(1).unwrap();
        let failures = stats(&t1, 2).dial_failures;
        assert!(t2.remove_peer(1));
        assert!(!t2.remove_peer(1), "node 1 is no longer a peer");
        assert!(t2.peers().is_empty());
        assert_eq!(t2.peer_stats(1), None);
        assert_eq!(
            t2.send(1, b"to a removed peer".to_vec())
                .unwrap_err()
                .code(),
            "TRANSPORT:UNKNOWN_PEER"
        );
        assert!(
            !lock(&t2.shared.current).contains_key(&1),
            "node 1's inbound connection was closed"
        );
        // Node 2's writer for node 1 ends, and its connection with it.
        eventually("node 2's writer for node 1 ended", || {
            Arc::strong_count(&removed) == 1
        })
        .await;
        eventually("node 1 saw node 2's connection close", || {
            !lock(&t1.shared.current).contains_key(&2)
        })
        .await;
        // Node 1 still counts node 2 as a peer; node 2 refuses its dials.
        eventually("node 2 refused node 1 twice", || {
            stats(&t1, 2).dial_failures >= failures + 2
        })
        .await;
        t1.send(2, b"while removed".to_vec()).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            rx2.try_recv().is_err(),
            "nothing arrives from a removed peer"
        );
        let s = stats(&t1, 2);
        assert!(!s.connected);
        assert_eq!(s.queued_len, 1, "the message waits in node 1's queue");

        // Added again, node 1 is admitted: the waiting message leaves.
        assert!(t2.add_peer(1, mesh.addrs[&1].to_string()).unwrap());
        let m = recv(&mut rx2).await;
        assert_eq!((m.from, m.payload.as_slice()), (1, &b"while removed"[..]));
        t1.send(2, b"after".to_vec()).unwrap();
        assert_eq!(recv(&mut rx2).await.payload, b"after");
        t2.send(1, b"after".to_vec()).unwrap();
        let m = recv(&mut rx1).await;
        assert_eq!((m.from, m.payload.as_slice()), (2, &b"after"[..]));
        assert!(rx1.try_recv().is_err() && rx2.try_recv().is_err());
        t1.shutdown().await;
        t2.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_added_again_at_a_new_address_is_dialed_there() {
        let mut mesh = Mesh::new(&[1, 2]);
        let (t1, mut rx1) = mesh.start(1, test_limits());
        let (t2, mut rx2) = mesh.start(2, test_limits());
        t1.send(2, b"first".to_vec()).unwrap();
        assert_eq!(recv(&mut rx2).await.payload, b"first");

        // Node 2 moves: it stops, and starts again on another port.
        t2.shutdown().await;
        drop(rx2);
        let moved = bind_loopback();
        let new_addr = moved.local_addr().unwrap();
        assert_ne!(new_addr, mesh.addrs[&2]);
        let mut c2 = mesh.config(2, test_limits());
        c2.listen = new_addr;
        let (t2, mut rx2) = start_on(c2, moved);
        eventually("node 1 saw node 2 go", || !stats(&t1, 2).connected).await;
        // Queued for the old address; replacing the peer drops it.
        t1.send(2, b"for the old address".to_vec()).unwrap();

        let old = t1.shared.peers.get(2).unwrap();
        assert!(t1.add_peer(2, new_addr.to_string()).unwrap());
        assert!(!t1.add_peer(2, new_addr.to_string()).unwrap());
        assert_eq!(t1.peers(), BTreeMap::from([(2, new_addr.to_string())]));
        eventually("the writer for the old address ended", || {
            Arc::strong_count(&old) == 1
        })
        .await;
        assert_eq!(old.stats().queued_len, 0, "the old queue was dropped");

        t1.send(2, b"second".to_vec()).unwrap();
        let m = recv(&mut rx2).await;
        assert_eq!((m.from, m.payload.as_slice()), (1, &b"second"[..]));
        eventually("node 1 counted the one message", || {
            stats(&t1, 2).sent_messages == 1
        })
        .await;
        t2.send(1, b"from the new place".to_vec()).unwrap();
        let m = recv(&mut rx1).await;
        assert_eq!(
            (m.from, m.payload.as_slice()),
            (2, &b"from the new place"[..])
        );
        assert!(rx2.try_recv().is_err());
        t1.shutdown().await;
        t2.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dialer_refuses_a_listener_whose_certificate_names_another_node() {
        let ca = DevCa::new("test CA").unwrap();
        let (l1, l3) = (bind_loopback(), bind_loopback());
        let (a1, a3) = (l1.local_addr().unwrap(), l3.local_addr().unwrap());
        // Node 1 believes node 2 listens where node 3 does.
        let c1 = config(&ca, 1, &BTreeMap::from([(1, a1), (2, a3)]), test_limits());
        let c3 = config(&ca, 3, &BTreeMap::from([(1, a1), (3, a3)]), test_limits());
        let (t1, mut rx1) = start_on(c1, l1);
        let (t3, mut rx3) = start_on(c3, l3);
        t1.send(2, b"for node 2 only".to_vec()).unwrap();
        eventually("node 1 refused the listener twice", || {
            stats(&t1, 2).dial_failures >= 2
        })
        .await;
        let s = stats(&t1, 2);
        assert!(!s.connected);
        assert_eq!(
            (s.queued_len, s.sent_messages),
            (1, 0),
            "the message never left"
        );
        // Node 3 in turn is unknown to node 1, which refuses its dials.
        eventually("node 1 refused node 3 twice", || {
            stats(&t3, 1).dial_failures >= 2
        })
        .await;
        assert!(rx3.try_recv().is_err());
        assert!(rx1.try_recv().is_err());
        t1.shutdown().await;
        t3.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_certificate_is_refused_by_listeners_and_dialers() {
        let ca = DevCa::new("test CA").unwrap();
        // A listener refuses a dialer whose (right) identity has expired.
        let l1 = bind_loopback();
        let a1 = l1.local_addr().unwrap();
        let mut c1 = config(&ca, 1, &BTreeMap::from([(1, a1)]), test_limits());
        c1.peers = BTreeMap::from([(2, "127.0.0.1:1".into())]);
        let (t1, mut rx1) = start_on(c1, l1);
        if let Ok(mut s) = raw_client(a1, &ca, &ca.node_expired(2).unwrap(), 1).await {
            write_and_expect_close(&mut s, &frame(b"expired"), "an expired dialer").await;
        }
        assert!(
            rx1.try_recv().is_err(),
            "a message from an expired identity"
        );
        // The same node with a valid certificate is admitted.
        let mut s = admitted_client(a1, &ca, &ca.node(2).unwrap()).await;
        s.write_all(&frame(b"valid")).await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(recv(&mut rx1).await.payload, b"valid");
        t1.shutdown().await;

        // A dialer refuses a listener whose identity has expired.
        let (l1, l2) = (bind_loopback(), bind_loopback());
        let addrs = BTreeMap::from([(1, l1.local_addr().unwrap()), (2, l2.local_addr().unwrap())]);
        let (t1, _rx1) = start_on(config(&ca, 1, &addrs, test_limits()), l1);
        let mut c2 = config(&ca, 2, &addrs, test_limits());
        c2.tls = material(&ca, &ca.node_expired(2).unwrap());
        let (t2, mut rx2) = start_on(c2, l2);
        t1.send(2, b"to an expired listener".to_vec()).unwrap();
        eventually("node 1 refused the expired listener twice", || {
            stats(&t1, 2).dial_failures >= 2
        })
        .await;
        let s = stats(&t1, 2);
        assert!(!s.connected);
        assert_eq!(
            (s.queued_len, s.sent_messages),
            (1, 0),
            "the message never left"
        );
        assert!(rx2.try_recv().is_err());
        t1.shutdown().await;
        t2.shutdown().await;
    }

    /// A TLS client outside the transport, presenting any certificate, that
    /// verifies the listener as node `server`.
    async fn raw_client(
        addr: SocketAddr,
        ca: &DevCa,
        identity: &Issued,
        server: NodeId,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut ca.cert_pem().as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let certs = rustls_pemfile::certs(&mut identity.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut identity.key_pem.as_bytes())
            .unwrap()
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .unwrap();
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(node_name(server)).unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }

    /// A raw client the listener must admit: it reads the admission byte.
    async fn admitted_client(
        addr: SocketAddr,
        ca: &DevCa,
        identity: &Issued,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut s = raw_client(addr, ca, identity, 1).await.unwrap();
        let version = tokio::time::timeout(WAIT, s.read_u8())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(version, PROTOCOL_VERSION);
        s
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        f
    }

    /// Writes `bytes` (errors are fine: the listener may have closed
    /// already) and waits until the listener closes the connection.
    async fn write_and_expect_close<S>(stream: &mut S, bytes: &[u8], what: &str)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let _ = stream.write_all(bytes).await;
        let _ = stream.flush().await;
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "{what}: the listener kept the connection open"
        );
        if let Ok(Ok(_)) = closed {
            // Plain TCP clients may read the listener's TLS alert; a TLS
            // client that was refused never reads the admission byte, and
            // an admitted one has read it already.
            assert!(
                rest.is_empty() || rest[0] == 0x15,
                "{what}: unexpected data from the listener"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_listener_refuses_certificates_that_do_not_name_a_known_peer() {
        let ca = DevCa::new("test CA").unwrap();
        let other_ca = DevCa::new("another consortium").unwrap();
        let l1 = bind_loopback();
        let a1 = l1.local_addr().unwrap();
        let mut c1 = config(&ca, 1, &BTreeMap::from([(1, a1)]), test_limits());
        // Peers 2 and 3 are configured; nothing listens at their addresses.
        c1.peers = BTreeMap::from([(2, "127.0.0.1:1".into()), (3, "127.0.0.1:1".into())]);
        let (t1, mut rx1) = start_on(c1, l1);

        let cases: Vec<(&str, Issued)> = vec![
            (
                "node 2's certificate from another CA",
                other_ca.node(2).unwrap(),
            ),
            ("a certificate for an unknown node", ca.node(9).unwrap()),
            ("a certificate for this node itself", ca.node(1).unwrap()),
            (
                "a certificate naming no node",
                ca.issue(vec!["client.example".into()]).unwrap(),
            ),
            (
                "a certificate naming two nodes",
                ca.issue(vec![node_name(2), node_name(3)]).unwrap(),
            ),
            (
                "a wildcard certificate",
                ca.issue(vec!["*.parledger".into()]).unwrap(),
            ),
            (
                "a non-canonical node name",
                ca.issue(vec!["node-02.parledger".into()]).unwrap(),
            ),
        ];
        for (what, identity) in &cases {
            // TLS 1.3: the client may finish its handshake before the
            // listener has judged its certificate; the alert then closes it.
            // (Failing the handshake outright is a refusal too.)
            if let Ok(mut s) = raw_client(a1, &ca, identity, 1).await {
                write_and_expect_close(&mut s, &frame(b"forged"), what).await;
            }
            assert!(rx1.try_recv().is_err(), "{what}: a message was delivered");
        }
        // The listener still serves, and the sender is whoever the
        // certificate names.
        for id in [2, 3] {
            let mut s = admitted_client(a1, &ca, &ca.node(id).unwrap()).await;
            s.write_all(&frame(b"hello")).await.unwrap();
            s.flush().await.unwrap();
            let m = recv(&mut rx1).await;
            assert_eq!((m.from, m.payload.as_slice()), (id, &b"hello"[..]));
        }
        assert!(rx1.try_recv().is_err());
        t1.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn garbage_and_oversized_frames_are_disconnected_and_the_listener_goes_on() {
        let ca = DevCa::new("test CA").unwrap();
        let l1 = bind_loopback();
        let a1 = l1.local_addr().unwrap();
        let limits = TransportLimits {
            frame_bytes_max: 1024,
            queue_bytes_max: 1024,
            handshake_timeout_ms: 300,
            ..test_limits()
        };
        let mut c1 = config(&ca, 1, &BTreeMap::from([(1, a1)]), limits);
        c1.peers = BTreeMap::from([(2, "127.0.0.1:1".into())]);
        let (t1, mut rx1) = start_on(c1, l1);

        let plain: [(&str, &[u8]); 3] = [
            ("HTTP instead of TLS", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("a huge frame header instead of TLS", &[0xff; 4]),
            ("a silent client (handshake timeout)", b""),
        ];
        for (what, bytes) in plain {
            let mut s = TcpStream::connect(a1).await.unwrap();
            write_and_expect_close(&mut s, bytes, what).await;
        }
        let node2 = ca.node(2).unwrap();
        let mut truncated = frame(b"0123456789");
        truncated.truncate(7);
        let authenticated: [(&str, Vec<u8>); 3] = [
            (
                "a frame one byte over the limit",
                1025u32.to_be_bytes().to_vec(),
            ),
            ("a frame header of 4 GiB", u32::MAX.to_be_bytes().to_vec()),
            ("a truncated frame", truncated),
        ];
        for (what, bytes) in authenticated {
            let mut s = admitted_client(a1, &ca, &node2).await;
            if what == "a truncated frame" {
                // The client ends its side mid-frame.
                s.write_all(&bytes).await.unwrap();
                s.shutdown().await.unwrap();
                write_and_expect_close(&mut s, b"", what).await;
            } else {
                write_and_expect_close(&mut s, &bytes, what).await;
            }
            assert!(rx1.try_recv().is_err(), "{what}: a message was delivered");
        }
        // A frame exactly at the limit is fine, and the listener still serves.
        let mut s = admitted_client(a1, &ca, &node2).await;
        s.write_all(&frame(&[7; 1024])).await.unwrap();
        s.flush().await.unwrap();
        let m = recv(&mut rx1).await;
        assert_eq!((m.from, m.payload.len()), (2, 1024));
        t1.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_drops_the_oldest_counts_it_and_stays_bounded() {
        let limits = TransportLimits {
            queue_len_max: 8,
            queue_bytes_max: 4096,
            frame_bytes_max: 1024,
            ..test_limits()
        };
        let mut mesh = Mesh::new(&[1, 2]);
        let (t1, _rx1) = mesh.start(1, limits);
        // Node 2 is down (its address accepts nothing yet).
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            for i in 0..100u8 {
                t1.send(2, vec![i; 100]).unwrap();
            }
        });
        let s = stats(&t1, 2);
        assert_eq!((s.queued_len, s.queued_bytes, s.dropped), (8, 800, 92));
        assert!(
            metrics
                .render()
                .contains("parledger_peer_messages_dropped_total{peer=\"2\"} 92"),
            "{}",
            metrics.render()
        );
        // The byte bound: 1000-byte messages, at most 4096 bytes queued.
        for i in 0..10u8 {
            t1.send(2, vec![100 + i; 1000]).unwrap();
        }
        let s = stats(&t1, 2);
        assert_eq!((s.queued_len, s.queued_bytes, s.dropped), (4, 4000, 106));
        // Refusals: too large for a frame, unknown peer.
        assert_eq!(
            t1.send(2, vec![0; 1025]).unwrap_err().code(),
            "TRANSPORT:FRAME_TOO_LARGE"
        );
        assert_eq!(
            t1.send(7, vec![]).unwrap_err().code(),
            "TRANSPORT:UNKNOWN_PEER"
        );

        // Node 2 comes up and gets the newest four, in order.
        let (t2, mut rx2) = mesh.start(2, limits);
        for i in 6..10u8 {
            assert_eq!(recv(&mut rx2).await.payload, vec![100 + i; 1000]);
        }
        // The writer counts a batch once its write returns, which may be
        // after the reader delivered it.
        eventually("node 1 counted the four", || {
            stats(&t1, 2).sent_messages == 4
        })
        .await;
        t1.shutdown().await;
        assert_eq!(t1.send(2, vec![1]).unwrap_err().code(), "TRANSPORT:STOPPED");
        t2.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_refuses_a_wrong_identity_or_configuration() {
        let ca = DevCa::new("test CA").unwrap();
        let addrs = BTreeMap::from([
            (1, "127.0.0.1:0".parse().unwrap()),
            (2, "127.0.0.1:1".parse().unwrap()),
        ]);
        let start = |c: TransportConfig| async move {
            Transport::start(c).await.map(|_| ()).unwrap_err().code()
        };
        let mut c = config(&ca, 1, &addrs, test_limits());
        c.tls = material(&ca, &ca.node(2).unwrap());
        assert_eq!(start(c).await, "TRANSPORT:OWN_IDENTITY");
        let mut c = config(&ca, 1, &addrs, test_limits());
        c.tls = material(&ca, &ca.issue(vec!["node-1.example".into()]).unwrap());
        assert_eq!(start(c).await, "TRANSPORT:OWN_IDENTITY");
        let mut c = config(&ca, 1, &addrs, test_limits());
        c.peers.insert(1, "127.0.0.1:1".into());
        assert_eq!(start(c).await, "TRANSPORT:CONFIG");
        let mut c = config(&ca, 1, &addrs, test_limits());
        c.limits.backoff_ms_min = c.limits.backoff_ms_max + 1;
        assert_eq!(start(c).await, "TRANSPORT:CONFIG");
        let mut c = config(&ca, 1, &addrs, test_limits());
        c.limits.queue_bytes_max = c.limits.frame_bytes_max as usize - 1;
        assert_eq!(start(c).await, "TRANSPORT:CONFIG");
        let mut c = config(&ca, 1, &addrs, test_limits());
        c.tls.ca_pem = Vec::new();
        assert_eq!(start(c).await, "TRANSPORT:TLS");
        let mut c = config(&ca, 1, &addrs, test_limits());
        c.tls.key_pem = Vec::new();
        assert_eq!(start(c).await, "TRANSPORT:TLS");
    }

    #[test]
    fn only_canonical_node_names_name_nodes() {
        let cases: [(&str, Option<NodeId>); 11] = [
            ("node-1.parledger", Some(1)),
            ("node-0.parledger", Some(0)),
            ("NODE-42.Parledger", Some(42)),
            ("node-18446744073709551615.parledger", Some(u64::MAX)),
            ("node-18446744073709551616.parledger", None),
            ("node-01.parledger", None),
            ("node-+1.parledger", None),
            ("node-.parledger", None),
            ("node-1.parledger.example", None),
            ("xnode-1.parledger", None),
            ("*.parledger", None),
        ];
        for (name, id) in cases {
            assert_eq!(parse_node_name(name), id, "{name}");
        }
        for id in [0, 1, 7, u64::MAX] {
            assert_eq!(parse_node_name(&node_name(id)), Some(id));
        }
    }

    #[test]
    fn a_certificate_names_exactly_one_node_or_none() {
        let ca = DevCa::new("test CA").unwrap();
        let der = |i: Issued| {
            rustls_pemfile::certs(&mut i.cert_pem.as_bytes())
                .next()
                .unwrap()
                .unwrap()
        };
        assert_eq!(certificate_node(&der(ca.node(5).unwrap())), Ok(5));
        let extra = ca.issue(vec!["peer.example".into(), node_name(5)]).unwrap();
        assert_eq!(certificate_node(&der(extra)), Ok(5));
        let two = ca.issue(vec![node_name(5), node_name(6)]).unwrap();
        assert_eq!(
            certificate_node(&der(two)),
            Err(IdentityError::SeveralNodes(vec![5, 6]))
        );
        let wildcard = ca.issue(vec!["*.parledger".into()]).unwrap();
        assert_eq!(certificate_node(&der(wildcard)), Err(IdentityError::NoNode));
        assert!(matches!(
            certificate_node(&CertificateDer::from(vec![1, 2, 3])),
            Err(IdentityError::Unparsable(_))
        ));
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_is_reproducible() {
        let mut a = Backoff::new(100, 3_000, 7);
        let mut b = Backoff::new(100, 3_000, 7);
        let steps = [100, 200, 400, 800, 1_600, 3_000, 3_000, 3_000];
        let mut delays = Vec::new();
        for step in steps {
            let d = a.next_delay();
            assert!(
                (step / 2..=step).contains(&(d.as_millis() as u64)),
                "{d:?} outside [{}, {step}] ms",
                step / 2
            );
            assert_eq!(d, b.next_delay(), "same seed, same schedule");
            delays.push(d);
        }
        a.reset();
        assert!(a.next_delay() <= Duration::from_millis(100));
        let other: Vec<_> = {
            let mut c = Backoff::new(100, 3_000, 8);
            steps.iter().map(|_| c.next_delay()).collect()
        };
        assert_ne!(delays, other, "another pair, another schedule");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dev_certificates_from_files_form_a_working_mesh() {
        let dir = tempfile::tempdir().unwrap();
        let (ca_dir, out) = (dir.path().join("ca"), dir.path().join("nodes"));
        let files = crate::cluster::certs::write_dev_certs(&ca_dir, &out, 2).unwrap();
        assert_eq!(files.len(), 7, "{files:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [ca_dir.join("ca-key.pem"), out.join("node-1-key.pem")] {
                let mode = std::fs::metadata(&key).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", key.display());
            }
        }
        // Never overwrites: a second run refuses and changes nothing.
        let before = std::fs::read(out.join("node-1.pem")).unwrap();
        assert!(crate::cluster::certs::write_dev_certs(&ca_dir, &out, 2).is_err());
        assert_eq!(std::fs::read(out.join("node-1.pem")).unwrap(), before);

        let listeners = [bind_loopback(), bind_loopback()];
        let addrs: BTreeMap<NodeId, SocketAddr> = [1, 2]
            .into_iter()
            .zip(&listeners)
            .map(|(id, l)| (id, l.local_addr().unwrap()))
            .collect();
        let mut nodes = Vec::new();
        for (id, listener) in [1, 2].into_iter().zip(listeners) {
            let (cert, key) = crate::cluster::certs::node_files(&out, id);
            let config = TransportConfig {
                node_id: id,
                listen: addrs[&id],
                peers: addrs
                    .iter()
                    .filter(|(p, _)| **p != id)
                    .map(|(p, a)| (*p, a.to_string()))
                    .collect(),
                tls: TlsMaterial::from_files(&cert, &key, &out.join("ca.pem")).unwrap(),
                limits: test_limits(),
            };
            nodes.push(start_on(config, listener));
        }
        nodes[0].0.send(2, b"ping".to_vec()).unwrap();
        assert_eq!(
            recv(&mut nodes[1].1).await,
            Inbound {
                from: 1,
                payload: b"ping".to_vec()
            }
        );
        nodes[1].0.send(1, b"pong".to_vec()).unwrap();
        assert_eq!(
            recv(&mut nodes[0].1).await,
            Inbound {
                from: 2,
                payload: b"pong".to_vec()
            }
        );
        for (t, _) in &nodes {
            t.shutdown().await;
        }
        let missing = TlsMaterial::from_files(&dir.path().join("nope"), &out, &out);
        assert_eq!(missing.unwrap_err().code(), "TRANSPORT:READ");
    }
}

//! Clustering: what the nodes of a consortium need to replicate the log
//! among themselves.
//!
//! | module | what it holds |
//! |---|---|
//! | `transport` | node-to-node messages over TCP with mutual TLS: identities from certificates, framing, reconnection, bounded per-peer queues, batching |
//! | `runtime` | the Raft runtime: the raft thread (replica, ticks, Ready), the engine thread (applies committed entries, batches, proposes or forwards, resends), read index |
//! | `certs` | development certificates (a consortium CA and one certificate per node), for `parledger cluster certs` and the tests |
//!
//! **Architecture invariant:** the transport carries opaque bytes and knows
//! nothing of Raft; the Raft runtime (issue 6) encodes its messages and
//! decides what a lost message means.

pub mod certs;
pub mod governor;
pub mod runtime;
pub mod transport;

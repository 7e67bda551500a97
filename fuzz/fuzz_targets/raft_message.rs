//! What arrives from a peer: a Raft message (the first byte 0), or one of
//! the catch-up codecs (snapshot point, block request, block copies, a
//! configuration change's context). Any bytes decode or fail cleanly.
#![no_main]

use ledger::replication::catchup::{decode_blocks, BlockRequest, ConfContext, SnapshotPoint};
use ledger::replication::replica::decode_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 5 {
        0 => {
            let _ = decode_message(rest);
        }
        1 => {
            let _ = SnapshotPoint::decode(rest);
        }
        2 => {
            let _ = BlockRequest::decode(rest);
        }
        3 => {
            let _ = decode_blocks(rest);
        }
        _ => {
            let _ = ConfContext::decode(rest);
        }
    }
});

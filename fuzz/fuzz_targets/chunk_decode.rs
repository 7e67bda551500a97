//! A stored chunk of transactions and outcomes (`chain.db`), as the node
//! reads it back: any bytes decode or fail with an error, never a panic,
//! and what decodes encodes back to the same transactions.
#![no_main]

use ledger::storage::codec::{decode_chunk, encode_chunk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rows) = decode_chunk(data) {
        let (txs, outcomes): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
        let again =
            decode_chunk(&encode_chunk(&txs, &outcomes)).expect("a re-encoded chunk decodes");
        assert_eq!(again.len(), txs.len());
    }
});

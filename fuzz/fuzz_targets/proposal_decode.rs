//! A Raft entry's batch (`Proposal`), as a follower decodes what the leader
//! sent: any bytes decode or fail with `LEDGER:MALFORMED_PROPOSAL`, and
//! what decodes encodes back to the same bytes.
#![no_main]

use ledger::replication::Proposal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Proposal::decode(data) {
        let again = Proposal::decode(&p.encode()).expect("a re-encoded proposal decodes");
        assert_eq!(again.encode(), p.encode());
    }
});

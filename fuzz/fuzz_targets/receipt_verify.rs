//! A receipt as a client or `parledger verify-receipt` reads it: any JSON
//! that parses as a receipt verifies or fails with a reason, never panics.
#![no_main]

use ledger::block::Receipt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<Receipt>(data) {
        let _ = r.verify();
    }
});

//! Every domain's argument decoding: the first two bytes pick a domain and
//! one of its functions, the rest are the arguments (JSON or not), and the
//! chaincode's `prepare` must answer `Ok` or a coded error under every
//! chaincode version, never panic.
#![no_main]

use ledger::{
    ChaincodeVersion, DomainId, FunctionName, OrgId, Registry, Transaction, TxId, UserId,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// Every domain's chaincode and the functions it lists: a function added to
/// a domain is fuzzed without touching this target.
fn installed() -> &'static (Registry, Vec<DomainId>) {
    static INSTALLED: OnceLock<(Registry, Vec<DomainId>)> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let registry = domains::registry();
        let domains = registry.domains().cloned().collect();
        (registry, domains)
    })
}

fuzz_target!(|data: &[u8]| {
    let [d, f, args @ ..] = data else {
        return;
    };
    let (registry, domains) = installed();
    let domain = &domains[*d as usize % domains.len()];
    let chaincode = registry.get(domain).unwrap();
    let functions = chaincode.functions();
    let function = functions[*f as usize % functions.len()];
    let mut tx = Transaction::new(
        TxId::new("fuzz-1").unwrap(),
        domain.clone(),
        FunctionName::new(function).unwrap(),
        &serde_json::Value::Null,
        UserId::new("admin").unwrap(),
        OrgId::new("acme-bank").unwrap(),
    );
    tx.args = args.to_vec();
    for version in [1, 2] {
        let _ = chaincode.prepare_at(&tx, ChaincodeVersion(version));
    }
});

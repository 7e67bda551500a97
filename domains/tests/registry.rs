//! Every installed chaincode lists exactly what it dispatches: each listed
//! function is known to `prepare` under every version, and a name outside
//! the list is `LEDGER:UNKNOWN_FUNCTION`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ledger::{codes, ChaincodeVersion, FunctionName, OrgId, Transaction, TxId, UserId};

fn call(domain: &ledger::DomainId, function: &str) -> Transaction {
    Transaction::new(
        TxId::new("registry-1").unwrap(),
        domain.clone(),
        FunctionName::new(function).unwrap(),
        &serde_json::Value::Null,
        UserId::new("admin").unwrap(),
        OrgId::new("acme-bank").unwrap(),
    )
}

#[test]
fn every_listed_function_is_dispatched_and_no_other() {
    let registry = domains::registry();
    let mut listed = 0;
    for domain in registry.domains() {
        let chaincode = registry.get(domain).unwrap();
        assert!(!chaincode.functions().is_empty(), "{domain} lists nothing");
        for version in [1, 2] {
            let version = ChaincodeVersion(version);
            for f in chaincode.functions() {
                // Null arguments fail to decode; the name must be known.
                if let Err(e) = chaincode.prepare_at(&call(domain, f), version) {
                    assert_ne!(e.code, codes::UNKNOWN_FUNCTION, "{domain}/{f}");
                }
            }
            match chaincode.prepare_at(&call(domain, "no_such_function"), version) {
                Err(e) => assert_eq!(e.code, codes::UNKNOWN_FUNCTION, "{domain}"),
                Ok(_) => panic!("{domain} took an unknown function"),
            }
        }
        listed += chaincode.functions().len();
    }
    assert_eq!(
        listed,
        7 + 11 + 5 + 10,
        "finance, supply chain, healthcare, system"
    );
}

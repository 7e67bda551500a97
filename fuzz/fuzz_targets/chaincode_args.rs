//! Every domain's argument decoding: the first two bytes pick a domain and
//! one of its functions, the rest are the arguments (JSON or not), and the
//! chaincode's `prepare` must answer `Ok` or a coded error under every
//! chaincode version, never panic.
#![no_main]

use ledger::{ChaincodeVersion, DomainId, FunctionName, OrgId, Transaction, TxId, UserId};
use libfuzzer_sys::fuzz_target;

const FUNCTIONS: &[(&str, &[&str])] = &[
    (
        "finance",
        &[
            "open_account",
            "close_account",
            "transfer",
            "transfer_linked",
            "post_pending",
            "void_pending",
            "expire_pending",
        ],
    ),
    (
        "supply_chain",
        &[
            "register_product",
            "register_lot",
            "create_shipment",
            "accept_shipment",
            "reject_shipment",
            "cancel_shipment",
            "checkpoint",
            "split_lot",
            "merge_lots",
            "recall_lot",
            "recall_product",
        ],
    ),
    (
        "healthcare",
        &[
            "register_patient",
            "add_record",
            "grant_consent",
            "revoke_consent",
            "access_record",
        ],
    ),
    (
        "system",
        &[
            "bootstrap",
            "add_user",
            "update_user",
            "set_password",
            "add_key",
            "remove_key",
            "revoke_token",
            "propose",
            "vote",
            "expire_proposal",
        ],
    ),
];

fuzz_target!(|data: &[u8]| {
    let [d, f, args @ ..] = data else {
        return;
    };
    let (domain, functions) = FUNCTIONS[*d as usize % FUNCTIONS.len()];
    let function = functions[*f as usize % functions.len()];
    let mut tx = Transaction::new(
        TxId::new("fuzz-1").unwrap(),
        DomainId::new(domain).unwrap(),
        FunctionName::new(function).unwrap(),
        &serde_json::Value::Null,
        UserId::new("admin").unwrap(),
        OrgId::new("acme-bank").unwrap(),
    );
    tx.args = args.to_vec();
    let registry = domains::registry();
    let chaincode = registry.get(&tx.domain).unwrap();
    for version in [1, 2] {
        let _ = chaincode.prepare_at(&tx, ChaincodeVersion(version));
    }
});

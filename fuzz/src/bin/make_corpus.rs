//! Writes the committed seed corpus (`fuzz/corpus/<target>/seed-*`): valid
//! inputs made with the ledger's own encoders, so that each fuzzer starts
//! from the shapes it must understand. `cargo run --bin make_corpus` from
//! `fuzz/`; the files are committed, so this runs only when a format
//! changes.

use ledger::executor::IdSet;
use ledger::replication::catchup::{BlockRequest, ConfContext, SnapshotPoint};
use ledger::replication::replica::encode_message_into;
use ledger::replication::Proposal;
use ledger::storage::codec::encode_chunk;
use ledger::{BlockInfo, ChaincodeVersion, Executor, Hash, Limits, State, Timestamp, Transaction};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn tx(id: &str, domain: &str, org: &str, function: &str, args: serde_json::Value) -> Transaction {
    domains::transaction(
        ledger::DomainId::new(domain).unwrap(),
        id,
        org,
        "admin",
        function,
        &args,
    )
    .unwrap()
}

fn main() {
    let txs = vec![
        tx(
            "s-1",
            "system",
            "acme-bank",
            "bootstrap",
            json!({"org": "acme-bank", "name": "ACME", "admin": "admin"}),
        ),
        tx(
            "f-1",
            "finance",
            "acme-bank",
            "open_account",
            json!({"account": "mint", "currency": "EUR", "limit": "none"}),
        ),
        tx(
            "f-2",
            "finance",
            "acme-bank",
            "open_account",
            json!({"account": "a", "currency": "EUR"}),
        ),
        tx(
            "f-3",
            "finance",
            "acme-bank",
            "transfer",
            json!({"from": {"org": "acme-bank", "account": "mint"}, "to": {"org": "acme-bank", "account": "a"},
                  "amount": 5, "currency": "EUR", "reference": "INV-1"}),
        ),
        tx(
            "g-1",
            "system",
            "acme-bank",
            "propose",
            json!({"title": "admit", "kind": {"type": "add_org", "org": "beta", "name": "Beta", "admin": "root"}}),
        ),
    ];
    let block = BlockInfo {
        height: 1,
        timestamp: Timestamp(1_700_000_000_000),
        chaincode_version: ChaincodeVersion::FIRST,
    };
    let executed = Executor::new(domains::registry(), Limits::DEFAULT).execute_sequential(
        &State::new(),
        &IdSet::default(),
        block,
        &txs,
    );
    write(
        "chunk_decode",
        "block",
        &encode_chunk(&txs, &executed.outcomes),
    );
    let proposal = Proposal {
        timestamp: Timestamp(1_700_000_000_000),
        parent: Some((3, Hash([7; 32]))),
        txs: txs.clone(),
    };
    let encoded = proposal.encode();
    write("proposal_decode", "batch", &encoded);
    write(
        "proposal_decode",
        "empty",
        &Proposal {
            timestamp: Timestamp(1),
            parent: None,
            txs: vec![],
        }
        .encode(),
    );

    let mut m = raft::prelude::Message::default();
    m.set_msg_type(raft::prelude::MessageType::MsgAppend);
    m.from = 1;
    m.to = 2;
    m.term = 3;
    m.index = 10;
    m.log_term = 3;
    m.commit = 9;
    let mut e = raft::prelude::Entry::default();
    e.index = 11;
    e.term = 3;
    e.data = encoded.clone().into();
    m.entries = vec![e].into();
    let mut bytes = vec![0u8];
    encode_message_into(&m, &mut bytes).unwrap();
    write("raft_message", "append", &bytes);
    let point = SnapshotPoint {
        height: 64,
        hash: Hash([9; 32]),
        addresses: BTreeMap::from([(1, "127.0.0.1:9081".to_string())]),
    };
    write(
        "raft_message",
        "point",
        &[&[1u8][..], &point.encode()].concat(),
    );
    let request = BlockRequest {
        from_height: 5,
        bytes_max: 1 << 20,
    };
    write(
        "raft_message",
        "request",
        &[&[2u8][..], &request.encode()].concat(),
    );
    let context = ConfContext {
        addresses: BTreeMap::from([(4, "127.0.0.1:9084".to_string())]),
    };
    write(
        "raft_message",
        "context",
        &[&[4u8][..], &context.encode()].concat(),
    );

    // The first two bytes pick the domain and function as the target does:
    // by position in the registry and in the chaincode's own list.
    let registry = domains::registry();
    let installed: Vec<_> = registry.domains().collect();
    for (i, t) in txs.iter().enumerate() {
        let d = installed.iter().position(|d| **d == t.domain).unwrap() as u8;
        let functions = registry.get(&t.domain).unwrap().functions();
        let f = functions
            .iter()
            .position(|f| *f == t.function.as_str())
            .unwrap() as u8;
        write(
            "chaincode_args",
            &format!("tx-{i}"),
            &[&[d, f][..], &t.args].concat(),
        );
    }
    for name in [
        "receipt",
        "receipt-events",
        "receipt-rejected",
        "receipt-signed",
    ] {
        let text = std::fs::read(format!("../web/src/lib/fixtures/{name}.json")).unwrap();
        write("receipt_verify", name, &text);
    }
}

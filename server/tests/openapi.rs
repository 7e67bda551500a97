//! The OpenAPI contract: the committed `openapi/openapi.json` is exactly
//! what the binary generates and what a live node serves, Swagger UI is
//! served without a network, and every documented operation is routed.
//!
//! After changing the API, regenerate the committed document with
//! `cargo run -p parledger -- openapi > openapi/openapi.json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{run_parledger, Server};
use serde_json::Value;
use std::path::PathBuf;

const REGENERATE: &str = "cargo run -p parledger -- openapi > openapi/openapi.json";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json")
}

fn committed() -> String {
    std::fs::read_to_string(committed_path()).unwrap()
}

#[test]
fn the_committed_document_is_what_the_binary_generates() {
    let generated = run_parledger(["openapi"]);
    let committed = committed();
    if generated != committed {
        let line = generated
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || generated.lines().count().min(committed.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "openapi/openapi.json differs from the generated document from line {line} on \
             (generated: {:?}, committed: {:?}); regenerate it with `{REGENERATE}`",
            generated.lines().nth(line - 1).unwrap_or("<end>"),
            committed.lines().nth(line - 1).unwrap_or("<end>"),
        );
    }
}

#[test]
fn a_live_node_serves_the_committed_document_and_swagger_ui() {
    let s = Server::start(&[]);
    let live = s.req("GET", "/api-docs/openapi.json").send();
    assert_eq!(live.status, 200);
    assert!(live
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let committed: Value = serde_json::from_str(&committed()).unwrap();
    assert!(
        live.json() == committed,
        "the served document differs from openapi/openapi.json; regenerate it with `{REGENERATE}`"
    );

    let ui = s.req("GET", "/docs/").send();
    assert_eq!(ui.status, 200, "{}", ui.text());
    assert!(ui.header("content-type").unwrap().starts_with("text/html"));
    let html = ui.text();
    assert!(html.contains("swagger-ui"), "{html}");
    // The UI's assets are vendored into the binary: nothing is fetched
    // from a CDN.
    assert!(!html.contains("https://"), "{html}");
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        let r = s.req("GET", &format!("/docs/{asset}")).send();
        assert_eq!(r.status, 200, "/docs/{asset}");
        assert!(!r.body.is_empty(), "/docs/{asset}");
    }
    let init = s.req("GET", "/docs/swagger-initializer.js").send().text();
    assert!(init.contains("/api-docs/openapi.json"), "{init}");
}

/// Fills a path template with a value the route accepts syntactically.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{org}" => "acme-bank",
            "{domain}" => "finance",
            "{id}" => "1",
            "{name}" => "alice",
            "{kid}" => "k1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_documented_operation_is_routed_and_documents_its_errors_as_problems() {
    let doc: Value = serde_json::from_str(&committed()).unwrap();
    assert_eq!(
        doc["openapi"].as_str().unwrap().split('.').next(),
        Some("3")
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let s = Server::start(&[]);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 25, "{} paths", paths.len());
    for (template, item) in paths {
        assert!(!template.contains("{_"), "{template}");
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            // Without a token: an existing route answers anything but
            // 404/405 (401 when protected, or its own answer).
            let path = concrete(template);
            let mut call = s.req(&method, &path);
            if matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
                call = call.body("application/json", b"{}".to_vec());
            }
            let r = call.send().status;
            assert!(
                r != 404 && r != 405,
                "{method} {template} ({path}) is documented but answered {r}"
            );
            let secured = op.get("security").is_some();
            if secured {
                assert_eq!(r, 401, "{method} {template} without a token");
            }
            for (status, resp) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let content = resp["content"].as_object().unwrap();
                    let problem = &content
                        .get("application/problem+json")
                        .unwrap_or_else(|| panic!("{method} {template} {status}: {resp}"))
                        ["schema"]["$ref"];
                    assert_eq!(problem, "#/components/schemas/Problem");
                }
            }
            if secured {
                assert!(
                    op["responses"].get("401").is_some(),
                    "{method} {template} does not document 401"
                );
            }
        }
    }
}

/// The schema a property refers to: `$ref`, a nullable `oneOf` with one, or
/// an array's items.
fn referenced(prop: &Value) -> Option<&str> {
    if let Some(r) = prop["$ref"].as_str() {
        return Some(r);
    }
    if let Some(r) = prop["items"]["$ref"].as_str() {
        return Some(r);
    }
    prop["oneOf"]
        .as_array()?
        .iter()
        .find_map(|p| p["$ref"].as_str())
}

/// Asserts that `value` has exactly the fields its schema documents (every
/// required one, no undocumented one), recursively through references.
fn assert_fields(doc: &Value, schema: &str, value: &Value, at: &str) {
    match value {
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                assert_fields(doc, schema, v, &format!("{at}[{i}]"));
            }
        }
        Value::Object(fields) => {
            let name = schema.rsplit('/').next().unwrap();
            let mut s = &doc["components"]["schemas"][name];
            // A tagged union: the alternative its `type` names.
            if let Some(alternatives) = s["oneOf"].as_array() {
                s = alternatives
                    .iter()
                    .find(|a| a["properties"]["type"]["enum"][0] == fields["type"])
                    .unwrap_or_else(|| panic!("{at}: no alternative of {name} for {value}"));
            }
            let props = s["properties"].as_object().unwrap();
            for key in fields.keys() {
                assert!(props.contains_key(key), "{at}.{key} is not in {name}");
            }
            for required in s["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap();
                assert!(fields.contains_key(key), "{at} lacks {name}.{key}");
            }
            for (key, v) in fields {
                if let Some(r) = referenced(&props[key]) {
                    assert_fields(doc, r, v, &format!("{at}.{key}"));
                }
            }
        }
        Value::Null => {}
        other => {
            // A named enumeration (a status, a voting rule) is a string.
            let name = schema.rsplit('/').next().unwrap();
            let allowed = doc["components"]["schemas"][name]["enum"].as_array();
            assert!(
                allowed.is_some_and(|a| a.contains(other)),
                "{at}: {other} where {schema} was expected"
            );
        }
    }
}

#[test]
fn responses_have_exactly_the_fields_their_schemas_document() {
    let doc: Value = serde_json::from_str(&committed()).unwrap();
    let s = Server::start(&[]);
    let alice = s.token("alice@acme-bank");
    let audrey = s.token("audrey@acme-bank");
    let submitted = s.post(
        "/v1/transactions",
        &alice,
        &serde_json::json!({
            "id": "fields-1", "domain": "finance", "function": "transfer",
            "args": {"from": {"org": "acme-bank", "account": "operating"},
                     "to": {"org": "globex-logistics", "account": "operating"},
                     "amount": 9, "currency": "EUR"}}),
    );
    assert_fields(&doc, "TxResult", &submitted.ok(), "submit");
    let height = submitted.json()["height"].as_u64().unwrap();
    let reads = [
        ("/v1/transactions/fields-1", "TxResult"),
        ("/v1/transactions/fields-1/receipt", "Receipt"),
        ("/v1/blocks?limit=5", "BlockPage"),
        (&format!("/v1/blocks/{height}"), "BlockView"),
        ("/v1/state/acme-bank/finance/keys", "KeyPage"),
        (
            "/v1/state/acme-bank/finance/value?key=acct/operating",
            "KeyValue",
        ),
        (
            "/v1/state/acme-bank/finance/history?key=acct/operating",
            "HistoryPage",
        ),
        ("/v1/audit?limit=50", "AuditPage"),
        ("/v1/orgs", "OrgView"),
        ("/v1/orgs/acme-bank/users", "UserView"),
        ("/v1/auth/me", "UserView"),
        ("/v1/consortium/settings", "SettingsView"),
        ("/v1/governance/proposals", "ProposalPage"),
        (
            "/v1/governance/proposals/demo-proposal-initech-health",
            "ProposalView",
        ),
        ("/v1/governance/constitution", "ConstitutionDoc"),
        ("/v1/governance/chaincode", "ChaincodeView"),
        ("/v1/governance/nodes", "NodeView"),
        ("/v1/status", "Status"),
    ];
    for (path, schema) in reads {
        let v = s.get(path, &audrey).ok();
        assert_fields(&doc, schema, &v, path);
    }
    // A block with a domain event (the demo's cold-chain breach).
    let breach = s
        .get("/v1/audit?function=checkpoint&limit=1000", &audrey)
        .ok();
    let tx = breach["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "committed")
        .map(|r| {
            let id = r["tx_id"].as_str().unwrap();
            s.get(&format!("/v1/transactions/{id}"), &audrey).ok()
        })
        .find(|tx| tx["events"].as_array().is_some_and(|e| !e.is_empty()))
        .expect("a checkpoint with a domain event");
    assert_fields(&doc, "TxResult", &tx, "checkpoint");
    let verified = s.post("/v1/audit/verify", &audrey, &serde_json::json!({}));
    assert_fields(&doc, "VerifyResult", &verified.ok(), "verify");
    let token = s.sign_in("bob@umbrella-pharma");
    assert_fields(&doc, "TokenResponse", &token, "token");
}

/// Generated clients name their functions after operation ids: two
/// handlers with the same Rust name in different modules must not collide.
#[test]
fn operation_ids_are_unique() {
    let doc: Value = serde_json::from_str(&committed()).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(id) = op["operationId"].as_str() {
                if let Some(other) = seen.insert(id.to_string(), format!("{method} {path}")) {
                    panic!("operationId {id} names both {other} and {method} {path}");
                }
            }
        }
    }
}

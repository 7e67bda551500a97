//! The operator documentation matches the code: every metric the node
//! exports is documented in the README, and the Grafana dashboard uses only
//! metrics the node exports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Every `parledger_*` name in `text` (Prometheus suffixes removed).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("parledger_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(name.to_string());
        rest = &tail[end..];
    }
    out
}

/// The metrics the code registers (`counter!("parledger_…"`, …).
fn exported() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![root().join("server/src"), root().join("ledger/src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for m in ["counter!(", "gauge!(", "histogram!("] {
                    for (at, _) in text.match_indices(m) {
                        let call = text[at + m.len()..].trim_start();
                        if let Some(lit) = call.strip_prefix('"') {
                            let name = &lit[..lit.find('"').unwrap()];
                            if name.starts_with("parledger_") {
                                names.insert(name.to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    names
}

#[test]
fn every_exported_metric_is_documented_and_the_dashboard_uses_only_real_ones() {
    let exported = exported();
    assert!(exported.len() >= 15, "{exported:?}");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let documented = metric_names(&readme);
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from README's table: {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&exported).collect();
    assert!(
        stale.is_empty(),
        "README documents metrics the node does not export: {stale:?}"
    );

    let text =
        std::fs::read_to_string(root().join("deploy/grafana/parledger-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(!dashboard["panels"].as_array().unwrap().is_empty());
    let used = metric_names(&text);
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the node does not export: {unknown:?}"
    );
}

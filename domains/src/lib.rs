//! Chaincode for Parledger's domains. Depends on the `ledger` crate only.
//!
//! Each domain is a [`ledger::Chaincode`]: it decodes arguments, declares the
//! keys a call touches, and executes against the context the ledger gives it.

#![forbid(unsafe_code)]

pub mod finance;
pub mod healthcare;
pub mod supply_chain;

use ledger::model::InvalidId;
use ledger::{DomainId, FunctionName, OrgId, Registry, Transaction, TxId, UserId};
use std::sync::Arc;

/// A transaction of `domain` from `submitter` of `org`, with `args` as JSON.
/// Fails only when an identifier is malformed.
pub fn transaction(
    domain: DomainId,
    id: &str,
    org: &str,
    submitter: &str,
    function: &str,
    args: &serde_json::Value,
) -> Result<Transaction, InvalidId> {
    Ok(Transaction::new(
        TxId::new(id)?,
        domain,
        FunctionName::new(function)?,
        args,
        UserId::new(submitter)?,
        OrgId::new(org)?,
    ))
}

/// Every domain's chaincode, ready to install in an engine.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(finance::Finance::new()));
    r.register(Arc::new(healthcare::Healthcare::new()));
    r.register(Arc::new(supply_chain::SupplyChain::new()));
    r
}

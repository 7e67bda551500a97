//! Chaincode for Parledger's domains. Depends on the `ledger` crate only.
//!
//! Each domain is a [`ledger::Chaincode`]: it decodes arguments, declares the
//! keys a call touches, and executes against the context the ledger gives it.

#![forbid(unsafe_code)]

pub mod finance;
pub mod healthcare;
pub mod supply_chain;

use ledger::Registry;
use std::sync::Arc;

/// Every domain's chaincode, ready to install in an engine.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(finance::Finance::new()));
    r.register(Arc::new(healthcare::Healthcare::new()));
    r.register(Arc::new(supply_chain::SupplyChain::new()));
    r
}

//! Chaincode for Parledger's domains. Depends on the `ledger` crate only.
//!
//! Each domain is a [`ledger::Chaincode`]: it decodes arguments, declares the
//! keys a call touches, and executes against the context the ledger gives it.

#![forbid(unsafe_code)]

pub mod finance;
pub mod governance;
pub mod healthcare;
pub mod membership;
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
    r.register(Arc::new(membership::Membership::new()));
    r.register(Arc::new(supply_chain::SupplyChain::new()));
    r.with_supported(SUPPORTED)
}

/// The chaincode versions this build runs: 1, and 2 (transfer memos, see
/// [`finance::MEMO_VERSION`]).
pub const SUPPORTED: ledger::Supported = ledger::Supported {
    min: ledger::ChaincodeVersion::FIRST,
    max: ledger::ChaincodeVersion(2),
};

/// Codes that mean "this caller may not do this" rather than "these
/// arguments are wrong". Found by `prepare` (from the arguments and the
/// caller alone), the REST layer answers them 403 before ordering; found
/// while executing (consent, custody), they reject the transaction in its
/// block like any other rule, so that the attempt is on the record.
pub fn is_denial(code: &ledger::Code) -> bool {
    [
        &finance::errors::NOT_OWNER,
        &supply_chain::errors::NOT_CUSTODIAN,
        &supply_chain::errors::NOT_ADDRESSEE,
        &healthcare::errors::NO_CONSENT,
        &membership::errors::NOT_ADMIN,
        &membership::errors::NOT_ALLOWED,
        &governance::errors::NOT_A_VOTER,
        &governance::errors::ORG_REMOVED,
    ]
    .contains(&code)
}

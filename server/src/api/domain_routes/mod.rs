//! Typed endpoints for the everyday operations of the three domains, so that
//! the OpenAPI document names and describes every argument. The generic
//! `POST /v1/transactions` still reaches any function.
//!
//! **Writes** build exactly the transaction the generic endpoint would build
//! from `{id, domain, function, args}` and answer alike (a `TxResult` with
//! its receipt, or `202` and a location), through [`tx::admit`] and
//! [`tx::respond_one`]. A body mirrors the chaincode's argument struct, less
//! what the path names, plus the optional `id` (the idempotency key). A write
//! always acts as the caller's organization: no body names the acting
//! organization, and where a path names the owner of what is acted on and
//! only the owner may act, the path must name the caller's organization
//! (403 otherwise).
//!
//! **Reads** run on the engine thread against the current state (and wait
//! until that state is durable). Resources are addressed by the organization
//! whose partition holds them: `/v1/finance/accounts/{org}/{name}`,
//! `/v1/supply-chain/lots/{manufacturer}/{gtin}/{lot}`,
//! `/v1/healthcare/patients/{custodian}/{patient}`. Members and admins read
//! their own organization's, auditors everyone's ([`Caller::require_read`]);
//! besides, a domain rule lets a party read what concerns it:
//! - the credited organization of a pending transfer reads it (it may void it);
//! - the current custodian of a lot reads the lot and its provenance, and
//!   the product of any lot it holds (it must see recalls);
//! - the addressee of a shipment reads it (it accepts or rejects it).
//!
//! The domains do not derive `ToSchema` (they do not depend on utoipa):
//! request bodies are defined here, and the domain values that reads return
//! are documented by the mirrors in [`docs`], which a test checks field by
//! field against real values.

pub mod docs;
pub mod finance;
pub mod healthcare;
pub mod supply_chain;

use super::auth::{self, Caller};
use super::problem::{codes, ApiError, Problem};
use super::tx::{self, SubmitRequest, TxResult, WaitParams};
use super::Api;
pub use crate::api::problem::ReadResponses;
use actix_web::{web, HttpResponse};
use domains::membership::Role;
use ledger::{ChaincodeError, OrgId};
use serde::Serialize;
use utoipa::IntoResponses;

/// Items a list returns by default.
pub const PAGE_LEN_DEFAULT: usize = 100;
/// Items a list returns at most (every domain query's own bound too).
pub const PAGE_LEN_MAX: usize = 1000;

/// The page length for a `limit` parameter: default, clamped to 1..=max.
pub fn page_len(limit: Option<usize>) -> usize {
    limit.unwrap_or(PAGE_LEN_DEFAULT).clamp(1, PAGE_LEN_MAX)
}

/// One typed operation: what the body of `POST /v1/transactions` would hold.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedCall<A> {
    pub id: Option<String>,
    pub domain: &'static str,
    pub function: &'static str,
    /// The chaincode's own argument struct, so that the names and shapes
    /// sent are the ones it decodes.
    pub args: A,
}

impl<A: Serialize> TypedCall<A> {
    /// The generic request this operation stands for.
    pub fn request(&self) -> Result<SubmitRequest, ApiError> {
        Ok(SubmitRequest {
            id: self.id.clone(),
            domain: self.domain.to_string(),
            function: self.function.to_string(),
            args: serde_json::to_value(&self.args).map_err(ApiError::internal)?,
            // Typed bodies are not signed: when the consortium requires
            // signatures, sign the generic request (`parledger sign`).
            signature: None,
        })
    }
}

/// Orders a typed operation as the generic endpoint would: same checks
/// (role, identifiers, the chaincode's `prepare`), same answer.
pub async fn submit<A: Serialize>(
    api: &web::Data<Api>,
    caller: &Caller,
    wait: &WaitParams,
    call: TypedCall<A>,
) -> Result<HttpResponse, ApiError> {
    let tx = tx::admit(api, caller, call.request()?)?;
    tx::respond_one(api, tx, wait.timeout()).await
}

/// An organization named in a path.
pub fn path_org(s: &str) -> Result<OrgId, ApiError> {
    OrgId::new(s).map_err(|e| ApiError::bad_request(codes::INVALID_PATH, e.to_string()))
}

/// An organization named in a query, or the caller's own when absent.
pub fn query_org(caller: &Caller, s: Option<&str>) -> Result<OrgId, ApiError> {
    match s {
        None => Ok(caller.org.clone()),
        Some(s) => OrgId::new(s).map_err(|e| bad_query(e.to_string())),
    }
}

pub fn bad_query(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(codes::INVALID_QUERY, detail)
}

/// Reads of `org`'s data: its own readers and auditors, or the caller's
/// organization when a domain rule names it as a party (`party`, found in
/// the data read). Fails the same way whether the data exists or not, so a
/// stranger learns nothing.
pub fn require_read_or_party(
    caller: &Caller,
    org: &OrgId,
    party: Option<&OrgId>,
) -> Result<(), ApiError> {
    if caller.may_read(org) || (party == Some(&caller.org) && caller.is_party()) {
        Ok(())
    } else {
        caller.require_read(org)
    }
}

/// Writes that only the owner named in the path may make: the path must
/// name the caller's organization. `code` is the domain's denial code where
/// it has one.
pub fn require_owner(
    caller: &Caller,
    owner: &OrgId,
    code: &str,
    what: &str,
) -> Result<(), ApiError> {
    caller.require(&[Role::Member])?;
    if &caller.org == owner {
        Ok(())
    } else {
        Err(auth::deny(
            caller,
            code,
            format!("{} may not {what} of {owner}", caller.org),
        ))
    }
}

/// A domain query's refusal: its own faults are the node's (500), anything
/// else is about the path or query (400 with the domain's code).
pub fn query_error(e: ChaincodeError) -> ApiError {
    if e.code == ledger::codes::CHAINCODE_FAULT {
        ApiError::internal(format!("{}: {}", e.code, e.message))
    } else {
        ApiError::bad_request(e.code.as_str(), e.message)
    }
}

/// `height:index`, the cursor of lists in ledger order.
pub fn parse_position(s: &str) -> Result<(u64, u32), ApiError> {
    let bad = || bad_query(format!("{s:?} is not height:index"));
    let (h, i) = s.split_once(':').ok_or_else(bad)?;
    Ok((h.parse().map_err(|_| bad())?, i.parse().map_err(|_| bad())?))
}

/// The answers every typed write shares with `POST /v1/transactions`; each
/// route adds its own 403 (and 400 when its path names something).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum WriteResponses {
    /// Ordered and executed: committed, or rejected with the domain's code
    /// (both are in a block, with a receipt).
    #[response(status = 200)]
    Done(TxResult),
    /// Ordered; not answered within the wait. Poll the Location.
    #[response(status = 202, headers(("Location" = String, description = "Where the result will be")))]
    Ordered(TxResult),
    /// Not signed in.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// Body too large.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// The body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    MediaType(Problem),
    /// Invalid body or arguments (`API:INVALID_BODY`, `API:INVALID_ID`,
    /// `LEDGER:INVALID_ARGUMENTS` or a domain code), refused before ordering.
    #[response(status = 422, content_type = "application/problem+json")]
    Invalid(Problem),
    /// Rate limited.
    #[response(status = 429, content_type = "application/problem+json")]
    RateLimited(Problem),
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(finance::routes)
        .configure(supply_chain::routes)
        .configure(healthcare::routes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use finance::{
        resolve_call, CloseAccountRequest, LinkedTransferRequest, OpenAccountRequest,
        PostPendingRequest, Resolve, ResolvePendingRequest, TransferRequest,
    };
    use healthcare::{
        AccessRequest, AddRecordRequest, GrantConsentRequest, RegisterPatientRequest,
        RevokeConsentRequest,
    };
    use ledger::{DomainId, TxId};
    use serde::de::DeserializeOwned;
    use supply_chain::{
        path_lot, AcceptShipmentRequest, CancelShipmentRequest, CheckpointRequest,
        CreateShipmentRequest, MergeLotsRequest, RecallRequest, RegisterLotRequest,
        RegisterProductRequest, RejectShipmentRequest, SplitLotRequest,
    };
    use utoipa::ToSchema;

    /// The example a request's schema documents, as the server reads it.
    fn example<T: ToSchema + DeserializeOwned>() -> T {
        let schema = serde_json::to_value(T::schema()).unwrap();
        serde_json::from_value(schema["example"].clone())
            .unwrap_or_else(|e| panic!("the example of {} does not parse: {e}", T::name()))
    }

    /// Asserts that the chaincode's `prepare` (the checks every node makes
    /// from the arguments and the caller alone) accepts `call` from `org`.
    fn prepares<A: Serialize>(org: &str, call: TypedCall<A>) {
        let r = call.request().unwrap();
        let tx = domains::transaction(
            DomainId::new(&r.domain).unwrap(),
            r.id.as_deref().unwrap_or("generated"),
            org,
            "alice",
            &r.function,
            &r.args,
        )
        .unwrap();
        let registry = domains::registry();
        if let Err(e) = registry.get(&tx.domain).unwrap().prepare(&tx) {
            panic!(
                "{} {} from {org}: {}: {}",
                r.domain, r.function, e.code, e.message
            );
        }
    }

    #[test]
    fn every_documented_example_makes_arguments_the_chaincode_accepts() {
        let (bank, pharma, carrier, hospital) = (
            "acme-bank",
            "umbrella-pharma",
            "globex-logistics",
            "initech-health",
        );
        prepares(bank, example::<OpenAccountRequest>().into_call());
        prepares(
            bank,
            example::<CloseAccountRequest>().into_call("payroll".into()),
        );
        prepares(bank, example::<TransferRequest>().into_call());
        prepares(bank, example::<LinkedTransferRequest>().into_call());
        let hold = TxId::new("hold-0007").unwrap();
        let bank_id = path_org(bank).unwrap();
        let post = example::<PostPendingRequest>();
        prepares(
            bank,
            resolve_call(Resolve::Post, &bank_id, hold.clone(), post).unwrap(),
        );
        for (how, org) in [(Resolve::Void, carrier), (Resolve::Expire, hospital)] {
            let body = example::<ResolvePendingRequest>().into();
            prepares(
                org,
                resolve_call(how, &bank_id, hold.clone(), body).unwrap(),
            );
        }

        let lot = path_lot(&(
            pharma.into(),
            "09506000134352".into(),
            "VAX-2026-003".into(),
        ))
        .unwrap();
        let shipment = domains::supply_chain::ShipmentId::new("SH-1002").unwrap();
        prepares(pharma, example::<RegisterProductRequest>().into_call());
        prepares(pharma, example::<RegisterLotRequest>().into_call());
        prepares(pharma, example::<CreateShipmentRequest>().into_call());
        let sender = path_org(pharma).unwrap();
        prepares(
            carrier,
            example::<AcceptShipmentRequest>().into_call(sender.clone(), &shipment),
        );
        prepares(
            carrier,
            example::<RejectShipmentRequest>().into_call(sender, &shipment),
        );
        prepares(
            pharma,
            example::<CancelShipmentRequest>().into_call(&shipment),
        );
        prepares(carrier, example::<CheckpointRequest>().into_call(&lot));
        prepares(carrier, example::<SplitLotRequest>().into_call(&lot));
        prepares(carrier, example::<MergeLotsRequest>().into_call(&lot));
        prepares(pharma, example::<RecallRequest>().into_lot_call(&lot));
        prepares(
            pharma,
            example::<RecallRequest>().into_product_call(&lot.gtin),
        );

        let patient = "pt-7f3a91c2".to_string();
        prepares(hospital, example::<RegisterPatientRequest>().into_call());
        prepares(
            hospital,
            example::<AddRecordRequest>().into_call(patient.clone()),
        );
        prepares(
            hospital,
            example::<GrantConsentRequest>().into_call(patient.clone()),
        );
        let revoke = example::<RevokeConsentRequest>();
        prepares(
            hospital,
            revoke.into_call(patient.clone(), "trial-flu-26-9".into()),
        );
        let custodian = path_org(hospital).unwrap();
        prepares(
            pharma,
            example::<AccessRequest>().into_call(custodian, patient, "r1".into()),
        );
    }

    #[test]
    fn typed_calls_carry_the_id_and_the_chaincode_names() {
        let call = example::<TransferRequest>().into_call();
        let r = call.request().unwrap();
        assert_eq!(r.id.as_deref(), Some("pay-2026-0001"));
        assert_eq!(
            (r.domain.as_str(), r.function.as_str()),
            ("finance", "transfer")
        );
        assert_eq!(
            r.args["from"],
            serde_json::json!({"org": "acme-bank", "account": "operating"})
        );
        assert_eq!(r.args["pending"], false);
    }

    #[test]
    fn positions_parse_or_fail_with_400() {
        assert_eq!(parse_position("12:3").ok(), Some((12, 3)));
        for bad in ["", "12", "12:", ":3", "a:1", "1:-1", "1:2:3"] {
            let e = parse_position(bad).err();
            assert_eq!(e.map(|e| e.status.as_u16()), Some(400), "{bad:?}");
        }
    }

    #[test]
    fn page_lengths_are_bounded() {
        assert_eq!(page_len(None), PAGE_LEN_DEFAULT);
        assert_eq!(page_len(Some(0)), 1);
        assert_eq!(page_len(Some(5)), 5);
        assert_eq!(page_len(Some(usize::MAX)), PAGE_LEN_MAX);
    }
}

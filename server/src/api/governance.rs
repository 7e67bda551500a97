//! `/v1/governance`: proposals and votes of the member organizations
//! (admitting and removing organizations, cluster nodes, settings,
//! chaincode versions, the constitution), the nodes and the chaincode
//! version schedule they decided. Every change is a `system` transaction
//! (`domains::governance` decides who may vote and what passes); this
//! layer mirrors the domain's types for the OpenAPI document, hashes an
//! admitted organization's first password, and restates a proposal's kind
//! in each vote.

use super::admin::hash;
use super::auth::Caller;
use super::problem::{codes, ApiError, Problem};
use super::tx::urlencode;
use super::{submit_system_as, Api};
use actix_web::http::header;
use actix_web::{get, post, web, HttpResponse};
use domains::governance::{self as gov, ProposalKind};
use domains::membership::Role;
use ledger::OrgId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// How many of the electorate must approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VotingRuleDoc {
    Majority,
    TwoThirds,
    Unanimous,
}

/// The voting rule of each kind of proposal.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesDoc {
    pub add_org: VotingRuleDoc,
    pub remove_org: VotingRuleDoc,
    pub add_node: VotingRuleDoc,
    pub remove_node: VotingRuleDoc,
    pub set_settings: VotingRuleDoc,
    pub activate_chaincode: VotingRuleDoc,
    pub amend_constitution: VotingRuleDoc,
}

/// The consortium's rules about its own decisions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConstitutionDoc {
    pub rules: RulesDoc,
    /// How long a proposal takes ballots, in ledger time (1,000 ms to a
    /// year).
    pub proposal_lifetime_ms: u64,
}

/// A cluster node's identity.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpecDoc {
    /// Its Raft node id (its certificate names `node-ID.parledger`).
    pub node_id: u64,
    /// Its cluster address, `host:port`.
    pub address: String,
}

/// Consortium settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsDoc {
    /// Every transaction must carry a signature by a key of its submitter.
    pub require_signatures: bool,
    /// `ed25519` (the default) or `ml-dsa-65` (FIPS 204, quantum-resistant):
    /// the algorithm of transaction signatures.
    #[serde(default = "ed25519", skip_serializing_if = "is_ed25519")]
    #[schema(example = "ml-dsa-65")]
    pub signature_scheme: String,
}

fn ed25519() -> String {
    "ed25519".into()
}

fn is_ed25519(s: &str) -> bool {
    s == "ed25519"
}

/// What a proposal would do.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KindRequest {
    /// Admit an organization with its first admin (and, optionally, its
    /// cluster node).
    AddOrg {
        /// Its id (`A-Z a-z 0-9 - _ .`, not starting with `_`).
        org: String,
        /// Its display name.
        name: String,
        /// Its first admin's user name.
        admin: String,
        /// The first admin's password (10 to 256 bytes; stored hashed);
        /// omit for users of the identity provider.
        #[serde(default)]
        password: Option<String>,
        #[serde(default)]
        node: Option<NodeSpecDoc>,
    },
    /// Remove a member: its users can no longer write; its history stays.
    RemoveOrg { org: String },
    /// Add a node to the cluster, run by member `org`.
    AddNode {
        node_id: u64,
        address: String,
        org: String,
    },
    /// Remove a node from the cluster.
    RemoveNode { node_id: u64 },
    /// Replace the consortium's settings.
    SetSettings { settings: SettingsDoc },
    /// Run chaincode `version` from block `height` on (above the block
    /// that decides it).
    ActivateChaincode { version: u32, height: u64 },
    /// Replace the constitution.
    AmendConstitution { constitution: ConstitutionDoc },
}

/// What a proposal does, as shown (a first admin's password never is).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KindView {
    AddOrg {
        org: String,
        name: String,
        admin: String,
        has_password: bool,
        node: Option<NodeSpecDoc>,
    },
    RemoveOrg {
        org: String,
    },
    AddNode {
        node_id: u64,
        address: String,
        org: String,
    },
    RemoveNode {
        node_id: u64,
    },
    SetSettings {
        settings: SettingsDoc,
    },
    ActivateChaincode {
        version: u32,
        height: u64,
    },
    AmendConstitution {
        constitution: ConstitutionDoc,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Taking ballots.
    Open,
    /// Approved; its effect applied in the deciding block.
    Passed,
    /// Voted down: the rule can no longer be met.
    Rejected,
    /// Its lifetime ended undecided.
    Expired,
    /// Approved, but its effect had become impossible (see `note`).
    Failed,
}

/// One organization's vote.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BallotView {
    pub approve: bool,
    /// `org/user` of the admin who cast it.
    pub by: String,
    pub at_ms: u64,
    pub height: u64,
    /// The transaction that cast it.
    pub tx: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProposalView {
    /// The id of the transaction that made it.
    pub id: String,
    pub title: String,
    pub kind: KindView,
    /// `org/user` of the admin who made it.
    pub proposer: String,
    pub created_ms: u64,
    pub created_height: u64,
    /// Ledger time after which it takes no ballots.
    pub expires_ms: u64,
    pub rule: VotingRuleDoc,
    /// Approvals needed.
    pub needed: u32,
    /// The organizations that vote on it (the members when it was made).
    pub electorate: Vec<String>,
    /// Ballots by organization.
    pub votes: BTreeMap<String, BallotView>,
    /// As of the latest block's time (an open proposal past its lifetime
    /// shows `expired`).
    pub status: ProposalStatus,
    pub approvals: u32,
    pub refusals: u32,
    pub decided_ms: Option<u64>,
    /// The block in which it was decided and its effect applied.
    pub decided_height: Option<u64>,
    /// The transaction that decided it.
    pub decided_by: Option<String>,
    /// What its effect did, or why it failed.
    pub note: Option<String>,
}

impl ProposalView {
    fn of(p: &gov::Proposal, now_ms: u64) -> Result<ProposalView, ApiError> {
        serde_json::from_value(p.view(now_ms)).map_err(ApiError::internal)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "title": "Admit Initech Health",
    "kind": {"type": "add_org", "org": "initech-health", "name": "Initech Health", "admin": "root", "password": "a long passphrase"}
}))]
pub struct NewProposal {
    /// Transaction id, which becomes the proposal's id (idempotency key);
    /// generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// 1-200 bytes.
    pub title: String,
    pub kind: KindRequest,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"approve": true}))]
pub struct VoteRequest {
    /// Transaction id (idempotency key); generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    pub approve: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProposalsParams {
    /// Only proposals with this status.
    pub status: Option<ProposalStatus>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
    /// After the proposal with this id (a previous page's `next_after`).
    pub after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProposalPage {
    /// Newest first.
    pub proposals: Vec<ProposalView>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    pub node_id: u64,
    /// Empty for a founding node removed by a vote.
    pub address: String,
    /// The member organization that runs it.
    pub org: Option<String>,
    pub decided_ms: u64,
    /// The proposal that decided its latest change.
    pub proposal: String,
    pub removed_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivationView {
    pub version: u32,
    /// The first block executed under it.
    pub height: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChaincodeView {
    /// The latest durable block's height on this node.
    pub height: u64,
    /// The version of the latest durable block.
    pub active_version: u32,
    /// Every activation decided so far.
    pub schedule: Vec<ActivationView>,
    /// The versions this node's binary runs: a node asked to execute a
    /// block under another stops before it, and says so.
    pub supported_min: u32,
    pub supported_max: u32,
}

fn now_and<T: Send + 'static>(
    f: impl FnOnce(&ledger::State) -> T + Send + 'static,
) -> impl FnOnce(&mut ledger::engine::Engine) -> (T, u64, u64) + Send + 'static {
    move |engine| {
        let (now, height) = engine
            .tip()
            .map_or((0, 0), |(h, _)| (h.timestamp.0, h.height));
        (f(engine.state()), now, height)
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(
        gov::errors::PROPOSAL_NOT_FOUND.as_str(),
        format!("there is no proposal {id}"),
    )
}

async fn load(api: &web::Data<Api>, id: &str) -> Result<(gov::Proposal, u64), ApiError> {
    let key = id.to_string();
    let (found, now, _) = api
        .node
        .read(now_and(move |s| gov::proposal(s, &key)))
        .await?;
    let p = found.ok_or_else(|| not_found(id))?;
    Ok((p, now))
}

/// The domain's kind for a request: the first admin's password hashed,
/// everything else as given.
async fn kind_of(k: KindRequest) -> Result<ProposalKind, ApiError> {
    let bad = |e: String| ApiError::unprocessable(codes::INVALID_BODY, e);
    if let KindRequest::AddOrg {
        org,
        name,
        admin,
        password,
        node,
    } = k
    {
        let password_hash = match password {
            Some(p) => Some(hash(p).await?),
            None => None,
        };
        return Ok(ProposalKind::AddOrg {
            org: OrgId::new(&org).map_err(|e| bad(format!("org: {e}")))?,
            name,
            admin,
            password_hash,
            node: node.map(|n| gov::NodeSpec {
                node_id: n.node_id,
                address: n.address,
            }),
        });
    }
    let value = serde_json::to_value(&k).map_err(ApiError::internal)?;
    serde_json::from_value(value).map_err(|e| bad(format!("kind: {e}")))
}

/// Make a proposal (admins). Its organization's ballot counts in favour at
/// once: in a consortium of one it passes in the same block.
#[utoipa::path(
    tag = "governance",
    request_body = NewProposal,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Made (and, if its organization's ballot settles it, decided)", body = ProposalView,
            headers(("Location" = String, description = "The proposal"))),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or of a removed organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Could never take effect (the organization exists, no electorate)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid kind or title", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/governance/proposals")]
pub async fn make_proposal(
    api: web::Data<Api>,
    caller: Caller,
    body: web::Json<NewProposal>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let b = body.into_inner();
    let kind = kind_of(b.kind).await?;
    let out = submit_system_as(
        &api,
        &caller,
        b.id.as_deref(),
        "propose",
        serde_json::json!({"title": b.title, "kind": kind}),
    )
    .await?;
    let view: ProposalView = serde_json::from_value(out).map_err(ApiError::internal)?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/v1/governance/proposals/{}", urlencode(&view.id)),
        ))
        .json(view))
}

/// Vote on a proposal for your organization (admins of its electorate,
/// once per organization). The ballot that meets the rule applies the
/// proposal's effect in the same block.
#[utoipa::path(
    tag = "governance",
    params(("id" = String, Path, description = "Proposal id")),
    request_body = VoteRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The proposal after the ballot", body = ProposalView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or the organization is not in the electorate", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such proposal", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already voted, decided or expired", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/governance/proposals/{id}/votes")]
pub async fn vote_on_proposal(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<VoteRequest>,
) -> Result<web::Json<ProposalView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let id = path.into_inner();
    let (p, _) = load(&api, &id).await?;
    let out = submit_system_as(
        &api,
        &caller,
        body.id.as_deref(),
        "vote",
        serde_json::json!({"proposal": id, "approve": body.approve, "kind": p.kind.public()}),
    )
    .await?;
    Ok(web::Json(
        serde_json::from_value(out).map_err(ApiError::internal)?,
    ))
}

/// Record that a proposal's lifetime ended undecided (members and admins,
/// once the lifetime is over).
#[utoipa::path(
    tag = "governance",
    params(("id" = String, Path, description = "Proposal id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Recorded as expired", body = ProposalView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a member or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such proposal", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still open, or already closed", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/governance/proposals/{id}/expire")]
pub async fn expire_proposal(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<ProposalView>, ApiError> {
    caller.require(&[Role::Member, Role::Admin])?;
    let id = path.into_inner();
    let out = submit_system_as(
        &api,
        &caller,
        None,
        "expire_proposal",
        serde_json::json!({"proposal": id}),
    )
    .await?;
    Ok(web::Json(
        serde_json::from_value(out).map_err(ApiError::internal)?,
    ))
}

/// Proposals, newest first (every signed-in user of the consortium).
#[utoipa::path(
    tag = "governance",
    params(ProposalsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of proposals", body = ProposalPage),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/governance/proposals")]
pub async fn list_proposals(
    api: web::Data<Api>,
    _caller: Caller,
    q: web::Query<ProposalsParams>,
) -> Result<web::Json<ProposalPage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            codes::INVALID_QUERY,
            "limit must be 1 to 1000",
        ));
    }
    let (all, now, _) = api.node.read(now_and(gov::proposals)).await?;
    let mut views = Vec::new();
    let mut started = q.after.is_none();
    for p in &all {
        if !started {
            started = q.after.as_deref() == Some(p.id.as_str());
            continue;
        }
        let v = ProposalView::of(p, now)?;
        if q.status.is_none_or(|s| s == v.status) {
            views.push(v);
        }
    }
    let next_after = (views.len() > limit).then(|| views[limit - 1].id.clone());
    views.truncate(limit);
    Ok(web::Json(ProposalPage {
        proposals: views,
        next_after,
    }))
}

/// One proposal with its ballots.
#[utoipa::path(
    tag = "governance",
    params(("id" = String, Path, description = "Proposal id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The proposal", body = ProposalView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such proposal", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/governance/proposals/{id}")]
pub async fn get_proposal(
    api: web::Data<Api>,
    _caller: Caller,
    path: web::Path<String>,
) -> Result<web::Json<ProposalView>, ApiError> {
    let id = path.into_inner();
    let (p, now) = load(&api, &id).await?;
    Ok(web::Json(ProposalView::of(&p, now)?))
}

/// The constitution in force: the voting rule of each kind of proposal and
/// a proposal's lifetime.
#[utoipa::path(
    tag = "governance",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The constitution", body = ConstitutionDoc),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/governance/constitution")]
pub async fn get_constitution(
    api: web::Data<Api>,
    _caller: Caller,
) -> Result<web::Json<ConstitutionDoc>, ApiError> {
    let (c, _, _) = api.node.read(now_and(gov::constitution)).await?;
    let v = serde_json::to_value(c).map_err(ApiError::internal)?;
    Ok(web::Json(
        serde_json::from_value(v).map_err(ApiError::internal)?,
    ))
}

/// The cluster nodes the consortium decided on by vote.
#[utoipa::path(
    tag = "governance",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Nodes by id", body = Vec<NodeView>),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/governance/nodes")]
pub async fn governance_nodes(
    api: web::Data<Api>,
    _caller: Caller,
) -> Result<web::Json<Vec<NodeView>>, ApiError> {
    let (nodes, _, _) = api.node.read(now_and(gov::nodes)).await?;
    Ok(web::Json(
        nodes
            .into_iter()
            .map(|n| NodeView {
                node_id: n.node_id,
                address: n.address,
                org: n.org.map(|o| o.to_string()),
                decided_ms: n.decided_ms,
                proposal: n.proposal,
                removed_ms: n.removed_ms,
            })
            .collect(),
    ))
}

/// The chaincode version in force, the activations decided, and the
/// versions this node runs.
#[utoipa::path(
    tag = "governance",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Versions", body = ChaincodeView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/governance/chaincode")]
pub async fn get_chaincode(
    api: web::Data<Api>,
    _caller: Caller,
) -> Result<web::Json<ChaincodeView>, ApiError> {
    let (schedule, _, height) = api
        .node
        .read(|engine| {
            let height = engine.height();
            (engine.version_schedule(), 0, height)
        })
        .await?;
    let schedule = schedule.map_err(ApiError::internal)?;
    let supported = api.registry.supported();
    Ok(web::Json(ChaincodeView {
        height,
        active_version: schedule.version_at(height.max(1)).0,
        schedule: schedule
            .activations
            .iter()
            .map(|a| ActivationView {
                version: a.version.0,
                height: a.height,
            })
            .collect(),
        supported_min: supported.min.0,
        supported_max: supported.max.0,
    }))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_proposals)
        .service(make_proposal)
        .service(get_proposal)
        .service(vote_on_proposal)
        .service(expire_proposal)
        .service(get_constitution)
        .service(governance_nodes)
        .service(get_chaincode);
}

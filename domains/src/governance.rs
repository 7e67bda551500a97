//! Governance: the member organizations decide together who joins and
//! leaves, which nodes run the ledger, the consortium's settings, the
//! chaincode version and the voting rules themselves. Every step is a
//! transaction of the `system` domain, so it is ordered, replicated and on
//! the audit trail like any other, and its effect lands in a defined block.
//!
//! ## Keys (all in `(_consortium, system)`)
//! - `constitution`: the voting rule of each kind of proposal and a
//!   proposal's lifetime ([`Constitution`]; absent: the defaults).
//! - `proposal/{id}`: a [`Proposal`], keyed by the id of the transaction
//!   that made it.
//! - `node/{id}`: a cluster node decided by the consortium ([`NodeRecord`]);
//!   the node runtime turns these into Raft membership changes.
//! - [`ledger::versions::SCHEDULE_KEY`]: the chaincode version schedule.
//! - and membership's `org/{id}` and `settings`, which passed proposals
//!   change.
//!
//! ## Rules
//! - An admin of a member organization proposes (`propose`); its
//!   organization's ballot counts in favour at once. The electorate is
//!   fixed when the proposal is made: the member organizations then
//!   (without the one a removal names). The rule (majority, two thirds,
//!   unanimity) and the lifetime come from the constitution then in force.
//! - Each organization of the electorate votes once (`vote`, by one of its
//!   admins). The ballot that meets the rule passes the proposal and applies
//!   its effect in the same transaction, so the effect is in that block;
//!   the ballot after which the rule can no longer be met rejects it. A
//!   passed proposal whose effect has become impossible meanwhile (the
//!   organization joined by another proposal, the activation height went
//!   by) is recorded as `failed` with the reason.
//! - A proposal not decided when its lifetime ends takes no more ballots;
//!   `expire_proposal` records it as expired (anyone may call it then).
//! - A vote restates the proposal's `kind` (the REST layer fills it in):
//!   the keys a call touches must follow from its arguments alone, and the
//!   effect's keys follow from the kind. A restatement that differs from
//!   the stored proposal is refused (`GOVERNANCE:PROPOSAL_MISMATCH`). A
//!   first admin's password hash is not restated: ballots never carry it.
//! - Chaincode versions activate at the height the proposal names, which
//!   must be above the block that decides it: every replica switches at
//!   the same block (see [`ledger::versions`]).

use crate::membership::{
    self, caller, consortium, decode, encode, err, invalid, new_user, org_dir_key, partition,
    require_admin, store_user, user_key, OrgRecord, Role, Settings, ORG_KEY, SETTINGS_KEY,
};
use ledger::chaincode::{ChaincodeError, Footprint, TxContext};
use ledger::versions::{Activation, SCHEDULE_KEY};
use ledger::{ChaincodeVersion, OrgId, Transaction, VersionSchedule};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

pub mod errors {
    use ledger::Code;
    pub const PROPOSAL_NOT_FOUND: Code = Code::from_static("GOVERNANCE:PROPOSAL_NOT_FOUND");
    pub const PROPOSAL_MISMATCH: Code = Code::from_static("GOVERNANCE:PROPOSAL_MISMATCH");
    pub const PROPOSAL_CLOSED: Code = Code::from_static("GOVERNANCE:PROPOSAL_CLOSED");
    pub const PROPOSAL_EXPIRED: Code = Code::from_static("GOVERNANCE:PROPOSAL_EXPIRED");
    pub const PROPOSAL_OPEN: Code = Code::from_static("GOVERNANCE:PROPOSAL_OPEN");
    pub const NOT_A_VOTER: Code = Code::from_static("GOVERNANCE:NOT_A_VOTER");
    pub const ALREADY_VOTED: Code = Code::from_static("GOVERNANCE:ALREADY_VOTED");
    pub const ORG_REMOVED: Code = Code::from_static("GOVERNANCE:ORG_REMOVED");
    pub const ORG_NOT_FOUND: Code = Code::from_static("GOVERNANCE:ORG_NOT_FOUND");
    pub const NODE_EXISTS: Code = Code::from_static("GOVERNANCE:NODE_EXISTS");
    pub const NO_ELECTORATE: Code = Code::from_static("GOVERNANCE:NO_ELECTORATE");
    pub const BAD_ACTIVATION: Code = Code::from_static("GOVERNANCE:BAD_ACTIVATION");
}

pub const CONSTITUTION_KEY: &[u8] = b"constitution";
pub const PROPOSAL_PREFIX: &str = "proposal/";
pub const NODE_PREFIX: &str = "node/";

pub fn proposal_key(id: &str) -> Vec<u8> {
    format!("{PROPOSAL_PREFIX}{id}").into_bytes()
}

pub fn node_key(id: u64) -> Vec<u8> {
    format!("{NODE_PREFIX}{id}").into_bytes()
}

/// Longest proposal title, in bytes.
pub const TITLE_BYTES_MAX: usize = 200;
/// Longest node address (`host:port`), in bytes.
pub const ADDRESS_BYTES_MAX: usize = 255;
/// Bounds of a proposal's lifetime: a minute to a year.
pub const LIFETIME_MS_MIN: u64 = 1_000;
pub const LIFETIME_MS_MAX: u64 = 366 * 24 * 3600 * 1000;
/// A week.
pub const LIFETIME_MS_DEFAULT: u64 = 7 * 24 * 3600 * 1000;

/// How many of the electorate must approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VotingRule {
    /// More than half.
    Majority,
    /// At least two thirds.
    TwoThirds,
    /// Everyone.
    Unanimous,
}

impl VotingRule {
    /// Approvals needed out of an electorate of `n` (at least 1).
    pub fn needed(self, n: usize) -> usize {
        match self {
            VotingRule::Majority => n / 2 + 1,
            VotingRule::TwoThirds => (2 * n).div_ceil(3),
            VotingRule::Unanimous => n,
        }
        .max(1)
    }
}

/// The voting rule of each kind of proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub add_org: VotingRule,
    pub remove_org: VotingRule,
    pub add_node: VotingRule,
    pub remove_node: VotingRule,
    pub set_settings: VotingRule,
    pub activate_chaincode: VotingRule,
    pub amend_constitution: VotingRule,
}

/// The consortium's rules about its own decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constitution {
    pub rules: Rules,
    /// How long a proposal takes ballots, in ledger time (ms).
    pub proposal_lifetime_ms: u64,
}

impl Default for Constitution {
    /// Admissions, nodes and settings by majority; removals, chaincode
    /// versions and the constitution itself by two thirds; a week to vote.
    fn default() -> Self {
        Constitution {
            rules: Rules {
                add_org: VotingRule::Majority,
                remove_org: VotingRule::TwoThirds,
                add_node: VotingRule::Majority,
                remove_node: VotingRule::Majority,
                set_settings: VotingRule::Majority,
                activate_chaincode: VotingRule::TwoThirds,
                amend_constitution: VotingRule::TwoThirds,
            },
            proposal_lifetime_ms: LIFETIME_MS_DEFAULT,
        }
    }
}

impl Constitution {
    pub fn rule_for(&self, kind: &ProposalKind) -> VotingRule {
        let r = &self.rules;
        match kind {
            ProposalKind::AddOrg { .. } => r.add_org,
            ProposalKind::RemoveOrg { .. } => r.remove_org,
            ProposalKind::AddNode { .. } => r.add_node,
            ProposalKind::RemoveNode { .. } => r.remove_node,
            ProposalKind::SetSettings { .. } => r.set_settings,
            ProposalKind::ActivateChaincode { .. } => r.activate_chaincode,
            ProposalKind::AmendConstitution { .. } => r.amend_constitution,
        }
    }

    fn check(&self) -> Result<(), ChaincodeError> {
        if !(LIFETIME_MS_MIN..=LIFETIME_MS_MAX).contains(&self.proposal_lifetime_ms) {
            return Err(invalid(format!(
                "proposal_lifetime_ms must be {LIFETIME_MS_MIN} to {LIFETIME_MS_MAX}"
            )));
        }
        Ok(())
    }
}

/// A cluster node's identity as the consortium knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Its Raft node id (its certificate names `node-ID.parledger`).
    pub node_id: u64,
    /// Its cluster address, `host:port`.
    pub address: String,
}

/// What a proposal would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProposalKind {
    /// Admit an organization with its first admin (an argon2id hash from the
    /// REST layer, never a password) and, optionally, its node.
    AddOrg {
        org: OrgId,
        name: String,
        admin: String,
        #[serde(default)]
        password_hash: Option<String>,
        #[serde(default)]
        node: Option<NodeSpec>,
    },
    /// Remove a member: its users can no longer write; its history stays.
    RemoveOrg { org: OrgId },
    /// Add a node to the cluster, run by member `org`.
    AddNode {
        node_id: u64,
        address: String,
        org: OrgId,
    },
    /// Remove a node from the cluster.
    RemoveNode { node_id: u64 },
    /// Replace the consortium's settings.
    SetSettings { settings: Settings },
    /// Run chaincode `version` from block `height` on.
    ActivateChaincode {
        version: ChaincodeVersion,
        height: u64,
    },
    /// Replace the constitution (the rule for this kind is the old one's).
    AmendConstitution { constitution: Constitution },
}

impl ProposalKind {
    pub fn name(&self) -> &'static str {
        match self {
            ProposalKind::AddOrg { .. } => "add_org",
            ProposalKind::RemoveOrg { .. } => "remove_org",
            ProposalKind::AddNode { .. } => "add_node",
            ProposalKind::RemoveNode { .. } => "remove_node",
            ProposalKind::SetSettings { .. } => "set_settings",
            ProposalKind::ActivateChaincode { .. } => "activate_chaincode",
            ProposalKind::AmendConstitution { .. } => "amend_constitution",
        }
    }

    /// Checks what can be checked from the arguments alone.
    fn check(&self) -> Result<(), ChaincodeError> {
        match self {
            ProposalKind::AddOrg {
                org,
                name,
                admin,
                password_hash,
                node,
            } => {
                membership::check_member_org(org)?;
                membership::check_name("admin", admin)?;
                membership::check_hash(password_hash.as_deref())?;
                if name.is_empty() || name.len() > 200 {
                    return Err(invalid("name must be 1-200 bytes"));
                }
                if let Some(n) = node {
                    check_node(n.node_id, &n.address)?;
                }
            }
            ProposalKind::RemoveOrg { org } => membership::check_member_org(org)?,
            ProposalKind::AddNode {
                node_id,
                address,
                org,
            } => {
                check_node(*node_id, address)?;
                membership::check_member_org(org)?;
            }
            ProposalKind::RemoveNode { node_id } => {
                if *node_id == 0 {
                    return Err(invalid("node ids start at 1"));
                }
            }
            ProposalKind::SetSettings { .. } => {}
            ProposalKind::ActivateChaincode { version, .. } => {
                if *version <= ChaincodeVersion::FIRST {
                    return Err(invalid("a version to activate is above 1"));
                }
            }
            ProposalKind::AmendConstitution { constitution } => constitution.check()?,
        }
        Ok(())
    }

    /// Declares the keys the effect reads and writes.
    fn footprint(&self, fp: Footprint) -> Footprint {
        let c = consortium();
        match self {
            ProposalKind::AddOrg {
                org, admin, node, ..
            } => {
                let new = partition(org);
                let fp = fp
                    .write(&c, org_dir_key(org))
                    .write(&new, ORG_KEY)
                    .write(&new, user_key(admin));
                match node {
                    Some(n) => fp.write(&c, node_key(n.node_id)),
                    None => fp,
                }
            }
            ProposalKind::RemoveOrg { org } => fp
                .write(&c, org_dir_key(org))
                .write(&partition(org), ORG_KEY),
            ProposalKind::AddNode { node_id, org, .. } => {
                fp.write(&c, node_key(*node_id)).read(&c, org_dir_key(org))
            }
            ProposalKind::RemoveNode { node_id } => fp.write(&c, node_key(*node_id)),
            ProposalKind::SetSettings { .. } => fp.write(&c, SETTINGS_KEY),
            ProposalKind::ActivateChaincode { .. } => fp.write(&c, SCHEDULE_KEY),
            ProposalKind::AmendConstitution { .. } => fp.write(&c, CONSTITUTION_KEY),
        }
    }

    /// The kind without its secret (a first admin's password hash): what a
    /// vote restates, so that ballots do not carry the hash.
    pub fn public(&self) -> ProposalKind {
        let mut k = self.clone();
        if let ProposalKind::AddOrg { password_hash, .. } = &mut k {
            *password_hash = None;
        }
        k
    }

    /// What anyone may see of it: never a password hash.
    pub fn view(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            if let Some(h) = o.remove("password_hash") {
                o.insert("has_password".into(), json!(!h.is_null()));
            }
        }
        v
    }
}

fn check_node(node_id: u64, address: &str) -> Result<(), ChaincodeError> {
    if node_id == 0 {
        return Err(invalid("node ids start at 1"));
    }
    let port_ok = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if address.len() > ADDRESS_BYTES_MAX
        || !port_ok
        || !address
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
    {
        return Err(invalid(format!(
            "address must be host:port, at most {ADDRESS_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    /// Approved, and its effect applied in the deciding block.
    Passed,
    /// Voted down: the rule can no longer be met.
    Rejected,
    /// Its lifetime ended undecided.
    Expired,
    /// Approved, but its effect had become impossible (see `note`).
    Failed,
}

/// One organization's vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ballot {
    pub approve: bool,
    /// `org/user` of the admin who cast it.
    pub by: String,
    pub at_ms: u64,
    pub height: u64,
    pub tx: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub id: String,
    pub title: String,
    pub kind: ProposalKind,
    /// `org/user` of the admin who made it.
    pub proposer: String,
    pub created_ms: u64,
    pub created_height: u64,
    /// Ledger time after which it takes no ballots.
    pub expires_ms: u64,
    pub rule: VotingRule,
    /// Approvals needed.
    pub needed: u32,
    pub electorate: BTreeSet<OrgId>,
    pub votes: BTreeMap<OrgId, Ballot>,
    pub status: Status,
    #[serde(default)]
    pub decided_ms: Option<u64>,
    /// The block in which it was decided (and its effect applied).
    #[serde(default)]
    pub decided_height: Option<u64>,
    #[serde(default)]
    pub decided_by: Option<String>,
    /// Why it failed, or what its effect did.
    #[serde(default)]
    pub note: Option<String>,
}

impl Proposal {
    pub fn approvals(&self) -> usize {
        self.votes.values().filter(|b| b.approve).count()
    }

    pub fn refusals(&self) -> usize {
        self.votes.values().filter(|b| !b.approve).count()
    }

    /// Its status as of ledger time `now_ms`: an open proposal past its
    /// lifetime is expired even before `expire_proposal` records it.
    pub fn status_at(&self, now_ms: u64) -> Status {
        if self.status == Status::Open && now_ms >= self.expires_ms {
            Status::Expired
        } else {
            self.status
        }
    }

    /// What the API shows (the kind without a password hash).
    pub fn view(&self, now_ms: u64) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["kind"] = self.kind.view();
        v["status"] = json!(self.status_at(now_ms));
        v["approvals"] = json!(self.approvals());
        v["refusals"] = json!(self.refusals());
        v
    }
}

/// A cluster node the consortium decided on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: u64,
    /// Empty for a node removed without having been added by a proposal
    /// (a founding node).
    pub address: String,
    pub org: Option<OrgId>,
    pub decided_ms: u64,
    /// The proposal that decided the latest change.
    pub proposal: String,
    /// Set once removed.
    #[serde(default)]
    pub removed_ms: Option<u64>,
}

impl NodeRecord {
    pub fn is_member(&self) -> bool {
        self.removed_ms.is_none()
    }
}

/// The organization directory entry (`org/{id}` of the consortium).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgEntry {
    pub id: OrgId,
    #[serde(default)]
    pub removed_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProposeArgs {
    title: String,
    kind: ProposalKind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VoteArgs {
    proposal: String,
    approve: bool,
    /// The proposal's kind, restated.
    kind: ProposalKind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpireArgs {
    proposal: String,
}

/// A governance call, prepared.
#[derive(Debug)]
pub(crate) enum GovernanceCall {
    Propose(ProposeArgs),
    Vote(VoteArgs),
    Expire(ExpireArgs),
}

fn check_proposal_id(id: &str) -> Result<(), ChaincodeError> {
    ledger::TxId::new(id)
        .map(|_| ())
        .map_err(|e| invalid(format!("proposal: {e}")))
}

/// Decodes a governance function's arguments and declares its footprint;
/// `None` when `function` is not one.
pub(crate) fn prepare(
    tx: &Transaction,
    function: &str,
) -> Option<Result<(Footprint, GovernanceCall), ChaincodeError>> {
    let me = (partition(&tx.org), user_key(tx.submitter.as_str()));
    let c = consortium();
    let prepared = match function {
        "propose" => ledger::decode_args::<ProposeArgs>(tx).and_then(|a| {
            if a.title.is_empty() || a.title.len() > TITLE_BYTES_MAX {
                return Err(invalid(format!("title must be 1-{TITLE_BYTES_MAX} bytes")));
            }
            a.kind.check()?;
            let fp = Footprint::new()
                .read(&me.0, me.1)
                .read_prefix(&c, "org/")
                .read(&c, CONSTITUTION_KEY)
                .write(&c, proposal_key(tx.id.as_str()));
            // It may pass at once (a consortium of one).
            Ok((a.kind.footprint(fp), GovernanceCall::Propose(a)))
        }),
        "vote" => ledger::decode_args::<VoteArgs>(tx).and_then(|a| {
            check_proposal_id(&a.proposal)?;
            a.kind.check()?;
            let fp = Footprint::new()
                .read(&me.0, me.1)
                .read(&c, org_dir_key(&tx.org))
                .write(&c, proposal_key(&a.proposal));
            Ok((a.kind.footprint(fp), GovernanceCall::Vote(a)))
        }),
        "expire_proposal" => ledger::decode_args::<ExpireArgs>(tx).and_then(|a| {
            check_proposal_id(&a.proposal)?;
            let fp = Footprint::new()
                .read(&me.0, me.1)
                .write(&c, proposal_key(&a.proposal));
            Ok((fp, GovernanceCall::Expire(a)))
        }),
        _ => return None,
    };
    Some(prepared)
}

fn load_proposal(ctx: &mut TxContext<'_>, id: &str) -> Result<Proposal, ChaincodeError> {
    decode(ctx.get(&consortium(), &proposal_key(id))?, "proposal")?.ok_or_else(|| {
        err(
            errors::PROPOSAL_NOT_FOUND,
            format!("there is no proposal {id}"),
        )
    })
}

fn store_proposal(ctx: &mut TxContext<'_>, p: &Proposal) -> Result<(), ChaincodeError> {
    ctx.put(&consortium(), &proposal_key(&p.id), encode(p)?)
}

fn org_entry(ctx: &mut TxContext<'_>, org: &OrgId) -> Result<Option<OrgEntry>, ChaincodeError> {
    decode(
        ctx.get(&consortium(), &org_dir_key(org))?,
        "organization entry",
    )
}

/// The caller, an active admin of a member organization that was not
/// removed.
fn member_admin(ctx: &mut TxContext<'_>) -> Result<String, ChaincodeError> {
    let me = require_admin(ctx)?;
    let org = ctx.tx().org.clone();
    match org_entry(ctx, &org)? {
        Some(e) if e.removed_ms.is_none() => Ok(format!("{}/{}", me.org, me.name)),
        Some(_) => Err(err(
            errors::ORG_REMOVED,
            format!("{org} was removed from the consortium"),
        )),
        None => Err(err(
            errors::NOT_A_VOTER,
            format!("{org} is not a member organization"),
        )),
    }
}

pub(crate) fn execute(
    ctx: &mut TxContext<'_>,
    call: &GovernanceCall,
) -> Result<serde_json::Value, ChaincodeError> {
    match call {
        GovernanceCall::Propose(a) => propose(ctx, a),
        GovernanceCall::Vote(a) => vote(ctx, a),
        GovernanceCall::Expire(a) => expire(ctx, a),
    }
}

fn propose(ctx: &mut TxContext<'_>, a: &ProposeArgs) -> Result<serde_json::Value, ChaincodeError> {
    let by = member_admin(ctx)?;
    let tx = ctx.tx().clone();
    let now = ctx.timestamp().0;
    let c = consortium();
    let constitution: Constitution =
        decode(ctx.get(&c, CONSTITUTION_KEY)?, "constitution")?.unwrap_or_default();
    let members: Vec<OrgEntry> = ctx
        .scan(&c, b"org/", None, ledger::Limits::DEFAULT.scan_len_max)?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice::<OrgEntry>(&v))
        .collect::<Result<_, _>>()
        .map_err(|e| {
            err(
                ledger::codes::CHAINCODE_FAULT,
                format!("stored organization entry: {e}"),
            )
        })?;
    let members: BTreeSet<OrgId> = members
        .into_iter()
        .filter(|e| e.removed_ms.is_none())
        .map(|e| e.id)
        .collect();
    // Refuse at once what could never take effect.
    match &a.kind {
        ProposalKind::AddOrg { org, .. } if org_entry(ctx, org)?.is_some() => {
            return Err(err(
                membership::errors::ORG_EXISTS,
                format!("organization {org} is or was a member"),
            ));
        }
        ProposalKind::RemoveOrg { org } if !members.contains(org) => {
            return Err(err(
                errors::ORG_NOT_FOUND,
                format!("{org} is not a member organization"),
            ));
        }
        ProposalKind::ActivateChaincode { height, .. } if *height <= ctx.height() => {
            return Err(err(
                errors::BAD_ACTIVATION,
                format!(
                    "height {height} is not above this block's, {}",
                    ctx.height()
                ),
            ));
        }
        _ => {}
    }
    let mut electorate = members;
    if let ProposalKind::RemoveOrg { org } = &a.kind {
        electorate.remove(org);
    }
    if electorate.is_empty() {
        return Err(err(
            errors::NO_ELECTORATE,
            "no member organization would be left to vote",
        ));
    }
    let rule = constitution.rule_for(&a.kind);
    let mut p = Proposal {
        id: tx.id.to_string(),
        title: a.title.clone(),
        kind: a.kind.clone(),
        proposer: by.clone(),
        created_ms: now,
        created_height: ctx.height(),
        expires_ms: now.saturating_add(constitution.proposal_lifetime_ms),
        rule,
        needed: rule.needed(electorate.len()) as u32,
        electorate,
        votes: BTreeMap::new(),
        status: Status::Open,
        decided_ms: None,
        decided_height: None,
        decided_by: None,
        note: None,
    };
    ctx.emit(
        &c,
        "proposal_made",
        &json!({"proposal": p.id, "kind": p.kind.name(), "title": p.title, "by": by}),
    )?;
    // The proposer's organization is in favour (when it may vote on it).
    if p.electorate.contains(&tx.org) {
        cast(ctx, &mut p, true, by)?;
    }
    store_proposal(ctx, &p)?;
    Ok(p.view(now))
}

fn vote(ctx: &mut TxContext<'_>, a: &VoteArgs) -> Result<serde_json::Value, ChaincodeError> {
    let by = member_admin(ctx)?;
    let tx = ctx.tx().clone();
    let now = ctx.timestamp().0;
    let mut p = load_proposal(ctx, &a.proposal)?;
    if p.kind.public() != a.kind.public() {
        return Err(err(
            errors::PROPOSAL_MISMATCH,
            format!("the kind restated does not match proposal {}", p.id),
        ));
    }
    match p.status_at(now) {
        Status::Open => {}
        Status::Expired => {
            return Err(err(
                errors::PROPOSAL_EXPIRED,
                format!("proposal {} expired at {} ms", p.id, p.expires_ms),
            ))
        }
        s => {
            return Err(err(
                errors::PROPOSAL_CLOSED,
                format!("proposal {} is already decided ({s:?})", p.id),
            ))
        }
    }
    if !p.electorate.contains(&tx.org) {
        return Err(err(
            errors::NOT_A_VOTER,
            format!("{} is not in the electorate of proposal {}", tx.org, p.id),
        ));
    }
    if p.votes.contains_key(&tx.org) {
        return Err(err(
            errors::ALREADY_VOTED,
            format!("{} has already voted on proposal {}", tx.org, p.id),
        ));
    }
    cast(ctx, &mut p, a.approve, by)?;
    store_proposal(ctx, &p)?;
    Ok(p.view(now))
}

fn expire(ctx: &mut TxContext<'_>, a: &ExpireArgs) -> Result<serde_json::Value, ChaincodeError> {
    caller(ctx)?;
    let now = ctx.timestamp().0;
    let mut p = load_proposal(ctx, &a.proposal)?;
    match p.status_at(now) {
        Status::Expired if p.status == Status::Open => {}
        Status::Open => {
            return Err(err(
                errors::PROPOSAL_OPEN,
                format!("proposal {} takes ballots until {} ms", p.id, p.expires_ms),
            ))
        }
        s => {
            return Err(err(
                errors::PROPOSAL_CLOSED,
                format!("proposal {} is already closed ({s:?})", p.id),
            ))
        }
    }
    decide(ctx, &mut p, Status::Expired, None)?;
    store_proposal(ctx, &p)?;
    Ok(p.view(now))
}

/// Records a ballot, then decides the proposal if the ballot settles it.
fn cast(
    ctx: &mut TxContext<'_>,
    p: &mut Proposal,
    approve: bool,
    by: String,
) -> Result<(), ChaincodeError> {
    let tx = ctx.tx().clone();
    p.votes.insert(
        tx.org.clone(),
        Ballot {
            approve,
            by: by.clone(),
            at_ms: ctx.timestamp().0,
            height: ctx.height(),
            tx: tx.id.to_string(),
        },
    );
    ctx.emit(
        &consortium(),
        "vote_cast",
        &json!({"proposal": p.id, "org": tx.org, "approve": approve, "by": by}),
    )?;
    let n = p.electorate.len();
    let needed = p.needed as usize;
    if p.approvals() >= needed {
        match apply(ctx, p) {
            Ok(note) => decide(ctx, p, Status::Passed, note),
            Err(e) => decide(
                ctx,
                p,
                Status::Failed,
                Some(format!("{}: {}", e.code, e.message)),
            ),
        }
    } else if p.refusals() > n - needed {
        decide(ctx, p, Status::Rejected, None)
    } else {
        Ok(())
    }
}

fn decide(
    ctx: &mut TxContext<'_>,
    p: &mut Proposal,
    status: Status,
    note: Option<String>,
) -> Result<(), ChaincodeError> {
    p.status = status;
    p.decided_ms = Some(ctx.timestamp().0);
    p.decided_height = Some(ctx.height());
    p.decided_by = Some(ctx.tx().id.to_string());
    p.note = note;
    ctx.emit(
        &consortium(),
        "proposal_decided",
        &json!({"proposal": p.id, "kind": p.kind.name(), "status": status, "note": p.note}),
    )
}

/// Applies a passed proposal's effect: every check first, then every
/// write, so that a failed effect writes nothing. The `Ok` is a note.
fn apply(ctx: &mut TxContext<'_>, p: &Proposal) -> Result<Option<String>, ChaincodeError> {
    let c = consortium();
    let now = ctx.timestamp().0;
    match &p.kind {
        ProposalKind::AddOrg {
            org,
            name,
            admin,
            password_hash,
            node,
        } => {
            if org_entry(ctx, org)?.is_some() {
                return Err(err(
                    membership::errors::ORG_EXISTS,
                    format!("organization {org} is or was a member"),
                ));
            }
            if let Some(n) = node {
                node_free(ctx, n.node_id)?;
            }
            let record = OrgRecord {
                id: org.clone(),
                name: name.clone(),
                admitted_ms: now,
                admitted_by: format!("proposal {}", p.id),
                removed_ms: None,
            };
            ctx.put(
                &c,
                &org_dir_key(org),
                encode(&OrgEntry {
                    id: org.clone(),
                    removed_ms: None,
                })?,
            )?;
            ctx.put(&partition(org), ORG_KEY, encode(&record)?)?;
            let first = new_user(
                org,
                admin,
                BTreeSet::from([Role::Admin, Role::Member]),
                password_hash.clone(),
                now,
            );
            store_user(ctx, &first)?;
            ctx.emit(
                &partition(org),
                "org_added",
                &json!({"org": org, "admin": admin, "proposal": p.id}),
            )?;
            if let Some(n) = node {
                put_node(ctx, n.node_id, &n.address, Some(org), p)?;
            }
            Ok(Some(format!("{org} admitted with admin {admin}")))
        }
        ProposalKind::RemoveOrg { org } => {
            let mut record: OrgRecord = match org_entry(ctx, org)? {
                Some(e) if e.removed_ms.is_none() => {
                    decode(ctx.get(&partition(org), ORG_KEY)?, "organization")?
                        .ok_or_else(|| err(errors::ORG_NOT_FOUND, format!("{org} has no record")))?
                }
                _ => {
                    return Err(err(
                        errors::ORG_NOT_FOUND,
                        format!("{org} is not a member organization"),
                    ))
                }
            };
            record.removed_ms = Some(now);
            ctx.put(
                &c,
                &org_dir_key(org),
                encode(&OrgEntry {
                    id: org.clone(),
                    removed_ms: Some(now),
                })?,
            )?;
            ctx.put(&partition(org), ORG_KEY, encode(&record)?)?;
            ctx.emit(
                &partition(org),
                "org_removed",
                &json!({"org": org, "proposal": p.id}),
            )?;
            Ok(Some(format!("{org} removed; its history stays")))
        }
        ProposalKind::AddNode {
            node_id,
            address,
            org,
        } => {
            match org_entry(ctx, org)? {
                Some(e) if e.removed_ms.is_none() => {}
                _ => {
                    return Err(err(
                        errors::ORG_NOT_FOUND,
                        format!("{org} is not a member organization"),
                    ))
                }
            }
            node_free(ctx, *node_id)?;
            put_node(ctx, *node_id, address, Some(org), p)?;
            Ok(Some(format!("node {node_id} at {address} added")))
        }
        ProposalKind::RemoveNode { node_id } => {
            let old: Option<NodeRecord> = decode(ctx.get(&c, &node_key(*node_id))?, "node")?;
            let record = NodeRecord {
                node_id: *node_id,
                address: old.as_ref().map(|n| n.address.clone()).unwrap_or_default(),
                org: old.and_then(|n| n.org),
                decided_ms: now,
                proposal: p.id.clone(),
                removed_ms: Some(now),
            };
            ctx.put(&c, &node_key(*node_id), encode(&record)?)?;
            ctx.emit(
                &c,
                "node_removed",
                &json!({"node_id": node_id, "proposal": p.id}),
            )?;
            Ok(Some(format!("node {node_id} removed")))
        }
        ProposalKind::SetSettings { settings } => {
            ctx.put(&c, SETTINGS_KEY, encode(settings)?)?;
            ctx.emit(&c, "settings_changed", &json!(settings))?;
            Ok(None)
        }
        ProposalKind::ActivateChaincode { version, height } => {
            let mut schedule = VersionSchedule::decode(ctx.get(&c, SCHEDULE_KEY)?.as_deref())
                .map_err(|e| err(ledger::codes::CHAINCODE_FAULT, e.to_string()))?;
            if *height <= ctx.height() {
                return Err(err(
                    errors::BAD_ACTIVATION,
                    format!(
                        "decided in block {}, at or after the activation height {height}",
                        ctx.height()
                    ),
                ));
            }
            schedule
                .schedule(Activation {
                    version: *version,
                    height: *height,
                })
                .map_err(|e| err(errors::BAD_ACTIVATION, e))?;
            ctx.put(&c, SCHEDULE_KEY, schedule.encode())?;
            ctx.emit(
                &c,
                "chaincode_scheduled",
                &json!({"version": version, "height": height, "proposal": p.id}),
            )?;
            Ok(Some(format!(
                "chaincode version {version} from block {height}"
            )))
        }
        ProposalKind::AmendConstitution { constitution } => {
            ctx.put(&c, CONSTITUTION_KEY, encode(constitution)?)?;
            ctx.emit(&c, "constitution_amended", &json!(constitution))?;
            Ok(None)
        }
    }
}

/// Node `id` is not a current member by the consortium's records.
fn node_free(ctx: &mut TxContext<'_>, id: u64) -> Result<(), ChaincodeError> {
    let old: Option<NodeRecord> = decode(ctx.get(&consortium(), &node_key(id))?, "node")?;
    if old.is_some_and(|n| n.is_member()) {
        return Err(err(
            errors::NODE_EXISTS,
            format!("node {id} is already a member"),
        ));
    }
    Ok(())
}

fn put_node(
    ctx: &mut TxContext<'_>,
    id: u64,
    address: &str,
    org: Option<&OrgId>,
    p: &Proposal,
) -> Result<(), ChaincodeError> {
    let record = NodeRecord {
        node_id: id,
        address: address.to_string(),
        org: org.cloned(),
        decided_ms: ctx.timestamp().0,
        proposal: p.id.clone(),
        removed_ms: None,
    };
    ctx.put(&consortium(), &node_key(id), encode(&record)?)?;
    ctx.emit(
        &consortium(),
        "node_added",
        &json!({"node_id": id, "address": address, "org": org, "proposal": p.id}),
    )
}

// ---- queries (plain functions over the state) ----

/// The constitution in force (the defaults until one is amended).
pub fn constitution(state: &ledger::State) -> Constitution {
    state
        .get(&consortium(), CONSTITUTION_KEY)
        .and_then(|e| serde_json::from_slice(&e.value).ok())
        .unwrap_or_default()
}

pub fn proposal(state: &ledger::State, id: &str) -> Option<Proposal> {
    state
        .get(&consortium(), &proposal_key(id))
        .and_then(|e| serde_json::from_slice(&e.value).ok())
}

/// Every proposal, newest first (by the block that made it, then id).
pub fn proposals(state: &ledger::State) -> Vec<Proposal> {
    let mut all: Vec<Proposal> = state
        .scan(&consortium(), PROPOSAL_PREFIX.as_bytes())
        .filter_map(|(_, e)| serde_json::from_slice(&e.value).ok())
        .collect();
    all.sort_by(|a, b| {
        b.created_height
            .cmp(&a.created_height)
            .then_with(|| a.id.cmp(&b.id))
    });
    all
}

/// The cluster nodes the consortium decided on, by id.
pub fn nodes(state: &ledger::State) -> Vec<NodeRecord> {
    state
        .scan(&consortium(), NODE_PREFIX.as_bytes())
        .filter_map(|(_, e)| serde_json::from_slice(&e.value).ok())
        .collect()
}

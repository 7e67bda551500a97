//! Membership: the consortium's organizations, their users, roles and public
//! keys, and revoked tokens, kept in the ledger so that every change is
//! ordered, replicated and audited like any other transaction.
//!
//! ## Partitions and keys (domain `system`)
//! - `(_consortium, system)`: `genesis` (the founding organization, written
//!   once), `org/{id}` (the directory of member organizations), `settings`.
//! - `(org, system)` of each member: `org` (its record), `user/{name}`
//!   ([`UserRecord`]), `revoked/{token id}` (a revoked token and its expiry).
//!
//! ## Who may call what
//! The REST layer authenticates the caller and sets `tx.org` and
//! `tx.submitter`; this chaincode decides from the caller's user record,
//! read inside the transaction, whether the caller may act:
//! - `bootstrap`: once per ledger, by the founding organization's first
//!   admin. No one can sign in before it, so only the node itself (its
//!   `--demo` or `init` path) can submit it.
//! - admitting and removing organizations, cluster nodes, settings and
//!   chaincode versions: by a vote of the member organizations (`propose`,
//!   `vote`, `expire_proposal`: see [`crate::governance`]).
//! - `add_user`, `update_user`: an admin of the same organization.
//! - `set_password`, `add_key`, `remove_key`: the user itself or an admin of
//!   its organization.
//! - `revoke_token`: any active user, for its own tokens (the REST layer
//!   passes the token id it holds), or an admin for its organization.
//!
//! Password hashes are argon2id PHC strings computed by the REST layer; the
//! ledger never sees a password. They are replicated to every node (so any
//! node can sign a user in) and never appear in any output.

use ledger::chaincode::{
    decode_args, Call, Chaincode, ChaincodeError, Footprint, Prepared, TxContext,
};
use ledger::{Code, DomainId, OrgId, PartitionId, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

pub const SYSTEM: DomainId = DomainId::from_static("system");
/// The reserved organization whose `system` partition holds what belongs to
/// the consortium as a whole. Member ids may not start with `_`.
pub const CONSORTIUM: OrgId = OrgId::from_static("_consortium");

pub mod errors {
    use ledger::Code;
    pub const NOT_ADMIN: Code = Code::from_static("MEMBERSHIP:NOT_ADMIN");
    pub const NOT_ALLOWED: Code = Code::from_static("MEMBERSHIP:NOT_ALLOWED");
    pub const ALREADY_BOOTSTRAPPED: Code = Code::from_static("MEMBERSHIP:ALREADY_BOOTSTRAPPED");
    pub const ORG_EXISTS: Code = Code::from_static("MEMBERSHIP:ORG_EXISTS");
    pub const USER_EXISTS: Code = Code::from_static("MEMBERSHIP:USER_EXISTS");
    pub const USER_NOT_FOUND: Code = Code::from_static("MEMBERSHIP:USER_NOT_FOUND");
    pub const KEY_EXISTS: Code = Code::from_static("MEMBERSHIP:KEY_EXISTS");
    pub const KEY_NOT_FOUND: Code = Code::from_static("MEMBERSHIP:KEY_NOT_FOUND");
    pub const LAST_ADMIN: Code = Code::from_static("MEMBERSHIP:LAST_ADMIN");
}

/// What a user may do; see the crate's REST layer for the mapping to routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages its organization's users and keys.
    Admin,
    /// Submits transactions and reads its organization's partitions.
    Member,
    /// Reads every partition's audit trail and blocks; submits nothing.
    Auditor,
    /// Cluster and node operations.
    Operator,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Member, Role::Auditor, Role::Operator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub id: OrgId,
    pub name: String,
    pub admitted_ms: u64,
    /// `org/user` of the admin who admitted it (the founder for genesis), or
    /// `proposal ID` for an organization admitted by a vote.
    pub admitted_by: String,
    /// When a vote removed it (its users can no longer write; its history
    /// stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_ms: Option<u64>,
}

impl OrgRecord {
    pub fn is_removed(&self) -> bool {
        self.removed_ms.is_some()
    }
}

/// A transaction signature algorithm; the consortium chooses one
/// (`Settings::signature_scheme`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignatureScheme {
    /// Ed25519 (RFC 8032): 32-byte keys, 64-byte signatures.
    #[default]
    #[serde(rename = "ed25519")]
    Ed25519,
    /// ML-DSA-65 (FIPS 204), quantum-resistant: 1,952-byte keys,
    /// 3,309-byte signatures.
    #[serde(rename = "ml-dsa-65")]
    MlDsa65,
}

impl SignatureScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::Ed25519 => "ed25519",
            SignatureScheme::MlDsa65 => "ml-dsa-65",
        }
    }

    /// Bytes of one public key.
    pub fn public_key_len(self) -> usize {
        match self {
            SignatureScheme::Ed25519 => 32,
            SignatureScheme::MlDsa65 => 1952,
        }
    }

    pub fn is_ed25519(&self) -> bool {
        *self == SignatureScheme::Ed25519
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyRecord {
    /// The public key in hex (64 digits for Ed25519).
    pub public_key: String,
    pub added_ms: u64,
    /// Its algorithm (absent: Ed25519).
    #[serde(default, skip_serializing_if = "SignatureScheme::is_ed25519")]
    pub scheme: SignatureScheme,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub org: OrgId,
    pub roles: BTreeSet<Role>,
    /// argon2id PHC string; `None` for users who sign in through an external
    /// identity provider only.
    pub password_hash: Option<String>,
    pub keys: BTreeMap<String, PublicKeyRecord>,
    pub disabled: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl UserRecord {
    pub fn is_active_admin(&self) -> bool {
        !self.disabled && self.roles.contains(&Role::Admin)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedToken {
    /// When the token expires anyway: after that the record can be ignored.
    pub exp_ms: u64,
}

/// Consortium-wide settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Every transaction must carry a signature (of `signature_scheme`) by a
    /// key registered to its submitter.
    #[serde(default)]
    pub require_signatures: bool,
    /// The algorithm of transaction signatures: a signature by a key of
    /// another scheme is refused (absent: Ed25519).
    #[serde(default, skip_serializing_if = "SignatureScheme::is_ed25519")]
    pub signature_scheme: SignatureScheme,
}

pub fn partition(org: &OrgId) -> PartitionId {
    PartitionId::new(org.clone(), SYSTEM)
}

pub fn consortium() -> PartitionId {
    partition(&CONSORTIUM)
}

pub const GENESIS_KEY: &[u8] = b"genesis";
pub const SETTINGS_KEY: &[u8] = b"settings";
pub const ORG_KEY: &[u8] = b"org";

pub fn org_dir_key(org: &OrgId) -> Vec<u8> {
    format!("org/{org}").into_bytes()
}

pub fn user_key(name: &str) -> Vec<u8> {
    format!("user/{name}").into_bytes()
}

pub fn revoked_key(jti: &str) -> Vec<u8> {
    format!("revoked/{jti}").into_bytes()
}

/// A user or key name: 1-64 of `A-Z a-z 0-9 - _ .`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The shape of an argon2id PHC string; the REST layer computes it.
pub fn valid_password_hash(s: &str) -> bool {
    s.starts_with("$argon2id$") && s.len() <= 256 && s.is_ascii()
}

/// A public key of `scheme`, in hex.
pub fn valid_public_key(scheme: SignatureScheme, s: &str) -> bool {
    s.len() == 2 * scheme.public_key_len() && s.bytes().all(|c| c.is_ascii_hexdigit())
}

pub(crate) fn err(code: Code, message: impl Into<String>) -> ChaincodeError {
    ChaincodeError::new(code, message)
}

pub(crate) fn invalid(message: impl Into<String>) -> ChaincodeError {
    ChaincodeError::invalid_arguments(message.into())
}

pub(crate) fn check_name(what: &str, s: &str) -> Result<(), ChaincodeError> {
    if valid_name(s) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} must be 1-64 characters of A-Z a-z 0-9 - _ ."
        )))
    }
}

pub(crate) fn check_member_org(org: &OrgId) -> Result<(), ChaincodeError> {
    if org.as_str().starts_with('_') {
        Err(invalid("organization ids starting with _ are reserved"))
    } else {
        Ok(())
    }
}

pub(crate) fn check_hash(hash: Option<&str>) -> Result<(), ChaincodeError> {
    match hash {
        Some(h) if !valid_password_hash(h) => Err(invalid(
            "password_hash must be an argon2id PHC string of at most 256 bytes",
        )),
        _ => Ok(()),
    }
}

fn check_roles(roles: &BTreeSet<Role>) -> Result<(), ChaincodeError> {
    if roles.is_empty() {
        Err(invalid("a user needs at least one role"))
    } else {
        Ok(())
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ChaincodeError> {
    serde_json::to_vec(value).map_err(|e| err(ledger::codes::CHAINCODE_FAULT, e.to_string()))
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    bytes: Option<Vec<u8>>,
    what: &str,
) -> Result<Option<T>, ChaincodeError> {
    bytes
        .map(|b| serde_json::from_slice(&b))
        .transpose()
        .map_err(|e| {
            err(
                ledger::codes::CHAINCODE_FAULT,
                format!("stored {what}: {e}"),
            )
        })
}

/// The calling user's record, which must exist and be active.
pub(crate) fn caller(ctx: &mut TxContext<'_>) -> Result<UserRecord, ChaincodeError> {
    let tx = ctx.tx().clone();
    let record: Option<UserRecord> = decode(
        ctx.get(&partition(&tx.org), &user_key(tx.submitter.as_str()))?,
        "user",
    )?;
    match record {
        Some(u) if !u.disabled => Ok(u),
        _ => Err(err(
            errors::NOT_ALLOWED,
            format!("{}/{} is not an active user", tx.org, tx.submitter),
        )),
    }
}

pub(crate) fn require_admin(ctx: &mut TxContext<'_>) -> Result<UserRecord, ChaincodeError> {
    let me = caller(ctx)?;
    if me.is_active_admin() {
        Ok(me)
    } else {
        Err(err(
            errors::NOT_ADMIN,
            format!("{}/{} is not an admin", me.org, me.name),
        ))
    }
}

pub(crate) fn new_user(
    org: &OrgId,
    name: &str,
    roles: BTreeSet<Role>,
    password_hash: Option<String>,
    now: u64,
) -> UserRecord {
    UserRecord {
        name: name.to_string(),
        org: org.clone(),
        roles,
        password_hash,
        keys: BTreeMap::new(),
        disabled: false,
        created_ms: now,
        updated_ms: now,
    }
}

/// What outputs and the REST layer show of a user: never the hash.
pub fn user_view(u: &UserRecord) -> serde_json::Value {
    json!({
        "name": u.name,
        "org": u.org,
        "roles": u.roles,
        "has_password": u.password_hash.is_some(),
        "keys": u.keys,
        "disabled": u.disabled,
        "created_ms": u.created_ms,
        "updated_ms": u.updated_ms,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrgArgs {
    org: OrgId,
    name: String,
    admin: String,
    #[serde(default)]
    password_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddUserArgs {
    name: String,
    roles: BTreeSet<Role>,
    #[serde(default)]
    password_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUserArgs {
    name: String,
    #[serde(default)]
    roles: Option<BTreeSet<Role>>,
    #[serde(default)]
    disabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPasswordArgs {
    name: String,
    password_hash: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyArgs {
    user: String,
    kid: String,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    scheme: SignatureScheme,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeArgs {
    jti: String,
    exp_ms: u64,
    /// Whose token: the caller's own unless an admin names another user.
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Function {
    Bootstrap,
    AddUser,
    UpdateUser,
    SetPassword,
    AddKey,
    RemoveKey,
    RevokeToken,
    Governance,
}

#[derive(Debug)]
pub struct Membership {
    domain: DomainId,
}

impl Membership {
    pub fn new() -> Self {
        Membership { domain: SYSTEM }
    }
}

impl Default for Membership {
    fn default() -> Self {
        Membership::new()
    }
}

impl Chaincode for Membership {
    fn domain(&self) -> &DomainId {
        &self.domain
    }

    /// Membership's own functions, then governance's.
    fn functions(&self) -> &'static [&'static str] {
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
        ]
    }

    fn prepare(&self, tx: &Transaction) -> Result<Prepared, ChaincodeError> {
        let own = partition(&tx.org);
        let me = user_key(tx.submitter.as_str());
        let (function, footprint, call): (Function, Footprint, MembershipCall) =
            match tx.function.as_str() {
                "bootstrap" => {
                    let a: NewOrgArgs = decode_args(tx)?;
                    check_member_org(&a.org)?;
                    check_name("admin", &a.admin)?;
                    check_hash(a.password_hash.as_deref())?;
                    if a.name.is_empty() || a.name.len() > 200 {
                        return Err(invalid("name must be 1-200 bytes"));
                    }
                    if a.org != tx.org || a.admin != tx.submitter.as_str() {
                        return Err(err(
                            errors::NOT_ALLOWED,
                            "bootstrap is submitted by the founding organization's first admin",
                        ));
                    }
                    let new = partition(&a.org);
                    let fp = Footprint::new()
                        .write(&consortium(), org_dir_key(&a.org))
                        .write(&new, ORG_KEY)
                        .write(&new, user_key(&a.admin))
                        .write(&consortium(), GENESIS_KEY);
                    (Function::Bootstrap, fp, MembershipCall::NewOrg(a))
                }
                "add_user" => {
                    let a: AddUserArgs = decode_args(tx)?;
                    check_name("name", &a.name)?;
                    check_roles(&a.roles)?;
                    check_hash(a.password_hash.as_deref())?;
                    let fp = Footprint::new()
                        .read(&own, me)
                        .write(&own, user_key(&a.name));
                    (Function::AddUser, fp, MembershipCall::AddUser(a))
                }
                "update_user" => {
                    let a: UpdateUserArgs = decode_args(tx)?;
                    check_name("name", &a.name)?;
                    if let Some(r) = &a.roles {
                        check_roles(r)?;
                    }
                    let fp = Footprint::new()
                        .read(&own, me)
                        .write(&own, user_key(&a.name))
                        // Counting the remaining admins needs the org's users.
                        .read_prefix(&own, "user/");
                    (Function::UpdateUser, fp, MembershipCall::UpdateUser(a))
                }
                "set_password" => {
                    let a: SetPasswordArgs = decode_args(tx)?;
                    check_name("name", &a.name)?;
                    check_hash(Some(&a.password_hash))?;
                    let fp = Footprint::new()
                        .read(&own, me)
                        .write(&own, user_key(&a.name));
                    (Function::SetPassword, fp, MembershipCall::SetPassword(a))
                }
                f @ ("add_key" | "remove_key") => {
                    let a: KeyArgs = decode_args(tx)?;
                    check_name("user", &a.user)?;
                    check_name("kid", &a.kid)?;
                    let function = if f == "add_key" {
                        match a.public_key.as_deref() {
                            Some(k) if valid_public_key(a.scheme, k) => {}
                            _ => {
                                return Err(invalid(format!(
                                    "public_key must be an {} public key as {} hex digits",
                                    a.scheme.as_str(),
                                    2 * a.scheme.public_key_len()
                                )))
                            }
                        }
                        Function::AddKey
                    } else {
                        Function::RemoveKey
                    };
                    let fp = Footprint::new()
                        .read(&own, me)
                        .write(&own, user_key(&a.user));
                    (function, fp, MembershipCall::Key(a))
                }
                "revoke_token" => {
                    let a: RevokeArgs = decode_args(tx)?;
                    check_name("jti", &a.jti)?;
                    if let Some(u) = &a.user {
                        check_name("user", u)?;
                    }
                    let fp = Footprint::new()
                        .read(&own, me)
                        .write(&own, revoked_key(&a.jti));
                    (Function::RevokeToken, fp, MembershipCall::Revoke(a))
                }
                other => match crate::governance::prepare(tx, other) {
                    Some(prepared) => {
                        let (fp, call) = prepared?;
                        (Function::Governance, fp, MembershipCall::Governance(call))
                    }
                    None => return Err(ChaincodeError::unknown_function(&self.domain, other)),
                },
            };
        Ok(Prepared {
            footprint,
            call: Box::new(Bound { function, call }),
        })
    }
}

enum MembershipCall {
    NewOrg(NewOrgArgs),
    AddUser(AddUserArgs),
    UpdateUser(UpdateUserArgs),
    SetPassword(SetPasswordArgs),
    Key(KeyArgs),
    Revoke(RevokeArgs),
    Governance(crate::governance::GovernanceCall),
}

struct Bound {
    function: Function,
    call: MembershipCall,
}

fn load_user(
    ctx: &mut TxContext<'_>,
    org: &OrgId,
    name: &str,
) -> Result<UserRecord, ChaincodeError> {
    decode(ctx.get(&partition(org), &user_key(name))?, "user")?
        .ok_or_else(|| err(errors::USER_NOT_FOUND, format!("{org} has no user {name}")))
}

pub(crate) fn store_user(ctx: &mut TxContext<'_>, u: &UserRecord) -> Result<(), ChaincodeError> {
    ctx.put(&partition(&u.org), &user_key(&u.name), encode(u)?)
}

/// The caller acting on user `name` of its own organization: itself or an
/// admin.
fn require_self_or_admin(ctx: &mut TxContext<'_>, name: &str) -> Result<(), ChaincodeError> {
    let me = caller(ctx)?;
    if me.name == name || me.is_active_admin() {
        Ok(())
    } else {
        Err(err(
            errors::NOT_ADMIN,
            format!("{}/{} may only change its own credentials", me.org, me.name),
        ))
    }
}

impl Call for Bound {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        let tx = ctx.tx().clone();
        let now = ctx.timestamp().0;
        let own = partition(&tx.org);
        match (&self.function, &self.call) {
            (Function::Bootstrap, MembershipCall::NewOrg(a)) => {
                if ctx.get(&consortium(), GENESIS_KEY)?.is_some() {
                    return Err(err(
                        errors::ALREADY_BOOTSTRAPPED,
                        "the consortium already has a founding organization",
                    ));
                }
                ctx.put(
                    &consortium(),
                    GENESIS_KEY,
                    encode(&json!({"org": a.org, "admin": a.admin, "at_ms": now}))?,
                )?;
                let admitted_by = format!("{}/{}", a.org, a.admin);
                if ctx.get(&consortium(), &org_dir_key(&a.org))?.is_some() {
                    return Err(err(
                        errors::ORG_EXISTS,
                        format!("organization {} is already a member", a.org),
                    ));
                }
                let record = OrgRecord {
                    id: a.org.clone(),
                    name: a.name.clone(),
                    admitted_ms: now,
                    admitted_by,
                    removed_ms: None,
                };
                let new = partition(&a.org);
                ctx.put(
                    &consortium(),
                    &org_dir_key(&a.org),
                    encode(&json!({"id": a.org}))?,
                )?;
                ctx.put(&new, ORG_KEY, encode(&record)?)?;
                let admin = new_user(
                    &a.org,
                    &a.admin,
                    BTreeSet::from([Role::Admin, Role::Member]),
                    a.password_hash.clone(),
                    now,
                );
                store_user(ctx, &admin)?;
                ctx.emit(&new, "org_added", &json!({"org": a.org, "admin": a.admin}))?;
                Ok(json!({"org": record, "admin": user_view(&admin)}))
            }
            (Function::AddUser, MembershipCall::AddUser(a)) => {
                require_admin(ctx)?;
                if ctx.get(&own, &user_key(&a.name))?.is_some() {
                    return Err(err(
                        errors::USER_EXISTS,
                        format!("{} already has a user {}", tx.org, a.name),
                    ));
                }
                let u = new_user(
                    &tx.org,
                    &a.name,
                    a.roles.clone(),
                    a.password_hash.clone(),
                    now,
                );
                store_user(ctx, &u)?;
                ctx.emit(
                    &own,
                    "user_added",
                    &json!({"user": a.name, "roles": a.roles}),
                )?;
                Ok(user_view(&u))
            }
            (Function::UpdateUser, MembershipCall::UpdateUser(a)) => {
                require_admin(ctx)?;
                let mut u = load_user(ctx, &tx.org, &a.name)?;
                if let Some(roles) = &a.roles {
                    u.roles = roles.clone();
                }
                if let Some(d) = a.disabled {
                    u.disabled = d;
                }
                u.updated_ms = now;
                if !u.is_active_admin() {
                    // An organization must keep an active admin, or no one
                    // could ever manage it again.
                    let others = ctx
                        .scan(&own, b"user/", None, ledger::Limits::DEFAULT.scan_len_max)?
                        .into_iter()
                        .filter_map(|(_, v)| serde_json::from_slice::<UserRecord>(&v).ok())
                        .filter(|o| o.name != u.name && o.is_active_admin())
                        .count();
                    if others == 0 {
                        return Err(err(
                            errors::LAST_ADMIN,
                            format!("{} would have no active admin left", tx.org),
                        ));
                    }
                }
                store_user(ctx, &u)?;
                ctx.emit(&own, "user_updated", &json!({"user": a.name}))?;
                Ok(user_view(&u))
            }
            (Function::SetPassword, MembershipCall::SetPassword(a)) => {
                require_self_or_admin(ctx, &a.name)?;
                let mut u = load_user(ctx, &tx.org, &a.name)?;
                u.password_hash = Some(a.password_hash.clone());
                u.updated_ms = now;
                store_user(ctx, &u)?;
                ctx.emit(&own, "password_changed", &json!({"user": a.name}))?;
                Ok(user_view(&u))
            }
            (f @ (Function::AddKey | Function::RemoveKey), MembershipCall::Key(a)) => {
                require_self_or_admin(ctx, &a.user)?;
                let mut u = load_user(ctx, &tx.org, &a.user)?;
                if matches!(f, Function::AddKey) {
                    if u.keys.contains_key(&a.kid) {
                        return Err(err(
                            errors::KEY_EXISTS,
                            format!("{} already has a key {}", a.user, a.kid),
                        ));
                    }
                    let public_key = a.public_key.clone().unwrap_or_default().to_lowercase();
                    u.keys.insert(
                        a.kid.clone(),
                        PublicKeyRecord {
                            public_key,
                            added_ms: now,
                            scheme: a.scheme,
                        },
                    );
                } else if u.keys.remove(&a.kid).is_none() {
                    return Err(err(
                        errors::KEY_NOT_FOUND,
                        format!("{} has no key {}", a.user, a.kid),
                    ));
                }
                u.updated_ms = now;
                store_user(ctx, &u)?;
                let name = if matches!(f, Function::AddKey) {
                    "key_added"
                } else {
                    "key_removed"
                };
                ctx.emit(&own, name, &json!({"user": a.user, "kid": a.kid}))?;
                Ok(user_view(&u))
            }
            (Function::RevokeToken, MembershipCall::Revoke(a)) => {
                match &a.user {
                    Some(other) if other != tx.submitter.as_str() => {
                        require_admin(ctx)?;
                    }
                    _ => {
                        caller(ctx)?;
                    }
                }
                ctx.put(
                    &own,
                    &revoked_key(&a.jti),
                    encode(&RevokedToken { exp_ms: a.exp_ms })?,
                )?;
                Ok(json!({"jti": a.jti, "revoked": true}))
            }
            (Function::Governance, MembershipCall::Governance(call)) => {
                crate::governance::execute(ctx, call)
            }
            _ => Err(err(
                ledger::codes::CHAINCODE_FAULT,
                "function and arguments do not match",
            )),
        }
    }
}

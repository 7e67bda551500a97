//! `/v1/orgs*` and `/v1/consortium/settings`: organizations, users, roles
//! and keys. Every change is a `system` transaction, ordered and audited;
//! the chaincode decides who may make it, and this layer answers its
//! refusals as problems. Admitting or removing an organization and
//! changing the settings are decided by vote (`/v1/governance`).

use super::auth::{self, hash_password, Caller};
use super::problem::{codes, ApiError, Problem};
use super::session::UserView;
use super::{submit_system, Api};
use actix_web::{delete, get, patch, post, put, web};
use domains::membership::{self, Role, SignatureScheme};
use ledger::OrgId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrgView {
    pub id: String,
    pub name: String,
    pub admitted_ms: u64,
    /// `org/user` of the founder, or `proposal ID` of the vote that
    /// admitted it.
    pub admitted_by: String,
    /// When a vote removed it (its users can no longer write).
    pub removed_ms: Option<u64>,
}

impl OrgView {
    pub fn of(o: &membership::OrgRecord) -> OrgView {
        OrgView {
            id: o.id.to_string(),
            name: o.name.clone(),
            admitted_ms: o.admitted_ms,
            admitted_by: o.admitted_by.clone(),
            removed_ms: o.removed_ms,
        }
    }
}

/// Passwords: 10 to 256 bytes.
fn check_password(p: &str) -> Result<(), ApiError> {
    if (10..=256).contains(&p.len()) {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            codes::INVALID_BODY,
            "a password has 10 to 256 bytes",
        ))
    }
}

pub(crate) async fn hash(password: String) -> Result<String, ApiError> {
    check_password(&password)?;
    web::block(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

fn org_path(caller: &Caller, org: &str) -> Result<OrgId, ApiError> {
    let org =
        OrgId::new(org).map_err(|e| ApiError::bad_request(codes::INVALID_PATH, e.to_string()))?;
    if org != caller.org {
        return Err(auth::deny(
            caller,
            codes::FORBIDDEN,
            format!(
                "admins of {} manage only their own organization",
                caller.org
            ),
        ));
    }
    Ok(org)
}

/// A user as the directory holds it (updated before a change is answered).
fn view_of(api: &Api, org: &OrgId, name: &str) -> Result<UserView, ApiError> {
    auth::directory(api)?
        .user(org, name)
        .map(UserView::of)
        .ok_or_else(|| ApiError::internal(format!("{org}/{name} missing after its change")))
}

/// Member organizations.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every member organization", body = Vec<OrgView>),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/orgs")]
pub async fn orgs(
    api: web::Data<Api>,
    _caller: Caller,
) -> Result<web::Json<Vec<OrgView>>, ApiError> {
    let dir = auth::directory(&api)?;
    Ok(web::Json(dir.orgs.values().map(OrgView::of).collect()))
}

/// An organization's users (its admins, and auditors).
#[utoipa::path(
    tag = "admin",
    params(("org" = String, Path, description = "Organization")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Users", body = Vec<UserView>),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin of this organization", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/orgs/{org}/users")]
pub async fn users(
    api: web::Data<Api>,
    caller: Caller,
    org: web::Path<String>,
) -> Result<web::Json<Vec<UserView>>, ApiError> {
    let org = if caller.has(Role::Auditor) {
        OrgId::new(&org).map_err(|e| ApiError::bad_request(codes::INVALID_PATH, e.to_string()))?
    } else {
        caller.require(&[Role::Admin])?;
        org_path(&caller, &org)?
    };
    let dir = auth::directory(&api)?;
    Ok(web::Json(
        dir.users
            .iter()
            .filter(|((o, _), _)| *o == org)
            .map(|(_, u)| UserView::of(u))
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "bob", "roles": ["member"], "password": "a long passphrase"}))]
pub struct NewUser {
    pub name: String,
    #[schema(value_type = Vec<String>)]
    pub roles: BTreeSet<Role>,
    pub password: Option<String>,
}

/// Add a user to one's organization (admins only).
#[utoipa::path(
    tag = "admin",
    params(("org" = String, Path, description = "Organization")),
    request_body = NewUser,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Added", body = UserView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin of this organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/orgs/{org}/users")]
pub async fn add_user(
    api: web::Data<Api>,
    caller: Caller,
    org: web::Path<String>,
    body: web::Json<NewUser>,
) -> Result<actix_web::HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let org = org_path(&caller, &org)?;
    let b = body.into_inner();
    let password_hash = match b.password {
        Some(p) => Some(hash(p).await?),
        None => None,
    };
    submit_system(
        &api,
        &caller,
        "add_user",
        serde_json::json!({"name": b.name, "roles": b.roles, "password_hash": password_hash}),
    )
    .await?;
    Ok(actix_web::HttpResponse::Created().json(view_of(&api, &org, &b.name)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[schema(value_type = Option<Vec<String>>)]
    pub roles: Option<BTreeSet<Role>>,
    pub disabled: Option<bool>,
}

/// Change a user's roles or disable it (admins only; an organization keeps
/// at least one active admin).
#[utoipa::path(
    tag = "admin",
    params(("org" = String, Path, description = "Organization"), ("name" = String, Path, description = "User")),
    request_body = UserChange,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed", body = UserView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin of this organization", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid change (e.g. the last admin)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/orgs/{org}/users/{name}")]
pub async fn update_user(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<UserChange>,
) -> Result<web::Json<UserView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let org = org_path(&caller, &path.0)?;
    let b = body.into_inner();
    submit_system(
        &api,
        &caller,
        "update_user",
        serde_json::json!({"name": path.1, "roles": b.roles, "disabled": b.disabled}),
    )
    .await?;
    Ok(web::Json(view_of(&api, &org, &path.1)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    pub password: String,
}

/// Set a password (the user itself, or an admin of its organization).
#[utoipa::path(
    tag = "admin",
    params(("org" = String, Path, description = "Organization"), ("name" = String, Path, description = "User")),
    request_body = NewPassword,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Changed", body = UserView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither the user nor an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Password too short or too long", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/v1/orgs/{org}/users/{name}/password")]
pub async fn set_password(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<NewPassword>,
) -> Result<web::Json<UserView>, ApiError> {
    let org = org_path(&caller, &path.0)?;
    let h = hash(body.into_inner().password).await?;
    submit_system(
        &api,
        &caller,
        "set_password",
        serde_json::json!({"name": path.1, "password_hash": h}),
    )
    .await?;
    Ok(web::Json(view_of(&api, &org, &path.1)?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Key id, `A-Z a-z 0-9 - _ .`.
    pub kid: String,
    /// The public key in hex: Ed25519, 64 hex digits; ML-DSA-65, 3,904.
    pub public_key: String,
    /// `ed25519` (the default) or `ml-dsa-65`: the consortium's
    /// `signature_scheme` decides which keys sign.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "ed25519")]
    pub scheme: Option<SignatureScheme>,
}

/// Register a public key for a user (the user itself, or an admin).
#[utoipa::path(
    tag = "admin",
    params(("org" = String, Path, description = "Organization"), ("name" = String, Path, description = "User")),
    request_body = NewKey,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered", body = UserView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither the user nor an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key id exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid key", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/orgs/{org}/users/{name}/keys")]
pub async fn add_key(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<NewKey>,
) -> Result<actix_web::HttpResponse, ApiError> {
    let org = org_path(&caller, &path.0)?;
    let b = body.into_inner();
    submit_system(
        &api,
        &caller,
        "add_key",
        serde_json::json!({"user": path.1, "kid": b.kid, "public_key": b.public_key,
                           "scheme": b.scheme.unwrap_or_default()}),
    )
    .await?;
    Ok(actix_web::HttpResponse::Created().json(view_of(&api, &org, &path.1)?))
}

/// Remove a user's public key.
#[utoipa::path(
    tag = "admin",
    params(
        ("org" = String, Path, description = "Organization"),
        ("name" = String, Path, description = "User"),
        ("kid" = String, Path, description = "Key id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Removed", body = UserView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither the user nor an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user or key", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/orgs/{org}/users/{name}/keys/{kid}")]
pub async fn remove_key(
    api: web::Data<Api>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> Result<web::Json<UserView>, ApiError> {
    let org = org_path(&caller, &path.0)?;
    submit_system(
        &api,
        &caller,
        "remove_key",
        serde_json::json!({"user": path.1, "kid": path.2}),
    )
    .await?;
    Ok(web::Json(view_of(&api, &org, &path.1)?))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SettingsView {
    /// Every transaction must carry a signature by a key of its submitter.
    pub require_signatures: bool,
    /// `ed25519` or `ml-dsa-65`: the algorithm of transaction signatures.
    pub signature_scheme: String,
    /// The founding organization.
    pub founder: Option<String>,
}

/// Consortium settings.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Settings", body = SettingsView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/consortium/settings")]
pub async fn settings(
    api: web::Data<Api>,
    _caller: Caller,
) -> Result<web::Json<SettingsView>, ApiError> {
    let dir = auth::directory(&api)?;
    Ok(web::Json(SettingsView {
        require_signatures: dir.settings.require_signatures,
        signature_scheme: dir.settings.signature_scheme.as_str().to_string(),
        founder: dir.founder.as_ref().map(|o| o.to_string()),
    }))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(orgs)
        .service(users)
        .service(add_user)
        .service(update_user)
        .service(set_password)
        .service(add_key)
        .service(remove_key)
        .service(settings);
}

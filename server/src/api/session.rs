//! `/v1/auth`: sign in, refresh, sign out, who am I, and the node's keys.

use super::auth::{self, Caller};
use super::problem::{codes, ApiError, Problem};
use super::{submit_system, Api};
use actix_web::{get, post, web, HttpResponse};
use domains::membership::{self, Role};
use ledger::OrgId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Credentials. `username` may also be written `name@org`, without `org`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"org": "acme-bank", "username": "alice", "password": "demo-password"}))]
pub struct TokenRequest {
    #[serde(default)]
    pub org: Option<String>,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Exchange at `/v1/auth/refresh` for a new access token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub user: UserView,
}

/// A user as the API shows it (never a password hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub org: String,
    pub name: String,
    #[schema(value_type = Vec<String>, example = json!(["admin", "member"]))]
    pub roles: Vec<Role>,
    pub disabled: bool,
    /// Registered public keys by key id (hex).
    pub keys: std::collections::BTreeMap<String, String>,
    /// Each key's scheme (`ed25519` or `ml-dsa-65`) by key id.
    pub key_schemes: std::collections::BTreeMap<String, String>,
    pub has_password: bool,
}

impl UserView {
    pub fn of(u: &membership::UserRecord) -> Self {
        UserView {
            org: u.org.to_string(),
            name: u.name.clone(),
            roles: u.roles.iter().copied().collect(),
            disabled: u.disabled,
            keys: u
                .keys
                .iter()
                .map(|(k, v)| (k.clone(), v.public_key.clone()))
                .collect(),
            key_schemes: u
                .keys
                .iter()
                .map(|(k, v)| (k.clone(), v.scheme.as_str().to_string()))
                .collect(),
            has_password: u.password_hash.is_some(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Also revoke this refresh token (it must be the caller's).
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokeResponse {
    /// Ids of the revoked tokens.
    pub revoked: Vec<String>,
}

fn split_login(req: &TokenRequest) -> Result<(OrgId, String), ApiError> {
    let (org, name) = match (&req.org, req.username.split_once('@')) {
        (Some(org), _) => (org.as_str(), req.username.as_str()),
        (None, Some((name, org))) => (org, name),
        (None, None) => {
            return Err(ApiError::unprocessable(
                codes::INVALID_BODY,
                "give org, or a username of the form name@org",
            ))
        }
    };
    let org =
        OrgId::new(org).map_err(|e| ApiError::unprocessable(codes::INVALID_BODY, e.to_string()))?;
    Ok((org, name.to_string()))
}

/// Exchange a username and password for an access token and a refresh token.
#[utoipa::path(
    tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Unknown user or wrong password", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/auth/token")]
pub async fn token(
    api: web::Data<Api>,
    req: actix_web::HttpRequest,
    body: web::Json<TokenRequest>,
) -> Result<web::Json<TokenResponse>, ApiError> {
    let (org, name) = split_login(&body)?;
    let user = auth::directory(&api)?.user(&org, &name).cloned();
    // Lockouts are per login and client address, so that someone guessing
    // from one address cannot lock the user out everywhere.
    let from = req
        .peer_addr()
        .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string());
    let login = format!("{org}/{name} from {from}");
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let password = body.into_inner().password;
    let api2 = api.clone();
    web::block(move || api2.auth.check_password(&login, hash.as_deref(), &password))
        .await
        .map_err(ApiError::internal)??;
    let Some(user) = user else {
        return Err(ApiError::unauthorized(
            codes::BAD_CREDENTIALS,
            "unknown user or wrong password",
        ));
    };
    if user.disabled {
        return Err(ApiError::unauthorized(
            codes::USER_DISABLED,
            "the user is disabled",
        ));
    }
    let (access, claims) = api.auth.issue(&org, &name, "access")?;
    let (refresh_jwt, _) = api.auth.issue(&org, &name, "refresh")?;
    tracing::info!(org = %org, user = %name, "signed in");
    Ok(web::Json(TokenResponse {
        access_token: access,
        token_type: "Bearer".into(),
        expires_in: claims.exp.saturating_sub(claims.iat),
        refresh_token: Some(refresh_jwt),
        user: UserView::of(&user),
    }))
}

/// Exchange a refresh token for a new access token.
#[utoipa::path(
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new access token", body = TokenResponse),
        (status = 401, description = "Invalid, expired or revoked refresh token", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/auth/refresh")]
pub async fn refresh(
    api: web::Data<Api>,
    body: web::Json<RefreshRequest>,
) -> Result<web::Json<TokenResponse>, ApiError> {
    let claims = api.auth.verify(&body.refresh_token)?;
    if claims.typ != "refresh" {
        return Err(ApiError::unauthorized(
            codes::INVALID_TOKEN,
            "not a refresh token",
        ));
    }
    let org = OrgId::new(&claims.org)
        .map_err(|e| ApiError::unauthorized(codes::INVALID_TOKEN, e.to_string()))?;
    let user = {
        let dir = auth::directory(&api)?;
        if dir.is_revoked(&claims.jti) {
            return Err(ApiError::unauthorized(
                codes::TOKEN_REVOKED,
                "the token was revoked",
            ));
        }
        dir.user(&org, &claims.sub).cloned()
    };
    let user = match user {
        Some(u) if !u.disabled => u,
        Some(_) => {
            return Err(ApiError::unauthorized(
                codes::USER_DISABLED,
                "the user is disabled",
            ))
        }
        None => return Err(ApiError::unauthorized(codes::INVALID_TOKEN, "unknown user")),
    };
    let (access, c) = api.auth.issue(&org, &claims.sub, "access")?;
    Ok(web::Json(TokenResponse {
        access_token: access,
        token_type: "Bearer".into(),
        expires_in: c.exp.saturating_sub(c.iat),
        refresh_token: None,
        user: UserView::of(&user),
    }))
}

/// Sign out: revoke the calling token (and a refresh token), on the ledger,
/// so that every node refuses them.
#[utoipa::path(
    tag = "auth",
    request_body(content = RevokeRequest, description = "Optional refresh token to revoke too"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked", body = RevokeResponse),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The refresh token is someone else's", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/auth/revoke")]
pub async fn revoke(
    api: web::Data<Api>,
    caller: Caller,
    body: web::Json<RevokeRequest>,
) -> Result<web::Json<RevokeResponse>, ApiError> {
    let mut tokens = vec![(caller.jti.clone(), caller.exp)];
    if let Some(r) = &body.refresh_token {
        let c = api.auth.verify(r)?;
        if c.sub != caller.user || c.org != caller.org.as_str() {
            return Err(auth::deny(
                &caller,
                codes::FORBIDDEN,
                "that refresh token is not yours".into(),
            ));
        }
        tokens.push((c.jti, c.exp));
    }
    let mut revoked = Vec::new();
    for (jti, exp) in tokens {
        submit_system(
            &api,
            &caller,
            "revoke_token",
            serde_json::json!({"jti": jti, "exp_ms": exp.saturating_mul(1000)}),
        )
        .await?;
        revoked.push(jti);
    }
    Ok(web::Json(RevokeResponse { revoked }))
}

/// The signed-in user, its organization and roles.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/auth/me")]
pub async fn me(api: web::Data<Api>, caller: Caller) -> Result<web::Json<UserView>, ApiError> {
    let dir = auth::directory(&api)?;
    let u = dir
        .user(&caller.org, &caller.user)
        .ok_or_else(|| ApiError::unauthorized(codes::INVALID_TOKEN, "unknown user"))?;
    Ok(web::Json(UserView::of(u)))
}

/// The public keys this node's tokens are signed with (JWKS), for services
/// that verify them.
#[utoipa::path(
    tag = "auth",
    responses((status = 200, description = "JSON Web Key Set", body = Object))
)]
#[get("/v1/auth/jwks")]
pub async fn jwks(api: web::Data<Api>) -> HttpResponse {
    HttpResponse::Ok().json(api.auth.jwks())
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(token)
        .service(refresh)
        .service(revoke)
        .service(me)
        .service(jwks);
}

//! Authentication: argon2id passwords, EdDSA JWTs (with `kid`, `exp`, `iat`,
//! issuer and audience checked), refresh and revocation, tokens from an
//! external identity provider, a cache of verified tokens, per-user rate
//! limits, and the [`Caller`] extractor every protected handler takes.

use super::directory::Directory;
use super::problem::{codes, ApiError};
use super::Api;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest};
use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use domains::membership::Role;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ledger::OrgId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Access and refresh token claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user's name within its organization.
    pub sub: String,
    pub org: String,
    pub iat: u64,
    pub exp: u64,
    /// Token id, for revocation.
    pub jti: String,
    /// `access` or `refresh`; tokens from an identity provider are access
    /// tokens.
    #[serde(default = "access")]
    pub typ: String,
}

fn access() -> String {
    "access".into()
}

/// Who is calling: an authenticated, active user with its current roles.
#[derive(Debug, Clone)]
pub struct Caller {
    pub org: OrgId,
    pub user: String,
    pub roles: BTreeSet<Role>,
    pub jti: String,
    pub exp: u64,
}

impl Caller {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Fails with 403 `AUTH:ROLE_REQUIRED` unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.iter().any(|r| self.has(*r)) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(deny(
                self,
                codes::ROLE_REQUIRED,
                format!("this needs the role {}", names.join(" or ")),
            ))
        }
    }

    /// Acts for its organization (members and admins), and so reads what
    /// the organization may read.
    pub fn is_party(&self) -> bool {
        self.has(Role::Member) || self.has(Role::Admin)
    }

    /// Whether it may read the partitions of `org`: its own members and
    /// admins, and auditors for every organization.
    pub fn may_read(&self, org: &OrgId) -> bool {
        self.has(Role::Auditor) || (&self.org == org && self.is_party())
    }

    /// [`Self::may_read`], or a logged 403.
    pub fn require_read(&self, org: &OrgId) -> Result<(), ApiError> {
        if self.may_read(org) {
            Ok(())
        } else {
            Err(deny(
                self,
                codes::FORBIDDEN,
                format!(
                    "{}/{} may not read the partitions of {org}",
                    self.org, self.user
                ),
            ))
        }
    }
}

/// A denial: logged (who, what) and answered 403.
pub fn deny(caller: &Caller, code: &str, detail: String) -> ApiError {
    tracing::warn!(org = %caller.org, user = %caller.user, code, detail = %detail, "denied");
    metrics::counter!("parledger_http_denied_total", "code" => code.to_string()).increment(1);
    ApiError::new(StatusCode::FORBIDDEN, code, detail)
}

/// Settings of the token service.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// The node's signing key (PKCS#8 PEM, Ed25519); created if missing.
    pub key_file: PathBuf,
    /// More public keys (PEM) whose tokens this node accepts: other nodes'
    /// keys, or this node's previous key after a rotation.
    pub trusted_keys: Vec<PathBuf>,
    /// A directory of more trusted public keys (`*.pub.pem`), listed again
    /// on every reload.
    pub trust_dir: Option<PathBuf>,
    /// An external identity provider: issuer and JWKS file.
    pub idp: Option<(String, PathBuf)>,
    /// Requests per second per user, and the burst above it.
    pub rate_per_user: f64,
    pub burst_per_user: f64,
}

/// The suffix of a trusted public key's file in `--jwt-trust-dir`.
pub const TRUSTED_KEY_SUFFIX: &str = ".pub.pem";

impl AuthConfig {
    /// `--jwt-trust-key` files, then the `*.pub.pem` files of
    /// `--jwt-trust-dir` in name order (hidden entries, such as a
    /// Kubernetes Secret volume's `..data`, are skipped).
    pub fn trusted_key_files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut files = self.trusted_keys.clone();
        if let Some(dir) = &self.trust_dir {
            let mut found = Vec::new();
            let entries = std::fs::read_dir(dir)
                .with_context(|| format!("reading trusted key directory {}", dir.display()))?;
            for entry in entries {
                let entry = entry
                    .with_context(|| format!("reading trusted key directory {}", dir.display()))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !name.starts_with('.') && name.ends_with(TRUSTED_KEY_SUFFIX) {
                    found.push(entry.path());
                }
            }
            found.sort();
            files.extend(found);
        }
        Ok(files)
    }
}

struct VerifyKey {
    key: DecodingKey,
    alg: Algorithm,
    issuer: String,
}

/// Token issuing and checking.
pub struct Auth {
    pub config: AuthConfig,
    /// The signing key and every key tokens are checked against, replaced
    /// whole by [`Auth::reload`].
    keys: RwLock<Arc<KeySet>>,
    /// sha256(token) → claims, for tokens whose signature already verified.
    cache: Mutex<HashMap<[u8; 32], Claims>>,
    buckets: Mutex<HashMap<(OrgId, String), Bucket>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    /// A hash to verify against when the user does not exist, so that
    /// unknown and known users take the same time.
    dummy_hash: String,
}

/// A signing key retired by a rotation, still trusted until `until`.
#[derive(Clone)]
struct Retired {
    kid: String,
    public: [u8; 32],
    until: Instant,
}

/// The keys in force: this node's signing key and every key a token may be
/// signed with.
struct KeySet {
    kid: String,
    /// The signing key's public half.
    public: [u8; 32],
    signing: EncodingKey,
    keys: HashMap<String, VerifyKey>,
    jwks: serde_json::Value,
    retired: Vec<Retired>,
}

fn ed25519_jwk(kid: &str, public: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
        "kid": kid, "x": b64url(public),
    })
}

impl KeySet {
    /// Reads the key files named by `config`; `retired` keys stay trusted.
    fn load(config: &AuthConfig, retired: &[Retired]) -> anyhow::Result<KeySet> {
        let signing = load_or_create_key(&config.key_file)?;
        let public = signing.verifying_key().to_bytes();
        let kid = kid_of(&public);
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| anyhow::anyhow!("encoding JWT key: {e}"))?;
        let mut keys = HashMap::new();
        let mut jwks = vec![ed25519_jwk(&kid, &public)];
        let ed = |public: &[u8]| VerifyKey {
            key: DecodingKey::from_ed_der(public),
            alg: Algorithm::EdDSA,
            issuer: config.issuer.clone(),
        };
        keys.insert(kid.clone(), ed(&public));
        let trusted = config
            .trusted_key_files()?
            .iter()
            .map(|path| load_public_pem(path))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let retired_keys = retired.iter().map(|r| r.public.as_slice());
        for public in trusted.iter().map(Vec::as_slice).chain(retired_keys) {
            let k = kid_of(public);
            if keys.contains_key(&k) {
                continue;
            }
            jwks.push(ed25519_jwk(&k, public));
            keys.insert(k, ed(public));
        }
        if let Some((issuer, path)) = &config.idp {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading identity provider JWKS {}", path.display()))?;
            let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text)
                .with_context(|| format!("parsing identity provider JWKS {}", path.display()))?;
            for jwk in &set.keys {
                let Some(kid) = jwk.common.key_id.clone() else {
                    anyhow::bail!("identity provider key without kid in {}", path.display());
                };
                let alg = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    _ => anyhow::bail!("identity provider key {kid}: unsupported key type"),
                };
                keys.insert(
                    kid,
                    VerifyKey {
                        key: DecodingKey::from_jwk(jwk)?,
                        alg,
                        issuer: issuer.clone(),
                    },
                );
            }
        }
        Ok(KeySet {
            kid,
            public,
            signing: EncodingKey::from_ed_der(der.as_bytes()),
            keys,
            jwks: serde_json::json!({ "keys": jwks }),
            retired: retired.to_vec(),
        })
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("kid", &self.key_set().kid)
            .finish_non_exhaustive()
    }
}

const CACHE_LEN_MAX: usize = 100_000;
/// Failed sign-ins per user before it is refused for a while.
const FAILURES_MAX: u32 = 5;
const LOCKOUT: Duration = Duration::from_secs(60);

/// The key id (`kid`) of an Ed25519 public key: the first 8 bytes of its
/// SHA-256, in hex.
pub fn kid_of(public: &[u8]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Loads the node's Ed25519 signing key, creating it (mode 0600) if absent.
fn load_or_create_key(path: &Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    if path.exists() {
        return load_private_key(path);
    }
    let key = create_private_key(path)?;
    tracing::info!(path = %path.display(), "created the node's JWT signing key");
    Ok(key)
}

/// Reads an Ed25519 private key (PKCS#8 PEM).
pub fn load_private_key(path: &Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| anyhow::anyhow!("key {}: {e}", path.display()))
}

/// Generates an Ed25519 key and writes it (PKCS#8 PEM, mode 0600) to a
/// new file.
pub fn create_private_key(path: &Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    let key = ed25519_dalek::SigningKey::generate(&mut rand_core06::OsRng);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding a key: {e}"))?;
    write_secret(path, pem.as_bytes())?;
    Ok(key)
}

/// Writes a secret to a new file (refused if it exists), readable by its
/// owner only, creating its directory if needed.
pub fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing key {}", path.display()))
}

fn load_public_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading trusted key {}", path.display()))?;
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(&pem)
        .map_err(|e| anyhow::anyhow!("trusted key {}: {e}", path.display()))?;
    Ok(key.to_bytes().to_vec())
}

pub fn now_ms() -> u64 {
    crate::node::now_ms()
}

impl Auth {
    pub fn new(config: AuthConfig) -> anyhow::Result<Auth> {
        let keys = KeySet::load(&config, &[])?;
        let dummy_hash = hash_password("not a password")?;
        Ok(Auth {
            config,
            keys: RwLock::new(Arc::new(keys)),
            cache: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            dummy_hash,
        })
    }

    fn key_set(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            // A writer panicked between two whole sets: either is whole.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the key files again (`--jwt-key`, `--jwt-trust-key`, the
    /// identity provider's JWKS): a rotated signing key signs new tokens
    /// from now on, and the key it replaces stays trusted until every token
    /// it signed has expired (the refresh lifetime). Nothing changes when a
    /// file cannot be read. Returns whether the signing key changed.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let old = self.key_set();
        let now = Instant::now();
        let mut retired: Vec<Retired> = old
            .retired
            .iter()
            .filter(|r| r.until > now)
            .cloned()
            .collect();
        let fresh = KeySet::load(&self.config, &[])?;
        let rotated = fresh.kid != old.kid;
        if rotated {
            retired.push(Retired {
                kid: old.kid.clone(),
                public: old.public,
                until: now + self.config.refresh_ttl,
            });
        }
        retired.retain(|r| r.kid != fresh.kid);
        let set = KeySet::load(&self.config, &retired)?;
        match self.keys.write() {
            Ok(mut k) => *k = Arc::new(set),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
        }
        // Every token verifies again against the keys now in force: one
        // signed by a key no longer trusted (taken out of the trust
        // directory, say) must not live on in the cache until it expires.
        match self.cache.lock() {
            Ok(mut c) => c.clear(),
            Err(poisoned) => poisoned.into_inner().clear(),
        }
        Ok(rotated)
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.key_set().jwks.clone()
    }

    /// Signs a token of kind `typ` for a user.
    pub fn issue(&self, org: &OrgId, user: &str, typ: &str) -> Result<(String, Claims), ApiError> {
        let now = now_ms() / 1000;
        let ttl = if typ == "refresh" {
            self.config.refresh_ttl
        } else {
            self.config.access_ttl
        };
        let claims = Claims {
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            sub: user.to_string(),
            org: org.to_string(),
            iat: now,
            exp: now + ttl.as_secs(),
            jti: new_id(),
            typ: typ.to_string(),
        };
        let keys = self.key_set();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &keys.signing).map_err(ApiError::internal)?;
        Ok((token, claims))
    }

    /// Verifies a token's signature, issuer, audience and times (cached by
    /// the token's hash once its signature verified).
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_ms() / 1000;
        if let Some(c) = self.cache.lock().ok().and_then(|c| c.get(&digest).cloned()) {
            if c.exp <= now {
                return Err(ApiError::unauthorized(
                    codes::TOKEN_EXPIRED,
                    "the token has expired",
                ));
            }
            return Ok(c);
        }
        let invalid = |d: String| ApiError::unauthorized(codes::INVALID_TOKEN, d);
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| invalid("the token has no kid".into()))?;
        let keys = self.key_set();
        let key = keys
            .keys
            .get(&kid)
            .ok_or_else(|| invalid(format!("no trusted key has kid {kid}")))?;
        if header.alg != key.alg {
            return Err(invalid(
                "the token's algorithm does not match its key".into(),
            ));
        }
        let mut v = Validation::new(key.alg);
        v.set_issuer(&[&key.issuer]);
        v.set_audience(&[&self.config.audience]);
        v.leeway = 30;
        // A token may say when it starts to be valid (an identity
        // provider's often do): before then it is refused.
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.key, &v).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized(codes::TOKEN_EXPIRED, "the token has expired")
                }
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => ApiError::unauthorized(
                    codes::TOKEN_NOT_YET_VALID,
                    "the token is not valid yet (nbf)",
                ),
                _ => invalid(e.to_string()),
            })?;
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_LEN_MAX {
                c.retain(|_, claims| claims.exp > now);
                if c.len() >= CACHE_LEN_MAX {
                    c.clear();
                }
            }
            c.insert(digest, data.claims.clone());
        }
        Ok(data.claims)
    }

    /// Resolves verified claims to an active user with its current roles.
    pub fn caller(&self, claims: &Claims, directory: &Directory) -> Result<Caller, ApiError> {
        if claims.typ != "access" {
            return Err(ApiError::unauthorized(
                codes::INVALID_TOKEN,
                "a refresh token cannot authorize requests",
            ));
        }
        if directory.is_revoked(&claims.jti) {
            return Err(ApiError::unauthorized(
                codes::TOKEN_REVOKED,
                "the token was revoked",
            ));
        }
        let org = OrgId::new(&claims.org)
            .map_err(|e| ApiError::unauthorized(codes::INVALID_TOKEN, e.to_string()))?;
        let user = directory.user(&org, &claims.sub).ok_or_else(|| {
            ApiError::unauthorized(
                codes::INVALID_TOKEN,
                format!(
                    "{}/{} is not a member of the consortium",
                    claims.org, claims.sub
                ),
            )
        })?;
        if user.disabled {
            return Err(ApiError::unauthorized(
                codes::USER_DISABLED,
                "the user is disabled",
            ));
        }
        Ok(Caller {
            org,
            user: claims.sub.clone(),
            roles: user.roles.clone(),
            jti: claims.jti.clone(),
            exp: claims.exp,
        })
    }

    /// Takes one request from the user's token bucket; 429 when empty.
    pub fn rate_limit(&self, caller: &Caller) -> Result<(), ApiError> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let (rate, burst) = (self.config.rate_per_user, self.config.burst_per_user);
        let b = buckets
            .entry((caller.org.clone(), caller.user.clone()))
            .or_insert(Bucket {
                tokens: burst,
                at: now,
            });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0) as u64;
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                codes::RATE_LIMITED,
                format!("more than {rate} requests per second"),
            );
            e.retry_after = Some(wait);
            Err(e)
        }
    }

    /// Checks a password against the user's hash (in constant work whether
    /// or not the user exists), with a lockout after repeated failures.
    pub fn check_password(
        &self,
        login: &str,
        hash: Option<&str>,
        password: &str,
    ) -> Result<(), ApiError> {
        if let Ok(f) = self.failures.lock() {
            if let Some((n, since)) = f.get(login) {
                if *n >= FAILURES_MAX && since.elapsed() < LOCKOUT {
                    let mut e = ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        codes::RATE_LIMITED,
                        "too many failed sign-ins; try again later",
                    );
                    e.retry_after = Some((LOCKOUT - since.elapsed()).as_secs().max(1));
                    return Err(e);
                }
            }
        }
        let ok = verify_password(hash.unwrap_or(&self.dummy_hash), password) && hash.is_some();
        if let Ok(mut f) = self.failures.lock() {
            if ok {
                f.remove(login);
            } else {
                let e = f.entry(login.to_string()).or_insert((0, Instant::now()));
                if e.1.elapsed() >= LOCKOUT {
                    *e = (0, Instant::now());
                }
                e.0 += 1;
                if f.len() > CACHE_LEN_MAX {
                    f.clear();
                }
            }
        }
        if ok {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                codes::BAD_CREDENTIALS,
                "unknown user or wrong password",
            ))
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A random 128-bit id as 32 hex digits (token ids, transaction ids).
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// argon2id with the crate's defaults (19 MiB, 2 passes: OWASP's minimum).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand_core06::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The `Authorization: Bearer` token of a request.
pub fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized(codes::MISSING_TOKEN, "send Authorization: Bearer <token>")
        })?;
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(codes::MISSING_TOKEN, "send Authorization: Bearer <token>")
        })
}

fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let api = req
        .app_data::<web::Data<Api>>()
        .ok_or_else(|| ApiError::internal("API state missing"))?;
    let token = bearer(req)?;
    let claims = api.auth.verify(token)?;
    let caller = {
        let dir = api
            .directory
            .read()
            .map_err(|_| ApiError::internal("directory lock poisoned"))?;
        match api.auth.caller(&claims, &dir) {
            Ok(c) => c,
            // A node still catching up with its cluster (one just added,
            // or back from a long absence) may not know a user the others
            // know: that is "not yet", not "no".
            Err(e) if e.code == codes::INVALID_TOKEN && !node_ready(api) => {
                let mut a = ApiError::unavailable(
                    "this node is catching up with the cluster and does not know this user yet; \
                     retry, or ask another node",
                );
                a.code = "NODE:NOT_READY".into();
                return Err(a);
            }
            Err(e) => return Err(e),
        }
    };
    api.auth.rate_limit(&caller)?;
    Ok(caller)
}

/// Whether the node reports itself ready (`/readyz`).
fn node_ready(api: &Api) -> bool {
    api.status.read().map(|s| s.ready).unwrap_or(false)
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(authenticate(req))
    }
}

/// Reads the shared directory.
pub fn directory(api: &Api) -> Result<std::sync::RwLockReadGuard<'_, Directory>, ApiError> {
    api.directory
        .read()
        .map_err(|_| ApiError::internal("directory lock poisoned"))
}

pub type SharedDirectory = std::sync::Arc<RwLock<Directory>>;

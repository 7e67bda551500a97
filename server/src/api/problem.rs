//! Errors as `application/problem+json` (RFC 9457) with a stable `code`.
//! Every handler returns [`ApiError`]; extractor failures (malformed JSON,
//! bad paths and queries, oversized bodies) are mapped here too, so a client
//! never sees an HTML error page or a 500 for its own mistake.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:parledger:problem:AUTH:FORBIDDEN",
    "title": "Forbidden",
    "status": 403,
    "detail": "a member of acme-bank may not read globex-logistics/finance",
    "code": "AUTH:FORBIDDEN"
}))]
pub struct Problem {
    /// `urn:parledger:problem:{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// Stable machine-readable code, `AREA:NAME`.
    pub code: String,
}

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub detail: String,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn not_found(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn unprocessable(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, detail);
        e.retry_after = Some(1);
        e
    }

    pub fn internal(detail: impl fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            "the node failed to answer; the error is in its log",
        )
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:parledger:problem:{}", self.code),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.clone(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        r.content_type(PROBLEM_JSON);
        if let Some(s) = self.retry_after {
            r.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        r.json(self.problem())
    }
}

impl From<crate::node::Stopped> for ApiError {
    fn from(_: crate::node::Stopped) -> Self {
        ApiError::unavailable("the node is stopping")
    }
}

/// The server's own codes (domain and ledger codes pass through as they are).
pub mod codes {
    pub const MALFORMED_JSON: &str = "API:MALFORMED_JSON";
    pub const INVALID_BODY: &str = "API:INVALID_BODY";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "API:UNSUPPORTED_MEDIA_TYPE";
    pub const PAYLOAD_TOO_LARGE: &str = "API:PAYLOAD_TOO_LARGE";
    pub const HEADERS_TOO_LARGE: &str = "API:HEADERS_TOO_LARGE";
    pub const INVALID_PATH: &str = "API:INVALID_PATH";
    pub const INVALID_QUERY: &str = "API:INVALID_QUERY";
    pub const INVALID_ID: &str = "API:INVALID_ID";
    pub const NOT_FOUND: &str = "API:NOT_FOUND";
    pub const METHOD_NOT_ALLOWED: &str = "API:METHOD_NOT_ALLOWED";
    pub const BATCH_TOO_LARGE: &str = "API:BATCH_TOO_LARGE";
    pub const RATE_LIMITED: &str = "API:RATE_LIMITED";
    pub const UNAVAILABLE: &str = "API:UNAVAILABLE";
    pub const DISK_FULL: &str = "NODE:DISK_FULL";
    pub const BUSY: &str = "API:BUSY";
    pub const INTERNAL: &str = "API:INTERNAL";
    pub const TX_NOT_FOUND: &str = "API:TX_NOT_FOUND";
    pub const BLOCK_NOT_FOUND: &str = "API:BLOCK_NOT_FOUND";
    pub const KEY_NOT_FOUND: &str = "API:KEY_NOT_FOUND";
    pub const FORBIDDEN: &str = "AUTH:FORBIDDEN";
    pub const ROLE_REQUIRED: &str = "AUTH:ROLE_REQUIRED";
    pub const MISSING_TOKEN: &str = "AUTH:MISSING_TOKEN";
    pub const INVALID_TOKEN: &str = "AUTH:INVALID_TOKEN";
    pub const TOKEN_EXPIRED: &str = "AUTH:TOKEN_EXPIRED";
    pub const TOKEN_NOT_YET_VALID: &str = "AUTH:TOKEN_NOT_YET_VALID";
    pub const TOKEN_REVOKED: &str = "AUTH:TOKEN_REVOKED";
    pub const BAD_CREDENTIALS: &str = "AUTH:BAD_CREDENTIALS";
    pub const USER_DISABLED: &str = "AUTH:USER_DISABLED";
    pub const SIGNATURE_REQUIRED: &str = "AUTH:SIGNATURE_REQUIRED";
    pub const UNKNOWN_KEY: &str = "AUTH:UNKNOWN_KEY";
    pub const BAD_SIGNATURE: &str = "AUTH:BAD_SIGNATURE";
    pub const WRONG_SIGNATURE_SCHEME: &str = "AUTH:WRONG_SIGNATURE_SCHEME";
}

/// `JsonConfig`'s error handler: malformed JSON is 400, a wrong content type
/// 415, an oversized body 413, a well-formed body of the wrong shape 422.
pub fn json_error(err: actix_web::error::JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    let e = match &err {
        E::OverflowKnownLength { length, limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::PAYLOAD_TOO_LARGE,
            format!("body of {length} bytes exceeds the limit of {limit}"),
        ),
        E::Overflow { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::PAYLOAD_TOO_LARGE,
            format!("body exceeds the limit of {limit} bytes"),
        ),
        E::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        ),
        E::Deserialize(d) if d.is_data() => {
            ApiError::unprocessable(codes::INVALID_BODY, d.to_string())
        }
        E::Deserialize(d) => ApiError::bad_request(codes::MALFORMED_JSON, d.to_string()),
        other => ApiError::bad_request(codes::MALFORMED_JSON, other.to_string()),
    };
    e.into()
}

pub fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(codes::INVALID_QUERY, err.to_string()).into()
}

pub fn path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(codes::INVALID_PATH, err.to_string()).into()
}

/// Unknown routes.
pub async fn not_found(req: HttpRequest) -> ApiError {
    ApiError::not_found(
        codes::NOT_FOUND,
        format!("no route {} {}", req.method(), req.path()),
    )
}

pub fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "this route does not accept that method",
    )
}

/// The answers every authenticated read shares (OpenAPI response set).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ReadResponses {
    /// Malformed path or query parameters.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// Not signed in.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// Rate limited.
    #[response(status = 429, content_type = "application/problem+json")]
    RateLimited(Problem),
}

impl From<crate::node::NodeError> for ApiError {
    /// A cluster that cannot order right now is a 503 the client retries
    /// (with the same id: nothing is applied twice); a node that cannot
    /// apply is a 500.
    fn from(e: crate::node::NodeError) -> Self {
        use crate::node::NodeError;
        match &e {
            NodeError::NoLeader | NodeError::NotCommitted(_) => {
                let mut a = ApiError::unavailable(e.to_string());
                a.code = e.code().into();
                a
            }
            NodeError::Failed(m) => ApiError::internal(m),
            NodeError::IdTaken(_) => ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string()),
        }
    }
}

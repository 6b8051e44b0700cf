//! The API's one error type. Every handler fails with an [`ApiError`]; the
//! single `recover` in `api` turns it (and warp's own rejections) into the
//! `{"detail": ...}` JSON responses of the spec.

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use warp::http::StatusCode;

use crate::{auth::TokenError, store::StoreError};

/// Every error response: `{"detail": "<message>"}`, sometimes with more
/// fields next to `detail` (see the 422 of `POST /ticket`).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"detail": "Ticket not found"}))]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// Extra top-level fields next to `detail` (e.g. policy `rejections`).
    pub extra: Option<serde_json::Map<String, Value>>,
    /// Seconds for a `Retry-After` header: the condition is temporary.
    pub retry_after: Option<u32>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            extra: None,
            retry_after: None,
        }
    }

    /// Says when trying again makes sense (`Retry-After`).
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a top-level field next to `detail`.
    pub fn with_field(mut self, key: &str, value: Value) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value);
        self
    }

    pub fn invalid_credentials() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Invalid authentication credentials")
    }
    pub fn authorize_failed() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Authorize failed")
    }
    pub fn permission_denied() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Permission denied")
    }
    pub fn ticket_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Ticket not found")
    }
    pub fn ticket_file_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Ticket file not found")
    }
    pub fn user_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "User not found")
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
    }
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
    pub fn database_unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "Database unavailable")
    }
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    pub fn body(&self) -> Value {
        let mut body = self.extra.clone().unwrap_or_default();
        body.insert("detail".into(), json!(self.detail));
        Value::Object(body)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            tracing::warn!(%error, "database unavailable");
            Self::database_unavailable()
        } else {
            tracing::error!(%error, "storage error");
            Self::internal()
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Invalid => Self::invalid_credentials(),
            TokenError::Store(e) => e.into(),
        }
    }
}

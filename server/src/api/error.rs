//! The API's one error type, and the one place a status code is chosen.
//! Every handler fails with an [`ApiError`], most by `?` on a service's
//! domain error (the `From` impls below map each to the spec's status and
//! `detail`); the single `recover` in `api` turns it (and warp's own
//! rejections) into the `{"detail": ...}` JSON responses of the spec.

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use warp::http::StatusCode;

use crate::{
    auth::TokenError,
    service::{
        auth::AuthError,
        files::FileError,
        previews::PreviewError,
        search::SearchError,
        tickets::TicketError,
        upload::UploadError,
        validation::{PolicyError, PolicyRejection},
    },
    store::{Busy, MIN_RATE, RETRY_AFTER_SECS, StoreError},
    telemetry::{UploadOutcome, metrics},
    ticket::quoted_name,
};

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

impl From<Busy> for ApiError {
    fn from(error: Busy) -> Self {
        metrics().upload(UploadOutcome::Busy, 0, 0);
        match error {
            // Logged (throttled) where it is decided: `store::upload_memory`.
            Busy::Full(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Server busy: too many uploads at once; please try again",
            ),
            Busy::User(most) => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many uploads at once: at most {most} in progress per user"),
            ),
        }
        .retry_after(RETRY_AFTER_SECS)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if error.is_out_of_space() {
            tracing::warn!(%error, "database storage full");
            Self::new(StatusCode::INSUFFICIENT_STORAGE, "Database storage full")
        } else if error.is_database_failure() {
            // Not a request's fault, but the database's own (a panicked
            // storage engine answers everything with InternalError): an
            // outage for the client, an error for whoever reads the log.
            tracing::error!(%error, "database failure");
            Self::database_unavailable()
        } else if error.is_unavailable() {
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

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::EmptyCode => Self::unprocessable("Field `code` must not be empty"),
            AuthError::Discord(error) => {
                tracing::warn!(%error, "Discord authorization failed");
                Self::authorize_failed()
            }
            AuthError::NoGrant => Self::authorize_failed(),
            AuthError::TooOld => Self::invalid_credentials(),
            AuthError::Token(e) => e.into(),
            AuthError::Store(e) => e.into(),
        }
    }
}

impl From<FileError> for ApiError {
    fn from(error: FileError) -> Self {
        match error {
            FileError::IllegalPath => Self::permission_denied(),
            FileError::NotFound => Self::ticket_file_not_found(),
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(error: SearchError) -> Self {
        match error {
            SearchError::BadQuery => Self::bad_request(format!(
                "Query must be 1 to {} characters",
                crate::service::search::MAX_QUERY_CHARS
            )),
            SearchError::Ticket(e) => e.into(),
            SearchError::Store(e) => e.into(),
        }
    }
}

impl From<crate::service::versions::DiffError> for ApiError {
    fn from(error: crate::service::versions::DiffError) -> Self {
        use crate::service::versions::DiffError;
        match error {
            DiffError::Ticket(e) => e.into(),
            DiffError::File(e) => e.into(),
            DiffError::Store(e) => e.into(),
        }
    }
}

impl From<crate::service::comments::CommentError> for ApiError {
    fn from(error: crate::service::comments::CommentError) -> Self {
        use crate::service::comments::{CommentError, MAX_COMMENTS, PER_MINUTE};
        match error {
            CommentError::Ticket(e) => e.into(),
            CommentError::File(e) => e.into(),
            CommentError::Store(e) => e.into(),
            CommentError::NotFound => Self::new(StatusCode::NOT_FOUND, "Comment not found"),
            CommentError::PermissionDenied => Self::permission_denied(),
            CommentError::Invalid(detail) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail),
            CommentError::TooMany(_) => Self::new(
                StatusCode::CONFLICT,
                format!("A ticket keeps at most {MAX_COMMENTS} comments"),
            ),
            CommentError::RateLimited(seconds) => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many comments: at most {PER_MINUTE} a minute"),
            )
            .retry_after(seconds.min(u64::from(u32::MAX)) as u32),
        }
    }
}

impl From<crate::service::device::DeviceError> for ApiError {
    fn from(error: crate::service::device::DeviceError) -> Self {
        use crate::service::device::DeviceError;
        match error {
            // RFC 8628 §3.5: 400 with the grant's `error` code beside ours.
            DeviceError::Grant(e) => {
                Self::bad_request(e.detail()).with_field("error", json!(e.code()))
            }
            DeviceError::CodeNotFound => Self::new(StatusCode::NOT_FOUND, "Code not found"),
            DeviceError::SessionNotFound => Self::new(StatusCode::NOT_FOUND, "Device not found"),
            DeviceError::BrowserOnly => Self::new(
                StatusCode::FORBIDDEN,
                "A device cannot approve another: approve in the browser",
            ),
            DeviceError::RateLimited(seconds) => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts: try again later",
            )
            .retry_after(seconds.min(3600) as u32),
            DeviceError::Busy => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many sign-ins in progress: try again in a minute",
            )
            .retry_after(60),
            DeviceError::Token(e) => e.into(),
            DeviceError::Store(e) => e.into(),
        }
    }
}

impl From<TicketError> for ApiError {
    fn from(error: TicketError) -> Self {
        match error {
            TicketError::NotFound => Self::ticket_not_found(),
            TicketError::PermissionDenied => Self::permission_denied(),
            TicketError::UserNotFound => Self::user_not_found(),
            TicketError::VersionNotFound => Self::new(StatusCode::NOT_FOUND, "Version not found"),
            TicketError::Store(e) => e.into(),
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(error: UploadError) -> Self {
        match error {
            UploadError::Malformed(e) => {
                Self::bad_request(format!("Malformed multipart body: {e}"))
            }
            UploadError::InvalidOptions(e) => {
                Self::bad_request(format!("Invalid `data` field: {e}"))
            }
            UploadError::MissingFile => Self::bad_request("Missing file"),
            UploadError::UnnamedFile => {
                Self::bad_request("Illegal file name: a `files` part needs a file name")
            }
            UploadError::NotUtf8Name(lossy) => Self::bad_request(format!(
                "Illegal file name: {} (not UTF-8)",
                quoted_name(&lossy)
            )),
            UploadError::IllegalName(raw) => {
                Self::bad_request(format!("Illegal file name: {}", quoted_name(&raw)))
            }
            UploadError::DuplicateName { path, first } if path == first => {
                Self::bad_request(format!("Duplicate file name: {}", quoted_name(&path)))
            }
            UploadError::DuplicateName { path, first } => Self::bad_request(format!(
                "Duplicate file name: {} (the same file as {} on Windows and macOS)",
                quoted_name(&path),
                quoted_name(&first)
            )),
            UploadError::FileAndFolder { file, inside } => Self::bad_request(format!(
                "Duplicate file name: {} is a file and also a folder, of {} (they cannot both be unzipped)",
                quoted_name(&file),
                quoted_name(&inside)
            )),
            UploadError::TooManyFiles(max) => {
                Self::too_large(format!("Too many files (at most {max})"))
            }
            // The detail is the spec's; the file and the limit ride beside it.
            UploadError::FileTooLarge { path, limit } => Self::too_large("File is too large")
                .with_field("file", json!(path))
                .with_field("max_file_size", json!(limit)),
            UploadError::TicketTooLarge => Self::too_large("Ticket is too large"),
            UploadError::FieldTooLarge(name) => {
                Self::too_large(format!("Form field `{name}` is too large"))
            }
            UploadError::Stalled(secs) => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("Upload stalled: no data for {secs} s"),
            ),
            UploadError::TooSlow(bytes, secs) => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "Upload too slow: {bytes} bytes in {secs} s (under {} KiB/s) while other uploads waited; please try again",
                    MIN_RATE as u64 / 1024
                ),
            ),
            UploadError::Abandoned => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Upload took too long; please try again",
            ),
            UploadError::TicketGone => Self::ticket_not_found(),
            UploadError::TooManyVersions(max) => Self::new(
                StatusCode::CONFLICT,
                format!("A ticket keeps at most {max} versions"),
            ),
            UploadError::RecordFull => Self::new(
                StatusCode::CONFLICT,
                "The ticket has no room for another version: its versions' file lists would pass 8 MiB",
            ),
            UploadError::Policy(e) => e.into(),
            UploadError::Store(e) => e.into(),
        }
    }
}

/// The 422 body of a refused upload.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "detail": "File rejected by policy",
    "rejections": [{"file": "a.exe", "plugin": "file-policy", "message": "denied_extensions: `.exe` files are not accepted"}]
}))]
pub struct PolicyRejected {
    pub detail: String,
    /// The first `plugins.max_messages` rejections.
    pub rejections: Vec<PolicyRejection>,
    /// Rejections left out of the list; absent when none were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omitted: Option<u64>,
}

fn plugins_loading() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Plugins are still loading; try again in a moment",
    )
    .retry_after(2)
}

impl From<PolicyError> for ApiError {
    fn from(error: PolicyError) -> Self {
        let unavailable = |detail: String| Self::new(StatusCode::SERVICE_UNAVAILABLE, detail);
        match error {
            PolicyError::Rejected {
                rejections,
                omitted,
            } => {
                let mut error = Self::unprocessable("File rejected by policy")
                    .with_field("rejections", json!(rejections));
                if omitted > 0 {
                    error = error.with_field("omitted", json!(omitted));
                }
                error
            }
            // A failing validator fails closed: the upload is refused,
            // naming it.
            PolicyError::Failed { plugin, reason } => {
                unavailable(format!("Plugin unavailable: {plugin}"))
                    .with_field("plugin", json!(plugin))
                    .with_field("reason", json!(reason))
            }
            PolicyError::Contested {
                plugin,
                description,
            } => unavailable(format!("Plugin unavailable: {description}"))
                .with_field("plugin", json!(plugin)),
            PolicyError::Loading => plugins_loading(),
            // The storage's failure: 503 `Database unavailable` when the
            // database is away, a 500 naming the file otherwise (logged).
            PolicyError::Unreadable { file, error } if !error.is_unavailable() => {
                tracing::error!(%error, file, "a file of an upload could not be read back for validation");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "Storage error: {} could not be read back for validation",
                        quoted_name(&file)
                    ),
                )
            }
            PolicyError::Unreadable { error, .. } => error.into(),
            PolicyError::OverBudget {
                budget_ms,
                unfinished,
            } => unavailable(format!(
                "Plugin unavailable: validating this upload took longer than the {:.1} s allowed \
                 ({unfinished} checks unfinished; plugins.upload_timeout_ms)",
                budget_ms as f64 / 1000.0
            )),
        }
    }
}

impl From<PreviewError> for ApiError {
    fn from(error: PreviewError) -> Self {
        match error {
            PreviewError::Loading => plugins_loading(),
            PreviewError::NoPreview => {
                Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "No preview available")
            }
            PreviewError::TooMany(max) => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many previews at once: at most {max} of yours are rendered at a time"),
            )
            .retry_after(1),
            PreviewError::Busy => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Previews are busy; try again in a moment",
            )
            .retry_after(1),
            PreviewError::Store(e) => e.into(),
        }
    }
}

//! Upload pipeline: multipart form → validated names → GridFS → ticket record.
//!
//! Parts are read one at a time and streamed straight into GridFS, checking
//! the size limits on every chunk, so memory stays at about one GridFS chunk
//! per upload and an oversize file is refused as soon as it crosses the
//! limit. The ticket record is inserted last; on any failure every byte
//! stored for the ticket is removed before the error is returned (or, if
//! the database is gone, by the janitor once it is back).

use std::{collections::HashMap, time::Instant};

use bytes::Buf;
use futures_util::{Stream, TryStreamExt};
use serde::{Deserialize, Deserializer};
use warp::multipart::{FormData, Part};

use crate::{
    app::State,
    config::LimitsConfig,
    error::ApiError,
    hooks,
    store::{FileIdBlock, FileUpload, Store, StoreError, StoredFile, TicketRecord},
    telemetry::{UploadOutcome, metrics},
    ticket::{content_type_for, name_key, new_ticket_id, normalize_upload_name, quoted_name},
};

/// Form field carrying the files (repeated).
const FILES_FIELD: &str = "files";
/// Form field carrying the ticket options as a JSON string.
const DATA_FIELD: &str = "data";
/// Cap for one non-file field: the options JSON is tiny.
const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Cap for all non-file fields together, so a body of endless small unknown
/// fields cannot keep the server reading.
const MAX_FIELDS_BYTES: usize = 1024 * 1024;

/// The `data` field: `{"is_public": bool | "true" | "false", "remark": string}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TicketOptions {
    #[serde(deserialize_with = "bool_or_string")]
    pub is_public: bool,
    pub remark: String,
}

/// The original front end sends `is_public` as the strings "true"/"false".
fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(b),
        Flag::Text(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Flag::Text(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        Flag::Text(s) => Err(serde::de::Error::custom(format!(
            "`is_public` must be true or false, not {s:?}"
        ))),
    }
}

/// Receives a whole upload and records the ticket. Runs to completion even
/// if the client goes away (callers spawn it), so cleanup always happens.
pub async fn ingest(
    state: State,
    author_id: String,
    form: FormData,
) -> Result<TicketRecord, ApiError> {
    let store = &state.store;
    let ticket_id = new_ticket_id();
    let ids = FileIdBlock::new();
    // Journaled before the first byte, so whatever happens next the bytes
    // can be found again (see `store::uploads`).
    if let Err(error) = store.uploads.begin(&ticket_id, &ids).await {
        metrics().upload(UploadOutcome::Failed, 0, 0);
        // A write that timed out may still land: the janitor makes sure no
        // entry outlives this failure.
        state.janitor.discard_twice(store, &ticket_id).await;
        return Err(error.into());
    }
    let mut receiver = Receiver {
        store,
        limits: &state.config.limits,
        ticket_id: &ticket_id,
        ids,
        touched: Instant::now(),
        files: Vec::new(),
        names: HashMap::new(),
        total: 0,
        field_bytes: 0,
    };
    let mut settling = false;
    let outcome = async {
        let options = receiver.receive(form).await?;
        if receiver.files.is_empty() {
            return Err(ApiError::bad_request("Missing file"));
        }
        // Validators see the stored files before any ticket points at them;
        // a rejection removes them again below.
        if let Err(error) = hooks::validate_upload(&state, &receiver.files).await {
            // A validator that could not read its file may have lost it to
            // a sweep; then that is the cause to report.
            if error.status.is_server_error() {
                receiver.keep_alive().await?;
            }
            return Err(error);
        }
        // Validation can take long (plugin time limits, many files): make
        // sure no sweep took this upload for abandoned meanwhile, or the
        // ticket would point at deleted bytes.
        receiver.keep_alive().await?;
        let ticket = TicketRecord {
            id: ticket_id.clone(),
            author_id,
            files: std::mem::take(&mut receiver.files),
            is_public: options.is_public,
            remark: options.remark,
            create_time: now_millis(),
        };
        if let Err(error) = store.tickets.insert(&ticket).await {
            // Sent but unanswered, the insert may still land: whether the
            // files are kept is decided once it no longer can.
            settling = matches!(error, StoreError::Timeout(_));
            return Err(error.into());
        }
        Ok(ticket)
    }
    .await;
    match &outcome {
        Ok(ticket) => {
            metrics().upload(UploadOutcome::Stored, ticket.files.len(), receiver.total);
            // Off the response path. If the removal fails, the janitor
            // retries it, and keeps the files: it sees the ticket.
            let (state, ticket_id) = (state.clone(), ticket_id.clone());
            tokio::spawn(async move {
                if let Err(error) = state.store.uploads.remove(&ticket_id).await {
                    tracing::warn!(%error, ticket_id, "could not close the upload journal entry yet");
                    state.janitor.discard_twice(&state.store, &ticket_id).await;
                }
            });
        }
        Err(error) => {
            let outcome = if error.status.is_server_error() {
                UploadOutcome::Failed
            } else {
                UploadOutcome::Rejected
            };
            metrics().upload(outcome, 0, 0);
            if settling {
                state.janitor.discard_later(&ticket_id);
            } else {
                state.janitor.discard_twice(store, &ticket_id).await;
            }
        }
    }
    outcome
}

struct Receiver<'a> {
    store: &'a Store,
    limits: &'a LimitsConfig,
    ticket_id: &'a str,
    ids: FileIdBlock,
    /// When the journal entry was last refreshed.
    touched: Instant,
    files: Vec<StoredFile>,
    /// Names so far by [`name_key`].
    names: HashMap<String, String>,
    /// Bytes of file content received so far, all files together.
    total: u64,
    /// Bytes of non-file fields received so far.
    field_bytes: usize,
}

impl Receiver<'_> {
    /// Refreshes the journal entry once per `limits.upload_idle_secs` (the
    /// pace `janitor` counts on); fails the upload if a sweep has claimed it
    /// as abandoned.
    async fn keep_alive(&mut self) -> Result<(), ApiError> {
        if self.touched.elapsed() < self.limits.upload_idle() {
            return Ok(());
        }
        if !self.store.uploads.touch(self.ticket_id, &self.ids).await? {
            tracing::warn!(
                ticket_id = self.ticket_id,
                "upload was taken for abandoned; refusing to record it"
            );
            return Err(ApiError::new(
                warp::http::StatusCode::SERVICE_UNAVAILABLE,
                "Upload took too long; please try again",
            ));
        }
        self.touched = Instant::now();
        Ok(())
    }

    async fn receive(&mut self, mut form: FormData) -> Result<TicketOptions, ApiError> {
        let mut options = TicketOptions::default();
        while let Some(part) = self.idle(form.try_next()).await? {
            match part.name() {
                FILES_FIELD => self.receive_file(part).await?,
                DATA_FIELD => {
                    let raw = self.read_field(part).await?;
                    options = serde_json::from_slice(&raw)
                        .map_err(|e| ApiError::bad_request(format!("Invalid `data` field: {e}")))?;
                }
                // Unknown fields are ignored, as the original server did.
                _ => drop(self.read_field(part).await?),
            }
        }
        Ok(options)
    }

    async fn receive_file(&mut self, part: Part) -> Result<(), ApiError> {
        // The multipart parser reports a name that is not UTF-8 as none.
        let Some(raw) = part.filename().map(str::to_owned) else {
            return Err(ApiError::bad_request(
                "Illegal file name: a `files` part needs a UTF-8 file name",
            ));
        };
        let path = normalize_upload_name(&raw).ok_or_else(|| {
            ApiError::bad_request(format!("Illegal file name: {}", quoted_name(&raw)))
        })?;
        // Names that are one file on Windows and macOS (case, Unicode
        // normalization) are duplicates too.
        if let Some(first) = self.names.get(&name_key(&path)) {
            let detail = if *first == path {
                format!("Duplicate file name: {}", quoted_name(&path))
            } else {
                format!(
                    "Duplicate file name: {} (the same file as {} on Windows and macOS)",
                    quoted_name(&path),
                    quoted_name(first)
                )
            };
            return Err(ApiError::bad_request(detail));
        }
        if self.files.len() >= self.limits.max_files {
            return Err(ApiError::too_large(format!(
                "Too many files (at most {})",
                self.limits.max_files
            )));
        }
        let content_type = content_type_for(&path);
        let mut upload =
            self.store
                .files
                .begin(self.ids.next_id(), self.ticket_id, &path, &content_type);
        if let Err(e) = self.copy(part.stream(), &mut upload).await {
            if let Err(error) = upload.abort().await {
                tracing::warn!(%error, "could not abort a GridFS upload");
            }
            return Err(e);
        }
        self.files.push(upload.finish().await?);
        self.names.insert(name_key(&path), path);
        Ok(())
    }

    async fn copy<B: Buf>(
        &mut self,
        data: impl Stream<Item = Result<B, warp::Error>>,
        upload: &mut FileUpload,
    ) -> Result<(), ApiError> {
        let mut data = std::pin::pin!(data);
        while let Some(mut buf) = self.idle(data.try_next()).await? {
            self.keep_alive().await?;
            while buf.has_remaining() {
                let chunk = buf.chunk();
                let len = chunk.len() as u64;
                if upload.size() + len > self.limits.max_file_size {
                    return Err(ApiError::too_large("File is too large"));
                }
                if self.total + len > self.limits.max_ticket_size {
                    return Err(ApiError::too_large("Ticket is too large"));
                }
                upload.write(chunk).await?;
                self.total += len;
                buf.advance(len as usize);
            }
        }
        Ok(())
    }

    /// The next piece of the body, unless the client has gone quiet for
    /// `limits.upload_idle_secs`: no upload (and no journal entry) lives
    /// forever.
    async fn idle<T>(
        &self,
        next: impl Future<Output = Result<T, warp::Error>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.limits.upload_idle(), next).await {
            Ok(result) => result.map_err(malformed),
            Err(_) => Err(ApiError::new(
                warp::http::StatusCode::REQUEST_TIMEOUT,
                format!(
                    "Upload stalled: no data for {} s",
                    self.limits.upload_idle_secs
                ),
            )),
        }
    }

    /// Reads a small non-file field whole, refusing anything over the caps.
    async fn read_field(&mut self, part: Part) -> Result<Vec<u8>, ApiError> {
        let name = part.name().to_owned();
        let mut data = std::pin::pin!(part.stream());
        let mut out = Vec::new();
        while let Some(mut buf) = self.idle(data.try_next()).await? {
            self.field_bytes += buf.remaining();
            if out.len() + buf.remaining() > MAX_FIELD_BYTES || self.field_bytes > MAX_FIELDS_BYTES
            {
                return Err(ApiError::too_large(format!(
                    "Form field `{name}` is too large"
                )));
            }
            while buf.has_remaining() {
                let chunk = buf.chunk();
                out.extend_from_slice(chunk);
                let len = chunk.len();
                buf.advance(len);
            }
        }
        Ok(out)
    }
}

/// A body that ends early or breaks the multipart syntax.
fn malformed(error: warp::Error) -> ApiError {
    ApiError::bad_request(format!("Malformed multipart body: {error}"))
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::TicketOptions;

    fn parse(json: &str) -> Result<TicketOptions, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn options_accept_bool_and_string_flags() {
        assert!(parse(r#"{"is_public": true}"#).unwrap().is_public);
        assert!(parse(r#"{"is_public": "true"}"#).unwrap().is_public);
        assert!(
            !parse(r#"{"is_public": "false", "remark": "hi"}"#)
                .unwrap()
                .is_public
        );
        assert_eq!(parse(r#"{"remark": "hi"}"#).unwrap().remark, "hi");
        assert!(parse(r#"{"is_public": "yes"}"#).is_err());
        assert!(parse(r#"{"is_public": 1}"#).is_err());
    }
}

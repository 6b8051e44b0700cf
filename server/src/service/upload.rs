//! Upload: a stream of form parts → validated names → validators → an
//! [`UploadTx`] that stores the bytes and records the ticket (its module
//! says what is written when, and what a failure leaves to clean up).
//! Knows nothing of HTTP: the parts come from any source (`api::multipart`
//! parses the HTTP form), and failures are [`UploadError`]s, which the API
//! layer turns into responses. The author's ticket number comes from
//! numbers reserved ahead (see `store::users`), so a small upload is a
//! single round trip.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt, stream::BoxStream};
use serde::{Deserialize, Deserializer};

use super::{
    sources::{ReadClock, staged},
    validation::{self, PolicyError},
};
use crate::{
    plugins::FileSource,
    service::Context,
    store::{
        MAX_VERSIONS, Pace, Share, StoreError, StoredFile, TicketRecord, UploadTx, UserProfile,
        VersionCommit,
    },
    telemetry::{UploadOutcome, metrics},
    ticket::{content_type_for, name_key, new_ticket_id, normalize_upload_name},
};

/// Form field carrying the files (repeated).
pub const FILES_FIELD: &str = "files";
/// Form field carrying the ticket options as a JSON string.
pub const DATA_FIELD: &str = "data";
/// Cap for one non-file field: the options JSON is tiny.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// Cap for all non-file fields together, so a body of endless small unknown
/// fields cannot keep the server reading.
pub const MAX_FIELDS_BYTES: usize = 1024 * 1024;

/// What went wrong with the body itself, as its parser said.
#[derive(Debug, Clone)]
pub enum BodyError {
    /// It ended early or broke its syntax.
    Malformed(String),
    /// It is longer than any upload the limits allow (file bytes and the
    /// form around them), whatever it was made of: part headers count too.
    TooLarge,
}

/// One part of an upload form.
pub struct Part {
    pub name: String,
    /// `None` for a field.
    pub filename: Option<FileName>,
    pub data: BoxStream<'static, Result<Bytes, BodyError>>,
}

/// A part's file name as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileName {
    Utf8(String),
    /// Bytes that are not UTF-8, shown with U+FFFD for each bad sequence:
    /// refused, but named so that the student can find the file.
    NotUtf8(String),
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("no file")]
    MissingFile,
    /// A `files` part without a file name.
    #[error("a file without a name")]
    UnnamedFile,
    /// The name, lossily.
    #[error("file name {0:?} is not UTF-8")]
    NotUtf8Name(String),
    /// The name as sent.
    #[error("illegal file name {0:?}")]
    IllegalName(String),
    /// `first` is the earlier name it collides with (the same, or the same
    /// file on Windows and macOS).
    #[error("duplicate file name {path:?}")]
    DuplicateName { path: String, first: String },
    /// `file` is also the name of a folder `inside` is in.
    #[error("file {file:?} is also a folder of {inside:?}")]
    FileAndFolder { file: String, inside: String },
    #[error("more than {0} files")]
    TooManyFiles(usize),
    /// The file (as named in the upload) and the limit it crossed.
    #[error("{path:?} over the size limit of {limit} bytes")]
    FileTooLarge { path: String, limit: u64 },
    #[error("a ticket over the size limit")]
    TicketTooLarge,
    #[error("form field `{0}` over the size limit")]
    FieldTooLarge(String),
    /// No data for this many seconds.
    #[error("no data for {0} s")]
    Stalled(u64),
    /// Its share was given to a waiting upload: bytes received in seconds.
    #[error("too slow: {0} bytes in {1} s")]
    TooSlow(u64, u64),
    /// A sweep took the upload for abandoned while it was validated.
    #[error("taken for abandoned")]
    Abandoned,
    /// A new version for a ticket that was deleted meanwhile.
    #[error("the ticket is gone")]
    TicketGone,
    /// A new version for a ticket with the most versions it may keep.
    #[error("the ticket has {0} versions")]
    TooManyVersions(usize),
    /// The ticket's record has no room for another version.
    #[error("the ticket's record is full")]
    RecordFull,
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UploadError {
    /// The database did not answer (as opposed to refusing or failing).
    fn database_away(&self) -> bool {
        match self {
            UploadError::Store(e) => e.is_unavailable(),
            UploadError::Policy(PolicyError::Unreadable { error, .. }) => error.is_unavailable(),
            _ => false,
        }
    }

    /// The client's doing (4xx) rather than the server's (5xx).
    pub fn is_clients_fault(&self) -> bool {
        match self {
            UploadError::Abandoned | UploadError::Store(_) => false,
            // Another request's doing, or the limit: the client's to see.
            UploadError::TicketGone | UploadError::TooManyVersions(_) | UploadError::RecordFull => {
                true
            }
            UploadError::Policy(policy) => !policy.is_server_side(),
            _ => true,
        }
    }
}

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

/// A recorded ticket and its author as stored.
pub struct Created {
    pub ticket: TicketRecord,
    pub author: UserProfile,
}

/// What an upload becomes.
pub enum Destination {
    NewTicket,
    /// The next version of this ticket (as read when the upload began; by
    /// its author).
    NewVersion(TicketRecord),
}

/// Receives a whole upload and records the ticket, or the ticket's new
/// version. Runs to completion even if the client goes away (callers
/// spawn it), so cleanup always happens.
pub async fn ingest(
    ctx: Arc<Context>,
    author: UserProfile,
    share: Share,
    destination: Destination,
    parts: impl Stream<Item = Result<Part, BodyError>> + Send,
) -> Result<Created, UploadError> {
    let store = &ctx.store;
    // A new version's key is its own (see `store::blobs`).
    let key = new_ticket_id();
    if let Destination::NewVersion(ticket) = &destination
        && ticket.versions.len() >= MAX_VERSIONS
    {
        return Err(UploadError::TooManyVersions(MAX_VERSIONS));
    }
    // The author's record and ticket number, while the body arrives (in
    // the request's context, so its log line counts the command).
    let numbering = matches!(destination, Destination::NewTicket).then(|| {
        let (tickets, profile) = (store.tickets.clone(), author.clone());
        crate::telemetry::spawn_in_request(async move { tickets.next_number(&profile).await })
    });
    let pace = share.pace();
    let tx = UploadTx::begin(
        store,
        ctx.janitor.clone(),
        &key,
        ctx.config.limits.upload_idle(),
        share,
    );
    let mut upload = Upload {
        ctx: &ctx,
        pace,
        tx,
        names: Names::default(),
        total: 0,
        field_bytes: 0,
    };
    let outcome = async {
        let options = upload.receive(parts).await?;
        upload.pace.done();
        if upload.tx.files().is_empty() {
            return Err(UploadError::MissingFile);
        }
        upload.validate().await?;
        // Validation can take long (plugin time limits, many files): make
        // sure no sweep took this upload for abandoned meanwhile, or the
        // ticket would point at deleted bytes.
        upload.keep_alive().await?;
        upload.tx.share_stored().await?;
        let files = upload.tx.files().iter().map(|s| s.file.clone()).collect();
        if let Destination::NewVersion(read) = &destination {
            let commit =
                upload
                    .tx
                    .commit_version(&read.id, &author.id, options.remark, super::now_millis());
            return match commit.await? {
                VersionCommit::Added(ticket) => Ok(Created {
                    ticket: *ticket,
                    author,
                }),
                VersionCommit::Gone => Err(UploadError::TicketGone),
                VersionCommit::Full => Err(UploadError::TooManyVersions(MAX_VERSIONS)),
                VersionCommit::TooBig => Err(UploadError::RecordFull),
            };
        }
        let numbering =
            numbering.ok_or_else(|| StoreError::Corrupt("a new ticket without a number".into()))?;
        let (author, seq) = numbering
            .await
            .map_err(|e| StoreError::Corrupt(format!("the author lookup failed: {e}")))??;
        let ticket = TicketRecord {
            id: key.clone(),
            author_id: author.id.clone(),
            files,
            is_public: options.is_public,
            remark: options.remark,
            create_time: super::now_millis(),
            seq: Some(seq),
            versions: Vec::new(),
            shown_version: None,
        };
        upload.tx.commit(&ticket).await?;
        Ok(Created { ticket, author })
    }
    .await;
    match &outcome {
        Ok(created) => metrics().upload(
            UploadOutcome::Stored,
            created.ticket.files.len(),
            upload.total,
        ),
        Err(error) => {
            let outcome = if error.is_clients_fault() {
                UploadOutcome::Rejected
            } else {
                UploadOutcome::Failed
            };
            metrics().upload(outcome, 0, 0);
            // Said here, not only in the answer: a client that hung up
            // gets none, and the failure would go unexplained.
            tracing::info!(key = %key, %error, "upload not stored");
            // With the database away, a cleanup awaited here would wait out
            // the deadline a second time before the client hears (a 503
            // after twice `mongodb.timeout_ms`): it runs on its own instead.
            upload.tx.abort(!error.database_away()).await;
        }
    }
    outcome
}

struct Upload<'a> {
    ctx: &'a Context,
    /// How fast the body arrives (see `store::upload_memory`).
    pace: Arc<Pace>,
    /// The bytes received, on their way to the database.
    tx: UploadTx,
    /// The names so far (see [`Names`]).
    names: Names,
    /// Bytes of file content received so far, all files together.
    total: u64,
    /// Bytes of non-file fields received so far.
    field_bytes: usize,
}

impl Upload<'_> {
    /// See [`UploadTx::keep_alive`].
    async fn keep_alive(&mut self) -> Result<(), UploadError> {
        if self.tx.keep_alive().await? {
            Ok(())
        } else {
            Err(UploadError::Abandoned)
        }
    }

    async fn receive(
        &mut self,
        parts: impl Stream<Item = Result<Part, BodyError>> + Send,
    ) -> Result<TicketOptions, UploadError> {
        let mut parts = std::pin::pin!(parts);
        let mut options = TicketOptions::default();
        while let Some(part) = self.idle(parts.try_next()).await? {
            match part.name.as_str() {
                FILES_FIELD => self.receive_file(part).await?,
                DATA_FIELD => {
                    let raw = self.read_field(part).await?;
                    options = serde_json::from_slice(&raw)
                        .map_err(|e| UploadError::InvalidOptions(e.to_string()))?;
                }
                // Unknown fields are ignored, as the original server did.
                _ => drop(self.read_field(part).await?),
            }
        }
        Ok(options)
    }

    async fn receive_file(&mut self, part: Part) -> Result<(), UploadError> {
        let limits = &self.ctx.config.limits;
        let raw = match part.filename {
            Some(FileName::Utf8(name)) => name,
            Some(FileName::NotUtf8(lossy)) => return Err(UploadError::NotUtf8Name(lossy)),
            None => return Err(UploadError::UnnamedFile),
        };
        let path = self.names.admit(raw)?;
        if self.tx.files().len() >= limits.max_files {
            return Err(UploadError::TooManyFiles(limits.max_files));
        }
        let content_type = content_type_for(&path);
        self.tx.begin_file(&path, &content_type);
        let mut data = part.data;
        while let Some(bytes) = self.idle(data.try_next()).await? {
            self.pace.received(bytes.len());
            let len = bytes.len() as u64;
            if self.tx.current_size() + len > limits.max_file_size {
                return Err(UploadError::FileTooLarge {
                    path,
                    limit: limits.max_file_size,
                });
            }
            if self.total + len > limits.max_ticket_size {
                return Err(UploadError::TicketTooLarge);
            }
            self.keep_alive().await?;
            self.tx.write(&bytes).await?;
            self.total += len;
        }
        self.tx.finish_file();
        Ok(())
    }

    /// Runs the validators on each file as sent: what went out in an
    /// earlier batch from GridFS, the rest from memory. A validator that
    /// could not read its file may have lost it to a sweep; then that is
    /// the cause reported.
    async fn validate(&mut self) -> Result<(), UploadError> {
        let runtime = tokio::runtime::Handle::current();
        let clock = Arc::new(ReadClock::default());
        let files: Vec<(StoredFile, Arc<dyn FileSource>)> = self
            .tx
            .files()
            .iter()
            .map(|s| {
                let source = staged(&self.ctx.store.files, s, runtime.clone(), clock.clone());
                (s.file.clone(), source)
            })
            .collect();
        if let Err(error) = validation::check(self.ctx, &files, &clock).await {
            if error.is_server_side() {
                self.keep_alive().await?;
            }
            return Err(error.into());
        }
        Ok(())
    }

    /// The next piece of the body, unless the client has gone quiet for
    /// `limits.upload_idle_secs` (no upload, and no journal entry, lives
    /// forever), or sends so slowly that its memory share was given to a
    /// waiting upload.
    async fn idle<T>(
        &self,
        next: impl Future<Output = Result<T, BodyError>>,
    ) -> Result<T, UploadError> {
        let limits = &self.ctx.config.limits;
        // Only this wait is the client's time (see `store::Pace`).
        self.pace.waiting();
        let next = tokio::select! {
            next = tokio::time::timeout(limits.upload_idle(), next) => match next {
                Ok(result) => result.map_err(|e| match e {
                    BodyError::Malformed(why) => UploadError::Malformed(why),
                    BodyError::TooLarge => UploadError::TicketTooLarge,
                }),
                Err(_) => Err(UploadError::Stalled(limits.upload_idle_secs)),
            },
            () = self.pace.cut() => {
                let (bytes, took) = self.pace.so_far();
                Err(UploadError::TooSlow(bytes, took.as_secs()))
            }
        };
        self.pace.received(0);
        next
    }

    /// Reads a small non-file field whole, refusing anything over the caps.
    async fn read_field(&mut self, part: Part) -> Result<Vec<u8>, UploadError> {
        let mut data = part.data.fuse();
        let mut out = Vec::new();
        while let Some(bytes) = self.idle(data.try_next()).await? {
            self.pace.received(bytes.len());
            self.field_bytes += bytes.len();
            if out.len() + bytes.len() > MAX_FIELD_BYTES || self.field_bytes > MAX_FIELDS_BYTES {
                return Err(UploadError::FieldTooLarge(part.name));
            }
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }
}

/// The names of an upload so far: each new one is checked against the
/// upload's rules (a legal path, not the same file on Windows and macOS as
/// another, not a file and a folder at once) before it is taken.
#[derive(Default)]
struct Names {
    /// Names so far by [`name_key`].
    files: HashMap<String, String>,
    /// Folders of those names by [`name_key`], with the file that made
    /// each: a file may not have the name of a folder, nor the reverse
    /// (`src` and `src/x.c` cannot both be unzipped).
    folders: HashMap<String, String>,
}

impl Names {
    /// The normalized path of `raw`, now taken; or why it may not be.
    fn admit(&mut self, raw: String) -> Result<String, UploadError> {
        let path = normalize_upload_name(&raw).ok_or(UploadError::IllegalName(raw))?;
        // Names that are one file on Windows and macOS (case, Unicode
        // normalization) are duplicates too.
        let key = name_key(&path);
        if let Some(first) = self.files.get(&key) {
            return Err(UploadError::DuplicateName {
                path,
                first: first.clone(),
            });
        }
        if let Some(other) = self.folders.get(&key) {
            return Err(UploadError::FileAndFolder {
                file: path,
                inside: other.clone(),
            });
        }
        let folders: Vec<&str> = path.match_indices('/').map(|(at, _)| &path[..at]).collect();
        if let Some(file) = folders.iter().find_map(|f| self.files.get(&name_key(f))) {
            return Err(UploadError::FileAndFolder {
                file: file.clone(),
                inside: path,
            });
        }
        for folder in folders {
            self.folders
                .entry(name_key(folder))
                .or_insert_with(|| path.clone());
        }
        self.files.insert(key, path.clone());
        Ok(path)
    }
}

/// What the server would say of an upload of these files (names and
/// sizes, no bytes): the upload's own rules, file by file, and the
/// validators' that decide by name (see `validation::preflight`).
pub struct Preflight {
    /// A file (or, for a rule about the whole upload, none) and why it
    /// would be refused.
    pub refused: Vec<(Option<String>, UploadError)>,
    pub policy: Vec<validation::PolicyRejection>,
}

pub async fn preflight(ctx: &Context, files: Vec<(String, u64)>) -> Result<Preflight, PolicyError> {
    let limits = &ctx.config.limits;
    let count = files.len();
    let mut names = Names::default();
    let mut refused = Vec::new();
    let mut admitted = Vec::new();
    let mut total = 0u64;
    for (raw, size) in files {
        let path = match names.admit(raw.clone()) {
            Ok(path) => path,
            Err(error) => {
                refused.push((Some(raw), error));
                continue;
            }
        };
        if size > limits.max_file_size {
            let limit = limits.max_file_size;
            refused.push((
                Some(path.clone()),
                UploadError::FileTooLarge { path, limit },
            ));
            continue;
        }
        total = total.saturating_add(size);
        admitted.push(crate::plugins::FileInfo {
            content_type: content_type_for(&path),
            path,
            size,
        });
    }
    if count > limits.max_files {
        refused.push((None, UploadError::TooManyFiles(limits.max_files)));
    }
    if total > limits.max_ticket_size {
        refused.push((None, UploadError::TicketTooLarge));
    }
    let policy = validation::preflight(ctx, &admitted).await?;
    Ok(Preflight { refused, policy })
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

//! Persistence: records in MongoDB collections, file bytes in GridFS.
//!
//! Each submodule owns one collection (or the GridFS bucket) and exposes
//! typed operations; nothing above this layer builds queries.

mod batch;
mod blobs;
mod comments;
pub(crate) mod crash;
mod deletion;
mod devices;
mod files;
mod gate;
mod health;
mod janitor;
mod notifications;
mod numbering;
mod previews;
mod settings;
mod staging;
mod tickets;
mod upload;
mod upload_memory;
mod uploads;
mod users;

use std::{sync::Arc, time::Duration};

use mongodb::{
    Client, Database,
    error::ErrorKind,
    event::{EventHandler, command::CommandEvent},
    options::ClientOptions,
};
use tokio::sync::Notify;

pub use batch::WriteBatch;
pub use comments::{CommentRecord, CommentStore};
pub use devices::{DeviceCodeRecord, DeviceSessionRecord, DeviceStore, Poll};
pub use files::{ByteRange, FileStore, StoredFile};
pub use gate::Gate;
pub use health::{DbHealth, DbStatus, Monitor};
pub use janitor::Janitor;
pub use notifications::{MAX_LISTED, NotificationRecord, NotificationStore};
pub use numbering::{Numbering, SeqRange};
pub use previews::{CachedAnswer, CachedPreview, PreviewStore};
pub use settings::SettingsStore;
pub use staging::{ChunkBatch, Staged, Staging, staging_bytes_at_most};
pub use tickets::{MAX_VERSIONS, TicketPage, TicketRecord, TicketStore, Visibility};
pub use upload::{UploadTx, VersionCommit};
pub use upload_memory::{
    Busy, MIN_RATE, PARSER_HOLDS_AT_MOST, Pace, RETRY_AFTER_SECS, Share, UploadMemory,
};
pub use uploads::{FileIdBlock, UploadJournal, deletion_key};
pub use users::{DiscordTokens, UserProfile, UserStore};

use crate::config::MongoConfig;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("no answer from the database within {0:?}")]
    Timeout(Duration),
}

impl StoreError {
    /// True when the database could not serve the request (unreachable,
    /// stepping down, or failing on its side: a full disk, a panicked
    /// storage engine, a quota) as opposed to a bad query or bad data:
    /// callers answer 503 and the client may retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Mongo(e) => match &*e.kind {
                ErrorKind::ServerSelection { .. }
                | ErrorKind::Io(_)
                | ErrorKind::ConnectionPoolCleared { .. } => true,
                _ => server_errors(e).iter().any(|(code, message)| {
                    SHUTDOWN_OR_STEPDOWN.contains(code)
                        || DATABASE_FAILING.contains(code)
                        || is_about_space(*code, message)
                }),
            },
            StoreError::Timeout(_) => true,
            StoreError::Corrupt(_) => false,
        }
    }

    /// The database refuses because its storage is full (or over quota):
    /// 507 rather than 503, and `/health` says why.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            StoreError::Mongo(e) => server_errors(e)
                .iter()
                .any(|(code, message)| is_about_space(*code, message)),
            _ => false,
        }
    }

    /// The database answered, but with a failure of its own (not one of
    /// the request): what the health check looks into.
    pub fn is_database_failure(&self) -> bool {
        match self {
            StoreError::Mongo(e) => server_errors(e).iter().any(|(code, message)| {
                DATABASE_FAILING.contains(code) || is_about_space(*code, message)
            }),
            _ => false,
        }
    }
}

/// Server error codes: InterruptedAtShutdown, InterruptedDueToReplStateChange,
/// NotWritablePrimary, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary,
/// PrimarySteppedDown, ShutdownInProgress.
const SHUTDOWN_OR_STEPDOWN: &[i32] = &[11600, 11602, 10107, 13435, 13436, 189, 91];

/// Server error codes of a database failing on its side: InternalError
/// (SecantusDB answers every command with it once WiredTiger has panicked,
/// e.g. on a full disk), HostUnreachable, HostNotFound,
/// WriteConcernFailed, NetworkTimeout, OutOfDiskSpace.
const DATABASE_FAILING: &[i32] = &[1, 6, 7, 64, 89, 14031];

/// OutOfDiskSpace, or a failure of the database's own (InternalError,
/// Atlas's AtlasError) whose message says so (WiredTiger's ENOSPC, an Atlas
/// quota). Only those codes' messages are read: a duplicate key's message
/// repeats the key's value, which may be any text.
fn is_about_space(code: i32, message: &str) -> bool {
    const OUT_OF_DISK_SPACE: i32 = 14031;
    const INTERNAL_ERROR: i32 = 1;
    const ATLAS_ERROR: i32 = 8000;
    let message = message.to_ascii_lowercase();
    code == OUT_OF_DISK_SPACE
        || ([INTERNAL_ERROR, ATLAS_ERROR].contains(&code)
            && [
                "no space left",
                "disk full",
                "out of disk",
                "space quota",
                "quota exceeded",
            ]
            .iter()
            .any(|m| message.contains(m)))
}

/// Every (code, message) the server put in this error: the command's, each
/// write error's and write concern error's, and those of its sources.
fn server_errors(error: &mongodb::error::Error) -> Vec<(i32, String)> {
    use mongodb::error::WriteFailure;
    let mut out = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        match &*e.kind {
            ErrorKind::Command(c) => out.push((c.code, c.message.clone())),
            ErrorKind::Write(WriteFailure::WriteError(w)) => out.push((w.code, w.message.clone())),
            ErrorKind::Write(WriteFailure::WriteConcernError(w)) => {
                out.push((w.code, w.message.clone()))
            }
            ErrorKind::InsertMany(m) => {
                out.extend(
                    m.write_errors
                        .iter()
                        .flatten()
                        .map(|w| (w.code, w.message.clone())),
                );
                out.extend(
                    m.write_concern_error
                        .iter()
                        .map(|w| (w.code, w.message.clone())),
                );
            }
            ErrorKind::BulkWrite(b) => {
                out.extend(b.write_errors.values().map(|w| (w.code, w.message.clone())));
                out.extend(
                    b.write_concern_errors
                        .iter()
                        .map(|w| (w.code, w.message.clone())),
                );
            }
            _ => {}
        }
        next = std::error::Error::source(e).and_then(|s| s.downcast_ref());
    }
    out
}

/// A write refused because a unique index already holds its key.
fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::WriteFailure;
    matches!(&*error.kind, ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == 11000)
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Idle pooled connections are closed after this: below the idle limits of
/// databases (SecantusDB closes connections idle for 300 s), firewalls and
/// load balancers, so a request never picks a connection that was cut
/// under it. A connection cut anyway is one the driver retries.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Handles to every collection. Cheap to clone (the driver shares one pool).
#[derive(Clone)]
pub struct Store {
    pub users: UserStore,
    pub tickets: TicketStore,
    pub files: FileStore,
    pub settings: SettingsStore,
    pub previews: PreviewStore,
    pub uploads: UploadJournal,
    pub comments: CommentStore,
    pub notifications: NotificationStore,
    pub devices: DeviceStore,
    pub health: Arc<DbHealth>,
    gate: Gate,
    bulk: batch::BulkSupport,
    db: Database,
    /// The health check's own client (see `health`).
    monitor_db: Database,
}

impl Store {
    /// Builds the clients without contacting the server: the driver
    /// connects lazily, so the process starts even while the database is
    /// down.
    pub async fn connect(config: &MongoConfig) -> anyhow::Result<Self> {
        let mut options = ClientOptions::parse(&config.uri)
            .await
            .map_err(|e| anyhow::anyhow!("invalid configuration at `mongodb.uri`: {e}"))?;
        // A request's whole operation is bounded by the gate; the selection
        // timeout only has to be no longer. The connect timeout stays the
        // driver's, so a slow handshake under load is not an outage.
        options.server_selection_timeout = Some(config.timeout());
        options.max_idle_time = Some(POOL_IDLE);
        options.max_pool_size = Some(config.max_pool_size.max(1));
        options.app_name = Some("pd2-ticket".into());
        // Retryable writes only if the URI asks for them (`retryWrites=true`).
        // Every write here is already safe to lose in flight: an upload is
        // journaled and cleaned up, and a failed write fails the request
        // with 503 for the client to repeat. Meanwhile SecantusDB, our
        // embedded default, pays for each retryable write with a scan of
        // its retry records of the last 30 minutes (up to 10,000, sorted
        // once full): ~25 ms of database CPU per write after a few thousand
        // writes, the cost that made uploads slower as tickets accumulated.
        if options.retry_writes.is_none() {
            options.retry_writes = Some(false);
        }
        let mut monitor_options = options.clone();
        monitor_options.max_pool_size = Some(1);
        monitor_options.app_name = Some("pd2-ticket-health".into());
        // Counted for `pd2_db_commands_total` and each request's log line
        // (the health check's own commands are not).
        options.command_event_handler = Some(EventHandler::callback(|event: CommandEvent| {
            if let CommandEvent::Started(started) = event {
                crate::telemetry::db_command(&started.command_name);
            }
        }));
        let client = Client::with_options(options)?;
        let monitor = Client::with_options(monitor_options)?;
        let db = client.database(&config.database);
        let gate = Gate::new(
            config.max_pool_size.max(1) as usize,
            config.timeout(),
            Arc::new(Notify::new()),
        );
        let numbering = Numbering::new(UserStore::new(&db, gate.clone()));
        Ok(Self::build(
            db,
            gate,
            numbering,
            Arc::new(DbHealth::default()),
            monitor.database(&config.database),
        ))
    }

    fn build(
        db: Database,
        gate: Gate,
        numbering: Numbering,
        health: Arc<DbHealth>,
        monitor_db: Database,
    ) -> Self {
        Self {
            users: UserStore::new(&db, gate.clone()),
            tickets: TicketStore::new(&db, gate.clone(), numbering),
            files: FileStore::new(&db, gate.clone()),
            settings: SettingsStore::new(&db, gate.clone()),
            previews: PreviewStore::new(&db, gate.clone()),
            uploads: UploadJournal::new(&db, gate.clone()),
            comments: CommentStore::new(&db, gate.clone()),
            notifications: NotificationStore::new(&db, gate.clone()),
            devices: DeviceStore::new(&db, gate.clone()),
            health,
            gate,
            bulk: batch::BulkSupport::default(),
            db,
            monitor_db,
        }
    }

    /// The same store for background work (the janitor): each operation
    /// waits up to the abandon limit instead of the request deadline. Run
    /// one at a time, such operations never pile up: with the request
    /// deadline, a busy database would see each timed-out cleanup keep
    /// running while the next retry already starts, feeding the load that
    /// made it time out. It shares the request permits.
    pub fn background(&self) -> Store {
        let patient = self.gate.patient();
        Self {
            bulk: self.bulk.clone(),
            ..Self::build(
                self.db.clone(),
                patient.clone(),
                self.tickets.numbering().with_gate(patient),
                self.health.clone(),
                self.monitor_db.clone(),
            )
        }
    }

    /// Records a Discord login: the user's profile and tokens.
    pub async fn record_login(&self, profile: &UserProfile, tokens: &DiscordTokens) -> Result<()> {
        self.tickets.saw_login(profile);
        self.users.upsert_login(profile, tokens).await
    }

    /// Closes both clients before the runtime goes: a command-line run
    /// (`pd2-ticket token`) that let them drop as it exits left the
    /// driver's session cleanup running on a runtime shutting down, which
    /// panicked in the driver.
    pub async fn shutdown(&self) {
        self.db.client().clone().shutdown().immediate(true).await;
        self.monitor_db
            .client()
            .clone()
            .shutdown()
            .immediate(true)
            .await;
    }

    /// An empty batch of writes (see `batch`).
    pub fn batch(&self) -> WriteBatch {
        WriteBatch::new(self.db.clone(), self.gate.clone(), self.bulk.clone())
    }

    /// How long a request waits for one database operation.
    pub fn request_deadline(&self) -> Duration {
        self.gate.deadline()
    }

    /// After this, a write whose caller timed out can no longer land.
    pub fn abandon_limit(&self) -> Duration {
        self.gate.abandon_limit()
    }

    /// The health check of this store; spawned once by the server.
    pub fn monitor(&self) -> Monitor {
        Monitor {
            db: self.monitor_db.clone(),
            health: self.health.clone(),
            timeout: self.gate.deadline(),
            abandon: self.gate.abandon_limit(),
            suspect: self.gate.suspect(),
            progress: self.gate.progress(),
            refused: self.gate.refused(),
        }
    }

    /// Creates the indexes the queries rely on. Idempotent.
    pub async fn ensure_indexes(&self) -> Result<()> {
        let (tickets, files, uploads) = (
            self.tickets.clone(),
            self.files.clone(),
            self.uploads.clone(),
        );
        let (comments, notifications, devices) = (
            self.comments.clone(),
            self.notifications.clone(),
            self.devices.clone(),
        );
        self.gate
            .run_within(self.gate.abandon_limit(), async move {
                tickets.ensure_indexes().await?;
                files.ensure_indexes().await?;
                comments.ensure_indexes().await?;
                notifications.ensure_indexes().await?;
                devices.ensure_indexes().await?;
                uploads.ensure_indexes().await
            })
            .await
    }
}

/// The documents of `collection` matching `filter`, with only the fields
/// of `projection`.
async fn find_projected(
    gate: &Gate,
    collection: mongodb::Collection<mongodb::bson::Document>,
    filter: mongodb::bson::Document,
    projection: mongodb::bson::Document,
) -> Result<Vec<mongodb::bson::Document>> {
    gate.run(async move {
        use futures_util::TryStreamExt;
        Ok(collection
            .find(filter)
            .projection(projection)
            .await?
            .try_collect()
            .await?)
    })
    .await
}

/// Which of `ids` are the `_id` of a document in `collection`.
async fn existing_ids(
    gate: &Gate,
    collection: mongodb::Collection<mongodb::bson::Document>,
    ids: Vec<String>,
) -> Result<std::collections::HashSet<String>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let (filter, projection) = (
        mongodb::bson::doc! { "_id": { "$in": ids } },
        mongodb::bson::doc! { "_id": 1 },
    );
    let docs = find_projected(gate, collection, filter, projection).await?;
    Ok(docs
        .iter()
        .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
        .collect())
}

/// Drops an index by name if it is there.
async fn drop_index<T: Send + Sync>(collection: &mongodb::Collection<T>, name: &str) -> Result<()> {
    match collection.drop_index(name).await {
        // IndexNotFound, NamespaceNotFound.
        Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if matches!(c.code, 26 | 27)) => Ok(()),
        other => Ok(other?),
    }
}

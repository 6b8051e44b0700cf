//! Persistence: records in MongoDB collections, file bytes in GridFS.
//!
//! Each submodule owns one collection (or the GridFS bucket) and exposes
//! typed operations; nothing above this layer builds queries.

mod files;
mod health;
mod previews;
mod settings;
mod tickets;
mod uploads;
mod users;

use std::{sync::Arc, time::Duration};

use mongodb::{
    Client, Database,
    bson::doc,
    error::ErrorKind,
    event::{EventHandler, sdam::SdamEvent},
    options::ClientOptions,
};

pub use files::{ByteRange, FileStore, FileUpload, StoredFile};
pub use health::{DbHealth, DbStatus};
pub use previews::{CachedPreview, PreviewStore};
pub use settings::SettingsStore;
pub use tickets::{TicketPage, TicketRecord, TicketStore};
pub use uploads::{FileIdBlock, UploadJournal};
pub use users::{DiscordTokens, UserProfile, UserStore};

use crate::config::MongoConfig;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when the database could not be reached (as opposed to a bad query
    /// or bad data): callers answer 503 and the client may retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Mongo(e) => match &*e.kind {
                ErrorKind::ServerSelection { .. }
                | ErrorKind::Io(_)
                | ErrorKind::ConnectionPoolCleared { .. } => true,
                // The server is stopping or stepping down: the same request
                // succeeds once it (or a new primary) is back.
                ErrorKind::Command(c) => SHUTDOWN_OR_STEPDOWN.contains(&c.code),
                _ => false,
            },
            StoreError::Corrupt(_) => false,
        }
    }
}

/// Server error codes: InterruptedAtShutdown, InterruptedDueToReplStateChange,
/// NotWritablePrimary, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary,
/// PrimarySteppedDown, ShutdownInProgress.
const SHUTDOWN_OR_STEPDOWN: &[i32] = &[11600, 11602, 10107, 13435, 13436, 189, 91];

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handles to every collection. Cheap to clone (the driver shares one pool).
#[derive(Clone)]
pub struct Store {
    pub users: UserStore,
    pub tickets: TicketStore,
    pub files: FileStore,
    pub settings: SettingsStore,
    pub previews: PreviewStore,
    pub uploads: UploadJournal,
    pub health: Arc<DbHealth>,
    db: Database,
}

impl Store {
    /// Builds the client without contacting the server: the driver connects
    /// lazily, so the process starts even while the database is down.
    pub async fn connect(config: &MongoConfig) -> anyhow::Result<Self> {
        let mut options = ClientOptions::parse(&config.uri)
            .await
            .map_err(|e| anyhow::anyhow!("invalid configuration at `mongodb.uri`: {e}"))?;
        // Bounds how long a request waits while no server is usable; the
        // connect timeout stays the driver's, so a slow handshake under load
        // is not mistaken for an outage.
        options.server_selection_timeout = Some(Duration::from_millis(config.timeout_ms));
        options.app_name = Some("pd2-ticket".into());
        let health = Arc::new(DbHealth::default());
        let events = health.clone();
        options.sdam_event_handler = Some(EventHandler::callback(move |event: SdamEvent| {
            if let SdamEvent::TopologyDescriptionChanged(change) = event {
                events.topology_changed(change.new_description.has_writable_server());
            }
        }));
        let client = Client::with_options(options)?;
        let db = client.database(&config.database);
        Ok(Self {
            users: UserStore::new(&db),
            tickets: TicketStore::new(&db),
            files: FileStore::new(&db),
            settings: SettingsStore::new(&db),
            previews: PreviewStore::new(&db),
            uploads: UploadJournal::new(&db),
            health,
            db,
        })
    }

    /// Creates the indexes the queries rely on. Idempotent.
    pub async fn ensure_indexes(&self) -> Result<()> {
        self.tickets.ensure_indexes().await?;
        self.files.ensure_indexes().await?;
        self.uploads.ensure_indexes().await?;
        Ok(())
    }

    /// One round trip to the server.
    pub async fn ping(&self) -> Result<()> {
        self.db.run_command(doc! { "ping": 1 }).await?;
        Ok(())
    }
}

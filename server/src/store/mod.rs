//! Persistence: records in MongoDB collections, file bytes in GridFS.
//!
//! Each submodule owns one collection (or the GridFS bucket) and exposes
//! typed operations; nothing above this layer builds queries.

mod files;
mod previews;
mod settings;
mod tickets;
mod users;

use std::time::Duration;

use mongodb::{Client, error::ErrorKind, options::ClientOptions};

pub use files::{ByteRange, FileStore, FileUpload, StoredFile};
pub use previews::{CachedPreview, PreviewStore};
pub use settings::SettingsStore;
pub use tickets::{TicketPage, TicketRecord, TicketStore};
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
            StoreError::Mongo(e) => matches!(
                *e.kind,
                ErrorKind::ServerSelection { .. }
                    | ErrorKind::Io(_)
                    | ErrorKind::ConnectionPoolCleared { .. }
            ),
            StoreError::Corrupt(_) => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handles to every collection. Cheap to clone (the driver shares one pool).
#[derive(Clone)]
pub struct Store {
    pub users: UserStore,
    pub tickets: TicketStore,
    pub files: FileStore,
    pub settings: SettingsStore,
    pub previews: PreviewStore,
}

impl Store {
    /// Builds the client without contacting the server: the driver connects
    /// lazily, so the process starts even while the database is down.
    pub async fn connect(config: &MongoConfig) -> anyhow::Result<Self> {
        let mut options = ClientOptions::parse(&config.uri)
            .await
            .map_err(|e| anyhow::anyhow!("invalid configuration at `mongodb.uri`: {e}"))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        options.app_name = Some("pd2-ticket".into());
        let client = Client::with_options(options)?;
        let db = client.database(&config.database);
        Ok(Self {
            users: UserStore::new(&db),
            tickets: TicketStore::new(&db),
            files: FileStore::new(&db),
            settings: SettingsStore::new(&db),
            previews: PreviewStore::new(&db),
        })
    }

    /// Creates the indexes the queries rely on. Idempotent.
    pub async fn ensure_indexes(&self) -> Result<()> {
        self.tickets.ensure_indexes().await?;
        self.files.ensure_indexes().await?;
        Ok(())
    }
}

//! The `settings` collection: server-wide values shared by every instance.

use mongodb::{
    Collection, Database,
    bson::{Document, doc},
    error::{ErrorKind, WriteFailure},
};

use super::{Gate, Result};

const JWT_SECRET: &str = "jwt_secret";

#[derive(Clone)]
pub struct SettingsStore {
    settings: Collection<Document>,
    gate: Gate,
}

impl SettingsStore {
    pub fn new(db: &Database, gate: Gate) -> Self {
        Self {
            settings: db.collection("settings"),
            gate,
        }
    }

    /// Returns the stored JWT secret, storing `candidate` first if there is
    /// none. Racing instances all end up with whichever insert won, because
    /// the `_id` is unique.
    pub async fn jwt_secret_or_insert(&self, candidate: &str) -> Result<String> {
        if let Some(value) = self.get_string(JWT_SECRET).await? {
            return Ok(value);
        }
        let (settings, secret) = (
            self.settings.clone(),
            doc! { "_id": JWT_SECRET, "value": candidate },
        );
        let inserted = self
            .gate
            .run(async move { Ok(settings.insert_one(secret).await) })
            .await?;
        match inserted {
            Ok(_) => Ok(candidate.to_owned()),
            Err(e) if is_duplicate_key(&e) => self.get_string(JWT_SECRET).await?.ok_or_else(|| {
                super::StoreError::Corrupt("jwt secret vanished after a conflict".into())
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_string(&self, key: &str) -> Result<Option<String>> {
        let (settings, filter) = (self.settings.clone(), doc! { "_id": key });
        let found = self
            .gate
            .run(async move { Ok(settings.find_one(filter).await?) })
            .await?;
        Ok(found.and_then(|d| d.get_str("value").ok().map(str::to_owned)))
    }
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    matches!(
        &*error.kind,
        ErrorKind::Write(WriteFailure::WriteError(e)) if e.code == 11000
    )
}

//! The `settings` collection: server-wide values shared by every instance.

use mongodb::{
    Collection, Database,
    bson::{Document, doc},
};

use super::{Gate, Result};

const JWT_SECRET: &str = "jwt_secret";
/// Unix seconds up to which files were checked for uploads that died half
/// written (see `janitor`).
const FILES_CHECKED: &str = "files_checked_until";

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
            Err(e) if super::is_duplicate_key(&e) => {
                self.get_string(JWT_SECRET).await?.ok_or_else(|| {
                    super::StoreError::Corrupt("jwt secret vanished after a conflict".into())
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Up to when files have been checked for dead uploads; starts (and
    /// returns) `now` on a database that never had the check.
    pub async fn files_checked_until(&self, now: i64) -> Result<i64> {
        let settings = self.settings.clone();
        let (filter, update) = (
            doc! { "_id": FILES_CHECKED },
            doc! { "$setOnInsert": { "value": now } },
        );
        let found = self
            .gate
            .run(async move {
                Ok(settings
                    .find_one_and_update(filter, update)
                    .upsert(true)
                    .return_document(mongodb::options::ReturnDocument::After)
                    .await?)
            })
            .await?;
        Ok(found.and_then(|d| d.get_i64("value").ok()).unwrap_or(now))
    }

    /// Records that files up to `until` were checked (never going back, as
    /// instances may check side by side).
    pub async fn set_files_checked_until(&self, until: i64) -> Result<()> {
        let settings = self.settings.clone();
        let (filter, update) = (
            doc! { "_id": FILES_CHECKED },
            doc! { "$max": { "value": until } },
        );
        self.gate
            .run(async move {
                settings.update_one(filter, update).upsert(true).await?;
                Ok(())
            })
            .await
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

//! The `users` collection: one document per Discord user, keyed by Discord id.

use mongodb::{
    Collection, Database,
    bson::{doc, to_bson},
};
use serde::{Deserialize, Serialize};

use super::Result;

/// What Discord tells us about a user (the fields the API shows). Stored
/// under `_id`; read from Discord's `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserProfile {
    #[serde(rename = "_id", alias = "id")]
    pub id: String,
    pub username: String,
    #[serde(default)]
    pub global_name: Option<String>,
    #[serde(default)]
    pub avatar: Option<String>,
}

/// Discord OAuth tokens. Stored for refreshes; never returned by any route.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscordTokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub scope: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    #[serde(flatten)]
    pub profile: UserProfile,
    #[serde(default)]
    pub discord: Option<DiscordTokens>,
}

#[derive(Clone)]
pub struct UserStore {
    users: Collection<UserRecord>,
}

impl UserStore {
    pub fn new(db: &Database) -> Self {
        Self {
            users: db.collection("users"),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<UserRecord>> {
        Ok(self.users.find_one(doc! { "_id": id }).await?)
    }

    pub async fn exists(&self, id: &str) -> Result<bool> {
        Ok(self
            .users
            .count_documents(doc! { "_id": id })
            .limit(1)
            .await?
            > 0)
    }

    /// Records a Discord login: profile and tokens replace what was stored.
    pub async fn upsert_login(&self, profile: &UserProfile, tokens: &DiscordTokens) -> Result<()> {
        self.users
            .update_one(
                doc! { "_id": &profile.id },
                doc! { "$set": {
                    "username": &profile.username,
                    "global_name": &profile.global_name,
                    "avatar": &profile.avatar,
                    "discord": to_bson(tokens).map_err(mongodb::error::Error::from)?,
                }},
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Creates the user if missing (operator `token` command); an existing
    /// user keeps their Discord data, a given name only fills a new record.
    pub async fn ensure(&self, id: &str, username: Option<&str>) -> Result<UserRecord> {
        let username = username.unwrap_or(id);
        self.users
            .update_one(
                doc! { "_id": id },
                doc! { "$setOnInsert": { "username": username, "global_name": null, "avatar": null } },
            )
            .upsert(true)
            .await?;
        self.get(id).await?.ok_or_else(|| {
            super::StoreError::Corrupt(format!("user {id} vanished right after upsert"))
        })
    }
}

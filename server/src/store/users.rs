//! The `users` collection: one document per Discord user, keyed by Discord id.

use mongodb::{
    Collection, Database,
    bson::{Document, doc, to_bson},
};
use serde::{Deserialize, Serialize};

use super::{Gate, Result};

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
    gate: Gate,
}

impl UserStore {
    pub fn new(db: &Database, gate: Gate) -> Self {
        Self {
            users: db.collection("users"),
            gate,
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<UserRecord>> {
        let (users, filter) = (self.users.clone(), doc! { "_id": id });
        self.gate
            .run(async move { Ok(users.find_one(filter).await?) })
            .await
    }

    pub async fn exists(&self, id: &str) -> Result<bool> {
        let (users, filter) = (self.users.clone(), doc! { "_id": id });
        self.gate
            .run(async move { Ok(users.count_documents(filter).limit(1).await? > 0) })
            .await
    }

    /// Records a Discord login: profile and tokens replace what was stored.
    pub async fn upsert_login(&self, profile: &UserProfile, tokens: &DiscordTokens) -> Result<()> {
        let filter = doc! { "_id": &profile.id };
        let update = doc! { "$set": {
            "username": &profile.username,
            "global_name": &profile.global_name,
            "avatar": &profile.avatar,
            "discord": to_bson(tokens).map_err(mongodb::error::Error::from)?,
        }};
        self.upsert(filter, update).await
    }

    /// Records a user known only from their token, unless a record
    /// appeared meanwhile (which then stays as it is).
    pub async fn record_profile(&self, profile: &UserProfile) -> Result<()> {
        let filter = doc! { "_id": &profile.id };
        let update = doc! { "$setOnInsert": {
            "username": &profile.username,
            "global_name": &profile.global_name,
            "avatar": &profile.avatar,
        } };
        self.upsert(filter, update).await
    }

    /// Creates the user if missing (operator `token` command); an existing
    /// user keeps their Discord data, a given name only fills a new record.
    pub async fn ensure(&self, id: &str, username: Option<&str>) -> Result<UserRecord> {
        let username = username.unwrap_or(id);
        let filter = doc! { "_id": id };
        let update =
            doc! { "$setOnInsert": { "username": username, "global_name": null, "avatar": null } };
        self.upsert(filter, update).await?;
        self.get(id).await?.ok_or_else(|| {
            super::StoreError::Corrupt(format!("user {id} vanished right after upsert"))
        })
    }

    async fn upsert(&self, filter: Document, update: Document) -> Result<()> {
        let users = self.users.clone();
        self.gate
            .run(async move {
                users.update_one(filter, update).upsert(true).await?;
                Ok(())
            })
            .await
    }
}

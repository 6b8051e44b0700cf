//! The `users` collection: one document per Discord user, keyed by Discord id.

use mongodb::{
    Collection, Database,
    bson::{Document, doc, to_bson},
    options::{ReturnDocument, UpdateModifications},
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

impl UserProfile {
    /// What is shown of a user without a record (a deleted one, or one
    /// known only by id): the id for a name.
    pub fn unknown(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            username: id.to_owned(),
            global_name: None,
            avatar: None,
        }
    }
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
    /// The number of the user's newest ticket (see `numbering`).
    #[serde(default)]
    pub ticket_seq: i64,
    /// The lowest number a ticket of theirs may have: tickets from before
    /// numbering got numbers at or below 0 (see `numbering`).
    #[serde(default = "first_seq")]
    pub ticket_seq_min: i64,
}

fn first_seq() -> i64 {
    1
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

    /// The same store with another gate.
    pub fn with_gate(&self, gate: Gate) -> Self {
        Self {
            gate,
            ..self.clone()
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<UserRecord>> {
        let (users, filter) = (self.users.clone(), doc! { "_id": id });
        self.gate
            .run(async move { Ok(users.find_one(filter).await?) })
            .await
    }

    /// The profiles of these users (those with a record), in one query.
    pub async fn profiles(&self, ids: Vec<String>) -> Result<Vec<UserProfile>> {
        use futures_util::TryStreamExt;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (users, filter) = (self.users.clone(), doc! { "_id": { "$in": ids } });
        let records: Vec<UserRecord> = self
            .gate
            .run(async move { Ok(users.find(filter).await?.try_collect().await?) })
            .await?;
        Ok(records.into_iter().map(|r| r.profile).collect())
    }

    /// Adds `size` to the user's ticket number, creating the record from
    /// `profile` if it is missing; the record after (see `numbering`).
    pub async fn reserve_numbers(&self, profile: &UserProfile, size: i64) -> Result<UserRecord> {
        let filter = doc! { "_id": &profile.id };
        let update = doc! {
            "$inc": { "ticket_seq": size },
            "$setOnInsert": {
                "username": &profile.username,
                "global_name": &profile.global_name,
                "avatar": &profile.avatar,
            },
        };
        self.updated(filter, update, true).await
    }

    /// Reserves `count` numbers below the user's lowest, for tickets from
    /// before numbering; returns the lowest of them. Reserved before they
    /// are handed out, so a run cut short never hands one out twice. The
    /// user must exist (see [`Self::ensure`]).
    pub async fn reserve_legacy(&self, id: &str, count: i64) -> Result<i64> {
        let filter = doc! { "_id": id };
        let update = vec![doc! { "$set": { "ticket_seq_min": {
            "$subtract": [ { "$ifNull": ["$ticket_seq_min", 1_i64] }, count ]
        } } }];
        Ok(self.updated(filter, update, false).await?.ticket_seq_min)
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

    /// The record after `update`; a record that is not there (or vanished
    /// during an upsert) is an inconsistency.
    async fn updated(
        &self,
        filter: Document,
        update: impl Into<UpdateModifications>,
        upsert: bool,
    ) -> Result<UserRecord> {
        let (users, update) = (self.users.clone(), update.into());
        let id = filter.get_str("_id").unwrap_or_default().to_owned();
        let user = self
            .gate
            .run(async move {
                Ok(users
                    .find_one_and_update(filter, update)
                    .upsert(upsert)
                    .return_document(ReturnDocument::After)
                    .await?)
            })
            .await?;
        user.ok_or_else(|| super::StoreError::Corrupt(format!("user {id} vanished")))
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

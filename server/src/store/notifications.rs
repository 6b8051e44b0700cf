//! The `notifications` collection: what each user has not seen yet of the
//! activity on their tickets and threads; and `dm_throttle`, which keeps
//! Discord messages to one per user and ticket every few minutes whatever
//! the number of instances.

use futures_util::TryStreamExt;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{DateTime, Document, doc, oid::ObjectId},
};
use serde::{Deserialize, Serialize};

use super::{Gate, Result};

const NOTIFICATIONS: &str = "notifications";
const DM_THROTTLE: &str = "dm_throttle";
/// Notifications one list answers at most (newest first).
pub const MAX_LISTED: i64 = 50;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// Who is told.
    pub user_id: String,
    /// `comment` (on your ticket), `reply` (in your thread), `version` (a
    /// ticket you commented on has a new one).
    pub kind: String,
    pub ticket_id: String,
    pub ticket_author: String,
    /// Who did it.
    pub actor_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_id: Option<ObjectId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Unix milliseconds.
    pub create_time: i64,
    #[serde(default)]
    pub read: bool,
}

#[derive(Clone)]
pub struct NotificationStore {
    notifications: Collection<NotificationRecord>,
    throttle: Collection<Document>,
    gate: Gate,
}

impl NotificationStore {
    pub fn new(db: &Database, gate: Gate) -> Self {
        Self {
            notifications: db.collection(NOTIFICATIONS),
            throttle: db.collection(DM_THROTTLE),
            gate,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        let by_user = IndexModel::builder().keys(doc! { "user_id": 1 }).build();
        self.notifications.create_index(by_user).await?;
        // Quiet times that are over are removed as messages go (see
        // `claim_dm`). Not a TTL index: SecantusDB stops answering with one
        // (its TTL monitor), seen in the test suite.
        let by_time = IndexModel::builder().keys(doc! { "until": 1 }).build();
        self.throttle.create_index(by_time).await?;
        Ok(())
    }

    pub async fn insert(&self, records: Vec<NotificationRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let notifications = self.notifications.clone();
        self.gate
            .run(async move {
                notifications.insert_many(records).await?;
                Ok(())
            })
            .await
    }

    /// A user's notifications, newest first, at most [`MAX_LISTED`], and
    /// how many of all theirs are unread.
    pub async fn of_user(&self, user_id: &str) -> Result<Vec<NotificationRecord>> {
        let (notifications, filter) = (self.notifications.clone(), doc! { "user_id": user_id });
        let mut all: Vec<NotificationRecord> = self
            .gate
            .run(async move { Ok(notifications.find(filter).await?.try_collect().await?) })
            .await?;
        all.sort_by(|a, b| b.create_time.cmp(&a.create_time).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    /// Marks these as read.
    pub async fn mark_read(&self, ids: Vec<ObjectId>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let notifications = self.notifications.clone();
        self.gate
            .run(async move {
                notifications
                    .update_many(
                        doc! { "_id": { "$in": ids } },
                        doc! { "$set": { "read": true } },
                    )
                    .await?;
                Ok(())
            })
            .await
    }

    /// Keeps only the newest `keep` of a user's notifications (the
    /// collection stays bounded per user).
    pub async fn trim(&self, user_id: &str, keep: usize) -> Result<()> {
        let all = self.of_user(user_id).await?;
        let old: Vec<ObjectId> = all.iter().skip(keep).map(|n| n.id).collect();
        if old.is_empty() {
            return Ok(());
        }
        let notifications = self.notifications.clone();
        self.gate
            .run(async move {
                notifications
                    .delete_many(doc! { "_id": { "$in": old } })
                    .await?;
                Ok(())
            })
            .await
    }

    /// Takes the right to message `user_id` about `ticket_id` now, unless
    /// a message went within `quiet_secs`: whether it was taken.
    pub async fn claim_dm(&self, user_id: &str, ticket_id: &str, quiet_secs: i64) -> Result<bool> {
        let now = DateTime::now();
        let until = DateTime::from_millis(now.timestamp_millis() + quiet_secs * 1000);
        let key = format!("{user_id}:{ticket_id}");
        let throttle = self.throttle.clone();
        self.gate
            .run(async move {
                let taken = throttle
                    .update_one(
                        doc! { "_id": &key, "until": { "$lte": now } },
                        doc! { "$set": { "until": until } },
                    )
                    .await?;
                if taken.matched_count == 1 {
                    return Ok(true);
                }
                // Quiet times over for a day: nobody needs them (the
                // collection stays as small as the recent activity).
                let old = DateTime::from_millis(now.timestamp_millis() - 24 * 3600 * 1000);
                throttle
                    .delete_many(doc! { "until": { "$lt": old } })
                    .await?;
                // First message for this pair: insert; a concurrent one
                // (or one within the quiet time) makes it a duplicate.
                match throttle
                    .insert_one(doc! { "_id": &key, "until": until })
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if super::is_duplicate_key(&e) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            })
            .await
    }
}

impl NotificationStore {
    /// Gives back a claim whose message could not be sent.
    pub async fn release_dm(&self, user_id: &str, ticket_id: &str) -> Result<()> {
        let (throttle, key) = (self.throttle.clone(), format!("{user_id}:{ticket_id}"));
        self.gate
            .run(async move {
                throttle.delete_one(doc! { "_id": key }).await?;
                Ok(())
            })
            .await
    }

    /// Removes a deleted ticket's notifications.
    pub async fn delete_ticket(&self, ticket_id: &str) -> Result<()> {
        let (notifications, filter) = (self.notifications.clone(), doc! { "ticket_id": ticket_id });
        self.gate
            .run(async move {
                notifications.delete_many(filter).await?;
                Ok(())
            })
            .await
    }
}

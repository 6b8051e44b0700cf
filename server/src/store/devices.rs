//! Signing in a device (the `pd2` command line) without a browser on it:
//! `device_codes` holds the codes of sign-ins in progress (RFC 8628's
//! device flow), `device_sessions` the devices signed in, which a device's
//! token names so that signing out revokes it.
//!
//! A device code is stored only as its SHA-256: whoever reads the
//! collection cannot poll with it. Every change of state is one
//! single-document update filtered on the state it leaves, so a code is
//! approved once and turned into a token once, whatever the number of
//! instances.

use futures_util::TryStreamExt;
use mongodb::{
    Collection, Database, IndexModel,
    bson::{Document, doc},
    options::IndexOptions,
};
use serde::{Deserialize, Serialize};

use super::{Gate, Result, UserProfile};

const CODES: &str = "device_codes";
const SESSIONS: &str = "device_sessions";

/// A sign-in in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceCodeRecord {
    /// SHA-256 (hex) of the device code.
    #[serde(rename = "_id")]
    pub id: String,
    /// What the person types, normalised (`WDJBMJHT`).
    pub user_code: String,
    /// What the device says it is (`pd2 0.1.0 on ws1 (alice)`), shown to
    /// whoever is asked to approve it.
    pub client_name: String,
    /// The address it asked from (shown beside the name).
    #[serde(default)]
    pub client_ip: String,
    /// Unix milliseconds.
    pub create_time: i64,
    pub expires: i64,
    /// Seconds the device must wait between polls (grows on `slow_down`).
    pub interval: i64,
    /// The device may poll again from this time (unix ms).
    pub next_poll: i64,
    /// `pending`, `approved` or `denied`.
    pub status: String,
    /// Who approved it, and as whom the token is issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<UserProfile>,
}

/// A device signed in: its token carries `sid` = `id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceSessionRecord {
    #[serde(rename = "_id")]
    pub id: String,
    pub user_id: String,
    pub client_name: String,
    /// Unix milliseconds.
    pub create_time: i64,
    /// When its token expires unless renewed (unix ms): a session past it
    /// is over (its terminal was left alone that long).
    pub expires: i64,
}

/// What a poll found.
#[derive(Debug)]
pub enum Poll {
    /// No such code (never issued, already used, or long expired).
    Unknown,
    Expired,
    Denied,
    /// Polled before its interval passed; the interval grew.
    TooSoon,
    Pending,
    /// Approved by this user, and now used up: only one poll gets this.
    Approved(UserProfile, String),
}

#[derive(Clone)]
pub struct DeviceStore {
    codes: Collection<DeviceCodeRecord>,
    sessions: Collection<DeviceSessionRecord>,
    gate: Gate,
}

/// Expired codes are kept this long, so a device polling late hears
/// `expired_token` rather than "unknown", then removed.
const KEEP_EXPIRED_MS: i64 = 60 * 60 * 1000;

impl DeviceStore {
    pub fn new(db: &Database, gate: Gate) -> Self {
        Self {
            codes: db.collection(CODES),
            sessions: db.collection(SESSIONS),
            gate,
        }
    }

    pub async fn ensure_indexes(&self) -> Result<()> {
        let by_user_code = IndexModel::builder()
            .keys(doc! { "user_code": 1 })
            .options(IndexOptions::builder().unique(true).build())
            .build();
        self.codes.create_index(by_user_code).await?;
        let by_expiry = IndexModel::builder().keys(doc! { "expires": 1 }).build();
        self.codes.create_index(by_expiry).await?;
        let by_user = IndexModel::builder().keys(doc! { "user_id": 1 }).build();
        self.sessions.create_index(by_user).await?;
        Ok(())
    }

    /// Sign-ins still in progress (not expired), for the global bound.
    pub async fn pending(&self, now: i64) -> Result<u64> {
        let codes = self.codes.clone();
        self.gate
            .run(async move {
                Ok(codes
                    .count_documents(doc! { "expires": { "$gt": now } })
                    .await?)
            })
            .await
    }

    /// Stores a new code; `false` when its user code is taken (the caller
    /// draws another). Codes expired an hour ago go first.
    pub async fn insert(&self, record: DeviceCodeRecord) -> Result<bool> {
        let codes = self.codes.clone();
        let stale = record.create_time - KEEP_EXPIRED_MS;
        self.gate
            .run(async move {
                codes
                    .delete_many(doc! { "expires": { "$lt": stale } })
                    .await?;
                match codes.insert_one(record).await {
                    Ok(_) => Ok(true),
                    Err(e) if super::is_duplicate_key(&e) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            })
            .await
    }

    /// The pending, unexpired sign-in of this user code.
    pub async fn find_pending(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<Option<DeviceCodeRecord>> {
        let codes = self.codes.clone();
        let filter = pending_filter(user_code, now);
        self.gate
            .run(async move { Ok(codes.find_one(filter).await?) })
            .await
    }

    /// Approves (with `Some(approver)`) or denies a pending sign-in:
    /// whether it was still pending.
    pub async fn decide(
        &self,
        user_code: &str,
        now: i64,
        approver: Option<&UserProfile>,
    ) -> Result<bool> {
        let set = match approver {
            Some(profile) => doc! {
                "status": "approved",
                "approver": mongodb::bson::to_bson(profile)
                    .map_err(|e| super::StoreError::Corrupt(e.to_string()))?,
            },
            None => doc! { "status": "denied" },
        };
        let codes = self.codes.clone();
        let filter = pending_filter(user_code, now);
        self.gate
            .run(async move {
                let result = codes.update_one(filter, doc! { "$set": set }).await?;
                Ok(result.modified_count == 1)
            })
            .await
    }

    /// A device asking whether its code was approved. `session_id` names
    /// the session an approved code becomes.
    pub async fn poll(
        &self,
        code_hash: &str,
        now: i64,
        session_id: &str,
        session_expires: i64,
    ) -> Result<Poll> {
        let codes = self.codes.clone();
        let sessions = self.sessions.clone();
        let id = code_hash.to_owned();
        let session_id = session_id.to_owned();
        self.gate
            .run(async move {
                let Some(found) = codes.find_one(doc! { "_id": &id }).await? else {
                    return Ok(Poll::Unknown);
                };
                if found.expires <= now {
                    return Ok(Poll::Expired);
                }
                match found.status.as_str() {
                    "denied" => {
                        codes.delete_one(doc! { "_id": &id }).await?;
                        return Ok(Poll::Denied);
                    }
                    "approved" => {
                        // The one poll that removes it gets the token.
                        let taken = codes
                            .find_one_and_delete(doc! { "_id": &id, "status": "approved" })
                            .await?;
                        let Some(DeviceCodeRecord {
                            approver: Some(approver),
                            client_name,
                            ..
                        }) = taken
                        else {
                            return Ok(Poll::Unknown);
                        };
                        sessions
                            .insert_one(DeviceSessionRecord {
                                id: session_id,
                                user_id: approver.id.clone(),
                                client_name: client_name.clone(),
                                create_time: now,
                                expires: session_expires,
                            })
                            .await?;
                        return Ok(Poll::Approved(approver, client_name));
                    }
                    _ => {}
                }
                let on_time = codes
                    .update_one(
                        doc! { "_id": &id, "status": "pending", "next_poll": { "$lte": now } },
                        doc! { "$set": { "next_poll": now + found.interval * 1000 } },
                    )
                    .await?;
                if on_time.modified_count == 1 {
                    return Ok(Poll::Pending);
                }
                // RFC 8628 §3.5: too soon, and the interval grows by 5 s.
                let interval = (found.interval + 5).min(60);
                codes
                    .update_one(
                        doc! { "_id": &id },
                        doc! { "$set": { "interval": interval, "next_poll": now + interval * 1000 } },
                    )
                    .await?;
                Ok(Poll::TooSoon)
            })
            .await
    }

    /// Whether this session is still signed in, for this user.
    pub async fn session_alive(&self, session_id: &str, user_id: &str, now: i64) -> Result<bool> {
        let sessions = self.sessions.clone();
        let filter = doc! { "_id": session_id, "user_id": user_id, "expires": { "$gt": now } };
        self.gate
            .run(async move { Ok(sessions.find_one(filter).await?.is_some()) })
            .await
    }

    /// Keeps a session signed in until `expires` (its token was renewed).
    pub async fn extend_session(
        &self,
        session_id: &str,
        user_id: &str,
        expires: i64,
    ) -> Result<()> {
        let sessions = self.sessions.clone();
        let filter = doc! { "_id": session_id, "user_id": user_id };
        self.gate
            .run(async move {
                sessions
                    .update_one(filter, doc! { "$set": { "expires": expires } })
                    .await?;
                Ok(())
            })
            .await
    }

    /// A user's signed-in devices, newest first; those that expired are
    /// removed on the way.
    pub async fn sessions_of(&self, user_id: &str, now: i64) -> Result<Vec<DeviceSessionRecord>> {
        let sessions = self.sessions.clone();
        let user = user_id.to_owned();
        let mut all: Vec<DeviceSessionRecord> = self
            .gate
            .run(async move {
                sessions
                    .delete_many(doc! { "user_id": &user, "expires": { "$lte": now } })
                    .await?;
                Ok(sessions
                    .find(doc! { "user_id": &user })
                    .await?
                    .try_collect()
                    .await?)
            })
            .await?;
        all.sort_by(|a, b| b.create_time.cmp(&a.create_time).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    /// Signs a device out: whether it was signed in.
    pub async fn end_session(&self, session_id: &str, user_id: &str) -> Result<bool> {
        let sessions = self.sessions.clone();
        let filter = doc! { "_id": session_id, "user_id": user_id };
        self.gate
            .run(async move { Ok(sessions.delete_one(filter).await?.deleted_count == 1) })
            .await
    }
}

fn pending_filter(user_code: &str, now: i64) -> Document {
    doc! { "user_code": user_code, "status": "pending", "expires": { "$gt": now } }
}

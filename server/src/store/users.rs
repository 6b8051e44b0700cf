//! The `users` collection: one document per Discord user, keyed by Discord id.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

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
    /// The number of the user's newest ticket (see `tickets::list`).
    #[serde(default)]
    pub ticket_seq: i64,
    /// The lowest number a ticket of theirs may have: tickets from before
    /// numbering got numbers at or below 0 (see `tickets::number_legacy`).
    #[serde(default = "first_seq")]
    pub ticket_seq_min: i64,
}

fn first_seq() -> i64 {
    1
}

/// The most numbers one reservation takes (see [`NumberBlocks`]).
const MAX_BLOCK: i64 = 16;
/// Authors whose reserved numbers are kept; beyond it, the least recently
/// served are forgotten (their unused numbers become gaps).
const MAX_AUTHORS: usize = 4096;

/// Ticket numbers this process reserved and has not handed out yet, per
/// author. Taking a number from the user record on every upload costs a
/// database write per upload (a third of an upload's database time on
/// SecantusDB); reserving them in blocks costs one per block. Blocks grow
/// from 1 to [`MAX_BLOCK`] while an author keeps uploading, so an author
/// who uploads now and then wastes no numbers, and one who uploads much
/// leaves at most `MAX_BLOCK - 1` unused when the process ends: gaps,
/// which lists step over (see `tickets::list`). A number is handed out
/// once; in one process, later uploads get higher numbers.
#[derive(Default)]
struct NumberBlocks {
    authors: HashMap<String, Block>,
    /// Counts hand-outs, to find the least recently served author.
    clock: u64,
}

struct Block {
    /// Next number to hand out; past `end` when used up.
    next: i64,
    /// The highest number reserved (the user record's `ticket_seq` when
    /// it was reserved).
    end: i64,
    /// Size of the reservation that filled it; the next one doubles it.
    size: i64,
    /// The author's record as it was then: display data for the upload's
    /// answer (kept current by logins through this process). `None` until
    /// the first reservation.
    profile: Option<UserProfile>,
    served: u64,
    /// Held while a reservation for the author is under way: uploads that
    /// find the block used up meanwhile wait for it rather than each
    /// reserving their own.
    reserving: Arc<tokio::sync::Mutex<()>>,
}

impl NumberBlocks {
    /// The author's next number, or the lock to hold while reserving more.
    fn take(&mut self, author: &str) -> Result<(UserProfile, i64), Arc<tokio::sync::Mutex<()>>> {
        self.clock += 1;
        let clock = self.clock;
        let block = self.block(author);
        block.served = clock;
        match &block.profile {
            Some(profile) if block.next <= block.end => {
                block.next += 1;
                Ok((profile.clone(), block.next - 1))
            }
            _ => Err(block.reserving.clone()),
        }
    }

    /// How many numbers the next reservation for `author` takes.
    fn next_size(&self, author: &str) -> i64 {
        self.authors
            .get(author)
            .map_or(1, |b| (b.size * 2).clamp(1, MAX_BLOCK))
    }

    /// Keeps the rest of a reservation `(end - size, end]` whose first
    /// number the caller took, unless a later one has replaced it since.
    fn keep(&mut self, profile: UserProfile, end: i64, size: i64) {
        let block = self.block(&profile.id);
        if block.end > end {
            return;
        }
        block.next = end - size + 2;
        block.end = end;
        block.size = size;
        block.profile = Some(profile);
    }

    /// The author's entry, made (forgetting the least recently served
    /// author if there are too many) if missing.
    fn block(&mut self, author: &str) -> &mut Block {
        if self.authors.len() >= MAX_AUTHORS && !self.authors.contains_key(author) {
            let oldest = self.authors.iter().min_by_key(|(_, b)| b.served);
            if let Some(oldest) = oldest.map(|(id, _)| id.clone()) {
                self.authors.remove(&oldest);
            }
        }
        let clock = self.clock;
        self.authors
            .entry(author.to_owned())
            .or_insert_with(|| Block {
                next: 1,
                end: 0,
                size: 0,
                profile: None,
                served: clock,
                reserving: Arc::default(),
            })
    }

    /// The author's newest number handed out, if this process holds the
    /// newest reservation (`recorded` is the user record's `ticket_seq`).
    fn newest(&self, author: &str, recorded: i64) -> i64 {
        match self.authors.get(author) {
            Some(b) if b.end == recorded => b.next - 1,
            _ => recorded,
        }
    }
}

#[derive(Clone)]
pub struct UserStore {
    users: Collection<UserRecord>,
    gate: Gate,
    numbers: Arc<Mutex<NumberBlocks>>,
}

impl UserStore {
    pub fn new(db: &Database, gate: Gate) -> Self {
        Self {
            users: db.collection("users"),
            gate,
            numbers: Arc::default(),
        }
    }

    /// The same store (and reserved numbers) with another gate.
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

    /// Takes the number of the author's next ticket and returns the
    /// author's profile, creating the record from `profile` (the token's)
    /// if it is missing, so every ticket's author can be looked up. Most
    /// calls cost no round trip (see [`NumberBlocks`]).
    pub async fn next_ticket(&self, profile: &UserProfile) -> Result<(UserProfile, i64)> {
        let reserving = match self.numbers.lock() {
            Ok(mut numbers) => match numbers.take(&profile.id) {
                Ok(taken) => return Ok(taken),
                Err(reserving) => Some(reserving),
            },
            Err(_) => None,
        };
        let _reserving = match &reserving {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        // Another upload may have reserved while this one waited.
        let size = match self.numbers.lock() {
            Ok(mut numbers) => match numbers.take(&profile.id) {
                Ok(taken) => return Ok(taken),
                Err(_) => numbers.next_size(&profile.id),
            },
            Err(_) => 1,
        };
        let filter = doc! { "_id": &profile.id };
        let update = doc! {
            "$inc": { "ticket_seq": size },
            "$setOnInsert": {
                "username": &profile.username,
                "global_name": &profile.global_name,
                "avatar": &profile.avatar,
            },
        };
        let user = self.updated(filter, update, true).await?;
        if let Ok(mut numbers) = self.numbers.lock() {
            numbers.keep(user.profile.clone(), user.ticket_seq, size);
        }
        Ok((user.profile, user.ticket_seq - size + 1))
    }

    /// The number of the author's newest ticket, from their record's
    /// `recorded` one: lower if this process reserved numbers it has not
    /// handed out yet, so a list need not step over them.
    pub fn newest_ticket(&self, author_id: &str, recorded: i64) -> i64 {
        self.numbers
            .lock()
            .map_or(recorded, |n| n.newest(author_id, recorded))
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
        if let Ok(mut numbers) = self.numbers.lock()
            && let Some(block) = numbers.authors.get_mut(&profile.id)
            && block.profile.is_some()
        {
            block.profile = Some(profile.clone());
        }
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

#[cfg(test)]
mod tests {
    use super::{MAX_BLOCK, NumberBlocks, UserProfile};

    fn profile() -> UserProfile {
        UserProfile {
            id: "7".into(),
            username: "ann".into(),
            global_name: None,
            avatar: None,
        }
    }

    /// What `next_ticket` does, with `record` standing in for the user
    /// record's `ticket_seq`.
    fn next(blocks: &mut NumberBlocks, record: &mut i64) -> i64 {
        if let Ok((_, n)) = blocks.take("7") {
            return n;
        }
        let size = blocks.next_size("7");
        *record += size;
        blocks.keep(profile(), *record, size);
        *record - size + 1
    }

    #[test]
    fn blocks_grow_and_hand_out_every_number_once_in_order() {
        let (mut blocks, mut record) = (NumberBlocks::default(), 0);
        let numbers: Vec<i64> = (0..100).map(|_| next(&mut blocks, &mut record)).collect();
        assert_eq!(numbers, (1..=100).collect::<Vec<_>>());
        // 1 + 2 + 4 + 8 + 16 + 16 + …: reservations, not uploads.
        assert_eq!(record, 1 + 2 + 4 + 8 + 16 * 6);
        assert_eq!(blocks.authors["7"].size, MAX_BLOCK);
        // The list starts at the newest number handed out, not reserved.
        assert_eq!(blocks.newest("7", record), 100);
        // Another process reserved since: its record is what counts.
        assert_eq!(blocks.newest("7", record + 16), record + 16);
    }

    #[test]
    fn a_reservation_that_lost_a_race_does_not_go_back() {
        let mut blocks = NumberBlocks::default();
        blocks.keep(profile(), 20, 4); // 17 taken, 18..=20 kept
        blocks.keep(profile(), 16, 4); // an older reservation answered late
        for n in 18..=20 {
            assert_eq!(blocks.take("7").ok().map(|(_, n)| n), Some(n));
        }
        assert!(blocks.take("7").is_err());
        assert_eq!(blocks.next_size("7"), 8);
    }

    #[test]
    fn least_recently_served_authors_are_forgotten_first() {
        let mut blocks = NumberBlocks::default();
        for i in 0..super::MAX_AUTHORS {
            let mut p = profile();
            p.id = i.to_string();
            blocks.keep(p, 10, 4);
        }
        assert!(blocks.take("0").is_ok());
        let mut late = profile();
        late.id = "late".into();
        blocks.keep(late, 10, 4);
        assert_eq!(blocks.authors.len(), super::MAX_AUTHORS);
        assert!(blocks.authors.contains_key("0") && blocks.authors.contains_key("late"));
        let never_served = (1..super::MAX_AUTHORS)
            .filter(|i| blocks.authors.contains_key(&i.to_string()))
            .count();
        assert_eq!(never_served, super::MAX_AUTHORS - 2);
    }
}

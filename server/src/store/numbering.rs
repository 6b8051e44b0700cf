//! Ticket numbers, in one place. Every ticket gets its author's next
//! number (`seq`) when it is recorded, so a list of an author's tickets,
//! newest first, reads ranges of numbers (see `tickets::list`) instead of
//! sorting all their tickets. The user record holds the newest number
//! reserved (`ticket_seq`) and the lowest one (`ticket_seq_min`); this
//! process reserves numbers in blocks ([`NumberBlocks`]); tickets from
//! before numbering get numbers below every other at start
//! ([`Numbering::number_legacy`]), and until that has run lists sort.
//!
//! The rest of the server sees two calls: [`TicketStore::next_number`] for
//! an upload and [`TicketStore::list`] for a page.
//!
//! [`TicketStore::next_number`]: super::TicketStore::next_number
//! [`TicketStore::list`]: super::TicketStore::list

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use super::{Gate, Result, TicketStore, UserProfile, UserStore};

/// The range of an author's ticket numbers a list reads.
#[derive(Debug, Clone, Copy)]
pub struct SeqRange {
    pub newest: i64,
    pub lowest: i64,
}

/// Hands out ticket numbers and says which range an author's list reads.
#[derive(Clone)]
pub struct Numbering {
    users: UserStore,
    blocks: Arc<Mutex<NumberBlocks>>,
    /// Every ticket has its number (see [`Self::number_legacy`]).
    numbered: Arc<AtomicBool>,
}

impl Numbering {
    pub fn new(users: UserStore) -> Self {
        Self {
            users,
            blocks: Arc::default(),
            numbered: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The same numbers through another gate (background work).
    pub fn with_gate(&self, gate: Gate) -> Self {
        Self {
            users: self.users.with_gate(gate),
            ..self.clone()
        }
    }

    /// Takes the number of the author's next ticket and returns the
    /// author's profile, creating the record from `profile` (the token's)
    /// if it is missing, so every ticket's author can be looked up. Most
    /// calls cost no round trip (see [`NumberBlocks`]).
    pub async fn next(&self, profile: &UserProfile) -> Result<(UserProfile, i64)> {
        let reserving = match self.blocks.lock() {
            Ok(mut blocks) => match blocks.take(&profile.id) {
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
        let size = match self.blocks.lock() {
            Ok(mut blocks) => match blocks.take(&profile.id) {
                Ok(taken) => return Ok(taken),
                Err(_) => blocks.next_size(&profile.id),
            },
            Err(_) => 1,
        };
        let user = self.users.reserve_numbers(profile, size).await?;
        if let Ok(mut blocks) = self.blocks.lock() {
            blocks.keep(user.profile.clone(), user.ticket_seq, size);
        }
        Ok((user.profile, user.ticket_seq - size + 1))
    }

    /// A login through this process: uploads answer with the new profile.
    pub fn saw(&self, profile: &UserProfile) {
        if let Ok(mut blocks) = self.blocks.lock()
            && let Some(block) = blocks.authors.get_mut(&profile.id)
            && block.profile.is_some()
        {
            block.profile = Some(profile.clone());
        }
    }

    /// The numbers a list of the author's tickets reads, newest first:
    /// `Ok(None)` if the author has no record, `Some(None)` while the
    /// tickets of earlier versions are not numbered yet (lists sort).
    pub async fn range(&self, author_id: &str) -> Result<Option<Option<SeqRange>>> {
        let Some(user) = self.users.get(author_id).await? else {
            return Ok(None);
        };
        if !self.numbered.load(Ordering::Relaxed) {
            return Ok(Some(None));
        }
        // Lower than the record if this process reserved numbers it has
        // not handed out yet, so a list need not step over them.
        let newest = self
            .blocks
            .lock()
            .map_or(user.ticket_seq, |b| b.newest(author_id, user.ticket_seq));
        Ok(Some(Some(SeqRange {
            newest,
            lowest: user.ticket_seq_min,
        })))
    }

    /// Numbers the tickets stored before tickets had numbers (by earlier
    /// versions): per author, below every number handed out since, in
    /// their order of creation. Until it has run, lists use a sorted find
    /// instead. Runs at each start; after the first, it finds nothing.
    pub async fn number_legacy(&self, tickets: &TicketStore) -> Result<()> {
        let legacy = tickets.unnumbered().await?;
        let count: usize = legacy.values().map(Vec::len).sum();
        for (author, ids) in legacy {
            self.users.ensure(&author, None).await?;
            let lowest = self.users.reserve_legacy(&author, ids.len() as i64).await?;
            // Newest first: the newest gets the highest reserved number.
            for (i, id) in ids.iter().enumerate() {
                let seq = lowest + (ids.len() - 1 - i) as i64;
                tickets.set_number(id, seq).await?;
            }
        }
        if count > 0 {
            tracing::info!(tickets = count, "numbered the tickets of earlier versions");
        }
        self.numbered.store(true, Ordering::Relaxed);
        Ok(())
    }
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
/// which lists step over (see [`Numbering::range`]). A number is handed out
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

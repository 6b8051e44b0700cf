//! The memory uploads in flight may hold, as one budget
//! (`limits.upload_memory`).
//!
//! An upload holds at most one *share* (see [`share_bytes`]) from the
//! moment its body is first read until its outcome is known; one that
//! cannot get a share does not read its body at all, so its bytes wait in
//! the kernel's socket buffer instead of this process. Without the budget,
//! waves of 320 clients that each sent 2 MB and hung up drove the RSS to
//! 4.3 GB in eight seconds (bench `--memory-waves`, issue 22): every
//! upload read its body while the database worked through the ones ahead.
//!
//! How long a new upload waits follows the database gate's rule: while
//! uploads ahead of it finish (shares come back), the server is busy, not
//! stuck, and it keeps its place, up to `limits.upload_idle_secs` (the
//! silence any upload is allowed); if no share comes back for
//! [`QUIET`], something is stuck and it gets 503 with `Retry-After`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

use super::{gate::Progress, staging_bytes_at_most};
use crate::{
    config::LimitsConfig,
    telemetry::{Throttle, metrics},
};

/// With no share returned for this long, a waiting upload gives up.
const QUIET: Duration = Duration::from_secs(5);

/// Seconds a refused upload is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 5;

/// Budget units: KiB, so a budget of terabytes still fits a semaphore.
const UNIT: u64 = 1024;

/// What the form parser may hold of one upload's body without handing any
/// of it out (`api::multipart` enforces it): its buffer counts against the
/// upload's share too.
pub const PARSER_HOLDS_AT_MOST: u64 = 1 << 20;

/// Bytes one upload may hold while the form parser and the stores work:
/// what its staging holds at most (see `store::staging`), plus a copy a
/// validator reads (at most one file, or one 4 MiB host read), plus the
/// parser's buffer.
pub fn share_bytes(limits: &LimitsConfig) -> u64 {
    const HOST_READ: u64 = 4 * 1024 * 1024;
    staging_bytes_at_most(limits.max_files)
        + limits.max_file_size.min(HOST_READ)
        + PARSER_HOLDS_AT_MOST
}

pub struct UploadMemory {
    permits: Arc<Semaphore>,
    /// Units in the budget, and in one share.
    total: usize,
    share: u32,
    patience: Duration,
    returned: Arc<Progress>,
    users: Arc<PerUser>,
    per_user: usize,
    /// Uploads holding a share, for finding a slow one to cut.
    active: std::sync::Mutex<Vec<std::sync::Weak<Pace>>>,
    /// Refusals are logged at most once a minute, with their count: a
    /// flood must not flood the log too.
    refusals: std::sync::Mutex<Throttle>,
}

/// One upload's part of the budget, returned when dropped.
pub struct Share {
    _permit: OwnedSemaphorePermit,
    _user: UserSlot,
    bytes: u64,
    returned: Arc<Progress>,
    pace: Arc<Pace>,
}

impl Share {
    /// How fast the upload's body arrives, and whether it was cut.
    pub fn pace(&self) -> Arc<Pace> {
        self.pace.clone()
    }
}

/// An upload's body as it arrives: a share held by a client that sends
/// slower than [`MIN_RATE`] is taken back when another upload waits.
///
/// The rate is of the time spent waiting *for the client*: an upload whose
/// body is all there but whose writes queue behind others at a busy
/// database is slow by the server's doing, and must not be cut for it (the
/// first version judged by age and cut uploads of fast clients under load).
pub struct Pace {
    epoch: Instant,
    received: AtomicU64,
    /// Milliseconds (after `epoch`) spent waiting for the client's bytes,
    /// not counting a wait in progress.
    waited: AtomicU64,
    /// When the wait in progress began (milliseconds after `epoch`), or
    /// `NOT_WAITING`.
    waiting_since: AtomicU64,
    /// Still receiving its body (afterwards it validates and writes, at the
    /// server's pace, not the client's).
    receiving: std::sync::atomic::AtomicBool,
    cut: std::sync::atomic::AtomicBool,
    cut_now: tokio::sync::Notify,
}

const NOT_WAITING: u64 = u64::MAX;

impl Pace {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            received: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            waiting_since: AtomicU64::new(NOT_WAITING),
            receiving: std::sync::atomic::AtomicBool::new(true),
            cut: std::sync::atomic::AtomicBool::new(false),
            cut_now: tokio::sync::Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The upload now waits for the client's next bytes.
    pub fn waiting(&self) {
        self.waiting_since.store(self.now(), Ordering::Relaxed);
    }

    /// `bytes` arrived (0: the wait ended without any, e.g. a new part).
    pub fn received(&self, bytes: usize) {
        let since = self.waiting_since.swap(NOT_WAITING, Ordering::Relaxed);
        if since != NOT_WAITING {
            self.waited
                .fetch_add(self.now().saturating_sub(since), Ordering::Relaxed);
        }
        self.received.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The whole body is in.
    pub fn done(&self) {
        self.receiving.store(false, Ordering::Relaxed);
    }

    /// Bytes received so far, and the time spent waiting for them.
    pub fn so_far(&self) -> (u64, Duration) {
        (self.received.load(Ordering::Relaxed), self.client_time())
    }

    fn client_time(&self) -> Duration {
        let since = self.waiting_since.load(Ordering::Relaxed);
        let ongoing = if since == NOT_WAITING {
            0
        } else {
            self.now().saturating_sub(since)
        };
        Duration::from_millis(self.waited.load(Ordering::Relaxed) + ongoing)
    }

    /// Resolves when the upload's share was taken back for a waiting one.
    pub async fn cut(&self) {
        loop {
            let notified = self.cut_now.notified();
            if self.cut.load(Ordering::Relaxed) {
                return;
            }
            notified.await;
        }
    }

    /// Bytes a second of the client, if it is a candidate for being cut.
    fn slow_rate(&self) -> Option<f64> {
        let client = self.client_time();
        if !self.receiving.load(Ordering::Relaxed) || client < GRACE {
            return None;
        }
        let rate = self.received.load(Ordering::Relaxed) as f64 / client.as_secs_f64();
        (rate < MIN_RATE).then_some(rate)
    }
}

/// Bytes a second below which an upload's share may be taken back while
/// another waits (a student on a poor phone link sends ten times that).
pub const MIN_RATE: f64 = 8.0 * 1024.0;
/// Nobody is judged slow before having been waited for this long.
const GRACE: Duration = Duration::from_secs(10);

/// Uploads of each user in flight or waiting, so that one user (a slow
/// client trickling bytes, a script) cannot take every share.
#[derive(Default)]
struct PerUser(std::sync::Mutex<std::collections::HashMap<String, usize>>);

/// One of a user's uploads, counted until dropped.
struct UserSlot {
    users: Arc<PerUser>,
    user: String,
}

impl PerUser {
    fn take(self: &Arc<Self>, user: &str, most: usize) -> Option<UserSlot> {
        let mut users = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = users.entry(user.to_owned()).or_default();
        if *count >= most {
            return None;
        }
        *count += 1;
        Some(UserSlot {
            users: self.clone(),
            user: user.to_owned(),
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut users = self.users.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = users.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                users.remove(&self.user);
            }
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        metrics().upload_memory_bytes.sub(self.bytes as i64);
        self.returned.mark();
    }
}

/// Why an upload got no share.
#[derive(Debug, thiserror::Error)]
pub enum Busy {
    /// None came free in time.
    #[error("upload memory busy: waited {0:?} for a share")]
    Full(Duration),
    /// The user already has this many uploads in flight or waiting.
    #[error("{0} uploads of this user already in flight")]
    User(usize),
}

impl UploadMemory {
    /// A budget of `limits.upload_memory`; refused if not even one upload
    /// fits.
    pub fn new(limits: &LimitsConfig) -> anyhow::Result<Self> {
        // Whole units: a share rounds up, the budget down, and the check
        // is made on what the semaphore will hold.
        let share_bytes = share_bytes(limits).div_ceil(UNIT) * UNIT;
        anyhow::ensure!(
            limits.upload_memory / UNIT * UNIT >= share_bytes,
            "invalid configuration: `limits.upload_memory` ({}) must hold one upload's share \
             ({share_bytes} bytes with limits.max_files = {} and limits.max_file_size = {})",
            limits.upload_memory,
            limits.max_files,
            limits.max_file_size,
        );
        let share = share_bytes / UNIT;
        let total = limits.upload_memory / UNIT;
        Ok(Self {
            permits: Arc::new(Semaphore::new(total as usize)),
            total: total as usize,
            share: share as u32,
            patience: limits.upload_idle(),
            returned: Arc::new(Progress::new()),
            users: Arc::default(),
            per_user: limits.uploads_per_user,
            active: std::sync::Mutex::new(Vec::new()),
            refusals: std::sync::Mutex::new(Throttle::new(Duration::from_secs(60))),
        })
    }

    /// Takes the share of the slowest upload still receiving below
    /// [`MIN_RATE`] (after [`GRACE`]), if any: its upload ends with 408 and
    /// returns the share. Whether one was cut.
    fn cut_slowest(&self) -> bool {
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let slowest = active
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|p| !p.cut.load(Ordering::Relaxed))
            .filter_map(|p| p.slow_rate().map(|rate| (rate, p)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let Some((rate, pace)) = slowest else {
            return false;
        };
        tracing::info!(
            bytes_per_sec = rate as u64,
            "an upload slower than the minimum gives its share to a waiting one"
        );
        pace.cut.store(true, Ordering::Relaxed);
        pace.cut_now.notify_waiters();
        true
    }

    /// Uploads that fit at once.
    pub fn shares(&self) -> usize {
        self.total / self.share as usize
    }

    /// Waits for a share for an upload of `user` while uploads ahead
    /// finish (see the module); refused at once if `user` already has
    /// `limits.uploads_per_user` uploads in flight or waiting.
    pub async fn reserve(&self, user: &str) -> Result<Share, Busy> {
        let result = self.wait_for_share(user).await;
        if let Err(error @ Busy::Full(_)) = &result {
            let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(quiet) = refusals.report(std::time::Instant::now()) {
                tracing::warn!(%error, refused_since_last_line = quiet, "upload refused: no memory share came free");
            }
        }
        result
    }

    async fn wait_for_share(&self, user: &str) -> Result<Share, Busy> {
        let slot = self
            .users
            .take(user, self.per_user)
            .ok_or(Busy::User(self.per_user))?;
        let started = Instant::now();
        let limit = started + self.patience;
        if self.permits.available_permits() < self.share as usize {
            self.cut_slowest();
        }
        // One acquisition for the whole wait: the semaphore is fair, and a
        // new one would go to the back of the queue.
        let mut acquire = std::pin::pin!(self.permits.clone().acquire_many_owned(self.share));
        loop {
            let quiet_until = (self.returned.last().max(started) + QUIET).min(limit);
            match tokio::time::timeout_at(quiet_until, &mut acquire).await {
                Ok(Ok(permit)) => {
                    let bytes = u64::from(self.share) * UNIT;
                    metrics().upload_memory_bytes.add(bytes as i64);
                    let pace = Arc::new(Pace::new());
                    let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
                    active.retain(|p| p.strong_count() > 0);
                    active.push(Arc::downgrade(&pace));
                    return Ok(Share {
                        _permit: permit,
                        _user: slot,
                        bytes,
                        returned: self.returned.clone(),
                        pace,
                    });
                }
                // Never closed; were it, nothing could be reserved again.
                Ok(Err(_)) => return Err(Busy::Full(started.elapsed())),
                Err(_) => {
                    let now = Instant::now();
                    if now >= limit {
                        return Err(Busy::Full(started.elapsed()));
                    }
                    // Stuck: unless a client trickling its body gives its
                    // share back, give up.
                    if self.returned.last().max(started) + QUIET <= now && !self.cut_slowest() {
                        return Err(Busy::Full(started.elapsed()));
                    }
                }
            }
        }
    }
}

/// How often memory freed by finished uploads is handed back to the
/// system, when any was freed.
const GIVE_BACK_EVERY: Duration = Duration::from_secs(5);

impl UploadMemory {
    /// Hands memory that uploads freed back to the system, forever
    /// (spawned once by the server). glibc keeps freed memory in its
    /// per-thread arenas: after a burst the RSS stayed at 1.2 GB with no
    /// upload in flight (bench `--memory-waves`); `malloc_trim` returns the
    /// free pages of every arena. It runs only after a share came back,
    /// at most every few seconds, on a blocking thread (it walks the heap).
    pub async fn give_back(self: Arc<Self>) {
        let mut trimmed = Instant::now();
        loop {
            tokio::time::sleep(GIVE_BACK_EVERY).await;
            if self.returned.last() > trimmed {
                trimmed = Instant::now();
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        }
    }
}

#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    not(any(feature = "jemalloc", feature = "mimalloc"))
))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory of the allocator that
    // owns it (glibc's, the global allocator here).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(
    target_os = "linux",
    target_env = "gnu",
    not(any(feature = "jemalloc", feature = "mimalloc"))
)))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limits whose share is a known size, and a budget of `shares` of it.
    fn memory(shares: u64) -> UploadMemory {
        let mut limits = LimitsConfig::default();
        limits.upload_memory = share_bytes(&limits) * shares;
        UploadMemory::new(&limits).expect("a budget of whole shares")
    }

    #[test]
    fn a_budget_below_one_share_is_refused_naming_the_key() {
        let mut limits = LimitsConfig::default();
        limits.upload_memory = share_bytes(&limits) - 1;
        let error = UploadMemory::new(&limits).err().expect("refused");
        assert!(
            error.to_string().contains("limits.upload_memory"),
            "{error}"
        );
        limits.upload_memory += 1;
        assert_eq!(UploadMemory::new(&limits).expect("one share").shares(), 1);
    }

    /// An upload that takes its share when one is free, holds it for
    /// `hold`, and says when it got it (or that it was busy).
    fn upload(
        memory: &Arc<UploadMemory>,
        hold: Duration,
    ) -> tokio::task::JoinHandle<Result<Instant, Busy>> {
        static USERS: AtomicU64 = AtomicU64::new(0);
        let user = format!("user{}", USERS.fetch_add(1, Ordering::Relaxed));
        let memory = memory.clone();
        tokio::spawn(async move {
            let share = memory.reserve(&user).await?;
            let got = Instant::now();
            tokio::time::sleep(hold).await;
            drop(share);
            Ok(got)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_trickling_its_body_gives_its_share_to_a_waiting_upload() {
        let memory = memory(1);
        let slow = memory.reserve("slow").await.expect("a share");
        let pace = slow.pace();
        pace.waiting();
        pace.received(1000);
        pace.waiting();
        // Within its first seconds nobody is judged slow: the next waits,
        // then is refused.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(matches!(memory.reserve("next").await, Err(Busy::Full(_))));
        // Past GRACE at 1000 B in 10 s: cut at once for a waiting upload.
        tokio::time::sleep(GRACE).await;
        let ((), next) = tokio::join!(
            async {
                pace.cut().await;
                drop(slow);
            },
            memory.reserve("next")
        );
        assert!(next.is_ok());
        // One that sends fast enough, or has its whole body, is not cut.
        let next = next.expect("share");
        next.pace().waiting();
        next.pace().received((MIN_RATE as usize) * 100);
        next.pace().waiting();
        tokio::time::sleep(GRACE * 2).await;
        assert!(matches!(memory.reserve("third").await, Err(Busy::Full(_))));
        let quick = next.pace();
        drop(next);
        let done = memory.reserve("done").await.expect("a share");
        done.pace().waiting();
        done.pace().done();
        tokio::time::sleep(GRACE * 2).await;
        assert!(matches!(memory.reserve("fourth").await, Err(Busy::Full(_))));
        drop(quick);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upload_slowed_by_the_server_is_not_cut() {
        let memory = memory(1);
        let held = memory.reserve("fast").await.expect("a share");
        let pace = held.pace();
        // Its bytes came at once; then it waited 30 s for the database.
        pace.waiting();
        pace.received(1 << 20);
        tokio::time::sleep(GRACE * 3).await;
        assert!(matches!(memory.reserve("next").await, Err(Busy::Full(_))));
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn one_user_holds_at_most_uploads_per_user_shares() {
        let memory = memory(10);
        let most = LimitsConfig::default().uploads_per_user;
        let mut held = Vec::new();
        for _ in 0..most {
            held.push(memory.reserve("busy").await.expect("within the cap"));
        }
        assert!(matches!(memory.reserve("busy").await, Err(Busy::User(n)) if n == most));
        // Others are not held back by it.
        let other = memory.reserve("other").await.expect("another user");
        // One finished: the user may start another.
        held.pop();
        held.push(memory.reserve("busy").await.expect("a slot again"));
        drop(other);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_upload_gives_up_only_when_nothing_comes_back() {
        let memory = Arc::new(memory(1));
        let held = memory.reserve("first").await.expect("the first share");
        // Nothing comes back: busy after QUIET.
        let started = Instant::now();
        let busy = memory.reserve("second").await.err().expect("busy");
        assert_eq!(started.elapsed(), QUIET);
        assert!(
            matches!(busy, Busy::Full(waited) if waited == QUIET),
            "{busy}"
        );
        // Shares that come back keep the queue waiting past QUIET: three
        // uploads behind the held one, each holding its share for 4 s.
        let started = Instant::now();
        let queue: Vec<_> = (0..3)
            .map(|_| upload(&memory, QUIET - Duration::from_secs(1)))
            .collect();
        tokio::time::sleep(QUIET - Duration::from_secs(1)).await;
        drop(held);
        let mut got = Vec::new();
        for upload in queue {
            got.push(upload.await.expect("task").expect("served in turn"));
        }
        // In order, the last after three holds (12 s), none refused.
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(got[2] - started, (QUIET - Duration::from_secs(1)) * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_at_the_idle_limit_even_while_shares_return() {
        let memory = Arc::new(memory(1));
        let idle = LimitsConfig::default().upload_idle();
        let started = Instant::now();
        // 100 uploads of a second each ahead of the last: shares come back
        // every second, but its turn would come after 100 s.
        let ahead: Vec<_> = (0..100)
            .map(|_| upload(&memory, Duration::from_secs(1)))
            .collect();
        let last = upload(&memory, Duration::ZERO);
        assert!(last.await.expect("task").is_err(), "busy at the limit");
        assert_eq!(started.elapsed(), idle);
        let served = futures_util::future::join_all(ahead)
            .await
            .into_iter()
            .filter(|r| matches!(r, Ok(Ok(_))))
            .count();
        // One a second until the limit (the one whose turn comes at the
        // limit itself may go either way).
        let served = served as u64;
        assert!(
            served == idle.as_secs() || served == idle.as_secs() + 1,
            "{served}"
        );
    }
}

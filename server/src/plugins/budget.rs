//! Capacity shared by all plugin calls, so that no plugin and no requester
//! can take the server's memory or another user's turn:
//!
//! - **Pools.** Validators and renderers have separate call slots and
//!   separate shares of `plugins.memory_budget`, so previews never delay an
//!   upload. Each call reserves the most it can use before it starts (its
//!   memory limit, plus the output limit for a renderer, whose output the
//!   host copies), so all calls together stay within the budget.
//! - **Preview slots.** At most `plugins.previews_per_user` cold previews
//!   of one requester run at once.
//! - **Recent failures.** A render that failed is not retried for
//!   `plugins.failed_render_cache_secs`: a page reloaded in a loop does not
//!   run a plugin that times out again and again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{PluginError, runtime::MAX_CONCURRENT_CALLS};
use crate::config::PluginsConfig;

/// Call slots for validators; renderers get the rest of the pooling
/// allocator's instances.
const VALIDATOR_CALLS: u32 = 16;
/// Share of the memory budget kept for validators.
const VALIDATOR_SHARE: u64 = 4;

pub struct Pool {
    kind: &'static str,
    /// Where the calls run: threads of their own for renderers (see
    /// [`RenderThreads`]); tokio's blocking pool otherwise.
    threads: Option<RenderThreads>,
    calls: Arc<Semaphore>,
    /// In KiB.
    memory: Arc<Semaphore>,
    per_call_kib: u32,
    /// How long a call may wait for capacity; `None`: the caller bounds it.
    wait: Option<Duration>,
}

/// Held for the duration of one call.
pub struct Capacity {
    _call: OwnedSemaphorePermit,
    _memory: OwnedSemaphorePermit,
}

impl Pool {
    fn new(
        kind: &'static str,
        calls: u32,
        budget: u64,
        per_call: u64,
        wait: Option<Duration>,
    ) -> Self {
        let per_call_kib = per_call.div_ceil(1024).min(u64::from(u32::MAX >> 4)) as u32;
        // Always room for one call, whatever the budget says.
        let memory_kib = (budget / 1024).clamp(u64::from(per_call_kib), u64::from(u32::MAX >> 3));
        Self {
            kind,
            threads: None,
            calls: Arc::new(Semaphore::new(calls as usize)),
            memory: Arc::new(Semaphore::new(memory_kib as usize)),
            per_call_kib,
            wait,
        }
    }

    /// Runs `call` on this pool's threads.
    pub async fn spawn<R: Send + 'static>(
        &self,
        call: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, tokio::task::JoinError> {
        // The runtime is only ever absent once the pool is being dropped.
        match self.threads.as_ref().and_then(|t| t.0.as_ref()) {
            Some(runtime) => runtime.spawn_blocking(call).await,
            None => tokio::task::spawn_blocking(call).await,
        }
    }

    /// Waits for a call slot and the call's memory reservation.
    pub async fn enter(&self) -> Result<Capacity, PluginError> {
        let acquire = async {
            let call = self.calls.clone().acquire_owned().await.ok()?;
            let memory = self
                .memory
                .clone()
                .acquire_many_owned(self.per_call_kib)
                .await
                .ok()?;
            Some(Capacity {
                _call: call,
                _memory: memory,
            })
        };
        let capacity = match self.wait {
            Some(wait) => tokio::time::timeout(wait, acquire).await.ok().flatten(),
            None => acquire.await,
        };
        capacity.ok_or(PluginError::Busy(self.kind))
    }
}

/// The validator and renderer pools for this configuration.
pub fn pools(config: &PluginsConfig) -> (Pool, Pool) {
    let validator_budget = config.memory_budget / VALIDATOR_SHARE;
    let validators = Pool::new(
        "validators",
        VALIDATOR_CALLS,
        validator_budget,
        config.memory_limit,
        None,
    );
    let mut renderers = Pool::new(
        "renderers",
        MAX_CONCURRENT_CALLS - VALIDATOR_CALLS,
        config.memory_budget - validator_budget,
        config.memory_limit + config.max_output,
        Some(Duration::from_millis(config.timeout_ms)),
    );
    renderers.threads = RenderThreads::new(MAX_CONCURRENT_CALLS - VALIDATOR_CALLS);
    (validators, renderers)
}

/// Renderers run on threads of their own at a lower CPU priority (nice
/// 10), so that previews that spin until their time limit yield the
/// cores to uploads, their validators and the rest of the server: pools
/// separate capacity, this separates CPU time. (Validators and everything
/// else stay on tokio's blocking pool at normal priority; lowering a
/// thread's priority cannot be undone without privileges, hence threads
/// of their own.)
pub struct RenderThreads(Option<tokio::runtime::Runtime>);

impl RenderThreads {
    fn new(threads: u32) -> Option<Self> {
        let built = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(threads as usize)
            .thread_name("plugin-render")
            // WASI's clocks and our bounded poll use tokio timers.
            .enable_all()
            .on_thread_start(lower_priority)
            .build();
        match built {
            Ok(runtime) => Some(Self(Some(runtime))),
            Err(error) => {
                tracing::warn!(%error, "no render threads of their own; renderers share the blocking pool");
                None
            }
        }
    }
}

impl Drop for RenderThreads {
    fn drop(&mut self) {
        // Dropping a runtime from async code would block (and panic).
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; on Linux
    // `PRIO_PROCESS` with a thread id sets that thread's nice value.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// Cold previews in progress, by requester.
pub struct PreviewSlots {
    per_user: usize,
    running: Arc<Mutex<HashMap<String, usize>>>,
}

/// One requester's claim on a preview slot; given back on drop.
pub struct PreviewSlot {
    running: Arc<Mutex<HashMap<String, usize>>>,
    requester: String,
}

impl PreviewSlots {
    pub fn new(per_user: usize) -> Self {
        Self {
            per_user: per_user.max(1),
            running: Arc::default(),
        }
    }

    pub fn per_user(&self) -> usize {
        self.per_user
    }

    pub fn take(&self, requester: &str) -> Option<PreviewSlot> {
        let mut running = self.running.lock().ok()?;
        let count = running.entry(requester.to_owned()).or_default();
        if *count >= self.per_user {
            return None;
        }
        *count += 1;
        Some(PreviewSlot {
            running: self.running.clone(),
            requester: requester.to_owned(),
        })
    }
}

impl Drop for PreviewSlot {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock()
            && let Some(count) = running.get_mut(&self.requester)
        {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.requester);
            }
        }
    }
}

/// Most failures remembered; beyond it the oldest are forgotten first.
const MAX_FAILURES: usize = 10_000;

/// Renders that failed recently, by preview cache key.
pub struct FailedRenders {
    ttl: Duration,
    failed: Mutex<HashMap<String, Instant>>,
}

impl FailedRenders {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            failed: Mutex::default(),
        }
    }

    pub fn insert(&self, key: &str) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut failed) = self.failed.lock() {
            if failed.len() >= MAX_FAILURES {
                let ttl = self.ttl;
                failed.retain(|_, at| at.elapsed() < ttl);
            }
            if failed.len() >= MAX_FAILURES {
                failed.clear();
            }
            failed.insert(key.to_owned(), Instant::now());
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.failed
            .lock()
            .ok()
            .and_then(|f| f.get(key).map(|at| at.elapsed() < self.ttl))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requester_gets_at_most_its_slots() {
        let slots = PreviewSlots::new(2);
        let a = slots.take("alice");
        let b = slots.take("alice");
        assert!(a.is_some() && b.is_some());
        assert!(slots.take("alice").is_none());
        assert!(slots.take("bob").is_some());
        drop(a);
        assert!(slots.take("alice").is_some());
    }

    #[tokio::test]
    async fn calls_reserve_memory_from_the_budget() {
        // Room for two calls of 64 MiB in a 150 MiB budget.
        let pool = Pool::new(
            "renderers",
            10,
            150 << 20,
            64 << 20,
            Some(Duration::from_millis(50)),
        );
        let one = pool.enter().await.expect("first");
        let two = pool.enter().await.expect("second");
        assert!(matches!(
            pool.enter().await,
            Err(PluginError::Busy("renderers"))
        ));
        drop(one);
        assert!(pool.enter().await.is_ok());
        drop(two);
    }

    #[test]
    fn failures_are_forgotten_after_their_time() {
        let failed = FailedRenders::new(Duration::from_millis(30));
        failed.insert("k");
        assert!(failed.contains("k"));
        assert!(!failed.contains("other"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!failed.contains("k"));
    }
}

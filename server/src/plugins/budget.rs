//! Capacity shared by all plugin calls, so that no plugin and no requester
//! can take the server's memory or another user's turn:
//!
//! - **Pools.** Validators and renderers have separate call slots and
//!   separate shares of `plugins.memory_budget`, so previews never delay an
//!   upload. Each call reserves the most it can use before it starts (its
//!   memory limit, plus the output limit for a renderer, whose output the
//!   host copies), so all calls together stay within the budget.
//!
//! Who may run a preview when (per-user slots, failed renders) is the
//! preview service's policy (`service::previews::policy`).

use std::{sync::Arc, time::Duration};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}

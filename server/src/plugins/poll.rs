//! `wasi:io/poll` bounded by the call's time limit.
//!
//! The epoch deadline only interrupts wasm code. A plugin that blocks in the
//! host instead — `std::thread::sleep` is a `wasi:clocks` subscription and a
//! `pollable.block` — would hold its blocking thread and call slot for as
//! long as it asked, beyond `plugins.timeout_ms`. This replaces WASI's own
//! poll functions with ones that wait at most until the call's deadline and
//! then trap, so the call fails like a plugin that spins.

use std::time::Instant;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::{
    p2::DynPollable,
    p2::bindings::{io::poll as async_poll, sync::io::poll as sync_poll},
    runtime::in_tokio,
};

use super::runtime::CallState;

/// The call's resources and its deadline.
pub struct BoundedPoll<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
}

struct HasBoundedPoll;

impl HasData for HasBoundedPoll {
    type Data<'a> = BoundedPoll<'a>;
}

/// Shadows the `wasi:io/poll` that `add_to_linker_sync` linked.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added =
        sync_poll::add_to_linker::<CallState, HasBoundedPoll>(linker, |state| BoundedPoll {
            table: &mut state.table,
            deadline: state.deadline,
        });
    linker.allow_shadowing(false);
    added
}

impl sync_poll::Host for BoundedPoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        bounded_wait(self.deadline, async_poll::Host::poll(self.table, pollables))
    }
}

impl sync_poll::HostPollable for BoundedPoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        // Never waits: it only asks whether the pollable is ready now.
        in_tokio(async_poll::HostPollable::ready(self.table, pollable))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        bounded_wait(
            self.deadline,
            async_poll::HostPollable::block(self.table, pollable),
        )
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.table, pollable)
    }
}

/// A wait in the host that the call's deadline cut short.
#[derive(Debug, thiserror::Error)]
#[error("blocked in the host past the call's time limit")]
pub struct BlockedPastDeadline;

/// Runs a wait until it ends or `deadline` passes, whichever is first.
fn bounded_wait<T>(
    deadline: Instant,
    wait: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let deadline = tokio::time::Instant::from_std(deadline);
    in_tokio(async { tokio::time::timeout_at(deadline, wait).await })
        .map_err(|_| wasmtime::Error::new(BlockedPastDeadline))?
}

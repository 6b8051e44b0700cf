//! Per-request context. The HTTP layer runs each request's filters inside a
//! task-local scope, so a filter deep in the route tree (authentication) can
//! leave the user id for the request's log line without threading it through
//! every handler.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

tokio::task_local! {
    static CURRENT: RequestContext;
}

#[derive(Clone, Default)]
pub struct RequestContext {
    user_id: Arc<Mutex<Option<String>>>,
    /// Database commands the request sent (see [`db_command`]).
    db_commands: Arc<AtomicU64>,
}

impl RequestContext {
    /// Runs `future` (the route filters of one request) with this context.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    pub fn user_id(&self) -> Option<String> {
        self.user_id.lock().ok().and_then(|u| u.clone())
    }

    pub fn db_commands(&self) -> u64 {
        self.db_commands.load(Ordering::Relaxed)
    }
}

/// The context of the request being handled, to carry into tasks it
/// spawns (database operations run in their own tasks).
pub fn current() -> Option<RequestContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// `tokio::spawn`, keeping the current request's context in the task.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        Some(context) => tokio::spawn(context.scope(future)),
        None => tokio::spawn(future),
    }
}

/// Counts one command sent to the database, for `pd2_db_commands_total`
/// and the request's log line. Called by the driver's command monitor,
/// from the task that sends the command.
pub fn db_command(name: &str) {
    super::metrics().db_command(name);
    let _ = CURRENT.try_with(|ctx| ctx.db_commands.fetch_add(1, Ordering::Relaxed));
}

/// Records the authenticated caller of the current request. Outside a
/// request (tasks spawned from it, CLI) this does nothing.
pub fn set_user(id: &str) {
    let _ = CURRENT.try_with(|ctx| {
        if let Ok(mut slot) = ctx.user_id.lock() {
            *slot = Some(id.to_owned());
        }
    });
}

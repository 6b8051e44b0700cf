//! Per-request context. The HTTP layer runs each request's filters inside a
//! task-local scope, so a filter deep in the route tree (authentication) can
//! leave the user id for the request's log line without threading it through
//! every handler.

use std::sync::{Arc, Mutex};

tokio::task_local! {
    static CURRENT: RequestContext;
}

#[derive(Clone, Default)]
pub struct RequestContext {
    user_id: Arc<Mutex<Option<String>>>,
}

impl RequestContext {
    /// Runs `future` (the route filters of one request) with this context.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    pub fn user_id(&self) -> Option<String> {
        self.user_id.lock().ok().and_then(|u| u.clone())
    }
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

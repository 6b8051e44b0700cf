//! `GET /plugins`: what is loaded. Admins also see files, builds, load
//! errors and call statistics.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use warp::{Filter, Rejection, Reply, reply::Response};

use super::{
    filters::{authenticated, with_state},
    handle,
};
use crate::{app::State, auth::Requester, error::ApiError};

pub fn routes(state: State) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("plugins")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(authenticated(state))
        .and_then(|s, r| handle(list(s, r)))
}

async fn list(state: State, me: Requester) -> Result<Response, ApiError> {
    let host = &state.plugins;
    let plugins: Vec<Value> = host
        .plugins()
        .iter()
        .map(|p| {
            let mut entry = serde_json::to_value(&p.manifest).unwrap_or_default();
            if me.is_admin {
                let stats = host.stats(p.name());
                let calls = stats.calls.load(Ordering::Relaxed);
                let micros = stats.total_micros.load(Ordering::Relaxed);
                entry["file"] = json!(p.file.display().to_string());
                entry["build"] = json!(p.build);
                entry["stats"] = json!({
                    "calls": calls,
                    "failures": stats.failures.load(Ordering::Relaxed),
                    "mean_ms": if calls == 0 { 0.0 } else { micros as f64 / calls as f64 / 1000.0 },
                });
            }
            entry
        })
        .collect();
    let mut body = json!({ "plugins": plugins });
    if me.is_admin {
        let errors: Vec<Value> = host
            .load_errors()
            .into_iter()
            .map(|(file, error)| json!({"file": file.display().to_string(), "error": error}))
            .collect();
        body["errors"] = json!(errors);
    }
    Ok(warp::reply::json(&body).into_response())
}

//! A fake Discord API on localhost, behind `discord.api_base`.
//!
//! Authorization codes choose the behaviour:
//! - `ok-<id>`: grant for user `<id>` valid a week; `short-<id>`: valid an hour
//! - `noscope-<id>`: grant without the `identify` scope
//! - `badjson`: 200 with a body that is not JSON
//! - `slow`: answers after 5 s (beyond the server's timeout)
//! - `down`: 500
//! - anything else: 400 `invalid_grant`
//!
//! Refresh tokens are `rt-<id>`; `rt-revoked` fails. Access tokens are
//! `at-<id>-<n>`. Every token request's form is recorded.
//!
//! Direct messages: `POST /users/@me/channels {recipient_id}` answers the
//! channel `dm-<id>`, `POST /channels/dm-<id>/messages {content}` records
//! the message with its recipient and the `Authorization` sent.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;
use warp::{Filter, http::StatusCode, reply::Reply};

#[derive(Clone, Default)]
pub struct FakeDiscord {
    pub base: String,
    requests: Arc<Mutex<Vec<HashMap<String, String>>>>,
    messages: Arc<Mutex<Vec<DirectMessage>>>,
}

/// A direct message the server sent through the fake.
#[derive(Clone, Debug)]
pub struct DirectMessage {
    pub recipient: String,
    pub content: String,
    pub authorization: String,
}

impl FakeDiscord {
    /// Starts the fake on a free port inside the current runtime.
    pub async fn start() -> Self {
        let requests: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let recorded = requests.clone();
        let token = warp::post()
            .and(warp::path!("oauth2" / "token"))
            .and(warp::body::form::<HashMap<String, String>>())
            .then(move |form: HashMap<String, String>| {
                recorded.lock().unwrap().push(form.clone());
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { token_response(form, n).await }
            });
        let me = warp::get()
            .and(warp::path!("users" / "@me"))
            .and(warp::header::optional::<String>("authorization"))
            .map(|auth: Option<String>| {
                let id = auth
                    .as_deref()
                    .and_then(|a| a.strip_prefix("Bearer at-"))
                    .and_then(|rest| rest.split('-').next())
                    .map(str::to_owned);
                match id {
                    Some(id) => warp::reply::json(&json!({
                        "id": id,
                        "username": format!("user{id}"),
                        "global_name": format!("User {id}"),
                        "avatar": format!("avatar{id}"),
                        "discriminator": "0",
                    }))
                    .into_response(),
                    None => status(
                        StatusCode::UNAUTHORIZED,
                        json!({"message": "401: Unauthorized"}),
                    ),
                }
            });
        let channel = warp::post()
            .and(warp::path!("users" / "@me" / "channels"))
            .and(warp::body::json::<serde_json::Value>())
            .map(|body: serde_json::Value| {
                let id = body["recipient_id"].as_str().unwrap_or_default().to_owned();
                warp::reply::json(&json!({ "id": format!("dm-{id}"), "type": 1 })).into_response()
            });
        let messages: Arc<Mutex<Vec<DirectMessage>>> = Arc::default();
        let sent = messages.clone();
        let message = warp::post()
            .and(warp::path!("channels" / String / "messages"))
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::json::<serde_json::Value>())
            .map(
                move |channel: String, auth: Option<String>, body: serde_json::Value| {
                    sent.lock().unwrap().push(DirectMessage {
                        recipient: channel.trim_start_matches("dm-").to_owned(),
                        content: body["content"].as_str().unwrap_or_default().to_owned(),
                        authorization: auth.unwrap_or_default(),
                    });
                    warp::reply::json(&json!({ "id": "1" })).into_response()
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake discord");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let routes = token.or(me).unify().or(channel).unify().or(message).unify();
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        Self {
            base: format!("http://{addr}"),
            requests,
            messages,
        }
    }

    /// The direct messages sent so far.
    pub fn messages(&self) -> Vec<DirectMessage> {
        self.messages.lock().unwrap().clone()
    }

    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.requests.lock().unwrap().clone()
    }
}

fn status(code: StatusCode, body: serde_json::Value) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(&body), code).into_response()
}

fn grant(id: &str, n: u64, expires_in: i64, scope: &str) -> warp::reply::Response {
    warp::reply::json(&json!({
        "access_token": format!("at-{id}-{n}"),
        "token_type": "Bearer",
        "expires_in": expires_in,
        "refresh_token": format!("rt-{id}"),
        "scope": scope,
    }))
    .into_response()
}

async fn token_response(form: HashMap<String, String>, n: u64) -> warp::reply::Response {
    let invalid = || status(StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}));
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            if let Some(id) = code.strip_prefix("ok-") {
                grant(id, n, 604_800, "identify email")
            } else if let Some(id) = code.strip_prefix("short-") {
                grant(id, n, 3_600, "identify")
            } else if let Some(id) = code.strip_prefix("noscope-") {
                grant(id, n, 604_800, "email")
            } else if code == "badjson" {
                warp::reply::with_status("<html>oops</html>", StatusCode::OK).into_response()
            } else if code == "slow" {
                tokio::time::sleep(Duration::from_secs(5)).await;
                grant("1", n, 604_800, "identify")
            } else if code == "down" {
                status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"message": "down"}),
                )
            } else {
                invalid()
            }
        }
        Some("refresh_token") => match form
            .get("refresh_token")
            .and_then(|t| t.strip_prefix("rt-"))
        {
            Some("revoked") | None => invalid(),
            Some(id) => grant(id, n, 604_800, "identify"),
        },
        _ => invalid(),
    }
}

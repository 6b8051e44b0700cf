//! `pd2 login`: RFC 8628's device flow. The terminal shows a code and an
//! address; the student approves the code in any browser where they are
//! signed in; the CLI, polling, receives a token of its own.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::{
    client::Client,
    credentials::{self, Credentials},
    error::{CliError, Kind, Result},
    output::Output,
};

#[derive(Deserialize)]
struct DeviceStart {
    device_code: String,
    user_code: String,
    verification_url: String,
    verification_url_complete: String,
    interval: u64,
    expires_in: u64,
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
}

/// How the device describes itself to the person approving it: the
/// program, this machine and the account on it.
fn client_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unnamed machine".into());
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_default();
    let who = if user.is_empty() {
        String::new()
    } else {
        format!(" ({user})")
    };
    format!("pd2 {} on {host}{who}", env!("CARGO_PKG_VERSION"))
}

pub async fn login(server: &str, out: &Output) -> Result<()> {
    let client = Client::new(server, None)?;
    let start: DeviceStart = {
        let response = client
            .send(
                client
                    .request(Method::POST, "/device/code")
                    .json(&json!({ "client_name": client_name() })),
            )
            .await?;
        client.json(response).await?
    };
    if out.json {
        out.line(&json!({
            "user_code": start.user_code,
            "verification_url": start.verification_url,
            "verification_url_complete": start.verification_url_complete,
            "expires_in": start.expires_in,
        }));
    } else {
        out.say(&format!(
            "Your one-time code: {}\n\
             Open {}\n\
             in a browser (on any computer), sign in with Discord, check that it shows the same code, and approve it.\n\
             Waiting for approval (the code expires in {} minutes; Ctrl-C to stop)…",
            start.user_code,
            start.verification_url_complete,
            start.expires_in.div_ceil(60)
        ));
    }
    // The code is printed for a person to compare: only its shape.
    let shaped = start.user_code.len() == 9
        && start.user_code.bytes().enumerate().all(|(i, b)| {
            if i == 4 {
                b == b'-'
            } else {
                b.is_ascii_uppercase()
            }
        });
    if !shaped {
        return Err(CliError::unavailable(format!(
            "{} answered a sign-in code that is not one: is it a PD2 Ticket server?",
            client.server
        )));
    }
    let token = poll(&client, &start).await?;
    // Who this is, for the messages of later commands.
    let me_client = Client::new(&client.server, Some(token.clone()))?;
    let me: serde_json::Value = me_client.get_json("/user/@me").await?;
    let credentials = Credentials {
        server: client.server.clone(),
        token,
        user_id: me["id"].as_str().unwrap_or_default().to_owned(),
        username: me["username"].as_str().unwrap_or_default().to_owned(),
    };
    let path = credentials::save(&credentials)?;
    let name = me["display_name"].as_str().unwrap_or(&credentials.username);
    if out.json {
        out.line(&json!({
            "server": credentials.server,
            "user": me,
            "credentials": path,
        }));
    } else {
        out.say(&format!(
            "✓ Signed in to {} as {}.\n  Kept in {} (only you can read it); `pd2 logout` signs this terminal out.\n  Next: `pd2 upload FOLDER` shares a folder.",
            credentials.server,
            crate::text::printable(name),
            path.display()
        ));
    }
    Ok(())
}

async fn poll(client: &Client, start: &DeviceStart) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(start.expires_in.min(3600));
    let mut interval = Duration::from_secs(start.interval.clamp(1, 60));
    // Answers lost in a row: a flaky network is waited out for about a
    // minute, a server gone (or a certificate refused) is said.
    let mut lost = 0;
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() > deadline {
            return Err(CliError::auth(
                "the code expired before it was approved: run `pd2 login` again",
            ));
        }
        let response = client
            .request(Method::POST, "/device/token")
            .json(&json!({ "device_code": start.device_code }))
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                lost += 1;
                if lost >= 12 {
                    return Err(client.unreachable(e));
                }
                continue;
            }
        };
        if response.status().is_server_error() {
            lost += 1;
            if lost >= 12 {
                return Err(client.refusal(response).await);
            }
            continue;
        }
        lost = 0;
        if response.status().is_success() {
            let token: Token = client.json(response).await?;
            return Ok(token.access_token);
        }
        if response.status() != reqwest::StatusCode::BAD_REQUEST {
            return Err(client.refusal(response).await);
        }
        let body: serde_json::Value = client.json(response).await.unwrap_or_default();
        match body["error"].as_str().unwrap_or_default() {
            "authorization_pending" => {}
            "slow_down" => interval += Duration::from_secs(5),
            "access_denied" => {
                return Err(CliError::auth("the sign-in was denied in the browser"));
            }
            "expired_token" => {
                return Err(CliError::auth(
                    "the code expired before it was approved: run `pd2 login` again",
                ));
            }
            _ => {
                return Err(CliError::auth(format!(
                    "the server refused the sign-in: {}",
                    body["detail"].as_str().unwrap_or("unknown device code")
                )));
            }
        }
    }
}

/// `pd2 logout`: signs this terminal out on the server (its token stops
/// working everywhere at once) and forgets it here.
pub async fn logout(out: &Output) -> Result<()> {
    let Some(stored) = credentials::load()? else {
        out.result(&json!({ "signed_out": false }), "Not signed in.");
        return Ok(());
    };
    let client = Client::new(&stored.server, Some(stored.token.clone()))?;
    let revoked = client
        .send(client.request(Method::DELETE, "/device/token"))
        .await;
    match revoked {
        // Ended now, or already over (revoked in the app, expired, or not
        // a terminal's token): nothing is left to end on the server.
        Ok(_) => {}
        Err(e) if matches!(e.kind, Kind::Auth | Kind::Refused) => {}
        // The server was not told: the token still works there, so it is
        // kept here for another try.
        Err(e) => {
            return Err(CliError::new(
                e.kind,
                format!(
                    "{}; still signed in: run `pd2 logout` again, or sign this terminal out on {}/#/device",
                    e.message, stored.server
                ),
            ));
        }
    }
    credentials::remove()?;
    // Not secret: where `pd2 login` signs in next time without --server.
    credentials::remember_server(&stored.server);
    out.result(
        &json!({ "signed_out": true, "server": stored.server }),
        &format!("Signed out of {}.", stored.server),
    );
    Ok(())
}

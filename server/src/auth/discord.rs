//! Discord OAuth2: code exchange, refresh, and the current user's profile.
//! Every failure collapses into [`DiscordError`]; the API answers it with
//! `401 Authorize failed` and logs the reason.

use std::time::Duration;

use serde::Deserialize;

use crate::{
    config::DiscordConfig,
    store::{DiscordTokens, UserProfile},
};

#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("request to Discord failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("Discord answered {0}")]
    Status(reqwest::StatusCode),
    #[error("Discord did not grant the `identify` scope (granted: {0:?})")]
    MissingScope(String),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: String,
    expires_in: i64,
    #[serde(default)]
    scope: String,
}

/// A fresh grant: the tokens to store and how long our JWT may live.
pub struct Grant {
    pub tokens: DiscordTokens,
    pub expires_in: i64,
}

#[derive(Clone)]
pub struct Discord {
    http: reqwest::Client,
    config: DiscordConfig,
}

impl Discord {
    pub fn new(config: &DiscordConfig) -> anyhow::Result<Self> {
        // TLS through rustls with `ring` (see the workspace's Cargo.toml):
        // installed here, where the one client of the server is built.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .user_agent(concat!("pd2-ticket/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            config: config.clone(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_base.trim_end_matches('/'))
    }

    pub async fn exchange_code(&self, code: &str) -> Result<Grant, DiscordError> {
        self.token(&[("grant_type", "authorization_code"), ("code", code)])
            .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<Grant, DiscordError> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    async fn token(&self, grant: &[(&str, &str)]) -> Result<Grant, DiscordError> {
        let mut form = vec![
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret.as_str()),
            ("redirect_uri", self.config.redirect_uri.as_str()),
        ];
        form.extend_from_slice(grant);
        let response = self
            .http
            .post(self.url("/oauth2/token"))
            .form(&form)
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(DiscordError::Status(response.status()));
        }
        let token: TokenResponse = response.json().await?;
        if !token.scope.split_whitespace().any(|s| s == "identify") {
            return Err(DiscordError::MissingScope(token.scope));
        }
        Ok(Grant {
            expires_in: token.expires_in,
            tokens: DiscordTokens {
                access_token: token.access_token,
                refresh_token: token.refresh_token,
                expires_at: super::jwt::now() + token.expires_in,
                scope: token.scope,
            },
        })
    }

    /// Whether direct messages can be sent (`discord.bot_token` is set).
    pub fn can_message(&self) -> bool {
        !self.config.bot_token.is_empty()
    }

    /// Sends `content` to a user as a direct message from the bot: opens
    /// (or finds) the DM channel, then posts to it.
    pub async fn direct_message(&self, user_id: &str, content: &str) -> Result<(), DiscordError> {
        #[derive(Deserialize)]
        struct Channel {
            id: String,
        }
        let bot = format!("Bot {}", self.config.bot_token);
        let response = self
            .http
            .post(self.url("/users/@me/channels"))
            .header(reqwest::header::AUTHORIZATION, &bot)
            .json(&serde_json::json!({ "recipient_id": user_id }))
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(DiscordError::Status(response.status()));
        }
        let channel: Channel = response.json().await?;
        let response = self
            .http
            .post(self.url(&format!("/channels/{}/messages", channel.id)))
            .header(reqwest::header::AUTHORIZATION, &bot)
            .json(&serde_json::json!({
                "content": content,
                // A name or link in the text never pings anyone.
                "allowed_mentions": { "parse": [] },
            }))
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(DiscordError::Status(response.status()));
        }
        Ok(())
    }

    pub async fn current_user(&self, access_token: &str) -> Result<UserProfile, DiscordError> {
        let response = self
            .http
            .get(self.url("/users/@me"))
            .bearer_auth(access_token)
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(DiscordError::Status(response.status()));
        }
        Ok(response.json().await?)
    }
}

//! The server as the CLI sees it: one HTTP client, and every answer that
//! is not a success turned into a [`CliError`] with the server's own
//! `detail`.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{CliError, Result};

/// JSON answers read at most (a list of 100 tickets is a few KiB).
const MAX_JSON: usize = 16 * 1024 * 1024;
/// An error answer's body read at most.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub struct Client {
    http: reqwest::Client,
    /// `https://host` (no trailing `/`).
    pub server: String,
    token: Option<String>,
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("pd2/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            // Between two reads; a whole upload or download may take longer.
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| CliError::local(format!("cannot start an HTTP client: {e}")))?;
        Ok(Self {
            http,
            server: normalise_server(server)?,
            token,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends, and turns a failure (no answer, or an error status) into
    /// the error a person reads.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.refusal(response).await)
        }
    }

    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self.send(self.request(Method::GET, path)).await?;
        self.json(response).await
    }

    /// A success's JSON body, read up to a bound.
    pub async fn json<T: DeserializeOwned>(&self, response: Response) -> Result<T> {
        let bytes = read_limited(response, MAX_JSON)
            .await
            .map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            CliError::unavailable(format!(
                "{} answered something that is not PD2 Ticket's JSON ({e}): is it the right address?",
                self.server
            ))
        })
    }

    pub fn unreachable(&self, error: reqwest::Error) -> CliError {
        let mut cause = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(s) = source {
            cause = s.to_string();
            source = s.source();
        }
        if error.is_timeout() {
            CliError::unavailable(format!("{} did not answer in time ({cause})", self.server))
        } else {
            CliError::unavailable(format!("cannot reach {} ({cause})", self.server))
        }
    }

    /// An error answer as a person reads it: the server's `detail`, and
    /// what to do about it.
    pub async fn refusal(&self, response: Response) -> CliError {
        let status = response.status();
        let retry = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(response, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        // The server's words on one line (a detail with line breaks would
        // pose as more of our output).
        let detail = value["detail"]
            .as_str()
            .map(crate::text::printable)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        let mut message = format!("{detail} ({})", status.as_u16());
        if detail == "Ticket not found" {
            message.push_str(": check the id (`pd2 list` shows your tickets); another's private ticket is not found either");
        }
        if let Some(rejections) = value["rejections"].as_array() {
            for r in rejections.iter().take(200) {
                message.push_str(&format!("\n  {}", crate::text::rejection(r)));
            }
        }
        match status {
            StatusCode::UNAUTHORIZED => CliError::auth(message),
            StatusCode::FORBIDDEN if detail == "Invalid authentication credentials" => {
                CliError::auth(format!(
                    "the server does not accept your sign-in ({}): run `pd2 login`",
                    status.as_u16()
                ))
            }
            s if s.is_server_error() => {
                if let Some(retry) = retry {
                    message.push_str(&format!("; try again in {retry} s"));
                }
                CliError::unavailable(format!("{}: {message}", self.server))
            }
            _ => {
                if let Some(retry) = retry {
                    message.push_str(&format!("; try again in {retry} s"));
                }
                CliError::refused(message)
            }
        }
    }
}

/// `https://host/` → `https://host`; an address without a scheme is
/// refused rather than guessed (http or https matters).
pub fn normalise_server(server: &str) -> Result<String> {
    let server = server.trim().trim_end_matches('/');
    let Some(rest) = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
    else {
        return Err(CliError::local(format!(
            "`{server}` is not a server address: give it with http:// or https://"
        )));
    };
    if rest.is_empty() || rest.contains(['#', '?', ' ']) {
        return Err(CliError::local(format!(
            "`{server}` is not a server address"
        )));
    }
    Ok(server.to_owned())
}

async fn read_limited(mut response: Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if out.len() + chunk.len() > limit {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

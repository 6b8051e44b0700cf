//! Our own tokens: HS256 JWTs carrying the display data the front end decodes.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::store::{SettingsStore, StoreError, UserProfile};

/// A user as every client sees them (`author.display_data`, `/user/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DisplayData {
    pub id: String,
    pub username: String,
    pub global_name: Option<String>,
    pub avatar: Option<String>,
    pub is_admin: bool,
    pub display_name: String,
    pub display_avatar: String,
}

impl DisplayData {
    pub fn new(profile: &UserProfile, is_admin: bool) -> Self {
        let display_name = profile
            .global_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| profile.username.clone());
        let display_avatar = match &profile.avatar {
            Some(hash) if !hash.is_empty() => {
                format!(
                    "https://cdn.discordapp.com/avatars/{}/{hash}.png",
                    profile.id
                )
            }
            _ => "https://cdn.discordapp.com/embed/avatars/0.png".to_owned(),
        };
        Self {
            id: profile.id.clone(),
            username: profile.username.clone(),
            global_name: profile.global_name.clone(),
            avatar: profile.avatar.clone(),
            is_admin,
            display_name,
            display_avatar,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(flatten)]
    pub user: DisplayData,
    /// Unix seconds.
    pub exp: i64,
    pub iat: i64,
    /// The device session a device's token belongs to (`pd2 login`):
    /// such a token is valid only while the session is (signing out ends
    /// it). Absent from tokens of a browser sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl Claims {
    pub fn seconds_left(&self) -> i64 {
        self.exp - now()
    }
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Keys {
    fn new(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

/// Issues and verifies tokens. Without a configured secret the key is
/// fetched (or generated) from MongoDB on first use, so the server can start
/// while the database is down and every instance shares the same key.
pub struct TokenService {
    configured: Option<String>,
    settings: SettingsStore,
    keys: OnceCell<Keys>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TokenService {
    pub fn new(configured: &str, settings: SettingsStore) -> Self {
        Self {
            configured: (!configured.is_empty()).then(|| configured.to_owned()),
            settings,
            keys: OnceCell::new(),
        }
    }

    async fn keys(&self) -> Result<&Keys, StoreError> {
        self.keys
            .get_or_try_init(|| async {
                let secret = match &self.configured {
                    Some(s) => s.clone(),
                    None => {
                        let candidate = hex::encode(rand::random::<[u8; 32]>());
                        self.settings.jwt_secret_or_insert(&candidate).await?
                    }
                };
                Ok(Keys::new(secret.as_bytes()))
            })
            .await
    }

    /// Loads (or generates) the secret now, so that tokens stay verifiable
    /// through a later database outage.
    pub async fn warm(&self) -> Result<(), StoreError> {
        self.keys().await.map(|_| ())
    }

    /// Signs a token for `user` valid for `ttl_seconds` from now.
    pub async fn issue(&self, user: DisplayData, ttl_seconds: i64) -> Result<String, TokenError> {
        self.issue_for(user, ttl_seconds, None).await
    }

    /// Signs a token for `user`, of the device session `sid` if any.
    pub async fn issue_for(
        &self,
        user: DisplayData,
        ttl_seconds: i64,
        sid: Option<String>,
    ) -> Result<String, TokenError> {
        let iat = now();
        let claims = Claims {
            user,
            exp: iat + ttl_seconds,
            iat,
            sid,
        };
        let keys = self.keys().await?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)
            .map_err(|_| TokenError::Invalid)
    }

    /// Verifies signature, algorithm (HS256 only) and the presence of `exp`
    /// and `iat`; with `allow_expired` an expired token still passes.
    pub async fn verify(&self, token: &str, allow_expired: bool) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iat"]);
        validation.validate_exp = !allow_expired;
        let keys = self.keys().await?;
        jsonwebtoken::decode::<Claims>(token, &keys.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(global_name: Option<&str>, avatar: Option<&str>) -> UserProfile {
        UserProfile {
            id: "42".into(),
            username: "alice".into(),
            global_name: global_name.map(Into::into),
            avatar: avatar.map(Into::into),
        }
    }

    #[test]
    fn display_falls_back_to_username_and_default_avatar() {
        let d = DisplayData::new(&profile(None, None), false);
        assert_eq!(d.display_name, "alice");
        assert_eq!(
            d.display_avatar,
            "https://cdn.discordapp.com/embed/avatars/0.png"
        );
    }

    #[test]
    fn display_prefers_global_name_and_avatar_hash() {
        let d = DisplayData::new(&profile(Some("Alice A."), Some("abc")), true);
        assert_eq!(d.display_name, "Alice A.");
        assert_eq!(
            d.display_avatar,
            "https://cdn.discordapp.com/avatars/42/abc.png"
        );
        assert!(d.is_admin);
    }
}

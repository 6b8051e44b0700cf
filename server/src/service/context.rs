//! The context: the services every request may use (store, plugin host,
//! tokens, Discord, limits, janitor), built once at start. Building it
//! starts nothing; `server` is where tasks are spawned and requests served.

use std::sync::Arc;

use crate::{
    auth::{Discord, TokenService},
    config::Config,
    plugins::PluginHost,
    store::{Janitor, Store, UploadMemory},
};

/// Everything a request handler needs, built once at start.
pub struct Context {
    pub config: Config,
    pub store: Store,
    pub tokens: TokenService,
    pub discord: Discord,
    pub plugins: Arc<PluginHost>,
    /// The preview service's slots and recent failures.
    pub previews: super::previews::Previews,
    pub janitor: Arc<Janitor>,
    pub upload_memory: Arc<UploadMemory>,
}

/// The context as handlers and background tasks hold it.
pub type Ctx = Arc<Context>;

impl Context {
    pub async fn new(config: Config) -> anyhow::Result<Ctx> {
        // Before connecting: a budget too small to hold one upload is a
        // configuration error, said at once.
        let upload_memory = Arc::new(UploadMemory::new(&config.limits)?);
        let store = Store::connect(&config.mongodb).await?;
        let tokens = TokenService::new(&config.auth.jwt_secret, store.settings.clone());
        let discord = Discord::new(&config.discord)?;
        let plugins = PluginHost::new(&config.plugins, super::previews::policy::check_type)?;
        let previews = super::previews::Previews::new(&config.plugins);
        let janitor = Arc::new(Janitor::new(store.clone(), config.limits.upload_idle()));
        Ok(Arc::new(Self {
            config,
            store,
            tokens,
            discord,
            plugins,
            previews,
            janitor,
            upload_memory,
        }))
    }

    /// Admin rights come from the config at request time.
    pub fn is_admin(&self, user_id: &str) -> bool {
        self.config.discord.admins.iter().any(|a| a == user_id)
    }
}

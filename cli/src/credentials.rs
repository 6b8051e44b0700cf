//! Where a sign-in is kept: `$XDG_CONFIG_HOME/pd2/credentials.json` (or
//! `~/.config/pd2/…`), readable by its owner only (mode 0600 in a 0700
//! folder): on a shared workstation nobody else may read the token.
//! `PD2_SERVER` and `PD2_TOKEN` stand in for it (CI jobs, scripts).

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// The server's address (`https://tickets.example.edu`).
    pub server: String,
    pub token: String,
    /// Who signed in, for messages (`Signed in as alice`).
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub username: String,
}

/// The folder of pd2's files.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("pd2"));
    }
    if let Some(dir) = std::env::var_os("APPDATA").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("pd2"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("pd2")),
        None => Err(CliError::local(
            "cannot find a folder for the sign-in: set HOME or XDG_CONFIG_HOME",
        )),
    }
}

pub fn path() -> Result<PathBuf> {
    Ok(config_dir()?.join("credentials.json"))
}

/// The stored sign-in, if any.
pub fn load() -> Result<Option<Credentials>> {
    let path = path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::local(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        CliError::local(format!(
            "{} is damaged ({e}): run `pd2 logout` and sign in again",
            path.display()
        ))
    })
}

/// Stores a sign-in: written whole to a new file of mode 0600, then
/// renamed over the old one, so a crash never leaves half a token and the
/// token is never readable by others, not even for a moment.
pub fn save(credentials: &Credentials) -> Result<PathBuf> {
    let dir = config_dir()?;
    create_private_dir(&dir)?;
    let path = dir.join("credentials.json");
    let temp = dir.join(format!(".credentials.{}.tmp", std::process::id()));
    let text = serde_json::to_string_pretty(credentials)
        .map_err(|e| CliError::local(format!("cannot encode the sign-in: {e}")))?;
    let written = (|| -> std::io::Result<()> {
        // Left by a process of the same id that died mid-write.
        let _ = std::fs::remove_file(&temp);
        let mut file = private_file(&temp)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(CliError::local(format!(
            "cannot write {}: {e}",
            path.display()
        )));
    }
    Ok(path)
}

/// Forgets the stored sign-in: whether there was one.
pub fn remove() -> Result<bool> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CliError::local(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir);
    made.and_then(|()| {
        // An existing folder others can read is closed too.
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
        Ok(())
    })
    .map_err(|e| CliError::local(format!("cannot create {}: {e}", dir.display())))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::local(format!("cannot create {}: {e}", dir.display())))
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Remembers the server signed out of, so the next `pd2 login` needs no
/// `--server` (best effort: it is a convenience).
pub fn remember_server(server: &str) {
    if let Ok(dir) = config_dir() {
        let _ = std::fs::write(dir.join("last-server"), format!("{server}\n"));
    }
}

/// The server last signed out of, if remembered.
pub fn last_server() -> Option<String> {
    let text = std::fs::read_to_string(config_dir().ok()?.join("last-server")).ok()?;
    let server = text.trim();
    (!server.is_empty()).then(|| server.to_owned())
}

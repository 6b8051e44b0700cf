//! Every failure is one line for people and an exit code for scripts
//! (docs/cli.md lists them).

use std::process::ExitCode;

/// What kind of failure, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything local: a file that cannot be read or written (1).
    Local,
    /// Asked wrongly: an argument that cannot be what it names (2, as
    /// clap's own usage errors).
    Usage,
    /// Not signed in, a token refused, a sign-in denied or expired (3).
    Auth,
    /// The server (or the check before sending) refused the request:
    /// not found, too large, a file the course does not accept (4).
    Refused,
    /// The server cannot be reached or is unavailable (5).
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub kind: Kind,
    pub message: String,
}

impl CliError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub fn local(message: impl Into<String>) -> Self {
        Self::new(Kind::Local, message)
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Kind::Usage, message)
    }
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(Kind::Auth, message)
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(Kind::Refused, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Kind::Unavailable, message)
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self.kind {
            Kind::Local => 1,
            Kind::Usage => 2,
            Kind::Auth => 3,
            Kind::Refused => 4,
            Kind::Unavailable => 5,
        })
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

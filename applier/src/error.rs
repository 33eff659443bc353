//! The applier's errors and the exit codes they map to.
//!
//! Operators script around ferry (timers, fleet tools), so the class of a
//! failure is part of the interface: a rejected signature (3) is an alarm, a
//! held lock (75, EX_TEMPFAIL) means "try again later", a failed pre-flight
//! check (5) means "this node is not ready for the release", anything else
//! (1) needs a look at the message.

use std::io;
use std::path::PathBuf;

use manifests::FormatError;
use thiserror::Error;

pub const EXIT_ERROR: u8 = 1;
pub const EXIT_VERIFICATION: u8 = 3;
/// `ferry verify`: the installed files differ from their signed manifest.
pub const EXIT_DRIFT: u8 = 4;
/// `ferry preflight` and `ferry apply`: a pre-flight check failed (disk,
/// memory, a release requirement); nothing was changed.
pub const EXIT_PREFLIGHT: u8 = 5;
pub const EXIT_LOCKED: u8 = 75;
/// `ferry check`: a newer release is available (0 means up to date).
pub const EXIT_UPDATE_AVAILABLE: u8 = 100;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error(
        "another ferry operation is running (lock {path} is held); try again when it has finished"
    )]
    LockHeld { path: PathBuf },

    /// Data from the repository failed verification: nothing from it was used.
    #[error("verification failed: {0}")]
    Verification(String),

    #[error(transparent)]
    Format(#[from] FormatError),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// The installed files differ from their signed manifest.
    #[error("{0}")]
    Drift(String),

    /// A pre-flight check failed: the node lacks what the release needs.
    #[error("{0}")]
    Preflight(String),

    #[error("{0}")]
    Other(String),
}

impl NodeError {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        NodeError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn verification(message: impl Into<String>) -> Self {
        NodeError::Verification(message.into())
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            NodeError::LockHeld { .. } => EXIT_LOCKED,
            NodeError::Verification(_) | NodeError::Format(_) => EXIT_VERIFICATION,
            NodeError::Drift(_) => EXIT_DRIFT,
            NodeError::Preflight(_) => EXIT_PREFLIGHT,
            NodeError::Io { .. } | NodeError::Other(_) => EXIT_ERROR,
        }
    }
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

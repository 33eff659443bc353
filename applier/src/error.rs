//! The applier's errors and the exit codes they map to.
//!
//! Operators script around ferry (timers, fleet tools), so the class of a
//! failure is part of the interface: a rejected signature (3) is an alarm, a
//! held lock (75, EX_TEMPFAIL) means "try again later", a rolled-back
//! update (6) means the node is on its old release and the new one needs a
//! look, a failed pre-flight check (5) means "this node is not ready for
//! the release", anything else (1) needs a look at the message.
//!
//! Every code:
//! - 0: success (`ferry check`: up to date, or nothing newer the policy's
//!   version rules allow; `ferry apply --unattended`: installed, or
//!   deferred by `[policy]`, which is the policy working, not a failure);
//! - 1 ([`EXIT_ERROR`]): anything else; read the message;
//! - 3 ([`EXIT_VERIFICATION`]): data from the repository failed
//!   verification;
//! - 4 ([`EXIT_DRIFT`]): `ferry verify` found installed files differing
//!   from their signed manifest;
//! - 5 ([`EXIT_PREFLIGHT`]): a pre-flight check failed (disk, memory, a
//!   release requirement); nothing was changed;
//! - 6 ([`EXIT_ROLLED_BACK`]): `ferry apply`: the new release went live,
//!   failed (service command, health gate, `post_apply`) and was rolled
//!   back; the old release runs;
//! - 75 ([`EXIT_LOCKED`]): another ferry operation holds the lock;
//! - 100 ([`EXIT_UPDATE_AVAILABLE`]): `ferry check`: an update is available
//!   and `[policy]` allows installing it now;
//! - 101 ([`EXIT_UPDATE_DEFERRED`]): `ferry check`: an update is available
//!   but `[policy]` defers it (window, blackout, soak, `auto = false`).

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
/// `ferry apply`: the new release went live but failed (a service
/// command, the health gate or `post_apply`) and was rolled back: the node
/// runs its old release.
pub const EXIT_ROLLED_BACK: u8 = 6;
/// `ferry apply`: the fleet is halted (`<prefix>/halt` in etcd); this
/// node did not update.
pub const EXIT_HALTED: u8 = 7;
pub const EXIT_LOCKED: u8 = 75;
/// `ferry check`: a newer release is available and the policy allows
/// installing it now (0 means up to date).
pub const EXIT_UPDATE_AVAILABLE: u8 = 100;
/// `ferry check`: a newer release is available, but the policy defers it.
pub const EXIT_UPDATE_DEFERRED: u8 = 101;

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
    /// The update was undone after its switch; the old release runs.
    #[error("{0}")]
    RolledBack(String),
    /// The fleet is halted: the update was refused, nothing switched.
    #[error("{0}")]
    Halted(String),

    /// `current` was switched but the journal could not record it (a
    /// full `state_dir`): the switch was undone before any service saw it.
    #[error("{cause}; {undone}")]
    SwitchNotRecorded {
        cause: Box<NodeError>,
        /// What was undone, and what runs now.
        undone: String,
    },

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
            NodeError::RolledBack(_) => EXIT_ROLLED_BACK,
            NodeError::Halted(_) => EXIT_HALTED,
            NodeError::Io { .. } | NodeError::SwitchNotRecorded { .. } | NodeError::Other(_) => {
                EXIT_ERROR
            }
        }
    }
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

//! The applier's errors, and the exit status each maps to (one `match`,
//! [`NodeError::exit`]; the statuses themselves are in [`crate::exit`]).

use std::io;
use std::path::PathBuf;

use manifests::FormatError;
use semver::Version;
use thiserror::Error;

pub use crate::exit::Exit;

/// A request `ferry apply` turns down before any operation starts: what
/// was asked for is not on offer (not in the channel, older than what
/// runs, not allowed by `[policy]`). Nothing was fetched or changed; the
/// history records it as `refused`, and no `failed` notification is sent:
/// the node is fine, the request was wrong.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    #[error(
        "channel {channel:?} is not in the repository (channels: {}); check repository.channel",
        list_or_none(known)
    )]
    UnknownChannel { channel: String, known: Vec<String> },
    #[error(
        "version {version} is not published on channel {channel:?} (published: {})",
        list_or_none(published)
    )]
    UnknownVersion {
        version: Version,
        channel: String,
        published: Vec<String>,
    },
    #[error("{target} is older than the installed {installed}: use `ferry rollback --to {target}` if it is still on disk, or `ferry apply --version {target} --allow-downgrade`")]
    Downgrade { target: Version, installed: Version },
    #[error("{target} can only be installed over {min} or later; this node runs {installed}: apply {min} first (`ferry apply --version {min}`)")]
    TooOldToUpgrade {
        target: Version,
        min: Version,
        installed: Version,
    },
    /// `--version` names a release `[policy]` pin, max_version or
    /// exclude_versions does not allow.
    #[error("{version} is not allowed by the policy: {reason}; choose another version, change [policy], or pass --ignore-policy")]
    Policy { version: Version, reason: String },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

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
    /// The request was turned down before any operation started (boxed:
    /// it carries the channel's versions, and every `Result` pays for the
    /// largest variant).
    #[error(transparent)]
    Refused(Box<Refusal>),

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

impl From<Refusal> for NodeError {
    fn from(refusal: Refusal) -> Self {
        NodeError::Refused(Box::new(refusal))
    }
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

    /// The exit status this error ends `ferry` with.
    pub fn exit(&self) -> Exit {
        match self {
            NodeError::LockHeld { .. } => Exit::Locked,
            NodeError::Verification(_) | NodeError::Format(_) => Exit::Verification,
            NodeError::Drift(_) => Exit::Drift,
            NodeError::Preflight(_) => Exit::Preflight,
            NodeError::RolledBack(_) => Exit::RolledBack,
            NodeError::Halted(_) => Exit::Halted,
            NodeError::Refused(_) => Exit::Refused,
            NodeError::Io { .. } | NodeError::SwitchNotRecorded { .. } | NodeError::Other(_) => {
                Exit::Error
            }
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.exit().code()
    }

    /// The last `--output json` event of a command that ends with this
    /// error (README: `rolled_back`, `halted`, `refused` or `failed`).
    pub fn final_event(&self) -> crate::events::Event {
        use crate::events::Event;
        match self {
            NodeError::RolledBack(_) => Event::RolledBack,
            NodeError::Halted(_) => Event::Halted,
            NodeError::Refused(_) => Event::Refused,
            _ => Event::Failed,
        }
    }
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

//! The applier's errors, and the exit status each maps to (one `match`,
//! [`NodeError::exit`]; the statuses themselves are in [`crate::exit`]).
//!
//! Every kind of failure is a variant of [`NodeError`], so the exit status
//! of a new kind is decided in that one `match` (it has no catch-all arm)
//! rather than wherever the failure happens. The details of a kind live
//! with the module that knows them (`coordination::CoordinationError`,
//! `migrations::MigrationError`, `store::DownloadError`, ...).

use std::io;
use std::path::PathBuf;

use manifests::FormatError;
use semver::Version;
use thiserror::Error;

pub use crate::exit::Exit;

/// A value in `ferry.toml` that parses but cannot be used, worded for the
/// operator: the key at fault, what is wrong with it, and what to write
/// instead (`coordination.max_unavailable must be at least 1`). Each
/// section's `check` returns it; [`ConfigError::Mistake`] adds the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct ConfigMistake(String);

impl ConfigMistake {
    pub fn new(message: impl Into<String>) -> ConfigMistake {
        ConfigMistake(message.into())
    }
}

fn one_line(message: &str) -> String {
    message.trim().replace('\n', "; ")
}

/// The configuration cannot be used: nothing was done.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Not TOML, or a key serde does not know (unknown keys are refused).
    /// One line: `at` names the line, then TOML's message without its
    /// multi-line excerpt.
    #[error("configuration {} is invalid: {at}{}", path.display(), one_line(source.message()))]
    Syntax {
        path: PathBuf,
        /// `line N (`…`): `, or empty when TOML gave no place.
        at: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("configuration {}: {mistake}", path.display())]
    Mistake {
        path: PathBuf,
        mistake: ConfigMistake,
    },
    /// `[policy]` compiled after loading (see `Config::policy`).
    #[error("configuration: {0}")]
    Policy(ConfigMistake),
    /// The `[trust]` X.509 keys, checked again when they are loaded.
    #[error("{0}")]
    Trust(ConfigMistake),
}

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

    /// The configuration (or its `[policy]`, `[trust]`) cannot be used.
    #[error(transparent)]
    Config(Box<ConfigError>),
    /// The turn through etcd (`[coordination]`) could not be taken or
    /// kept, or a fleet command could not be carried out; the node did not
    /// update.
    #[error(transparent)]
    Coordination(Box<crate::coordination::CoordinationError>),
    /// A data migration was refused, failed, or could not be reverted.
    #[error(transparent)]
    Migration(Box<crate::migrations::MigrationError>),
    /// Too little disk space for the update: the disk pre-flight check.
    #[error(transparent)]
    NotEnoughSpace(Box<crate::space::NotEnoughSpace>),
    /// A source did not serve a file (not found, HTTP error, network).
    #[error(transparent)]
    Fetch(Box<crate::transport::FetchError>),
    /// A download could not be completed; what was fetched is kept.
    #[error(transparent)]
    Download(Box<crate::store::DownloadError>),
    /// Every source of the repository failed for one file, none with bad
    /// data (that is [`NodeError::Verification`]).
    #[error(transparent)]
    NoSource(Box<crate::sources::NoSource>),
    /// https cannot be set up: no CA certificates to trust.
    #[error(transparent)]
    Tls(Box<crate::transport::TlsSetupError>),
    /// The trust anchors of `[trust] x509_roots` cannot be used.
    #[cfg(feature = "x509")]
    #[error(transparent)]
    X509(Box<crate::x509::X509Error>),
    /// The base a delta patch applies to is gone; the full object is used.
    #[error("cannot open the delta base {} ({described}): {source}", path.display())]
    DeltaBaseGone {
        path: PathBuf,
        /// Where the base was found: "the store", "installed file …".
        described: String,
        #[source]
        source: io::Error,
    },
    /// A state file ferry wrote cannot be parsed back.
    #[error("{} is corrupt ({source}); {if_corrupt}", path.display())]
    CorruptState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
        /// What the operator can do about it.
        if_corrupt: &'static str,
    },
    /// A restore point's record cannot be parsed back.
    #[error("{} is corrupt: {source}", path.display())]
    CorruptRestorePoint {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `repository.url` serves no `index.json`.
    #[error("no repository index at {url}: check repository.url")]
    NoIndex { url: String },
    /// A release the node needs (to repair or verify it) is no longer
    /// listed on its channel. (A `--version` that is not published is a
    /// [`Refusal::UnknownVersion`] instead.)
    #[error(
        "version {version} is not published on channel {channel:?} (published: {})",
        list_or_none(published)
    )]
    NotPublished {
        version: Box<Version>,
        channel: String,
        published: Vec<String>,
    },
    /// The release declares things this ferry cannot honour (hooks).
    #[error("release {version} declares {}, which this ferry {} cannot run: upgrade ferry first", features.join(" and "), env!("CARGO_PKG_VERSION"))]
    Unsupported {
        version: Box<Version>,
        features: Vec<&'static str>,
    },
    /// A release with setuid, setgid or sticky bits on a node that does
    /// not allow them (`[install] allow_special_modes`).
    #[error(transparent)]
    SpecialModes(Box<crate::special_modes::SpecialModes>),
    /// A command that works on the installed release found none.
    #[error("nothing is installed on this node yet: run `ferry apply`")]
    NothingInstalled,
    /// A release with rollout waves needs this node's id, and it has none.
    #[error(
        "this node has no id to place it in the release's rollout waves: {} is missing or empty and the hostname is unset or \"localhost\"; set [node] id in the configuration (a name unique in the fleet), or run systemd-machine-id-setup",
        crate::node_id::MACHINE_ID_PATH
    )]
    NoNodeId,
    /// `--bundle` names something that is not a regular file.
    #[error("the bundle {} is not a regular file: copy it to a file first", path.display())]
    BundleNotAFile { path: PathBuf },
    /// `ferry repair` could not put every file back.
    #[error("repair left differences:\n  {}", differences.join("\n  "))]
    RepairIncomplete { differences: Vec<String> },
    /// A rollback's target differs from its kept manifest and repairing it
    /// could not run (disk full, repository unreachable, an object gone):
    /// the switch is refused, and the status is the cause's, so a full disk
    /// is not reported as tampering.
    #[error("release {target} differs from its signed manifest and repairing it failed, refusing to switch to it (nothing live was changed): {source}\n  once that is fixed, run `ferry rollback` again, or `ferry apply --version {target}` to rebuild it")]
    RepairFailed {
        target: Version,
        #[source]
        source: Box<NodeError>,
    },
    /// `ferry install-units` cannot write the units it was asked for.
    #[error(transparent)]
    Units(Box<crate::commands::install_units::UnitsError>),
    /// `FERRY_NOW` (fault-injection builds only) is not a time.
    #[error("FERRY_NOW={text:?} is not an RFC 3339 time such as 2030-01-01T00:00:00Z: {source}")]
    BadClock {
        text: String,
        #[source]
        source: jiff::Error,
    },

    /// An operation's own failure (`crate::operation::error`).
    #[error(transparent)]
    Operation(Box<crate::operation::error::OperationError>),
}

impl From<Refusal> for NodeError {
    fn from(refusal: Refusal) -> Self {
        NodeError::Refused(Box::new(refusal))
    }
}

/// The boxed variants: `?` boxes their details (every `Result` pays for
/// the largest variant, so the large ones live behind a pointer).
macro_rules! boxed_from {
    ($($variant:ident($type:ty)),* $(,)?) => {
        $(impl From<$type> for NodeError {
            fn from(e: $type) -> Self {
                NodeError::$variant(Box::new(e))
            }
        })*
    };
}

boxed_from!(
    Operation(crate::operation::error::OperationError),
    Config(ConfigError),
    Coordination(crate::coordination::CoordinationError),
    Migration(crate::migrations::MigrationError),
    NotEnoughSpace(crate::space::NotEnoughSpace),
    Download(crate::store::DownloadError),
    NoSource(crate::sources::NoSource),
    Tls(crate::transport::TlsSetupError),
    Units(crate::commands::install_units::UnitsError),
    SpecialModes(crate::special_modes::SpecialModes),
);

#[cfg(feature = "x509")]
boxed_from!(X509(crate::x509::X509Error));

impl From<crate::policy::PolicyError> for NodeError {
    fn from(e: crate::policy::PolicyError) -> Self {
        match e {
            crate::policy::PolicyError::VersionRefused { version, reason } => {
                Refusal::Policy { version, reason }.into()
            }
        }
    }
}

impl NodeError {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        NodeError::Io {
            context: context.into(),
            source,
        }
    }

    /// A failed write of the local file `path`: names it, and for a full
    /// filesystem which one and what to do.
    pub fn writing(path: &std::path::Path, source: io::Error) -> Self {
        let hint = crate::space::write_failure_hint(path, &source);
        NodeError::Io {
            context: format!("cannot write {}{hint}", path.display()),
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
            // Special mode bits are refused with the unsafe paths: the
            // signed manifest asks for something this node will not make.
            NodeError::Verification(_) | NodeError::Format(_) | NodeError::SpecialModes(_) => {
                Exit::Verification
            }
            NodeError::Drift(_) => Exit::Drift,
            NodeError::RepairFailed { source, .. } => source.exit(),
            NodeError::Preflight(_) | NodeError::NotEnoughSpace(_) => Exit::Preflight,
            NodeError::RolledBack(_) => Exit::RolledBack,
            NodeError::Halted(_) => Exit::Halted,
            NodeError::Refused(_) => Exit::Refused,
            // A migration script that is not the one its signed manifest
            // pins is content failing verification, like a bad object.
            NodeError::Migration(e)
                if matches!(**e, crate::migrations::MigrationError::ScriptAltered { .. }) =>
            {
                Exit::Verification
            }
            #[cfg(feature = "x509")]
            NodeError::X509(_) => Exit::Error,
            NodeError::Io { .. }
            | NodeError::SwitchNotRecorded { .. }
            | NodeError::Config(_)
            | NodeError::Coordination(_)
            | NodeError::Migration(_)
            | NodeError::Fetch(_)
            | NodeError::Download(_)
            | NodeError::NoSource(_)
            | NodeError::Tls(_)
            | NodeError::DeltaBaseGone { .. }
            | NodeError::CorruptState { .. }
            | NodeError::CorruptRestorePoint { .. }
            | NodeError::NoIndex { .. }
            | NodeError::NotPublished { .. }
            | NodeError::Unsupported { .. }
            | NodeError::NothingInstalled
            | NodeError::NoNodeId
            | NodeError::BundleNotAFile { .. }
            | NodeError::RepairIncomplete { .. }
            | NodeError::Units(_)
            | NodeError::BadClock { .. }
            | NodeError::Operation(_) => Exit::Error,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyError;

    #[test]
    fn each_kind_of_failure_ends_with_its_documented_exit() {
        let v = |s: &str| Version::parse(s).unwrap();
        // A disk short of space is a failed pre-flight check (README: 5)
        // wherever it is found, not a plain error.
        let space = crate::space::NotEnoughSpace {
            to: v("2.0.0"),
            short: Vec::new(),
            in_place: false,
        };
        assert_eq!(NodeError::from(space).exit(), Exit::Preflight);
        // A rollback target whose repair could not run keeps its cause's
        // status: a full disk is not tampering.
        let repair_failed = |source| NodeError::RepairFailed {
            target: v("1.0.0"),
            source: Box::new(source),
        };
        let full = io::Error::from_raw_os_error(28);
        assert_eq!(
            repair_failed(NodeError::io("cannot write x", full)).exit(),
            Exit::Error
        );
        assert_eq!(
            repair_failed(NodeError::verification("bad object")).exit(),
            Exit::Verification
        );
        // A version the policy does not allow is a refusal, however it is
        // reached; a broken [policy] is an error.
        let refused = PolicyError::VersionRefused {
            version: v("2.0.0"),
            reason: "it is listed in policy.exclude_versions".into(),
        };
        let refused = NodeError::from(refused);
        assert_eq!(refused.exit(), Exit::Refused);
        assert_eq!(refused.final_event(), crate::events::Event::Refused);
        let mistake = ConfigError::Mistake {
            path: "/etc/ferry/ferry.toml".into(),
            mistake: ConfigMistake::new("install.keep_releases must be at least 2"),
        };
        assert_eq!(
            NodeError::from(mistake).to_string(),
            "configuration /etc/ferry/ferry.toml: install.keep_releases must be at least 2"
        );
        let turn = crate::coordination::CoordinationError::NotConfigured;
        assert_eq!(NodeError::from(turn).exit(), Exit::Error);
        assert_eq!(NodeError::NoNodeId.exit(), Exit::Error);
    }

    #[test]
    fn no_kind_makes_every_result_larger() {
        // Every `Result` in the node pays for the largest variant: the
        // details of the kinds are boxed, so none outgrows the format
        // errors `NodeError` has always carried.
        let (error, format) = (
            std::mem::size_of::<NodeError>(),
            std::mem::size_of::<FormatError>(),
        );
        assert!(
            error <= format + 8,
            "NodeError {error} bytes, FormatError {format}"
        );
    }
}

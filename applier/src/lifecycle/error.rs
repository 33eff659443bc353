//! What goes wrong around the switch, by kind: a hook or service command,
//! a reload signal, the health gate, an instance that will not stop.

use std::path::PathBuf;

use semver::Version;

use crate::http_probe::ProbeError;
use crate::shell::CommandError;

/// A hook, service command or health gate that did not do its part.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A hook or service command failed, timed out or did not start.
    #[error(transparent)]
    Command(Box<CommandError>),
    #[error("service.reload_signal needs service.pid_file")]
    NoPidFile,
    #[error("cannot read pid file {}: {source}", path.display())]
    PidFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pid file {} does not hold a pid", path.display())]
    NoPid { path: PathBuf },
    #[error("cannot signal pid {pid} from {}: {source}", path.display())]
    Signal {
        pid: i32,
        path: PathBuf,
        #[source]
        source: rustix::io::Errno,
    },
    #[error("service.reload_signal {0:?} is not one of HUP, USR1, USR2, TERM, INT, QUIT, WINCH")]
    UnknownSignal(String),
    #[error(transparent)]
    Unhealthy(Box<Unhealthy>),
    /// Blue-green: the candidate passed, the old instance still answers.
    #[error("{new} is healthy but {old} did not stop: {cause}")]
    OldDidNotStop {
        new: Version,
        old: Version,
        cause: Box<ServiceError>,
    },
    /// Blue-green, on the way back: the candidate may still run.
    #[error("{version} could NOT be stopped: {cause}")]
    CandidateNotStopped {
        version: Version,
        cause: Box<ServiceError>,
    },
}

/// The health gate's verdict on a release that did not pass it.
#[derive(Debug, thiserror::Error)]
#[error("{version} is not healthy after {probes} probes in {seconds:.1}s: {last}")]
pub struct Unhealthy {
    pub version: Version,
    pub probes: u32,
    pub seconds: f64,
    /// What the last probe saw.
    pub last: ProbeFailure,
}

/// One failed health probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeFailure {
    #[error(transparent)]
    NoAnswer(Box<ProbeError>),
    #[error("GET {url} answered {status}, expected {expected}{excerpt}")]
    Status {
        url: String,
        status: u16,
        expected: u16,
        excerpt: String,
    },
    #[error("GET {url} answered {status} without version {version}{excerpt}")]
    NoVersion {
        url: String,
        status: u16,
        version: Version,
        excerpt: String,
    },
    #[error(transparent)]
    Command(Box<CommandError>),
}

// The large details live behind a pointer: every `Result` pays for the
// largest variant.
impl From<CommandError> for ServiceError {
    fn from(e: CommandError) -> Self {
        ServiceError::Command(Box::new(e))
    }
}

impl From<Box<Unhealthy>> for ServiceError {
    fn from(e: Box<Unhealthy>) -> Self {
        ServiceError::Unhealthy(e)
    }
}

impl From<ProbeError> for ProbeFailure {
    fn from(e: ProbeError) -> Self {
        ProbeFailure::NoAnswer(Box::new(e))
    }
}

impl From<CommandError> for ProbeFailure {
    fn from(e: CommandError) -> Self {
        ProbeFailure::Command(Box::new(e))
    }
}

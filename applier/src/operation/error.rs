//! How an operation fails, by kind: each says what happened to the node
//! (nothing changed, switched back, stays switched) and what to do next.

use std::path::PathBuf;

use semver::Version;

/// The failures of the table's moves and of the checks before it.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The `pre_apply` (or an operator's `pre_rollback`) hook failed before
    /// the switch: nothing changed.
    #[error("{cause}; {}", match rollback { true => "nothing was switched".to_string(), false => format!("the update was stopped before the switch, {runs} still runs") })]
    PreHookFailed {
        cause: String,
        runs: String,
        rollback: bool,
    },
    /// The pull-mode turn was lost just before the switch.
    #[error("{cause}; {runs} still runs")]
    TurnLost { cause: String, runs: String },
    /// An `up` migration failed; this run's ups were undone by their downs.
    #[error("{to} was not installed: {failure}")]
    MigrationsFailed { to: Version, failure: String },
    /// The rename of `current` failed.
    #[error("cannot switch {} to {to}: {cause}{reverted}", root.display())]
    SwitchFailed {
        root: PathBuf,
        to: Version,
        cause: std::io::Error,
        /// What became of this update's migrations ("" if none ran).
        reverted: String,
    },
    /// An operator's rollback switched, but its release did not go into
    /// service; the node stays where the operator sent it.
    #[error("{0}")]
    NotInService(String),
    /// In place: the new files were written and undone from the restore
    /// point (the message says why).
    #[error("{0}")]
    InPlaceUndone(String),
    /// In place: the written files do not match what was planned.
    #[error("the written files do not match: {}", problems.join("; "))]
    InPlaceMismatch { problems: Vec<String> },
    /// In place: the plan that names the restore point is gone.
    #[error("{context}the in-place plan is missing; {next}")]
    InPlacePlanMissing { context: String, next: &'static str },
    /// In place: the release writes files outside `install.targets`.
    #[error("release {version} writes outside install.targets: {}; add the paths to install.targets if ferry should manage them — nothing was changed", outside.join(", "))]
    OutsideTargets {
        version: Version,
        outside: Vec<String>,
    },
    /// In place: a release with migrations (they run from a staged tree).
    #[error("release {0} ships data migrations, which ferry runs only in symlink mode (install.mode = \"symlink\"): in-place mode has no staged release to run them from before the files change; install it on a node in symlink mode, or run its migrations/ scripts by hand")]
    MigrationsInPlace(Version),
    /// The installed release differs from its signed manifest.
    #[error("the running release {target} differs from its signed manifest:\n  {}\nrestore it from its package or remove the changes; ferry will not overwrite the running tree", problems.join("\n  "))]
    RunningTreeDiffers {
        target: Version,
        problems: Vec<String>,
    },
    /// Recovery needs a coordination slot it could not take.
    #[error("{what}: not recovered yet, it waits for a coordination slot: {cause}")]
    RecoveryWaitsForSlot { what: String, cause: String },
    /// `ferry rollback` without `--to` on a node with no previous release.
    #[error("no previous release to roll back to (see `ferry status`); use `ferry rollback --to VERSION`")]
    NoPrevious,
    /// `ferry rollback --to V` for a release not on disk.
    #[error("release {target} is not on disk (on disk: {}); install it with `ferry apply --version {target} --allow-downgrade`", if on_disk.is_empty() { "none".to_string() } else { on_disk.join(", ") })]
    NotOnDisk {
        target: Version,
        on_disk: Vec<String>,
    },
    /// In place: no restore point holds the rollback's target.
    #[error("no restore point holds {0} (see `ferry restore-points list`); install it with `ferry apply --version {0} --allow-downgrade`")]
    NoRestorePoint(Version),
    /// A move the table does not have: a bug, said rather than panicked.
    #[error("no move follows step {step} of the journal in {}: this is a bug in ferry; run `ferry repair`", state_dir.display())]
    NoMove { step: String, state_dir: PathBuf },
    /// An update reached its fetch without a verified plan: a bug.
    #[error("an update reached its fetch without a verified plan: this is a bug in ferry")]
    NoPlan,
}

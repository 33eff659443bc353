//! `ferry`: parses arguments, loads the configuration, dispatches.

// Lines on stdout/stderr that a closed pipe cannot turn into a panic.
#[macro_use]
extern crate ferry_output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry_node::commands::{self, apply::ApplyArgs, install_units::InstallUnitsArgs};
use ferry_node::config::{Config, DEFAULT_CONFIG_PATH};
use ferry_node::error::NodeError;
use ferry_node::events::{self, Event, OutputMode};
use ferry_node::exit::Exit;
use semver::Version;

#[cfg(feature = "coordinator")]
mod rollout;

/// How a command failed: the node's errors, or the coordinator's for
/// `ferry rollout …`. Each knows its exit status (both from the one table
/// in `ferry_node::exit`) and the last `--output json` event.
#[derive(Debug)]
enum Failure {
    Node(NodeError),
    #[cfg(feature = "coordinator")]
    Coordinator(ferry_coordinator::error::CoordinatorError),
}

impl Failure {
    fn exit(&self) -> Exit {
        match self {
            Failure::Node(e) => e.exit(),
            #[cfg(feature = "coordinator")]
            Failure::Coordinator(e) => e.exit(),
        }
    }

    fn final_event(&self) -> Event {
        match self {
            Failure::Node(e) => e.final_event(),
            #[cfg(feature = "coordinator")]
            Failure::Coordinator(e) => e.final_event(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Node(e) => e.fmt(f),
            #[cfg(feature = "coordinator")]
            Failure::Coordinator(e) => e.fmt(f),
        }
    }
}

impl From<NodeError> for Failure {
    fn from(e: NodeError) -> Self {
        Failure::Node(e)
    }
}

#[cfg(feature = "coordinator")]
impl From<ferry_coordinator::error::CoordinatorError> for Failure {
    fn from(e: ferry_coordinator::error::CoordinatorError) -> Self {
        Failure::Coordinator(e)
    }
}

/// ferry updates this node from a signed release repository, atomically.
#[derive(Parser)]
#[command(name = "ferry", version, about, long_about = None)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "FERRY_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// `human` (lines, progress bars on a terminal) or `json` (one JSON
    /// event per line on stdout, for machines; `apply` and `rollback`).
    #[arg(long, global = true, value_enum, default_value = "human")]
    output: OutputMode,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Update to the newest release [policy] allows (or to --version).
    Apply {
        /// Install this version instead of the channel's latest.
        #[arg(long)]
        version: Option<Version>,
        /// Print the plan (what to fetch, bytes, space) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow --version to name a release older than the installed one.
        #[arg(long)]
        allow_downgrade: bool,
        /// Apply from an offline bundle (`ferry-publish bundle`) instead of
        /// repository.url; it is verified exactly like a repository.
        #[arg(long, value_name = "FILE.tar")]
        bundle: Option<PathBuf>,
        /// Run by a timer: install only when [policy] allows it now
        /// (windows, blackout dates, soak, auto); otherwise say when, exit 0.
        #[arg(long)]
        unattended: bool,
        /// Ignore [policy] pin, max_version and exclude_versions for this run.
        #[arg(long, conflicts_with = "unattended")]
        ignore_policy: bool,
    },
    /// Tell whether an update is available, whether [policy] allows it now, and what it would download (exit 10: available now, 11: deferred by policy, 0: up to date).
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Switch back to the previous release (or to --to), re-verified from disk.
    Rollback {
        #[arg(long)]
        to: Option<Version>,
    },
    /// Show the current and previous release and the last operation.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List past operations and their outcome.
    History {
        #[arg(long)]
        json: bool,
    },
    /// Show the data migrations this node ran and those still pending.
    Migrations {
        #[arg(long)]
        json: bool,
    },
    /// Run the checks `apply` runs before writing anything (disk, memory, the
    /// release's requirements) and report each (exit 5 if one fails).
    Preflight {
        /// Check this version instead of the channel's latest.
        #[arg(long)]
        version: Option<Version>,
        #[arg(long)]
        json: bool,
    },
    /// Compare the installed files with their signed manifest (exit 4 if they differ).
    Verify,
    /// Restore the installed files to their signed manifest, fetching what is missing.
    Repair,
    /// Inspect or prune the restore points in-place operations make.
    #[command(subcommand)]
    RestorePoints(RestorePointsCommand),
    /// Write the systemd service and timer that run `ferry apply --unattended` hourly (runs no systemctl).
    InstallUnits {
        /// Where to write ferry-update.service and ferry-update.timer.
        #[arg(long, default_value = commands::install_units::DEFAULT_UNIT_DIR)]
        dir: PathBuf,
        /// The ferry the service runs [default: this executable].
        #[arg(long, value_name = "PATH")]
        ferry_path: Option<PathBuf>,
        /// Replace unit files that differ from what would be written.
        #[arg(long)]
        force: bool,
    },
    /// Coordinate a cluster rollout from an inventory (cluster.toml).
    #[cfg(feature = "coordinator")]
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// The fleet's turns in etcd ([coordination]): status, halt, clear-halt, forget.
    #[command(subcommand)]
    Coordination(CoordinationCommand),
}

#[derive(Subcommand)]
enum CoordinationCommand {
    /// Show the halt key, the nodes updating and waiting, and every member's version.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Remove the halt key a failed update wrote, so that nodes update again.
    ClearHalt,
    /// Halt the fleet by hand: no node takes a slot until clear-halt.
    Halt {
        /// Why, for the operators who will read `coordination status`.
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Remove a node that left the fleet from the members a leader waits for.
    Forget {
        /// The node's id ([node] id), as `coordination status` lists it.
        node: String,
    },
}

#[derive(Subcommand)]
enum RestorePointsCommand {
    /// Every restore point, oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The paths a restore point holds; checks every saved file's SHA-256.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Keep only the newest N restore points.
    Clean {
        #[arg(long)]
        keep: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A level, not a filter expression: env-filter's regex engine would add
    // a third to the static binary for a feature nodes do not need.
    let level = std::env::var("FERRY_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::WARN);
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        // Its default reports a failed write with `eprintln!`, which panics
        // when stderr is a closed pipe: a log line is never worth an apply.
        .log_internal_errors(false);
    // Colour only on a terminal without NO_COLOR: a log file or journald
    // would keep the escapes. Never `with_ansi(true)`: a build without
    // tracing-subscriber's `ansi` feature (the node-only binary) panics
    // on it in debug builds; its default is already "no colour" there.
    if ferry_output::stderr_wants_colour() {
        logs.init();
    } else {
        logs.with_ansi(false).init();
    }
    events::set_mode(cli.output);
    match run(cli) {
        Ok(exit) => ExitCode::from(exit),
        Err(e) => {
            // Parts from outside are escaped where they are quoted; this
            // is the last guard before the terminal.
            errln!(
                "ferry: error: {}",
                manifests::untrusted_text::escape_keeping_lines(&e.to_string())
            );
            events::emit(
                e.final_event(),
                serde_json::json!({ "message": e.to_string(), "exit_code": e.exit().code() }),
            );
            ExitCode::from(e.exit())
        }
    }
}

/// Runs the command; returns the exit status of a success (`check` has
/// three, `preflight` two).
fn run(cli: Cli) -> Result<Exit, Failure> {
    // Loaded by the commands that need it: units are installed before
    // there may be a configuration (only its path goes into them).
    let config_path = cli.config;
    let config = || Config::load(&config_path);
    match cli.command {
        Command::InstallUnits {
            dir,
            ferry_path,
            force,
        } => commands::install_units::run(&InstallUnitsArgs {
            dir,
            ferry_path,
            config: config_path.clone(),
            force,
        }),
        Command::Check { json } => {
            return commands::check::run(&config()?, json).map_err(Failure::from)
        }
        Command::Preflight { version, json } => {
            return commands::preflight::run(&config()?, version, json).map_err(Failure::from)
        }
        Command::Apply {
            version,
            dry_run,
            allow_downgrade,
            bundle,
            unattended,
            ignore_policy,
        } => commands::apply::run(
            &config()?,
            &ApplyArgs {
                version,
                dry_run,
                allow_downgrade,
                bundle,
                unattended,
                ignore_policy,
            },
        ),
        Command::Rollback { to } => commands::rollback::run(&config()?, to),
        Command::Status { json } => commands::status::run(&config()?, json),
        Command::History { json } => commands::history::run(&config()?, json),
        Command::Migrations { json } => commands::migrations::run(&config()?, json),
        Command::Verify => commands::verify::run(&config()?),
        Command::Repair => commands::repair::run(&config()?),
        Command::RestorePoints(RestorePointsCommand::List { json }) => {
            commands::restore_points::list(&config()?, json)
        }
        Command::RestorePoints(RestorePointsCommand::Show { id, json }) => {
            commands::restore_points::show(&config()?, &id, json)
        }
        Command::RestorePoints(RestorePointsCommand::Clean { keep }) => {
            commands::restore_points::clean(&config()?, keep)
        }
        #[cfg(feature = "coordinator")]
        Command::Rollout(command) => {
            return rollout::run(command)
                .map(|()| Exit::Success)
                .map_err(Failure::from)
        }
        Command::Coordination(CoordinationCommand::Status { json }) => {
            commands::coordination::status(&config()?, json)
        }
        Command::Coordination(CoordinationCommand::Halt { reason }) => {
            commands::coordination::halt(&config()?, &reason)
        }
        Command::Coordination(CoordinationCommand::Forget { node }) => {
            commands::coordination::forget(&config()?, &node)
        }
        Command::Coordination(CoordinationCommand::ClearHalt) => {
            commands::coordination::clear_halt(&config()?)
        }
    }
    .map(|()| Exit::Success)
    .map_err(Failure::from)
}

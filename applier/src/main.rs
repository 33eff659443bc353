//! `ferry`: parses arguments, loads the configuration, dispatches.

// Lines on stdout/stderr that a closed pipe cannot turn into a panic.
#[macro_use]
extern crate ferry_output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry::commands::rollout::{PolicyOverrides, StartArgs};
use ferry::commands::{self, apply::ApplyArgs, install_units::InstallUnitsArgs};
use ferry::config::{Config, DEFAULT_CONFIG_PATH};
use ferry::error::NodeError;
use ferry::events::{self, OutputMode};
use ferry::exit::Exit;
use ferry::rollout::api::ServeArgs;
use ferry::rollout::inventory::{Canary, Promote, RollbackScope};
use ferry::rollout::record::DEFAULT_STATE_DIR;
use semver::Version;

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
    #[command(subcommand)]
    Rollout(RolloutCommand),
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

/// Where the coordinator keeps its rollout records (`<DIR>/rollouts/<id>.json`).
#[derive(clap::Args)]
struct CoordinatorState {
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

#[derive(Subcommand)]
enum RolloutCommand {
    /// Roll --version out to the inventory's nodes (--dry-run: only show the plan).
    Start {
        /// The cluster: nodes, transport and [rollout] policy.
        #[arg(long, value_name = "cluster.toml")]
        inventory: PathBuf,
        #[arg(long)]
        version: Version,
        /// Print the stages and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        policy: PolicyFlags,
        #[command(flatten)]
        state: CoordinatorState,
    },
    /// Show one rollout: its stages and each node's state.
    Status {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: CoordinatorState,
    },
    /// List the rollouts, oldest first.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: CoordinatorState,
    },
    /// Stop a rollout: no more nodes, no rollback.
    Abort {
        id: String,
        #[command(flatten)]
        state: CoordinatorState,
    },
    /// Continue a rollout a killed coordinator left.
    Resume {
        id: String,
        #[command(flatten)]
        state: CoordinatorState,
    },
    /// Go on past the canary.
    Promote {
        id: String,
        #[command(flatten)]
        state: CoordinatorState,
    },
    /// Plan a rollout of --version and save it, without starting it (prints its id).
    Plan {
        /// The cluster: nodes, transport and [rollout] policy.
        #[arg(long, value_name = "cluster.toml")]
        inventory: PathBuf,
        #[arg(long)]
        version: Version,
        #[command(flatten)]
        policy: PolicyFlags,
        #[command(flatten)]
        state: CoordinatorState,
    },
    /// Start a planned rollout.
    Execute {
        id: String,
        #[command(flatten)]
        state: CoordinatorState,
    },
    /// Return every node a rollout updated to its old version, newest first.
    Rollback {
        id: String,
        #[command(flatten)]
        state: CoordinatorState,
    },
    /// Serve the rollout HTTP API and the live dashboard.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8480.
        #[arg(long, value_name = "ADDR")]
        listen: String,
        /// File holding the bearer token every request must carry (mode 0600).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// The cluster the API plans rollouts for.
        #[arg(long, value_name = "cluster.toml")]
        inventory: PathBuf,
        /// Seconds between the comment lines that keep an idle watch stream
        /// open through proxies with shorter idle timeouts.
        #[arg(long, value_name = "SECONDS", default_value_t = 15,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        heartbeat_seconds: u64,
        #[command(flatten)]
        state: CoordinatorState,
    },
}

/// Flags that override the inventory's [rollout] keys for one rollout.
#[derive(clap::Args)]
struct PolicyFlags {
    /// Overrides [rollout] canary: a node count or a percentage ("10%").
    #[arg(long)]
    canary: Option<Canary>,
    /// Overrides [rollout] max_unavailable.
    #[arg(long)]
    max_unavailable: Option<u32>,
    /// Overrides [rollout] bake_seconds.
    #[arg(long)]
    bake_seconds: Option<u64>,
    /// Overrides [rollout] promote.
    #[arg(long, value_enum)]
    promote: Option<Promote>,
    /// Overrides [rollout] rollback_on_failure.
    #[arg(long, value_enum)]
    rollback_on_failure: Option<RollbackScope>,
}

impl From<PolicyFlags> for PolicyOverrides {
    fn from(flags: PolicyFlags) -> PolicyOverrides {
        PolicyOverrides {
            canary: flags.canary,
            max_unavailable: flags.max_unavailable,
            bake_seconds: flags.bake_seconds,
            promote: flags.promote,
            rollback_on_failure: flags.rollback_on_failure,
        }
    }
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        // Its default reports a failed write with `eprintln!`, which panics
        // when stderr is a closed pipe: a log line is never worth an apply.
        .log_internal_errors(false)
        .init();
    events::set_mode(cli.output);
    match run(cli) {
        Ok(exit) => ExitCode::from(exit),
        Err(e) => {
            errln!("ferry: error: {e}");
            events::emit(
                e.final_event(),
                serde_json::json!({ "message": e.to_string(), "exit_code": e.exit_code() }),
            );
            ExitCode::from(e.exit())
        }
    }
}

/// Runs the command; returns the exit status of a success (`check` has
/// three, `preflight` two).
fn run(cli: Cli) -> Result<Exit, NodeError> {
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
        Command::Check { json } => return commands::check::run(&config()?, json),
        Command::Preflight { version, json } => {
            return commands::preflight::run(&config()?, version, json)
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
        Command::Rollout(command) => run_rollout(command),
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
}

/// The coordinator's commands need no node configuration.
fn run_rollout(command: RolloutCommand) -> Result<(), NodeError> {
    match command {
        RolloutCommand::Start {
            inventory,
            version,
            dry_run,
            json,
            policy,
            state,
        } => commands::rollout::start(&StartArgs {
            inventory,
            version,
            dry_run,
            json,
            state_dir: state.state_dir,
            overrides: policy.into(),
        }),
        RolloutCommand::Status { id, json, state } => {
            commands::rollout::status(&state.state_dir, &id, json)
        }
        RolloutCommand::List { json, state } => commands::rollout::list(&state.state_dir, json),
        RolloutCommand::Abort { id, state } => commands::rollout::abort(&state.state_dir, &id),
        RolloutCommand::Resume { id, state } => commands::rollout::resume(&state.state_dir, &id),
        RolloutCommand::Promote { id, state } => commands::rollout::promote(&state.state_dir, &id),
        RolloutCommand::Plan {
            inventory,
            version,
            policy,
            state,
        } => commands::rollout::plan(&inventory, &version, &policy.into(), &state.state_dir),
        RolloutCommand::Execute { id, state } => commands::rollout::execute(&state.state_dir, &id),
        RolloutCommand::Rollback { id, state } => {
            commands::rollout::rollback(&state.state_dir, &id)
        }
        RolloutCommand::Serve {
            listen,
            token_file,
            inventory,
            heartbeat_seconds,
            state,
        } => commands::rollout_serve::run(&ServeArgs {
            listen,
            token_file,
            inventory,
            state_dir: state.state_dir,
            heartbeat: std::time::Duration::from_secs(heartbeat_seconds),
        }),
    }
}

//! `ferry rollout …`: the coordinator's command line (built with the
//! default `coordinator` feature). The work is in the `ferry-coordinator`
//! crate; this only maps arguments onto it.

use std::path::PathBuf;

use clap::Subcommand;
use ferry_coordinator::api::ServeArgs;
use ferry_coordinator::commands::{self, PolicyOverrides, StartArgs};
use ferry_coordinator::error::CoordinatorError;
use ferry_coordinator::inventory::{Canary, Promote, RollbackScope};
use ferry_coordinator::record::DEFAULT_STATE_DIR;
use semver::Version;

/// Where the coordinator keeps its rollout records (`<DIR>/rollouts/<id>.json`).
#[derive(clap::Args)]
pub(crate) struct CoordinatorState {
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

#[derive(Subcommand)]
pub(crate) enum RolloutCommand {
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
    /// Stop a running rollout before its next stage until `resume`.
    Pause {
        id: String,
        #[command(flatten)]
        state: CoordinatorState,
    },
    /// Continue a paused rollout, or one a killed coordinator left.
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
        /// Serve HTTPS only, with this PEM certificate chain (needs --tls-key).
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Connections served at once; more are refused with 503 [default:
        /// 256, or half the open-file limit if that is lower].
        #[arg(long, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..=100_000))]
        max_connections: Option<u64>,
        #[command(flatten)]
        state: CoordinatorState,
    },
}

/// Flags that override the inventory's [rollout] keys for one rollout.
#[derive(clap::Args)]
pub(crate) struct PolicyFlags {
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
    /// Roll out a version older than some nodes run (each node's
    /// `ferry apply` gets --allow-downgrade); without it such a plan is refused.
    #[arg(long)]
    allow_downgrade: bool,
}

impl From<PolicyFlags> for PolicyOverrides {
    fn from(flags: PolicyFlags) -> PolicyOverrides {
        PolicyOverrides {
            canary: flags.canary,
            max_unavailable: flags.max_unavailable,
            bake_seconds: flags.bake_seconds,
            promote: flags.promote,
            rollback_on_failure: flags.rollback_on_failure,
            allow_downgrade: flags.allow_downgrade,
        }
    }
}

/// The coordinator's commands need no node configuration.
pub(crate) fn run(command: RolloutCommand) -> Result<(), CoordinatorError> {
    match command {
        RolloutCommand::Start {
            inventory,
            version,
            dry_run,
            json,
            policy,
            state,
        } => commands::start(&StartArgs {
            inventory,
            version,
            dry_run,
            json,
            state_dir: state.state_dir,
            overrides: policy.into(),
        }),
        RolloutCommand::Status { id, json, state } => commands::status(&state.state_dir, &id, json),
        RolloutCommand::List { json, state } => commands::list(&state.state_dir, json),
        RolloutCommand::Abort { id, state } => commands::abort(&state.state_dir, &id),
        RolloutCommand::Pause { id, state } => commands::pause(&state.state_dir, &id),
        RolloutCommand::Resume { id, state } => commands::resume(&state.state_dir, &id),
        RolloutCommand::Promote { id, state } => commands::promote(&state.state_dir, &id),
        RolloutCommand::Plan {
            inventory,
            version,
            policy,
            state,
        } => commands::plan(&inventory, &version, &policy.into(), &state.state_dir),
        RolloutCommand::Execute { id, state } => commands::execute(&state.state_dir, &id),
        RolloutCommand::Rollback { id, state } => commands::rollback(&state.state_dir, &id),
        RolloutCommand::Serve {
            listen,
            token_file,
            inventory,
            heartbeat_seconds,
            tls_cert,
            tls_key,
            max_connections,
            state,
        } => ferry_coordinator::api::serve(&ServeArgs {
            listen,
            token_file,
            inventory,
            state_dir: state.state_dir,
            heartbeat: std::time::Duration::from_secs(heartbeat_seconds),
            tls: tls_cert.zip(tls_key),
            max_connections: max_connections.map(|n| n as usize),
        }),
    }
}

//! `cargo xtask`: ferry's developer and release tasks, written in Rust so
//! they run the same on a laptop, in CI and on a fresh Debian machine without
//! a pile of shell scripts. This file only parses the command line and
//! dispatches; each task lives in its own module.

mod bench;
mod cmd;
mod demo;
mod deps;
mod dist;
mod fuzz;
mod lint_workflows;
mod publish;
mod test;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "ferry's developer and release tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Ensure test/build dependencies (minisign, musl-tools, zstd, the musl
    /// Rust target, actionlint); installs them when run as root.
    Deps {
        /// Only check; never install anything.
        #[arg(long)]
        check: bool,
    },
    /// Run every check: deps, rustfmt, clippy, workflow lint, all tests.
    Test,
    /// Lint .github/workflows/*.yml with actionlint (and shellcheck if present).
    LintWorkflows,
    /// Build the static `ferry` applier and `ferry-publish` into target/dist/.
    Dist {
        /// C library to link statically (default: musl, falling back to a
        /// static glibc build when the musl target or musl-gcc is missing).
        #[arg(long, value_enum)]
        target: Option<dist::Libc>,
    },
    /// Build dist binaries and publish them as a ferry release.
    Publish(publish::Args),
    /// Performance benchmarks of the release binaries (see docs/BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        what: bench::Bench,
    },
    /// Run every fuzz target (cargo-fuzz, fuzz/) for a bounded time.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Run only this target.
        #[arg(long)]
        target: Option<String>,
    },
    /// Run ferry's main job end to end on a sample application.
    Demo {
        /// Work in DIR (created if missing, must be empty) and keep it.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Deps { check } => deps::run(if check {
            deps::Mode::Check
        } else {
            deps::Mode::Ensure
        }),
        Task::Test => test::run(),
        Task::LintWorkflows => lint_workflows::run(),
        Task::Dist { target } => dist::run(target).map(drop),
        Task::Publish(args) => publish::run(&args),
        Task::Demo { keep } => demo::run(keep.as_deref()),
        Task::Bench { what } => bench::run(&what),
        Task::Fuzz { seconds, target } => fuzz::run(seconds, target.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

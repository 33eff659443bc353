//! `ferry-publish`: parse the command line, run the command, turn failures
//! into `error: ...` lines and an exit status. Everything else lives in the
//! library (src/lib.rs) so it can be tested without a process.
//!
//! Exit status: 0 success (including "already published"), 1 any error or
//! a failed `verify`, 2 usage errors (from clap).

// Lines on stdout/stderr that a closed pipe cannot turn into a panic.
#[macro_use]
extern crate ferry_output;

use std::process::ExitCode;

use clap::Parser;
use ferry_publish::cli::Cli;
use ferry_publish::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            errln!("error: {error}");
            for cause in error.chain().skip(1) {
                errln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Progress logging on stderr, off unless FERRY_LOG asks for it (e.g.
/// FERRY_LOG=info), so the normal output stays the short summary.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ferry_output::stderr_wants_colour())
        // Its default reports a failed write with `eprintln!`, which panics
        // when stderr is a closed pipe.
        .log_internal_errors(false)
        .init();
}

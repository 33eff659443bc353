//! One module per subcommand. Each turns parsed arguments into calls on the
//! library modules and into output for people; the rules live in the
//! library so tests and other tools can use them without the command line.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub mod bundle;
pub mod keygen;
pub mod list;
pub mod refresh;
pub mod release;
pub mod root;
pub mod verify;

/// Runs the parsed command line. `Ok` carries the exit code of a command
/// that ran to the end (verify exits 1 after listing problems); `Err` is a
/// failure for `main` to print.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Keygen(args) => keygen::run(&args),
        Command::Release(args) => release::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::List(args) => list::run(&args),
        Command::Refresh(args) => refresh::run(&args),
        Command::Root(command) => root::run(command),
        Command::Bundle(args) => bundle::run(&args),
    }
}

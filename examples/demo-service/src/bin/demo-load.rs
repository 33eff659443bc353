//! `demo-load`: runs the load generator for a while and prints its report
//! as JSON, so that a test can run it where the test itself cannot be
//! (inside a network namespace, with `ip netns exec`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ferry_demo_service::load::LoadGenerator;

/// Sends GET /version on a new connection per request, from N workers, for
/// S seconds; prints {"ok","failed","errors","versions"} as JSON.
#[derive(Parser)]
#[command(name = "demo-load", version, about, long_about = None)]
struct Args {
    #[arg(long, value_name = "A")]
    addr: SocketAddr,
    #[arg(long, value_name = "N", default_value_t = 4)]
    workers: usize,
    /// How long to run; fractions allowed (0.5).
    #[arg(long, value_name = "S")]
    seconds: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Ok(duration) = Duration::try_from_secs_f64(args.seconds) else {
        eprintln!(
            "demo-load: error: --seconds {} is not a duration: give a number of seconds >= 0",
            args.seconds
        );
        return ExitCode::from(2);
    };
    let load = LoadGenerator::start(args.addr, args.workers);
    std::thread::sleep(duration);
    let report = load.stop();
    match serde_json::to_string(&report) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo-load: error: cannot encode the report: {e}");
            ExitCode::FAILURE
        }
    }
}

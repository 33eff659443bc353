//! `demo-service`: parses arguments, starts the release, serves until
//! SIGTERM or SIGINT, stops gracefully; SIGHUP re-reads the release's
//! settings. The work is in the library.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ferry_demo_service::listener::bind_shared;
use ferry_demo_service::server::serve_until;
use ferry_demo_service::service::Service;
use ferry_demo_service::settings::{release_dir_of, ReleaseSettings};
use ferry_demo_service::signals::{signal_name, Asked, Signals};

/// How long requests in flight may take to finish once a stop begins.
const GRACE: Duration = Duration::from_secs(2);

/// A tiny HTTP service whose version and health come from the release it
/// runs from (DIR/demo.toml): GET /health, GET /version.
#[derive(Parser)]
#[command(name = "demo-service", version, about, long_about = None)]
struct Args {
    /// Address to listen on (SO_REUSEPORT: another instance may share it).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The release directory holding demo.toml [default: the parent of the
    /// directory holding this executable, as in <release>/bin/demo-service].
    /// SIGHUP reads DIR/demo.toml again: give a `current` symlink to follow
    /// the release it points to.
    #[arg(long, value_name = "DIR")]
    release_dir: Option<PathBuf>,
    /// Write the process id here once listening; removed on stop.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
}

/// Whether this binary was built to fail its health check, as a broken
/// build would: `DEMO_SERVICE_UNHEALTHY=1 cargo build -p ferry-demo-service`.
fn built_unhealthy() -> bool {
    option_env!("DEMO_SERVICE_UNHEALTHY") == Some("1")
}

fn main() -> ExitCode {
    // Before any thread exists: threads inherit the blocked signals.
    let signals = match Signals::block() {
        Ok(signals) => signals,
        Err(e) => return fail(&format!("cannot block SIGTERM, SIGINT and SIGHUP: {e}")),
    };
    let args = Args::parse();
    match run(&args, signals) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("demo-service[{}]: error: {message}", std::process::id());
    ExitCode::FAILURE
}

fn run(args: &Args, signals: Signals) -> Result<(), String> {
    let release_dir = match &args.release_dir {
        Some(dir) => dir.clone(),
        None => {
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot tell where this executable is: {e}"))?;
            release_dir_of(&exe)?
        }
    };
    let settings = ReleaseSettings::load(&release_dir)?;
    let start_delay = settings.start_delay();
    let service = Arc::new(Service::new(settings, built_unhealthy()));

    // The signal thread wakes the accept loop through this pair, with the
    // signal's number as the byte; a reload it does itself.
    let (mut stop_reader, mut stop_writer) =
        UnixStream::pair().map_err(|e| format!("cannot create the stop channel: {e}"))?;
    let reloaded = Arc::clone(&service);
    let settings_dir = release_dir.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match signals.wait() {
                Ok(Asked::Reload) => reload(&reloaded, &settings_dir),
                Ok(Asked::Stop(signal)) => {
                    let _ = stop_writer.write_all(&[signal as u8]);
                    return;
                }
                Err(_) => return,
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;

    if !start_delay.is_zero() {
        // A slow start that a stop may still interrupt.
        stop_reader
            .set_read_timeout(Some(start_delay))
            .map_err(|e| format!("cannot wait out start_delay_ms: {e}"))?;
        let mut signal = [0u8];
        if stop_reader.read_exact(&mut signal).is_ok() {
            eprintln!(
                "{}: stopped on {} while starting (start_delay_ms)",
                service.tag(),
                signal_name(i32::from(signal[0]))
            );
            return Ok(());
        }
        stop_reader
            .set_read_timeout(None)
            .map_err(|e| format!("cannot reset the stop channel: {e}"))?;
    }

    raise_open_files_limit();
    let listener = bind_shared(args.listen).map_err(|e| {
        format!(
            "cannot listen on {}: {e}; is another program (without SO_REUSEPORT) using it?",
            args.listen
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    if let Some(pid_file) = &args.pid_file {
        write_pid_file(pid_file)?;
    }
    let health = match service.health() {
        Ok(()) => "healthy".to_string(),
        Err(why) => format!("failing its health check: {why}"),
    };
    eprintln!(
        "{}: started on {local} from release {} ({health})",
        service.tag(),
        release_dir.display()
    );

    let served = serve_until(listener, &service, &stop_reader, GRACE);
    let mut signal = [0u8];
    let signal = match stop_reader.read_exact(&mut signal) {
        Ok(()) => signal_name(i32::from(signal[0])),
        Err(_) => "an error".to_string(),
    };
    if let Some(pid_file) = &args.pid_file {
        remove_pid_file(pid_file);
    }
    let served = served.map_err(|e| format!("serving on {local} failed: {e}"))?;
    let cut_off = match served.cut_off {
        0 => String::new(),
        n => format!("; {n} connection(s) still busy after {GRACE:?} were cut off"),
    };
    eprintln!(
        "{}: stopped on {signal} after {} request(s) on {} connection(s){cut_off}",
        service.tag(),
        served.requests,
        served.connections
    );
    Ok(())
}

/// SIGHUP: `release_dir`'s demo.toml read again (through a `current`
/// symlink, the release it points to now). Settings that do not load leave
/// the running ones in place, as a reload of a real service would.
fn reload(service: &Service, release_dir: &Path) {
    let before = service.version();
    match ReleaseSettings::load(release_dir) {
        Ok(settings) => {
            service.reload(settings);
            eprintln!(
                "{}: reloaded from {} (was {before})",
                service.tag(),
                release_dir.display()
            );
        }
        Err(e) => eprintln!(
            "{}: reload failed, still serving as before: {e}",
            service.tag()
        ),
    }
}

/// Each connection holds a descriptor; the benchmark holds a thousand.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
}

/// Written whole (temporary file, then rename): whoever reads it sees a
/// complete pid or no file, and the file appears only once we listen.
fn write_pid_file(path: &Path) -> Result<(), String> {
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&partial, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| format!("cannot write the pid file {}: {e}", path.display()))
}

/// Removes the pid file if it is still ours: in a blue-green restart the
/// next instance may already have written its own there.
fn remove_pid_file(path: &Path) {
    let ours =
        std::fs::read_to_string(path).is_ok_and(|pid| pid.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

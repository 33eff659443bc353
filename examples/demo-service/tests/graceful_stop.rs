//! The real `demo-service` process: what it answers, that a stop
//! finishes requests in flight, closes idle connections and exits 0, and
//! that SIGHUP reloads the release's settings.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_demo_service::load::{hold_idle_connections, LoadGenerator};

/// A running demo-service and the stderr it has not printed yet.
struct Running {
    child: Child,
    stderr: BufReader<ChildStderr>,
    addr: SocketAddr,
    started_line: String,
}

impl Running {
    fn start(release: &Path, extra: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_demo-service"))
            .args(["--listen", "127.0.0.1:0", "--release-dir"])
            .arg(release)
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start demo-service");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut started_line = String::new();
        stderr.read_line(&mut started_line).unwrap();
        let addr = started_line
            .split(" started on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in the start line {started_line:?}"));
        Running {
            child,
            stderr,
            addr,
            started_line,
        }
    }

    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill has no memory effects; the pid is our own child,
        // not yet waited for, so it cannot have been reused.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits (at most `deadline`) for the exit; the exit code and the rest
    /// of stderr.
    fn wait(mut self, deadline: Duration) -> (Option<i32>, Duration, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut rest = String::new();
                self.stderr.read_to_string(&mut rest).unwrap();
                return (status.code(), started.elapsed(), rest);
            }
            if started.elapsed() > deadline {
                let _ = self.child.kill();
                panic!("demo-service did not exit within {deadline:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn release_with(settings: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("demo.toml"), settings).unwrap();
    dir
}

/// Sends `request` on `stream` and reads one Content-Length response.
fn exchange(stream: &mut TcpStream, request: &str) -> (u16, String, String) {
    stream.write_all(request.as_bytes()).unwrap();
    read_response(stream)
}

fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed inside the head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

fn is_closed(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    matches!(stream.read(&mut [0u8; 1]), Ok(0) | Err(_))
}

#[test]
fn answers_health_and_version_over_keep_alive_and_honours_close() {
    let release = release_with("version = \"2.0.0\"\n");
    let service = Running::start(release.path(), &[]);
    assert!(
        service.started_line.contains("healthy"),
        "{}",
        service.started_line
    );
    let mut stream = TcpStream::connect(service.addr).unwrap();
    let (status, head, body) = exchange(&mut stream, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"ok","version":"2.0.0"}"#)
    );
    assert!(head.contains("Connection: keep-alive"), "{head}");
    // The same connection serves the next requests.
    let (status, _, body) = exchange(&mut stream, "GET /version HTTP/1.1\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, "2.0.0\n"));
    let (status, _, _) = exchange(&mut stream, "GET /elsewhere HTTP/1.1\r\n\r\n");
    assert_eq!(status, 404);
    let (status, head, _) = exchange(
        &mut stream,
        "GET /version HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(head.contains("Connection: close"), "{head}");
    assert!(
        is_closed(&mut stream),
        "the server kept a closed connection open"
    );
    service.signal(libc::SIGINT);
    let (code, _, stderr) = service.wait(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("stopped on SIGINT"), "{stderr}");
}

#[test]
fn unhealthy_release_and_missing_migration_fail_the_health_check() {
    let release = release_with("version = \"3.1.0\"\nhealthy = false\n");
    let service = Running::start(release.path(), &[]);
    assert!(
        service.started_line.contains("failing"),
        "{}",
        service.started_line
    );
    let mut stream = TcpStream::connect(service.addr).unwrap();
    let (status, _, body) = exchange(&mut stream, "GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(
        (status, body.as_str()),
        (503, r#"{"status":"failing","version":"3.1.0"}"#)
    );
    service.signal(libc::SIGTERM);
    assert_eq!(service.wait(Duration::from_secs(5)).0, Some(0));

    let release = release_with("version = \"3.2.0\"\nmigrate_marker = \"migrated\"\n");
    let service = Running::start(release.path(), &[]);
    let mut stream = TcpStream::connect(service.addr).unwrap();
    let (status, _, _) = exchange(&mut stream, "GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(status, 503);
    std::fs::write(release.path().join("migrated"), "").unwrap();
    let (status, _, _) = exchange(&mut stream, "GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    service.signal(libc::SIGTERM);
    assert_eq!(service.wait(Duration::from_secs(5)).0, Some(0));
}

#[test]
fn a_stop_finishes_the_request_in_flight_and_closes_idle_connections() {
    let release = release_with("version = \"1.0.0\"\n");
    let pid_file: PathBuf = release.path().join("demo.pid");
    let service = Running::start(release.path(), &["--pid-file", pid_file.to_str().unwrap()]);
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, service.child.id());

    let mut idle = TcpStream::connect(service.addr).unwrap();
    exchange(&mut idle, "GET /version HTTP/1.1\r\n\r\n");
    // Half a request: in flight when the stop begins.
    let mut in_flight = TcpStream::connect(service.addr).unwrap();
    in_flight.write_all(b"GET /version HTTP/1.1\r\n").unwrap();
    // Connected, first request not sent yet: a client of a handover whose
    // bytes have not arrived; it must be answered, not closed as idle.
    let mut fresh = TcpStream::connect(service.addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    service.signal(libc::SIGTERM);
    assert!(is_closed(&mut idle), "the idle connection was left open");
    in_flight.write_all(b"Host: x\r\n\r\n").unwrap();
    let (status, head, body) = read_response(&mut in_flight);
    assert_eq!((status, body.as_str()), (200, "1.0.0\n"));
    assert!(head.contains("Connection: close"), "{head}");
    let (status, head, _) = exchange(&mut fresh, "GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(head.contains("Connection: close"), "{head}");
    let addr = service.addr;
    let (code, took, stderr) = service.wait(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");
    assert!(stderr.contains("stopped on SIGTERM"), "{stderr}");
    assert!(!pid_file.exists(), "the pid file outlived the service");
    assert!(
        TcpStream::connect(addr).is_err(),
        "something still listens on {addr} after the stop"
    );
}

#[test]
fn holds_a_thousand_idle_connections_and_still_serves_and_stops() {
    let release = release_with("version = \"1.0.0\"\n");
    let service = Running::start(release.path(), &[]);
    let held = hold_idle_connections(service.addr, 1000).unwrap();
    assert_eq!(held.len(), 1000);
    let load = LoadGenerator::start(service.addr, 2);
    std::thread::sleep(Duration::from_millis(200));
    let report = load.stop();
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(report.ok > 0);
    assert_eq!(report.versions.keys().collect::<Vec<_>>(), ["1.0.0"]);
    service.signal(libc::SIGTERM);
    let (code, took, stderr) = service.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");
    // Every held connection and every load request was a connection served.
    let served = 1000 + report.ok;
    assert!(
        stderr.contains(&format!(
            "after {served} request(s) on {served} connection(s)"
        )),
        "{stderr}"
    );
}

#[test]
fn sighup_reloads_the_release_current_points_to_and_keeps_serving() {
    let releases = tempfile::tempdir().unwrap();
    for (name, version) in [("r1", "1.0.0"), ("r2", "2.0.0")] {
        std::fs::create_dir(releases.path().join(name)).unwrap();
        std::fs::write(
            releases.path().join(name).join("demo.toml"),
            format!("version = \"{version}\"\n"),
        )
        .unwrap();
    }
    let current = releases.path().join("current");
    std::os::unix::fs::symlink("r1", &current).unwrap();
    let service = Running::start(&current, &[]);
    let mut stream = TcpStream::connect(service.addr).unwrap();
    let version = |stream: &mut TcpStream| exchange(stream, "GET /version HTTP/1.1\r\n\r\n").2;
    assert_eq!(version(&mut stream), "1.0.0\n");

    std::fs::remove_file(&current).unwrap();
    std::os::unix::fs::symlink("r2", &current).unwrap();
    service.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    // The connection opened before the reload is served by the new settings.
    while version(&mut stream) != "2.0.0\n" {
        assert!(Instant::now() < deadline, "SIGHUP did not reload 2.0.0");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Settings that do not load are not served: the last good ones stay.
    std::fs::write(releases.path().join("r2/demo.toml"), "versio = \"3\"\n").unwrap();
    service.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(version(&mut stream), "2.0.0\n");

    service.signal(libc::SIGTERM);
    let (code, _, stderr) = service.wait(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("reloaded from"), "{stderr}");
    assert!(
        stderr.contains("reload failed, still serving as before"),
        "{stderr}"
    );
}

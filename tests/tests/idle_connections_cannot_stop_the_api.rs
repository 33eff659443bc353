//! The threat: anyone who can reach `ferry rollout serve` opens connections
//! and sends half a request line, then nothing. Before, each such
//! connection held a thread forever, and once the process ran out of file
//! descriptors the accept loop ended and the server exited 0 (so
//! `Restart=on-failure` left it down). Now the server holds at most
//! `--max-connections` connections (refusing the rest with 503), cuts a
//! request that has not arrived within 10 s, waits out running out of
//! descriptors instead of exiting, and answers a real request again once
//! the idle ones are cut.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_tests::fixtures::Workspace;
use ferry_tests::rollout_api::{idle_inventory, ApiServer, TOKEN};

/// A cluster the server can load; no request here reaches a node.
fn inventory(ws: &Workspace) -> PathBuf {
    idle_inventory(&ws.dir)
}

/// `count` connections that each send part of a request line and stop.
fn open_idle(addr: &str, count: usize) -> Vec<TcpStream> {
    let mut idle = Vec::new();
    for _ in 0..count {
        let address = addr.parse().unwrap();
        // A connect can wait while the server's queue is full: it is
        // retried by the kernel; one that gives up is simply not counted.
        if let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(5)) {
            let _ = stream.write_all(b"GET /api/v1/updates/hist");
            idle.push(stream);
        }
    }
    idle
}

/// The status of an authenticated `GET /api/v1/updates/history`, or why
/// there was none.
fn history_status(addr: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!(
        "GET /api/v1/updates/history HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| format!("no status in {reply:?}"))
}

/// Asks until a request is answered 200, for up to `deadline`; returns
/// how long that took.
fn served_again_within(server: &mut ApiServer, deadline: Duration) -> Duration {
    let started = Instant::now();
    let mut last = Err(String::new());
    while started.elapsed() < deadline {
        last = history_status(&server.addr);
        if last == Ok(200) {
            return started.elapsed();
        }
        assert_eq!(server.exited(), None, "the server stopped");
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("no request was served within {deadline:?}: last answer {last:?}");
}

/// Whether the server closed `stream` (read end of file or a reset)
/// within `wait`.
fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn idle_connections_are_capped_cut_and_cannot_stop_the_api() {
    let ws = Workspace::new();
    let inventory = inventory(&ws);
    // Half of 256 descriptors: the default cap is 128 connections.
    let mut server = ApiServer::start_with_file_limit(&ws, &inventory, 256, &[]);
    assert_eq!(history_status(&server.addr), Ok(200));

    let opened = Instant::now();
    let mut idle = open_idle(&server.addr, 1000);
    assert!(idle.len() >= 900, "only {} connections opened", idle.len());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(server.exited(), None, "idle connections stopped the server");
    let (threads, sockets) = (server.threads(), server.open_sockets());
    eprintln!(
        "{} idle connections under ulimit -n 256: the server holds {sockets} sockets (listener included) with {threads} threads",
        idle.len()
    );
    assert!(sockets <= 128 + 1 + 2, "{sockets} sockets held");
    assert!(threads <= 128 + 8, "{threads} threads for idle connections");

    // The held ones are cut at the request deadline (10 s), the rest were
    // refused at once: every idle connection is closed by the server.
    let waited = served_again_within(&mut server, Duration::from_secs(25));
    eprintln!(
        "served again {:.1} s after the idle connections were opened",
        opened.elapsed().as_secs_f64()
    );
    assert!(waited < Duration::from_secs(25));
    for stream in &mut idle {
        assert!(
            closed_by_server(stream, Duration::from_secs(15)),
            "an idle connection is still held {:?} after it was opened",
            opened.elapsed()
        );
    }
    // A closed connection's thread may still be draining the client's
    // unread bytes (up to 1 s) or exiting: the count settles, it is not
    // read at one instant.
    let settled = Instant::now();
    while server.threads() > 8 && settled.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.threads() <= 8, "threads left: {}", server.threads());
    assert_eq!(server.exited(), None);
}

/// With a cap above the descriptor limit, the process does run out of
/// descriptors: accept fails with EMFILE, which is waited out, not an exit.
#[test]
fn running_out_of_file_descriptors_does_not_stop_the_api() {
    let ws = Workspace::new();
    let inventory = inventory(&ws);
    let mut server =
        ApiServer::start_with_file_limit(&ws, &inventory, 64, &["--max-connections", "1000"]);
    assert_eq!(history_status(&server.addr), Ok(200));

    let idle = open_idle(&server.addr, 300);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        server.exited(),
        None,
        "running out of descriptors stopped it"
    );
    let sockets = server.open_sockets();
    eprintln!(
        "{} idle connections under ulimit -n 64 with --max-connections 1000: {sockets} sockets held",
        idle.len()
    );
    assert!(
        sockets >= 50,
        "the descriptor limit was not reached: {sockets}"
    );
    // The idle clients go away (those still queued would each wait out
    // the request deadline first): the server accepts and answers again.
    drop(idle);
    served_again_within(&mut server, Duration::from_secs(15));
    assert_eq!(server.exited(), None);
}

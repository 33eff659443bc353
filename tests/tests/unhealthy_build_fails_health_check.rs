//! "Built to fail its health check" really fails it: the
//! `DEMO_SERVICE_UNHEALTHY=1` build of demo-service answers 503 on
//! /health for a release whose demo.toml says healthy, where the normal
//! build answers 200. The auto-rollback tests rely on this difference.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

use ferry_tests::binaries::{demo_service, demo_service_unhealthy};

/// Starts `binary` from `<release>/bin/demo-service` (the release directory
/// found from the executable's own path), asks /health once, stops it.
fn health_status(binary: &Path, release: &Path) -> (u16, String) {
    let bin = release.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let installed = bin.join("demo-service");
    std::fs::copy(binary, &installed).unwrap();
    let mut child = Command::new(&installed)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut started = String::new();
    stderr.read_line(&mut started).unwrap();
    let addr: SocketAddr = started
        .split(" started on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {started:?}"));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap().to_string();
    (status, body)
}

#[test]
fn the_unhealthy_build_fails_where_the_normal_build_passes() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["normal", "unhealthy"] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        std::fs::write(
            dir.path().join(name).join("demo.toml"),
            "version = \"4.0.0\"\nhealthy = true\n",
        )
        .unwrap();
    }
    assert_eq!(
        health_status(demo_service(), &dir.path().join("normal")),
        (200, r#"{"status":"ok","version":"4.0.0"}"#.to_string())
    );
    assert_eq!(
        health_status(demo_service_unhealthy(), &dir.path().join("unhealthy")),
        (503, r#"{"status":"failing","version":"4.0.0"}"#.to_string())
    );
}

//! Releases of the demo service (`examples/demo-service`) for the node
//! lifecycle tests: its binary under `bin/` and the `demo.toml` that gives
//! its version and whether it passes its health check.

use std::fs;
use std::path::PathBuf;

use crate::binaries;
use crate::fixtures::Workspace;

/// The input tree of a demo-service release, written once under
/// `inputs/demo-<version>-<healthy>`.
pub fn demo_release(ws: &Workspace, version: &str, healthy: bool) -> PathBuf {
    let dir = ws
        .dir
        .join("inputs")
        .join(format!("demo-{version}-{healthy}"));
    if dir.exists() {
        return dir;
    }
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy(binaries::demo_service(), dir.join("bin/demo-service")).unwrap();
    fs::write(
        dir.join("demo.toml"),
        format!("version = \"{version}\"\nhealthy = {healthy}\n"),
    )
    .unwrap();
    dir
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

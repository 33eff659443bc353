//! Throw-away network namespaces, for tests that change per-namespace
//! kernel settings.
//!
//! A blue-green handover drops no connection only with
//! `net.ipv4.tcp_migrate_req=1`, a sysctl of the network namespace. A test
//! must not change the machine's own, so it makes a namespace of its own
//! (loopback only), sets the sysctl there and runs its processes inside
//! with `ip netns exec`. The namespace is deleted when the guard drops.
//!
//! Creating one needs root and the `ip` command. Without them a test
//! prints why and passes as a no-op on a developer's machine, but fails
//! under CI (`CI=true`), where skipping would hide that it never ran.

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace with `lo` up, deleted on drop.
#[derive(Debug)]
pub struct NetworkNamespace {
    name: String,
}

impl NetworkNamespace {
    /// Creates `ferry-test-<pid>-<n>` and brings its loopback up.
    pub fn create() -> Result<NetworkNamespace, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ferry-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name])?;
        // From here on the guard deletes it, whatever fails next.
        let namespace = NetworkNamespace { name };
        ip(&["-n", &namespace.name, "link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    /// [`create`](Self::create), or `None` after a note on stderr when
    /// namespaces are unavailable outside CI; panics under CI.
    pub fn create_or_skip(test: &str) -> Option<NetworkNamespace> {
        match NetworkNamespace::create() {
            Ok(namespace) => Some(namespace),
            Err(why) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
                panic!("{test} needs a network namespace and CI=true forbids skipping: {why}")
            }
            Err(why) => {
                eprintln!("note: {test} skipped: cannot create a network namespace: {why}");
                None
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.tcp_migrate_req`, `1`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), String> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        // `sysctl` may be missing where `ip` is not; writing /proc/sys from
        // inside the namespace needs only `sh`.
        let status = self
            .command("sh")
            .args([
                "-c",
                "printf '%s\\n' \"$1\" > \"$2\"",
                "sysctl",
                value,
                &path,
            ])
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run sh in namespace {}: {e}", self.name))?;
        if !status.success() {
            return Err(format!(
                "cannot set {key}={value} in namespace {} ({status}); it needs Linux 5.14+ for \
                 net.ipv4.tcp_migrate_req",
                self.name
            ));
        }
        Ok(())
    }

    /// `ip netns exec NAME program`: `program` runs inside the namespace
    /// (with the same process id the child reports: `ip` execs it).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Drop for NetworkNamespace {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "delete", &self.name]) {
            eprintln!(
                "warning: {e}; delete it with `ip netns delete {}`",
                self.name
            );
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "cannot run `ip {}`: {e} (is iproute2 installed?)",
                args.join(" ")
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "`ip {}` failed ({}): {} (creating namespaces needs root)",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

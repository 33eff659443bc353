//! A real etcd for the pull-mode coordination tests: one member on
//! 127.0.0.1 with free client and peer ports and a data directory of its
//! own, killed when dropped. The tests read it back with the real
//! `etcdctl`, a client independent of the applier's own.
//!
//! Without `/usr/bin/etcd` (Debian's `etcd-server`) a test prints why and
//! passes as a no-op on a developer's machine, but fails under CI
//! (`CI=true`), where skipping would hide that it never ran.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";

pub struct Etcd {
    child: Child,
    /// `http://127.0.0.1:<port>`, the client URL.
    pub url: String,
    peer_url: String,
    _dir: TempDir,
    log: PathBuf,
}

/// One key as `etcdctl get -w json` shows it.
#[derive(Debug, Clone)]
pub struct Key {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
}

impl Etcd {
    /// [`start`](Self::start), or `None` after a note on stderr when etcd is
    /// not installed outside CI; panics under CI.
    pub fn start_or_skip(test: &str) -> Option<Etcd> {
        if Path::new(ETCD).exists() && Path::new(ETCDCTL).exists() {
            return Some(Etcd::start());
        }
        let why =
            format!("{ETCD} or {ETCDCTL} is missing: apt-get install etcd-server etcd-client");
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{test} needs etcd and CI=true forbids skipping: {why}");
        }
        eprintln!("note: {test} skipped: {why}");
        None
    }

    pub fn start() -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("ferry-etcd-")
            .tempdir()
            .unwrap();
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = dir.path().join("etcd.log");
        let child = spawn(dir.path(), &url, &peer_url, &log);
        let etcd = Etcd {
            child,
            url,
            peer_url,
            _dir: dir,
            log,
        };
        etcd.wait_until_ready();
        etcd
    }

    /// Kills etcd: connections to it are refused until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts etcd again on the same ports and data (a stopped one, or one
    /// killed by `stop`), and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(self._dir.path(), &self.url, &self.peer_url, &self.log);
        self.wait_until_ready();
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.try_ctl(&["get", "/ready-probe"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "etcd did not answer on {} within 30 s; its log:\n{}",
                self.url,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.url, "--command-timeout=3s"])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {ETCDCTL}: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `etcdctl ARGS` against this etcd; panics on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        self.try_ctl(args)
            .unwrap_or_else(|e| panic!("etcdctl {args:?} failed: {e}"))
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let out: Value = serde_json::from_str(&self.ctl(&["get", "/", "-w", "json"])).unwrap();
        out["header"]["revision"].as_i64().unwrap()
    }

    /// The keys starting with `prefix` at `revision` (`None`: now).
    pub fn get_prefix(&self, prefix: &str, revision: Option<i64>) -> Vec<Key> {
        let rev = revision.map(|r| format!("--rev={r}"));
        let mut args = vec!["get", prefix, "--prefix", "-w", "json"];
        if let Some(rev) = &rev {
            args.push(rev);
        }
        let out: Value = serde_json::from_str(&self.ctl(&args)).unwrap();
        let decode = |v: &Value| {
            let bytes = base64_decode(v.as_str().unwrap_or(""));
            String::from_utf8(bytes).unwrap()
        };
        out["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| Key {
                        key: decode(&kv["key"]),
                        value: decode(&kv["value"]),
                        create_revision: kv["create_revision"].as_i64().unwrap(),
                        mod_revision: kv["mod_revision"].as_i64().unwrap(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The keys starting with `prefix` at every revision from 1 to now:
    /// etcd keeps them all (nothing compacts in a test).
    pub fn history(&self, prefix: &str) -> Vec<(i64, Vec<Key>)> {
        (1..=self.revision())
            .map(|revision| (revision, self.get_prefix(prefix, Some(revision))))
            .collect()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One etcd member serving `url`, its data under `dir` (kept across a
/// restart), its log appended to `log`.
fn spawn(dir: &Path, url: &str, peer_url: &str, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(ETCD)
        .args(["--name", "ferry-test", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", url, "--advertise-client-urls", url])
        .args([
            "--listen-peer-urls",
            peer_url,
            "--initial-advertise-peer-urls",
            peer_url,
        ])
        .arg("--initial-cluster")
        .arg(format!("ferry-test={peer_url}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {ETCD}: {e}"))
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// etcdctl's JSON carries keys and values in standard base64.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut bits, mut count) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("{text:?} is not base64")) as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes() {
        assert_eq!(super::base64_decode("L2ZlcnJ5L2E="), b"/ferry/a");
        assert_eq!(super::base64_decode("eA=="), b"x");
    }
}

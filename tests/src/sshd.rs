//! A real OpenSSH server for the `ssh` transport tests, and the client
//! files that trust exactly it.
//!
//! `ferry rollout` reaches nodes by running the OpenSSH client; the only
//! honest test of that is a real `sshd`. [`TestSshd::start`] runs
//! `/usr/sbin/sshd -D -e` with a configuration of its own on 127.0.0.1 and
//! a free port: its own ed25519 host key, a client key the test made as
//! the only authorized key, no PAM, no passwords. The client side gets a
//! `known_hosts` holding that host key alone and an `ssh_config` with
//! `StrictHostKeyChecking yes`, so a test connects to this server or
//! fails; nothing of the user's `~/.ssh` is read (`-F` replaces it).
//!
//! The server is killed when the guard drops. It runs as whoever runs the
//! test and logs that user in (as root, `PermitRootLogin
//! prohibit-password` allows the test's key). Without `sshd`, `ssh` or
//! `ssh-keygen` a test
//! prints why and passes as a no-op, except under CI (`CI=true`), where it
//! panics with what to install.

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::demo::free_port;

/// The server binary Debian's `openssh-server` installs.
pub const SSHD: &str = "/usr/sbin/sshd";
/// The name the client checks the host key under, whatever address or
/// alias it connects to (`HostKeyAlias`).
pub const HOST_KEY_ALIAS: &str = "ferry-test-sshd";
/// How long sshd may take to accept connections.
const STARTUP: Duration = Duration::from_secs(10);

/// A running test sshd and its client files, all below `dir`.
#[derive(Debug)]
pub struct TestSshd {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
    /// The user the client logs in as (the one running the test).
    pub user: String,
    /// The client's private key (its public half is the authorized key).
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    /// The client configuration passed with `-F` (see [`Self::ssh_args`]).
    pub ssh_config: PathBuf,
    /// sshd's own log (`-e`), for failure messages.
    pub log: PathBuf,
}

impl TestSshd {
    /// Starts sshd with its files in `dir` (created) and waits until it
    /// accepts connections and answers with its SSH banner.
    pub fn start(dir: &Path) -> Result<TestSshd, String> {
        for tool in [SSHD, "ssh", "ssh-keygen"] {
            let found = Command::new("sh")
                .args(["-c", "command -v \"$1\"", "sh", tool])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                return Err(format!(
                    "`{tool}` is not installed (Debian: apt-get install openssh-server \
                     openssh-client, or `cargo xtask deps`)"
                ));
            }
        }
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // sshd run as root refuses to start without its privilege-separation
        // directory, and a fresh container has none. Run by another user it
        // needs none (and can only log that user in, which is all we ask).
        if let Err(e) = fs::create_dir_all("/run/sshd") {
            if current_uid()? == "0" {
                return Err(format!(
                    "sshd needs /run/sshd and it cannot be created: {e}"
                ));
            }
        }
        let host_key = dir.join("host_ed25519");
        let identity = dir.join("client_ed25519");
        keygen(&host_key)?;
        keygen(&identity)?;
        let authorized_keys = dir.join("authorized_keys");
        copy(&identity.with_extension("pub"), &authorized_keys)?;
        let host_public = fs::read_to_string(host_key.with_extension("pub"))
            .map_err(|e| format!("cannot read the host public key: {e}"))?;
        let known_hosts = dir.join("known_hosts");
        write(&known_hosts, &format!("{HOST_KEY_ALIAS} {host_public}"))?;
        let user = current_user()?;
        let port = free_port();
        let config = dir.join("sshd_config");
        write(
            &config,
            &format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host_key}\n\
                 PidFile {pid}\n\
                 AuthorizedKeysFile {authorized_keys}\n\
                 AllowUsers {user}\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 UseDNS no\n\
                 PrintMotd no\n\
                 PermitUserEnvironment no\n\
                 MaxStartups 100\n\
                 MaxSessions 100\n\
                 LogLevel INFO\n",
                host_key = host_key.display(),
                pid = dir.join("sshd.pid").display(),
                authorized_keys = authorized_keys.display(),
            ),
        )?;
        let ssh_config = dir.join("ssh_config");
        let log = dir.join("sshd.log");
        let log_file =
            fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {SSHD}: {e}"))?;
        let mut sshd = TestSshd {
            child,
            dir: dir.to_path_buf(),
            port,
            user,
            identity,
            known_hosts,
            ssh_config,
            log,
        };
        sshd.write_client_config("")?;
        sshd.wait_ready()?;
        Ok(sshd)
    }

    /// [`start`](Self::start), or `None` after a note on stderr when sshd
    /// cannot run here outside CI; panics under CI.
    pub fn start_or_skip(test: &str, dir: &Path) -> Option<TestSshd> {
        match TestSshd::start(dir) {
            Ok(sshd) => Some(sshd),
            Err(why) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
                panic!("{test} needs a real sshd and CI=true forbids skipping: {why}")
            }
            Err(why) => {
                eprintln!("note: {test} skipped: cannot run a test sshd: {why}");
                None
            }
        }
    }

    /// Rewrites the client's `ssh_config`: `before` (e.g. `Host` blocks
    /// sending one alias elsewhere) comes first, so it wins over the
    /// defaults, which send every host name to this server's address.
    pub fn write_client_config(&self, before: &str) -> Result<(), String> {
        write(
            &self.ssh_config,
            &format!(
                "{before}\n\
                 Host *\n  \
                 HostName 127.0.0.1\n  \
                 HostKeyAlias {HOST_KEY_ALIAS}\n  \
                 UserKnownHostsFile {known_hosts}\n  \
                 GlobalKnownHostsFile /dev/null\n  \
                 StrictHostKeyChecking yes\n  \
                 UpdateHostKeys no\n  \
                 IdentitiesOnly yes\n  \
                 ControlMaster no\n  \
                 ConnectTimeout 5\n  \
                 LogLevel ERROR\n",
                known_hosts = self.known_hosts.display()
            ),
        )
    }

    /// What the client needs besides user, port and identity: `-F` with
    /// the client configuration (for an inventory's `extra_args`).
    pub fn ssh_args(&self) -> Vec<String> {
        vec!["-F".into(), self.ssh_config.to_string_lossy().into_owned()]
    }

    /// Runs `remote` on the server through the real client, as a check.
    pub fn ssh(&self, host: &str, remote: &str) -> std::process::Output {
        Command::new("ssh")
            .args(self.ssh_args())
            .args(["-o", "BatchMode=yes", "-p", &self.port.to_string(), "-i"])
            .arg(&self.identity)
            .arg(format!("{}@{host}", self.user))
            .arg("--")
            .arg(remote)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run ssh")
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "sshd exited at startup ({status}):\n{}",
                    self.log()
                ));
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                // Connected is not enough: another process may hold the port
                // (it was only free a moment ago). sshd speaks first.
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 4];
                if stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "sshd did not accept connections on 127.0.0.1:{} within {STARTUP:?}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        // Sessions still open are sshd's children in their own process
        // groups; killing the listener is enough for the test to end
        // (they end with their commands).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) -> Result<(), String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ferry-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ssh-keygen -f {} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn current_user() -> Result<String, String> {
    id("-un")
}

fn current_uid() -> Result<String, String> {
    id("-u")
}

fn id(flag: &str) -> Result<String, String> {
    let out = Command::new("id")
        .arg(flag)
        .output()
        .map_err(|e| format!("cannot run `id {flag}`: {e}"))?;
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || answer.is_empty() {
        return Err(format!("`id {flag}` printed nothing"));
    }
    Ok(answer)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

//! `cargo xtask demo [--keep DIR]`: ferry's main job, end to end, with the
//! real binaries on embedded defaults, in a scratch directory.
//!
//! It is the quickest way to see what ferry does and the quickest smoke test
//! after a change: generate a key, publish two versions of a small app (a
//! script and the demo HTTP service), point a node at the repository,
//! install, preview and apply an update that restarts the service and passes
//! its health check, publish a broken third version and watch ferry roll it
//! back automatically, roll back by hand and read the history. Every step prints the exact
//! command so that it can be replayed by hand, and the first failure stops
//! the demo and keeps the directory for inspection.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use crate::cmd::{self, cargo, target_dir};

pub fn run(keep: Option<&Path>) -> Result<()> {
    let started = Instant::now();
    let (work, scratch) = match keep {
        Some(dir) => (prepare_kept(dir)?, None),
        None => {
            let tmp = tempfile::Builder::new().prefix("ferry-demo-").tempdir()?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let result = Demo::new(&work).and_then(|mut demo| demo.run());
    let elapsed = started.elapsed().as_secs_f64();
    match (result, scratch) {
        (Ok(()), scratch) => {
            cmd::banner("demo: done");
            println!("every step succeeded in {elapsed:.1}s");
            match scratch {
                Some(tmp) => drop(tmp), // removes the directory
                None => println!(
                    "kept {} (node config: {}/node/ferry.toml)",
                    work.display(),
                    work.display()
                ),
            }
            Ok(())
        }
        (Err(e), scratch) => {
            let kept = scratch.map(|t| t.keep()).unwrap_or(work);
            eprintln!(
                "\ndemo failed after {elapsed:.1}s; its files are kept in {} for inspection",
                kept.display()
            );
            Err(e)
        }
    }
}

fn prepare_kept(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    ensure!(
        std::fs::read_dir(&dir)?.next().is_none(),
        "{} is not empty: pass a new or empty directory to --keep",
        dir.display()
    );
    Ok(dir)
}

struct Demo {
    work: PathBuf,
    ferry: PathBuf,
    publish: PathBuf,
    demo_service: PathBuf,
    config: PathBuf,
    root: PathBuf,
    /// Where the demo service listens (a free port on 127.0.0.1).
    port: u16,
    step: usize,
}

const STEPS: usize = 19;

impl Demo {
    fn new(work: &Path) -> Result<Demo> {
        cmd::banner("demo: building ferry, ferry-publish and the demo service");
        cmd::run(cargo().args([
            "build",
            "-p",
            "ferry",
            "-p",
            "ferry-publish",
            "-p",
            "ferry-demo-service",
        ]))?;
        let debug = target_dir().join("debug");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Ok(Demo {
            work: work.to_path_buf(),
            ferry: debug.join("ferry"),
            publish: debug.join("ferry-publish"),
            demo_service: debug.join("demo-service"),
            config: work.join("node/ferry.toml"),
            root: work.join("node/app"),
            port,
            step: 0,
        })
    }

    fn run(&mut self) -> Result<()> {
        let result = self.run_steps();
        self.stop_service();
        result
    }

    fn run_steps(&mut self) -> Result<()> {
        let w = self.work.clone();
        println!("demo directory: {}", w.display());
        let (secret, public) = (w.join("keys/ferry.key"), w.join("keys/ferry.pub"));
        let repo = w.join("repo");

        std::fs::create_dir_all(w.join("keys"))?; // keygen, like minisign -G, does not create it
        let mut keygen = self.publisher(["keygen", "--secret-key"]);
        keygen.arg(&secret).arg("--public-key").arg(&public);
        self.step("generate a signing key pair", keygen)?;

        for (version, notes) in [("1.0.0", "first release"), ("1.1.0", "friendlier greeting")] {
            self.publish_version(&repo, &secret, version, notes, true)?;
        }

        self.write_config(&repo, &public)?;
        self.ferry_step(
            "install 1.0.0 on the node (starts its service, checks its health)",
            &["apply", "--version", "1.0.0"],
        )?;
        self.ferry_step("node status", &["status"])?;
        self.ferry_step(
            "preview the update (changes nothing)",
            &["apply", "--dry-run"],
        )?;
        self.ferry_step(
            "update to the latest release (1.1.0): switch, restart, health check",
            &["apply"],
        )?;
        self.run_hello("1.1.0")?;
        self.ask_service("1.1.0")?;
        self.publish_version(
            &repo,
            &secret,
            "1.2.0",
            "broken build: fails its health check",
            false,
        )?;
        self.ferry_expect(
            "update to 1.2.0, which fails its health check: rolled back automatically (exit 6)",
            &["apply"],
            6,
        )?;
        self.ask_service("1.1.0")?;
        self.ferry_step("node status", &["status"])?;
        self.ferry_step("roll back to the previous release by hand", &["rollback"])?;
        self.run_hello("1.0.0")?;
        self.ask_service("1.0.0")?;
        self.ferry_step("node status", &["status"])?;
        self.ferry_step("operation history", &["history"])?;
        self.check_final_state()
    }

    fn publish_version(
        &mut self,
        repo: &Path,
        secret: &Path,
        version: &str,
        notes: &str,
        healthy: bool,
    ) -> Result<()> {
        let tree = self.work.join("build").join(version);
        sample_app(&tree, version)?;
        add_demo_service(&tree, &self.demo_service, version, healthy)?;
        let mut release = self.publisher(["release", "--repo"]);
        release.arg(repo).arg("--key").arg(secret);
        release
            .args([
                "--version",
                version,
                "--channel",
                "stable",
                "--notes",
                notes,
            ])
            .arg(&tree);
        self.step(
            &format!("publish {version} (sample app in {})", tree.display()),
            release,
        )
    }

    /// A ferry step that must end with exit code `code`.
    fn ferry_expect(&mut self, what: &str, args: &[&str], code: i32) -> Result<()> {
        self.step += 1;
        cmd::banner(&format!("demo step {}/{STEPS}: {what}", self.step));
        let mut command = self.ferry_command(args);
        println!("$ {}", cmd::display(&command));
        let status = command.status()?;
        ensure!(
            status.code() == Some(code),
            "demo step {} ({what}): expected exit code {code}, got {status}",
            self.step
        );
        println!("(exit code {code}, as expected)");
        Ok(())
    }

    /// GET /version from the running demo service.
    fn ask_service(&mut self, expected: &str) -> Result<()> {
        self.step += 1;
        cmd::banner(&format!(
            "demo step {}/{STEPS}: ask the running service its version",
            self.step
        ));
        let url = format!("http://127.0.0.1:{}/version", self.port);
        println!("$ curl {url}");
        let answer = http_get(self.port, "/version")?;
        println!("{}", answer.trim());
        ensure!(
            answer.trim() == expected,
            "the service answers {:?}, expected {expected}",
            answer.trim()
        );
        Ok(())
    }

    fn pid_file(&self) -> PathBuf {
        self.work.join("node/demo-service.pid")
    }

    /// Stops the demo service the node's restart command started.
    fn stop_service(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.pid_file()) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }

    fn publisher<const N: usize>(&self, args: [&str; N]) -> Command {
        let mut c = Command::new(&self.publish);
        c.args(args).env_remove("FERRY_KEY_PASSWORD");
        c
    }

    fn ferry_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ferry);
        c.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("FERRY_CONFIG");
        c
    }

    fn ferry_step(&mut self, what: &str, args: &[&str]) -> Result<()> {
        let c = self.ferry_command(args);
        self.step(what, c)
    }

    fn step(&mut self, what: &str, mut command: Command) -> Result<()> {
        self.step += 1;
        cmd::banner(&format!("demo step {}/{STEPS}: {what}", self.step));
        cmd::run(&mut command).with_context(|| format!("demo step {} ({what}) failed", self.step))
    }

    /// The node's configuration, as an operator would write it by hand.
    fn write_config(&mut self, repo: &Path, public: &Path) -> Result<()> {
        self.step += 1;
        cmd::banner(&format!(
            "demo step {}/{STEPS}: write the node configuration",
            self.step
        ));
        // What `systemctl restart demo` would do: stop the running service,
        // start the one in `current`.
        let restart = ferry_demo_service::commands::restart_command(
            &self.root,
            &format!("127.0.0.1:{}", self.port),
            &self.pid_file(),
            &self.work.join("node/demo-service.log"),
        );
        let config = format!(
            "[repository]\nurl = {}\nchannel = \"stable\"\npublic_keys = [{}]\n\n[install]\nroot = {}\nstate_dir = {}\n\n\
             [service]\nstrategy = \"restart\"\nrestart_command = {}\n\n\
             [health]\nurl = \"http://127.0.0.1:{}/health\"\nexpect_version = true\ninterval_ms = 200\nretries = 10\ntimeout_seconds = 10\n",
            toml_string(&format!("file://{}", url_path(repo))),
            toml_string(&public.display().to_string()),
            toml_string(&self.root.display().to_string()),
            toml_string(&self.work.join("node/state").display().to_string()),
            toml_string(&restart),
            self.port,
        );
        std::fs::create_dir_all(self.config.parent().unwrap())?;
        std::fs::write(&self.config, &config)?;
        println!("{}:\n{config}", self.config.display());
        Ok(())
    }

    /// Runs the installed app through `current` and checks which version answers.
    fn run_hello(&mut self, expected: &str) -> Result<()> {
        self.step += 1;
        let hello = self.root.join("current/bin/hello");
        cmd::banner(&format!(
            "demo step {}/{STEPS}: run the installed app",
            self.step
        ));
        println!("$ {}", hello.display());
        let out = Command::new(&hello)
            .output()
            .with_context(|| format!("cannot run {}", hello.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        ensure!(
            out.status.success(),
            "{} exited with {}",
            hello.display(),
            out.status
        );
        ensure!(
            text.contains(expected),
            "{} should print version {expected}",
            hello.display()
        );
        Ok(())
    }

    /// Confirms through `status --json` that the rollback landed on 1.0.0.
    fn check_final_state(&self) -> Result<()> {
        let out = self.ferry_command(&["status", "--json"]).output()?;
        ensure!(
            out.status.success(),
            "`ferry status --json` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status: serde_json::Value = serde_json::from_slice(&out.stdout)
            .context("`ferry status --json` did not print JSON")?;
        let current = status["current_version"].as_str().unwrap_or("(none)");
        if current != "1.0.0" {
            bail!("after the rollback the node runs {current}, expected 1.0.0");
        }
        println!("\ncheck: after the rollback `ferry status --json` reports current_version 1.0.0");
        Ok(())
    }
}

/// Writes the sample application for `version`. Between versions the script
/// and the config change and everything else stays byte-identical, so the
/// update has something to fetch and something to reuse.
fn sample_app(tree: &Path, version: &str) -> Result<()> {
    let greeting = if version == "1.0.0" {
        "hello"
    } else {
        "hello, friend"
    };
    let files: [(&str, String, u32); 4] = [
        (
            "bin/hello",
            format!("#!/bin/sh\necho \"{greeting} from sample-app {version}\"\n"),
            0o755,
        ),
        (
            "etc/config.toml",
            format!(
                "# sample-app configuration\ngreeting = \"{greeting}\"\nversion = \"{version}\"\n"
            ),
            0o644,
        ),
        (
            "share/doc/README",
            "sample-app: a tiny application that ferry's demo installs.\n".into(),
            0o644,
        ),
        (
            "share/sample-app/templates/en/greeting.txt",
            "Hello, {name}!\n".into(),
            0o644,
        ),
    ];
    for (path, content, mode) in files {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, content)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    // A relative link inside the tree, as real packages carry them.
    symlink("hello", tree.join("bin/hi")).context("cannot create the sample symlink")?;
    Ok(())
}

/// The demo HTTP service and its `demo.toml` (version, and whether this
/// build passes its health check) in the sample app's tree.
fn add_demo_service(tree: &Path, binary: &Path, version: &str, healthy: bool) -> Result<()> {
    let dest = tree.join("bin/demo-service");
    std::fs::copy(binary, &dest)
        .with_context(|| format!("cannot copy {} into the release", binary.display()))?;
    std::fs::write(
        tree.join("demo.toml"),
        format!("version = \"{version}\"\nhealthy = {healthy}\n"),
    )?;
    Ok(())
}

/// `GET path` on 127.0.0.1:`port`; the body.
fn http_get(port: u16, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("nothing listens on 127.0.0.1:{port}"))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    ensure!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    Ok(body.to_string())
}

/// A TOML basic string. JSON string escaping is a subset of TOML's, so
/// serde_json's quoting is exactly right for any path.
pub(crate) fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Percent-encodes a path for a file:// URL (spaces and the like in tmp dirs).
pub(crate) fn url_path(path: &Path) -> String {
    let mut out = String::new();
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                out.push(*b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_are_quoted_and_urls_encoded() {
        assert_eq!(toml_string(r#"/tmp/a "b"\c"#), r#""/tmp/a \"b\"\\c""#);
        assert_eq!(url_path(Path::new("/tmp/a b/repo")), "/tmp/a%20b/repo");
    }

    #[test]
    fn sample_versions_differ_only_where_intended() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        sample_app(&a, "1.0.0").unwrap();
        sample_app(&b, "1.1.0").unwrap();
        let read = |root: &Path, p: &str| std::fs::read(root.join(p)).unwrap();
        assert_eq!(read(&a, "share/doc/README"), read(&b, "share/doc/README"));
        assert_ne!(read(&a, "bin/hello"), read(&b, "bin/hello"));
        assert_ne!(read(&a, "etc/config.toml"), read(&b, "etc/config.toml"));
        assert_eq!(
            std::fs::read_link(a.join("bin/hi")).unwrap(),
            Path::new("hello")
        );
        let mode = std::fs::metadata(a.join("bin/hello"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
}

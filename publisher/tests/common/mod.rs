//! Shared fixtures for the integration tests: the real binary, real files.
//! Each test binary uses a different subset of these helpers.
// A test reports to the harness; a closed stdout there is no operation to spare.
#![allow(clippy::disallowed_macros)]
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use tempfile::TempDir;

/// The `ferry-publish` binary with an environment that cannot leak in from
/// the developer's shell.
pub fn ferry_publish() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry-publish"));
    command
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("FERRY_KEY_PASSWORD")
        .env_remove("FERRY_LOG")
        .stdin(Stdio::null());
    command
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert_eq!(
            self.code, 1,
            "expected exit 1\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub fn run(command: &mut Command) -> Output {
    let out = command.output().expect("the command starts");
    Output {
        code: out.status.code().expect("the command exits with a status"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A scratch directory holding a key pair, inputs and repositories.
pub struct Scratch {
    pub dir: TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ferry-publish keygen` into `<name>.sec` / `<name>.pub`.
    pub fn keygen(&self, name: &str) -> (PathBuf, PathBuf) {
        let (secret, public) = (
            self.path(&format!("{name}.sec")),
            self.path(&format!("{name}.pub")),
        );
        run(ferry_publish()
            .arg("keygen")
            .arg("--secret-key")
            .arg(&secret)
            .arg("--public-key")
            .arg(&public))
        .assert_success();
        (secret, public)
    }
}

/// Writes files (`path`, content, mode) under `root`, creating directories.
pub fn write_tree(root: &Path, files: &[(&str, &[u8], u32)]) {
    for (path, content, mode) in files {
        let full = root.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(&full, content).unwrap();
        fs::set_permissions(&full, fs::Permissions::from_mode(*mode)).unwrap();
    }
}

/// `ferry-publish release` with the usual flags; `extra` goes before INPUT_DIR.
pub fn release(
    repo: &Path,
    key: &Path,
    version: &str,
    channel: &str,
    input: &Path,
    epoch: Option<i64>,
    extra: &[&str],
) -> Output {
    let mut command = ferry_publish();
    command
        .arg("release")
        .arg("--repo")
        .arg(repo)
        .arg("--key")
        .arg(key)
        .args(["--version", version, "--channel", channel])
        .args(extra)
        .arg(input);
    if let Some(epoch) = epoch {
        command.env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    run(&mut command)
}

pub fn verify(repo: &Path, public_key: &Path) -> Output {
    run(ferry_publish()
        .arg("verify")
        .arg("--repo")
        .arg(repo)
        .arg("--public-key")
        .arg(public_key))
}

/// Every file below `root` (relative path -> bytes and modification time),
/// to prove that a command left a directory exactly as it was.
pub fn snapshot(root: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let relative = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let modified = e.metadata().unwrap().modified().unwrap();
            (relative, (fs::read(e.path()).unwrap(), modified))
        })
        .collect()
}

/// The object files of a repository, by name.
pub fn objects(repo: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(repo.join("objects"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

pub fn manifest(repo: &Path, version: &str) -> manifests::Manifest {
    let bytes = fs::read(repo.join(format!("manifests/{version}.json"))).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A real executable of every Debian system (tar is an essential package),
/// to diff as real machine code rather than synthetic bytes.
pub fn real_binary() -> Vec<u8> {
    fs::read("/usr/bin/tar").expect("/usr/bin/tar exists on every Debian system")
}

/// A plausible next build of `original`: a relocated stretch (a constant
/// added to every 64th little-endian word of the middle third, as when code
/// moves and addresses change), inserted text and inserted code (which shift
/// everything after them) and a deleted range. `seed` varies every edit.
pub fn next_build(original: &[u8], seed: u32) -> Vec<u8> {
    let mut out = original.to_vec();
    let n = out.len();
    for i in (n / 3..2 * n / 3).step_by(64) {
        if i + 4 <= n {
            let word = u32::from_le_bytes(out[i..i + 4].try_into().unwrap());
            out[i..i + 4].copy_from_slice(&word.wrapping_add(0x1000 * seed).to_le_bytes());
        }
    }
    let deleted = n * 3 / 4 + seed as usize * 100;
    out.drain(deleted..deleted + 300);
    let code = original[1000 + seed as usize * 500..3000 + seed as usize * 500].to_vec();
    out.splice(n / 2..n / 2, code);
    let text = format!("ferry build {seed} of the test binary\0").repeat(8);
    out.splice(n / 5..n / 5, text.into_bytes());
    out
}

/// Pseudo-random, incompressible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The files of a repository directory (such as `deltas`), by name; empty
/// when the directory does not exist.
pub fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The `zstd` CLI: `None` (skip) on a developer machine without it, a
/// failure when CI=true, because CI must prove interoperability.
pub fn zstd_cli() -> Option<PathBuf> {
    let found = std::iter::once(PathBuf::from("/usr/bin/zstd"))
        .chain(
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("zstd"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .find(|p| p.is_file());
    if found.is_none() {
        let in_ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        assert!(
            !in_ci,
            "the zstd CLI is not installed but CI=true: install zstd (e.g. apt-get install zstd)"
        );
        eprintln!("skipping: the zstd CLI is not installed");
    }
    found
}

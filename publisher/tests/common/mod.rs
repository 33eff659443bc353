//! Shared fixtures for the integration tests: the real binary, real files.
//! Each test binary uses a different subset of these helpers.
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

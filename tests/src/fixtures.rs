//! Release inputs, a throw-away workspace (keys, repository, nodes) and tree
//! comparisons.
//!
//! Release inputs look like a small real application — an executable of a
//! realistic size, a private config file, docs that never change, a nested
//! plugin directory, a relative symlink — because each of those is a case an
//! applier can get wrong (modes, hard-linked unchanged content, directory
//! creation order, symlinks). Generations 1, 2 and 3 differ the way real
//! releases do: changed, added and removed files next to unchanged ones.
//!
//! Every [`Workspace`] lives in its own temporary *sandbox* directory, and
//! everything a test creates (repository, nodes' install roots and state)
//! lives in the workspace below it, so tests can run in parallel and a test
//! can check that nothing appeared beside the workspace.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::binaries;
use crate::run::{run, Output};

/// The channel every fixture publishes to unless a test says otherwise.
pub const CHANNEL: &str = "stable";

/// Size of the pseudo-random part of `bin/app`.
pub const APP_PAYLOAD_BYTES: usize = 200 * 1024;

/// One entry of a release input tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir {
        path: &'static str,
        mode: u32,
    },
    File {
        path: &'static str,
        mode: u32,
        content: Vec<u8>,
    },
    Symlink {
        path: &'static str,
        target: &'static str,
    },
}

impl Entry {
    pub fn path(&self) -> &'static str {
        match self {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

/// The release input of `generation` (1, 2 or 3), parents before children.
///
/// - 1: `bin/app` (0755, ~200 KiB), `bin/app-current -> app`,
///   `etc/app.toml` (0640), `etc/legacy.conf`, `lib/plugins/x/plugin.so`,
///   `share/doc/README.md`; `etc/` is 0750.
/// - 2: `bin/app` and `etc/app.toml` changed, `etc/legacy.conf` removed,
///   `share/doc/CHANGELOG.md` added; README and plugin unchanged.
/// - 3: like 2 with `bin/app` and `etc/app.toml` changed again.
pub fn release_tree(generation: u32) -> Vec<Entry> {
    assert!(
        (1..=3).contains(&generation),
        "fixtures have generations 1 to 3"
    );
    let mut entries = vec![
        Entry::Dir { path: "bin", mode: 0o755 },
        Entry::File { path: "bin/app", mode: 0o755, content: app_binary(generation) },
        Entry::Symlink { path: "bin/app-current", target: "app" },
        Entry::Dir { path: "etc", mode: 0o750 },
        Entry::File {
            path: "etc/app.toml",
            mode: 0o640,
            content: format!(
                "# app configuration, generation {generation}\nlisten = \"127.0.0.1:80{generation:02}\"\nworkers = {}\n",
                generation * 4
            )
            .into_bytes(),
        },
    ];
    if generation == 1 {
        entries.push(Entry::File {
            path: "etc/legacy.conf",
            mode: 0o644,
            content: b"# removed in generation 2\nlegacy = true\n".to_vec(),
        });
    }
    entries.extend([
        Entry::Dir {
            path: "lib",
            mode: 0o755,
        },
        Entry::Dir {
            path: "lib/plugins",
            mode: 0o755,
        },
        Entry::Dir {
            path: "lib/plugins/x",
            mode: 0o755,
        },
        Entry::File {
            path: "lib/plugins/x/plugin.so",
            mode: 0o644,
            content: pseudo_random(0x5eed_0001, 16 * 1024),
        },
        Entry::Dir {
            path: "share",
            mode: 0o755,
        },
        Entry::Dir {
            path: "share/doc",
            mode: 0o755,
        },
    ]);
    if generation >= 2 {
        entries.push(Entry::File {
            path: "share/doc/CHANGELOG.md",
            mode: 0o644,
            content: b"# Changelog\n\n## 1.1.0\n- new workers setting\n".to_vec(),
        });
    }
    entries.push(Entry::File {
        path: "share/doc/README.md",
        mode: 0o644,
        content: b"# app\n\nThis file is the same in every release.\n".to_vec(),
    });
    entries
}

/// A fake executable: a recognisable header then deterministic noise (noise
/// so that compression does not make the object unrealistically small).
pub fn app_binary(generation: u32) -> Vec<u8> {
    let mut out = format!("\x7fFERRY-TEST-APP generation={generation}\n").into_bytes();
    out.extend(pseudo_random(
        0xa99 + u64::from(generation),
        APP_PAYLOAD_BYTES,
    ));
    out
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `entries` below `dir` (created if missing) with exact modes,
/// whatever the umask.
pub fn write_tree(dir: &Path, entries: &[Entry]) {
    fs::create_dir_all(dir).unwrap();
    for entry in entries {
        let path = dir.join(entry.path());
        match entry {
            Entry::Dir { mode, .. } => {
                fs::create_dir(&path).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
            }
            Entry::File { mode, content, .. } => {
                fs::write(&path, content).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
            }
            Entry::Symlink { target, .. } => symlink(target, &path).unwrap(),
        }
    }
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Inverts one byte of a file in place (offset taken modulo its length).
pub fn flip_byte(path: &Path, offset: usize) {
    let mut data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(!data.is_empty(), "{} is empty", path.display());
    let at = offset % data.len();
    data[at] ^= 0xff;
    fs::write(path, data).unwrap();
}

/// The key id minisign shows for a public key file (16 uppercase hex digits).
pub fn key_id(public_key: &Path) -> String {
    let text = fs::read_to_string(public_key).unwrap();
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with("untrusted comment:"))
        .expect("a key line");
    let pk = minisign::PublicKey::from_base64(line.trim()).expect("a minisign public key");
    let raw = pk.to_bytes();
    let id: [u8; 8] = raw[2..10].try_into().unwrap();
    format!("{:016X}", u64::from_le_bytes(id))
}

/// A temporary workspace: signing keys, a repository and nodes.
pub struct Workspace {
    sandbox: TempDir,
    /// `<sandbox>/ws`: everything the test creates is below it.
    pub dir: PathBuf,
    pub secret_key: PathBuf,
    pub public_key: PathBuf,
    pub repo: PathBuf,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    /// A fresh workspace with a key pair made by `ferry-publish keygen`.
    pub fn new() -> Workspace {
        let sandbox = tempfile::Builder::new()
            .prefix("ferry-e2e-")
            .tempdir()
            .unwrap();
        let dir = sandbox.path().join("ws");
        fs::create_dir(&dir).unwrap();
        let repo = dir.join("repo");
        let mut ws = Workspace {
            sandbox,
            secret_key: PathBuf::new(),
            public_key: PathBuf::new(),
            repo,
            dir,
        };
        let (secret_key, public_key) = ws.keygen("publisher");
        ws.secret_key = secret_key;
        ws.public_key = public_key;
        ws
    }

    /// The directory holding the workspace and nothing else: anything that
    /// appears in it besides `ws` escaped the workspace.
    pub fn sandbox(&self) -> &Path {
        self.sandbox.path()
    }

    /// Asserts that the sandbox holds the workspace and nothing else.
    #[track_caller]
    pub fn assert_nothing_beside_workspace(&self) {
        let names: Vec<String> = fs::read_dir(self.sandbox())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["ws"],
            "files appeared beside the workspace in {}",
            self.sandbox().display()
        );
    }

    /// Makes another key pair with `ferry-publish keygen` under `keys/NAME.*`.
    pub fn keygen(&self, name: &str) -> (PathBuf, PathBuf) {
        let keys = self.dir.join("keys");
        fs::create_dir_all(&keys).unwrap();
        let secret = keys.join(format!("{name}.key"));
        let public = keys.join(format!("{name}.pub"));
        run(Command::new(binaries::ferry_publish())
            .arg("keygen")
            .arg("--secret-key")
            .arg(&secret)
            .arg("--public-key")
            .arg(&public))
        .assert_success();
        assert!(
            secret.is_file() && public.is_file(),
            "keygen wrote no key files"
        );
        (secret, public)
    }

    /// The input tree of `generation` (see [`release_tree`]), written once
    /// under `inputs/vN`.
    pub fn input(&self, generation: u32) -> PathBuf {
        let dir = self.dir.join("inputs").join(format!("v{generation}"));
        if !dir.exists() {
            write_tree(&dir, &release_tree(generation));
        }
        dir
    }

    /// A `ferry-publish` command with a clean environment: no inherited
    /// `SOURCE_DATE_EPOCH` (it would date the index, and so its expiry) and
    /// no key password.
    pub fn publisher(&self) -> Command {
        let mut command = Command::new(binaries::ferry_publish());
        command
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("FERRY_KEY_PASSWORD")
            .env("NO_COLOR", "1");
        command
    }

    /// The `release` command for `version` on `channel` from `input` into
    /// this workspace's repository, signed with its key; add options and run.
    pub fn release_command(&self, version: &str, channel: &str, input: &Path) -> Command {
        let mut command = self.publisher();
        command
            .arg("release")
            .arg("--repo")
            .arg(&self.repo)
            .arg("--key")
            .arg(&self.secret_key)
            .args(["--version", version, "--channel", channel])
            .arg(input);
        command
    }

    /// Publishes and asserts success.
    pub fn publish(&self, version: &str, channel: &str, input: &Path) -> Output {
        let out = run(&mut self.release_command(version, channel, input));
        out.assert_success();
        out
    }

    /// Publishes generation 1 as 1.0.0 and generation 2 as 1.1.0 on [`CHANNEL`].
    pub fn publish_v1_v2(&self) {
        self.publish("1.0.0", CHANNEL, &self.input(1));
        self.publish("1.1.0", CHANNEL, &self.input(2));
    }

    /// `file://` URL of the repository.
    pub fn repo_url(&self) -> String {
        format!("file://{}", self.repo.display())
    }

    /// A node reading this workspace's repository over `file://`, trusting
    /// the workspace key.
    pub fn node(&self, name: &str) -> Node {
        self.node_with(name, NodeConfig::new(self.repo_url(), &self.public_key))
    }

    /// A node with an explicit configuration.
    pub fn node_with(&self, name: &str, config: NodeConfig) -> Node {
        let dir = self.dir.join("nodes").join(name);
        fs::create_dir_all(&dir).unwrap();
        let node = Node {
            name: name.to_string(),
            config: dir.join("ferry.toml"),
            root: dir.join("root"),
            state_dir: dir.join("state"),
            dir,
        };
        fs::write(&node.config, config.to_toml(&node)).unwrap();
        node
    }

    /// A node in in-place mode that owns `bin/ etc/ lib/ share/` below its
    /// root (created empty), trusting the workspace key, over `file://`.
    /// `extra` is added to its `[install]` table verbatim.
    pub fn in_place_node(&self, name: &str, extra: &str) -> Node {
        let node = self.node(name);
        fs::create_dir_all(&node.root).unwrap();
        let targets: Vec<String> = ["bin/", "etc/", "lib/", "share/"]
            .iter()
            .map(|t| toml_str(&format!("{}/{t}", node.root.display())))
            .collect();
        let text = fs::read_to_string(&node.config).unwrap().replacen(
            "[install]\n",
            &format!(
                "[install]\nmode = \"in-place\"\ntargets = [{}]\n{extra}",
                targets.join(", ")
            ),
            1,
        );
        fs::write(&node.config, text).unwrap();
        node
    }

    /// The names of the files in the repository's `objects/` directory.
    pub fn repo_objects(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.repo.join("objects"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// What goes into a node's `ferry.toml`.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub url: String,
    pub channel: String,
    pub public_keys: Vec<PathBuf>,
    pub keep_releases: Option<u32>,
    pub timeout_seconds: Option<u32>,
    /// `repository.retries`: retries of a transient download failure.
    pub retries: Option<u32>,
    /// `repository.ca_file`: the CA pinned for https.
    pub ca_file: Option<PathBuf>,
    /// `repository.mirrors`: further sources of the same repository.
    pub mirrors: Vec<String>,
    /// `repository.stall_timeout_seconds`.
    pub stall_timeout_seconds: Option<u32>,
    /// `repository.min_bytes_per_second`.
    pub min_bytes_per_second: Option<u64>,
    /// `[trust] root`: a signed root file to start from; set `public_keys`
    /// empty with it (the two are exclusive).
    pub trust_root: Option<PathBuf>,
}

impl NodeConfig {
    pub fn new(url: String, public_key: &Path) -> NodeConfig {
        NodeConfig {
            url,
            channel: CHANNEL.to_string(),
            public_keys: vec![public_key.to_path_buf()],
            keep_releases: None,
            timeout_seconds: None,
            retries: None,
            ca_file: None,
            mirrors: Vec::new(),
            stall_timeout_seconds: None,
            min_bytes_per_second: None,
            trust_root: None,
        }
    }

    fn to_toml(&self, node: &Node) -> String {
        let keys: Vec<String> = self
            .public_keys
            .iter()
            .map(|k| toml_str(&k.to_string_lossy()))
            .collect();
        let mut out = format!(
            "[repository]\nurl = {}\nchannel = {}\npublic_keys = [{}]\n",
            toml_str(&self.url),
            toml_str(&self.channel),
            keys.join(", ")
        );
        if let Some(ca) = &self.ca_file {
            out.push_str(&format!("ca_file = {}\n", toml_str(&ca.to_string_lossy())));
        }
        if let Some(t) = self.timeout_seconds {
            out.push_str(&format!("timeout_seconds = {t}\n"));
        }
        if let Some(r) = self.retries {
            out.push_str(&format!("retries = {r}\n"));
        }
        if !self.mirrors.is_empty() {
            let mirrors: Vec<String> = self.mirrors.iter().map(|m| toml_str(m)).collect();
            out.push_str(&format!("mirrors = [{}]\n", mirrors.join(", ")));
        }
        if let Some(t) = self.stall_timeout_seconds {
            out.push_str(&format!("stall_timeout_seconds = {t}\n"));
        }
        if let Some(r) = self.min_bytes_per_second {
            out.push_str(&format!("min_bytes_per_second = {r}\n"));
        }
        out.push_str(&format!(
            "\n[install]\nroot = {}\nstate_dir = {}\n",
            toml_str(&node.root.to_string_lossy()),
            toml_str(&node.state_dir.to_string_lossy())
        ));
        if let Some(k) = self.keep_releases {
            out.push_str(&format!("keep_releases = {k}\n"));
        }
        if let Some(root) = &self.trust_root {
            out.push_str(&format!(
                "\n[trust]\nroot = {}\n",
                toml_str(&root.to_string_lossy())
            ));
        }
        out
    }
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One node: its configuration, install root and state directory. Neither
/// the root nor the state directory exists until `ferry` makes them.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub root: PathBuf,
    pub state_dir: PathBuf,
}

impl Node {
    /// `ferry --config <config> ARGS…` with a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binaries::ferry());
        command
            .env_remove("FERRY_CONFIG")
            .env("NO_COLOR", "1")
            .arg("--config")
            .arg(&self.config)
            .args(args);
        command
    }

    /// Runs `ferry` on this node.
    pub fn ferry(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// Runs the fault-injection build of `ferry` on this node with its
    /// clock set to `now` (RFC 3339, through `FERRY_NOW`).
    pub fn ferry_at(&self, now: &str, args: &[&str]) -> Output {
        let mut command = Command::new(binaries::ferry_with_fault_injection());
        command
            .env_remove("FERRY_CONFIG")
            .env("NO_COLOR", "1")
            .env("FERRY_NOW", now)
            .arg("--config")
            .arg(&self.config)
            .args(args);
        run(&mut command)
    }

    /// Runs `ferry` and asserts exit code 0.
    #[track_caller]
    pub fn ferry_ok(&self, args: &[&str]) -> Output {
        let out = self.ferry(args);
        out.assert_success();
        out
    }

    /// `ferry status --json`, parsed.
    #[track_caller]
    pub fn status_json(&self) -> serde_json::Value {
        let out = self.ferry_ok(&["status", "--json"]);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e})\n{out}"))
    }

    /// `ferry history --json`, parsed.
    #[track_caller]
    pub fn history_json(&self) -> Vec<serde_json::Value> {
        let out = self.ferry_ok(&["history", "--json"]);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("history --json is not a JSON array ({e})\n{out}"))
    }

    /// `<root>/current`
    pub fn current(&self) -> PathBuf {
        self.root.join("current")
    }

    /// The version `current` points at, read from the symlink itself.
    pub fn current_version(&self) -> Option<String> {
        let target = fs::read_link(self.current()).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// `<root>/releases/<version>`
    pub fn release_dir(&self, version: &str) -> PathBuf {
        self.root.join("releases").join(version)
    }

    /// The directory names under `<root>/releases`, sorted.
    pub fn releases_on_disk(&self) -> Vec<String> {
        let Ok(dir) = fs::read_dir(self.root.join("releases")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Asserts that `current` is a relative symlink to `releases/<version>`
    /// and that the tree it shows matches `input` exactly.
    #[track_caller]
    pub fn assert_current(&self, version: &str, input: &Path) {
        let target = fs::read_link(self.current())
            .unwrap_or_else(|e| panic!("{} is not a symlink: {e}", self.current().display()));
        assert!(
            target.is_relative(),
            "current -> {} must be relative",
            target.display()
        );
        assert_eq!(
            target,
            Path::new("releases").join(version),
            "current points at the wrong release"
        );
        assert_tree_matches(&self.current(), input);
    }

    /// Asserts that ferry wrote nothing under the install root: it is
    /// absent or an empty directory.
    #[track_caller]
    pub fn assert_root_untouched(&self) {
        let snapshot = tree_snapshot(&self.root);
        assert!(
            snapshot.is_empty(),
            "the install root {} should be absent or empty, it holds:\n{}",
            self.root.display(),
            render(&snapshot)
        );
    }
}

/// What [`tree_snapshot`] records for an entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Dir,
    /// SHA-256 of the content.
    File(String),
    /// The link target.
    Symlink(String),
    Other,
}

/// One entry of a tree: its path below the snapshot root, permission bits
/// (0 for symlinks) and kind with content digest or link target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotEntry {
    pub path: String,
    pub mode: u32,
    pub kind: Kind,
}

/// Every entry below `dir` (not following symlinks below it; `dir` itself
/// may be a symlink), sorted by path. A missing `dir` gives an empty list.
pub fn tree_snapshot(dir: &Path) -> Vec<SnapshotEntry> {
    let mut out = Vec::new();
    let Ok(root) = fs::canonicalize(dir) else {
        return out;
    };
    walk(&root, "", &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<SnapshotEntry>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let mode = meta.mode() & 0o7777;
        if ft.is_symlink() {
            let target = fs::read_link(&path).unwrap().to_string_lossy().into_owned();
            out.push(SnapshotEntry {
                path: rel,
                mode: 0,
                kind: Kind::Symlink(target),
            });
        } else if ft.is_dir() {
            out.push(SnapshotEntry {
                path: rel.clone(),
                mode,
                kind: Kind::Dir,
            });
            walk(&path, &rel, out);
        } else if ft.is_file() {
            let digest = sha256_hex(&fs::read(&path).unwrap());
            out.push(SnapshotEntry {
                path: rel,
                mode,
                kind: Kind::File(digest),
            });
        } else {
            out.push(SnapshotEntry {
                path: rel,
                mode,
                kind: Kind::Other,
            });
        }
    }
}

/// A snapshot as text, one entry per line, for assertion messages.
pub fn render(snapshot: &[SnapshotEntry]) -> String {
    snapshot
        .iter()
        .map(|e| match &e.kind {
            Kind::Dir => format!("  {:04o} dir     {}/", e.mode, e.path),
            Kind::File(d) => format!("  {:04o} file    {} sha256={}", e.mode, e.path, &d[..16]),
            Kind::Symlink(t) => format!("       symlink {} -> {t}", e.path),
            Kind::Other => format!("  {:04o} other   {}", e.mode, e.path),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that `actual` (an installed tree; may be the `current` symlink)
/// holds exactly what `expected` holds: same paths, kinds, bytes, modes and
/// symlink targets, nothing missing and nothing extra.
///
/// Under `releases/` a file may carry the read-only form of its mode (the
/// expected mode without write bits): that is how ferry installs release
/// files. Elsewhere (in place) modes must match exactly.
#[track_caller]
pub fn assert_tree_matches(actual: &Path, expected: &Path) {
    let mut a = tree_snapshot(actual);
    let e = tree_snapshot(expected);
    let in_release =
        fs::canonicalize(actual).is_ok_and(|p| p.components().any(|c| c.as_os_str() == "releases"));
    if in_release {
        for entry in a.iter_mut().filter(|x| matches!(x.kind, Kind::File(_))) {
            if let Some(want) = e.iter().find(|x| x.path == entry.path) {
                if entry.mode == want.mode & !0o222 {
                    entry.mode = want.mode;
                }
            }
        }
    }
    assert!(
        !e.is_empty(),
        "expected tree {} is empty or missing",
        expected.display()
    );
    if a == e {
        return;
    }
    let mut report = String::new();
    for entry in &e {
        match a.iter().find(|x| x.path == entry.path) {
            None => report.push_str(&format!("  missing: {}\n", entry.path)),
            Some(x) if x != entry => report.push_str(&format!(
                "  differs: {}: expected {entry:?}, got {x:?}\n",
                entry.path
            )),
            Some(_) => {}
        }
    }
    for entry in &a {
        if !e.iter().any(|x| x.path == entry.path) {
            report.push_str(&format!("  extra:   {}\n", entry.path));
        }
    }
    panic!(
        "{} does not match {}:\n{report}\nactual tree:\n{}",
        actual.display(),
        expected.display(),
        render(&a)
    );
}

/// Inode number of a file (not following a final symlink).
pub fn inode(path: &Path) -> u64 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::catch_unwind;

    /// Two copies of the generation-1 tree in a temporary directory.
    fn two_copies() -> (TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_tree(&a, &release_tree(1));
        write_tree(&b, &release_tree(1));
        (dir, a, b)
    }

    fn mismatch_is_caught(change: impl FnOnce(&Path)) {
        let (_dir, a, b) = two_copies();
        assert_tree_matches(&a, &b);
        change(&a);
        let result = catch_unwind(|| assert_tree_matches(&a, &b));
        assert!(result.is_err(), "assert_tree_matches missed a difference");
    }

    #[test]
    fn identical_trees_match_through_a_symlinked_root() {
        let (dir, _a, b) = two_copies();
        let link = dir.path().join("current");
        symlink("a", &link).unwrap();
        assert_tree_matches(&link, &b);
        assert_eq!(tree_snapshot(&link), tree_snapshot(&b));
    }

    #[test]
    fn content_mode_symlink_extra_and_missing_are_caught() {
        mismatch_is_caught(|a| flip_byte(&a.join("bin/app"), 100));
        mismatch_is_caught(|a| {
            fs::set_permissions(a.join("etc/app.toml"), fs::Permissions::from_mode(0o644)).unwrap()
        });
        mismatch_is_caught(|a| {
            fs::set_permissions(a.join("etc"), fs::Permissions::from_mode(0o755)).unwrap()
        });
        mismatch_is_caught(|a| {
            fs::remove_file(a.join("bin/app-current")).unwrap();
            symlink("app.old", a.join("bin/app-current")).unwrap();
        });
        mismatch_is_caught(|a| fs::write(a.join("share/extra"), b"").unwrap());
        mismatch_is_caught(|a| fs::remove_file(a.join("share/doc/README.md")).unwrap());
    }

    #[test]
    fn generations_differ_as_documented() {
        let files = |g| -> Vec<(&'static str, Vec<u8>)> {
            release_tree(g)
                .into_iter()
                .filter_map(|e| match e {
                    Entry::File { path, content, .. } => Some((path, content)),
                    _ => None,
                })
                .collect()
        };
        let (v1, v2) = (files(1), files(2));
        let get = |v: &[(&str, Vec<u8>)], p: &str| {
            v.iter().find(|(q, _)| *q == p).map(|(_, c)| c.clone())
        };
        assert_ne!(get(&v1, "bin/app"), get(&v2, "bin/app"));
        assert_ne!(get(&v1, "etc/app.toml"), get(&v2, "etc/app.toml"));
        assert_eq!(
            get(&v1, "share/doc/README.md"),
            get(&v2, "share/doc/README.md")
        );
        assert!(get(&v1, "etc/legacy.conf").is_some() && get(&v2, "etc/legacy.conf").is_none());
        assert!(
            get(&v1, "share/doc/CHANGELOG.md").is_none()
                && get(&v2, "share/doc/CHANGELOG.md").is_some()
        );
        assert!(get(&v1, "bin/app").unwrap().len() > APP_PAYLOAD_BYTES);
    }
}

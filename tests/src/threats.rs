//! What the network-threat tests share: a published repository served over
//! HTTP to a node, and the one assertion each of them makes — the node
//! refused, said why, and changed nothing it trusts.
//!
//! "Changed nothing" is checked on two trees: the install root (every file,
//! mode and link) and the node's trusted state — everything under its state
//! directory except the operation log (`state.json`, `history.jsonl`, which
//! must record the failure), the lock file, and `downloads/` (a transient
//! failure keeps its partial download for the next run by design; the
//! endless-data tests check it separately).

use std::fs;
use std::path::PathBuf;

use crate::fixtures::{sha256_hex, tree_snapshot, Node, NodeConfig, SnapshotEntry, Workspace};
use crate::http_server::TestServer;
use crate::run::Output;

/// Exit code for a failed verification (contract).
pub const VERIFICATION_FAILED: i32 = 3;
/// Exit code for any other failure (contract).
pub const FAILED: i32 = 1;
/// Exit code for a request refused before anything started (contract): an
/// unknown version, a downgrade not asked for, a `[policy]` rule.
pub const REFUSED: i32 = 8;

/// 1.0.0 and 1.1.0 published, served over HTTP, and a node using it.
pub struct Served {
    pub ws: Workspace,
    pub server: TestServer,
    pub node: Node,
}

/// [`Served`], the node's configuration adjusted by `tweak`. Retries are 1
/// unless `tweak` says otherwise, so rejected fetches fail fast.
pub fn served(tweak: impl FnOnce(&mut NodeConfig)) -> Served {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let server = TestServer::serve(&ws.repo);
    let mut config = NodeConfig::new(server.url(), &ws.public_key);
    config.retries = Some(1);
    tweak(&mut config);
    let node = ws.node_with("node", config);
    Served { ws, server, node }
}

impl Served {
    /// The repository path (`objects/<sha256>`) of the object holding
    /// `file` of input `generation`.
    pub fn object(&self, generation: u32, file: &str) -> String {
        object_path(&self.ws, generation, file)
    }

    /// Installs 1.0.0 cleanly and returns what must not change afterwards.
    pub fn on_release_1(&self) -> Unchanged {
        self.node.ferry_ok(&["apply", "--version", "1.0.0"]);
        self.node.assert_current("1.0.0", &self.ws.input(1));
        self.server.reset_counters();
        Unchanged::of(&self.node)
    }
}

/// The repository path of the object holding `file` of `generation`.
pub fn object_path(ws: &Workspace, generation: u32, file: &str) -> String {
    let content = fs::read(ws.input(generation).join(file)).unwrap();
    let path = format!("objects/{}", sha256_hex(&content));
    assert!(ws.repo.join(&path).is_file(), "no object {path} for {file}");
    path
}

/// The node's trusted state (see the module docs).
pub fn trusted_state(node: &Node) -> Vec<SnapshotEntry> {
    tree_snapshot(&node.state_dir)
        .into_iter()
        .filter(|e| {
            !matches!(e.path.as_str(), "state.json" | "history.jsonl" | "lock")
                && e.path != "downloads"
                && !e.path.starts_with("downloads/")
        })
        .collect()
}

/// The partial downloads in the node's state directory.
pub fn downloads(node: &Node) -> Vec<SnapshotEntry> {
    tree_snapshot(&node.state_dir.join("downloads"))
}

/// The install root and trusted state of a node at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchanged {
    pub root: Vec<SnapshotEntry>,
    pub trusted: Vec<SnapshotEntry>,
    /// Trusted-state paths left out of the comparison.
    pub ignored: Vec<String>,
}

impl Unchanged {
    pub fn of(node: &Node) -> Unchanged {
        Unchanged {
            root: tree_snapshot(&node.root),
            trusted: trusted_state(node),
            ignored: Vec::new(),
        }
    }

    /// The same, without the trusted-state path `path` and what is below
    /// it: for a refusal that follows a genuinely newer index, which the
    /// node rightly records, or verified contents it rightly keeps.
    pub fn except(&self, path: &str) -> Unchanged {
        let mut copy = self.clone();
        copy.ignored.push(path.to_string());
        copy
    }

    /// Asserts that `out` failed with `code`, that its stderr mentions each
    /// of `mentions` (case-insensitive), and that neither the install root
    /// nor the trusted state of `node` differ from `self`.
    #[track_caller]
    pub fn assert_refused(&self, node: &Node, out: &Output, code: i32, mentions: &[&str]) {
        out.assert_code(code);
        for needle in mentions {
            out.assert_stderr_contains(needle);
        }
        let now = Unchanged::of(node);
        let compared = |entries: &[SnapshotEntry]| -> Vec<SnapshotEntry> {
            entries
                .iter()
                .filter(|e| {
                    !self
                        .ignored
                        .iter()
                        .any(|i| e.path == *i || e.path.starts_with(&format!("{i}/")))
                })
                .cloned()
                .collect()
        };
        assert_eq!(
            now.root, self.root,
            "a refused update changed the install root\n{out}"
        );
        assert_eq!(
            compared(&now.trusted),
            compared(&self.trusted),
            "a refused update changed the node's trusted state\n{out}"
        );
    }
}

/// A second repository signed with the workspace's key, for data that is
/// validly signed but belongs elsewhere (another publication, channel or
/// version). Returns its directory.
pub fn other_publication(ws: &Workspace, name: &str, releases: &[(&str, &str, u32)]) -> PathBuf {
    let repo = ws.dir.join(name);
    for (version, channel, generation) in releases {
        let mut command = ws.publisher();
        command
            .arg("release")
            .arg("--repo")
            .arg(&repo)
            .arg("--key")
            .arg(&ws.secret_key)
            .args(["--version", version, "--channel", channel])
            .arg(ws.input(*generation));
        crate::run::run(&mut command).assert_success();
    }
    repo
}

/// The index pin refused the manifest: by its size while reading (it is
/// longer than pinned) or by its digest and size afterwards.
#[track_caller]
pub fn assert_pin_refused(out: &Output) {
    assert!(
        out.stderr.contains("pins") || out.stderr.contains("larger than"),
        "the refusal should come from the index pin\n{out}"
    );
}

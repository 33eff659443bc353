//! The promise: a node downloads small patches instead of the large files
//! that changed a little, picks them by the content it actually holds, and
//! gets exactly the signed bytes whatever happens to a patch — a patch that
//! is missing, corrupt, truncated or made for another base is logged,
//! counted and replaced by the file's full object, and the update completes.
//!
//! Releases are real machine code (a system ELF and its deterministic "next
//! builds", see `ferry_tests::real_code`) published by the real
//! `ferry-publish release --delta-from auto`; nodes run the real `ferry`
//! against the fault-injecting HTTP server, whose request log shows what
//! was fetched.

use std::fs;
use std::path::{Path, PathBuf};

use ferry_tests::fixtures::{
    assert_tree_matches, pseudo_random, sha256_hex, tree_snapshot, Node, NodeConfig, Workspace,
    CHANNEL,
};
use ferry_tests::http_server::{Fault, TestServer};
use ferry_tests::real_code::{config, large_binary, next_build, reordered, small_binary};
use ferry_tests::run::run;
use ferry_tests::tamper::{read_json, resign_manifest, Signer};
use serde_json::Value;

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";
const V3: &str = "3.0.0";

/// The release input of `build` (0, 1, 2): `bin/app` (a real executable,
/// rebuilt each time), `etc/app.conf` (one line changes), `share/blob`
/// (the same bytes reordered), `share/README` (never changes) and, from
/// build 1 on, `share/new-<build>` (new content, no base anywhere).
fn write_input(ws: &Workspace, binary: &[u8], build: u32) -> PathBuf {
    let dir = ws.dir.join("inputs").join(format!("build{build}"));
    let app = if build == 0 {
        binary.to_vec()
    } else {
        next_build(binary, build)
    };
    let blob = reordered(&pseudo_random(0xb10b, 96 * 1024), build);
    let mut files: Vec<(String, Vec<u8>, u32)> = vec![
        ("bin/app".into(), app, 0o755),
        ("etc/app.conf".into(), config(build), 0o644),
        ("share/blob".into(), blob, 0o644),
        (
            "share/README".into(),
            b"same in every build\n".to_vec(),
            0o644,
        ),
    ];
    if build > 0 {
        files.push((
            format!("share/new-{build}"),
            pseudo_random(0x4e3 + u64::from(build), 8 * 1024),
            0o644,
        ));
    }
    for (path, content, mode) in files {
        let full = dir.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(&full, content).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&full, fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

/// Publishes `version` from `input` with the real publisher.
fn publish(ws: &Workspace, version: &str, input: &Path, delta_from: &str) {
    let mut command = ws.release_command(version, CHANNEL, input);
    command.args(["--delta-from", delta_from]);
    run(&mut command).assert_success();
}

/// A workspace with `versions` published from builds 0, 1, 2 of `binary`
/// (auto deltas), served over HTTP. Returns the inputs by version.
struct Repo {
    ws: Workspace,
    server: TestServer,
    inputs: Vec<PathBuf>,
}

impl Repo {
    fn new(binary: &[u8], versions: &[&str]) -> Repo {
        let ws = Workspace::new();
        let mut inputs = Vec::new();
        for (build, version) in versions.iter().enumerate() {
            let input = write_input(&ws, binary, build as u32);
            publish(&ws, version, &input, "auto");
            inputs.push(input);
        }
        let server = TestServer::serve(&ws.repo);
        Repo { ws, server, inputs }
    }

    fn input(&self, version: &str) -> &Path {
        let i = [V1, V2, V3].iter().position(|v| *v == version).unwrap();
        &self.inputs[i]
    }

    /// A symlink-mode node over HTTP with `version` installed.
    fn node_on(&self, name: &str, version: &str) -> Node {
        let node = self.ws.node_with(
            name,
            NodeConfig::new(self.server.url(), &self.ws.public_key),
        );
        node.ferry_ok(&["apply", "--version", version]);
        node
    }

    /// The manifest of `version` as JSON.
    fn manifest(&self, version: &str) -> Value {
        read_json(&self.ws.repo, &format!("manifests/{version}.json"))
    }

    /// The manifest entry of `path` in `version`.
    fn entry(&self, version: &str, path: &str) -> Value {
        self.manifest(version)["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} is not in {version}"))
            .clone()
    }

    /// The delta of `path` in `version` whose base is that path's content in
    /// `base_version`.
    fn delta(&self, version: &str, path: &str, base_version: &str) -> Value {
        let base = sha256_hex(&fs::read(self.input(base_version).join(path)).unwrap());
        self.entry(version, path)["deltas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["base_sha256"] == base.as_str())
            .unwrap_or_else(|| panic!("{version} has no delta for {path} from {base_version}"))
            .clone()
    }

    fn object_path(&self, version: &str, path: &str) -> String {
        self.entry(version, path)["object"]["path"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// GET requests the server answered for `prefix`.
    fn gets(&self, prefix: &str) -> usize {
        self.server
            .requests_for(prefix)
            .iter()
            .filter(|r| r.method == "GET")
            .count()
    }
}

fn last_operation(node: &Node) -> Value {
    node.status_json()["last_operation"].clone()
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v:#}"))
}

#[test]
fn an_update_fetches_patches_instead_of_the_changed_files() {
    let r = Repo::new(&large_binary(), &[V1, V2]);
    let node = r.node_on("a", V1);

    // `ferry check` tells the operator what the update costs, from the
    // signed delta report, and exits 10: an update is available.
    let check = node.ferry(&["check", "--json"]);
    check.assert_code(10);
    let report: Value = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(report["installed"], V1);
    assert_eq!(report["latest"], V2);
    assert_eq!(report["update_available"], true);
    let predicted = u64_of(&report, "download_bytes");
    let full = u64_of(&report, "full_bytes");
    let signed = r.manifest(V2)["delta_report"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["from_version"] == V1)
        .cloned()
        .expect("a delta report for 1.0.0");
    assert_eq!(predicted, u64_of(&signed, "download_bytes"));
    assert_eq!(full, u64_of(&signed, "full_bytes"));
    let text = node.ferry(&["check"]);
    text.assert_code(10);
    text.assert_stdout_contains("update available: 1.0.0 -> 2.0.0");
    text.assert_stdout_contains("download:");

    r.server.reset_counters();
    let out = node.ferry_ok(&["apply"]);
    out.assert_stdout_contains("3 deltas, 1 full");
    out.assert_stdout_contains("without deltas");
    node.assert_current(V2, r.input(V2));

    // The patches came over the wire, not the big objects they replace,
    // and they exercise both families of encodings: bsdiff-style for the
    // executable, zstd's patch-from for the reordered data. (The exact
    // bsdiff-style variant is the publisher's choice.)
    let mut algorithms = Vec::new();
    for (path, family) in [
        ("bin/app", "bidiff"),
        ("etc/app.conf", "zstd-patch-from"),
        ("share/blob", "zstd-patch-from"),
    ] {
        let delta = r.delta(V2, path, V1);
        let algorithm = delta["algorithm"].as_str().unwrap().to_string();
        assert!(
            algorithm.starts_with(family),
            "the publisher chose {algorithm} for {path}; this test wants both families exercised"
        );
        algorithms.push(algorithm);
        let patch = delta["path"].as_str().unwrap();
        assert_eq!(r.gets(patch), 1, "{path}: {patch} fetched once");
        assert_eq!(
            r.gets(&r.object_path(V2, path)),
            0,
            "{path}: the full object was downloaded although a delta applied"
        );
    }
    assert_eq!(r.gets(&r.object_path(V2, "share/new-1")), 1);
    algorithms.dedup();
    assert!(algorithms.len() >= 2, "{algorithms:?}");

    let op = last_operation(&node);
    assert_eq!(op["outcome"], "success");
    assert_eq!(op["deltas_used"], 3);
    assert_eq!(op["delta_fallbacks"], 0);
    assert_eq!(op["full_objects"], 1);
    let downloaded = u64_of(&op, "bytes_downloaded");
    let full_equivalent = u64_of(&op, "bytes_full_equivalent");
    assert!(
        downloaded * 10 < full_equivalent,
        "{downloaded} bytes downloaded for {full_equivalent} of full objects"
    );
    // What `check` promised is what the apply downloaded.
    assert_eq!(
        downloaded, predicted,
        "check said {predicted}, apply took {downloaded}"
    );
    let history = node.history_json();
    assert_eq!(history.last().unwrap()["deltas_used"], 3);

    // Up to date now: exit 0.
    let again = node.ferry(&["check", "--json"]);
    again.assert_code(0);
    let report: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(report["update_available"], false);
    assert_eq!(report["download_bytes"], 0);
    node.ferry(&["check"])
        .assert_code(0)
        .assert_stdout_contains("up to date");
}

#[test]
fn an_interrupted_patch_download_is_resumed_by_the_next_run() {
    let r = Repo::new(&large_binary(), &[V1, V2]);
    // No retries: the first cut ends the run's attempts at once.
    let mut config = NodeConfig::new(r.server.url(), &r.ws.public_key);
    config.retries = Some(0);
    let node = r.ws.node_with("a", config);
    node.ferry_ok(&["apply", "--version", V1]);

    // The network fails mid-patch, and the full object is out of reach
    // too: the update fails, the node stays on 1.0.0.
    let delta = r.delta(V2, "bin/app", V1);
    let patch = delta["path"].as_str().unwrap().to_string();
    let size = u64_of(&delta, "size");
    let cut = size / 2;
    r.server
        .set_fault_times(&patch, Fault::TruncateBody(cut), 1);
    r.server
        .set_fault(&r.object_path(V2, "bin/app"), Fault::Status(503));
    let out = node.ferry(&["apply"]);
    out.assert_code(1);
    node.assert_current(V1, r.input(V1));

    // The next run continues the patch where it stopped; the full object
    // is not needed.
    r.server.clear_faults();
    r.server.reset_counters();
    let out = node.ferry_ok(&["apply"]);
    node.assert_current(V2, r.input(V2));
    let requests: Vec<_> = r
        .server
        .requests_for(&patch)
        .into_iter()
        .filter(|q| q.method == "GET")
        .collect();
    assert_eq!(requests.len(), 1, "{requests:#?}\n{out}");
    assert_eq!(
        requests[0].range.as_deref(),
        Some(format!("bytes={cut}-").as_str()),
        "{out}"
    );
    assert_eq!(requests[0].body_bytes, size - cut);
    assert_eq!(r.gets(&r.object_path(V2, "bin/app")), 0, "{out}");
    assert_eq!(last_operation(&node)["delta_fallbacks"], 0);
}

#[test]
fn a_dry_run_shows_deltas_and_totals_and_changes_nothing() {
    let r = Repo::new(&small_binary(), &[V1, V2]);
    let node = r.node_on("dry", V1);
    let before = (tree_snapshot(&node.root), tree_snapshot(&node.state_dir));
    r.server.reset_counters();
    let out = node.ferry_ok(&["apply", "--dry-run"]);
    out.assert_stdout_contains("dry run: nothing changed");
    let line = |needle: &str| -> String {
        out.stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", out.stdout))
            .to_string()
    };
    for path in ["bin/app", "etc/app.conf", "share/blob"] {
        let algorithm = r.delta(V2, path, V1)["algorithm"].clone();
        let algorithm = algorithm.as_str().unwrap();
        let wanted = format!("delta {algorithm} from 1.0.0 {path}");
        assert!(
            line(path).contains(&wanted),
            "{wanted:?} in:\n{}",
            out.stdout
        );
    }
    assert!(line("share/new-1").contains("full object"));
    let total = line("fetch:");
    assert!(
        total.contains("4 objects,")
            && total.contains("to download (")
            && total.contains("without deltas, ")
            && total.contains("% saved)"),
        "{total}"
    );
    assert!(line("as deltas").contains("3 as deltas, 1 as full objects"));
    assert_eq!(
        (tree_snapshot(&node.root), tree_snapshot(&node.state_dir)),
        before,
        "a dry run changed the node"
    );
    assert_eq!(r.gets("deltas/"), 0, "a dry run downloaded patches");
    assert_eq!(r.gets("objects/"), 0, "a dry run downloaded objects");
}

#[test]
fn nodes_on_two_old_versions_reach_one_target_through_different_deltas() {
    let r = Repo::new(&small_binary(), &[V1, V2, V3]);
    let on_v1 = r.node_on("on-v1", V1);
    let on_v2 = r.node_on("on-v2", V2);
    let from_v1 = r.delta(V3, "bin/app", V1);
    let from_v2 = r.delta(V3, "bin/app", V2);
    assert_ne!(from_v1["path"], from_v2["path"]);

    for (node, used, unused, from) in [
        (&on_v1, &from_v1, &from_v2, V1),
        (&on_v2, &from_v2, &from_v1, V2),
    ] {
        let predicted = node.ferry(&["check", "--json"]);
        predicted.assert_code(10);
        let predicted: Value = serde_json::from_str(&predicted.stdout).unwrap();
        r.server.reset_counters();
        node.ferry_ok(&["apply"]);
        node.assert_current(V3, r.input(V3));
        assert_eq!(r.gets(used["path"].as_str().unwrap()), 1, "node on {from}");
        assert_eq!(
            r.gets(unused["path"].as_str().unwrap()),
            0,
            "node on {from}"
        );
        assert_eq!(r.gets(&r.object_path(V3, "bin/app")), 0, "node on {from}");
        let op = last_operation(node);
        assert_eq!(op["delta_fallbacks"], 0);
        assert!(u64_of(&op, "deltas_used") >= 3, "{op:#}");
        assert_eq!(
            op["bytes_downloaded"], predicted["download_bytes"],
            "node on {from}: check's number is what apply downloaded"
        );
    }
}

#[test]
fn a_node_holding_no_base_downloads_full_objects() {
    // 3.0.0 has deltas from 2.0.0 only (as if 1.0.0 had left the delta
    // window): a node on 1.0.0 holds none of their bases.
    let ws = Workspace::new();
    let binary = small_binary();
    let inputs: Vec<PathBuf> = (0..3).map(|b| write_input(&ws, &binary, b)).collect();
    publish(&ws, V1, &inputs[0], "auto");
    publish(&ws, V2, &inputs[1], "auto");
    publish(&ws, V3, &inputs[2], V2);
    let server = TestServer::serve(&ws.repo);
    let node = ws.node_with("old", NodeConfig::new(server.url(), &ws.public_key));
    node.ferry_ok(&["apply", "--version", V1]);
    let dry = node.ferry_ok(&["apply", "--dry-run"]);
    dry.assert_stdout_contains("0 as deltas, 4 as full objects");
    dry.assert_stdout_contains("0.0% saved");
    server.reset_counters();
    node.ferry_ok(&["apply"])
        .assert_stdout_contains("0 deltas, 4 full");
    node.assert_current(V3, &inputs[2]);
    assert!(server.requests_for("deltas/").is_empty());
    let op = last_operation(&node);
    assert_eq!(
        (op["deltas_used"].as_u64(), op["delta_fallbacks"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(op["bytes_downloaded"], op["bytes_full_equivalent"]);
}

/// Replaces the bytes of `bin/app`'s delta from `base` in 3.0.0 with
/// `patch`, pinned in a re-signed manifest: the patch verifies, so only
/// applying it can tell it is wrong.
fn serve_signed_patch(r: &Repo, base: &str, patch: &[u8], algorithm: &Value) {
    let delta = r.delta(V3, "bin/app", base);
    let path = delta["path"].as_str().unwrap().to_string();
    fs::write(r.ws.repo.join(&path), patch).unwrap();
    let signer = Signer::from_file(&r.ws.secret_key);
    resign_manifest(&r.ws.repo, V3, &signer, |m| {
        for f in m["files"].as_array_mut().unwrap() {
            for d in f["deltas"].as_array_mut().into_iter().flatten() {
                if d["path"] == path.as_str() {
                    d["size"] = Value::from(patch.len() as u64);
                    d["sha256"] = Value::from(sha256_hex(patch));
                    d["algorithm"] = algorithm.clone();
                }
            }
        }
    });
}

/// Applies 3.0.0 on a fresh node on `from` and checks that `bin/app` fell
/// back to its full object and everything else still came as deltas.
fn assert_falls_back(r: &Repo, name: &str, from: &str, patch_served: bool, reasons: &[&str]) {
    let node = r.node_on(name, from);
    r.server.reset_counters();
    let out = node.ferry_ok(&["apply"]);
    out.assert_stdout_contains("1 after a failed delta");
    out.assert_stderr_contains("bin/app");
    out.assert_stderr_contains("fetching the full object instead");
    assert!(
        reasons.iter().any(|reason| out.stderr.contains(reason)),
        "{name}: the warning gives none of {reasons:?}:\n{}",
        out.stderr
    );
    node.assert_current(V3, r.input(V3));
    assert_eq!(
        r.gets(&r.object_path(V3, "bin/app")),
        1,
        "{name}: full object"
    );
    let op = last_operation(&node);
    assert_eq!(op["delta_fallbacks"], 1, "{name}: {op:#}");
    assert!(u64_of(&op, "deltas_used") >= 2, "{name}: {op:#}");
    let history = node.history_json();
    assert_eq!(history.last().unwrap()["delta_fallbacks"], 1);
    // A failed patch's bytes count too.
    let patch_bytes = r.server.bytes_served_by_path();
    let patch = r.delta(V3, "bin/app", from)["path"]
        .as_str()
        .unwrap()
        .to_string();
    let served = patch_bytes.get(&patch).copied().unwrap_or(0);
    assert_eq!(
        served > 0,
        patch_served,
        "{name}: {served} bytes of the patch served"
    );
    let served = if patch_served { served } else { 0 };
    assert!(
        u64_of(&op, "bytes_downloaded")
            >= served + u64_of(&r.entry(V3, "bin/app")["object"], "size"),
        "{name}: {op:#}"
    );
    assert!(
        fs::read_dir(node.state_dir.join("downloads"))
            .unwrap()
            .next()
            .is_none(),
        "{name}: downloads left behind"
    );
}

#[test]
fn corrupt_truncated_and_wrong_base_deltas_fall_back_to_full_objects() {
    let r = Repo::new(&small_binary(), &[V1, V2, V3]);
    let delta = r.delta(V3, "bin/app", V1);
    let path = delta["path"].as_str().unwrap().to_string();
    let good = fs::read(r.ws.repo.join(&path)).unwrap();

    // Corrupt on the wire: one flipped byte, every time it is served.
    r.server
        .set_fault(&path, Fault::FlipByte(good.len() as u64 / 2));
    assert_falls_back(&r, "corrupt", V1, true, &["is corrupt"]);
    r.server.clear_faults();

    // Truncated, and signed as truncated: the patch verifies, then cannot
    // be applied.
    serve_signed_patch(&r, V1, &good[..good.len() / 2], &delta["algorithm"]);
    assert_falls_back(&r, "truncated", V1, true, &["does not apply"]);

    // A valid patch for another base (the genuine patch from 1.0.0's app,
    // kept from before), signed as the patch from 2.0.0's: a node on 2.0.0
    // applies it to its own app, and the result has the wrong SHA-256.
    // (2.0.0's app is longer than 1.0.0's, so the patch never reads past
    // the end of the base: only the output hash can tell.)
    serve_signed_patch(&r, V2, &good, &delta["algorithm"]);
    assert_falls_back(&r, "wrong-base", V2, true, &["is wrong"]);

    // And a patch the server no longer has (404).
    fs::remove_file(r.ws.repo.join(&path)).unwrap();
    assert_falls_back(&r, "missing", V1, false, &["not found"]);
}

#[test]
fn an_in_place_node_uses_deltas_even_from_its_live_files() {
    let r = Repo::new(&small_binary(), &[V1, V2]);
    let targets_node = |name: &str| {
        let node = r.ws.in_place_node(name, "");
        let text = fs::read_to_string(&node.config)
            .unwrap()
            .replace(&format!("file://{}", r.ws.repo.display()), &r.server.url());
        fs::write(&node.config, text).unwrap();
        node.ferry_ok(&["apply", "--version", V1]);
        node
    };

    let node = targets_node("in-place");
    r.server.reset_counters();
    node.ferry_ok(&["apply"])
        .assert_stdout_contains("3 deltas, 1 full");
    assert_tree_matches(&node.root, r.input(V2));
    assert_eq!(r.gets(&r.object_path(V2, "bin/app")), 0);
    assert_eq!(
        r.gets(r.delta(V2, "bin/app", V1)["path"].as_str().unwrap()),
        1
    );

    // The store lost the base (an operator cleaned it by hand): the live
    // file still holds that content, is verified, and serves as the base.
    let node = targets_node("store-lost-base");
    let app_v1 = sha256_hex(&fs::read(r.input(V1).join("bin/app")).unwrap());
    fs::remove_file(node.state_dir.join("store").join(&app_v1)).unwrap();
    let dry = node.ferry_ok(&["apply", "--dry-run"]);
    let algorithm = r.delta(V2, "bin/app", V1)["algorithm"].clone();
    let wanted = format!(
        "delta {} from installed 1.0.0 bin/app",
        algorithm.as_str().unwrap()
    );
    assert!(
        dry.stdout.lines().any(|l| l.contains(&wanted)),
        "{wanted:?} in:\n{}",
        dry.stdout
    );
    r.server.reset_counters();
    node.ferry_ok(&["apply"])
        .assert_stdout_contains("3 deltas, 1 full");
    assert_tree_matches(&node.root, r.input(V2));
    assert_eq!(r.gets(&r.object_path(V2, "bin/app")), 0);
    let op = last_operation(&node);
    assert_eq!(op["delta_fallbacks"], 0);
}

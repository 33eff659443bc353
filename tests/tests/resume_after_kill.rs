//! The promise: a download killed halfway (`kill -9`, a reboot) is not
//! started over. The partial object survives in the node's state directory,
//! the node stays on its old release, and the next `ferry apply` fetches only
//! the missing bytes (HTTP `Range`, or the right offset for `file://`),
//! then checks the SHA-256 of the whole object before using it.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ferry_tests::fixtures::{
    pseudo_random, release_tree, sha256_hex, write_tree, Node, NodeConfig, Workspace, CHANNEL,
};
use ferry_tests::http_server::{Fault, TestServer};
use ferry_tests::run::run;

/// The big file: incompressible, so its object is as large as it is.
const BLOB_BYTES: usize = 8 * 1024 * 1024;
const BLOB_PATH: &str = "share/blob.bin";
/// Generous: the machine running the tests may be loaded.
const DEADLINE: Duration = Duration::from_secs(180);

/// Publishes 1.0.0 (the small fixture) and 2.0.0 (the same plus an 8 MiB
/// blob). Returns the 2.0.0 input tree and the blob's content digest.
fn publish_with_blob(ws: &Workspace) -> (PathBuf, String) {
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    let input = ws.dir.join("inputs").join("with-blob");
    write_tree(&input, &release_tree(1));
    let blob = pseudo_random(0xb10b_0002, BLOB_BYTES);
    let path = input.join(BLOB_PATH);
    fs::write(&path, &blob).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    // A low level keeps publishing quick; the data does not compress anyway.
    run(ws
        .release_command("2.0.0", CHANNEL, &input)
        .args(["--zstd-level", "3"]))
    .assert_success();
    (input, sha256_hex(&blob))
}

fn part_of(node: &Node, content_sha: &str) -> PathBuf {
    node.state_dir
        .join("downloads")
        .join(format!("{content_sha}.part"))
}

fn len_of(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// Starts `ferry apply` in the background, its output going to files in
/// the node's directory.
fn spawn_apply(node: &Node) -> Child {
    let stdout = File::create(node.dir.join("killed-apply.stdout")).unwrap();
    let stderr = File::create(node.dir.join("killed-apply.stderr")).unwrap();
    node.command(&["apply"])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start ferry apply")
}

fn output_of_killed(node: &Node) -> String {
    let read = |name: &str| fs::read_to_string(node.dir.join(name)).unwrap_or_default();
    format!(
        "--- stdout:\n{}\n--- stderr:\n{}",
        read("killed-apply.stdout"),
        read("killed-apply.stderr")
    )
}

#[test]
fn a_download_killed_halfway_resumes_with_only_the_missing_bytes() {
    let ws = Workspace::new();
    let (input, blob_sha) = publish_with_blob(&ws);
    let object = format!("objects/{blob_sha}");
    let object_size = len_of(&ws.repo.join(&object));
    assert!(
        object_size >= BLOB_BYTES as u64,
        "the blob should not compress: its object has {object_size} bytes"
    );

    let server = TestServer::serve(&ws.repo);
    let mut config = NodeConfig::new(server.url(), &ws.public_key);
    // Longer than the test waits: the stalled read must not time out and
    // retry before the process is killed.
    config.timeout_seconds = Some(600);
    let node = ws.node_with("killed", config);
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let before = ferry_tests::fixtures::tree_snapshot(&node.root);

    // The server sends half of the blob's object, then holds the connection.
    let half = object_size / 2;
    server.set_fault(&object, Fault::Stall(half));
    let part = part_of(&node, &blob_sha);
    let mut child = spawn_apply(&node);
    let started = Instant::now();
    loop {
        let served = server.bytes_served_by_path().get(&object).copied();
        if served.unwrap_or(0) >= half && len_of(&part) >= half {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "ferry apply ended ({status}) before the download stalled\n{}",
                output_of_killed(&node)
            );
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the node did not receive half of {object} within {DEADLINE:?} (served: {served:?}, part: {} bytes)\n{}",
            len_of(&part),
            output_of_killed(&node)
        );
        thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL ferry"); // std sends SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");

    // Killed mid-download: the node runs what it ran, untouched, and the
    // partial object is on disk.
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    node.assert_current("1.0.0", &ws.input(1));
    assert_eq!(
        ferry_tests::fixtures::tree_snapshot(&node.root),
        before,
        "a download killed halfway changed the install root"
    );
    let part_len = len_of(&part);
    assert_eq!(
        part_len,
        half,
        "the partial download {} should hold exactly what the server sent before stalling",
        part.display()
    );

    // The network heals; the next run continues where the killed one stopped.
    server.clear_faults();
    server.reset_counters();
    let out = node.ferry_ok(&["apply"]);
    node.assert_current("2.0.0", &input);
    let requests = server.requests_for(&object);
    assert!(!requests.is_empty(), "{out}");
    for r in &requests {
        assert_eq!(r.method, "GET");
        assert_eq!(
            r.range.as_deref(),
            Some(format!("bytes={part_len}-").as_str()),
            "the second run must ask only for the missing bytes: {requests:#?}\n{out}"
        );
        assert_eq!(r.status, 206, "{requests:#?}");
    }
    let served: u64 = requests.iter().map(|r| r.body_bytes).sum();
    let missing = object_size - part_len;
    const SLACK: u64 = 64 * 1024;
    assert!(
        served >= missing && served < missing + SLACK,
        "the second run downloaded {served} bytes of {object}; only the missing {missing} were needed ({object_size} in all, {part_len} kept)\n{out}"
    );
    assert!(
        !part.exists(),
        "the partial download should be gone once admitted"
    );
    let status = node.status_json();
    assert_eq!(status["current_version"], "2.0.0", "{status:#}");
    assert_eq!(status["last_operation"]["outcome"], "success", "{status:#}");
}

/// Over `file://` a killed run cannot be caught mid-copy (it is too fast),
/// so the test leaves what such a run leaves: the first part of the object
/// in `downloads/`. The next apply must continue it at its length — the log
/// says where it resumed — and must still check the whole object: a part
/// whose kept bytes are wrong is discarded and fetched again.
#[test]
fn a_partial_file_download_continues_at_its_offset_and_is_verified_whole() {
    let ws = Workspace::new();
    let (input, blob_sha) = publish_with_blob(&ws);
    let object = ws.repo.join(format!("objects/{blob_sha}"));
    let bytes = fs::read(&object).unwrap();
    let kept = bytes.len() / 3;

    for (name, corrupt) in [("file-resume", false), ("file-resume-corrupt", true)] {
        let node = ws.node(name);
        node.ferry_ok(&["apply", "--version", "1.0.0"]);
        let part = part_of(&node, &blob_sha);
        let mut head = bytes[..kept].to_vec();
        if corrupt {
            head[kept / 2] ^= 0x01;
        }
        fs::create_dir_all(part.parent().unwrap()).unwrap();
        fs::write(&part, &head).unwrap();

        let out = run(node.command(&["apply"]).env("FERRY_LOG", "info"));
        out.assert_success();
        out.assert_stderr_contains(&format!("at byte {kept} of {}", bytes.len()));
        if corrupt {
            out.assert_stderr_contains("corrupt");
        }
        node.assert_current("2.0.0", &input);
        assert!(!part.exists(), "{}", part.display());
    }
}

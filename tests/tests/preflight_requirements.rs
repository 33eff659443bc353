//! The promise: a release that needs a kernel, a glibc or a tool version the
//! node lacks is refused by `ferry apply` before anything is written — the
//! node stays on its release, nothing appears in `releases/` — with every
//! unmet requirement named: what was found and what is required. `ferry
//! preflight` reports the same checks (exit 5 when one fails) and answers
//! within its 2 s budget even when a version probe hangs. A release whose
//! requirements are met installs as usual, on in-place nodes too.
//!
//! Requirements are published with `ferry-publish release --require` and
//! `--require-command` and travel in the signed manifest. The node's kernel
//! is read here from /proc/sys/kernel/osrelease, independently of ferry's
//! uname(2); glibc answers come from fake `getconf`/`ldd` put first on PATH,
//! so the test does not depend on the host's C library.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_tests::fixtures::{tree_snapshot, Node, Workspace, CHANNEL};
use ferry_tests::run::{run, Output};
use serde_json::Value;

/// `ferry preflight` and `ferry apply` exit status when a check fails.
const EXIT_PREFLIGHT: i32 = 5;

/// The running kernel's release string and its leading `major.minor`.
fn kernel() -> (String, u64, u64) {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let release = release.trim().to_string();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u64>().unwrap());
    let (major, minor) = (numbers.next().unwrap(), numbers.next().unwrap());
    (release, major, minor)
}

fn publish_with(ws: &Workspace, version: &str, generation: u32, requirements: &[&str]) {
    run(ws
        .release_command(version, CHANNEL, &ws.input(generation))
        .args(requirements))
    .assert_success();
}

/// The requirements the repository's signed manifest of `version` carries.
fn published_requirements(ws: &Workspace, version: &str) -> Vec<String> {
    let bytes = fs::read(ws.repo.join("manifests").join(format!("{version}.json"))).unwrap();
    let manifest: manifests::Manifest = serde_json::from_slice(&bytes).unwrap();
    manifest.validate().unwrap();
    manifest
        .requirements
        .iter()
        .map(|r| r.to_string())
        .collect()
}

fn preflight_json(node: &Node, args: &[&str]) -> (Output, Value) {
    let mut full = vec!["preflight", "--json"];
    full.extend_from_slice(args);
    let out = node.ferry(&full);
    let json = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("preflight --json is not JSON ({e})\n{out}"));
    (out, json)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

#[test]
fn a_kernel_too_old_is_refused_before_anything_is_written() {
    let ws = Workspace::new();
    let (release, major, _) = kernel();
    publish_with(&ws, "1.0.0", 1, &[]);
    let node = ws.node("n1");
    node.ferry_ok(&["apply"]);
    publish_with(&ws, "1.1.0", 2, &["--require", "kernel:>=999"]);
    assert_eq!(published_requirements(&ws, "1.1.0"), ["kernel >=999"]);

    let root_before = tree_snapshot(&node.root);
    let store_before = tree_snapshot(&node.state_dir.join("store"));
    let out = node.ferry(&["apply"]);
    out.assert_code(EXIT_PREFLIGHT);
    out.assert_stderr_contains("pre-flight checks failed");
    out.assert_stderr_contains(&format!("kernel {major}."));
    out.assert_stderr_contains(&release);
    out.assert_stderr_contains(">=999");
    out.assert_stderr_contains("nothing was changed");
    node.assert_current("1.0.0", &ws.input(1));
    assert_eq!(node.releases_on_disk(), ["1.0.0"]);
    assert_eq!(tree_snapshot(&node.root), root_before);
    assert_eq!(tree_snapshot(&node.state_dir.join("store")), store_before);
    let status = node.status_json();
    assert_eq!(status["current_version"], "1.0.0", "{status:#}");
    assert_eq!(status["last_operation"]["outcome"], "failed", "{status:#}");
    assert!(
        status["last_operation"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(">=999")),
        "{status:#}"
    );

    // `ferry preflight` says the same, one line per check.
    let out = node.ferry(&["preflight"]);
    out.assert_code(EXIT_PREFLIGHT);
    let kernel_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("FAIL kernel:"))
        .unwrap_or_else(|| panic!("no failed kernel line\n{out}"));
    assert!(
        kernel_line.contains(&release) && kernel_line.contains(">=999"),
        "{out}"
    );
    assert!(
        out.stdout.lines().any(|l| l.starts_with("ok   disk:")),
        "{out}"
    );
    assert!(
        out.stdout.lines().any(|l| l.starts_with("ok   memory:")),
        "{out}"
    );
    assert_eq!(node.releases_on_disk(), ["1.0.0"]);
}

#[test]
fn an_in_place_node_checks_requirements_before_touching_its_files() {
    let ws = Workspace::new();
    publish_with(&ws, "1.0.0", 1, &[]);
    let node = ws.in_place_node("in-place", "");
    node.ferry_ok(&["apply"]);
    publish_with(&ws, "1.1.0", 2, &["--require", "kernel:>=999"]);

    let root_before = tree_snapshot(&node.root);
    let out = node.ferry(&["apply"]);
    out.assert_code(EXIT_PREFLIGHT);
    out.assert_stderr_contains(">=999")
        .assert_stderr_contains("nothing was changed");
    assert_eq!(tree_snapshot(&node.root), root_before, "{out}");
    assert_eq!(node.status_json()["current_version"], "1.0.0");

    // Met requirements install in place as usual.
    let (_, major, _) = kernel();
    publish_with(
        &ws,
        "1.2.0",
        3,
        &["--require", &format!("kernel:>={major}")],
    );
    node.ferry_ok(&["apply"]);
    assert_eq!(node.status_json()["current_version"], "1.2.0");
    assert_ne!(tree_snapshot(&node.root), root_before);
}

#[test]
fn command_versions_are_compared_and_met_requirements_install() {
    let ws = Workspace::new();
    let (_, major, minor) = kernel();
    // The version probe is a real script printing "tool 1.2.3" on stdout.
    let bin = ws.dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let tool = bin.join("tool");
    fs::write(&tool, "#!/bin/sh\necho \"tool 1.2.3 (built today)\"\n").unwrap();
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
    let probe = format!("{} --version", tool.display());

    publish_with(
        &ws,
        "1.0.0",
        1,
        &["--require-command", &format!("tool:>=2:{probe}")],
    );
    let node = ws.node("n1");
    let (out, report) = preflight_json(&node, &[]);
    out.assert_code(EXIT_PREFLIGHT);
    assert_eq!(report["version"], "1.0.0", "{report:#}");
    assert_eq!(report["installed"], Value::Null, "{report:#}");
    assert_eq!(report["ok"], false, "{report:#}");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["disk", "memory", "command:tool"], "{report:#}");
    for c in report["checks"].as_array().unwrap() {
        assert!(c["ok"].is_boolean() && c["detail"].is_string(), "{c:#}");
        assert!(c["duration"].as_u64().is_some_and(|ms| ms < 2000), "{c:#}");
    }
    let tool_check = check(&report, "command:tool");
    assert_eq!(tool_check["ok"], false, "{report:#}");
    let detail = tool_check["detail"].as_str().unwrap();
    assert!(
        detail.contains("1.2.3") && detail.contains(">=2"),
        "{detail}"
    );

    let out = node.ferry(&["apply"]);
    out.assert_code(EXIT_PREFLIGHT);
    out.assert_stderr_contains("command:tool");
    out.assert_stderr_contains("1.2.3");
    node.assert_root_untouched();

    // Met: the tool at >=1.2 and the running kernel's own major.minor.
    let kernel_met = format!("kernel:>={major}.{minor}");
    publish_with(
        &ws,
        "1.1.0",
        2,
        &[
            "--require-command",
            &format!("tool:>=1.2:{probe}"),
            "--require",
            &kernel_met,
        ],
    );
    assert_eq!(
        published_requirements(&ws, "1.1.0"),
        [
            format!("command:tool >=1.2 ({probe})"),
            format!("kernel >={major}.{minor}"),
        ]
    );
    let (out, report) = preflight_json(&node, &[]);
    out.assert_success();
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(check(&report, "kernel")["ok"], true, "{report:#}");
    // --version picks the release checked.
    let (out, report) = preflight_json(&node, &["--version", "1.0.0"]);
    out.assert_code(EXIT_PREFLIGHT);
    assert_eq!(report["version"], "1.0.0", "{report:#}");

    node.ferry_ok(&["apply"]);
    node.assert_current("1.1.0", &ws.input(2));
    node.ferry_ok(&["preflight"])
        .assert_stdout_contains("all 4 checks passed");

    // Requirements are content: republishing 1.1.0 without them is refused.
    let out = run(&mut ws.release_command("1.1.0", CHANNEL, &ws.input(2)));
    out.assert_code(1);
    out.assert_stderr_contains("requirements were [");
}

#[test]
fn a_hanging_version_probe_times_out_within_the_budget() {
    let ws = Workspace::new();
    publish_with(
        &ws,
        "1.0.0",
        1,
        &[
            "--require-command",
            "slow:>=1:sleep 10",
            "--require-command",
            "quick:>=1:echo quick 1.0",
        ],
    );
    let node = ws.node("n1");
    let started = Instant::now();
    let (out, report) = preflight_json(&node, &[]);
    let elapsed = started.elapsed();
    out.assert_code(EXIT_PREFLIGHT);
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}\n{out}");
    let slow = check(&report, "command:slow");
    assert_eq!(slow["ok"], false, "{report:#}");
    assert!(
        slow["detail"].as_str().unwrap().contains("timed out"),
        "{report:#}"
    );
    assert_eq!(check(&report, "command:quick")["ok"], true, "{report:#}");
}

/// A directory of fake `getconf` and `ldd` that print `getconf_says` and
/// `ldd_says` (exit 1 when empty / when not glibc, like musl's).
fn fake_libc(ws: &Workspace, name: &str, getconf_says: &str, ldd_says: &str) -> PathBuf {
    let dir = ws.dir.join(name);
    fs::create_dir_all(&dir).unwrap();
    let script = |says: &str| {
        if says.is_empty() {
            "#!/bin/sh\necho 'getconf: unknown variable' >&2\nexit 1\n".to_string()
        } else {
            format!("#!/bin/sh\necho '{says}'\n")
        }
    };
    for (file, text) in [("getconf", script(getconf_says)), ("ldd", script(ldd_says))] {
        let path = dir.join(file);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn preflight_with_path(node: &Node, first_on_path: &Path) -> (Output, Value) {
    let path = format!(
        "{}:{}",
        first_on_path.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run(node.command(&["preflight", "--json"]).env("PATH", path));
    let json = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("preflight --json is not JSON ({e})\n{out}"));
    (out, json)
}

#[test]
fn glibc_is_asked_from_the_system_and_its_absence_fails() {
    let ws = Workspace::new();
    publish_with(&ws, "1.0.0", 1, &["--require", "glibc:>=2.28"]);
    let node = ws.node("n1");

    let old = fake_libc(&ws, "old-glibc", "glibc 2.17", "");
    let (out, report) = preflight_with_path(&node, &old);
    out.assert_code(EXIT_PREFLIGHT);
    let detail = check(&report, "glibc")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("2.17") && detail.contains(">=2.28"),
        "{detail}"
    );

    let new = fake_libc(&ws, "new-glibc", "", "ldd (GNU libc) 2.31");
    let (out, report) = preflight_with_path(&node, &new);
    out.assert_success();
    let detail = check(&report, "glibc")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("2.31") && detail.contains("ldd"),
        "{detail}"
    );

    let musl = fake_libc(&ws, "musl", "", "musl libc (x86_64)");
    let (out, report) = preflight_with_path(&node, &musl);
    out.assert_code(EXIT_PREFLIGHT);
    let detail = check(&report, "glibc")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("no glibc") && detail.contains("musl libc"),
        "{detail}"
    );
}

//! The threat: an API that drifts from its own document. Clients generated
//! from docs/rollout-api.yaml then break on answers it does not describe
//! (an undocumented status, a body of another shape, a request it says is
//! invalid being accepted), and the review found several such drifts.
//!
//! The promise: a property-based run of Schemathesis (the real `st` CLI,
//! from PyPI) against a live `ferry rollout serve` on a five-node cluster
//! finds no answer outside the document: every status code, content type,
//! header and body schema conforms; every request the document says is
//! invalid is refused; every method it does not list gets 405 with
//! `Allow`; no request makes a 5xx that the document does not name. The
//! counts (operations, test cases) are printed for the closing note.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ferry_tests::binaries::workspace_root;
use ferry_tests::cluster::five_nodes_on_1_0_0;
use ferry_tests::rollout_api::{write_inventory, ApiServer};
use ferry_tests::run::run_with_deadline;

/// The `st` that `cargo xtask test` found or installed
/// (`FERRY_SCHEMATHESIS`), else the one on PATH. Missing is a failure:
/// this test proves nothing without it.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("FERRY_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let found = Command::new("st").arg("--version").output();
    match found {
        Ok(out) if out.status.success() => PathBuf::from("st"),
        _ => panic!(
            "this test needs Schemathesis (`st`): `python3 -m pip install schemathesis` \
             (`cargo xtask test` installs it)"
        ),
    }
}

#[test]
fn a_property_based_run_finds_no_answer_outside_the_document() {
    let st = schemathesis();
    let (ws, nodes) = five_nodes_on_1_0_0();
    let inventory = write_inventory(&ws, &nodes, 0.0, None);
    let server = ApiServer::start(&ws, &inventory);
    let spec = workspace_root().join("docs/rollout-api.yaml");
    let mut command = Command::new(&st);
    command
        .current_dir(&ws.dir)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "")
        .arg("run")
        .arg(&spec)
        .args(["--url", &format!("http://{}", server.addr)])
        .args(["-H", &format!("Authorization: Bearer {}", server.token)])
        .args(["--checks", "all"])
        // Examples from the document, its coverage of each parameter's
        // edges, then random requests; the stateful phase would chain
        // plan → execute → watch and wait on real rollouts for minutes.
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "20"])
        .args(["--request-timeout", "60"])
        .args(["--workers", "1"])
        .args(["--seed", "20261208"]);
    let out = run_with_deadline(&mut command, Duration::from_secs(900));
    eprintln!("{}", out.stdout);
    assert_eq!(
        out.code,
        Some(0),
        "Schemathesis found answers outside docs/rollout-api.yaml\n{out}"
    );
    // What it covered, for the record (and so that a run that tested
    // nothing cannot pass).
    let summary: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            l.contains("API Operations") || l.contains("Test cases") || l.contains("passed")
        })
        .collect();
    eprintln!("schemathesis summary: {summary:?}");
    assert!(
        out.stdout.contains("API Operations") && out.stdout.contains("Test cases"),
        "no summary in\n{out}"
    );
}

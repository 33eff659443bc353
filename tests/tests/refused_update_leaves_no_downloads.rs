//! The promise: an update refused by its pre-flight checks (here a kernel
//! requirement the node cannot meet) leaves no trace of the release it
//! refused: no content store, no downloads, no kept manifest and no newer
//! index serial in `trusted.json`. (Its refusal is recorded; that is all.)

use std::fs;

use ferry_tests::fixtures::{Workspace, CHANNEL};
use ferry_tests::run::run;

/// `ferry apply` exit status when a pre-flight check fails (contract).
const EXIT_PREFLIGHT: i32 = 5;

#[test]
fn a_refused_preflight_on_a_fresh_node_writes_no_store_downloads_or_serial() {
    let ws = Workspace::new();
    run(ws
        .release_command("1.0.0", CHANNEL, &ws.input(1))
        .args(["--require", "kernel:>=999"]))
    .assert_success();
    let node = ws.node("fresh");

    node.ferry(&["apply"]).assert_code(EXIT_PREFLIGHT);

    for left in ["store", "downloads", "manifests", "trusted.json"] {
        let path = node.state_dir.join(left);
        assert!(
            !path.exists(),
            "the refused update left {}: {:?}",
            path.display(),
            fs::read_dir(&node.state_dir)
                .map(|d| d.map(|e| e.unwrap().file_name()).collect::<Vec<_>>())
        );
    }
    assert!(
        !node.root.exists(),
        "the refused update made the install root"
    );
}

//! The threat: `ferry repair` replaces each damaged file through a
//! temporary beside it (`.<name>.ferry-tmp-<pid>`); killed between writing
//! it and the rename, it leaves that temporary inside the live release,
//! where it is drift (`ferry verify` exit 4) and, once the node has moved
//! on, stays in the old release for a rollback to trip over. The promise:
//! the next mutating command sweeps it away before anything else
//! (read-only ones leave it for that command).

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_tests::binaries;
use ferry_tests::fixtures::Workspace;

fn repair_temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_name().to_string_lossy().contains(".ferry-tmp-") {
            found.push(path.clone());
        }
        if entry.file_type().unwrap().is_dir() {
            found.extend(repair_temporaries(&path));
        }
    }
    found
}

#[test]
fn a_killed_repairs_temporaries_are_swept_by_the_next_update() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("repaired");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let release = node.release_dir("1.0.0");
    fs::write(release.join("bin/app"), b"damaged").unwrap();

    let killed = Command::new(binaries::ferry_with_fault_injection())
        .env_remove("FERRY_CONFIG")
        .env_remove("FERRY_CRASH_LOG")
        .env("FERRY_CRASH_AT", "converge:before-rename")
        .arg("--config")
        .arg(&node.config)
        .arg("repair")
        .output()
        .unwrap();
    assert_eq!(
        killed.status.signal(),
        Some(9),
        "repair was not killed: {}",
        String::from_utf8_lossy(&killed.stderr)
    );
    assert!(
        !repair_temporaries(&release).is_empty(),
        "the killed repair left no temporary: the test proves nothing"
    );
    node.ferry_ok(&["status"]);
    assert!(!repair_temporaries(&release).is_empty());

    // The next update sweeps them before it moves on from 1.0.0.
    node.ferry_ok(&["apply", "--version", "1.1.0"]);
    assert_eq!(repair_temporaries(&node.root), Vec::<PathBuf>::new());
}

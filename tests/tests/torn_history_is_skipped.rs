//! The threat: a power cut mid-append leaves the last line of
//! `history.jsonl` torn, possibly inside a UTF-8 character. The promise:
//! torn or invalid lines are skipped with one warning, every other record
//! stays readable, operations go on, and the next record starts on a line
//! of its own instead of being glued to (and lost with) the torn one.

use std::fs;
use std::io::Write;

use ferry_tests::fixtures::Workspace;

#[test]
fn a_torn_utf8_last_line_is_skipped_and_the_next_record_is_kept() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("torn");
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let path = node.state_dir.join("history.jsonl");
    // Cut after the first byte of the two-byte `é`: not UTF-8.
    let mut torn = br#"{"operation":"apply","message":"caf"#.to_vec();
    torn.push(0xc3);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&torn)
        .unwrap();

    let out = node.ferry_ok(&["apply", "--version", "1.1.0"]);
    assert_eq!(node.current_version().as_deref(), Some("1.1.0"), "{out}");

    let history = node.ferry_ok(&["history", "--json"]);
    let records: Vec<serde_json::Value> = serde_json::from_str(&history.stdout).unwrap();
    let versions: Vec<&str> = records
        .iter()
        .map(|r| r["to_version"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"], "{history}");
    assert_eq!(
        history
            .stderr
            .matches("warning: skipped 1 unreadable line")
            .count(),
        1,
        "one warning per read\n{history}"
    );
    let bytes = fs::read(&path).unwrap();
    let last = bytes
        .strip_suffix(b"\n")
        .unwrap()
        .rsplit(|&b| b == b'\n')
        .next()
        .unwrap();
    assert!(
        last.starts_with(b"{") && serde_json::from_slice::<serde_json::Value>(last).is_ok(),
        "the new record does not stand on its own line"
    );
}

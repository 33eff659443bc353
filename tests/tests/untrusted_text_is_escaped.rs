//! The threat: bytes from outside reach an operator's terminal or log raw.
//! A bundle's tar header, a server's answer or a repository file can carry
//! ESC sequences (which retitle, repaint or clear the terminal, hiding what
//! came before) and newlines (which forge log lines that look like ferry's
//! own). Every message that quotes such bytes shows them escaped (`\x1b`,
//! `\n`), so an error stays one line of visible text.
//!
//! The bundle here is crafted so that the tar reader itself fails on it
//! (its size field is not a number) and quotes the header's name and field
//! in its own error, the path the review found unescaped. A server's text
//! is a health endpoint's answer: quoted in the failure, recorded in the
//! history, shown by `history` and `status`.

use std::fs;

use ferry_tests::fixtures::{Node, NodeConfig, Workspace};
use ferry_tests::http_server::TestServer;
use ferry_tests::threats::VERIFICATION_FAILED;
use tar::Header;

const ESC: u8 = 0x1b;

/// One ustar header whose name and size field hold an ESC sequence and a
/// newline, with a valid checksum, then the end-of-archive blocks.
fn hostile_tar() -> Vec<u8> {
    let mut header = Header::new_ustar();
    let old = header.as_old_mut();
    let name = b"\x1b]0;owned\x07objects/x\nferry: forged line";
    old.name[..name.len()].copy_from_slice(name);
    old.mode.copy_from_slice(b"0000644\0");
    old.size.copy_from_slice(b"\x1b[2J\n12345\0\0");
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

#[test]
fn a_hostile_tar_header_is_shown_escaped_on_one_line() {
    let ws = Workspace::new();
    let node: Node = ws.node_with(
        "offline",
        NodeConfig::new("http://127.0.0.1:1/ferry".into(), &ws.public_key),
    );
    let bundle = ws.dir.join("hostile.tar");
    fs::write(&bundle, hostile_tar()).unwrap();
    // Logs at `info` too, so every line that quotes the bundle is seen.
    let out = ferry_tests::run::run(
        node.command(&["apply", "--bundle", bundle.to_str().unwrap()])
            .env("FERRY_LOG", "info"),
    );
    out.assert_code(VERIFICATION_FAILED);
    assert!(
        !out.stderr.as_bytes().contains(&ESC) && !out.stdout.as_bytes().contains(&ESC),
        "a raw ESC reached the terminal:\n{out}"
    );
    // The tar reader's own words, with the name and field escaped in them.
    out.assert_stderr_contains("unreadable tar header");
    out.assert_stderr_contains("\\x1b]0;owned\\x07objects/x\\nferry: forged line");
    out.assert_stderr_contains("\\x1b[2J\\n12345");
    assert!(
        !out.stderr
            .lines()
            .any(|line| line.starts_with("ferry: forged")),
        "the name's newline forged a line of its own:\n{out}"
    );
    let error_lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|line| line.starts_with("ferry: error:"))
        .collect();
    assert_eq!(error_lines.len(), 1, "{out}");
    assert!(error_lines[0].contains("forged line"), "{out}");
}

#[test]
fn a_servers_answer_is_shown_escaped_in_errors_and_history() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    // A health endpoint only: the repository stays on file://.
    let served = ws.dir.join("service");
    fs::create_dir_all(&served).unwrap();
    let server = TestServer::serve(&served);
    server.serve_bytes("health", "1.0.0 ok");
    let node = ws.node("a");
    let mut config = fs::read_to_string(&node.config).unwrap();
    config.push_str(&format!(
        "\n[health]\nurl = \"{}health\"\nexpect_version = true\ninterval_ms = 50\nretries = 1\ntimeout_seconds = 5\n",
        server.url()
    ));
    fs::write(&node.config, config).unwrap();
    node.ferry_ok(&["apply", "--version", "1.0.0"]);

    // 1.1.0's gate gets an answer that names no version and carries an
    // ESC sequence and a line of its own.
    server.serve_bytes(
        "health",
        b"\x1b]0;owned\x07 busy\nferry: forged line".to_vec(),
    );
    let out = node.ferry(&["apply"]);
    assert_ne!(out.code, Some(0), "{out}");
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"), "{out}");
    out.assert_stderr_contains("\\x1b]0;owned\\x07 busy\\nferry: forged line");
    for shown in [
        out.clone(),
        node.ferry_ok(&["history"]),
        node.ferry_ok(&["status"]),
    ] {
        assert!(
            !shown.stdout.as_bytes().contains(&ESC) && !shown.stderr.as_bytes().contains(&ESC),
            "a raw ESC reached the terminal:\n{shown}"
        );
        assert!(
            !shown
                .stdout
                .lines()
                .chain(shown.stderr.lines())
                .any(|line| line.starts_with("ferry: forged")),
            "the answer's newline forged a line of its own:\n{shown}"
        );
    }
    node.ferry_ok(&["history"])
        .assert_stdout_contains("\\x1b]0;owned\\x07 busy\\nferry: forged line");
}

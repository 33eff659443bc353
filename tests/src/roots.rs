//! The root of trust from the publisher's side: `ferry-publish root init`,
//! `sign`, `rotate`, `refresh` and releases signed by several keys, as the
//! trust tests drive them, plus the `.minisig` block surgery an attacker
//! (or a broken publisher) could do.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::fixtures::Workspace;
use crate::run::{run, Output};

/// `ferry-publish root SUB --repo <repo> ARGS…`, run.
pub fn root(ws: &Workspace, sub: &str, args: &[&str]) -> Output {
    let mut command = ws.publisher();
    command
        .args(["root", sub, "--repo"])
        .arg(&ws.repo)
        .args(args);
    run(&mut command)
}

/// Drafts, signs with `signers` and publishes the next root whose every
/// role is `keys` (public key files) with the given `init` options.
#[track_caller]
pub fn rotate_to(ws: &Workspace, keys: &[&Path], init: &[&str], signers: &[&Path]) {
    let mut args: Vec<String> = init.iter().map(|s| s.to_string()).collect();
    for key in keys {
        args.push("--key".into());
        args.push(key.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    root(ws, "init", &args).assert_success();
    sign(ws, signers);
    root(ws, "rotate", &[]).assert_success();
}

/// `root sign` with each of `signers` (secret key files).
#[track_caller]
pub fn sign(ws: &Workspace, signers: &[&Path]) {
    let mut args = Vec::new();
    for key in signers {
        args.push("--key".to_string());
        args.push(key.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    root(ws, "sign", &args).assert_success();
}

/// `ferry-publish release` of `version` from `input`, signed by `keys`.
pub fn release_with(ws: &Workspace, version: &str, input: &Path, keys: &[&Path]) -> Output {
    let mut command = ws.publisher();
    command.arg("release").arg("--repo").arg(&ws.repo);
    for key in keys {
        command.arg("--key").arg(key);
    }
    command
        .args(["--version", version, "--channel", crate::fixtures::CHANNEL])
        .arg(input);
    run(&mut command)
}

/// `ferry-publish refresh --repo <repo> --key…` with `extra` options and
/// the environment in `env` (e.g. `SOURCE_DATE_EPOCH`).
pub fn refresh(ws: &Workspace, keys: &[&Path], extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command: Command = ws.publisher();
    command.arg("refresh").arg("--repo").arg(&ws.repo);
    for key in keys {
        command.arg("--key").arg(key);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    run(command.args(extra))
}

/// The signature blocks (4 lines each, with their newline) of a `.minisig`.
pub fn blocks(minisig: &Path) -> Vec<String> {
    let text = fs::read_to_string(minisig).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len() % 4,
        0,
        "{} is not whole blocks",
        minisig.display()
    );
    lines
        .chunks(4)
        .map(|c| format!("{}\n", c.join("\n")))
        .collect()
}

/// The key id (as minisign shows it) that made a signature block.
pub fn block_key_id(block: &str) -> String {
    let line = block.lines().nth(1).expect("a signature line");
    let raw = base64_decode(line.trim());
    let id: [u8; 8] = raw[2..10].try_into().unwrap();
    format!("{:016X}", u64::from_le_bytes(id))
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A time `days` from now, RFC 3339, for `FERRY_NOW`.
pub fn days_from_now(days: i64) -> String {
    let now = jiff::Timestamp::now();
    now.checked_add(jiff::SignedDuration::from_secs(days * 86_400))
        .unwrap()
        .to_string()
}

/// `SOURCE_DATE_EPOCH` for a time `days` from now.
pub fn epoch_days_from_now(days: i64) -> String {
    (jiff::Timestamp::now().as_second() + days * 86_400).to_string()
}

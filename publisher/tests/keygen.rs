//! `ferry-publish keygen` and encrypted keys through the real binary.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;

fn keygen(secret: &std::path::Path, public: &std::path::Path, extra: &[&str]) -> Output {
    run(ferry_publish()
        .arg("keygen")
        .arg("--secret-key")
        .arg(secret)
        .arg("--public-key")
        .arg(public)
        .args(extra))
}

#[test]
fn keygen_prints_the_key_and_never_overwrites_by_accident() {
    let scratch = Scratch::new();
    let (secret, public) = (scratch.path("k.sec"), scratch.path("k.pub"));
    let out = keygen(&secret, &public, &[]);
    out.assert_success();
    let public_text = fs::read_to_string(&public).unwrap();
    let key_id = public_text
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(
        out.stdout.contains(&format!("key id: {key_id}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(public_text.lines().nth(1).unwrap()),
        "{}",
        out.stdout
    );
    assert_eq!(
        fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let secret_text = fs::read_to_string(&secret).unwrap();

    let out = keygen(&secret, &public, &[]);
    out.assert_failure();
    assert!(
        out.stderr.contains("already exists") && out.stderr.contains("--force"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read_to_string(&secret).unwrap(), secret_text);
    assert_eq!(fs::read_to_string(&public).unwrap(), public_text);

    keygen(&secret, &public, &["--force"]).assert_success();
    assert_ne!(fs::read_to_string(&secret).unwrap(), secret_text);
    assert_eq!(
        fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Slow in debug builds (scrypt runs three times), so one test covers it all.
#[test]
fn encrypted_keys_need_their_password() {
    let scratch = Scratch::new();
    let (secret, public) = (scratch.path("e.sec"), scratch.path("e.pub"));
    let password_file = scratch.path("password");
    fs::write(&password_file, "correct horse\n").unwrap();
    let out = keygen(
        &secret,
        &public,
        &["--password-file", password_file.to_str().unwrap()],
    );
    out.assert_success();
    assert!(out.stdout.contains("encrypted"), "{}", out.stdout);

    let input = scratch.path("input");
    write_tree(&input, &[("f", b"x", 0o644)]);
    let repo = scratch.path("repo");
    let out = release(&repo, &secret, "1.0.0", "stable", &input, None, &[]);
    out.assert_failure();
    assert!(
        out.stderr.contains("is encrypted") && out.stderr.contains("FERRY_KEY_PASSWORD"),
        "{}",
        out.stderr
    );

    let wrong = scratch.path("wrong");
    fs::write(&wrong, "battery staple\n").unwrap();
    let out = release(
        &repo,
        &secret,
        "1.0.0",
        "stable",
        &input,
        None,
        &["--password-file", wrong.to_str().unwrap()],
    );
    out.assert_failure();
    assert!(
        out.stderr.contains("cannot decrypt secret key"),
        "{}",
        out.stderr
    );
    assert!(!repo.exists(), "nothing is written with an unusable key");

    let out = run(ferry_publish()
        .env("FERRY_KEY_PASSWORD", "correct horse")
        .arg("release")
        .arg("--repo")
        .arg(&repo)
        .arg("--key")
        .arg(&secret)
        .args(["--version", "1.0.0", "--channel", "stable"])
        .arg(&input));
    out.assert_success();
    verify(&repo, &public).assert_success();
}

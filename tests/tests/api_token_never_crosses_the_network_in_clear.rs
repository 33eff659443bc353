//! The threat: the rollout API's bearer token, sent in clear, is read by
//! anyone on the path and then starts or rolls back rollouts. With
//! `--tls-cert` and `--tls-key` the server speaks HTTPS only: a client
//! trusting the CA gets the API, a client in clear gets nothing of the
//! API (only a 400 saying to use https), a half-given or broken TLS setup keeps the
//! server from starting. And a token as `base64` writes it (`+`, `/`,
//! `=`) works where the README says to put it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_tests::fixtures::Workspace;
use ferry_tests::pki::make_pki;
use ferry_tests::rollout_api::{idle_inventory, ApiServer, TOKEN};
use ferry_tests::run::{run_with_deadline, Output};

/// A cluster the server can load; no request here reaches a node.
fn inventory(ws: &Workspace) -> PathBuf {
    idle_inventory(&ws.dir)
}

/// `curl` of `https://ADDR{path}` with the token, trusting `ca` if given:
/// (curl's exit status, HTTP status, body).
fn curl(addr: &str, path: &str, ca: Option<&Path>) -> (i32, String, String) {
    let mut command = Command::new("curl");
    command.args([
        "--silent",
        "--max-time",
        "20",
        "--write-out",
        "\n%{http_code}",
    ]);
    command.args(["-H", &format!("Authorization: Bearer {TOKEN}")]);
    if let Some(ca) = ca {
        command.arg("--cacert").arg(ca);
    }
    let out = command
        .arg(format!("https://{addr}{path}"))
        .output()
        .expect("curl runs (Debian package curl)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        out.status.code().unwrap_or(-1),
        status.to_string(),
        body.to_string(),
    )
}

#[test]
fn the_api_over_tls_answers_only_a_client_trusting_its_ca() {
    let ws = Workspace::new();
    let pki = ws.dir.join("pki");
    make_pki(&pki, "ferry API test CA");
    let inventory = inventory(&ws);
    let cert = pki.join("server.pem").display().to_string();
    let key = pki.join("server.key").display().to_string();
    let mut server =
        ApiServer::start_with(&ws, &inventory, &["--tls-cert", &cert, "--tls-key", &key]);

    let (code, status, body) = curl(
        &server.addr,
        "/api/v1/updates/history",
        Some(&pki.join("ca.pem")),
    );
    assert_eq!((code, status.as_str()), (0, "200"), "{body}");
    let history: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(history["rollouts"].is_array(), "{history:#}");
    // The page and a wrong token over TLS, for good measure.
    let (_, status, body) = curl(&server.addr, "/", Some(&pki.join("ca.pem")));
    assert_eq!(status, "200");
    assert!(body.contains("/api/v1/updates/watch/"), "not the dashboard");

    // A client that does not trust the CA gets nothing (curl 60: the peer
    // certificate cannot be verified).
    let (code, _, body) = curl(&server.addr, "/api/v1/updates/history", None);
    assert_eq!(code, 60, "{body}");

    // In clear, on the TLS port: nothing of the API, only the advice to
    // use https (at once, not after the request deadline).
    let asked = std::time::Instant::now();
    let mut plain = TcpStream::connect(&server.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let request = format!(
        "GET /api/v1/updates/history HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    plain.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400 ") && answer.contains("speaks HTTPS only"),
        "{answer:?}"
    );
    assert!(!answer.contains("rollouts"), "the API answered in clear");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(server.exited(), None);
    let (code, status, _) = curl(
        &server.addr,
        "/api/v1/updates/history",
        Some(&pki.join("ca.pem")),
    );
    assert_eq!((code, status.as_str()), (0, "200"));
}

fn serve(ws: &Workspace, extra: &[&str]) -> Output {
    let token_file = ws.dir.join("api-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let out = run_with_deadline(
        Command::new(ferry_tests::binaries::ferry())
            .env_remove("FERRY_CONFIG")
            .args(["rollout", "serve", "--listen", &addr, "--token-file"])
            .arg(&token_file)
            .arg("--inventory")
            .arg(inventory(ws))
            .arg("--state-dir")
            .arg(ws.dir.join("coordinator"))
            .args(extra),
        Duration::from_secs(30),
    );
    assert!(
        TcpStream::connect(&addr).is_err(),
        "something listens on {addr} after a refusal"
    );
    out
}

/// Half a TLS setup, or files that are not what they should be: the
/// server does not start (serving in clear instead would send the token
/// in clear), and says which file is wrong.
#[test]
fn a_half_given_or_broken_tls_setup_keeps_the_server_from_starting() {
    let ws = Workspace::new();
    let pki = ws.dir.join("pki");
    make_pki(&pki, "ferry API test CA");
    let other = ws.dir.join("other");
    make_pki(&other, "another CA");
    let cert = pki.join("server.pem").display().to_string();
    let key = pki.join("server.key").display().to_string();
    let other_key = other.join("server.key").display().to_string();
    let garbage = ws.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let garbage = garbage.display().to_string();
    let missing = ws.dir.join("missing.pem").display().to_string();

    serve(&ws, &["--tls-cert", &cert])
        .assert_code(2)
        .assert_stderr_contains("--tls-key");
    serve(&ws, &["--tls-key", &key])
        .assert_code(2)
        .assert_stderr_contains("--tls-cert");
    for (args, says) in [
        (["--tls-cert", &garbage, "--tls-key", &key], "--tls-cert"),
        (["--tls-cert", &missing, "--tls-key", &key], "--tls-cert"),
        (["--tls-cert", &cert, "--tls-key", &garbage], "--tls-key"),
        (["--tls-cert", &cert, "--tls-key", &missing], "--tls-key"),
        // The key of another certificate.
        (["--tls-cert", &cert, "--tls-key", &other_key], "--tls-key"),
        // A certificate where the key should be.
        (["--tls-cert", &cert, "--tls-key", &cert], "--tls-key"),
    ] {
        let out = serve(&ws, &args);
        out.assert_code(1)
            .assert_stderr_contains(says)
            .assert_stderr_contains("PEM");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    }
}

/// The README's recipe makes a token that works in a URL as it is; an
/// older `base64` token (`+`, `/`, `=`) works in the header, and pasted
/// as it is into an old `?token=` link (a `+` there is not a space).
#[test]
fn tokens_work_as_the_readme_says_even_with_plus_slash_and_equals() {
    let ws = Workspace::new();
    let inventory = inventory(&ws);
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let recipe = "openssl rand -hex 32";
    assert!(readme.contains(recipe), "the README's token recipe changed");
    let made = Command::new("sh").arg("-c").arg(recipe).output().unwrap();
    assert!(made.status.success());
    let recipe_token = String::from_utf8(made.stdout).unwrap().trim().to_string();
    assert!(
        recipe_token.chars().all(|c| c.is_ascii_hexdigit()),
        "{recipe_token}"
    );

    for token in [recipe_token.as_str(), "kq+7/Zx3Wm9=Tb+Rf/2Ln0Yh4s8Vd+Q=="] {
        let server = ApiServer::start_with_token(&ws, &inventory, token, &[]);
        server.json("GET", "/api/v1/updates/history", None, 200);
        // The watch stream takes a query token: an unknown rollout is 404
        // once the token is accepted, 401 before.
        let watch = "/api/v1/updates/watch/no-such-rollout";
        let encoded = token
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        for spelled in [token.to_string(), encoded] {
            let reply = server.call("GET", &format!("{watch}?token={spelled}"), None, None);
            assert_eq!(reply.status, 404, "?token={spelled}: {reply:?}");
        }
        let spaced = token.replace('+', " ").replace(' ', "%20");
        if spaced != token {
            let reply = server.call("GET", &format!("{watch}?token={spaced}"), None, None);
            assert_eq!(reply.status, 401, "?token={spaced}: {reply:?}");
        }
    }
}

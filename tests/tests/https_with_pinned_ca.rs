//! HTTPS: a node verifies the TLS certificate of its repository and of its
//! notification receivers against the system store, or against a CA
//! pinned with `repository.ca_file` (`[[notify]] ca_file`).
//!
//! The server is Python's standard `http.server` wrapped in its `ssl`
//! module (OpenSSL underneath) on 127.0.0.1, with a certificate from a CA
//! this test makes, so the system store does not trust it: a node without
//! the pin must refuse, a node with it must update. (`openssl s_server
//! -WWW` served here before, but it answers a missing file with `200 ok`
//! and an error text, which a node walking `roots/<N>.json` rightly refuses
//! as a damaged root; a real static server says 404.)

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::fixtures::{NodeConfig, Workspace, CHANNEL};
use ferry_tests::pki::make_pki;

/// Serves a directory over HTTPS with Python's standard library: 404 for
/// missing files, like any static web server.
const HTTPS_SERVER: &str = r#"
import functools, http.server, ssl, sys
port, cert, key, root = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
handler.log_message = lambda *args: None
"#;

/// A webhook receiver over HTTPS: every POST body is appended as one line
/// to `<root>/received.jsonl`, answered 200.
const HTTPS_RECEIVER: &str = r#"
import http.server, ssl, sys
port, cert, key, root = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(root + "/received.jsonl", "ab") as f:
            f.write(body + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
handler = Receiver
"#;

/// What both scripts end with: `handler` served over TLS on 127.0.0.1.
const SERVE_OVER_TLS: &str = r#"
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

/// An HTTPS server (one of the scripts above) for `root` on 127.0.0.1;
/// killed on drop.
struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    fn start(root: &Path, pki: &Path) -> TlsServer {
        TlsServer::run(HTTPS_SERVER, root, pki)
    }

    fn run(script: &str, root: &Path, pki: &Path) -> TlsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .arg("-c")
            .arg(format!("{script}{SERVE_OVER_TLS}"))
            .arg(port.to_string())
            .arg(pki.join("server.pem"))
            .arg(pki.join("server.key"))
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts (Debian package python3)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the HTTPS server did not start listening on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsServer { child, port }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds `ca_file` to a node's `[repository]` table.
fn pin_ca(config: &Path, ca: &Path) {
    let text = fs::read_to_string(config).unwrap();
    let pinned = text.replacen(
        "[repository]\n",
        &format!("[repository]\nca_file = \"{}\"\n", ca.display()),
        1,
    );
    assert_ne!(text, pinned, "the node config has a [repository] table");
    fs::write(config, pinned).unwrap();
}

#[test]
fn a_pinned_ca_lets_the_node_update_and_an_unknown_ca_is_refused() {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    let pki = ws.dir.join("pki");
    make_pki(&pki, "ferry test CA");
    let server = TlsServer::start(&ws.repo, &pki);

    // The system store does not know the test CA: refused, nothing written.
    let unpinned = ws.node_with("unpinned", NodeConfig::new(server.url(), &ws.public_key));
    let out = unpinned.ferry(&["apply"]);
    out.assert_code(1);
    let stderr = out.stderr.to_lowercase();
    assert!(
        stderr.contains("certificate") || stderr.contains("tls"),
        "expected a TLS error, got:\n{}",
        out.stderr
    );
    unpinned.assert_root_untouched();

    // Pinned to another CA: refused too.
    let other = ws.dir.join("other-pki");
    make_pki(&other, "some other CA");
    let wrong = ws.node_with("wrong-pin", NodeConfig::new(server.url(), &ws.public_key));
    pin_ca(&wrong.config, &other.join("ca.pem"));
    wrong.ferry(&["apply"]).assert_code(1);
    wrong.assert_root_untouched();

    // Pinned to the right CA: updated.
    let pinned = ws.node_with("pinned", NodeConfig::new(server.url(), &ws.public_key));
    pin_ca(&pinned.config, &pki.join("ca.pem"));
    pinned.ferry_ok(&["apply"]);
    pinned.assert_current("1.0.0", &ws.input(1));
}

#[test]
fn notifications_over_https_reach_a_receiver_only_through_a_trusted_ca() {
    let ws = Workspace::new();
    ws.publish("1.0.0", CHANNEL, &ws.input(1));
    let pki = ws.dir.join("pki");
    make_pki(&pki, "receiver CA");
    let inbox = ws.dir.join("inbox");
    fs::create_dir_all(&inbox).unwrap();
    let receiver = TlsServer::run(HTTPS_RECEIVER, &inbox, &pki);
    let hook = format!("{}hook", receiver.url());
    let received = || -> Vec<serde_json::Value> {
        fs::read_to_string(inbox.join("received.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let notify = |node: &ferry_tests::fixtures::Node, keys: &str| {
        let mut text = fs::read_to_string(&node.config).unwrap();
        text.push_str(&format!(
            "\n[[notify]]\nurl = \"{hook}\"\nretries = 0\nnode_name = \"{}\"\n{keys}\n",
            node.name
        ));
        fs::write(&node.config, text).unwrap();
    };

    // Its CA pinned with `ca_file`: delivered.
    let trusting = ws.node("trusting");
    notify(
        &trusting,
        &format!("ca_file = \"{}\"", pki.join("ca.pem").display()),
    );
    trusting.ferry_ok(&["apply"]);
    let got = received();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(
        (got[0]["event"].as_str(), got[0]["node"].as_str()),
        (Some("applied"), Some("trusting"))
    );

    // The system store does not know the CA: not delivered, and the update
    // succeeds all the same.
    let unpinned = ws.node("unpinned");
    notify(&unpinned, "");
    let out = unpinned.ferry_ok(&["apply"]);
    unpinned.assert_current("1.0.0", &ws.input(1));
    out.assert_stderr_contains("not delivered");
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "expected a certificate error:\n{out}"
    );
    assert_eq!(received().len(), 1, "nothing reached the receiver");
}

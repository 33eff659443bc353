//! HTTPS: a node verifies the repository's TLS certificate against the
//! system store, or against a CA pinned with `repository.ca_file`.
//!
//! The server is the real `openssl s_server -WWW` on 127.0.0.1 with a
//! certificate from a CA this test makes, so the system store does not
//! trust it: a node without the pin must refuse, a node with it must update.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::fixtures::{NodeConfig, Workspace, CHANNEL};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, under `dir`.
fn make_pki(dir: &Path, ca_name: &str) {
    fs::create_dir_all(dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let subj = format!("/CN={ca_name}");
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        &subj,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// `openssl s_server -WWW` serving `root` on 127.0.0.1; killed on drop.
struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    fn start(root: &Path, pki: &Path) -> TlsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .current_dir(root)
            .args(["s_server", "-WWW", "-quiet", "-naccept", "1000", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(pki.join("server.pem"))
            .arg("-key")
            .arg(pki.join("server.key"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "openssl s_server did not start listening on 127.0.0.1:{port}"
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

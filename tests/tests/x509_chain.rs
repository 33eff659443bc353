//! X.509 chains: a node whose `[trust] require` includes `x509` installs
//! only what carries a detached CMS signature (`<file>.p7s`) chaining to its
//! pinned CA, made by a valid code-signing certificate.
//!
//! The PKI (root → intermediate → leaves) is made with the real `openssl`
//! CLI, with `openssl ca -startdate/-enddate` for certificates that expired
//! or are not yet valid. The repository is published by `ferry-publish
//! release --x509-cert/--x509-key/--x509-chain`, served by the test HTTP
//! server on 127.0.0.1, and read by `ferry` built with the `x509` feature.
//! Bad signatures are served in place of the good `.p7s` files; each must be
//! refused with its reason named, changing nothing under the install root or
//! in the trusted state. Interop runs both ways: `openssl cms -sign` makes
//! signatures the node accepts, and `openssl cms -verify` accepts the
//! publisher's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_tests::binaries;
use ferry_tests::fixtures::{Node, NodeConfig, Workspace, CHANNEL};
use ferry_tests::http_server::{Fault, TestServer};
use ferry_tests::pki::openssl;
use ferry_tests::run::{run, Output};
use ferry_tests::threats::{other_publication, Unchanged, FAILED, VERIFICATION_FAILED};

const REQ_CNF: &str = "\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
[ root ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
";

/// The `openssl ca` configuration, with one extension section per kind of
/// certificate this test issues.
const CA_CNF: &str = "\
[ ca ]
default_ca = here
[ here ]
database = index.txt
new_certs_dir = .
rand_serial = yes
default_md = sha256
policy = loose
unique_subject = no
copy_extensions = none
[ loose ]
organizationName = optional
commonName = supplied
[ intermediate ]
basicConstraints = critical,CA:true,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ codesign ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ server ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
struct Cert {
    pem: PathBuf,
    key: PathBuf,
}

/// A root and an intermediate CA under `dir`, issuing leaves.
struct Pki {
    dir: PathBuf,
    root: Cert,
    intermediate: Cert,
}

impl Pki {
    fn new(dir: &Path, org: &str) -> Pki {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("req.cnf"), REQ_CNF).unwrap();
        let root = Cert {
            pem: dir.join("root.pem"),
            key: dir.join("root.key"),
        };
        let subject = format!("/O={org}/CN={org} Root CA");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "root.key",
                "-out",
                "root.pem",
                "-subj",
                &subject,
                "-days",
                "36500",
                "-config",
                "req.cnf",
                "-extensions",
                "root",
            ],
        );
        let mut pki = Pki {
            dir: dir.to_path_buf(),
            intermediate: root.clone(),
            root,
        };
        pki.intermediate = pki.issue(
            "intermediate",
            &format!("{org} Release CA"),
            "intermediate",
            ("20200101000000Z", "20991231000000Z"),
        );
        pki
    }

    /// Issues `name` (CN `cn`) with extension section `kind`, valid from
    /// `dates.0` to `dates.1`, signed by the intermediate (or the root when
    /// issuing the intermediate itself).
    fn issue(&self, name: &str, cn: &str, kind: &str, dates: (&str, &str)) -> Cert {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("ca.cnf"), CA_CNF).unwrap();
        fs::write(dir.join("index.txt"), "").unwrap();
        let subject = format!("/O=Ferry Test/CN={cn}");
        let req_cnf = self.dir.join("req.cnf");
        openssl(
            &dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "cert.key",
                "-out",
                "cert.csr",
                "-subj",
                &subject,
                "-config",
                req_cnf.to_str().unwrap(),
            ],
        );
        let issuer = if kind == "intermediate" {
            &self.root
        } else {
            &self.intermediate
        };
        openssl(
            &dir,
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-cert",
                issuer.pem.to_str().unwrap(),
                "-keyfile",
                issuer.key.to_str().unwrap(),
                "-in",
                "cert.csr",
                "-out",
                "cert.pem",
                "-extensions",
                kind,
                "-startdate",
                dates.0,
                "-enddate",
                dates.1,
                "-notext",
            ],
        );
        Cert {
            pem: dir.join("cert.pem"),
            key: dir.join("cert.key"),
        }
    }

    /// A code-signing leaf valid from 2020 to 2099.
    fn good_leaf(&self) -> Cert {
        self.issue(
            "leaf",
            "release.example.com",
            "codesign",
            ("20200101000000Z", "20991231000000Z"),
        )
    }

    /// `openssl cms -sign` of `file` by `leaf`, detached DER, binary,
    /// SHA-256, with the intermediate included: the interop form.
    fn cms_sign(&self, leaf: &Cert, file: &Path) -> Vec<u8> {
        openssl(
            &self.dir,
            &[
                "cms",
                "-sign",
                "-binary",
                "-outform",
                "DER",
                "-md",
                "sha256",
                "-in",
                file.to_str().unwrap(),
                "-signer",
                leaf.pem.to_str().unwrap(),
                "-inkey",
                leaf.key.to_str().unwrap(),
                "-certfile",
                self.intermediate.pem.to_str().unwrap(),
            ],
        )
    }
}

/// `ferry ARGS…` for `node`, run by the `x509`-featured build.
fn ferry_x509(node: &Node, args: &[&str]) -> Output {
    let mut command = Command::new(binaries::ferry_with_x509());
    command
        .env_remove("FERRY_CONFIG")
        .env("NO_COLOR", "1")
        .arg("--config")
        .arg(&node.config)
        .args(args);
    run(&mut command)
}

/// `ferry ARGS…` for `node` with its clock at `now` (RFC 3339, through
/// `FERRY_NOW`), run by the build with both `x509` and `fault-injection`.
fn ferry_x509_at(node: &Node, now: &str, args: &[&str]) -> Output {
    let mut command = Command::new(binaries::ferry_with_x509_and_fault_injection());
    command
        .env_remove("FERRY_CONFIG")
        .env("NO_COLOR", "1")
        .env("FERRY_NOW", now)
        .arg("--config")
        .arg(&node.config)
        .args(args);
    run(&mut command)
}

/// A node of `server` that requires X.509 signatures alone: no minisign
/// key at all, `pki`'s root pinned, the release signer named.
fn x509_only_node(ws: &Workspace, server: &TestServer, pki: &Pki, name: &str) -> Node {
    let mut config = NodeConfig::new(server.url(), &ws.public_key);
    config.public_keys.clear();
    config.retries = Some(1);
    let node = ws.node_with(name, config);
    add_trust(
        &node,
        &format!(
            "require = [\"x509\"]\nx509_roots = [\"{}\"]\nx509_signer = \"CN=release.example.com\"\n",
            pki.root.pem.display()
        ),
    );
    node
}

/// Asserts that no minisign file (signature or root) was requested: an
/// X.509-only node has no use for them.
#[track_caller]
fn assert_no_minisign_fetched(server: &TestServer) {
    let minisign: Vec<String> = server
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.ends_with(".minisig") || p.starts_with("roots/") || p == "root.json")
        .collect();
    assert!(
        minisign.is_empty(),
        "an X.509-only node fetched minisign files: {minisign:?}"
    );
}

/// Adds a `[trust]` table to the node's configuration.
fn add_trust(node: &Node, table: &str) {
    let mut text = fs::read_to_string(&node.config).unwrap();
    text.push_str("\n[trust]\n");
    text.push_str(table);
    fs::write(&node.config, text).unwrap();
}

fn release_with_x509(ws: &Workspace, pki: &Pki, leaf: &Cert, version: &str, generation: u32) {
    release_with_x509_args(ws, pki, leaf, version, generation, &[]);
}

/// [`release_with_x509`] with further `ferry-publish release` arguments.
fn release_with_x509_args(
    ws: &Workspace,
    pki: &Pki,
    leaf: &Cert,
    version: &str,
    generation: u32,
    extra: &[&str],
) {
    let mut command = ws.release_command(version, CHANNEL, &ws.input(generation));
    command.args(extra);
    command
        .arg("--x509-cert")
        .arg(&leaf.pem)
        .arg("--x509-key")
        .arg(&leaf.key)
        .arg("--x509-chain")
        .arg(&pki.intermediate.pem);
    run(&mut command).assert_success();
}

#[test]
fn x509_signatures_are_required_verified_and_interoperable() {
    let ws = Workspace::new();
    let pki = Pki::new(&ws.dir.join("pki"), "Ferry Test");
    let leaf = pki.good_leaf();
    release_with_x509(&ws, &pki, &leaf, "1.0.0", 1);
    release_with_x509(&ws, &pki, &leaf, "1.1.0", 2);
    for file in ["index.json", "manifests/1.0.0.json", "manifests/1.1.0.json"] {
        let p7s = ws.repo.join(format!("{file}.p7s"));
        assert!(p7s.is_file(), "ferry-publish wrote no {}", p7s.display());
        assert!(ws.repo.join(format!("{file}.minisig")).is_file());
        // Interop: the real CLI checks ferry-publish's signature over the
        // file's exact bytes to the root alone (the intermediate travels in
        // the signature). `-purpose any` because OpenSSL's default CMS
        // purpose (smime_sign) refuses a codeSigning-only leaf.
        openssl(
            &pki.dir,
            &[
                "cms",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                p7s.to_str().unwrap(),
                "-content",
                ws.repo.join(file).to_str().unwrap(),
                "-CAfile",
                pki.root.pem.to_str().unwrap(),
                "-purpose",
                "any",
                "-out",
                "/dev/null",
            ],
        );
    }

    let server = TestServer::serve(&ws.repo);
    let mut config = NodeConfig::new(server.url(), &ws.public_key);
    config.retries = Some(1);
    let node = ws.node_with("node", config);
    let trust = format!(
        "require = [\"minisign\", \"x509\"]\nx509_roots = [\"{}\"]\nx509_signer = \"CN=release.example.com\"\n",
        pki.root.pem.display()
    );
    add_trust(&node, &trust);

    // The good chain: accepted.
    ferry_x509(&node, &["apply", "--version", "1.0.0"]).assert_success();
    node.assert_current("1.0.0", &ws.input(1));
    let before = Unchanged::of(&node);

    let index = ws.repo.join("index.json");
    let stranger = Pki::new(&ws.dir.join("stranger-pki"), "Stranger");
    let stranger_leaf = stranger.good_leaf();
    let expired = pki.issue(
        "expired",
        "release.example.com",
        "codesign",
        ("20200101000000Z", "20210101000000Z"),
    );
    let not_yet = pki.issue(
        "not-yet",
        "release.example.com",
        "codesign",
        ("20900101000000Z", "20991231000000Z"),
    );
    let server_auth = pki.issue(
        "server-auth",
        "release.example.com",
        "server",
        ("20200101000000Z", "20991231000000Z"),
    );
    let other_signer = pki.issue(
        "other-signer",
        "ci.example.com",
        "codesign",
        ("20200101000000Z", "20991231000000Z"),
    );
    let manifest_v1 = ws.repo.join("manifests/1.0.0.json");
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "a CA the node does not pin",
            stranger.cms_sign(&stranger_leaf, &index),
            &["index.json", "unknown CA"],
        ),
        (
            "an expired leaf",
            pki.cms_sign(&expired, &index),
            &["index.json", "signer certificate", "expired at"],
        ),
        (
            "a leaf not valid yet",
            pki.cms_sign(&not_yet, &index),
            &["index.json", "not yet valid"],
        ),
        (
            "a serverAuth-only leaf",
            pki.cms_sign(&server_auth, &index),
            &["index.json", "serverAuth only", "codeSigning"],
        ),
        (
            "another signer of the same CA",
            pki.cms_sign(&other_signer, &index),
            &["index.json", "CN=ci.example.com", "x509_signer"],
        ),
        (
            "a signature over other bytes (a tampered payload)",
            pki.cms_sign(&leaf, &manifest_v1),
            &["index.json", "does not match the signed bytes", "tampered"],
        ),
        (
            "garbage",
            b"not a signature".to_vec(),
            &["index.json", "not a DER CMS"],
        ),
    ];
    for (what, p7s, mentions) in cases {
        server.serve_bytes("/index.json.p7s", p7s);
        let out = ferry_x509(&node, &["apply"]);
        before.assert_refused(&node, &out, VERIFICATION_FAILED, mentions);
        assert_eq!(
            node.current_version().as_deref(),
            Some("1.0.0"),
            "{what}: {out}"
        );
    }

    // Missing signatures (404): the index's, then, with a good index, the
    // manifest's.
    server.clear_faults();
    server.set_fault_exact("/index.json.p7s", Fault::Status(404));
    let out = ferry_x509(&node, &["apply"]);
    before.assert_refused(
        &node,
        &out,
        VERIFICATION_FAILED,
        &[
            "index.json has no X.509 signature",
            "index.json.p7s",
            "missing",
        ],
    );
    server.clear_faults();
    server.set_fault_exact("/manifests/1.1.0.json.p7s", Fault::Status(404));
    let out = ferry_x509(&node, &["apply"]);
    before.assert_refused(
        &node,
        &out,
        VERIFICATION_FAILED,
        &["manifests/1.1.0.json has no X.509 signature", "missing"],
    );
    server.clear_faults();

    // Interop the other way: signatures made by `openssl cms -sign` with
    // the good leaf are accepted, and the update goes through.
    let manifest_v2 = ws.repo.join("manifests/1.1.0.json");
    server.serve_bytes("/index.json.p7s", pki.cms_sign(&leaf, &index));
    server.serve_bytes(
        "/manifests/1.1.0.json.p7s",
        pki.cms_sign(&leaf, &manifest_v2),
    );
    ferry_x509(&node, &["apply"]).assert_success();
    node.assert_current("1.1.0", &ws.input(2));
}

#[test]
fn a_build_without_x509_refuses_a_policy_that_requires_it() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("plain");
    add_trust(
        &node,
        "require = [\"minisign\", \"x509\"]\nx509_roots = [\"/etc/ferry/ca.pem\"]\n",
    );
    let before = Unchanged::of(&node);
    let out = node.ferry(&["apply"]);
    before.assert_refused(&node, &out, FAILED, &["lacks X.509 support", "ferry-x509"]);
}

#[test]
fn x509_keys_without_requiring_x509_are_a_configuration_error() {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("half-configured");
    add_trust(&node, "x509_roots = [\"/etc/ferry/ca.pem\"]\n");
    let out = node.ferry(&["apply"]);
    out.assert_code(FAILED);
    out.assert_stderr_contains("does not include \"x509\"");
    node.assert_root_untouched();
}

#[test]
fn an_x509_only_node_installs_updates_and_rolls_back_without_any_minisign_key() {
    let ws = Workspace::new();
    let pki = Pki::new(&ws.dir.join("pki"), "Ferry Test");
    let leaf = pki.good_leaf();
    release_with_x509(&ws, &pki, &leaf, "1.0.0", 1);
    release_with_x509(&ws, &pki, &leaf, "1.1.0", 2);
    let server = TestServer::serve(&ws.repo);
    let node = x509_only_node(&ws, &server, &pki, "x509-only");

    ferry_x509(&node, &["apply", "--version", "1.0.0"]).assert_success();
    node.assert_current("1.0.0", &ws.input(1));
    // Kept with the signature that verified it and the time it did; no
    // minisign root was walked or saved.
    let kept = node.state_dir.join("manifests");
    assert!(kept.join("1.0.0.json.p7s").is_file());
    assert!(kept.join("1.0.0.json.verified-at").is_file());
    assert!(!kept.join("1.0.0.json.minisig").exists());
    assert!(!node.state_dir.join("trusted-root.json").exists());
    assert!(!node.state_dir.join("roots").exists());
    let before = Unchanged::of(&node);

    // The index is checked by its `.p7s` before a byte of it is parsed:
    // garbage is refused by the signature, never by the JSON parser.
    let index = fs::read(ws.repo.join("index.json")).unwrap();
    let mut flipped = index.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    for (what, bytes) in [
        ("garbage", b"{ not json".to_vec()),
        ("a flipped byte", flipped),
    ] {
        server.serve_bytes("/index.json", bytes);
        let out = ferry_x509(&node, &["apply"]);
        before.assert_refused(
            &node,
            &out,
            VERIFICATION_FAILED,
            &[
                "index.json",
                "X.509 signature",
                "does not match the signed bytes",
            ],
        );
        assert!(
            !out.stderr.contains("JSON"),
            "{what}: parsed before verified\n{out}"
        );
    }
    server.clear_faults();

    // The manifest: a tampered one fails its pin in the verified index; one
    // with a signature over other bytes fails its `.p7s`.
    let mut manifest = fs::read(ws.repo.join("manifests/1.1.0.json")).unwrap();
    manifest[10] ^= 0x01;
    server.serve_bytes("/manifests/1.1.0.json", manifest);
    let out = ferry_x509(&node, &["apply"]);
    before.assert_refused(
        &node,
        &out,
        VERIFICATION_FAILED,
        &["manifest of 1.1.0", "pins"],
    );
    server.clear_faults();
    server.serve_bytes(
        "/manifests/1.1.0.json.p7s",
        fs::read(ws.repo.join("index.json.p7s")).unwrap(),
    );
    let out = ferry_x509(&node, &["apply"]);
    before.assert_refused(
        &node,
        &out,
        VERIFICATION_FAILED,
        &["manifests/1.1.0.json", "does not match the signed bytes"],
    );
    server.clear_faults();

    // Missing signatures: the index's, then the manifest's.
    for (p7s, mentions) in [
        (
            "/index.json.p7s",
            &["index.json has no X.509 signature", "missing"][..],
        ),
        (
            "/manifests/1.1.0.json.p7s",
            &["manifests/1.1.0.json has no X.509 signature", "missing"][..],
        ),
    ] {
        server.set_fault_exact(p7s, Fault::Status(404));
        let out = ferry_x509(&node, &["apply"]);
        before.assert_refused(&node, &out, VERIFICATION_FAILED, mentions);
        server.clear_faults();
    }

    // The good repository: update, roll back, verify — all without minisign.
    ferry_x509(&node, &["apply"]).assert_success();
    node.assert_current("1.1.0", &ws.input(2));
    ferry_x509(&node, &["rollback"]).assert_success();
    node.assert_current("1.0.0", &ws.input(1));
    ferry_x509(&node, &["verify"]).assert_success();
    assert_no_minisign_fetched(&server);

    // A repository signed with minisign only is unsigned for this node.
    let minisign_only = other_publication(&ws, "minisign-only", &[("1.0.0", CHANNEL, 1)]);
    let other_server = TestServer::serve(&minisign_only);
    let fresh = x509_only_node(&ws, &other_server, &pki, "fresh");
    let empty = Unchanged::of(&fresh);
    let out = ferry_x509(&fresh, &["apply"]);
    empty.assert_refused(
        &fresh,
        &out,
        VERIFICATION_FAILED,
        &["index.json has no X.509 signature", "missing"],
    );
    assert_no_minisign_fetched(&other_server);
}

#[test]
fn a_leaf_that_expired_after_install_still_allows_rollback_and_verify() {
    let ws = Workspace::new();
    let pki = Pki::new(&ws.dir.join("pki"), "Ferry Test");
    let leaf = pki.issue(
        "short-leaf",
        "release.example.com",
        "codesign",
        ("20200101000000Z", "20350101000000Z"),
    );
    // An index valid for a century, so that only the leaf can expire.
    let long = ["--expires-in", "36500"];
    release_with_x509_args(&ws, &pki, &leaf, "1.0.0", 1, &long);
    release_with_x509_args(&ws, &pki, &leaf, "1.1.0", 2, &long);
    let server = TestServer::serve(&ws.repo);
    let node = x509_only_node(&ws, &server, &pki, "node");

    ferry_x509_at(
        &node,
        "2030-01-01T00:00:00Z",
        &["apply", "--version", "1.0.0"],
    )
    .assert_success();
    ferry_x509_at(&node, "2030-06-01T00:00:00Z", &["apply"]).assert_success();
    node.assert_current("1.1.0", &ws.input(2));

    // 2036: the leaf expired (2035). Nothing new signed by it is accepted…
    let later = "2036-01-01T00:00:00Z";
    let before = Unchanged::of(&node);
    let out = ferry_x509_at(
        &node,
        later,
        &["apply", "--version", "1.0.0", "--allow-downgrade"],
    );
    before.assert_refused(
        &node,
        &out,
        VERIFICATION_FAILED,
        &["index.json", "signer certificate", "expired at"],
    );
    // …but the releases this node verified while it was valid can still be
    // rolled back to and verified, re-checked as of their install.
    ferry_x509_at(&node, later, &["rollback"]).assert_success();
    node.assert_current("1.0.0", &ws.input(1));
    ferry_x509_at(&node, later, &["verify"]).assert_success();

    // The recorded time is what the chain is judged at: moved past the
    // leaf's expiry, or past now, the kept manifest is refused.
    let record = node.state_dir.join("manifests/1.0.0.json.verified-at");
    let good = fs::read(&record).unwrap();
    for (at, mentions) in [
        (
            "2035-06-01T00:00:00Z",
            &[
                "kept manifest of 1.0.0",
                "re-verified as of 2035-06-01",
                "expired at",
            ][..],
        ),
        (
            "2037-01-01T00:00:00Z",
            &["verified at 2037-01-01", "later than now"][..],
        ),
    ] {
        fs::write(&record, format!("{{\"verified_at\":\"{at}\"}}")).unwrap();
        let tampered = Unchanged::of(&node);
        let out = ferry_x509_at(&node, later, &["verify"]);
        tampered.assert_refused(&node, &out, VERIFICATION_FAILED, mentions);
    }
    fs::write(&record, good).unwrap();
    ferry_x509_at(&node, later, &["verify"]).assert_success();
    // A tampered kept manifest still breaks its signature.
    let kept = node.state_dir.join("manifests/1.0.0.json");
    let mut bytes = fs::read(&kept).unwrap();
    bytes[10] ^= 0x01;
    fs::write(&kept, bytes).unwrap();
    let tampered = Unchanged::of(&node);
    let out = ferry_x509_at(&node, later, &["verify"]);
    tampered.assert_refused(
        &node,
        &out,
        VERIFICATION_FAILED,
        &["kept manifest of 1.0.0", "does not match the signed bytes"],
    );
}

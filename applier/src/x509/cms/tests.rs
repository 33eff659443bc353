//! Unit tests of the CMS verifier on chains built in memory, with the dates
//! and usages each case needs. The end-to-end proofs (real `openssl` CLI,
//! real HTTP, real node) are in tests/tests/x509_chain.rs.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder};

use super::*;

/// 2026-01-01T00:00:00Z: every test certificate is judged at this time.
const NOW: i64 = 1_767_225_600;
const DAY: i64 = 86_400;

struct Issued {
    cert: X509,
    key: PKey<Private>,
}

#[derive(Clone, Copy)]
enum Leaf {
    CodeSigning,
    ServerAuthOnly,
    NoDigitalSignature,
}

fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate for `cn` valid from `from` to `until` (unix seconds),
/// signed by `issuer` (self-signed when `None`); a CA unless `leaf` says
/// what kind of signer it is.
fn issue(cn: &str, issuer: Option<&Issued>, leaf: Option<Leaf>, from: i64, until: i64) -> Issued {
    let key = key();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("O", "Example Corp").unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |i| i.cert.subject_name()))
        .unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(from).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(until).unwrap())
        .unwrap();
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(issuer.map(|i| i.cert.as_ref()), None))
        .unwrap();
    b.append_extension(ski).unwrap();
    if issuer.is_some() {
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(issuer.map(|i| i.cert.as_ref()), None))
            .unwrap();
        b.append_extension(aki).unwrap();
    }
    match leaf {
        None => {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        }
        Some(kind) => {
            b.append_extension(BasicConstraints::new().critical().build().unwrap())
                .unwrap();
            let mut usage = KeyUsage::new();
            usage.critical();
            match kind {
                Leaf::NoDigitalSignature => usage.key_encipherment(),
                _ => usage.digital_signature(),
            };
            b.append_extension(usage.build().unwrap()).unwrap();
            let mut eku = ExtendedKeyUsage::new();
            match kind {
                Leaf::ServerAuthOnly => eku.server_auth(),
                _ => eku.code_signing(),
            };
            b.append_extension(eku.build().unwrap()).unwrap();
        }
    }
    let signer = issuer.map_or(&key, |i| &i.key);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    Issued {
        cert: b.build(),
        key,
    }
}

/// Root → intermediate → leaf, all valid around NOW.
struct Pki {
    root: Issued,
    intermediate: Issued,
}

impl Pki {
    fn new(root_cn: &str) -> Pki {
        let root = issue(root_cn, None, None, NOW - 400 * DAY, NOW + 4000 * DAY);
        let intermediate = issue(
            "Example Release CA",
            Some(&root),
            None,
            NOW - 300 * DAY,
            NOW + 2000 * DAY,
        );
        Pki { root, intermediate }
    }

    fn leaf(&self, kind: Leaf, from: i64, until: i64) -> Issued {
        issue(
            "release.example.com",
            Some(&self.intermediate),
            Some(kind),
            from,
            until,
        )
    }

    fn good_leaf(&self) -> Issued {
        self.leaf(Leaf::CodeSigning, NOW - 30 * DAY, NOW + 300 * DAY)
    }

    fn policy(&self, signer: Option<&str>) -> X509Policy {
        X509Policy::new(
            vec![self.root.cert.clone()],
            signer.map(|s| SignerName::parse(s).unwrap()),
        )
        .unwrap()
    }

    /// A detached DER signature of `data` by `leaf`, carrying the
    /// intermediate, as `openssl cms -sign -binary -outform DER` makes it.
    fn sign(&self, leaf: &Issued, data: &[u8]) -> Vec<u8> {
        let mut chain = Stack::new().unwrap();
        chain.push(self.intermediate.cert.clone()).unwrap();
        CmsContentInfo::sign(
            Some(&leaf.cert),
            Some(&leaf.key),
            Some(&chain),
            Some(data),
            CMSOptions::BINARY | CMSOptions::DETACHED,
        )
        .unwrap()
        .to_der()
        .unwrap()
    }
}

const DATA: &[u8] = b"{\"format\":1,\"type\":\"index\"}";

#[test]
fn a_code_signing_leaf_under_a_pinned_root_verifies() {
    let pki = Pki::new("Example Root CA");
    let leaf = pki.good_leaf();
    let der = pki.sign(&leaf, DATA);
    let signer = verify_detached(DATA, &der, &pki.policy(None), now()).unwrap();
    assert_eq!(signer.subject, "O=Example Corp, CN=release.example.com");
    assert_eq!(signer.issuer, "O=Example Corp, CN=Example Release CA");
    assert_eq!(signer.sha256.len(), 64);
    // The allowed signer, by CN alone and by CN and O.
    for name in [
        "CN=release.example.com",
        "cn=release.example.com, O=Example Corp",
    ] {
        verify_detached(DATA, &der, &pki.policy(Some(name)), now()).unwrap();
    }
}

#[test]
fn a_pinned_intermediate_is_an_anchor_on_its_own() {
    let pki = Pki::new("Example Root CA");
    let leaf = pki.good_leaf();
    let der = pki.sign(&leaf, DATA);
    let policy = X509Policy::new(vec![pki.intermediate.cert.clone()], None).unwrap();
    verify_detached(DATA, &der, &policy, now()).unwrap();
}

#[test]
fn a_tampered_payload_is_rejected() {
    let pki = Pki::new("Example Root CA");
    let der = pki.sign(&pki.good_leaf(), DATA);
    let mut tampered = DATA.to_vec();
    tampered[5] ^= 1;
    let err = verify_detached(&tampered, &der, &pki.policy(None), now()).unwrap_err();
    assert!(matches!(err, X509Error::Tampered(_)), "{err}");
    assert!(err.to_string().contains("tampered"), "{err}");
}

#[test]
fn an_unknown_ca_is_rejected() {
    let pki = Pki::new("Example Root CA");
    let stranger = Pki::new("Some Other Root CA");
    let der = stranger.sign(&stranger.good_leaf(), DATA);
    let err = verify_detached(DATA, &der, &pki.policy(None), now()).unwrap_err();
    assert!(matches!(err, X509Error::UnknownCa { .. }), "{err}");
    assert!(err.to_string().contains("unknown CA"), "{err}");
}

#[test]
fn an_expired_leaf_is_rejected_at_the_injected_time() {
    let pki = Pki::new("Example Root CA");
    let leaf = pki.leaf(Leaf::CodeSigning, NOW - 60 * DAY, NOW - DAY);
    let der = pki.sign(&leaf, DATA);
    let err = verify_detached(DATA, &der, &pki.policy(None), now()).unwrap_err();
    assert!(
        matches!(
            err,
            X509Error::Expired {
                role: CertRole::Signer,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("expired at"), "{err}");
    // The same signature was good while the leaf was.
    let earlier = Timestamp::from_second(NOW - 10 * DAY).unwrap();
    verify_detached(DATA, &der, &pki.policy(None), earlier).unwrap();
}

#[test]
fn a_not_yet_valid_leaf_is_rejected() {
    let pki = Pki::new("Example Root CA");
    let leaf = pki.leaf(Leaf::CodeSigning, NOW + DAY, NOW + 60 * DAY);
    let der = pki.sign(&leaf, DATA);
    let err = verify_detached(DATA, &der, &pki.policy(None), now()).unwrap_err();
    assert!(matches!(err, X509Error::NotYetValid { .. }), "{err}");
    assert!(err.to_string().contains("not yet valid"), "{err}");
}

#[test]
fn a_server_auth_only_leaf_is_rejected() {
    let pki = Pki::new("Example Root CA");
    let leaf = pki.leaf(Leaf::ServerAuthOnly, NOW - DAY, NOW + DAY);
    let der = pki.sign(&leaf, DATA);
    let err = verify_detached(DATA, &der, &pki.policy(None), now()).unwrap_err();
    assert!(matches!(err, X509Error::ExtendedKeyUsage { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("serverAuth only") && text.contains("codeSigning"),
        "{text}"
    );
}

#[test]
fn a_leaf_without_digital_signature_is_rejected() {
    let pki = Pki::new("Example Root CA");
    let leaf = pki.leaf(Leaf::NoDigitalSignature, NOW - DAY, NOW + DAY);
    let der = pki.sign(&leaf, DATA);
    let err = verify_detached(DATA, &der, &pki.policy(None), now()).unwrap_err();
    assert!(matches!(err, X509Error::KeyUsage { .. }), "{err}");
}

#[test]
fn another_signer_under_the_same_ca_is_rejected_by_name() {
    let pki = Pki::new("Example Root CA");
    let der = pki.sign(&pki.good_leaf(), DATA);
    let policy = pki.policy(Some("CN=other.example.com"));
    let err = verify_detached(DATA, &der, &policy, now()).unwrap_err();
    assert!(matches!(err, X509Error::SignerName { .. }), "{err}");
    assert!(err.to_string().contains("CN=release.example.com"), "{err}");
}

#[test]
fn garbage_and_oversized_signatures_are_malformed() {
    let pki = Pki::new("Example Root CA");
    for der in [
        &b"not DER"[..],
        &[],
        &vec![0x30; MAX_CMS_SIGNATURE_BYTES as usize + 1],
    ] {
        let err = verify_detached(DATA, der, &pki.policy(None), now()).unwrap_err();
        assert!(matches!(err, X509Error::Malformed(_)), "{err}");
    }
}

#[test]
fn anchor_files_must_hold_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let missing = dir.path().join("missing.pem");
    for path in [empty, missing] {
        let err = X509Policy::from_pem_files(std::slice::from_ref(&path), None)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
    let pki = Pki::new("Example Root CA");
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, pki.root.cert.to_pem().unwrap()).unwrap();
    let policy = X509Policy::from_pem_files(&[good], None).unwrap();
    let der = pki.sign(&pki.good_leaf(), DATA);
    verify_detached(DATA, &der, &policy, now()).unwrap();
}

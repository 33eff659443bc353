//! Detached CMS/PKCS#7 signatures with an X.509 chain (`<file>.p7s`), made
//! beside the minisign signatures when `--x509-cert` and `--x509-key` are
//! given, for nodes whose `[trust] require` includes `x509`.
//!
//! Each `.p7s` is DER, detached (it holds no copy of the file), signed in
//! binary mode over exactly the file's bytes with SHA-256, and carries the
//! signer certificate and the `--x509-chain` intermediates, so a node needs
//! only its pinned root: the same thing `openssl cms -sign -binary -outform
//! DER -md sha256 -signer LEAF -inkey KEY -certfile CHAIN` makes, and
//! `openssl cms -verify -binary -inform DER -content FILE -CAfile ROOT
//! -purpose any` checks.
//!
//! The certificate is checked here the way nodes check it (key pair, dates,
//! keyUsage digitalSignature, extended key usage codeSigning): a repository
//! every node would refuse is better not published.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use openssl::asn1::Asn1Time;
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::X509;

use crate::repository::Repository;

/// Largest certificate or key file read (PEM chains are a few KiB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// A loaded X.509 signing identity.
pub struct CmsSigner {
    cert: X509,
    key: PKey<Private>,
    chain: Stack<X509>,
    subject: String,
}

impl CmsSigner {
    /// Loads and checks a signer: `cert` (PEM, the leaf first if the file
    /// holds more), its unencrypted PEM private `key`, and the intermediates
    /// in `chain` (PEM, any order).
    pub fn load(cert: &Path, key: &Path, chain: Option<&Path>) -> anyhow::Result<CmsSigner> {
        let mut certs = read_certificates(cert)?;
        let leaf = certs.remove(0);
        let key_pem = read_pem(key)?;
        let key_pem_text = String::from_utf8_lossy(&key_pem);
        if key_pem_text.contains("ENCRYPTED") {
            bail!(
                "{} is an encrypted private key; ferry-publish reads unencrypted PEM keys only: \
                 decrypt it into a file only the publisher can read (`openssl pkey -in KEY -out \
                 KEY.plain`)",
                key.display()
            );
        }
        let private = PKey::private_key_from_pem(&key_pem).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a PEM private key ({e}): pass the key of --x509-cert",
                key.display()
            )
        })?;
        if !leaf
            .public_key()
            .context("cannot read the certificate's public key")?
            .public_eq(&private)
        {
            bail!(
                "the private key {} does not belong to the certificate {}: pass the matching pair",
                key.display(),
                cert.display()
            );
        }
        let mut stack = Stack::new()?;
        // Extra certificates after the leaf in --x509-cert travel too.
        for extra in certs {
            stack.push(extra)?;
        }
        if let Some(chain) = chain {
            for c in read_certificates(chain)? {
                stack.push(c)?;
            }
        }
        let subject = subject_text(&leaf);
        check_usable(&leaf, &subject, cert)?;
        Ok(CmsSigner {
            cert: leaf,
            key: private,
            chain: stack,
            subject,
        })
    }

    /// The signer's subject, e.g. `CN=release.example.com`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The `.p7s` bytes for `data`.
    pub fn sign(&self, data: &[u8]) -> anyhow::Result<Vec<u8>> {
        // BINARY: the bytes are signed as they are, no MIME line-ending
        // translation; DETACHED: nodes have the file already. OpenSSL's
        // digest for RSA and ECDSA keys is SHA-256.
        let cms = CmsContentInfo::sign(
            Some(&self.cert),
            Some(&self.key),
            Some(&self.chain),
            Some(data),
            CMSOptions::BINARY | CMSOptions::DETACHED,
        )
        .context("OpenSSL could not make the CMS signature")?;
        Ok(cms.to_der()?)
    }
}

/// Writes `<path>.p7s` for `bytes` when `signer` is given. Without one, an
/// old `.p7s` beside a file being replaced is removed first: it would no
/// longer match, and "missing" tells a node's operator more than "tampered".
pub fn write_signature(
    repo: &Repository,
    path: &str,
    bytes: &[u8],
    signer: Option<&CmsSigner>,
) -> anyhow::Result<()> {
    let p7s = manifests::layout::cms_signature_of(path);
    match signer {
        Some(signer) => repo.write_atomic(&p7s, &signer.sign(bytes)?)?,
        None => match fs::remove_file(repo.path(&p7s)) {
            Ok(()) => errln!(
                "note: removed {}, which signed the previous {path}; pass --x509-cert and \
                 --x509-key to sign with X.509 again",
                repo.path(&p7s).display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot remove the stale {}", repo.path(&p7s).display())
                })
            }
        },
    }
    Ok(())
}

/// Loads the signer of `--x509-cert`/`--x509-key`/`--x509-chain`, if given.
pub fn load_optional(
    cert: Option<&PathBuf>,
    key: Option<&PathBuf>,
    chain: Option<&PathBuf>,
) -> anyhow::Result<Option<CmsSigner>> {
    match (cert, key) {
        (Some(cert), Some(key)) => {
            CmsSigner::load(cert, key, chain.map(PathBuf::as_path)).map(Some)
        }
        (None, None) if chain.is_none() => Ok(None),
        _ => bail!("--x509-cert and --x509-key go together (and --x509-chain needs both)"),
    }
}

fn read_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_PEM_BYTES {
        bail!(
            "{} is {} bytes: not a PEM certificate or key",
            path.display(),
            meta.len()
        );
    }
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<X509>> {
    let pem = read_pem(path)?;
    let certs = X509::stack_from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{} is not a PEM certificate file ({e})", path.display()))?;
    if certs.is_empty() {
        bail!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certs)
}

fn check_usable(leaf: &X509, subject: &str, path: &Path) -> anyhow::Result<()> {
    let now = Asn1Time::days_from_now(0)?;
    if leaf.not_after() <= now {
        bail!(
            "the certificate {} ({subject}) expired at {}: nodes would refuse every signature it makes",
            path.display(),
            leaf.not_after()
        );
    }
    if leaf.not_before() > now {
        bail!(
            "the certificate {} ({subject}) is not valid before {}: nodes would refuse its signatures until then",
            path.display(),
            leaf.not_before()
        );
    }
    if let Err(e) = manifests::x509_signer::check_signer_usage(leaf) {
        bail!(
            "the certificate {} ({subject}) {e}: have the CA issue a code-signing certificate",
            path.display()
        );
    }
    Ok(())
}

fn subject_text(cert: &X509) -> String {
    cert.subject_name()
        .entries()
        .map(|e| {
            let attr = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{attr}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
    use openssl::x509::{X509Builder, X509NameBuilder};

    use super::*;

    /// A self-signed leaf with codeSigning (or serverAuth) usage, written
    /// to `dir` as cert.pem and key.pem.
    fn leaf(dir: &Path, code_signing: bool) -> (PathBuf, PathBuf) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "release.example.com")
            .unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().build().unwrap())
            .unwrap();
        b.append_extension(KeyUsage::new().digital_signature().build().unwrap())
            .unwrap();
        let mut eku = ExtendedKeyUsage::new();
        if code_signing {
            eku.code_signing();
        } else {
            eku.server_auth();
        }
        b.append_extension(eku.build().unwrap()).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let (cert, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        fs::write(&cert, b.build().to_pem().unwrap()).unwrap();
        fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        (cert, key_path)
    }

    #[test]
    fn signatures_are_detached_der_over_exact_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = leaf(dir.path(), true);
        let signer = CmsSigner::load(&cert, &key, None).unwrap();
        assert_eq!(signer.subject(), "CN=release.example.com");
        let der = signer.sign(b"index bytes").unwrap();
        let mut cms = CmsContentInfo::from_der(&der).unwrap();
        let flags = CMSOptions::BINARY | CMSOptions::NO_SIGNER_CERT_VERIFY;
        cms.verify(None, None, Some(b"index bytes"), None, flags)
            .unwrap();
        assert!(cms
            .verify(None, None, Some(b"index bytez"), None, flags)
            .is_err());
    }

    #[test]
    fn a_certificate_nodes_would_refuse_is_refused_here() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = leaf(dir.path(), false);
        let err = CmsSigner::load(&cert, &key, None).err().unwrap();
        assert!(err.to_string().contains("codeSigning"), "{err}");
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = leaf(other.path(), true);
        let (cert, _) = leaf(dir.path(), true);
        let err = CmsSigner::load(&cert, &other_key, None).err().unwrap();
        assert!(err.to_string().contains("does not belong"), "{err}");
        let err = load_optional(Some(&cert), None, None).err().unwrap();
        assert!(err.to_string().contains("go together"), "{err}");
        assert!(load_optional(None, None, None).unwrap().is_none());
    }
}

//! Signing keys, in minisign's own file formats.
//!
//! Using minisign's formats unchanged means a key made by `minisign -G` signs
//! ferry repositories, and anyone can check a ferry signature with
//! `minisign -V` — no ferry tooling needed to audit a repository.
//!
//! The public half is always derived from the secret key (minisign stores it
//! inside), never read from a second file: the publisher checks the existing
//! repository against the key it is about to sign with, and a second file
//! could belong to another key pair.
//!
//! Passwords come from a file or the environment, never from a prompt:
//! publishing runs in CI, where a prompt would hang instead of failing.

use std::fs;
use std::io::{self, Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use manifests::{KeyId, RoleKeys, TrustedKeys};
use minisign::{KeyPair, PublicKey, SecretKey, SecretKeyBox};
use thiserror::Error;

/// Environment variable holding the secret key's password.
pub const PASSWORD_ENV: &str = "FERRY_KEY_PASSWORD";

const UNTRUSTED_COMMENT: &str = "signature from ferry-publish secret key";
const PLAIN_SECRET_KEY_COMMENT: &str = "ferry-publish secret key (unencrypted)";
const ENCRYPTED_SECRET_KEY_COMMENT: &str = "ferry-publish encrypted secret key";

/// Byte offset of the KDF algorithm in a decoded minisign secret key
/// (after the 2-byte signature algorithm); `[0, 0]` means unencrypted.
const KDF_ALG_RANGE: std::ops::Range<usize> = 2..4;
/// Length of a decoded minisign secret key, and where its checksum sits.
const SECRET_KEY_BYTES: usize = 158;
const CHECKSUM_RANGE: std::ops::Range<usize> = 126..158;

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read secret key {}: {error}", path.display())]
    ReadSecretKey { path: PathBuf, error: io::Error },

    #[error(
        "{} is not a minisign secret key ({reason}): pass the secret key file made by \
         `ferry-publish keygen` or `minisign -G`",
        path.display()
    )]
    NotASecretKey { path: PathBuf, reason: String },

    #[error(
        "secret key {} is encrypted: give its password with --password-file FILE or the \
         {PASSWORD_ENV} environment variable",
        path.display()
    )]
    PasswordRequired { path: PathBuf },

    #[error(
        "cannot decrypt secret key {}: {reason}; check the password given with \
         --password-file or {PASSWORD_ENV}",
        path.display()
    )]
    Decrypt { path: PathBuf, reason: String },

    #[error("cannot read password file {}: {error}", path.display())]
    ReadPasswordFile { path: PathBuf, error: io::Error },

    #[error("password file {} is empty: put the password on its first line", path.display())]
    EmptyPassword { path: PathBuf },

    #[error("{} already exists: pass --force to replace it (the key it holds is then lost)", path.display())]
    Exists { path: PathBuf },

    #[error("--secret-key and --public-key both name {}: give two different files", path.display())]
    SamePath { path: PathBuf },

    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: io::Error },

    #[error("generating a key pair failed: {0}")]
    Generate(String),

    #[error("no signing key given: pass --key SECRET_KEY")]
    NoKey,

    #[error("signing {what} failed: {reason}")]
    Sign { what: String, reason: String },
}

/// A loaded, decrypted secret key with its derived public key.
pub struct SigningKey {
    path: PathBuf,
    secret: SecretKey,
    public: PublicKey,
    id: KeyId,
    /// The derived public key as a one-key trust set, to verify what this
    /// key signed (or should have signed) with the same code nodes run.
    trusted: TrustedKeys,
}

impl SigningKey {
    /// Loads the secret key at `path`. An encrypted key is decrypted with
    /// the password from `password_file` or, failing that, from
    /// [`PASSWORD_ENV`].
    pub fn load(path: &Path, password_file: Option<&Path>) -> Result<Self, KeyError> {
        // Read the password file first even if the key turns out to be plain:
        // a wrong path given on the command line should not go unnoticed.
        let file_password = password_file.map(read_password_file).transpose()?;
        let text = fs::read_to_string(path).map_err(|error| KeyError::ReadSecretKey {
            path: path.to_path_buf(),
            error,
        })?;
        let not_a_key = |reason: String| KeyError::NotASecretKey {
            path: path.to_path_buf(),
            reason,
        };
        let encoded = text
            .lines()
            .nth(1)
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| not_a_key("expected a comment line and a base64 line".into()))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| not_a_key(format!("the key line is not base64: {e}")))?;
        let encrypted = raw
            .get(KDF_ALG_RANGE)
            .ok_or_else(|| not_a_key("the key is too short".into()))?
            != [0, 0];
        let key_box = SecretKeyBox::from_string(&text).map_err(|e| not_a_key(e.to_string()))?;
        let secret = if encrypted {
            let password = match file_password {
                Some(p) => p,
                None => match std::env::var(PASSWORD_ENV) {
                    Ok(p) if !p.is_empty() => p,
                    _ => {
                        return Err(KeyError::PasswordRequired {
                            path: path.to_path_buf(),
                        })
                    }
                },
            };
            // Passing Some(password) is what keeps minisign from prompting.
            SecretKey::from_box(key_box, Some(password)).map_err(|e| KeyError::Decrypt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?
        } else if raw.len() == SECRET_KEY_BYTES && raw[CHECKSUM_RANGE].iter().all(|&b| b == 0) {
            // `minisign -G -W` leaves the checksum of an unencrypted key all
            // zero (the C tool computes it only when encrypting), and the
            // minisign crate would call such a key corrupted. The test
            // signature below takes the checksum's place.
            SecretKey::from_bytes(&raw).map_err(|e| not_a_key(e.to_string()))?
        } else {
            SecretKey::from_unencrypted_box(key_box).map_err(|e| not_a_key(e.to_string()))?
        };
        let public = PublicKey::from_secret_key(&secret).map_err(|e| not_a_key(e.to_string()))?;
        let (trusted, id) = trust_set(&public, path)?;
        let key = SigningKey {
            path: path.to_path_buf(),
            secret,
            public,
            id,
            trusted,
        };
        // A damaged key (its two halves disagreeing) fails here, before any
        // work, instead of after every object has been compressed.
        key.sign(b"ferry-publish key check", "key check", 0)
            .map_err(|e| not_a_key(format!("it cannot make a valid signature: {e}")))?;
        Ok(key)
    }

    /// The file the key was loaded from, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key id as minisign prints it.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The public key as a one-key trust set.
    pub fn trusted_keys(&self) -> &TrustedKeys {
        &self.trusted
    }

    /// The bare base64 line of the public key, as `root.json` stores it.
    pub fn public_base64(&self) -> String {
        self.public.to_base64()
    }

    /// The public key in minisign's public key file format.
    pub fn public_key_text(&self) -> String {
        public_key_text(&self.public).expect("a loaded public key always encodes")
    }

    /// Signs `data`, which will be served at the repository-relative path
    /// `file`, returning the text of its `.minisig` file. The trusted comment
    /// follows the minisign CLI (`timestamp:<secs>\tfile:<name>`) so that
    /// `minisign -V` shows where the signature belongs. The signature is
    /// checked before it is returned, with the verifier nodes use.
    pub fn sign(&self, data: &[u8], file: &str, timestamp: i64) -> Result<Vec<u8>, KeyError> {
        let failed = |reason: String| KeyError::Sign {
            what: file.to_string(),
            reason,
        };
        let trusted_comment = format!("timestamp:{timestamp}\tfile:{file}");
        let signature = minisign::sign(
            Some(&self.public),
            &self.secret,
            Cursor::new(data),
            Some(&trusted_comment),
            Some(UNTRUSTED_COMMENT),
        )
        .map_err(|e| failed(e.to_string()))?;
        let text = signature.into_string().into_bytes();
        self.trusted
            .verify(file, data, &text)
            .map_err(|e| failed(e.to_string()))?;
        Ok(text)
    }
}

/// Every key given with `--key` (repeatable), deduplicated and sorted by key
/// id, so that the signature blocks they write come in the same order
/// whatever order the command line named them in (publications stay
/// byte-for-byte reproducible).
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

impl SigningKeys {
    /// Loads every key in `paths`; the one password (file or environment)
    /// is tried for each encrypted key.
    pub fn load(paths: &[PathBuf], password_file: Option<&Path>) -> Result<Self, KeyError> {
        let mut keys: Vec<SigningKey> = Vec::with_capacity(paths.len());
        for path in paths {
            let key = SigningKey::load(path, password_file)?;
            if !keys.iter().any(|k| k.id() == key.id()) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(KeyError::NoKey);
        }
        keys.sort_by_key(SigningKey::id);
        Ok(SigningKeys { keys })
    }

    pub fn iter(&self) -> impl Iterator<Item = &SigningKey> {
        self.keys.iter()
    }

    /// The key ids, as minisign shows them, comma-separated for messages.
    pub fn describe(&self) -> String {
        let ids: Vec<String> = self.keys.iter().map(|k| k.id().to_string()).collect();
        ids.join(", ")
    }

    /// The files the keys came from, for messages.
    pub fn paths(&self) -> String {
        let paths: Vec<String> = self
            .keys
            .iter()
            .map(|k| k.path().display().to_string())
            .collect();
        paths.join(", ")
    }

    /// The public halves, any one of which is enough: how a repository
    /// without `root.json` is checked (a node's `public_keys`).
    pub fn any_of(&self) -> RoleKeys {
        let mut keys = TrustedKeys::new();
        for key in &self.keys {
            keys.add_text(&key.public_key_text(), &key.path().display().to_string())
                .expect("a loaded key's public half parses");
        }
        RoleKeys::new("signing", keys, 1).expect("at least one key is loaded")
    }

    /// One signature block per key, concatenated in key id order: the
    /// `.minisig` of a multi-signed file.
    pub fn sign(&self, data: &[u8], file: &str, timestamp: i64) -> Result<Vec<u8>, KeyError> {
        self.sign_with(data, file, timestamp, |_| true)
    }

    /// Like [`SigningKeys::sign`], with only the keys `include` accepts.
    pub fn sign_with(
        &self,
        data: &[u8],
        file: &str,
        timestamp: i64,
        include: impl Fn(KeyId) -> bool,
    ) -> Result<Vec<u8>, KeyError> {
        let mut out = Vec::new();
        for key in self.keys.iter().filter(|k| include(k.id())) {
            out.extend(key.sign(data, file, timestamp)?);
        }
        Ok(out)
    }
}

/// Reads a password file: its first line, without the line ending.
pub fn read_password_file(path: &Path) -> Result<String, KeyError> {
    let text = fs::read_to_string(path).map_err(|error| KeyError::ReadPasswordFile {
        path: path.to_path_buf(),
        error,
    })?;
    let password = text.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        return Err(KeyError::EmptyPassword {
            path: path.to_path_buf(),
        });
    }
    Ok(password)
}

/// What `keygen` made.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    pub id: KeyId,
    /// The public key file's text.
    pub public_key_text: String,
}

/// Creates a key pair and writes it: the secret key with mode 0600, the
/// public key with mode 0644. Existing files are refused unless `force`.
/// With a `password` the secret key is encrypted (scrypt, as minisign does).
pub fn generate(
    secret_path: &Path,
    public_path: &Path,
    password: Option<String>,
    force: bool,
) -> Result<GeneratedKey, KeyError> {
    if same_file(secret_path, public_path) {
        return Err(KeyError::SamePath {
            path: secret_path.to_path_buf(),
        });
    }
    // Check both before writing either, so a refusal leaves nothing behind.
    if !force {
        for path in [secret_path, public_path] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(KeyError::Exists {
                    path: path.to_path_buf(),
                });
            }
        }
    }
    let encrypted = password.is_some();
    let pair = match password {
        Some(p) => KeyPair::generate_encrypted_keypair(Some(p)),
        None => KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(|e| KeyError::Generate(e.to_string()))?;
    let comment = if encrypted {
        ENCRYPTED_SECRET_KEY_COMMENT
    } else {
        PLAIN_SECRET_KEY_COMMENT
    };
    let secret_text = pair
        .sk
        .to_box(Some(comment))
        .map_err(|e| KeyError::Generate(e.to_string()))?
        .into_string();
    let public_text = public_key_text(&pair.pk).map_err(|e| KeyError::Generate(e.to_string()))?;
    let (_, id) = trust_set(&pair.pk, public_path)?;
    write_key_file(secret_path, secret_text.as_bytes(), 0o600, force)?;
    write_key_file(public_path, public_text.as_bytes(), 0o644, force)?;
    Ok(GeneratedKey {
        id,
        public_key_text: public_text,
    })
}

fn public_key_text(public: &PublicKey) -> Result<String, minisign::PError> {
    Ok(public.to_box()?.into_string())
}

/// Builds the one-key trust set through the same parser nodes use, which
/// also proves the public key text is one nodes will accept.
fn trust_set(public: &PublicKey, origin: &Path) -> Result<(TrustedKeys, KeyId), KeyError> {
    let text = public_key_text(public).map_err(|e| KeyError::Generate(e.to_string()))?;
    let mut trusted = TrustedKeys::new();
    let id = trusted
        .add_text(&text, &origin.display().to_string())
        .map_err(|e| KeyError::NotASecretKey {
            path: origin.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok((trusted, id))
}

fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Writes a key file through a temporary file in the same directory, so a
/// crash never leaves half a key, and the mode is set before any byte of
/// the secret is written.
fn write_key_file(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<(), KeyError> {
    let failed = |error: io::Error| KeyError::Write {
        path: path.to_path_buf(),
        error,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".ferry-keygen-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(failed)?;
    // The builder's mode is filtered by the umask; set it exactly.
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(failed)?;
    temp.write_all(bytes).map_err(failed)?;
    temp.as_file().sync_all().map_err(failed)?;
    if replace {
        temp.persist(path).map_err(|e| failed(e.error))?;
    } else {
        // Refuses to replace a file created since the check above.
        temp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                failed(e.error)
            }
        })?;
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generated_key_signs_what_nodes_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (sec, public) = (dir.path().join("k.sec"), dir.path().join("k.pub"));
        let made = generate(&sec, &public, None, false).unwrap();
        assert_eq!(
            fs::metadata(&sec).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_to_string(&public).unwrap(), made.public_key_text);

        let key = SigningKey::load(&sec, None).unwrap();
        assert_eq!(key.id(), made.id);
        assert_eq!(key.public_key_text(), made.public_key_text);
        let signature = key.sign(b"payload", "index.json", 1_700_000_000).unwrap();
        let text = String::from_utf8(signature.clone()).unwrap();
        assert!(
            text.contains("trusted comment: timestamp:1700000000\tfile:index.json\n"),
            "{text}"
        );

        let mut nodes = TrustedKeys::new();
        nodes.add_file(&public).unwrap();
        assert_eq!(
            nodes.verify("index.json", b"payload", &signature).unwrap(),
            made.id
        );
        assert!(nodes.verify("index.json", b"payloaD", &signature).is_err());
    }

    #[test]
    fn existing_files_are_kept_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let (sec, public) = (dir.path().join("k.sec"), dir.path().join("k.pub"));
        fs::write(&public, "keep me").unwrap();
        let err = generate(&sec, &public, None, false).unwrap_err();
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        assert!(!sec.exists(), "nothing is written when one file is refused");
        assert_eq!(fs::read_to_string(&public).unwrap(), "keep me");

        generate(&sec, &public, None, true).unwrap();
        assert_ne!(fs::read_to_string(&public).unwrap(), "keep me");
        assert!(matches!(
            generate(&sec, &sec, None, true),
            Err(KeyError::SamePath { .. })
        ));
    }

    #[test]
    fn garbage_is_not_a_secret_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.sec");
        for text in [
            "",
            "untrusted comment: x\n",
            "untrusted comment: x\n!!!\n",
            "a\nYWJj\n",
        ] {
            fs::write(&path, text).unwrap();
            let err = SigningKey::load(&path, None).err().expect("must fail");
            assert!(
                matches!(err, KeyError::NotASecretKey { .. }),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn password_file_takes_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        fs::write(&path, "s3cret\r\nignored\n").unwrap();
        assert_eq!(read_password_file(&path).unwrap(), "s3cret");
        fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read_password_file(&path),
            Err(KeyError::EmptyPassword { .. })
        ));
    }
}

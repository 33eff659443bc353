//! Crafting repositories that are signed but hostile.
//!
//! A signature says who published, not that what was published is safe: a
//! stolen key, a compromised build machine or a publisher bug produces
//! validly signed nonsense. To prove the node checks more than signatures,
//! these helpers edit a manifest or index as JSON (as a `serde_json::Value`,
//! so that even things the format's own types refuse to represent — `..`
//! paths, NUL bytes — can be written), write it as canonical JSON, sign it
//! with a chosen key (the trusted one, for these attacks) exactly as
//! `ferry-publish` would, and re-pin it in a re-signed index with a higher
//! serial, so that the only thing wrong is the thing under test.

use std::fs;
use std::path::Path;

use serde_json::Value;

/// Signs files as `ferry-publish` does: prehashed minisign signatures with
/// the trusted comment `timestamp:<unix secs>\tfile:<repo-relative path>`.
pub struct Signer {
    key: minisign::SecretKey,
}

impl Signer {
    /// Loads an unencrypted minisign secret key file (what
    /// `ferry-publish keygen` writes by default, or `minisign -G -W`).
    pub fn from_file(path: &Path) -> Signer {
        let text =
            fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let key = minisign::SecretKeyBox::from_string(&text)
            .and_then(|b| b.into_unencrypted_secret_key())
            .unwrap_or_else(|e| {
                panic!("{} is not an unencrypted minisign key: {e}", path.display())
            });
        Signer { key }
    }

    /// The text of a detached `.minisig` over `data`, which the repository
    /// serves at `repo_path`.
    pub fn sign(&self, repo_path: &str, data: &[u8]) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let trusted = format!("timestamp:{now}\tfile:{repo_path}");
        minisign::sign(
            None,
            &self.key,
            data,
            Some(&trusted),
            Some("signature from ferry test suite"),
        )
        .expect("minisign signing")
        .into_string()
    }

    /// Writes `value` as canonical JSON at `repo/repo_path` and its signature
    /// beside it; returns the bytes written.
    pub fn write_signed(&self, repo: &Path, repo_path: &str, value: &Value) -> Vec<u8> {
        let bytes = manifests::canonical::to_canonical_json(value).expect("canonical JSON");
        fs::write(repo.join(repo_path), &bytes).unwrap();
        fs::write(
            repo.join(format!("{repo_path}.minisig")),
            self.sign(repo_path, &bytes),
        )
        .unwrap();
        bytes
    }
}

/// Reads a JSON file of the repository as a `Value`.
pub fn read_json(repo: &Path, repo_path: &str) -> Value {
    let bytes = fs::read(repo.join(repo_path)).unwrap_or_else(|e| panic!("read {repo_path}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{repo_path} is not JSON: {e}"))
}

/// Edits `index.json` with `edit`, raises its serial by one and re-signs it
/// with `signer`.
pub fn resign_index(repo: &Path, signer: &Signer, edit: impl FnOnce(&mut Value)) {
    let mut index = read_json(repo, "index.json");
    edit(&mut index);
    let serial = index["serial"]
        .as_u64()
        .expect("index.json has a numeric serial");
    index["serial"] = Value::from(serial + 1);
    signer.write_signed(repo, "index.json", &index);
}

/// Edits the manifest of `version` with `edit`, re-signs it with `signer`,
/// then pins the new bytes (SHA-256 and size) in a re-signed index.
pub fn resign_manifest(repo: &Path, version: &str, signer: &Signer, edit: impl FnOnce(&mut Value)) {
    let path = format!("manifests/{version}.json");
    let mut manifest = read_json(repo, &path);
    edit(&mut manifest);
    let bytes = signer.write_signed(repo, &path, &manifest);
    let sha256 = crate::fixtures::sha256_hex(&bytes);
    resign_index(repo, signer, |index| {
        let channels = index["channels"]
            .as_object_mut()
            .expect("index.json has channels");
        let pin = channels
            .values_mut()
            .find_map(|c| c["releases"].get_mut(version))
            .unwrap_or_else(|| panic!("index.json does not list {version}"));
        pin["sha256"] = Value::from(sha256);
        pin["size"] = Value::from(bytes.len() as u64);
    });
}

/// The `files` array of a manifest, for editing.
pub fn files_mut(manifest: &mut Value) -> &mut Vec<Value> {
    manifest["files"]
        .as_array_mut()
        .expect("the manifest has a files array")
}

/// Sorts a manifest's `files` by path bytes, as the format requires, so an
/// inserted entry is refused for what it is rather than for its position.
pub fn sort_files(manifest: &mut Value) {
    files_mut(manifest).sort_by(|a, b| {
        let a = a["path"].as_str().unwrap_or_default().as_bytes().to_vec();
        let b = b["path"].as_str().unwrap_or_default().as_bytes().to_vec();
        a.cmp(&b)
    });
}

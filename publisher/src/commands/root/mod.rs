//! `ferry-publish root …`: the root of trust's life cycle, one file per
//! subcommand. A new root is edited as a *draft* (unsigned, never read by
//! nodes), signed by each key holder in turn — the keys may live on
//! different machines; the draft and its `.minisig` are plain files to pass
//! around — and only then published by `rotate`, which refuses a root that
//! nodes would refuse.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use manifests::canonical::to_canonical_json;
use manifests::{KeyId, Role, Root, TrustedKeys};

use crate::cli::{RootCommand, RootDraftArgs};

pub mod add_key;
pub mod init;
pub mod remove_key;
pub mod rotate;
pub mod sign;

/// The draft's file name inside the repository when `--draft` is not given.
pub const DEFAULT_DRAFT: &str = "root.draft.json";

pub fn run(command: RootCommand) -> anyhow::Result<ExitCode> {
    match command {
        RootCommand::Init(args) => init::run(&args),
        RootCommand::AddKey(args) => add_key::run(&args),
        RootCommand::RemoveKey(args) => remove_key::run(&args),
        RootCommand::Sign(args) => sign::run(&args),
        RootCommand::Rotate(args) => rotate::run(&args),
    }?;
    Ok(ExitCode::SUCCESS)
}

/// Where the draft lives.
pub fn draft_path(args: &RootDraftArgs) -> PathBuf {
    args.draft
        .clone()
        .unwrap_or_else(|| args.repo.join(DEFAULT_DRAFT))
}

/// Where the draft's signatures live.
pub fn draft_signature_path(draft: &Path) -> PathBuf {
    let mut name = draft.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}

/// Reads and parses the draft (its exact bytes too, which is what is signed).
pub fn load_draft(path: &Path) -> anyhow::Result<(Root, Vec<u8>)> {
    let bytes = fs::read(path).with_context(|| {
        format!(
            "cannot read the root draft {}: create it with `ferry-publish root init`",
            path.display()
        )
    })?;
    let root: Root = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a root document", path.display()))?;
    Ok((root, bytes))
}

/// Writes `root` as the draft, after checking it, and drops the draft's
/// signatures: they covered the old bytes and no longer verify.
pub fn save_draft(path: &Path, root: &mut Root) -> anyhow::Result<()> {
    normalise(root);
    root.validate().with_context(|| {
        format!(
            "the edited root would be invalid; {} was not changed",
            path.display()
        )
    })?;
    let bytes = to_canonical_json(root).context("cannot serialise the root")?;
    let signature = draft_signature_path(path);
    if signature.exists() {
        fs::remove_file(&signature)
            .with_context(|| format!("cannot remove {}", signature.display()))?;
        errln!(
            "note: removed {}: the draft changed, sign it again",
            signature.display()
        );
    }
    write_atomic(path, &bytes)
}

/// Sorted role key lists and no key that no role uses: the same root
/// always has the same bytes, and a removed key really is gone.
fn normalise(root: &mut Root) {
    for role in Role::ALL {
        let spec = root.roles.get_mut(role);
        spec.keys.sort();
        spec.keys.dedup();
    }
    let used: Vec<String> = Role::ALL
        .iter()
        .flat_map(|r| root.roles.get(*r).keys.clone())
        .collect();
    root.keys.retain(|id, _| used.contains(id));
}

/// The common end of `add-key` and `remove-key`: apply `--threshold`, save
/// the draft (which drops its signatures) and show the role as it now is.
pub fn save_role_edit(
    path: &Path,
    root: &mut Root,
    args: &crate::cli::RootKeyArgs,
) -> anyhow::Result<()> {
    if let Some(t) = args.threshold {
        root.roles.get_mut(args.role).threshold = t;
    }
    save_draft(path, root)?;
    let spec = root.roles.get(args.role);
    outln!(
        "{} role of draft root version {}: {} of {} key(s)",
        args.role,
        root.version,
        spec.threshold,
        spec.keys.len()
    );
    Ok(())
}

/// A public key file (or bare base64 line): its id and base64 line.
pub fn read_public_key(path: &Path) -> anyhow::Result<(KeyId, String)> {
    let mut keys = TrustedKeys::new();
    let id = keys.add_file(path)?;
    let base64 = keys
        .base64_of(id)
        .expect("the key was just added")
        .to_string();
    Ok((id, base64))
}

/// Replaces `path` through a synced temporary file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-root-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A root version's name, as signatures' trusted comments record it.
pub fn root_file(root: &Root) -> String {
    manifests::layout::root_version(root.version)
}

/// Refuses a missing or wrong-version draft with the command to run.
pub fn require_version(root: &Root, expected: u64, draft: &Path) -> anyhow::Result<()> {
    if root.version != expected {
        bail!(
            "the draft {} is root version {}, but the repository needs version {expected} next: \
             make a new draft with `ferry-publish root init --force`",
            draft.display(),
            root.version
        );
    }
    Ok(())
}

//! `ferry-publish root rotate`: publish the signed draft as `roots/<N>.json`
//! and `root.json`.
//!
//! Refuses anything a node would refuse, with the node's own check
//! (`VerifiedRoot::verify_successor`): the draft must be the next version
//! and be signed by a threshold of the current root's root keys *and* of
//! its own. A first root has no current root; nodes configured with
//! `public_keys` treat those keys as root 0, so root 1 must be signed by
//! one of them, or such nodes could never adopt it.

use std::fs;

use anyhow::{bail, Context};
use manifests::{layout, Role, TrustedKeys, VerifiedRoot, MAX_INDEX_BYTES, MAX_SIGNATURE_BYTES};

use super::{draft_path, draft_signature_path, load_draft, require_version};
use crate::cli::RootRotateArgs;
use crate::repository::Repository;
use crate::root_chain::RootChain;

pub fn run(args: &RootRotateArgs) -> anyhow::Result<()> {
    let repo = Repository::create(&args.draft.repo)?;
    let _lock = repo.lock()?;
    let path = draft_path(&args.draft);
    let (draft, bytes) = load_draft(&path)?;
    let signature_path = draft_signature_path(&path);
    let signature = fs::read(&signature_path).with_context(|| {
        format!(
            "the draft is not signed ({} cannot be read): run `ferry-publish root sign --key SECRET_KEY`",
            signature_path.display()
        )
    })?;
    let chain = RootChain::load(&repo, None)?;
    let previous = match &chain {
        Some(chain) => Some(chain.current().clone()),
        None => root_zero(&repo, args, &draft)?,
    };
    let expected = previous.as_ref().map_or(1, |p| p.version() + 1);
    require_version(&draft, expected, &path)?;
    let refuse = |e: manifests::FormatError| {
        anyhow::anyhow!(
            "refusing to publish root version {expected}: a new root must be signed by a threshold \
             of the previous root's root keys AND by a threshold of its own root keys \
             (`ferry-publish root sign --key SECRET_KEY` with the missing keys): {e}"
        )
    };
    let verified = match &previous {
        Some(previous) => {
            VerifiedRoot::verify_successor(previous, bytes.clone(), signature.clone())
                .map_err(refuse)?
        }
        None => {
            VerifiedRoot::verify_self_signed(bytes.clone(), signature.clone()).map_err(refuse)?
        }
    };
    let now = jiff::Timestamp::now();
    if verified.is_expired(now) {
        bail!(
            "refusing to publish root version {expected}: it expired at {} (now {now}); make a new draft with a later --expires-in",
            draft.expires
        );
    }

    let versioned = layout::root_version(expected);
    fs::create_dir_all(repo.path(layout::ROOTS_DIR))
        .with_context(|| format!("cannot create {}", repo.path(layout::ROOTS_DIR).display()))?;
    // The versioned file first: nodes walk roots/, and root.json is only a
    // copy of its newest entry for people and first setups.
    repo.write_atomic(&layout::signature_of(&versioned), &signature)?;
    repo.write_atomic(&versioned, &bytes)?;
    repo.write_atomic(&layout::signature_of(layout::ROOT), &signature)?;
    repo.write_atomic(layout::ROOT, &bytes)?;
    let _ = fs::remove_file(&signature_path);
    let _ = fs::remove_file(&path);
    outln!(
        "published root version {expected} as {versioned} and {}; expires {}",
        layout::ROOT,
        draft.expires
    );
    if let Some(previous) = &previous {
        for role in [Role::Index, Role::Manifests] {
            if previous.role(role).key_ids() != verified.role(role).key_ids() {
                outln!(
                    "the {role} role's keys changed: re-sign what it signs with the new keys before nodes need it{}",
                    if role == Role::Index {
                        " (`ferry-publish refresh --repo DIR --key NEW_INDEX_KEY`)"
                    } else {
                        " (`ferry-publish refresh --manifests ...`, or publish a new release)"
                    }
                );
            }
        }
    }
    Ok(())
}

/// The implicit root 0 that nodes on `public_keys` trust, for a first root:
/// `--previous-key` if given, else the draft's keys that sign the current
/// index.json. `None` for a repository with no index (no node yet).
fn root_zero(
    repo: &Repository,
    args: &RootRotateArgs,
    draft: &manifests::Root,
) -> anyhow::Result<Option<VerifiedRoot>> {
    if !args.previous_key.is_empty() {
        let mut keys = TrustedKeys::new();
        for key in &args.previous_key {
            keys.add_file(key)?;
        }
        return Ok(Some(VerifiedRoot::from_public_keys(keys)?));
    }
    let Some(index) = repo.read(layout::INDEX, MAX_INDEX_BYTES)? else {
        return Ok(None);
    };
    let signature = repo
        .read(&layout::signature_of(layout::INDEX), MAX_SIGNATURE_BYTES)?
        .context("index.json exists but its signature is missing")?;
    let mut signers = TrustedKeys::new();
    for (id, base64) in &draft.keys {
        let mut single = TrustedKeys::new();
        single.add_text(base64, id)?;
        if single.verify(layout::INDEX, &index, &signature).is_ok() {
            signers.add_text(base64, id)?;
        }
    }
    if signers.is_empty() {
        bail!(
            "none of the new root's keys signs the current index.json, so nodes configured with \
             `public_keys` could not adopt it: add the key that signs index.json to the root and \
             sign the draft with it, or name the keys nodes trust with --previous-key PUBLIC_KEY \
             and sign the draft with one of them"
        );
    }
    Ok(Some(VerifiedRoot::from_public_keys(signers)?))
}

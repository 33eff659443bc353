//! `ferry-publish refresh`: re-sign `index.json` with the next serial and a
//! new expiry, nothing else changed.
//!
//! An index expires so that a captured one cannot hold nodes on old
//! software for ever (a freeze attack); the price is that a repository with
//! no new release would expire too. A scheduled job running `refresh` keeps
//! it fresh with only the index keys. With `--manifests` it also re-signs,
//! with the given manifests keys, every manifest whose signatures no longer
//! meet the current root's manifests role (after a rotation of that role):
//! the manifest bytes, and so their pins in the index, do not change.

use std::process::ExitCode;

use anyhow::{bail, Context};
use manifests::canonical::to_canonical_json;
use manifests::index::Index;
use manifests::{layout, Role, MAX_INDEX_BYTES, MAX_SIGNATURE_BYTES};
use semver::Version;

use crate::cli::RefreshArgs;
use crate::keys::SigningKeys;
use crate::publication::{self, PublicationError};
use crate::repository::Repository;
use crate::root_chain::RepoTrust;
use crate::x509;

pub fn run(args: &RefreshArgs) -> anyhow::Result<ExitCode> {
    let created = publication::publication_time()?;
    let expires = publication::expiry(created, args.expires_in)?;
    let keys = SigningKeys::load(&args.key, args.password_file.as_deref())?;
    let x509 = x509::load_optional(
        args.x509.x509_cert.as_ref(),
        args.x509.x509_key.as_ref(),
        args.x509.x509_chain.as_ref(),
    )?;
    let repo = Repository::open(&args.repo)?;
    let _lock = repo.lock()?;
    let trust = RepoTrust::load(&repo, &keys)?;
    trust.check_can_sign(Role::Index, &keys)?;
    let Some(previous) = repo.read_index(&trust)? else {
        bail!(
            "{} has no index.json to refresh: publish a release first",
            args.repo.display()
        );
    };
    let previous = previous.index();

    if args.manifests {
        resign_manifests(&repo, &trust, &keys, previous, created.as_second())?;
    }

    let serial = previous
        .serial
        .checked_add(1)
        .ok_or(PublicationError::SerialExhausted(previous.serial))?;
    let index = Index {
        serial,
        created,
        expires,
        ..previous.clone()
    };
    index
        .validate()
        .context("internal error: the refreshed index does not validate")?;
    let bytes = to_canonical_json(&index).context("cannot serialise the index")?;
    if bytes.len() as u64 > MAX_INDEX_BYTES {
        bail!("the refreshed index.json would exceed {MAX_INDEX_BYTES} bytes");
    }
    let signature = trust.sign(
        Role::Index,
        &keys,
        &bytes,
        layout::INDEX,
        created.as_second(),
    )?;
    // Same order as a release: signatures, then index (see release.rs).
    x509::write_signature(&repo, layout::INDEX, &bytes, x509.as_ref())?;
    repo.write_atomic(&layout::signature_of(layout::INDEX), &signature)?;
    repo.write_atomic(layout::INDEX, &bytes)?;
    outln!("refreshed index.json: serial {serial}, expires {expires}");
    Ok(ExitCode::SUCCESS)
}

/// Re-signs, for the current manifests role, every listed manifest whose
/// signatures do not meet it.
fn resign_manifests(
    repo: &Repository,
    trust: &RepoTrust,
    keys: &SigningKeys,
    index: &Index,
    timestamp: i64,
) -> anyhow::Result<()> {
    trust.check_can_sign(Role::Manifests, keys)?;
    let RepoTrust::Chain(chain, _) = trust else {
        return Ok(());
    };
    let current = chain.current().role(Role::Manifests);
    for channel in index.channels.values() {
        for (version, pin) in &channel.releases {
            let version: Version = version.parse().expect("a validated index");
            // Verified first (by some root of the chain), so only genuine
            // manifests get the new keys' signatures.
            let verified = repo.read_manifest(pin, &version, trust)?;
            let path = layout::manifest(&version);
            let signature = repo
                .read(&layout::signature_of(&path), MAX_SIGNATURE_BYTES)?
                .unwrap_or_default();
            if current.verify(&path, verified.bytes(), &signature).is_ok() {
                continue;
            }
            let new = trust.sign(Role::Manifests, keys, verified.bytes(), &path, timestamp)?;
            repo.write_atomic(&layout::signature_of(&path), &new)?;
            outln!("re-signed {path} for the current manifests role");
        }
    }
    Ok(())
}

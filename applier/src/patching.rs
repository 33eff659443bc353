//! Executing one planned fetch: a delta patch applied to a base the node
//! holds, or the full object — and the full object whenever the delta fails.
//!
//! The delta path, in the order that keeps it fail-closed:
//! 1. the patch is downloaded into `downloads/` with the store's resumable,
//!    capped, retrying download and checked against the size and SHA-256 the
//!    signed manifest gives for it, so the patch decoder only ever sees
//!    bytes the publisher signed;
//! 2. it is applied to the base (opened from the store, or another verified
//!    copy) into a fresh temporary file of the store, output capped at the
//!    signed size ([`delta::decode::apply_file`], which alone knows the
//!    algorithms);
//! 3. the output's size and SHA-256 are checked against the file's signed
//!    content, then fsynced and renamed into the store exactly as a full
//!    object is ([`ContentStore::install_content`]).
//!
//! The output hash is the check that counts: a patch can be intact and
//! signed yet meant for another base, and a bidiff patch cut short in its
//! trailing zstd checksum can still rebuild the right bytes (then it is
//! used: the bytes are the signed ones).
//!
//! Any failure of the delta path — a missing or corrupt patch, a patch that
//! does not apply, a base that changed, a wrong result — is logged, counted,
//! and the file's full object is fetched instead; the update goes on. A
//! patch download that ran out of retries keeps what it got: if the full
//! object fails too (the network is down), the next run resumes the patch. The
//! exception is the node's own disk refusing to write or read (no space,
//! quota, read-only, I/O error): the full object would hit the same wall, so
//! that fails the update as it would without deltas, before anything is
//! staged.

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::PathBuf;

use crate::error::{NodeError, Result};
use crate::faults;
use crate::plan::{BaseLocation, HeldBase, ObjectFetch, Source};
use crate::store::{ContentStore, PinnedFile};
use crate::transport::Transport;
use manifests::manifest::DeltaRef;

/// How a content arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Rebuilt from a delta.
    Delta,
    /// Downloaded as the full object, as planned.
    Full,
    /// The planned delta failed; the full object was downloaded instead.
    FullAfterFailedDelta,
}

/// Brings `fetch`'s content into the store as the plan says, falling back
/// to the full object if a delta fails. Every byte fetched over the
/// transport is added to `downloaded`, a failed delta's included, also when
/// this returns an error.
pub fn fetch(
    store: &ContentStore,
    transport: &dyn Transport,
    fetch: &ObjectFetch,
    downloaded: &mut u64,
) -> Result<Arrival> {
    let file = fetch.files[0].as_str();
    let mut arrival = Arrival::Full;
    if let Source::Delta { delta, base } = &fetch.source {
        match apply_delta(store, transport, fetch, delta, base, downloaded) {
            Ok(()) => return Ok(Arrival::Delta),
            Err(e) if is_local_disk_failure(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(
                    file,
                    delta = %delta.path,
                    reason = %e,
                    "the delta failed; fetching the full object instead"
                );
                arrival = Arrival::FullAfterFailedDelta;
            }
        }
    }
    *downloaded += store.fetch(transport, &fetch.content, fetch.mode, file)?;
    if let Source::Delta { delta, .. } = &fetch.source {
        // A patch download kept for resuming is of no use once the full
        // object is in.
        let _ = fs::remove_file(patch_part_path(store, delta));
    }
    Ok(arrival)
}

/// Where a delta's patch is kept while it downloads and is applied.
pub fn patch_part_path(store: &ContentStore, delta: &DeltaRef) -> PathBuf {
    let name = delta.path.rsplit('/').next().unwrap_or(&delta.path);
    store.downloads_dir().join(format!("{name}.delta.part"))
}

fn apply_delta(
    store: &ContentStore,
    transport: &dyn Transport,
    fetch: &ObjectFetch,
    delta: &DeltaRef,
    base: &HeldBase,
    downloaded: &mut u64,
) -> Result<()> {
    let file = fetch.files[0].as_str();
    let content = &fetch.content;
    let part = patch_part_path(store, delta);
    // A download that gave up leaves in `part` only bytes worth resuming
    // from (it deletes what it cannot use): kept, the next run continues
    // the patch instead of starting it, or the full object, again.
    store.download(
        transport,
        PinnedFile::from(delta),
        &part,
        &format!("delta {} for {file}", delta.path),
        downloaded,
    )?;
    let result = (|| {
        faults::point("delta:patch-verified");
        let base_path = match &base.location {
            BaseLocation::Store => store.path_of(&delta.base_sha256),
            BaseLocation::File(path) => path.clone(),
        };
        // A base that vanished since planning is the delta's failure, not
        // the disk's: the full object still works.
        let mut base_file = File::open(&base_path).map_err(|source| NodeError::DeltaBaseGone {
            path: base_path.clone(),
            described: base.described.clone(),
            source,
        })?;
        let patch = File::open(&part)
            .map_err(|e| NodeError::io(format!("cannot read {}", part.display()), e))?;
        store.install_content(content, fetch.mode, file, &delta.path, |out, tmp| {
            let applied = ::delta::decode::apply_file(
                delta.algorithm,
                &mut base_file,
                BufReader::new(patch),
                out,
                content.size,
            )
            .map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidData {
                    NodeError::verification(format!(
                        "delta {} for {file} does not apply to {}: {e}",
                        delta.path, base.described
                    ))
                } else {
                    NodeError::io(
                        format!(
                            "cannot apply delta {} to {} into {}",
                            delta.path,
                            base_path.display(),
                            tmp.display()
                        ),
                        e,
                    )
                }
            })?;
            Ok((applied.size, applied.sha256))
        })
    })();
    // Downloaded, used or failed to apply, the patch is worth nothing now;
    // removing it also gives its space back before a fallback downloads
    // the full object.
    let _ = fs::remove_file(&part);
    result
}

/// True when the node's own storage failed (no space, quota, read-only
/// filesystem, I/O error): a full object cannot do better, so the update
/// fails as it would have without deltas.
fn is_local_disk_failure(e: &NodeError) -> bool {
    use rustix::io::Errno;
    let NodeError::Io { source, .. } = e else {
        return false;
    };
    let disk = [Errno::NOSPC, Errno::DQUOT, Errno::ROFS, Errno::IO];
    source.kind() == io::ErrorKind::StorageFull
        || source
            .raw_os_error()
            .is_some_and(|code| disk.iter().any(|d| d.raw_os_error() == code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_nodes_own_disk_failing_stops_the_fallback() {
        let disk = |code: i32| NodeError::io("write", io::Error::from_raw_os_error(code));
        assert!(is_local_disk_failure(&disk(
            rustix::io::Errno::NOSPC.raw_os_error()
        )));
        assert!(is_local_disk_failure(&disk(
            rustix::io::Errno::IO.raw_os_error()
        )));
        assert!(!is_local_disk_failure(&disk(
            rustix::io::Errno::NOENT.raw_os_error()
        )));
        assert!(!is_local_disk_failure(&NodeError::verification(
            "bad patch"
        )));
        let gone = NodeError::DeltaBaseGone {
            path: "/opt/app/releases/1.0.0/bin/app".into(),
            described: "installed file".into(),
            source: io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error()),
        };
        assert!(!is_local_disk_failure(&gone));
    }
}

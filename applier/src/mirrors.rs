//! Mirrors: one signed repository served from several places, and which of
//! them to believe.
//!
//! `[repository] mirrors = [...]` lists copies of the repository at
//! `repository.url`. A mirror is not trusted any more than the network is:
//! everything it serves is verified exactly as from the primary. What
//! mirrors add is availability — a source that is down, stale, missing a
//! file or serving bad bytes is skipped with a warning naming it, and the
//! update completes from one that behaves.
//!
//! The rules, and why:
//! - **Index: the highest serial wins, from every source.** Each source's
//!   `index.json` is fetched and fully verified (signature, expiry, not
//!   older than the serial this node trusts); among those that verify, the
//!   highest serial is used (the first in configuration order on a tie).
//!   Taking the first index that verifies would let one stale source early
//!   in the list freeze the node on old releases until that index expires;
//!   asking all of them costs one small, capped fetch per source and means
//!   a single honest, current source is enough.
//! - **Manifests, objects: first good source.** They are pinned by digest
//!   and size in signed metadata, so any source will do. The source whose
//!   index won is tried first, then the others in configuration order;
//!   a source that served data failing verification in this run is moved
//!   last (it is still tried before giving up: a tampered object does not
//!   mean every object of it is). A 404, an exhausted retry budget or a
//!   failed verification moves on to the next source; an object's partial
//!   download carries over, since every source must serve the same bytes
//!   and the whole is verified anyway.
//! - **The node's own disk failing** (`NodeError::Io`) stops at once: no
//!   other source can fix it.
//! - **All sources fail**: the error lists every source with its reason,
//!   and is a verification failure (exit 3) if any source served bad data.
//!
//! With no mirrors configured every function here is exactly the single
//! repository call it wraps, errors unchanged.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;

use manifests::manifest::FileContent;
use manifests::mode::Mode;
use manifests::{VerifiedIndex, VerifiedManifest};

use crate::config::RepositoryConfig;
use crate::error::{NodeError, Result};
use crate::retry::RetryPolicy;
use crate::store::ContentStore;
use crate::transport::{FetchError, Transport};

/// Checks `[repository] mirrors` and the pace settings.
pub fn check_config(repository: &RepositoryConfig) -> Result<(), String> {
    for (i, url) in repository.mirrors.iter().enumerate() {
        if !(url.starts_with("file://")
            || url.starts_with("http://")
            || url.starts_with("https://"))
        {
            return Err(format!(
                "repository.mirrors[{i}] {url:?} must start with file://, http:// or https://"
            ));
        }
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        if same(url, &repository.url) || repository.mirrors[..i].iter().any(|m| same(m, url)) {
            return Err(format!(
                "repository.mirrors[{i}] {url:?} is listed twice (or is repository.url)"
            ));
        }
    }
    if repository.stall_timeout_seconds == Some(0) {
        return Err("repository.stall_timeout_seconds must be at least 1".into());
    }
    Ok(())
}

/// The primary repository and its mirrors, with the order to try them in.
///
/// Used as a plain [`Transport`] it fetches from the source currently
/// ranked first (the one whose index won, once there is one) without
/// falling back; the functions of this module fall back.
pub struct Mirrors {
    /// The primary first, then the mirrors in configuration order.
    sources: Vec<Box<dyn Transport>>,
    /// Indices into `sources`, best first.
    ranking: RefCell<Vec<usize>>,
}

impl Mirrors {
    pub fn new(sources: Vec<Box<dyn Transport>>) -> Mirrors {
        assert!(!sources.is_empty(), "Mirrors needs at least one source");
        let ranking = RefCell::new((0..sources.len()).collect());
        Mirrors { sources, ranking }
    }

    /// How messages name source `i`: its role and base URL.
    pub fn describe(&self, i: usize) -> String {
        let base = self.sources[i].url("");
        if i == 0 {
            format!("primary {base}")
        } else {
            format!("mirror {i} {base}")
        }
    }

    /// Source indices in the order to try them now.
    pub fn ranked(&self) -> Vec<usize> {
        self.ranking.borrow().clone()
    }

    pub fn source(&self, i: usize) -> &dyn Transport {
        self.sources[i].as_ref()
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    fn first(&self) -> &dyn Transport {
        self.source(self.ranking.borrow()[0])
    }

    /// Puts `best` first and `worst` last, keeping the others' order.
    fn rank(&self, best: Option<usize>, worst: &[usize]) {
        let mut ranking = self.ranking.borrow_mut();
        let mut ordered: Vec<usize> = best.into_iter().collect();
        ordered.extend(
            ranking
                .iter()
                .copied()
                .filter(|i| Some(*i) != best && !worst.contains(i)),
        );
        ordered.extend(ranking.iter().copied().filter(|i| worst.contains(i)));
        *ranking = ordered;
    }
}

impl Transport for Mirrors {
    fn url(&self, path: &str) -> String {
        self.first().url(path)
    }

    fn retry_policy(&self) -> &RetryPolicy {
        self.first().retry_policy()
    }

    fn fetch(
        &self,
        path: &str,
        offset: u64,
        limit: u64,
        out: &mut dyn Write,
    ) -> Result<u64, FetchError> {
        self.first().fetch(path, offset, limit, out)
    }

    fn as_mirrors(&self) -> Option<&Mirrors> {
        Some(self)
    }
}

/// Fetches and verifies the index from every source with `fetch` (for one
/// source: `trust::fetch_index`) and returns the one with the highest
/// serial. Sources that fail, or serve an older serial, are named in a
/// warning.
pub fn fetch_index(
    transport: &dyn Transport,
    fetch: impl Fn(&dyn Transport) -> Result<VerifiedIndex>,
) -> Result<VerifiedIndex> {
    let Some(mirrors) = transport.as_mirrors() else {
        return fetch(transport);
    };
    let mut good: Vec<(usize, VerifiedIndex)> = Vec::new();
    let mut failures = Vec::new();
    for i in 0..mirrors.len() {
        match fetch(mirrors.source(i)) {
            Ok(index) => good.push((i, index)),
            Err(e @ NodeError::Io { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!("skipping the index of {}: {e}", mirrors.describe(i));
                failures.push((i, e));
            }
        }
    }
    // The first of the highest serial: `max_by_key` would take the last.
    let Some(best) = good
        .iter()
        .map(|(_, index)| index.index().serial)
        .max()
        .and_then(|top| good.iter().position(|(_, x)| x.index().serial == top))
    else {
        return Err(all_failed(mirrors, "index.json", failures));
    };
    let (winner, top) = (good[best].0, good[best].1.index().serial);
    let mut worst: Vec<usize> = failures.iter().map(|(i, _)| *i).collect();
    for (i, index) in &good {
        let serial = index.index().serial;
        if serial < top {
            tracing::warn!(
                "skipping the index of {}: it has serial {serial}, older than serial {top} from {}: that source is stale",
                mirrors.describe(*i),
                mirrors.describe(winner)
            );
            worst.push(*i);
        }
    }
    mirrors.rank(Some(winner), &worst);
    Ok(good.swap_remove(best).1)
}

/// Fetches and verifies a manifest with `fetch` (for one source:
/// `trust::fetch_manifest`) from the first source that serves a good one.
pub fn fetch_manifest(
    transport: &dyn Transport,
    what: &str,
    fetch: impl Fn(&dyn Transport) -> Result<VerifiedManifest>,
) -> Result<VerifiedManifest> {
    first_good(transport, what, fetch)
}

/// Downloads, verifies and stores one object ([`ContentStore::fetch`]) from
/// the first source that serves it intact. Returns the bytes fetched.
pub fn fetch_object(
    store: &ContentStore,
    transport: &dyn Transport,
    content: &FileContent,
    mode: Mode,
    what: &str,
) -> Result<u64> {
    first_good(transport, &content.object.path, |source| {
        store.fetch(source, content, mode, what)
    })
}

/// Runs `attempt` against each source in ranked order until one succeeds
/// (for one source: `attempt` on it, its error unchanged).
pub fn first_good<T>(
    transport: &dyn Transport,
    what: &str,
    mut attempt: impl FnMut(&dyn Transport) -> Result<T>,
) -> Result<T> {
    let Some(mirrors) = transport.as_mirrors() else {
        return attempt(transport);
    };
    let mut failures = Vec::new();
    for i in mirrors.ranked() {
        match attempt(mirrors.source(i)) {
            Ok(value) => return Ok(value),
            Err(e @ NodeError::Io { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(
                    "{what}: {} failed: {e}; trying the next source",
                    mirrors.describe(i)
                );
                if matches!(e, NodeError::Verification(_) | NodeError::Format(_)) {
                    // It served bad data: try it last for what follows.
                    mirrors.rank(None, &[i]);
                }
                failures.push((i, e));
            }
        }
    }
    Err(all_failed(mirrors, what, failures))
}

/// One error naming every source and why it failed: a verification failure
/// if any source served bad data (an alarm, exit 3), else a plain error.
/// When every source failed with the same message (it is about the request,
/// not the sources: say, a version that is not published), that error alone.
fn all_failed(mirrors: &Mirrors, what: &str, failures: Vec<(usize, NodeError)>) -> NodeError {
    let first = failures[0].1.to_string();
    if failures.iter().all(|(_, e)| e.to_string() == first) {
        return failures
            .into_iter()
            .next()
            .expect("one failure per source")
            .1;
    }
    let bad_data = failures
        .iter()
        .any(|(_, e)| matches!(e, NodeError::Verification(_) | NodeError::Format(_)));
    let mut message = format!(
        "no source could provide {what}; tried all {}:",
        mirrors.len()
    );
    for (i, e) in &failures {
        let _ = write!(message, "\n  {}: {e}", mirrors.describe(*i));
    }
    message.push_str(
        "\ncheck that the primary and every mirror are reachable and in sync with the publisher",
    );
    if bad_data {
        NodeError::Verification(message)
    } else {
        NodeError::Other(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A source that serves nothing; only its name and order matter here.
    struct Named(&'static str, RetryPolicy);

    impl Transport for Named {
        fn url(&self, path: &str) -> String {
            format!("test://{}/{path}", self.0)
        }
        fn retry_policy(&self) -> &RetryPolicy {
            &self.1
        }
        fn fetch(&self, path: &str, _: u64, _: u64, _: &mut dyn Write) -> Result<u64, FetchError> {
            Err(FetchError::NotFound {
                url: self.url(path),
            })
        }
    }

    fn mirrors(names: &[&'static str]) -> Mirrors {
        Mirrors::new(
            names
                .iter()
                .map(|n| Box::new(Named(n, RetryPolicy::never())) as Box<dyn Transport>)
                .collect(),
        )
    }

    fn name(t: &dyn Transport) -> String {
        t.url("")
    }

    #[test]
    fn the_first_good_source_wins_and_bad_data_is_tried_last_afterwards() {
        let m = mirrors(&["a", "b", "c"]);
        let tried = RefCell::new(Vec::new());
        let got = first_good(&m, "objects/x", |t| {
            tried.borrow_mut().push(name(t));
            match name(t).as_str() {
                "test://a/" => Err(NodeError::verification("tampered")),
                "test://b/" => Err(NodeError::Other("404".into())),
                _ => Ok(7),
            }
        });
        assert_eq!(got.unwrap(), 7);
        assert_eq!(*tried.borrow(), ["test://a/", "test://b/", "test://c/"]);
        assert_eq!(m.ranked(), [1, 2, 0], "a served bad data: it goes last");
    }

    #[test]
    fn every_reason_is_reported_and_bad_data_makes_it_a_verification_failure() {
        let m = mirrors(&["a", "b"]);
        let err = first_good(&m, "objects/x", |t| -> Result<()> {
            Err(match name(t).as_str() {
                "test://a/" => NodeError::Other("test://a/objects/x was not found".into()),
                _ => NodeError::verification("object objects/x is corrupt"),
            })
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, NodeError::Verification(_)), "{text}");
        assert!(
            text.contains("primary test://a/: test://a/objects/x was not found"),
            "{text}"
        );
        assert!(
            text.contains("mirror 1 test://b/: verification failed: object"),
            "{text}"
        );

        let err = first_good(&m, "x", |_| -> Result<()> {
            Err(NodeError::Other("same".into()))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "same");
    }

    #[test]
    fn a_local_disk_error_stops_at_once() {
        let m = mirrors(&["a", "b"]);
        let calls = Cell::new(0);
        let err = first_good(&m, "x", |_| -> Result<()> {
            calls.set(calls.get() + 1);
            Err(NodeError::io("cannot write", std::io::Error::other("full")))
        })
        .unwrap_err();
        assert!(matches!(err, NodeError::Io { .. }), "{err}");
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn a_single_source_is_called_directly() {
        let single = Named("only", RetryPolicy::never());
        let err = first_good(&single, "x", |_| -> Result<()> {
            Err(NodeError::Other("exactly this".into()))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "exactly this");
    }

    #[test]
    fn configuration_mistakes_are_named() {
        let config = |mirrors: &[&str]| RepositoryConfig {
            url: "http://a/repo".into(),
            channel: "stable".into(),
            public_keys: vec![],
            ca_file: None,
            timeout_seconds: 30,
            retries: 0,
            mirrors: mirrors.iter().map(|s| s.to_string()).collect(),
            stall_timeout_seconds: None,
            min_bytes_per_second: 1024,
        };
        assert!(check_config(&config(&["https://b/repo", "file:///srv/repo"])).is_ok());
        let err = check_config(&config(&["ftp://b"])).unwrap_err();
        assert!(err.contains("repository.mirrors[0]"), "{err}");
        let err = check_config(&config(&["http://b", "http://b/"])).unwrap_err();
        assert!(err.contains("listed twice"), "{err}");
        assert!(check_config(&config(&["http://a/repo/"])).is_err());
    }
}

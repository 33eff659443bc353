//! The places one signed repository is fetched from, and which of them to
//! believe: [`Sources`] owns them, and every fetch of a node — roots, the
//! index, manifests, objects and deltas — goes through it.
//!
//! The sources are `repository.url` (the primary) and `[repository]
//! mirrors`, in that order, or a bundle (`ferry apply --bundle`) alone. A
//! mirror is not trusted any more than the network is: everything it
//! serves is verified exactly as from the primary. What mirrors add is
//! availability — a source that is down, stale, missing a file or serving
//! bad bytes is skipped with a warning naming it, and the update completes
//! from one that behaves.
//!
//! The rules, and why:
//! - **Roots: the first source that has the next one.** Each step of the
//!   root walk asks the sources in ranked order for `roots/<N+1>.json`;
//!   the first that serves a root verifying as the successor is adopted.
//!   When none does, the walk ends if a source said it has no such root
//!   (the others failing are warned about), and fails otherwise. A source
//!   hiding a root gains nothing it could not get by being down: the node
//!   refuses a repository whose roots end below the root it trusted.
//! - **Index: the highest serial wins, from every source.** Each source's
//!   `index.json` is fetched and fully verified (signature, expiry, not
//!   older than the serial this node trusts); among those that verify, the
//!   highest serial is used (the first in configuration order on a tie).
//!   Taking the first index that verifies would let one stale source early
//!   in the list freeze the node on old releases until that index expires;
//!   asking all of them costs one small, capped fetch per source and means
//!   a single honest, current source is enough.
//! - **Manifests, objects, deltas: first good source.** They are pinned by
//!   digest and size in signed metadata, so any source will do. The source
//!   whose index won is tried first, then the others in configuration
//!   order; a source that served data failing verification in this run is
//!   moved last (it is still tried before giving up: a tampered object does
//!   not mean every object of it is). A 404, an exhausted retry budget or a
//!   failed verification moves on to the next source; an object's partial
//!   download carries over, since every source must serve the same bytes
//!   and the whole is verified anyway.
//! - **A source that cannot be reached** (connection refused, timeouts, an
//!   HTTP error other than 404, once its retries are spent) is warned about
//!   once and not asked again in this run: a dead primary costs one
//!   warning and one retry budget, not one per file. (With mirrors, the
//!   retries themselves are logged at debug level, `FERRY_LOG=debug`.)
//! - **The node's own disk failing** (`NodeError::Io`) stops at once: no
//!   other source can fix it.
//! - **All sources fail**: the error lists every source with its reason,
//!   and is a verification failure (exit 3) if any source served bad data.
//!
//! With a single source (no mirrors, or a bundle) every method here is
//! exactly the call it wraps on that source, errors unchanged, no warning.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::Write;

use manifests::manifest::FileContent;
use manifests::mode::Mode;
use manifests::{VerifiedIndex, VerifiedManifest};

use crate::bundle::BundleTransport;
use crate::config::RepositoryConfig;
use crate::error::{ConfigMistake, NodeError, Result};
use crate::retry::RetryPolicy;
use crate::store::ContentStore;
use crate::transport::{FetchError, FileTransport, HttpTransport, Transport};

/// Checks `[repository] mirrors` and the pace settings.
pub fn check_config(repository: &RepositoryConfig) -> Result<(), ConfigMistake> {
    for (i, url) in repository.mirrors.iter().enumerate() {
        if !(url.starts_with("file://")
            || url.starts_with("http://")
            || url.starts_with("https://"))
        {
            return Err(ConfigMistake::new(format!(
                "repository.mirrors[{i}] {url:?} must start with file://, http:// or https://"
            )));
        }
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        if same(url, &repository.url) || repository.mirrors[..i].iter().any(|m| same(m, url)) {
            return Err(ConfigMistake::new(format!(
                "repository.mirrors[{i}] {url:?} is listed twice (or is repository.url)"
            )));
        }
    }
    if repository.stall_timeout_seconds == Some(0) {
        return Err(ConfigMistake::new(
            "repository.stall_timeout_seconds must be at least 1",
        ));
    }
    Ok(())
}

/// The sources of one repository, with the order to try them in and what
/// this run learnt about them.
pub struct Sources {
    /// The primary first, then the mirrors in configuration order (or the
    /// bundle alone).
    sources: Vec<Source>,
    /// Indices into `sources`, best first.
    ranking: RefCell<Vec<usize>>,
}

/// One place the repository is served from.
struct Source {
    /// How messages name it: role and base URL.
    label: String,
    transport: Box<dyn Transport>,
    /// Its last fetch failed without an answer about the file (see
    /// [`unanswered`]): a failed attempt then means the source is down.
    last_fetch_unanswered: Cell<bool>,
    /// Why it could not be reached earlier in this run; it is not asked
    /// again.
    unreachable: RefCell<Option<String>>,
}

/// A failure that says nothing about the file: the source did not answer
/// (connection, timeout, TLS) or answered with an error other than "no
/// such file". A 404, a body too large or a resume that went wrong are
/// answers.
fn unanswered(e: &FetchError) -> bool {
    matches!(
        e,
        FetchError::Network { .. }
            | FetchError::Unreachable { .. }
            | FetchError::Http { .. }
            | FetchError::Refused { .. }
    )
}

impl Transport for Source {
    fn url(&self, path: &str) -> String {
        self.transport.url(path)
    }

    fn retry_policy(&self) -> &RetryPolicy {
        self.transport.retry_policy()
    }

    fn fetch(
        &self,
        path: &str,
        offset: u64,
        limit: u64,
        out: &mut dyn Write,
    ) -> Result<u64, FetchError> {
        let result = self.transport.fetch(path, offset, limit, out);
        self.last_fetch_unanswered
            .set(result.as_ref().is_err_and(unanswered));
        result
    }
}

/// What one source said about a file that may not exist (the next root).
enum Lookup<T> {
    Found(T),
    Absent,
}

impl Sources {
    /// `repository.url`, then every mirror, with the settings of `config`.
    pub fn open(config: &RepositoryConfig) -> Result<Sources> {
        let retry = RetryPolicy {
            // With mirrors, a source given up on is warned about once.
            quiet: !config.mirrors.is_empty(),
            ..RetryPolicy::from_config(config)
        };
        let mut sources = Vec::new();
        for (i, url) in std::iter::once(&config.url)
            .chain(&config.mirrors)
            .enumerate()
        {
            let transport = open_url(config, url, retry.clone())?;
            let base = transport.url("");
            let label = match i {
                0 => format!("primary {base}"),
                i => format!("mirror {i} {base}"),
            };
            sources.push((label, transport));
        }
        Ok(Sources::new(sources))
    }

    /// A bundle: the only source.
    pub fn bundle(bundle: BundleTransport) -> Sources {
        Sources::single(Box::new(bundle))
    }

    /// One source, with nothing to fall back to.
    pub fn single(transport: Box<dyn Transport>) -> Sources {
        let label = transport.url("");
        Sources::new(vec![(label, transport)])
    }

    fn new(sources: Vec<(String, Box<dyn Transport>)>) -> Sources {
        assert!(
            !sources.is_empty(),
            "a repository needs at least one source"
        );
        let ranking = RefCell::new((0..sources.len()).collect());
        let sources = sources
            .into_iter()
            .map(|(label, transport)| Source {
                label,
                transport,
                last_fetch_unanswered: Cell::new(false),
                unreachable: RefCell::new(None),
            })
            .collect();
        Sources { sources, ranking }
    }

    /// Source indices in the order to try them now.
    pub fn ranked(&self) -> Vec<usize> {
        self.ranking.borrow().clone()
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
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

    /// Runs `attempt` on source `i`, unless it was found unreachable
    /// earlier in this run (then `Skipped`). A failure that left the source
    /// unanswering marks it unreachable, with one warning.
    fn try_source<T>(
        &self,
        i: usize,
        attempt: &mut impl FnMut(&dyn Transport) -> Result<T>,
    ) -> Attempt<T> {
        let source = &self.sources[i];
        if let Some(reason) = source.unreachable.borrow().as_ref() {
            return Attempt::Skipped(reason.clone());
        }
        source.last_fetch_unanswered.set(false);
        match attempt(source) {
            Ok(value) => Attempt::Done(value),
            Err(e) if source.last_fetch_unanswered.get() && self.len() > 1 => {
                tracing::warn!(
                    "{} cannot be reached: {e}; the other sources serve the rest of this run",
                    source.label
                );
                *source.unreachable.borrow_mut() = Some(e.to_string());
                Attempt::Unreachable(e)
            }
            Err(e) => Attempt::Failed(e),
        }
    }

    /// Fetches and verifies the index from every source with `fetch` (for
    /// one source: `trust::fetch_index`) and returns the one with the
    /// highest serial. Sources that fail, or serve an older serial, are
    /// named in a warning.
    pub fn fetch_index(
        &self,
        mut fetch: impl FnMut(&dyn Transport) -> Result<VerifiedIndex>,
    ) -> Result<VerifiedIndex> {
        if self.len() == 1 {
            return fetch(&self.sources[0]);
        }
        let mut good: Vec<(usize, VerifiedIndex)> = Vec::new();
        let mut failures = Failures::default();
        for i in 0..self.len() {
            match self.try_source(i, &mut fetch) {
                Attempt::Done(index) => good.push((i, index)),
                Attempt::Failed(e @ NodeError::Io { .. }) => return Err(e),
                Attempt::Failed(e) => {
                    tracing::warn!("skipping the index of {}: {e}", self.sources[i].label);
                    failures.answered.push((i, e));
                }
                Attempt::Unreachable(e) => failures.answered.push((i, e)),
                Attempt::Skipped(reason) => failures.skipped.push((i, reason)),
            }
        }
        // The first of the highest serial: `max_by_key` would take the last.
        let Some(best) = good
            .iter()
            .map(|(_, index)| index.index().serial)
            .max()
            .and_then(|top| good.iter().position(|(_, x)| x.index().serial == top))
        else {
            return Err(self.all_failed("index.json", failures));
        };
        let (winner, top) = (good[best].0, good[best].1.index().serial);
        let mut worst = failures.sources();
        for (i, index) in &good {
            let serial = index.index().serial;
            if serial < top {
                tracing::warn!(
                    "skipping the index of {}: it has serial {serial}, older than serial {top} from {}: that source is stale",
                    self.sources[*i].label,
                    self.sources[winner].label
                );
                worst.push(*i);
            }
        }
        self.rank(Some(winner), &worst);
        Ok(good.swap_remove(best).1)
    }

    /// Fetches and verifies a manifest with `fetch` (for one source:
    /// `trust::fetch_manifest`) from the first source that serves a good one.
    pub fn fetch_manifest(
        &self,
        what: &str,
        fetch: impl FnMut(&dyn Transport) -> Result<VerifiedManifest>,
    ) -> Result<VerifiedManifest> {
        self.first_good(what, fetch)
    }

    /// Downloads, verifies and stores one object ([`ContentStore::fetch`])
    /// from the first source that serves it intact. Returns the bytes
    /// fetched.
    pub fn fetch_object(
        &self,
        store: &ContentStore,
        content: &FileContent,
        mode: Mode,
        what: &str,
    ) -> Result<u64> {
        self.first_good(&content.object.path, |source| {
            store.fetch(source, content, mode, what)
        })
    }

    /// Runs `attempt` against each source in ranked order until one
    /// succeeds (for one source: `attempt` on it, its error unchanged).
    pub fn first_good<T>(
        &self,
        what: &str,
        mut attempt: impl FnMut(&dyn Transport) -> Result<T>,
    ) -> Result<T> {
        if self.len() == 1 {
            return attempt(&self.sources[0]);
        }
        let mut failures = Failures::default();
        for i in self.ranked() {
            match self.try_source(i, &mut attempt) {
                Attempt::Done(value) => return Ok(value),
                Attempt::Failed(e @ NodeError::Io { .. }) => return Err(e),
                Attempt::Failed(e) => {
                    tracing::warn!(
                        "{what}: {} failed: {e}; trying the next source",
                        self.sources[i].label
                    );
                    if matches!(e, NodeError::Verification(_) | NodeError::Format(_)) {
                        // It served bad data: try it last for what follows.
                        self.rank(None, &[i]);
                    }
                    failures.answered.push((i, e));
                }
                Attempt::Unreachable(e) => failures.answered.push((i, e)),
                Attempt::Skipped(reason) => failures.skipped.push((i, reason)),
            }
        }
        Err(self.all_failed(what, failures))
    }

    /// For a file the repository may not have (the next root): `lookup`
    /// returns `None` when a source answers that it has no such file. The
    /// first source that serves it wins; when none does, `None` if any
    /// source said it has none (the failures of the others are warned
    /// about), else the error naming every source. For one source:
    /// `lookup` on it, unchanged.
    pub fn first_present<T>(
        &self,
        what: &str,
        mut lookup: impl FnMut(&dyn Transport) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        if self.len() == 1 {
            return lookup(&self.sources[0]);
        }
        let mut attempt = |source: &dyn Transport| {
            lookup(source).map(|found| found.map_or(Lookup::Absent, Lookup::Found))
        };
        let mut failures = Failures::default();
        let mut absent = false;
        for i in self.ranked() {
            match self.try_source(i, &mut attempt) {
                Attempt::Done(Lookup::Found(value)) => return Ok(Some(value)),
                Attempt::Done(Lookup::Absent) => absent = true,
                Attempt::Failed(e @ NodeError::Io { .. }) => return Err(e),
                Attempt::Failed(e) => {
                    tracing::warn!("{what}: {} failed: {e}", self.sources[i].label);
                    if matches!(e, NodeError::Verification(_) | NodeError::Format(_)) {
                        self.rank(None, &[i]);
                    }
                    failures.answered.push((i, e));
                }
                Attempt::Unreachable(e) => failures.answered.push((i, e)),
                Attempt::Skipped(reason) => failures.skipped.push((i, reason)),
            }
        }
        if absent {
            return Ok(None);
        }
        Err(self.all_failed(what, failures))
    }

    /// One error naming every source and why it failed: a verification
    /// failure if any source served bad data (an alarm, exit 3), else a
    /// plain error. When every source was asked and failed with the same
    /// message (it is about the request, not the sources: say, a version
    /// that is not published), that error alone.
    fn all_failed(&self, what: &str, failures: Failures) -> NodeError {
        let Failures {
            mut answered,
            skipped,
        } = failures;
        if let (Some((_, first)), true) = (answered.first(), skipped.is_empty()) {
            let first = first.to_string();
            if answered.iter().all(|(_, e)| e.to_string() == first) {
                return answered.swap_remove(0).1;
            }
        }
        let bad_data = answered
            .iter()
            .any(|(_, e)| matches!(e, NodeError::Verification(_) | NodeError::Format(_)));
        let mut reasons: Vec<(usize, String)> = answered
            .iter()
            .map(|(i, e)| (*i, e.to_string()))
            .chain(skipped.into_iter().map(|(i, reason)| {
                (
                    i,
                    format!("{reason} (earlier in this run; not asked again)"),
                )
            }))
            .collect();
        reasons.sort_by_key(|(i, _)| *i);
        let failed = NoSource {
            what: what.to_string(),
            tried: self.len(),
            reasons: reasons
                .into_iter()
                .map(|(i, reason)| (self.sources[i].label.clone(), reason))
                .collect(),
        };
        if bad_data {
            NodeError::Verification(failed.to_string())
        } else {
            failed.into()
        }
    }
}

/// Every source failed one request, none with bad data: each source (by
/// its label, in configuration order) with why.
#[derive(Debug, thiserror::Error)]
#[error(
    "no source could provide {what}; tried all {tried}:{}\ncheck that the primary and every mirror are reachable and in sync with the publisher",
    list_reasons(reasons)
)]
pub struct NoSource {
    pub what: String,
    pub tried: usize,
    pub reasons: Vec<(String, String)>,
}

fn list_reasons(reasons: &[(String, String)]) -> String {
    let mut text = String::new();
    for (label, reason) in reasons {
        let _ = write!(text, "\n  {label}: {reason}");
    }
    text
}

/// What came of asking one source.
enum Attempt<T> {
    Done(T),
    /// It answered, with a failure.
    Failed(NodeError),
    /// It did not answer: marked unreachable (and warned about) just now.
    Unreachable(NodeError),
    /// It was found unreachable earlier in this run, for this reason.
    Skipped(String),
}

/// The sources that failed one request.
#[derive(Default)]
struct Failures {
    /// Asked now, with their errors.
    answered: Vec<(usize, NodeError)>,
    /// Not asked: unreachable earlier in this run, with why.
    skipped: Vec<(usize, String)>,
}

impl Failures {
    fn sources(&self) -> Vec<usize> {
        self.answered
            .iter()
            .map(|(i, _)| *i)
            .chain(self.skipped.iter().map(|(i, _)| *i))
            .collect()
    }
}

/// The transport for one repository at `url`, with the settings of `config`.
fn open_url(
    config: &RepositoryConfig,
    url: &str,
    retry: RetryPolicy,
) -> Result<Box<dyn Transport>> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Box::new(FileTransport::new(path.into(), retry)));
    }
    Ok(Box::new(HttpTransport::for_url(config, url, retry)?))
}

#[cfg(test)]
mod tests;

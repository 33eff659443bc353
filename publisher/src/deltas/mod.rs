//! Binary deltas: patches that rebuild a release's files from the contents
//! nodes already hold, so an update downloads what changed rather than
//! every changed file whole.
//!
//! A publication plans every (base content, target content) pair first
//! ([`plan`]), computes them in parallel, alongside the new objects, within a
//! memory budget ([`compute`], [`budget`], `crate::schedule`) with every
//! encoding of the `delta` crate, keeping the smallest, stores them content-addressed ([`store`]) and reports
//! what a node on each base version downloads ([`report`]); `verify`
//! checks stored deltas by applying them ([`check`]). The format is
//! described in docs/FORMAT.md, "Deltas".

pub mod budget;
pub mod check;
pub mod compute;
pub mod plan;
pub mod report;
pub mod store;

use std::io;
use std::path::PathBuf;

use manifests::Sha256Digest;
use thiserror::Error;

use crate::objects::ObjectProblem;

pub use compute::{compute_pair, keep, worth_keeping, ComputedDeltas, DeltaInputs, FoundPatch};
pub use delta::encode::DeltaSettings;
pub use plan::{base_versions, plan_pairs, BaseError, BaseRelease, DeltaFrom, DeltaPair};
pub use report::{delta_report, describe};

#[derive(Debug, Error)]
pub enum DeltaError {
    #[error(
        "cannot load the base of a delta: object {} {problem}; `ferry-publish verify` lists \
         damaged objects (or publish with --delta-from none)",
        path.display()
    )]
    Base {
        path: PathBuf,
        problem: ObjectProblem,
    },

    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },

    #[error(
        "{} changed while it was being published (its content no longer matches what was \
         hashed); publish again once nothing writes to the input directory",
        path.display()
    )]
    Changed { path: PathBuf },

    #[error("cannot write delta {}: {error}", path.display())]
    Write { path: PathBuf, error: io::Error },

    #[error("cannot compute the delta from {base} to {target}: {error}")]
    Compute {
        base: Sha256Digest,
        target: Sha256Digest,
        error: io::Error,
    },

    #[error(
        "existing delta {} does not rebuild its target from its base: move it out of the \
         repository and publish again (`ferry-publish verify` lists every damaged delta)",
        path.display()
    )]
    Damaged { path: PathBuf },
}

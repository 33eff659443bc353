//! `ferry preflight [--version V] [--json]`: would this node take the
//! release? The checks `ferry apply` runs before it writes anything (disk,
//! memory, the release's requirements; see [`crate::preflight`]), run and
//! reported one per line, with nothing changed.
//!
//! The release is fetched and verified exactly as `ferry check` does, and
//! the update plan (what to fetch, what the store already holds, which
//! deltas apply) computed exactly as `ferry apply` does, so the disk check
//! measures the same bytes an apply would write.
//!
//! Exit status: 0 when every check passes, 5 ([`Exit::Preflight`]) when one
//! fails, so a fleet tool can ask nodes before it publishes to a channel;
//! 8 ([`Exit::Refused`], as `ferry apply` is) when `--version` is not
//! published on the channel or the channel is not in the repository:
//! nothing was checked because the request was wrong.

use semver::Version;
use serde::Serialize;

use crate::config::Config;
use crate::error::{Exit, Result};
use crate::plan::UpdatePlan;
use crate::preflight::{self, CheckOutcome};
use crate::store::ContentStore;
use crate::{bases, installed, trust};

/// `ferry preflight --json`.
#[derive(Debug, Clone, Serialize)]
pub struct PreflightOutput {
    pub installed: Option<Version>,
    /// The release checked.
    pub version: Version,
    /// Every check passed.
    pub ok: bool,
    pub checks: Vec<CheckOutcome>,
}

/// Runs the checks and returns the exit status to end with.
pub fn run(config: &Config, version: Option<Version>, json: bool) -> Result<Exit> {
    let manifest = super::check::fetch_verified(config, version.as_ref())?;
    let manifest = manifest.manifest();
    // A release this ferry cannot install at all is an error, not a check.
    trust::check_supported(manifest)?;
    let installed = installed::version(config)?;
    // Read-only: the store is looked at, never created.
    let store = ContentStore::at(&config.install.state_dir);
    let held = crate::operation::held_contents(&store, manifest)?;
    let bases = bases::locate(config, &store, manifest, &held, installed.as_ref())?;
    let plan = UpdatePlan::compute(manifest, installed.clone(), &held, &bases);
    let report = preflight::run(config, manifest, &plan);
    let ok = report.ok();
    if json {
        let output = PreflightOutput {
            installed,
            version: manifest.version.clone(),
            ok,
            checks: report.checks,
        };
        outln!(
            "{}",
            serde_json::to_string_pretty(&output).expect("the pre-flight report serialises")
        );
    } else {
        outln!(
            "pre-flight checks for {} (installed: {})",
            manifest.version,
            installed.map_or("nothing".to_string(), |v| v.to_string())
        );
        out!("{report}");
        let failed = report.failures().len();
        if failed == 0 {
            outln!("all {} checks passed", report.checks.len());
        } else {
            outln!(
                "{failed} of {} checks failed: ferry apply would refuse {}",
                report.checks.len(),
                manifest.version
            );
        }
    }
    Ok(if ok { Exit::Success } else { Exit::Preflight })
}

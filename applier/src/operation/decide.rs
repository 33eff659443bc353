//! What an update does, decided from gathered facts alone: which release,
//! or a refusal, a deferral, or nothing to do. No I/O here, so every rule
//! is a plain function a test can call; [`super::gather`] asks these in
//! the order that lets it stop before fetching more than it needs.

use jiff::Timestamp;
use semver::Version;

use super::error::OperationError;
use crate::error::{NodeError, Refusal, Result};
use crate::policy::{Gate, Policy, ReleaseFacts};

/// What the operator asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `--version`, if given.
    pub version: Option<Version>,
    pub allow_downgrade: bool,
    pub ignore_policy: bool,
    /// Run by the timer: the policy's gate applies.
    pub unattended: bool,
}

/// The release to install, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Install(Version),
    /// Nothing newer is allowed: the sentence says why.
    Nothing(String),
}

/// The release to install: `--version` or the highest the policy's version
/// rules allow (both unchecked with `--ignore-policy`). A `--version` the
/// channel does not publish, or the policy does not allow, is refused.
pub fn target(
    policy: &Policy,
    request: &Request,
    channel: &str,
    channel_index: &manifests::index::ChannelIndex,
    from: Option<&Version>,
) -> Result<Target> {
    if let Some(version) = &request.version {
        if !channel_index.releases.contains_key(&version.to_string()) {
            return Err(Refusal::UnknownVersion {
                version: version.clone(),
                channel: channel.to_string(),
                published: channel_index.releases.keys().cloned().collect(),
            }
            .into());
        }
    }
    if request.ignore_policy {
        return Ok(Target::Install(
            request
                .version
                .clone()
                .unwrap_or_else(|| channel_index.latest.clone()),
        ));
    }
    let chosen = policy
        .choose_target(channel_index, from, request.version.as_ref())
        .map_err(NodeError::from)?;
    if let Some(version) = chosen {
        return Ok(Target::Install(version));
    }
    let from = from.map_or("nothing".to_string(), |v| v.to_string());
    let latest = &channel_index.latest;
    Ok(Target::Nothing(match policy.has_version_rules() {
        true => format!(
            "nothing to install: no release newer than {from} satisfies {} (the channel's latest is {latest})",
            policy.describe_version_rules(),
        ),
        false => format!(
            "nothing to install: the installed {from} is newer than the channel's latest {latest}"
        ),
    }))
}

/// An older release than the installed one needs `--allow-downgrade`.
pub fn downgrade(target: &Version, from: Option<&Version>, allowed: bool) -> Result<()> {
    match from {
        Some(current) if target < current && !allowed => Err(Refusal::Downgrade {
            target: target.clone(),
            installed: current.clone(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// A release that cannot be reached from the installed one
/// (`min_upgrade_from` in its manifest).
pub fn reachable(manifest: &manifests::Manifest, from: Option<&Version>) -> Result<()> {
    match (&manifest.min_upgrade_from, from) {
        (Some(min), Some(current)) if current < min => Err(Refusal::TooOldToUpgrade {
            target: manifest.version.clone(),
            min: min.clone(),
            installed: current.clone(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// An unattended run installs only what the policy's gate lets through now;
/// a release the operator named is tried again even if this node rolled
/// it back.
pub fn gate(policy: &Policy, request: &Request, mut facts: ReleaseFacts, now: Timestamp) -> Gate {
    if !request.unattended {
        return Gate::Open;
    }
    if request.version.is_some() {
        facts.rolled_back_here = None;
    }
    policy.gate(&facts, now)
}

/// After the policy's gate, a leader's followers: an unattended leader
/// whose gate is open still defers while `behind` names followers that
/// are not done (read from etcd by [`super::gather::unattended_gate`]).
pub fn leader_gate(gate: Gate, behind: Option<String>) -> Gate {
    match (gate, behind) {
        (Gate::Open, Some(behind)) => Gate::AfterFollowers { behind },
        (gate, _) => gate,
    }
}

/// Setuid, setgid and sticky bits only on a node whose operator allowed
/// them (`[install] allow_special_modes`).
pub fn special_modes(manifest: &manifests::Manifest, allowed: bool) -> Result<()> {
    match allowed {
        true => Ok(()),
        false => Ok(crate::special_modes::refuse(manifest)?),
    }
}

/// In place there is no staged release tree to run migration scripts from
/// before the files change.
pub fn installable_in_place(manifest: &manifests::Manifest) -> Result<()> {
    if manifest.migrations.is_empty() {
        return Ok(());
    }
    Err(OperationError::MigrationsInPlace(manifest.version.clone()).into())
}

/// The installed release checked against its signed manifest: nothing to
/// do when it matches; a running tree that differs is never overwritten.
pub fn installed_tree(target: &Version, problems: &[String]) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(OperationError::RunningTreeDiffers {
        target: target.clone(),
        problems: problems.to_vec(),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn a_leader_defers_while_followers_are_behind_and_the_policy_speaks_first() {
        let behind = || Some("1 of 2 followers report 2.0.0".to_string());
        assert_eq!(
            leader_gate(Gate::Open, behind()),
            Gate::AfterFollowers {
                behind: "1 of 2 followers report 2.0.0".into()
            }
        );
        assert_eq!(leader_gate(Gate::Open, None), Gate::Open);
        // A closed policy gate is the reason given, with its instant.
        let closed = Gate::Deferred {
            reason: "outside the maintenance windows".into(),
            next_allowed_at: None,
        };
        assert_eq!(leader_gate(closed.clone(), behind()), closed);
        let line = crate::policy::PolicyConfig::default()
            .compile()
            .unwrap()
            .describe_deferral(&v("2.0.0"), &leader_gate(Gate::Open, behind()))
            .unwrap();
        assert_eq!(
            line,
            "not installing 2.0.0 now: this node is its fleet's leader, which updates after its \
             followers: 1 of 2 followers report 2.0.0; the next unattended run looks again"
        );
    }

    #[test]
    fn a_downgrade_needs_to_be_allowed() {
        assert!(downgrade(&v("1.0.0"), Some(&v("2.0.0")), false).is_err());
        assert!(downgrade(&v("1.0.0"), Some(&v("2.0.0")), true).is_ok());
        assert!(downgrade(&v("2.0.0"), Some(&v("1.0.0")), false).is_ok());
        assert!(downgrade(&v("1.0.0"), None, false).is_ok());
        let refused = downgrade(&v("1.0.0"), Some(&v("2.0.0")), false).unwrap_err();
        assert!(matches!(refused, NodeError::Refused(_)), "{refused:?}");
    }

    #[test]
    fn a_tree_that_differs_is_never_overwritten() {
        assert!(installed_tree(&v("1.0.0"), &[]).is_ok());
        let e = installed_tree(&v("1.0.0"), &["bin/app: content".into()]).unwrap_err();
        assert!(e.to_string().contains("bin/app: content"), "{e}");
    }
}

//! The command line. Subcommand and flag spellings are a contract checked by
//! outside tools (CI scripts, the end-to-end suite), so they change only
//! together with the contract. Values that can be checked without touching
//! the disk (versions, channel names, ranges) are checked here, so a typo is
//! a usage error (exit 2) before any file is read.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use manifests::manifest::{Requirement, Wave};
use semver::Version;

use crate::deltas::DeltaFrom;

#[derive(Debug, Parser)]
#[command(
    name = "ferry-publish",
    version,
    about = "Publish releases into a static, signed ferry repository"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a minisign key pair for signing releases.
    Keygen(KeygenArgs),
    /// Publish the files of INPUT_DIR as a new release.
    Release(ReleaseArgs),
    /// Check every signature, manifest and object of a repository.
    Verify(VerifyArgs),
    /// Show the channels and versions of a repository.
    List(ListArgs),
    /// Re-sign index.json with the next serial and a new expiry, nothing
    /// else changed (for a scheduled job, so nodes never see it expire).
    Refresh(RefreshArgs),
    /// Manage the root of trust: draft, edit, sign and publish root.json.
    #[command(subcommand)]
    Root(RootCommand),
    /// Write an offline bundle (one tar) of releases for `ferry apply --bundle`.
    Bundle(BundleArgs),
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,

    /// The tar file to write (replaced if it exists).
    #[arg(long, value_name = "FILE.tar")]
    pub out: PathBuf,

    /// A version to include; repeat for several (default: the latest of
    /// --channel, or of every channel).
    #[arg(long, value_name = "V", value_parser = parse_version)]
    pub version: Vec<Version>,

    /// Only this channel (with --version: the versions must be on it).
    #[arg(long, value_name = "C", value_parser = parse_channel)]
    pub channel: Option<String>,

    /// Also include the deltas from this version's contents, for nodes
    /// running it; repeatable. Without it the bundle has full objects only.
    #[arg(long, value_name = "V", value_parser = parse_version)]
    pub from: Vec<Version>,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,

    /// A minisign secret key of the index role; repeat for k-of-n.
    #[arg(long, value_name = "SECRET_KEY", required = true)]
    pub key: Vec<PathBuf>,

    /// Days until the re-signed index expires.
    #[arg(long, value_name = "DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub expires_in: u32,

    /// Read the secret keys' password from this file (first line).
    #[arg(long, value_name = "F")]
    pub password_file: Option<PathBuf>,

    /// Also re-sign the manifests whose signatures do not meet the current
    /// root's manifests role (after rotating it); --key must then include
    /// enough manifests keys.
    #[arg(long)]
    pub manifests: bool,

    #[command(flatten)]
    pub x509: X509SignArgs,
}

#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Write an unsigned draft of the next root (version 1 for a repository
    /// without one, else the current root's version + 1).
    Init(RootInitArgs),
    /// Add public keys to a role of the draft (drops its signatures).
    AddKey(RootKeyArgs),
    /// Remove keys from a role of the draft (drops its signatures).
    RemoveKey(RootKeyArgs),
    /// Add a signature block to the draft with each --key (idempotent).
    Sign(RootSignArgs),
    /// Publish the signed draft as roots/<N>.json and root.json.
    Rotate(RootRotateArgs),
}

#[derive(Debug, Args)]
pub struct RootDraftArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,

    /// The draft file (default: <repo>/root.draft.json; its signatures
    /// go to <draft>.minisig).
    #[arg(long, value_name = "FILE", alias = "out")]
    pub draft: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RootInitArgs {
    #[command(flatten)]
    pub draft: RootDraftArgs,

    /// Public key files for every role (required for a first root; for a
    /// later one, replaces the current keys of every role).
    #[arg(long, value_name = "PUBLIC_KEY")]
    pub key: Vec<PathBuf>,

    /// Signatures needed on index.json (default 1, or the current root's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threshold_index: Option<u32>,

    /// Signatures needed on each manifest.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threshold_manifests: Option<u32>,

    /// Signatures needed on the next root.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threshold_root: Option<u32>,

    /// Days until the root expires and nodes refuse the repository.
    #[arg(long, value_name = "DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub expires_in: u32,

    /// Replace an existing draft.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RootKeyArgs {
    #[command(flatten)]
    pub draft: RootDraftArgs,

    /// The role to edit: root, index or manifests.
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub role: manifests::Role,

    /// add-key: public key files; remove-key: public key files or key ids.
    #[arg(long, value_name = "KEY", required = true)]
    pub key: Vec<String>,

    /// Also set the role's threshold.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threshold: Option<u32>,
}

#[derive(Debug, Args)]
pub struct RootSignArgs {
    #[command(flatten)]
    pub draft: RootDraftArgs,

    /// Minisign secret keys to sign the draft with.
    #[arg(long, value_name = "SECRET_KEY", required = true)]
    pub key: Vec<PathBuf>,

    /// Read the secret keys' password from this file (first line).
    #[arg(long, value_name = "F")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RootRotateArgs {
    #[command(flatten)]
    pub draft: RootDraftArgs,

    /// First root only: the public keys nodes trust today through
    /// `public_keys` (default: the draft's keys that sign index.json). Root
    /// 1 must be signed by one of them or those nodes cannot adopt it.
    #[arg(long, value_name = "PUBLIC_KEY")]
    pub previous_key: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the secret key (mode 0600).
    #[arg(long, value_name = "PATH")]
    pub secret_key: PathBuf,

    /// Where to write the public key, for nodes' `public_keys`.
    #[arg(long, value_name = "PATH")]
    pub public_key: PathBuf,

    /// Encrypt the secret key with the password in this file (first line).
    /// Without it the secret key is written unencrypted.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The repository directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,

    /// A minisign secret key that signs the repository; repeat for k-of-n
    /// roles (every key signs, blocks in key id order).
    #[arg(long, value_name = "SECRET_KEY", required = true)]
    pub key: Vec<PathBuf>,

    /// The release's semantic version, e.g. 1.4.0.
    #[arg(long, value_name = "V", value_parser = parse_version)]
    pub version: Version,

    /// The channel to publish on, e.g. stable.
    #[arg(long, value_name = "C", value_parser = parse_channel)]
    pub channel: String,

    /// Release notes shown to operators.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub notes: String,

    /// Mark the release as a security or data-loss fix.
    #[arg(long)]
    pub critical: bool,

    /// Nodes on an older version must first update to at least this one.
    #[arg(long, value_name = "V", value_parser = parse_version)]
    pub min_upgrade_from: Option<Version>,

    /// A kernel or glibc version nodes must have, as KIND:CONSTRAINT
    /// (`kernel:>=5.10`, `glibc:>=2.31, <3`); repeatable. Nodes refuse the
    /// release before writing anything when it is not met.
    #[arg(long, value_name = "KIND:CONSTRAINT", value_parser = parse_require)]
    pub require: Vec<Requirement>,

    /// A tool version nodes must have, as NAME:CONSTRAINT:COMMAND LINE
    /// (`psql:>=14:psql --version`): the first x.y[.z] the command prints
    /// must satisfy the constraint; repeatable.
    #[arg(long, value_name = "NAME:CONSTRAINT:COMMAND", value_parser = parse_require_command)]
    pub require_command: Vec<Requirement>,

    /// Staged rollout for pull-mode fleets, e.g. "1%@1h,5%@4h,25%@1d,100%@3d":
    /// PERCENT%@DELAY items, cumulative whole percents rising to 100, each
    /// opening DELAY (s, m, h or d) after the release's creation time.
    /// Every node places itself in one wave by a hash of its node id and
    /// the version, and its unattended runs install once that wave opens.
    #[arg(long, value_name = "P%@DELAY,...", value_parser = parse_waves)]
    pub waves: Option<WaveSchedule>,

    /// Days until the signed index expires and nodes refuse it.
    #[arg(long, value_name = "DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub expires_in: u32,

    /// zstd compression level for new objects (1-22).
    #[arg(long, value_name = "N", default_value_t = 19,
          value_parser = clap::value_parser!(i32).range(1..=22))]
    pub zstd_level: i32,

    /// Worker threads for hashing and compression (default: one per CPU).
    /// At high levels each compression of a large file holds up to ~100 MiB.
    #[arg(long, value_name = "N")]
    pub jobs: Option<NonZeroUsize>,

    /// Read the secret key's password from this file (first line); the
    /// FERRY_KEY_PASSWORD environment variable is the alternative.
    #[arg(long, value_name = "F")]
    pub password_file: Option<PathBuf>,

    /// Versions to compute binary deltas from: `auto` (the 3 highest earlier
    /// versions of the channel), `none`, or a comma-separated list such as
    /// 1.2.0,1.3.0 (any channel).
    #[arg(long, value_name = "auto|none|V1,V2,...", default_value = "auto",
          value_parser = parse_delta_from)]
    pub delta_from: DeltaFrom,

    /// zstd level of delta patches (1-22).
    #[arg(long, value_name = "N", default_value_t = 19,
          value_parser = clap::value_parser!(i32).range(1..=22))]
    pub delta_level: i32,

    /// Largest zstd window of a delta, as log2 bytes (10-31). Windows are
    /// otherwise sized to span base and target; above 27 the zstd CLI needs
    /// --long=31 (or --memory) to decode.
    #[arg(long, value_name = "LOG", default_value_t = 31,
          value_parser = clap::value_parser!(u32).range(10..=31))]
    pub delta_window_log: u32,

    /// Memory for delta computation in MiB, shared by all workers; a pair
    /// needing more runs alone (default: half of the available memory).
    #[arg(long, value_name = "MIB",
          value_parser = clap::value_parser!(u64).range(1..=(1 << 40)))]
    pub delta_memory: Option<u64>,

    /// Data migrations to ship: a directory of `<id>.up.<ext>` scripts and
    /// optional `<id>.down.<ext>` ones (0001_users.up.sh,
    /// 0001_users.down.sh). They are added under `migrations/` and declared
    /// in the manifest in id order; nodes run each up once, before the
    /// release goes live.
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,

    #[command(flatten)]
    pub x509: X509SignArgs,

    /// The directory whose contents become the release.
    #[arg(value_name = "INPUT_DIR")]
    pub input_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,

    /// A minisign public key the repository must be signed with (what a
    /// node's `public_keys` holds); repeatable. The repository's roots are
    /// walked from it when it has any.
    #[arg(long, value_name = "PATH", required_unless_present = "root")]
    pub public_key: Vec<PathBuf>,

    /// A trusted root file (what a node's `[trust] root` names; its
    /// signature is FILE.minisig) to walk the repository's roots from.
    #[arg(long, value_name = "FILE", conflicts_with = "public_key")]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,

    /// Print a machine-readable JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn parse_role(text: &str) -> Result<manifests::Role, String> {
    manifests::Role::parse(text)
        .ok_or_else(|| format!("unknown role {text:?}: use root, index or manifests"))
}

/// An X.509 signer: with it, every signed file also gets a detached DER
/// CMS signature `<file>.p7s` (docs/FORMAT.md, "X.509 signatures").
#[derive(Debug, Args)]
pub struct X509SignArgs {
    /// PEM certificate of the X.509 signer (codeSigning extended key usage).
    #[arg(long, value_name = "LEAF.pem", requires = "x509_key")]
    pub x509_cert: Option<PathBuf>,

    /// Unencrypted PEM private key of --x509-cert.
    #[arg(long, value_name = "KEY.pem", requires = "x509_cert")]
    pub x509_key: Option<PathBuf>,

    /// PEM intermediate CA certificates to include in each signature.
    #[arg(long, value_name = "INTERMEDIATES.pem", requires = "x509_cert")]
    pub x509_chain: Option<PathBuf>,
}

fn parse_version(text: &str) -> Result<Version, String> {
    text.parse::<Version>()
        .map_err(|e| format!("{e} (expected a semantic version such as 1.4.0 or 2.0.0-rc.1)"))
}

fn parse_delta_from(text: &str) -> Result<DeltaFrom, String> {
    match text {
        "auto" => Ok(DeltaFrom::Auto),
        "none" => Ok(DeltaFrom::None),
        list => list
            .split(',')
            .map(|v| parse_version(v.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(DeltaFrom::Versions)
            .map_err(|e| format!("{e}; or use auto or none")),
    }
}

/// `--require KIND:CONSTRAINT`, for the kinds measured by the node itself.
fn parse_require(text: &str) -> Result<Requirement, String> {
    const FORM: &str = "write --require 'kernel:>=5.10' or --require 'glibc:>=2.31' \
                        (tools: --require-command 'NAME:CONSTRAINT:COMMAND')";
    let Some((kind, constraint)) = text.split_once(':') else {
        return Err(format!("{text:?} has no KIND: prefix; {FORM}"));
    };
    let requirement = match kind.trim() {
        "kernel" => Requirement::kernel(constraint.trim()),
        "glibc" => Requirement::glibc(constraint.trim()),
        "command" => {
            return Err("a command requirement needs a name and a command line: \
                 write --require-command 'NAME:CONSTRAINT:COMMAND', e.g. 'psql:>=14:psql --version'"
                .to_string())
        }
        other => return Err(format!("unknown requirement kind {other:?}; {FORM}")),
    };
    requirement.need().map_err(|e| format!("{e}; {FORM}"))?;
    Ok(requirement)
}

/// `--require-command NAME:CONSTRAINT:COMMAND LINE`: the command line may
/// itself hold colons, the name and the constraint cannot.
fn parse_require_command(text: &str) -> Result<Requirement, String> {
    const FORM: &str = "write --require-command 'NAME:CONSTRAINT:COMMAND', \
                        e.g. 'psql:>=14:psql --version'";
    let mut parts = text.splitn(3, ':');
    let (Some(name), Some(constraint), Some(command)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("{text:?} is not NAME:CONSTRAINT:COMMAND; {FORM}"));
    };
    let requirement = Requirement::command(name.trim(), constraint.trim(), command.trim());
    requirement.need().map_err(|e| format!("{e}; {FORM}"))?;
    Ok(requirement)
}

/// The value of `--waves`: one flag holds the whole schedule, so it is one
/// type (clap would read `Vec<Wave>` as a repeatable flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveSchedule(pub Vec<Wave>);

/// `--waves 1%@1h,5%@4h,25%@1d,100%@3d`: the whole schedule, checked
/// as a node would check it.
fn parse_waves(text: &str) -> Result<WaveSchedule, String> {
    manifests::wave::parse_list(text)
        .map(WaveSchedule)
        .map_err(|e| format!("{e}; write {}", manifests::wave::SPELLING))
}

fn parse_channel(text: &str) -> Result<String, String> {
    manifests::index::validate_channel_name(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `ferry-publish release` of version 2.0.0 on `stable` from `in`, with
    /// `extra` options.
    fn parse_release(extra: &[&str]) -> Result<ReleaseArgs, clap::Error> {
        let base = [
            "ferry-publish",
            "release",
            "--repo",
            "r",
            "--key",
            "k",
            "--version",
            "2.0.0",
            "--channel",
            "stable",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(extra).chain(["in"].iter()))?;
        let Command::Release(args) = cli.command else {
            panic!("not release")
        };
        Ok(args)
    }

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn release_flags_parse_with_contract_spellings() {
        let cli = Cli::try_parse_from([
            "ferry-publish",
            "release",
            "--repo",
            "r",
            "--key",
            "k",
            "--version",
            "1.2.3",
            "--channel",
            "stable",
            "--notes",
            "n",
            "--critical",
            "--min-upgrade-from",
            "1.0.0",
            "--expires-in",
            "7",
            "--zstd-level",
            "3",
            "--jobs",
            "2",
            "--password-file",
            "p",
            "in",
        ])
        .unwrap();
        let Command::Release(args) = cli.command else {
            panic!("not release")
        };
        assert_eq!(args.version, Version::new(1, 2, 3));
        assert_eq!(args.min_upgrade_from, Some(Version::new(1, 0, 0)));
        assert_eq!((args.expires_in, args.zstd_level), (7, 3));
        assert!(args.critical);
        assert_eq!(args.delta_from, DeltaFrom::Auto);
        assert_eq!((args.delta_level, args.delta_window_log), (19, 31));
        assert_eq!(args.delta_memory, None);
    }

    #[test]
    fn delta_flags_parse() {
        let parse = parse_release;
        let args = parse(&[
            "--delta-from",
            "1.0.0, 1.1.0",
            "--delta-level",
            "22",
            "--delta-window-log",
            "27",
            "--delta-memory",
            "512",
        ])
        .unwrap();
        assert_eq!(
            args.delta_from,
            DeltaFrom::Versions(vec![Version::new(1, 0, 0), Version::new(1, 1, 0)])
        );
        assert_eq!(
            (args.delta_level, args.delta_window_log, args.delta_memory),
            (22, 27, Some(512))
        );
        assert_eq!(
            parse(&["--delta-from", "none"]).unwrap().delta_from,
            DeltaFrom::None
        );
        for bad in [
            &["--delta-from", "1.0"][..],
            &["--delta-from", ""],
            &["--delta-level", "0"],
            &["--delta-window-log", "32"],
            &["--delta-memory", "0"],
        ] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn requirement_flags_parse_and_bad_spellings_show_the_form() {
        let parse = parse_release;
        let args = parse(&[
            "--require",
            "kernel:>=5.10",
            "--require",
            "glibc:>=2.31, <3",
            "--require-command",
            "psql:>=14:psql --version",
            "--require-command",
            "tool:>=1.2:printf 'v: %s' 1.2.3",
        ])
        .unwrap();
        assert_eq!(
            args.require,
            [
                Requirement::kernel(">=5.10"),
                Requirement::glibc(">=2.31, <3")
            ]
        );
        assert_eq!(
            args.require_command,
            [
                Requirement::command("psql", ">=14", "psql --version"),
                Requirement::command("tool", ">=1.2", "printf 'v: %s' 1.2.3"),
            ]
        );
        assert!(parse(&[]).unwrap().require.is_empty());
        for (bad, hint) in [
            (
                &["--require", "kernel>=5.10"][..],
                "--require 'kernel:>=5.10'",
            ),
            (&["--require", "kernel:"], "--require 'kernel:>=5.10'"),
            (&["--require", "libc:>=2"], "unknown requirement kind"),
            (&["--require", "kernel:new"], "not a semver requirement"),
            (
                &["--require", "command:>=1"],
                "--require-command 'NAME:CONSTRAINT:COMMAND'",
            ),
            (
                &["--require-command", "psql:>=14"],
                "'psql:>=14:psql --version'",
            ),
            (&["--require-command", "psql:>=14:"], "empty command"),
            (
                &["--require-command", "my tool:>=1:t -v"],
                "'psql:>=14:psql --version'",
            ),
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
            let text = err.to_string();
            assert!(text.contains(hint), "{bad:?}: {text}");
        }
    }

    #[test]
    fn waves_parse_whole_and_bad_spellings_show_the_form() {
        let parse = parse_release;
        let wave = |percent, after_seconds| Wave {
            percent,
            after_seconds,
        };
        assert_eq!(
            parse(&["--waves", "1%@1h,5%@4h,25%@1d,100%@3d"])
                .unwrap()
                .waves,
            Some(WaveSchedule(vec![
                wave(1, 3600),
                wave(5, 4 * 3600),
                wave(25, 86_400),
                wave(100, 3 * 86_400)
            ]))
        );
        assert_eq!(
            parse(&["--waves=50%@90m,100%@2h"]).unwrap().waves,
            Some(WaveSchedule(vec![wave(50, 5400), wave(100, 7200)]))
        );
        assert_eq!(parse(&[]).unwrap().waves, None);
        for (bad, hint) in [
            (&["--waves", "50%@1h"][..], "not 100%"),
            (&["--waves", "50%@2h,100%@1h"], "cannot open earlier"),
            (&["--waves", "5%@1h,5%@2h,100%@3h"], "must rise"),
            (&["--waves", "50%1h,100%@2h"], "expected PERCENT%@DELAY"),
            (&["--waves", "50%@1w,100%@2h"], "s, m, h or d"),
            (&["--waves", "0.5%@1h,100%@2h"], "whole percent"),
            (&["--waves", ""], "empty"),
            (
                &["--waves", "50%@1h,100%@2h", "--waves", "100%@1h"],
                "cannot be used multiple times",
            ),
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
            let text = err.to_string();
            assert!(text.contains(hint), "{bad:?}: {text}");
            if !hint.contains("multiple") {
                assert!(
                    text.contains("\"1%@1h,5%@4h,25%@1d,100%@3d\""),
                    "{bad:?}: {text}"
                );
            }
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let base = ["ferry-publish", "release", "--repo", "r", "--key", "k"];
        for extra in [
            &["--version", "1.2", "--channel", "stable", "in"][..],
            &["--version", "1.2.0", "--channel", "Stable", "in"],
            &[
                "--version",
                "1.2.0",
                "--channel",
                "s",
                "--zstd-level",
                "23",
                "in",
            ],
            &[
                "--version",
                "1.2.0",
                "--channel",
                "s",
                "--expires-in",
                "0",
                "in",
            ],
        ] {
            let args = base.iter().chain(extra.iter());
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{extra:?}");
        }
    }
}

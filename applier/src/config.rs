//! The node's configuration file (`/etc/ferry/ferry.toml` by default).
//!
//! Unknown keys are errors, not warnings: a misspelt `keep_releases` silently
//! ignored on a production node is worse than a refusal to start.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ConfigError, ConfigMistake, NodeError, Result};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/ferry/ferry.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub repository: RepositoryConfig,
    pub install: InstallConfig,
    #[serde(default)]
    pub trust: TrustConfig,
    /// How the service picks up a release, and the lifecycle hooks.
    #[serde(default)]
    pub service: crate::lifecycle::service::ServiceConfig,
    /// The gate a release must pass after the switch, or be rolled back.
    #[serde(default)]
    pub health: Option<crate::lifecycle::health::HealthConfig>,
    /// `[migrations]`: how data migrations shipped by releases run.
    #[serde(default)]
    pub migrations: crate::migrations::MigrationsConfig,
    /// `[policy]`: which releases this node may run, and when unattended
    /// runs may install them (see `crate::policy`).
    #[serde(default)]
    pub policy: crate::policy::PolicyConfig,
    /// `[[notify]]`: webhook receivers told about updates (see `crate::notify`).
    #[serde(default)]
    pub notify: Vec<crate::notify::NotifyConfig>,
    /// `[metrics]`: the Prometheus textfile (see `crate::metrics`).
    #[serde(default)]
    pub metrics: crate::metrics::MetricsConfig,
    /// `[preflight]`: the checks before every apply (see `crate::preflight`).
    #[serde(default)]
    pub preflight: crate::preflight::PreflightConfig,
    /// `[node]`: this node's id in rollout waves (see `crate::node_id`).
    #[serde(default)]
    pub node: crate::node_id::NodeConfig,
    /// `[coordination]`: pull-mode turns through etcd (see
    /// `crate::coordination`).
    #[serde(default)]
    pub coordination: Option<crate::coordination::CoordinationConfig>,
    /// `[policy]` compiled once (its time-zone lookup reads the zone
    /// database), by validation or by the first `policy()`.
    #[serde(skip)]
    compiled_policy: std::sync::OnceLock<crate::policy::Policy>,
}

/// `[trust]`: where the node's root of trust starts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// A signed `root.json` to start from (its signature beside it, as
    /// `<path>.minisig`), instead of `repository.public_keys`. The node
    /// then follows the repository's newer roots on its own. A minisign
    /// structure: not with `require = ["x509"]`.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Signatures every index and manifest must carry (`minisign`, `x509`);
    /// `["minisign"]` when not set (see `crate::x509`).
    #[serde(default)]
    pub require: Option<Vec<crate::x509::SignatureKind>>,
    /// PEM files of the CA certificates `.p7s` signatures must chain to.
    #[serde(default)]
    pub x509_roots: Vec<PathBuf>,
    /// The allowed X.509 signer, e.g. `CN=release.example.com`.
    #[serde(default)]
    pub x509_signer: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// `file:///path`, `http://host/path` or `https://host/path`.
    pub url: String,
    pub channel: String,
    /// minisign public key files; a signature by any one of them is trusted
    /// (the implicit root version 0). Not with `[trust] root`, and not when
    /// `[trust] require` leaves minisign out.
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
    /// PEM file of CA certificates to trust for https instead of the system store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Connect and per-read timeout for http(s).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Retries of a download after a transient failure (a dropped
    /// connection, a timeout, HTTP 5xx or 429, a truncated or corrupt body),
    /// with exponential backoff; each retry resumes what is on disk.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Other repositories serving the same signed files (`file://`,
    /// `http://`, `https://`), tried after `url` when a source is
    /// unreachable, stale, missing a file or serves data that fails
    /// verification (see `crate::sources`).
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// http(s): a download that receives no byte for this long fails (a
    /// transient failure, retried and resumed). Defaults to `timeout_seconds`.
    #[serde(default)]
    pub stall_timeout_seconds: Option<u64>,
    /// http(s): once a download has run for the stall timeout, its average
    /// rate must stay at or above this many bytes per second, so a server
    /// trickling bytes cannot hold a node forever. 0 turns the floor off.
    #[serde(default = "default_min_bytes_per_second")]
    pub min_bytes_per_second: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallConfig {
    /// ferry manages `releases/<version>/` and the symlink `current` here.
    pub root: PathBuf,
    pub state_dir: PathBuf,
    /// Releases kept on disk: the current, the previous, then the newest others.
    #[serde(default = "default_keep")]
    pub keep_releases: usize,
    /// `symlink` (default): releases side by side under `root/releases`,
    /// switched by one rename of `root/current`. `in-place`: files live at
    /// fixed paths below `root` and are replaced one atomic rename each,
    /// with a restore point made first.
    #[serde(default)]
    pub mode: InstallMode,
    /// In-place mode only: the absolute paths ferry may write. A path ending
    /// in `/` allows the directory and everything below it.
    #[serde(default)]
    pub targets: Vec<String>,
    /// In-place mode: restore points kept (the newest ones).
    #[serde(default = "default_keep_restore_points")]
    pub keep_restore_points: usize,
    /// Releases may install setuid, setgid and sticky bits (refused by
    /// default, see `special_modes`).
    #[serde(default)]
    pub allow_special_modes: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstallMode {
    #[default]
    Symlink,
    InPlace,
}

fn default_keep_restore_points() -> usize {
    3
}

/// `[repository] retries` when not set.
pub const DEFAULT_RETRIES: u32 = 5;

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

fn default_timeout() -> u64 {
    30
}

/// `[repository] min_bytes_per_second` when not set.
pub const DEFAULT_MIN_BYTES_PER_SECOND: u64 = 1024;

fn default_min_bytes_per_second() -> u64 {
    DEFAULT_MIN_BYTES_PER_SECOND
}

fn default_keep() -> usize {
    2
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            NodeError::io(
                format!(
                    "cannot read configuration {} (pass --config PATH or set FERRY_CONFIG)",
                    path.display()
                ),
                e,
            )
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, origin: &Path) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Syntax {
            path: origin.to_path_buf(),
            at: syntax_location(text, &source),
            source: Box::new(source),
        })?;
        config.check().map_err(|mistake| ConfigError::Mistake {
            path: origin.to_path_buf(),
            mistake,
        })?;
        Ok(config)
    }

    /// The mistakes serde cannot see, each section's by its own `check`.
    fn check(&self) -> std::result::Result<(), ConfigMistake> {
        let bad = |msg: String| Err(ConfigMistake::new(msg));
        let url = &self.repository.url;
        if !(url.starts_with("file://")
            || url.starts_with("http://")
            || url.starts_with("https://"))
        {
            return bad(format!(
                "repository.url {url:?} must start with file://, http:// or https://"
            ));
        }
        crate::sources::check_config(&self.repository)?;
        if let Some(health) = &self.health {
            health.check()?;
        }
        self.service.check(
            self.health.as_ref(),
            self.install.mode == InstallMode::InPlace,
        )?;
        manifests::index::validate_channel_name(&self.repository.channel)
            .or_else(|e| bad(format!("repository.channel: {e}")))?;
        // The signature policy first: whether minisign keys are needed at
        // all depends on it.
        crate::x509::check_trust_config(&self.trust)?;
        let minisign = self
            .trust
            .required_signatures()
            .contains(&crate::x509::SignatureKind::Minisign);
        match (&self.trust.root, self.repository.public_keys.is_empty()) {
            // X.509 alone: minisign keys would be silently ignored, and an
            // operator who set them surely believes they protect the node.
            (Some(_), _) if !minisign => {
                return bad(
                    "trust.root is set, but trust.require does not include \"minisign\", so the minisign root of trust would be ignored (X.509 trust is anchored in trust.x509_roots alone): remove trust.root, or add \"minisign\" to trust.require".into(),
                )
            }
            (None, false) if !minisign => {
                return bad(
                    "repository.public_keys is set, but trust.require does not include \"minisign\", so those keys would be ignored (X.509 trust is anchored in trust.x509_roots alone): remove repository.public_keys, or add \"minisign\" to trust.require".into(),
                )
            }
            (None, true) if !minisign => {}
            (None, true) => {
                return bad(
                    "repository.public_keys is empty and trust.root is not set: ferry installs nothing it cannot verify; list the minisign public keys, set trust.root, or require X.509 signatures alone (trust.require = [\"x509\"] with trust.x509_roots)".into(),
                )
            }
            (Some(_), false) => {
                return bad(
                    "set either trust.root (a signed root of trust) or repository.public_keys, not both".into(),
                )
            }
            (Some(root), true) if !root.is_absolute() => {
                return bad(format!("trust.root {} must be an absolute path", root.display()))
            }
            _ => {}
        }
        for (key, path) in [
            ("install.root", &self.install.root),
            ("install.state_dir", &self.install.state_dir),
        ] {
            if !path.is_absolute() {
                return bad(format!("{key} {} must be an absolute path", path.display()));
            }
        }
        match self.install.mode {
            InstallMode::Symlink => {
                if !self.install.targets.is_empty() {
                    return bad("install.targets is only for mode = \"in-place\"".into());
                }
                if self.install.root.starts_with(&self.install.state_dir)
                    || self.install.state_dir.starts_with(&self.install.root)
                {
                    return bad(
                        "install.root and install.state_dir must not contain each other".into(),
                    );
                }
            }
            InstallMode::InPlace => {
                if self.install.targets.is_empty() {
                    return bad(
                        "mode = \"in-place\" needs install.targets: the paths ferry may write"
                            .into(),
                    );
                }
                for target in &self.install.targets {
                    let path = Path::new(target.trim_end_matches('/'));
                    if !path.is_absolute()
                        || !path.starts_with(&self.install.root)
                        || path == self.install.root
                    {
                        return bad(format!(
                            "install.targets entry {target:?} must be an absolute path below install.root {}",
                            self.install.root.display()
                        ));
                    }
                    if self.install.state_dir.starts_with(path)
                        || path.starts_with(&self.install.state_dir)
                    {
                        return bad(format!(
                            "install.targets entry {target:?} overlaps install.state_dir"
                        ));
                    }
                    let relative = path
                        .strip_prefix(&self.install.root)
                        .expect("checked above");
                    if let Err(e) = manifests::SafeRelativePath::new(&relative.to_string_lossy()) {
                        return bad(format!("install.targets entry {target:?}: {e}"));
                    }
                }
                if self.install.keep_restore_points < 1 {
                    return bad("install.keep_restore_points must be at least 1".into());
                }
            }
        }
        if self.install.keep_releases < 2 {
            return bad(
                "install.keep_releases must be at least 2 (the current and the previous release)"
                    .into(),
            );
        }
        if self.repository.timeout_seconds == 0 {
            return bad("repository.timeout_seconds must be at least 1".into());
        }
        let _ = self.compiled_policy.set(self.policy.compile()?);
        for (index, receiver) in self.notify.iter().enumerate() {
            crate::notify::check_config(index, receiver)?;
        }
        crate::metrics::check_config(&self.metrics)?;
        self.preflight.check()?;
        self.node.check()?;
        if let Some(coordination) = &self.coordination {
            coordination.check()?;
        }
        // Last, so a zero still gets its section's own advice.
        crate::config_bounds::check(self)
    }

    /// What this node trusts without the network: its configured trust
    /// anchor or the newer root it saved (see `trust::NodeTrust`). Walk it
    /// forward with `NodeTrust::update` before fetching the index.
    pub fn trusted_keys(&self) -> Result<crate::trust::NodeTrust> {
        crate::trust::NodeTrust::load(self)
    }

    /// `[policy]`, checked and with its time zone resolved.
    pub fn policy(&self) -> Result<crate::policy::Policy> {
        if let Some(policy) = self.compiled_policy.get() {
            return Ok(policy.clone());
        }
        let policy = self.policy.compile().map_err(ConfigError::Policy)?;
        let _ = self.compiled_policy.set(policy.clone());
        Ok(policy)
    }

    /// This node's id in rollout waves: `[node] id`, else
    /// `/etc/machine-id`, else the hostname (see `crate::node_id`).
    pub fn node_id(&self) -> Result<crate::node_id::NodeId> {
        crate::node_id::resolve(&self.node)
    }

    /// `repository.public_keys`, read.
    pub fn public_keys(&self) -> Result<manifests::TrustedKeys> {
        let mut keys = manifests::TrustedKeys::new();
        for path in &self.repository.public_keys {
            keys.add_file(path)?;
        }
        Ok(keys)
    }
}

/// `line N (`the line`): ` of a TOML error, so the refusal is one line
/// that still shows the key (TOML's own rendering draws the excerpt over
/// several lines).
fn syntax_location(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else {
        return String::new();
    };
    let start = span.start.min(text.len());
    let number = text.as_bytes()[..start]
        .iter()
        .filter(|b| **b == b'\n')
        .count();
    let line: String = text
        .lines()
        .nth(number)
        .unwrap_or("")
        .trim()
        .chars()
        .take(120)
        .collect();
    format!(
        "line {} (`{}`): ",
        number + 1,
        manifests::untrusted_text::escape(&line)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The README's full example configuration is one a node accepts.
    #[test]
    fn the_readme_example_configuration_is_valid() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme
            .find("## Configuration reference")
            .expect("the README has a configuration reference")..];
        let start = section.find("```toml\n").expect("an example") + "```toml\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let config = Config::parse(example, Path::new("README.md"))
            .unwrap_or_else(|e| panic!("the README example is refused: {e}"));
        assert_eq!(
            config.service.strategy,
            crate::lifecycle::service::Strategy::Restart
        );
        assert!(config.health.is_some());
        assert_eq!(config.notify.len(), 2);
        assert_eq!(config.policy.windows.len(), 1);
        assert_eq!(config.node.id.as_deref(), Some("db-eu-07"));
    }

    pub(crate) const GOOD: &str = r#"
[repository]
url = "file:///srv/ferry-repo"
channel = "stable"
public_keys = ["/etc/ferry/ferry.pub"]

[install]
root = "/opt/myapp"
state_dir = "/var/lib/ferry"
"#;

    #[test]
    fn the_documented_example_parses_with_defaults() {
        let c = Config::parse(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(c.install.keep_releases, 2);
        assert_eq!(c.repository.timeout_seconds, 30);
        assert_eq!(c.repository.retries, 5);
        let none = GOOD.replace("channel = \"stable\"", "channel = \"stable\"\nretries = 0");
        assert_eq!(
            Config::parse(&none, Path::new("t.toml"))
                .unwrap()
                .repository
                .retries,
            0
        );
        assert_eq!(c.repository.channel, "stable");
    }

    #[test]
    fn the_policy_is_compiled_once_by_validation_and_then_reused() {
        let c = Config::parse(GOOD, Path::new("t.toml")).unwrap();
        let validated = c.compiled_policy.get().expect("validation compiled it");
        let first = c.policy().unwrap();
        assert_eq!(format!("{first:?}"), format!("{validated:?}"));
        assert_eq!(
            format!("{:?}", c.policy().unwrap()),
            format!("{:?}", c.clone().policy().unwrap())
        );
    }

    #[test]
    fn trust_root_replaces_public_keys() {
        let rooted = GOOD.replace("public_keys = [\"/etc/ferry/ferry.pub\"]", "")
            + "\n[trust]\nroot = \"/etc/ferry/root.json\"\n";
        let c = Config::parse(&rooted, Path::new("t.toml")).unwrap();
        assert_eq!(
            c.trust.root.as_deref(),
            Some(Path::new("/etc/ferry/root.json"))
        );
        let both = format!("{GOOD}\n[trust]\nroot = \"/etc/ferry/root.json\"\n");
        let err = Config::parse(&both, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not both"), "{err}");
        let typo = rooted.replace("root = \"/etc", "roots = \"/etc");
        assert!(Config::parse(&typo, Path::new("t.toml")).is_err());
        let neither = GOOD.replace("public_keys = [\"/etc/ferry/ferry.pub\"]", "");
        let err = Config::parse(&neither, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("trust.root"), "{err}");
    }

    #[test]
    fn x509_alone_needs_no_minisign_keys_and_refuses_ignored_ones() {
        let no_keys = GOOD.replace("public_keys = [\"/etc/ferry/ferry.pub\"]", "");
        let x509_trust = "\n[trust]\nrequire = [\"x509\"]\nx509_roots = [\"/etc/ferry/ca.pem\"]\n";
        let parse =
            |text: &str| Config::parse(text, Path::new("t.toml")).map_err(|e| e.to_string());
        let x509_only = format!("{no_keys}{x509_trust}");
        if !crate::x509::SUPPORTED {
            // A build without OpenSSL refuses the policy before anything else.
            let err = parse(&x509_only).unwrap_err();
            assert!(err.contains("lacks X.509 support"), "{err}");
            return;
        }
        let c = parse(&x509_only).unwrap();
        assert!(c.repository.public_keys.is_empty() && c.trust.root.is_none());

        // Minisign keys beside X.509 alone would be ignored: refused.
        let err = parse(&format!("{GOOD}{x509_trust}")).unwrap_err();
        assert!(
            err.contains("repository.public_keys is set") && err.contains("would be ignored"),
            "{err}"
        );
        let rooted = x509_only.replace("[trust]\n", "[trust]\nroot = \"/etc/ferry/root.json\"\n");
        let err = parse(&rooted).unwrap_err();
        assert!(
            err.contains("trust.root is set") && err.contains("would be ignored"),
            "{err}"
        );

        // With minisign required (alone or with X.509) the keys stay required.
        let both = x509_only.replace("[\"x509\"]", "[\"minisign\", \"x509\"]");
        let err = parse(&both).unwrap_err();
        assert!(err.contains("repository.public_keys is empty"), "{err}");
        assert!(parse(&format!("{GOOD}{}", both.split_at(no_keys.len()).1)).is_ok());
        let err = parse(&x509_only.replace("[\"x509\"]", "[\"minisign\"]")).unwrap_err();
        assert!(err.contains("does not include \"x509\""), "{err}");

        // X.509 alone without anchors trusts nothing: refused.
        let err =
            parse(&x509_only.replace("x509_roots = [\"/etc/ferry/ca.pem\"]\n", "")).unwrap_err();
        assert!(err.contains("x509_roots is empty"), "{err}");
    }

    #[test]
    fn the_policy_section_is_optional_and_checked() {
        let c = Config::parse(GOOD, Path::new("t.toml")).unwrap();
        assert!(c.policy.auto && c.policy.windows.is_empty());
        assert_eq!(c.policy.timezone, "UTC");
        let berlin = format!(
            "{GOOD}\n[policy]\ntimezone = \"Europe/Berlin\"\nwindows = [{{ days = [\"sat\"], start = \"02:00\", end = \"04:00\" }}]\n"
        );
        let p = Config::parse(&berlin, Path::new("t.toml"))
            .unwrap()
            .policy()
            .unwrap();
        assert_eq!(p.windows.len(), 1);
        let unknown = format!("{GOOD}\n[policy]\ntimezone = \"Europe/Atlantis\"\n");
        let err = Config::parse(&unknown, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.toml") && err.contains("policy.timezone \"Europe/Atlantis\""),
            "{err}"
        );
    }

    #[test]
    fn notify_and_metrics_are_checked_with_the_rest() {
        let parse = |extra: &str| {
            Config::parse(&format!("{GOOD}{extra}"), Path::new("t.toml")).map_err(|e| e.to_string())
        };
        let c = parse(
            "\n[[notify]]\nurl = \"https://hooks.example.com/a\"\n\n[[notify]]\nurl = \"http://127.0.0.1:9/b\"\nformat = \"slack\"\n\n[metrics]\ntextfile = \"/var/lib/node-exporter/ferry.prom\"\n",
        )
        .unwrap();
        assert_eq!(c.notify.len(), 2);
        assert!(c.metrics.textfile.is_some());
        assert!(parse("").unwrap().notify.is_empty());
        let err = parse("\n[[notify]]\nurl = \"https://a.example\"\n\n[[notify]]\nurl = \"https://b.example\"\nformat = \"pagerduty\"\n").unwrap_err();
        assert!(
            err.contains("notify[1]") && err.contains("routing_key"),
            "{err}"
        );
        let err = parse("\n[[notify]]\nurl = \"smtp://a.example\"\n").unwrap_err();
        assert!(err.contains("notify[0].url"), "{err}");
        let err = parse(
            "\n[[notify]]\nurl = \"https://a.example\"\nevents = [\"applied\", \"exploded\"]\n",
        )
        .unwrap_err();
        assert!(err.contains("exploded"), "{err}");
        let err = parse("\n[metrics]\ntextfile = \"ferry.prom\"\n").unwrap_err();
        assert!(err.contains("metrics.textfile"), "{err}");
    }

    #[test]
    fn a_value_toml_cannot_take_is_refused_on_one_line_with_its_line() {
        for (line, said) in [
            ("retries = 18446744073709551615", "expected u32"),
            ("timeout_seconds = -1", "expected u64"),
        ] {
            let text = GOOD.replace(
                "channel = \"stable\"",
                &format!("channel = \"stable\"\n{line}"),
            );
            let err = Config::parse(&text, Path::new("t.toml"))
                .unwrap_err()
                .to_string();
            assert!(!err.contains('\n'), "{err}");
            assert!(
                err.contains(&format!("line 5 (`{line}`): ")) && err.contains(said),
                "{err}"
            );
        }
    }

    #[test]
    fn mistakes_are_refused_with_the_key_named() {
        let typo = GOOD.replace("state_dir", "statedir");
        let err = Config::parse(&typo, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("statedir"), "{err}");
        let ftp = GOOD.replace("file:///srv", "ftp://srv");
        assert!(Config::parse(&ftp, Path::new("t.toml"))
            .unwrap_err()
            .to_string()
            .contains("repository.url"));
        let nested = GOOD.replace("/var/lib/ferry", "/opt/myapp/state");
        assert!(Config::parse(&nested, Path::new("t.toml")).is_err());
        let relative = GOOD.replace("/opt/myapp", "opt/myapp");
        assert!(Config::parse(&relative, Path::new("t.toml"))
            .unwrap_err()
            .to_string()
            .contains("absolute"));
    }
}

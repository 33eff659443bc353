//! The node's configuration file (`/etc/ferry/ferry.toml` by default).
//!
//! Unknown keys are errors, not warnings: a misspelt `keep_releases` silently
//! ignored on a production node is worse than a refusal to start.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{NodeError, Result};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/ferry/ferry.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub repository: RepositoryConfig,
    pub install: InstallConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// `file:///path`, `http://host/path` or `https://host/path`.
    pub url: String,
    pub channel: String,
    /// minisign public key files; a signature by any one of them is trusted.
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
        let config: Config = toml::from_str(text).map_err(|e| {
            NodeError::Other(format!(
                "configuration {} is invalid: {e}",
                origin.display()
            ))
        })?;
        config.check(origin)?;
        Ok(config)
    }

    fn check(&self, origin: &Path) -> Result<()> {
        let bad = |msg: String| {
            Err(NodeError::Other(format!(
                "configuration {}: {msg}",
                origin.display()
            )))
        };
        let url = &self.repository.url;
        if !(url.starts_with("file://")
            || url.starts_with("http://")
            || url.starts_with("https://"))
        {
            return bad(format!(
                "repository.url {url:?} must start with file://, http:// or https://"
            ));
        }
        manifests::index::validate_channel_name(&self.repository.channel)
            .or_else(|e| bad(format!("repository.channel: {e}")))?;
        if self.repository.public_keys.is_empty() {
            return bad(
                "repository.public_keys is empty: ferry installs nothing it cannot verify".into(),
            );
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
        Ok(())
    }

    pub fn trusted_keys(&self) -> Result<manifests::TrustedKeys> {
        let mut keys = manifests::TrustedKeys::new();
        for path in &self.repository.public_keys {
            keys.add_file(path)?;
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
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

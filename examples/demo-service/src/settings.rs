//! What a release says about the service: `demo.toml` beside `bin/`.
//!
//! The lifecycle tests need two releases that differ in behaviour, not just
//! in bytes: one that serves version 2.0.0, one that starts slowly, one
//! that fails its health check. Reading all of that from a file inside the
//! release makes each release a plain directory tree the publisher can sign,
//! so the very same binary can be shipped as every version.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The file, in the release directory, that describes the release.
pub const SETTINGS_FILE: &str = "demo.toml";

/// The contents of `demo.toml`.
///
/// ```toml
/// version = "2.0.0"        # what /version and /health report
/// healthy = true           # false: /health always answers 503
/// start_delay_ms = 1500    # wait this long before listening (a slow start)
/// migrate_marker = "state/migrated-2.0.0"  # /health fails until this file exists
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSettings {
    pub version: String,
    #[serde(default = "healthy_by_default")]
    pub healthy: bool,
    #[serde(default)]
    pub start_delay_ms: Option<u64>,
    /// A file a migration creates; relative paths are relative to the
    /// release directory. Until it exists the release is not ready, which
    /// is how a test proves that migrations run before the health check.
    #[serde(default)]
    pub migrate_marker: Option<PathBuf>,
}

fn healthy_by_default() -> bool {
    true
}

impl ReleaseSettings {
    /// Reads `DIR/demo.toml`; migrate_marker becomes an absolute path.
    pub fn load(release_dir: &Path) -> Result<Self, String> {
        let path = release_dir.join(SETTINGS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read {}: {e}; a release of the demo service holds a {SETTINGS_FILE} \
                 beside bin/ (at least `version = \"1.0.0\"`), or pass --release-dir",
                path.display()
            )
        })?;
        let mut settings: ReleaseSettings = toml::from_str(&text)
            .map_err(|e| format!("{} is not valid demo settings: {e}", path.display()))?;
        if settings.version.trim().is_empty() || settings.version.contains(['\n', '"', '\\']) {
            return Err(format!(
                "{}: version {:?} must be a non-empty string without newlines, quotes or backslashes",
                path.display(),
                settings.version
            ));
        }
        if let Some(marker) = &settings.migrate_marker {
            settings.migrate_marker = Some(release_dir.join(marker));
        }
        Ok(settings)
    }

    pub fn start_delay(&self) -> Duration {
        Duration::from_millis(self.start_delay_ms.unwrap_or(0))
    }
}

/// The release directory of an executable at `<release>/bin/demo-service`.
pub fn release_dir_of(executable: &Path) -> Result<PathBuf, String> {
    executable
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "cannot tell the release directory of {}: expected <release>/bin/demo-service; \
                 pass --release-dir",
                executable.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key_and_anchors_the_marker_in_the_release() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            "version = \"2.0.0\"\nhealthy = false\nstart_delay_ms = 250\nmigrate_marker = \"m/done\"\n",
        )
        .unwrap();
        let settings = ReleaseSettings::load(dir.path()).unwrap();
        assert_eq!(settings.version, "2.0.0");
        assert!(!settings.healthy);
        assert_eq!(settings.start_delay(), Duration::from_millis(250));
        assert_eq!(settings.migrate_marker, Some(dir.path().join("m/done")));
    }

    #[test]
    fn healthy_unless_told_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SETTINGS_FILE), "version = \"1.0.0\"\n").unwrap();
        let settings = ReleaseSettings::load(dir.path()).unwrap();
        assert!(settings.healthy);
        assert_eq!(settings.start_delay(), Duration::ZERO);
    }

    #[test]
    fn a_misspelt_key_or_a_missing_file_says_what_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ReleaseSettings::load(dir.path()).unwrap_err();
        assert!(missing.contains("demo.toml"), "{missing}");
        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            "version = \"1.0.0\"\nhealty = false\n",
        )
        .unwrap();
        let typo = ReleaseSettings::load(dir.path()).unwrap_err();
        assert!(typo.contains("healty"), "{typo}");
    }

    #[test]
    fn the_release_is_the_parent_of_bin() {
        assert_eq!(
            release_dir_of(Path::new("/opt/app/releases/2.0.0/bin/demo-service")).unwrap(),
            PathBuf::from("/opt/app/releases/2.0.0")
        );
    }
}

//! The health gate: is the service that runs a release actually serving?
//!
//! A switched symlink proves nothing about the database behind it; the
//! gate asks the service itself, the way its operators would: an HTTP GET
//! (status, and optionally the release's own version in the body, so an
//! old process still answering on the port is not mistaken for the new
//! one) or a command. It probes every `interval_ms` until one probe
//! passes, `retries` probes have failed, or `timeout_seconds` is up.

use super::error::{ProbeFailure, Unhealthy};
use crate::error::ConfigMistake;
use std::time::{Duration, Instant};

use semver::Version;
use serde::Deserialize;

use crate::shell::ShellCommand;

/// `[health]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `http://` URL to GET, e.g. `http://127.0.0.1:8080/health`.
    #[serde(default)]
    pub url: Option<String>,
    /// The status a healthy service answers with.
    #[serde(default = "default_status")]
    pub expected_status: u16,
    /// The body must name the version being checked (as a whole token:
    /// `2.0.0` does not match `12.0.0`).
    #[serde(default)]
    pub expect_version: bool,
    /// A command that exits 0 when healthy (instead of, or besides, `url`).
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Failed probes tolerated before the release counts as unhealthy.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The whole gate, all probes together.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// One probe (one GET or one run of `command`).
    #[serde(default = "default_probe_timeout_ms")]
    pub probe_timeout_ms: u64,
}

fn default_status() -> u16 {
    200
}
fn default_interval_ms() -> u64 {
    500
}
fn default_retries() -> u32 {
    20
}
fn default_timeout_seconds() -> u64 {
    30
}
fn default_probe_timeout_ms() -> u64 {
    2000
}

impl HealthConfig {
    /// Configuration mistakes, worded for the operator.
    pub fn check(&self) -> Result<(), ConfigMistake> {
        let bad = |message: String| Err(ConfigMistake::new(message));
        if self.url.is_none() && self.command.is_none() {
            return bad("[health] needs `url` or `command` (or remove the section)".into());
        }
        if let Some(url) = &self.url {
            if !url.starts_with("http://") {
                return bad(format!(
                    "health.url {url:?} must start with http:// (health checks go to the service on this node)"
                ));
            }
        }
        if self.expect_version && self.url.is_none() {
            return bad("health.expect_version needs health.url".into());
        }
        if self.interval_ms == 0 || self.timeout_seconds == 0 || self.probe_timeout_ms == 0 {
            return bad(
                "health.interval_ms, health.timeout_seconds and health.probe_timeout_ms must be positive"
                    .into(),
            );
        }
        Ok(())
    }

    /// Probes until healthy or out of tries; `Err` says what the last
    /// probe saw. `env` goes to `command`.
    pub fn wait_healthy(
        &self,
        version: &Version,
        env: &[(String, String)],
    ) -> Result<Healthy, Box<Unhealthy>> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(self.timeout_seconds);
        let mut failures = 0u32;
        loop {
            let probe_started = Instant::now();
            match self.probe(version, env) {
                Ok(()) => {
                    return Ok(Healthy {
                        probes: failures + 1,
                        waited: started.elapsed(),
                    })
                }
                Err(seen) => {
                    failures += 1;
                    let next = probe_started + Duration::from_millis(self.interval_ms);
                    if failures > self.retries || next >= deadline {
                        return Err(Box::new(Unhealthy {
                            version: version.clone(),
                            probes: failures,
                            seconds: started.elapsed().as_secs_f64(),
                            last: seen,
                        }));
                    }
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            }
        }
    }

    fn probe(&self, version: &Version, env: &[(String, String)]) -> Result<(), ProbeFailure> {
        if let Some(url) = &self.url {
            self.probe_url(url, version)?;
        }
        if let Some(line) = &self.command {
            ShellCommand {
                what: "health command",
                line,
                env: env.to_vec(),
                cwd: None,
                timeout: Duration::from_millis(self.probe_timeout_ms),
            }
            .run_checked()?;
        }
        Ok(())
    }

    /// Whether a passed probe names the release that answered: the body
    /// must name the version (`expect_version`), or the operator's
    /// `command` (which sees FERRY_TO_VERSION) decides. Without either,
    /// an old instance still on the port passes for any release.
    pub fn tells_releases_apart(&self) -> bool {
        (self.expect_version && self.url.is_some()) || self.command.is_some()
    }

    /// Whether `version` answers as itself right now: up to `tries`
    /// probes, since a port shared by two instances (blue-green,
    /// SO_REUSEPORT) may hand any one of them to the other. Always `false`
    /// when the probe cannot tell releases apart (see
    /// [`Self::tells_releases_apart`]). `env` goes to `command` and names
    /// `version` as FERRY_TO_VERSION.
    pub fn answers_as(&self, version: &Version, env: &[(String, String)], tries: u32) -> bool {
        self.tells_releases_apart() && (0..tries).any(|_| self.probe(version, env).is_ok())
    }

    fn probe_url(&self, url: &str, version: &Version) -> Result<(), ProbeFailure> {
        // A health body is small; cap it so a broken service cannot make
        // the gate read forever.
        let (status, body) =
            crate::http_probe::get(url, Duration::from_millis(self.probe_timeout_ms), 64 * 1024)?;
        if status != self.expected_status {
            return Err(ProbeFailure::Status {
                url: url.to_string(),
                status,
                expected: self.expected_status,
                excerpt: excerpt(&body),
            });
        }
        if self.expect_version && !names_version(&body, version) {
            return Err(ProbeFailure::NoVersion {
                url: url.to_string(),
                status,
                version: version.clone(),
                excerpt: excerpt(&body),
            });
        }
        Ok(())
    }
}

/// A passed gate.
#[derive(Debug, Clone, Copy)]
pub struct Healthy {
    pub probes: u32,
    pub waited: Duration,
}

/// Whether `body` holds `version` as a whole token.
pub fn names_version(body: &str, version: &Version) -> bool {
    let wanted = version.to_string();
    let part_of_version = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+');
    body.match_indices(&wanted).any(|(at, _)| {
        let before = body[..at].chars().next_back();
        let after = body[at + wanted.len()..].chars().next();
        !before.is_some_and(part_of_version) && !after.is_some_and(part_of_version)
    })
}

fn excerpt(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    let cut: String = body.chars().take(200).collect();
    // The service's answer goes into logs and the history: escaped.
    format!(" ({})", manifests::untrusted_text::escape(&cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn the_version_must_be_a_whole_token() {
        let body = r#"{"status":"ok","version":"2.0.0"}"#;
        assert!(names_version(body, &v("2.0.0")));
        assert!(!names_version(body, &v("2.0.1")));
        assert!(!names_version("12.0.0", &v("2.0.0")));
        assert!(!names_version("2.0.0-rc.1", &v("2.0.0")));
        assert!(!names_version("2.0.00", &v("2.0.0")));
        assert!(names_version("version 2.0.0\n", &v("2.0.0")));
    }

    fn config(command: &str, retries: u32) -> HealthConfig {
        HealthConfig {
            url: None,
            expected_status: 200,
            expect_version: false,
            command: Some(command.into()),
            interval_ms: 20,
            retries,
            timeout_seconds: 10,
            probe_timeout_ms: 2000,
        }
    }

    #[test]
    fn a_command_gate_passes_once_the_command_does_and_fails_after_its_retries() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        // Fails twice, then passes.
        let line = format!(
            "n=$(cat {0} 2>/dev/null || echo 0); echo $((n+1)) > {0}; [ $n -ge 2 ]",
            count.display()
        );
        let healthy = config(&line, 5).wait_healthy(&v("1.0.0"), &[]).unwrap();
        assert_eq!(healthy.probes, 3);
        let error = config("echo down; exit 1", 2)
            .wait_healthy(&v("1.0.0"), &[])
            .unwrap_err();
        assert!(error.to_string().contains("after 3 probes"), "{error}");
        assert!(error.to_string().contains("down"), "{error}");
    }

    #[test]
    fn configuration_mistakes_are_named() {
        let mut c = config("true", 1);
        c.command = None;
        assert!(c
            .check()
            .unwrap_err()
            .to_string()
            .contains("needs `url` or `command`"));
        c.url = Some("https://127.0.0.1/health".into());
        assert!(c.check().unwrap_err().to_string().contains("http://"));
        c.url = Some("http://127.0.0.1:1/health".into());
        assert!(c.check().is_ok());
    }

    #[test]
    fn a_closed_port_is_unhealthy_within_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut c = config("true", 3);
        c.command = None;
        c.url = Some(format!("http://127.0.0.1:{port}/health"));
        let started = Instant::now();
        let error = c.wait_healthy(&v("1.0.0"), &[]).unwrap_err();
        assert!(
            error.to_string().contains("GET http://127.0.0.1"),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

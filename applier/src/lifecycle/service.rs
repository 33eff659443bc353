//! `[service]`: how the service that runs the installed release picks up a
//! new one, and the operator's lifecycle hooks.
//!
//! Three strategies, because services differ in what they can do:
//! - `restart`: stop and start (`restart_command`, e.g. `systemctl restart
//!   mydb`); a short outage, the simplest and most common.
//! - `reload`: the running process re-reads the release in place (a signal
//!   to the pid in `pid_file`, or `reload_command`); no outage, if the
//!   service supports it.
//! - `blue-green`: the new release starts beside the old one
//!   (`start_command`, templated with the release directory), the health
//!   gate checks it while the old one still serves, and only then is the old
//!   one stopped (`stop_command`); a failed candidate is stopped and the old
//!   one never noticed. With SO_REUSEPORT both bind the same port.
//!
//! Hooks (`pre_apply`, `post_apply`, `pre_rollback`, `post_rollback`) are
//! commands run with `FERRY_FROM_VERSION`, `FERRY_TO_VERSION` and
//! `FERRY_RELEASE_DIR` in their environment. `{release_dir}` and `{version}`
//! in `start_command`/`stop_command` are replaced with the release's
//! directory and version (shell-quoted).

use super::error::ServiceError;
use crate::error::ConfigMistake;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::health::HealthConfig;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// ferry switches the files; something else picks them up.
    #[default]
    None,
    Restart,
    Reload,
    BlueGreen,
}

/// `[service]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub restart_command: Option<String>,
    #[serde(default)]
    pub reload_command: Option<String>,
    /// `HUP`, `USR1`, `USR2`, `TERM`... sent to the pid in `pid_file`.
    #[serde(default)]
    pub reload_signal: Option<String>,
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    #[serde(default)]
    pub start_command: Option<String>,
    #[serde(default)]
    pub stop_command: Option<String>,
    /// Deadline of each restart, reload, start or stop command.
    #[serde(default)]
    pub command_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub pre_apply: Option<String>,
    #[serde(default)]
    pub post_apply: Option<String>,
    #[serde(default)]
    pub pre_rollback: Option<String>,
    #[serde(default)]
    pub post_rollback: Option<String>,
    /// Deadline of each hook.
    #[serde(default)]
    pub hook_timeout_seconds: Option<u64>,
}

/// Default deadline of a service command.
const COMMAND_TIMEOUT: u64 = 120;
/// Default deadline of a hook.
const HOOK_TIMEOUT: u64 = 300;

impl ServiceConfig {
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_seconds.unwrap_or(COMMAND_TIMEOUT))
    }

    pub fn hook_timeout(&self) -> Duration {
        Duration::from_secs(self.hook_timeout_seconds.unwrap_or(HOOK_TIMEOUT))
    }

    /// Configuration mistakes, worded for the operator. `health`: the
    /// `[health]` section, if set; `in_place`: the install mode.
    pub fn check(
        &self,
        health: Option<&HealthConfig>,
        in_place: bool,
    ) -> Result<(), ConfigMistake> {
        let needs = |key: &str, value: &Option<String>| match value {
            Some(v) if !v.trim().is_empty() => Ok(()),
            _ => Err(ConfigMistake::new(format!(
                "service.strategy = \"{}\" needs service.{key}",
                strategy_name(self.strategy)
            ))),
        };
        match self.strategy {
            Strategy::None => {}
            Strategy::Restart => needs("restart_command", &self.restart_command)?,
            Strategy::Reload => match (&self.reload_command, &self.reload_signal, &self.pid_file) {
                (Some(_), None, _) => {}
                (None, Some(signal), Some(_)) => {
                    signal_named(signal).map_err(|e| ConfigMistake::new(e.to_string()))?;
                }
                _ => {
                    return Err(ConfigMistake::new("service.strategy = \"reload\" needs service.reload_command, or service.reload_signal with service.pid_file"))
                }
            },
            Strategy::BlueGreen => {
                needs("start_command", &self.start_command)?;
                needs("stop_command", &self.stop_command)?;
                let Some(health) = health else {
                    return Err(ConfigMistake::new("service.strategy = \"blue-green\" needs a [health] section: the old release is stopped only once the new one is healthy"));
                };
                // Both instances answer on one port: a gate that cannot
                // tell them apart passes the old one for the candidate.
                if !health.tells_releases_apart() {
                    return Err(ConfigMistake::new("service.strategy = \"blue-green\" needs health.expect_version = true (with health.url) or a health.command: the old instance answers the health check too, so the gate must tell the candidate from it"));
                }
                if in_place {
                    return Err(ConfigMistake::new("service.strategy = \"blue-green\" needs install.mode = \"symlink\": two releases run side by side"));
                }
            }
        }
        for (key, timeout) in [
            ("command_timeout_seconds", self.command_timeout_seconds),
            ("hook_timeout_seconds", self.hook_timeout_seconds),
        ] {
            if timeout == Some(0) {
                return Err(ConfigMistake::new(format!(
                    "service.{key} must be positive"
                )));
            }
        }
        Ok(())
    }
}

pub fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::None => "none",
        Strategy::Restart => "restart",
        Strategy::Reload => "reload",
        Strategy::BlueGreen => "blue-green",
    }
}

/// The signal a `reload_signal` names (`HUP` or `SIGHUP`).
pub fn signal_named(name: &str) -> Result<rustix::process::Signal, ServiceError> {
    use rustix::process::Signal;
    let bare = name.trim().trim_start_matches("SIG");
    Ok(match bare {
        "HUP" => Signal::HUP,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "TERM" => Signal::TERM,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "WINCH" => Signal::WINCH,
        _ => return Err(ServiceError::UnknownSignal(name.to_string())),
    })
}

/// `template` with `{release_dir}` and `{version}` replaced, each quoted for
/// the shell.
pub fn fill_template(template: &str, release_dir: &std::path::Path, version: &str) -> String {
    template
        .replace(
            "{release_dir}",
            &shell_quote(&release_dir.to_string_lossy()),
        )
        .replace("{version}", &shell_quote(version))
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ServiceConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn each_strategy_names_what_it_is_missing() {
        let restart = parse("strategy = \"restart\"");
        assert!(restart
            .check(None, false)
            .unwrap_err()
            .to_string()
            .contains("restart_command"));
        let reload = parse("strategy = \"reload\"\nreload_signal = \"HUP\"");
        assert!(reload
            .check(None, false)
            .unwrap_err()
            .to_string()
            .contains("pid_file"));
        let reload =
            parse("strategy = \"reload\"\nreload_signal = \"SIGHUP\"\npid_file = \"/run/x.pid\"");
        assert!(reload.check(None, false).is_ok());
        let bad_signal =
            parse("strategy = \"reload\"\nreload_signal = \"BOOM\"\npid_file = \"/p\"");
        assert!(bad_signal
            .check(None, false)
            .unwrap_err()
            .to_string()
            .contains("BOOM"));
        let blue_green =
            parse("strategy = \"blue-green\"\nstart_command = \"start\"\nstop_command = \"stop\"");
        assert!(blue_green
            .check(None, false)
            .unwrap_err()
            .to_string()
            .contains("[health]"));
        let health = |text: &str| toml::from_str::<HealthConfig>(text).unwrap();
        let by_version = health("url = \"http://127.0.0.1:1/health\"\nexpect_version = true");
        assert!(blue_green
            .check(Some(&by_version), true)
            .unwrap_err()
            .to_string()
            .contains("symlink"));
        assert!(blue_green.check(Some(&by_version), false).is_ok());
        let by_command = health("command = \"check $FERRY_TO_VERSION\"");
        assert!(blue_green.check(Some(&by_command), false).is_ok());
        let by_status = health("url = \"http://127.0.0.1:1/health\"");
        assert!(blue_green
            .check(Some(&by_status), false)
            .unwrap_err()
            .to_string()
            .contains("health.expect_version = true"));
        assert!(toml::from_str::<ServiceConfig>("strategy = \"rolling\"").is_err());
    }

    #[test]
    fn templates_are_filled_and_quoted() {
        let line = fill_template(
            "run --dir {release_dir} --version {version}",
            std::path::Path::new("/srv/app/releases/2.0.0 it's"),
            "2.0.0",
        );
        assert_eq!(
            line,
            r"run --dir '/srv/app/releases/2.0.0 it'\''s' --version '2.0.0'"
        );
    }
}

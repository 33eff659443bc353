//! Around the switch: lifecycle hooks, the service strategy, the health gate
//! and the way back.
//!
//! The switch itself is one rename, but an update is only done when the
//! service runs the new release and answers healthy. So `apply` asks this
//! module, in order:
//! 1. [`Transition::pre_apply`] before the switch: its failure aborts the
//!    update with nothing changed;
//! 2. [`Transition::go_live`] after the switch: the strategy (restart,
//!    reload or blue-green), the health gate, then `post_apply`. Any failure
//!    comes back as a [`GoLiveFailure`] saying how far it got;
//! 3. on failure, after `pre_rollback` and the switch back,
//!    [`Transition::restore`] brings the old release back into service
//!    (restarting it, or for blue-green stopping the candidate while the old
//!    one kept serving) and checks its health; then `post_rollback`.
//!
//! After a crash, recovery asks for the same steps again
//! ([`Transition::resume_go_live`]): blue-green then first asks the health
//! check whether the candidate already answers as itself, so that a crash
//! never runs two instances of one release. That is why blue-green needs a
//! health check that tells releases apart (checked at configuration load).
//!
//! Nothing here decides or records outcomes: `apply` (and recovery) own the
//! journal. Every command has a deadline (see [`crate::shell`]).

pub mod error;
pub mod health;
pub mod service;

use std::path::PathBuf;

use semver::Version;

use crate::config::{Config, InstallMode};
use crate::release_dir;
use crate::shell::ShellCommand;
use error::ServiceError;
use service::{fill_template, strategy_name, Strategy};

/// One move of the node from `from` to `to` (an update, or the way back).
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    pub config: &'a Config,
    pub from: Option<&'a Version>,
    pub to: &'a Version,
}

/// How far [`Transition::go_live`] got before it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoLiveFailure {
    pub message: String,
    /// The old release's service was stopped or restarted onto the new
    /// files: it has to be brought back, not merely left running.
    pub old_stopped: bool,
}

/// What [`Transition::restore`] did, for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// "1.0.0 is healthy again", "1.0.0 restarted (no health check)".
    pub summary: String,
    /// The old release answers healthy (or no health check is configured
    /// and nothing failed).
    pub ok: bool,
}

impl<'a> Transition<'a> {
    pub fn new(config: &'a Config, from: Option<&'a Version>, to: &'a Version) -> Self {
        Transition { config, from, to }
    }

    /// The same transition the other way: from `to` back to `from`.
    fn reversed(&self) -> Option<Transition<'a>> {
        self.from.map(|from| Transition {
            config: self.config,
            from: Some(self.to),
            to: from,
        })
    }

    /// Where a version's files are: its release directory, or the install
    /// root itself in in-place mode.
    pub fn release_dir(&self, version: &Version) -> PathBuf {
        match self.config.install.mode {
            InstallMode::Symlink => release_dir::release_path(&self.config.install.root, version),
            InstallMode::InPlace => self.config.install.root.clone(),
        }
    }

    /// FERRY_FROM_VERSION, FERRY_TO_VERSION, FERRY_RELEASE_DIR.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "FERRY_FROM_VERSION".into(),
                self.from.map(|v| v.to_string()).unwrap_or_default(),
            ),
            ("FERRY_TO_VERSION".into(), self.to.to_string()),
            (
                "FERRY_RELEASE_DIR".into(),
                self.release_dir(self.to).to_string_lossy().into_owned(),
            ),
        ]
    }

    fn service(&self) -> &service::ServiceConfig {
        &self.config.service
    }

    fn hook(&self, name: &str, line: Option<&String>) -> Result<(), ServiceError> {
        let Some(line) = line else {
            return Ok(());
        };
        let what = format!("{name} hook");
        let finished = ShellCommand {
            what: &what,
            line,
            env: self.env(),
            cwd: Some(&self.release_dir(self.to)),
            timeout: self.service().hook_timeout(),
        }
        .run_checked()?;
        tracing::info!(
            hook = name,
            seconds = finished.duration.as_secs_f64(),
            "hook passed"
        );
        Ok(())
    }

    /// `pre_apply`, run with the new release staged and not yet live.
    pub fn pre_apply(&self) -> Result<(), ServiceError> {
        self.hook("pre_apply", self.service().pre_apply.as_ref())
    }

    /// `pre_rollback`, before the switch back, and `post_rollback`, after
    /// the old release is back in service. `self` is the failed update;
    /// the hooks see the way back: FERRY_FROM_VERSION is the version being
    /// left, FERRY_TO_VERSION and FERRY_RELEASE_DIR the one restored. A
    /// failed first install has nothing to go back to: they do not run.
    pub fn pre_rollback(&self) -> Result<(), ServiceError> {
        match self.reversed() {
            Some(back) => back.hook("pre_rollback", self.service().pre_rollback.as_ref()),
            None => Ok(()),
        }
    }

    pub fn post_rollback(&self) -> Result<(), ServiceError> {
        match self.reversed() {
            Some(back) => back.hook("post_rollback", self.service().post_rollback.as_ref()),
            None => Ok(()),
        }
    }

    fn service_command(&self, what: &str, line: &str) -> Result<(), ServiceError> {
        let finished = ShellCommand {
            what,
            line,
            env: self.env(),
            cwd: Some(&self.release_dir(self.to)),
            timeout: self.service().command_timeout(),
        }
        .run_checked()?;
        tracing::info!(
            command = what,
            seconds = finished.duration.as_secs_f64(),
            "service command done"
        );
        Ok(())
    }

    /// Restart or reload onto `self.to` (restart and reload strategies).
    fn restart_or_reload(&self) -> Result<(), ServiceError> {
        let service = self.service();
        match service.strategy {
            Strategy::Restart => self.service_command(
                "restart_command",
                service.restart_command.as_deref().unwrap_or_default(),
            ),
            Strategy::Reload => match (&service.reload_command, &service.reload_signal) {
                (Some(line), _) => self.service_command("reload_command", line),
                (None, Some(signal)) => self.signal_pid(signal),
                (None, None) => Ok(()),
            },
            Strategy::None | Strategy::BlueGreen => Ok(()),
        }
    }

    fn signal_pid(&self, signal: &str) -> Result<(), ServiceError> {
        let pid_file = self
            .service()
            .pid_file
            .as_ref()
            .ok_or(ServiceError::NoPidFile)?;
        let text = std::fs::read_to_string(pid_file).map_err(|source| {
            ServiceError::PidFileUnreadable {
                path: pid_file.clone(),
                source,
            }
        })?;
        let pid = text
            .trim()
            .parse::<i32>()
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| ServiceError::NoPid {
                path: pid_file.clone(),
            })?;
        let signal = service::signal_named(signal)?;
        rustix::process::kill_process(pid, signal).map_err(|source| ServiceError::Signal {
            pid: pid.as_raw_nonzero().get(),
            path: pid_file.clone(),
            source,
        })
    }

    fn start(&self, version: &Version) -> Result<(), ServiceError> {
        let template = self.service().start_command.as_deref().unwrap_or_default();
        let line = fill_template(template, &self.release_dir(version), &version.to_string());
        self.service_command("start_command", &line)
    }

    fn stop(&self, version: &Version) -> Result<(), ServiceError> {
        let template = self.service().stop_command.as_deref().unwrap_or_default();
        let line = fill_template(template, &self.release_dir(version), &version.to_string());
        self.service_command("stop_command", &line)
    }

    /// The health gate on `version`, if `[health]` is configured.
    fn health(&self, version: &Version) -> Result<Option<health::Healthy>, ServiceError> {
        match &self.config.health {
            Some(health) => Ok(Some(health.wait_healthy(version, &self.env())?)),
            None => Ok(None),
        }
    }

    /// After the switch: the strategy, the health gate, `post_apply`.
    pub fn go_live(&self) -> Result<(), GoLiveFailure> {
        self.go_live_then(
            Start::Fresh,
            "post_apply",
            self.service().post_apply.as_ref(),
        )
    }

    /// An operator's rollback (`self` goes from the release being left to
    /// the one restored): `pre_rollback` before its switch.
    pub fn operator_pre_rollback(&self) -> Result<(), ServiceError> {
        self.hook("pre_rollback", self.service().pre_rollback.as_ref())
    }

    /// An operator's rollback after its switch: the restored release into
    /// service and through the gate, then `post_rollback`.
    pub fn operator_go_live(&self) -> Result<(), GoLiveFailure> {
        self.go_live_then(
            Start::Fresh,
            "post_rollback",
            self.service().post_rollback.as_ref(),
        )
    }

    /// [`Self::go_live`] (for an apply) or [`Self::operator_go_live`] (for
    /// a rollback) once more, after a crash cut it short somewhere after
    /// the switch. Restart, reload and the hooks simply run again; a
    /// blue-green candidate that already answers as itself is not started
    /// a second time.
    pub fn resume_go_live(&self, rollback: bool) -> Result<(), GoLiveFailure> {
        let service = self.service();
        let (hook, line) = match rollback {
            false => ("post_apply", service.post_apply.as_ref()),
            true => ("post_rollback", service.post_rollback.as_ref()),
        };
        self.go_live_then(Start::AfterCrash, hook, line)
    }

    fn go_live_then(
        &self,
        start: Start,
        hook: &str,
        hook_line: Option<&String>,
    ) -> Result<(), GoLiveFailure> {
        let strategy = self.service().strategy;
        let failed = |message: &dyn std::fmt::Display, old_stopped: bool| GoLiveFailure {
            message: message.to_string(),
            old_stopped,
        };
        if strategy == Strategy::BlueGreen {
            // The old release keeps serving until the candidate is healthy.
            if start == Start::AfterCrash && self.serves(self.to) {
                tracing::info!(version = %self.to, "the candidate already answers as itself: not started again");
            } else {
                if start == Start::AfterCrash {
                    // The crash may have come after the candidate started,
                    // while it was not (or never became) healthy: it runs
                    // but does not answer as itself. Starting it again would
                    // run it twice, the first one untracked, so it is
                    // stopped first (the old instance still serves: it is
                    // stopped only after the candidate passes its gate).
                    if let Err(e) = self.stop(self.to) {
                        tracing::info!(version = %self.to, error = %e, "no candidate to stop before starting it again");
                    }
                }
                self.start(self.to)
                    .map_err(|e| failed(&format!("the new release did not start: {e}"), false))?;
                let healthy = self.health(self.to).map_err(|e| failed(&e, false))?;
                log_healthy(self.to, healthy);
            }
            if let Some(from) = self.from {
                self.retire(from).map_err(|e| failed(&e, false))?;
            }
        } else {
            let touched = strategy != Strategy::None;
            self.restart_or_reload().map_err(|e| {
                failed(
                    &format!("the service did not {}: {e}", strategy_name(strategy)),
                    touched,
                )
            })?;
            let healthy = self.health(self.to).map_err(|e| failed(&e, touched))?;
            log_healthy(self.to, healthy);
        }
        self.hook(hook, hook_line)
            .map_err(|e| failed(&e, strategy != Strategy::None))
    }

    /// Blue-green, once the candidate passed its gate: stops the old
    /// instance. A failed (or timed-out) `stop_command` is not taken at its
    /// word: if the old instance no longer answers as itself it is gone
    /// (or was already, after a crash) and the candidate serves alone;
    /// only one that still answers fails the update.
    fn retire(&self, old: &Version) -> Result<(), ServiceError> {
        let Err(e) = self.stop(old) else {
            return Ok(());
        };
        if self.serves(old) {
            return Err(ServiceError::OldDidNotStop {
                new: self.to.clone(),
                old: old.clone(),
                cause: Box::new(e),
            });
        }
        tracing::warn!(%old, error = %e, "stop_command failed, but the old instance no longer answers");
        Ok(())
    }

    /// Whether `version`'s instance answers the health check as itself
    /// right now (blue-green: two instances share the port). `false` when
    /// `[health]` cannot tell releases apart.
    fn serves(&self, version: &Version) -> bool {
        let Some(health) = &self.config.health else {
            return false;
        };
        let asked = Transition {
            config: self.config,
            from: self.from,
            to: version,
        };
        health.answers_as(version, &asked.env(), PROBES_TO_FIND_AN_INSTANCE)
    }

    /// After a crash on the way back from a blue-green update: whether the
    /// release being restored still serves. Blue-green stops the old
    /// instance only once the candidate passed its gate, so a crash often
    /// leaves it running; starting it again would run it twice. It counts
    /// as serving only when the health check answers as its version; any
    /// doubt starts it, as for a stopped one.
    pub fn restored_still_serving(&self) -> bool {
        match self.reversed() {
            Some(back) if self.service().strategy == Strategy::BlueGreen => back.serves(back.to),
            _ => false,
        }
    }

    /// Blue-green, on the way back: stops the candidate. A `stop_command`
    /// that fails for a candidate that no longer answers (one that crashed
    /// on start) is only worth a note; `Err` when it may still run.
    fn stop_candidate(&self) -> Result<Option<String>, ServiceError> {
        match self.stop(self.to) {
            Ok(()) => Ok(None),
            Err(e) if !self.serves(self.to) => {
                Ok(Some(format!("{} was not running any more ({e})", self.to)))
            }
            Err(e) => Err(ServiceError::CandidateNotStopped {
                version: self.to.clone(),
                cause: Box::new(e),
            }),
        }
    }

    /// After the switch back to `self.from`: brings the old release back
    /// into service and checks it. Never fails: what went wrong is in the
    /// summary (the node runs the old files either way).
    pub fn restore(&self, failure: &GoLiveFailure) -> Restored {
        let blue_green = self.service().strategy == Strategy::BlueGreen;
        let Some(back) = self.reversed() else {
            // A first install: nothing ran before it. Stop the candidate if
            // ferry started it.
            if blue_green {
                if let Err(e) = self.stop_candidate() {
                    return Restored {
                        summary: e.to_string(),
                        ok: false,
                    };
                }
            }
            return Restored {
                summary: "nothing was installed before".into(),
                ok: true,
            };
        };
        let old = back.to;
        let mut notes = Vec::new();
        let mut candidate_runs = false;
        let brought_back = match self.service().strategy {
            Strategy::None => Ok(()),
            Strategy::Restart | Strategy::Reload => back.restart_or_reload(),
            // The old instance serves (it never stopped, or it is started
            // and healthy again): only then does the candidate go.
            Strategy::BlueGreen => {
                let old_serves = match failure.old_stopped {
                    false => Ok(()),
                    true => back.start(old).and_then(|()| back.health(old).map(|_| ())),
                };
                if old_serves.is_ok() {
                    match self.stop_candidate() {
                        Ok(note) => notes.extend(note),
                        Err(e) => {
                            candidate_runs = true;
                            notes.push(e.to_string());
                        }
                    }
                }
                old_serves
            }
        };
        if let Err(e) = brought_back {
            return Restored {
                summary: format!("{old} could not be brought back into service: {e}"),
                ok: false,
            };
        }
        let (mut summary, ok) = match back.health(old) {
            Ok(Some(_)) => (format!("{old} is healthy again"), true),
            Ok(None) => (
                format!("{old} is back (no [health] check configured)"),
                true,
            ),
            Err(e) => (format!("{old} is back but NOT healthy: {e}"), false),
        };
        for note in &notes {
            summary.push_str(&format!("; {note}"));
        }
        Restored {
            summary,
            ok: ok && !candidate_runs,
        }
    }
}

/// Probes [`Transition::serves`] makes before it concludes that a release
/// has no instance on the port. Two blue-green instances share the port
/// and the kernel hands each new connection to either one at random, so n
/// probes all reach the other instance once in 2^n: with 5, recovery after
/// a crash right after `start_command` missed the running candidate about
/// once in 32 crashes and started a second one, untracked. The probes stop
/// at the first answer as the release; a refused connection costs nothing.
const PROBES_TO_FIND_AN_INSTANCE: u32 = 32;

/// Whether [`Transition::go_live`] runs for the first time or once more
/// after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Fresh,
    AfterCrash,
}

fn log_healthy(version: &Version, healthy: Option<health::Healthy>) {
    if let Some(h) = healthy {
        tracing::info!(%version, probes = h.probes, seconds = h.waited.as_secs_f64(), "healthy");
    }
}

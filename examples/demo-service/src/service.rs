//! What the service answers: its version, and whether it is healthy.
//!
//! The settings can be swapped while connections are being served: a
//! reload (SIGHUP) re-reads the release's demo.toml, which is how the
//! `reload` strategy of a ferry node is tested with a real process.

use std::sync::{Arc, RwLock};

use crate::http::{Request, Response};
use crate::settings::ReleaseSettings;

/// The running release: its settings and how the binary was built.
#[derive(Debug)]
pub struct Service {
    /// Replaced whole by a reload; every answer reads one snapshot, so a
    /// response never mixes two releases' version and health.
    settings: RwLock<Arc<ReleaseSettings>>,
    built_unhealthy: bool,
}

impl Service {
    /// `built_unhealthy`: the binary was built with
    /// `DEMO_SERVICE_UNHEALTHY=1` — a release that fails its health check
    /// whatever its demo.toml says, as a broken build would.
    pub fn new(settings: ReleaseSettings, built_unhealthy: bool) -> Self {
        Service {
            settings: RwLock::new(Arc::new(settings)),
            built_unhealthy,
        }
    }

    fn settings(&self) -> Arc<ReleaseSettings> {
        // A panic elsewhere cannot leave half-written settings behind: the
        // lock only ever guards the swap of a whole `Arc`.
        let settings = self.settings.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&settings)
    }

    /// Serves `settings` from now on (a reload).
    pub fn reload(&self, settings: ReleaseSettings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
    }

    pub fn version(&self) -> String {
        self.settings().version.clone()
    }

    /// "demo-service[PID] VERSION", the start of every log line.
    pub fn tag(&self) -> String {
        format!("demo-service[{}] {}", std::process::id(), self.version())
    }

    /// `Err(why)` while the health check must fail.
    pub fn health(&self) -> Result<(), String> {
        Self::health_of(&self.settings(), self.built_unhealthy)
    }

    fn health_of(settings: &ReleaseSettings, built_unhealthy: bool) -> Result<(), String> {
        if built_unhealthy {
            return Err("built with DEMO_SERVICE_UNHEALTHY=1".into());
        }
        if !settings.healthy {
            return Err("healthy = false in demo.toml".into());
        }
        if let Some(marker) = &settings.migrate_marker {
            if !marker.exists() {
                return Err(format!(
                    "migration marker {} does not exist",
                    marker.display()
                ));
            }
        }
        Ok(())
    }

    pub fn respond(&self, request: &Request) -> Response {
        if request.method != "GET" && request.method != "HEAD" {
            return Response::new(
                405,
                "text/plain",
                format!("method {} not allowed: only GET and HEAD\n", request.method),
            );
        }
        let path = request.path.split('?').next().unwrap_or_default();
        let settings = self.settings();
        let version = &settings.version;
        // The version was checked to need no JSON escaping (settings.rs).
        match path {
            "/health" => match Self::health_of(&settings, self.built_unhealthy) {
                Ok(()) => Response::new(
                    200,
                    "application/json",
                    format!(r#"{{"status":"ok","version":"{version}"}}"#),
                ),
                Err(_) => Response::new(
                    503,
                    "application/json",
                    format!(r#"{{"status":"failing","version":"{version}"}}"#),
                ),
            },
            "/version" => Response::new(200, "text/plain", format!("{version}\n")),
            _ => Response::new(
                404,
                "text/plain",
                format!("no {path} here: try /health or /version\n"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn settings(healthy: bool, marker: Option<PathBuf>) -> ReleaseSettings {
        ReleaseSettings {
            version: "2.0.0".into(),
            healthy,
            start_delay_ms: None,
            migrate_marker: marker,
        }
    }

    fn get(service: &Service, path: &str) -> Response {
        service.respond(&Request {
            method: "GET".into(),
            path: path.into(),
            close: false,
        })
    }

    #[test]
    fn healthy_release_answers_ok_and_its_version() {
        let service = Service::new(settings(true, None), false);
        assert_eq!(
            get(&service, "/health"),
            Response::new(
                200,
                "application/json",
                r#"{"status":"ok","version":"2.0.0"}"#
            )
        );
        assert_eq!(get(&service, "/version").body, "2.0.0\n");
        assert_eq!(get(&service, "/nope").status, 404);
    }

    #[test]
    fn each_cause_of_failure_fails_the_health_check() {
        for service in [
            Service::new(settings(false, None), false),
            Service::new(settings(true, None), true),
            Service::new(
                settings(true, Some("/nonexistent/ferry-demo-marker".into())),
                false,
            ),
        ] {
            let response = get(&service, "/health");
            assert_eq!(response.status, 503, "{service:?}");
            assert_eq!(response.body, r#"{"status":"failing","version":"2.0.0"}"#);
            // Failing health does not stop it serving.
            assert_eq!(get(&service, "/version").status, 200);
        }
    }

    #[test]
    fn a_reload_answers_with_the_new_settings() {
        let service = Service::new(settings(true, None), false);
        let mut next = settings(false, None);
        next.version = "2.1.0".into();
        service.reload(next);
        assert_eq!(get(&service, "/version").body, "2.1.0\n");
        assert_eq!(
            get(&service, "/health"),
            Response::new(
                503,
                "application/json",
                r#"{"status":"failing","version":"2.1.0"}"#
            )
        );
        assert!(service.tag().ends_with(" 2.1.0"), "{}", service.tag());
    }

    #[test]
    fn the_marker_makes_it_healthy_once_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("migrated");
        let service = Service::new(settings(true, Some(marker.clone())), false);
        assert!(service.health().is_err());
        std::fs::write(&marker, "").unwrap();
        assert_eq!(service.health(), Ok(()));
    }
}

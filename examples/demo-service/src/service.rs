//! What the service answers: its version, and whether it is healthy.

use crate::http::{Request, Response};
use crate::settings::ReleaseSettings;

/// The running release: its settings and how the binary was built.
#[derive(Debug)]
pub struct Service {
    settings: ReleaseSettings,
    built_unhealthy: bool,
    tag: String,
}

impl Service {
    /// `built_unhealthy`: the binary was built with
    /// `DEMO_SERVICE_UNHEALTHY=1` — a release that fails its health check
    /// whatever its demo.toml says, as a broken build would.
    pub fn new(settings: ReleaseSettings, built_unhealthy: bool) -> Self {
        let tag = format!("demo-service[{}] {}", std::process::id(), settings.version);
        Service {
            settings,
            built_unhealthy,
            tag,
        }
    }

    pub fn version(&self) -> &str {
        &self.settings.version
    }

    /// "demo-service[PID] VERSION", the start of every log line.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `Err(why)` while the health check must fail.
    pub fn health(&self) -> Result<(), String> {
        if self.built_unhealthy {
            return Err("built with DEMO_SERVICE_UNHEALTHY=1".into());
        }
        if !self.settings.healthy {
            return Err("healthy = false in demo.toml".into());
        }
        if let Some(marker) = &self.settings.migrate_marker {
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
        // The version was checked to need no JSON escaping (settings.rs).
        match path {
            "/health" => match self.health() {
                Ok(()) => Response::new(
                    200,
                    "application/json",
                    format!(r#"{{"status":"ok","version":"{}"}}"#, self.version()),
                ),
                Err(_) => Response::new(
                    503,
                    "application/json",
                    format!(r#"{{"status":"failing","version":"{}"}}"#, self.version()),
                ),
            },
            "/version" => Response::new(200, "text/plain", format!("{}\n", self.version())),
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
    fn the_marker_makes_it_healthy_once_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("migrated");
        let service = Service::new(settings(true, Some(marker.clone())), false);
        assert!(service.health().is_err());
        std::fs::write(&marker, "").unwrap();
        assert_eq!(service.health(), Ok(()));
    }
}

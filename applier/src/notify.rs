//! Webhook notifications: `[[notify]]` receivers told when an update is
//! available, applied, failed or rolled back.
//!
//! A fleet's operators learn about a node through their chat or paging
//! tool, not by reading `ferry history` on each machine, so ferry POSTs one
//! small JSON document per event to each configured receiver, in the shape
//! that receiver understands: `generic` (ferry's own fields), `slack` (an
//! incoming webhook's `{"text"}`) or `pagerduty` (an Events v2 `trigger` or
//! `resolve`, deduplicated per node so that a later success resolves the
//! incident a failure opened).
//!
//! A notification is a courtesy, never a gate: delivery runs after the
//! operation is recorded, is bounded by each receiver's `timeout_seconds`,
//! `retries` and `initial_backoff_ms`, and its failure is only a warning on
//! stderr. An update never fails, and never waits longer than those bounds,
//! because a webhook is down.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{ConfigMistake, NodeError};
use crate::retry::{self, RetryPolicy, Verdict};

/// The events a receiver may subscribe to (`events = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEventKind {
    /// `ferry check` found a newer release (sent once per version).
    UpdateAvailable,
    /// A release was installed (or repaired back to its signed state).
    Applied,
    /// An operation failed, was refused, or a crash interrupted it.
    Failed,
    /// The node is back on an older release: an apply that failed its
    /// checks, or a `ferry rollback`.
    RolledBack,
}

impl NotifyEventKind {
    pub const ALL: [NotifyEventKind; 4] = [
        NotifyEventKind::UpdateAvailable,
        NotifyEventKind::Applied,
        NotifyEventKind::Failed,
        NotifyEventKind::RolledBack,
    ];

    /// The spelling of the config key and of the payloads' `event` field.
    pub fn name(self) -> &'static str {
        match self {
            NotifyEventKind::UpdateAvailable => "update_available",
            NotifyEventKind::Applied => "applied",
            NotifyEventKind::Failed => "failed",
            NotifyEventKind::RolledBack => "rolled_back",
        }
    }
}

/// The shape of the JSON posted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    #[default]
    Generic,
    Slack,
    Pagerduty,
}

/// One `[[notify]]` receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `http://…` or `https://…`, POSTed to as is.
    pub url: String,
    #[serde(default)]
    pub format: NotifyFormat,
    /// The events sent to this receiver; all of them when not set.
    #[serde(default = "all_events")]
    pub events: Vec<NotifyEventKind>,
    /// PagerDuty Events v2 integration key (or `routing_key_file`).
    #[serde(default)]
    pub routing_key: Option<String>,
    /// A file holding the routing key, read when sending, so the key can
    /// live in a file only root reads rather than in the config.
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    /// https: PEM CA certificates to trust instead of the system store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The node's name in payloads; the kernel's hostname when not set.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Bounds connecting and the whole of one request.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Retries after a connection error, a timeout, HTTP 5xx or 429.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Pause before the first retry, doubled for each further one.
    #[serde(default = "default_backoff")]
    pub initial_backoff_ms: u64,
}

fn all_events() -> Vec<NotifyEventKind> {
    NotifyEventKind::ALL.to_vec()
}

fn default_timeout() -> u64 {
    10
}

fn default_retries() -> u32 {
    3
}

fn default_backoff() -> u64 {
    1000
}

/// The longest pause between two attempts, however many retries are set.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Checks one `[[notify]]` entry (`index` from 0); the message names the
/// entry and the key at fault.
pub fn check_config(index: usize, config: &NotifyConfig) -> Result<(), ConfigMistake> {
    let bad = |message: String| Err(ConfigMistake::new(message));
    let at = format!("notify[{index}]");
    let url = &config.url;
    let https = url.starts_with("https://");
    if !(https || url.starts_with("http://")) || url.split("://").nth(1).is_none_or(str::is_empty) {
        return bad(format!(
            "{at}.url {url:?} must be an http:// or https:// URL"
        ));
    }
    if config.ca_file.is_some() && !https {
        return bad(format!(
            "{at}.ca_file is set but {at}.url {url:?} is not https://: remove ca_file or use https"
        ));
    }
    if config.events.is_empty() {
        return bad(format!(
            "{at}.events is empty, so nothing would ever be sent: list some of {}, or remove the key for all of them",
            event_names()
        ));
    }
    if config.timeout_seconds == 0 {
        return bad(format!("{at}.timeout_seconds must be at least 1"));
    }
    if config
        .node_name
        .as_deref()
        .is_some_and(|n| n.trim().is_empty())
    {
        return bad(format!(
            "{at}.node_name is empty: remove it to use the hostname"
        ));
    }
    match (config.format, &config.routing_key, &config.routing_key_file) {
        (NotifyFormat::Pagerduty, None, None) => {
            return bad(format!(
                "{at} has format = \"pagerduty\" but no routing_key: set routing_key (the Events v2 integration key) or routing_key_file"
            ))
        }
        (NotifyFormat::Pagerduty, Some(_), Some(_)) => {
            return bad(format!(
                "{at}: set either routing_key or routing_key_file, not both"
            ))
        }
        (NotifyFormat::Pagerduty, Some(key), None) if key.trim().is_empty() => {
            return bad(format!("{at}.routing_key is empty"))
        }
        (NotifyFormat::Pagerduty, None, Some(file)) if !file.is_absolute() => {
            return bad(format!(
                "{at}.routing_key_file {} must be an absolute path",
                file.display()
            ))
        }
        (NotifyFormat::Generic | NotifyFormat::Slack, Some(_), _)
        | (NotifyFormat::Generic | NotifyFormat::Slack, _, Some(_)) => {
            return bad(format!(
                "{at}: routing_key and routing_key_file are for format = \"pagerduty\" only"
            ))
        }
        _ => {}
    }
    Ok(())
}

fn event_names() -> String {
    NotifyEventKind::ALL
        .iter()
        .map(|k| format!("\"{}\"", k.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What happened, in the terms every payload format is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyEvent {
    pub kind: NotifyEventKind,
    /// `apply`, `rollback` or `repair`; `None` for `update_available`.
    pub operation: Option<String>,
    pub from_version: Option<Version>,
    pub to_version: Option<Version>,
    /// The recorded outcome (`success`, `failed`, `rolled-back`,
    /// `interrupted`), or `available` for `update_available`.
    pub outcome: String,
    pub message: String,
    pub timestamp: Timestamp,
}

/// Sends `event` to every receiver subscribed to it, all at once (a
/// thread each), each within its own timeout and retry bounds: a slow or
/// silent receiver delays the node by its own bounds, not by the sum of
/// everyone's. Never fails: a receiver that cannot be reached is a warning
/// on stderr.
pub fn send_all(configs: &[NotifyConfig], event: &NotifyEvent) {
    let receivers: Vec<&NotifyConfig> = configs
        .iter()
        .filter(|c| c.events.contains(&event.kind))
        .collect();
    if receivers.is_empty() {
        return;
    }
    let hostname = std::sync::OnceLock::new();
    std::thread::scope(|scope| {
        for config in receivers {
            let hostname = &hostname;
            scope.spawn(move || {
                let node = match &config.node_name {
                    Some(name) => name.clone(),
                    None => hostname.get_or_init(node_hostname).clone(),
                };
                if let Err(e) = send(config, event, &node) {
                    tracing::warn!(
                        "notification {} to {} not delivered: {e}",
                        event.kind.name(),
                        config.url
                    );
                }
            });
        }
    });
}

/// Why a notification was not delivered (a warning, never a failure).
#[derive(Debug, thiserror::Error)]
enum NotDelivered {
    #[error("no routing_key is configured")]
    NoRoutingKey,
    #[error("cannot read routing_key_file {}: {source}", path.display())]
    RoutingKeyUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("routing_key_file {} is empty", path.display())]
    RoutingKeyEmpty { path: PathBuf },
    /// https could not be set up (`ca_file`).
    #[error("{0}")]
    Tls(NodeError),
    /// The receiver failed every attempt, or refused one for good: the
    /// last answer (or connection error), and how many attempts were made.
    #[error("{} (after {attempts} attempt{})", manifests::untrusted_text::escape(last), if *attempts == 1 { "" } else { "s" })]
    Refused { last: String, attempts: u32 },
}

/// Builds and delivers one notification; the error says why it was not.
fn send(config: &NotifyConfig, event: &NotifyEvent, node: &str) -> Result<(), NotDelivered> {
    let body = match config.format {
        NotifyFormat::Generic => generic_payload(event, node),
        NotifyFormat::Slack => slack_payload(event, node),
        NotifyFormat::Pagerduty => pagerduty_payload(event, node, &routing_key(config)?),
    };
    deliver(
        config,
        &serde_json::to_vec(&body).expect("payloads serialise"),
    )
}

fn routing_key(config: &NotifyConfig) -> Result<String, NotDelivered> {
    if let Some(key) = &config.routing_key {
        return Ok(key.clone());
    }
    let path = config
        .routing_key_file
        .as_deref()
        .ok_or(NotDelivered::NoRoutingKey)?;
    let key =
        std::fs::read_to_string(path).map_err(|source| NotDelivered::RoutingKeyUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
    let key = key.trim();
    if key.is_empty() {
        return Err(NotDelivered::RoutingKeyEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(key.to_string())
}

/// The kernel's hostname: what operators call the machine.
fn node_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|h| h.trim().to_string())
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-node".to_string())
}

fn show(v: &Option<Version>) -> String {
    v.as_ref().map_or("nothing".to_string(), |v| v.to_string())
}

/// ferry's own shape: every field, flat.
pub fn generic_payload(event: &NotifyEvent, node: &str) -> Value {
    json!({
        "event": event.kind.name(),
        "node": node,
        "operation": event.operation,
        "from_version": event.from_version.as_ref().map(Version::to_string),
        "to_version": event.to_version.as_ref().map(Version::to_string),
        "outcome": event.outcome,
        "message": event.message,
        "timestamp": event.timestamp.to_string(),
        "ferry_version": env!("CARGO_PKG_VERSION"),
    })
}

/// One line a person reads in a channel, e.g.
/// "ferry on web-1: applied 1.0.0 -> 1.1.0 (updated to 1.1.0)".
pub fn summary(event: &NotifyEvent, node: &str) -> String {
    let versions = format!(
        "{} -> {}",
        show(&event.from_version),
        show(&event.to_version)
    );
    let what = match event.kind {
        NotifyEventKind::UpdateAvailable => format!("update available {versions}"),
        NotifyEventKind::Applied => format!("applied {versions}"),
        NotifyEventKind::Failed => format!(
            "{} {versions} failed",
            event.operation.as_deref().unwrap_or("operation")
        ),
        NotifyEventKind::RolledBack => match event.operation.as_deref() {
            Some("rollback") => format!("rolled back {versions}"),
            _ => format!("{versions} rolled back"),
        },
    };
    if event.message.is_empty() {
        format!("ferry on {node}: {what}")
    } else {
        format!("ferry on {node}: {what} ({})", event.message)
    }
}

/// A Slack incoming webhook's message.
pub fn slack_payload(event: &NotifyEvent, node: &str) -> Value {
    let icon = match event.kind {
        NotifyEventKind::UpdateAvailable => ":package:",
        NotifyEventKind::Applied => ":white_check_mark:",
        NotifyEventKind::Failed => ":x:",
        NotifyEventKind::RolledBack => ":rewind:",
    };
    json!({ "text": format!("{icon} {}", summary(event, node)) })
}

/// A PagerDuty Events v2 event. One `dedup_key` per node: a failure opens
/// (or adds to) the node's incident, the next successful apply resolves it.
pub fn pagerduty_payload(event: &NotifyEvent, node: &str, routing_key: &str) -> Value {
    let (action, severity) = match event.kind {
        NotifyEventKind::Applied => ("resolve", "info"),
        NotifyEventKind::UpdateAvailable => ("trigger", "info"),
        NotifyEventKind::Failed | NotifyEventKind::RolledBack => ("trigger", "error"),
    };
    json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": format!("ferry/{node}"),
        "payload": {
            "summary": summary(event, node),
            "source": node,
            "severity": severity,
            "timestamp": event.timestamp.to_string(),
            "component": "ferry",
            "custom_details": {
                "event": event.kind.name(),
                "operation": event.operation,
                "from_version": event.from_version.as_ref().map(Version::to_string),
                "to_version": event.to_version.as_ref().map(Version::to_string),
                "outcome": event.outcome,
                "message": event.message,
                "ferry_version": env!("CARGO_PKG_VERSION"),
            },
        },
    })
}

/// POSTs `body`, retrying what a retry may fix: connection errors,
/// timeouts, 5xx and 429. Any 2xx is delivered; another status is final.
fn deliver(config: &NotifyConfig, body: &[u8]) -> Result<(), NotDelivered> {
    let timeout = Some(Duration::from_secs(config.timeout_seconds));
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(timeout)
        .timeout_global(timeout)
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")));
    if config.url.starts_with("https://") {
        let tls = crate::transport::tls_config_for(config.ca_file.as_deref(), "notify.ca_file")
            .map_err(NotDelivered::Tls)?;
        builder = builder.tls_config(tls);
    }
    let agent = builder.build().new_agent();
    let policy = RetryPolicy {
        retries: config.retries,
        base_delay: Duration::from_millis(config.initial_backoff_ms),
        max_delay: MAX_BACKOFF,
        quiet: false,
    };
    let what = format!("notification to {}", config.url);
    retry::run(&policy, &what, |_| {
        let response = agent
            .post(&config.url)
            .content_type("application/json")
            .send(body);
        match response {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                let status = r.status();
                let message = format!("the receiver answered HTTP {status}");
                let retryable = status.is_server_error() || status.as_u16() == 429;
                match retry::retry_after_of(r.headers()) {
                    _ if !retryable => Err(Verdict::Fail(format!(
                        "{message}; not retried (check the url and key of this [[notify]] entry)"
                    ))),
                    // Asked to wait longer than ferry ever waits: another
                    // attempt now would only add to the receiver's load.
                    Some(asked) if asked > retry::LONGEST_ASKED_PAUSE => Err(Verdict::Fail(format!(
                        "{message} and asked to wait {} s (Retry-After), longer than the {} s a node waits; not retried",
                        asked.as_secs(),
                        retry::LONGEST_ASKED_PAUSE.as_secs()
                    ))),
                    Some(asked) => Err(Verdict::RetryAfter(message, asked)),
                    None => Err(Verdict::Retry(message)),
                }
            }
            Err(
                e @ (ureq::Error::Io(_)
                | ureq::Error::Timeout(_)
                | ureq::Error::HostNotFound
                | ureq::Error::ConnectionFailed
                | ureq::Error::Protocol(_)
                | ureq::Error::BodyStalled),
            ) => Err(Verdict::Retry(e.to_string())),
            Err(e) => Err(Verdict::Fail(e.to_string())),
        }
    })
    .map_err(|gave_up| NotDelivered::Refused {
        last: gave_up.error,
        attempts: gave_up.attempts,
    })
}

/// `state_dir/notified.json`: the last version `update_available` was sent
/// for, so an hourly `ferry check` announces each release once.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Notified {
    #[serde(default)]
    pub update_available: Option<Version>,
}

fn notified_path(state_dir: &Path) -> PathBuf {
    state_dir.join("notified.json")
}

impl Notified {
    pub fn load(state_dir: &Path) -> crate::error::Result<Notified> {
        crate::durable::load_json(
            &notified_path(state_dir),
            "remove it: at worst the next `ferry check` announces the latest release again",
        )
    }

    pub fn save(&self, state_dir: &Path) -> crate::error::Result<()> {
        crate::durable::save_json(&notified_path(state_dir), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<Version> {
        Some(s.parse().unwrap())
    }

    fn event(kind: NotifyEventKind, outcome: &str) -> NotifyEvent {
        NotifyEvent {
            kind,
            operation: Some("apply".into()),
            from_version: v("1.0.0"),
            to_version: v("1.1.0"),
            outcome: outcome.into(),
            message: "updated to 1.1.0".into(),
            timestamp: "2024-05-01T12:00:00Z".parse().unwrap(),
        }
    }

    fn receiver(toml_text: &str) -> anyhow::Result<NotifyConfig> {
        let config: NotifyConfig = toml::from_str(toml_text)?;
        check_config(0, &config)?;
        Ok(config)
    }

    #[test]
    fn generic_payload_has_every_field() {
        let body = generic_payload(&event(NotifyEventKind::Applied, "success"), "web-1");
        assert_eq!(body["event"], "applied");
        assert_eq!(body["node"], "web-1");
        assert_eq!(body["operation"], "apply");
        assert_eq!(body["from_version"], "1.0.0");
        assert_eq!(body["to_version"], "1.1.0");
        assert_eq!(body["outcome"], "success");
        assert_eq!(body["message"], "updated to 1.1.0");
        assert_eq!(body["timestamp"], "2024-05-01T12:00:00Z");
        assert_eq!(body["ferry_version"], env!("CARGO_PKG_VERSION"));
        let mut first = event(NotifyEventKind::Applied, "success");
        first.from_version = None;
        assert!(generic_payload(&first, "web-1")["from_version"].is_null());
    }

    #[test]
    fn slack_payload_is_one_readable_line() {
        let body = slack_payload(&event(NotifyEventKind::Failed, "failed"), "web-1");
        let text = body["text"].as_str().unwrap();
        assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.contains("ferry on web-1: apply 1.0.0 -> 1.1.0 failed (updated to 1.1.0)"),
            "{text}"
        );
        let text = slack_payload(&event(NotifyEventKind::Applied, "success"), "db")["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            text.contains("ferry on db: applied 1.0.0 -> 1.1.0"),
            "{text}"
        );
    }

    #[test]
    fn pagerduty_triggers_on_trouble_and_resolves_on_success() {
        let failed = pagerduty_payload(&event(NotifyEventKind::Failed, "failed"), "web-1", "K");
        assert_eq!(failed["routing_key"], "K");
        assert_eq!(failed["event_action"], "trigger");
        assert_eq!(failed["dedup_key"], "ferry/web-1");
        let payload = &failed["payload"];
        assert_eq!(payload["severity"], "error");
        assert_eq!(payload["source"], "web-1");
        assert_eq!(payload["component"], "ferry");
        assert_eq!(payload["timestamp"], "2024-05-01T12:00:00Z");
        assert!(payload["summary"].as_str().unwrap().contains("failed"));
        assert_eq!(payload["custom_details"]["to_version"], "1.1.0");
        assert_eq!(payload["custom_details"]["event"], "failed");

        let rolled = pagerduty_payload(
            &event(NotifyEventKind::RolledBack, "rolled-back"),
            "web-1",
            "K",
        );
        assert_eq!(
            (
                rolled["event_action"].as_str(),
                rolled["payload"]["severity"].as_str()
            ),
            (Some("trigger"), Some("error"))
        );
        let available = pagerduty_payload(
            &event(NotifyEventKind::UpdateAvailable, "available"),
            "web-1",
            "K",
        );
        assert_eq!(
            (
                available["event_action"].as_str(),
                available["payload"]["severity"].as_str()
            ),
            (Some("trigger"), Some("info"))
        );
        let applied = pagerduty_payload(&event(NotifyEventKind::Applied, "success"), "web-1", "K");
        assert_eq!(applied["event_action"], "resolve");
        assert_eq!(applied["dedup_key"], failed["dedup_key"]);
    }

    #[test]
    fn defaults_subscribe_to_everything_with_bounded_retries() {
        let c = receiver("url = \"https://hooks.example.com/x\"").unwrap();
        assert_eq!(c.format, NotifyFormat::Generic);
        assert_eq!(c.events, NotifyEventKind::ALL.to_vec());
        assert_eq!(
            (c.timeout_seconds, c.retries, c.initial_backoff_ms),
            (10, 3, 1000)
        );
        let c = receiver(
            "url = \"http://127.0.0.1:9/x\"\nformat = \"slack\"\nevents = [\"failed\", \"rolled_back\"]",
        )
        .unwrap();
        assert_eq!(c.format, NotifyFormat::Slack);
        assert_eq!(
            c.events,
            [NotifyEventKind::Failed, NotifyEventKind::RolledBack]
        );
    }

    #[test]
    fn mistakes_are_refused_with_the_key_named() {
        for url in ["ftp://example.com/", "hooks.example.com", "https://"] {
            let err = receiver(&format!("url = {url:?}")).unwrap_err().to_string();
            assert!(err.contains("notify[0].url"), "{url}: {err}");
        }
        let err = receiver("url = \"https://x.example\"\nevents = [\"deployed\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("deployed"), "{err}");
        let err = receiver("url = \"https://x.example\"\nevents = []")
            .unwrap_err()
            .to_string();
        assert!(err.contains("events is empty"), "{err}");
        let err = receiver("url = \"https://x.example\"\nformat = \"teams\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("teams"), "{err}");
        let err = receiver("url = \"https://x.example\"\nformat = \"pagerduty\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("routing_key"), "{err}");
        let err = receiver("url = \"https://x.example\"\nformat = \"pagerduty\"\nrouting_key = \"k\"\nrouting_key_file = \"/etc/k\"").unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
        let err = receiver("url = \"https://x.example\"\nrouting_key = \"k\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pagerduty\" only"), "{err}");
        let err = receiver("url = \"http://x.example\"\nca_file = \"/etc/ca.pem\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ca_file"), "{err}");
        let err = receiver("url = \"https://x.example\"\ntimeout_seconds = 0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeout_seconds"), "{err}");
        let err = receiver("url = \"https://x.example\"\nretry = 2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retry"), "{err}");
        assert!(receiver(
            "url = \"https://events.pagerduty.com/v2/enqueue\"\nformat = \"pagerduty\"\nrouting_key_file = \"/etc/ferry/pd.key\""
        )
        .is_ok());
    }

    #[test]
    fn a_routing_key_file_is_read_and_trimmed_when_sending() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pd.key");
        std::fs::write(&file, "R0UT1NG\n").unwrap();
        let mut c = receiver(&format!(
            "url = \"https://x.example\"\nformat = \"pagerduty\"\nrouting_key_file = {:?}",
            file.to_str().unwrap()
        ))
        .unwrap();
        assert_eq!(routing_key(&c).unwrap(), "R0UT1NG");
        c.routing_key_file = Some(dir.path().join("missing"));
        assert!(routing_key(&c).unwrap_err().to_string().contains("missing"));
    }
}

//! The promise: a node tells its operators what happened — in the shape of
//! their tool (generic JSON, Slack, PagerDuty Events v2) and in a Prometheus
//! textfile — and a notification never fails or stalls an update: an
//! overloaded receiver gets it on a retry (no sooner than its
//! `Retry-After`), a receiver that is down or silent costs no more than the
//! configured timeouts and delays no other receiver, and the update
//! succeeds regardless.
//!
//! Real `ferry-publish` releases, the real `ferry` binary, webhook
//! receivers on 127.0.0.1 (`ferry_tests::webhook`) recording every body.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_tests::fixtures::{flip_byte, Node, NodeConfig, Workspace, CHANNEL};
use ferry_tests::http_server::TestServer;
use ferry_tests::real_code::{config, next_build, small_binary};
use ferry_tests::run::run;
use ferry_tests::webhook::{closed_port_url, Answer, Unresponsive, WebhookReceiver};
use serde_json::Value;

/// Appends `text` (TOML tables) to the node's configuration.
fn configure(node: &Node, text: &str) {
    let mut config = fs::read_to_string(&node.config).unwrap();
    config.push('\n');
    config.push_str(text);
    fs::write(&node.config, config).unwrap();
}

/// A `[[notify]]` table for `url` with `keys` (TOML lines) added.
fn receiver(url: &str, keys: &str) -> String {
    format!("[[notify]]\nurl = \"{url}\"\n{keys}\n")
}

/// What the node reports as its name when `node_name` is not set.
fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// A fixture node over `file://` with generation 1 published as 1.0.0 and
/// generation 2 as 1.1.0.
fn two_releases() -> (Workspace, Node) {
    let ws = Workspace::new();
    ws.publish_v1_v2();
    let node = ws.node("web");
    (ws, node)
}

#[test]
fn applied_reaches_generic_slack_and_pagerduty_receivers_in_their_shapes() {
    let (_ws, node) = two_releases();
    let hooks = WebhookReceiver::start();
    configure(
        &node,
        &[
            receiver(&hooks.url("generic"), ""),
            receiver(&hooks.url("slack"), "format = \"slack\""),
            receiver(
                &hooks.url("pagerduty"),
                "format = \"pagerduty\"\nrouting_key = \"R0UT1NG-KEY\"\nnode_name = \"web-1\"",
            ),
        ]
        .concat(),
    );
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    node.ferry_ok(&["apply"]);

    let all = hooks.deliveries();
    assert_eq!(all.len(), 6, "two applies, three receivers: {all:#?}");
    for d in &all {
        assert_eq!(d.method, "POST");
        assert_eq!(d.content_type.as_deref(), Some("application/json"));
    }

    let generic = hooks.delivered_to("generic");
    assert_eq!(generic.len(), 2, "{generic:#?}");
    assert_eq!(generic[0]["from_version"], Value::Null);
    assert_eq!(generic[0]["to_version"], "1.0.0");
    let g = &generic[1];
    assert_eq!(g["event"], "applied");
    assert_eq!(g["node"], hostname().as_str());
    assert_eq!(g["from_version"], "1.0.0");
    assert_eq!(g["to_version"], "1.1.0");
    assert_eq!(g["outcome"], "success");
    assert!(g["message"].as_str().unwrap().contains("1.1.0"), "{g:#}");
    let sent: jiff::Timestamp = g["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(
        (jiff::Timestamp::now() - sent).get_seconds().abs() < 600,
        "{g:#}"
    );
    assert!(!g["ferry_version"].as_str().unwrap().is_empty(), "{g:#}");

    let slack = hooks.delivered_to("slack");
    assert_eq!(slack.len(), 2, "{slack:#?}");
    let text = slack[1]["text"].as_str().expect("slack needs a text field");
    assert!(!text.contains('\n'), "{text}");
    assert!(
        text.contains(&format!("ferry on {}: applied 1.0.0 -> 1.1.0", hostname())),
        "{text}"
    );

    let pagerduty = hooks.delivered_to("pagerduty");
    assert_eq!(pagerduty.len(), 2, "{pagerduty:#?}");
    let p = &pagerduty[1];
    assert_eq!(p["routing_key"], "R0UT1NG-KEY");
    assert_eq!(p["event_action"], "resolve");
    assert_eq!(p["dedup_key"], "ferry/web-1");
    assert_eq!(p["payload"]["source"], "web-1");
    assert_eq!(p["payload"]["severity"], "info");
    assert_eq!(p["payload"]["component"], "ferry");
    assert_eq!(p["payload"]["timestamp"], g["timestamp"]);
    assert!(p["payload"]["summary"]
        .as_str()
        .unwrap()
        .contains("applied 1.0.0 -> 1.1.0"));
    assert_eq!(p["payload"]["custom_details"]["to_version"], "1.1.0");
}

#[test]
fn update_available_is_announced_once_per_version() {
    let (ws, node) = two_releases();
    let hooks = WebhookReceiver::start();
    configure(
        &node,
        &[
            receiver(&hooks.url("available"), "events = [\"update_available\"]"),
            receiver(&hooks.url("applied"), "events = [\"applied\"]"),
        ]
        .concat(),
    );
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    assert_eq!(hooks.deliveries_to("applied").len(), 1);
    assert!(hooks.deliveries_to("available").is_empty());

    node.ferry(&["check"]).assert_code(10);
    let announced = hooks.delivered_to("available");
    assert_eq!(announced.len(), 1, "{announced:#?}");
    assert_eq!(announced[0]["event"], "update_available");
    assert_eq!(announced[0]["from_version"], "1.0.0");
    assert_eq!(announced[0]["to_version"], "1.1.0");
    assert!(node.state_dir.join("notified.json").is_file());

    // The hourly timer runs check again: nothing new, nothing sent.
    node.ferry(&["check"]).assert_code(10);
    node.ferry(&["check", "--json"]).assert_code(10);
    assert_eq!(hooks.deliveries_to("available").len(), 1);

    // A newer release is announced, once.
    ws.publish("1.2.0", CHANNEL, &ws.input(3));
    node.ferry(&["check"]).assert_code(10);
    node.ferry(&["check"]).assert_code(10);
    let announced = hooks.delivered_to("available");
    assert_eq!(announced.len(), 2, "{announced:#?}");
    assert_eq!(announced[1]["to_version"], "1.2.0");
    // Subscribed to `applied` only: no announcement went there.
    assert_eq!(hooks.deliveries_to("applied").len(), 1);
}

#[test]
fn a_failed_apply_sends_failed() {
    let (ws, node) = two_releases();
    let hooks = WebhookReceiver::start();
    configure(
        &node,
        &[
            receiver(&hooks.url("generic"), ""),
            receiver(
                &hooks.url("pagerduty"),
                "format = \"pagerduty\"\nrouting_key = \"K\"",
            ),
        ]
        .concat(),
    );
    node.ferry_ok(&["apply", "--version", "1.0.0"]);

    // A tampered manifest: refused, and the operators hear of it.
    flip_byte(&ws.repo.join("manifests/1.1.0.json"), 200);
    let out = node.ferry(&["apply"]);
    assert_ne!(out.code, Some(0), "a tampered manifest was accepted\n{out}");
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    let generic = hooks.delivered_to("generic");
    assert_eq!(generic.len(), 2, "{generic:#?}");
    let failed = &generic[1];
    assert_eq!(failed["event"], "failed");
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["from_version"], "1.0.0");
    assert_eq!(failed["to_version"], "1.1.0");
    assert!(!failed["message"].as_str().unwrap().is_empty());
    let pagerduty = hooks.delivered_to("pagerduty");
    assert_eq!(pagerduty[1]["event_action"], "trigger");
    assert_eq!(pagerduty[1]["payload"]["severity"], "error");

    // A repository nobody answers for: failed too.
    let hooks = WebhookReceiver::start();
    let mut unreachable = NodeConfig::new(closed_port_url(), &ws.public_key);
    unreachable.retries = Some(0);
    let lonely = ws.node_with("lonely", unreachable);
    configure(&lonely, &receiver(&hooks.url("generic"), ""));
    let out = lonely.ferry(&["apply"]);
    assert_ne!(out.code, Some(0), "{out}");
    let generic = hooks.delivered_to("generic");
    assert_eq!(generic.len(), 1, "{generic:#?}");
    assert_eq!(generic[0]["event"], "failed");
    assert_eq!(generic[0]["from_version"], Value::Null);
}

#[test]
fn an_overloaded_receiver_gets_the_notification_on_the_third_try() {
    let (_ws, node) = two_releases();
    let overloaded = WebhookReceiver::answering(&[500, 500]);
    let throttling = WebhookReceiver::answering(&[429]);
    let misconfigured = WebhookReceiver::answering(&[404]);
    let retrying = "retries = 3\ninitial_backoff_ms = 20";
    configure(
        &node,
        &[
            receiver(&overloaded.url("hook"), retrying),
            receiver(&throttling.url("hook"), retrying),
            receiver(&misconfigured.url("hook"), retrying),
        ]
        .concat(),
    );
    let out = node.ferry_ok(&["apply", "--version", "1.0.0"]);

    let tries = overloaded.deliveries();
    let statuses: Vec<u16> = tries.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [500, 500, 200], "{tries:#?}");
    assert!(
        tries.iter().all(|d| d.body == tries[0].body),
        "a retry must send the same notification"
    );
    assert_eq!(overloaded.delivered_to("hook")[0]["event"], "applied");
    let statuses: Vec<u16> = throttling.deliveries().iter().map(|d| d.status).collect();
    assert_eq!(statuses, [429, 200]);
    // 404 will not heal by itself: one try, and a warning naming it.
    assert_eq!(misconfigured.deliveries().len(), 1);
    out.assert_stderr_contains("http 404");
    out.assert_stderr_contains("not delivered");
}

#[test]
fn a_throttling_receiver_is_retried_no_sooner_than_it_asked() {
    let (_ws, node) = two_releases();
    let throttling = WebhookReceiver::scripted(
        &[Answer {
            status: 429,
            retry_after: Some("2".into()),
        }],
        Duration::ZERO,
    );
    // Asking for an hour: a node does not wait that long, nor hammer it.
    let closed_for_maintenance = WebhookReceiver::scripted(
        &[Answer {
            status: 503,
            retry_after: Some("3600".into()),
        }],
        Duration::ZERO,
    );
    let retrying = "retries = 3\ninitial_backoff_ms = 20";
    configure(
        &node,
        &[
            receiver(&throttling.url("hook"), retrying),
            receiver(&closed_for_maintenance.url("hook"), retrying),
        ]
        .concat(),
    );
    let out = node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let tries = throttling.deliveries();
    let statuses: Vec<u16> = tries.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [429, 200], "{tries:#?}");
    let waited = tries[1].at - tries[0].at;
    assert!(
        waited >= Duration::from_millis(1950),
        "retried {waited:?} after a Retry-After of 2 s (the backoff alone is 20 ms)"
    );
    assert_eq!(closed_for_maintenance.deliveries().len(), 1);
    out.assert_stderr_contains("asked to wait 3600 s");
}

#[test]
fn a_slow_receiver_delays_no_other_receiver() {
    let (_ws, node) = two_releases();
    let slow = WebhookReceiver::slow(Duration::from_secs(5));
    let quick = WebhookReceiver::start();
    configure(
        &node,
        &[
            receiver(&slow.url("hook"), ""),
            receiver(&quick.url("hook"), ""),
        ]
        .concat(),
    );
    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let (slow, quick) = (slow.deliveries(), quick.deliveries());
    assert_eq!((slow.len(), quick.len()), (1, 1));
    // Sent one after the other, the quick one would wait for the slow
    // one's 5 s answer.
    let apart = quick[0].at.max(slow[0].at) - quick[0].at.min(slow[0].at);
    assert!(
        apart < Duration::from_millis(2500),
        "the receivers got the notification {apart:?} apart"
    );
}

#[test]
fn a_receiver_that_is_down_neither_fails_nor_delays_the_update() {
    let (_ws, node) = two_releases();
    let silent = Unresponsive::new();
    let hooks = WebhookReceiver::start();
    configure(
        &node,
        &[
            receiver(&closed_port_url(), "retries = 2\ninitial_backoff_ms = 50"),
            receiver(
                &silent.url(),
                "timeout_seconds = 1\nretries = 1\ninitial_backoff_ms = 50",
            ),
            receiver(&hooks.url("after"), ""),
        ]
        .concat(),
    );
    let started = Instant::now();
    let out = node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let took = started.elapsed();
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    assert_eq!(node.status_json()["last_operation"]["outcome"], "success");
    // The silent receiver may hold the node for its two 1 s attempts; the
    // defaults (10 s, 3 retries) would take over 40 s.
    assert!(
        took < Duration::from_secs(15),
        "apply took {took:?} with receivers down\n{out}"
    );
    assert_eq!(
        out.stderr.matches("not delivered").count(),
        2,
        "one warning per receiver that is down\n{out}"
    );
    // The receivers after them still get theirs.
    assert_eq!(hooks.delivered_to("after").len(), 1);
}

/// A release input whose executable is real machine code, rebuilt per
/// `build`, so `--delta-from auto` publishes patches for it.
fn delta_input(ws: &Workspace, build: u32) -> PathBuf {
    let dir = ws.dir.join("inputs").join(format!("build{build}"));
    let app = match build {
        0 => small_binary(),
        n => next_build(&small_binary(), n),
    };
    for (path, content) in [
        ("bin/app", app),
        ("etc/app.conf", config(build)),
        ("share/README", b"same in every build\n".to_vec()),
    ] {
        let full = dir.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, content).unwrap();
    }
    dir
}

/// Samples of a Prometheus text-format file, by series (`name{k="v",…}`),
/// parsed strictly: every sample's metric has a `# TYPE` line before it,
/// label values are quoted, values are numbers.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut typed = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let is_name = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(is_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                typed.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(is_name(rest.split(' ').next().unwrap()), "{line}");
            continue;
        }
        assert!(
            !line.trim().is_empty() && !line.starts_with('#'),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let name = series.split('{').next().unwrap();
        assert!(is_name(name), "{line}");
        assert!(
            typed.contains_key(name),
            "{name} has no TYPE before its sample"
        );
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("labels not in braces: {line}"));
            for pair in inner.split(',') {
                let (key, quoted) = pair.split_once('=').expect("label=value");
                assert!(is_name(key), "{line}");
                assert!(
                    quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                    "{line}"
                );
            }
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("{value:?} is not a number ({e}): {line}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "twice: {line}"
        );
    }
    samples
}

fn sum_of(history: &[Value], key: &str) -> f64 {
    history
        .iter()
        .map(|op| op[key].as_u64().unwrap_or(0))
        .sum::<u64>() as f64
}

#[test]
fn the_metrics_textfile_describes_the_node_after_every_operation() {
    let ws = Workspace::new();
    for (build, version) in ["1.0.0", "2.0.0"].iter().enumerate() {
        let input = delta_input(&ws, build as u32);
        let mut release = ws.release_command(version, CHANNEL, &input);
        release.args(["--delta-from", "auto"]);
        run(&mut release).assert_success();
    }
    let server = TestServer::serve(&ws.repo);
    let node = ws.node_with("web", NodeConfig::new(server.url(), &ws.public_key));
    let exporter_dir = ws.dir.join("node-exporter");
    fs::create_dir(&exporter_dir).unwrap();
    let textfile = exporter_dir.join("ferry.prom");
    configure(
        &node,
        &format!("[metrics]\ntextfile = \"{}\"\n", textfile.display()),
    );
    let metrics = |path: &Path| parse_prometheus(&fs::read_to_string(path).unwrap());
    let apply_ok = "ferry_operations_total{operation=\"apply\",outcome=\"success\"}";

    node.ferry_ok(&["apply", "--version", "1.0.0"]);
    let m = metrics(&textfile);
    assert_eq!(m["ferry_installed_version_info{version=\"1.0.0\"}"], 1.0);
    assert_eq!(m[apply_ok], 1.0);
    assert!(
        m["ferry_fetched_bytes_total{kind=\"full\"}"] > 0.0,
        "{m:#?}"
    );
    assert_eq!(m["ferry_fetched_bytes_total{kind=\"delta\"}"], 0.0);

    node.ferry_ok(&["apply"]);
    let m = metrics(&textfile);
    assert_eq!(m["ferry_installed_version_info{version=\"2.0.0\"}"], 1.0);
    assert!(!m.contains_key("ferry_installed_version_info{version=\"1.0.0\"}"));
    assert_eq!(m[apply_ok], 2.0);
    assert_eq!(
        m["ferry_operations_total{operation=\"apply\",outcome=\"failed\"}"],
        0.0
    );
    // The split adds up to what the history says was downloaded.
    let history = node.history_json();
    let last = history.last().unwrap();
    assert!(last["deltas_used"].as_u64().unwrap() >= 1, "{last:#}");
    assert!(last["delta_bytes"].as_u64().unwrap() > 0, "{last:#}");
    assert_eq!(
        last["delta_bytes"].as_u64().unwrap() + last["full_bytes"].as_u64().unwrap(),
        last["bytes_downloaded"].as_u64().unwrap(),
        "{last:#}"
    );
    assert_eq!(
        m["ferry_fetched_bytes_total{kind=\"delta\"}"],
        sum_of(&history, "delta_bytes")
    );
    assert_eq!(
        m["ferry_fetched_bytes_total{kind=\"full\"}"],
        sum_of(&history, "full_bytes")
    );
    assert_eq!(
        m["ferry_fetched_bytes_total{kind=\"delta\"}"]
            + m["ferry_fetched_bytes_total{kind=\"full\"}"],
        sum_of(&history, "bytes_downloaded")
    );
    let finished: jiff::Timestamp = last["finished_at"].as_str().unwrap().parse().unwrap();
    let started: jiff::Timestamp = last["started_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        m["ferry_last_success_timestamp_seconds"],
        finished.as_millisecond() as f64 / 1000.0
    );
    assert_eq!(
        m["ferry_last_attempt_timestamp_seconds"],
        m["ferry_last_success_timestamp_seconds"]
    );
    assert_eq!(
        m["ferry_last_update_duration_seconds"],
        (finished.as_millisecond() - started.as_millisecond()) as f64 / 1000.0
    );

    node.ferry_ok(&["rollback"]);
    let m = metrics(&textfile);
    assert_eq!(m["ferry_installed_version_info{version=\"1.0.0\"}"], 1.0);
    assert_eq!(
        m["ferry_operations_total{operation=\"rollback\",outcome=\"success\"}"],
        1.0
    );
    assert_eq!(m[apply_ok], 2.0);
    // Replaced atomically: no temporary is left for the collector to see.
    let names: Vec<_> = fs::read_dir(&exporter_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ferry.prom"]);
}

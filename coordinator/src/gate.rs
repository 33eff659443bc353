//! The metrics gate: a number read over HTTP (an error rate, a p99
//! latency) that must stay at or below a threshold for a rollout to go on.
//!
//! A node's own health check only says the new release answers; a release
//! that answers but fails a tenth of its requests passes it. The metrics
//! gate is how a rollout sees that, so it fails closed: an endpoint that
//! is down, slow, or answers anything but one finite number stops the
//! rollout exactly like a number above the threshold would.

use std::time::{Duration, Instant};

use crate::inventory::{InventoryNode, MetricsGate};
use crate::transport::shell_quote;

/// A body longer than this is not "a number".
const MAX_BODY: u64 = 4096;

/// Reads the gate once for each URL it stands for: once when the URL is
/// cluster-wide, once per node in `nodes` when it names `{name}` or
/// `{address}`. `Ok` gives the highest reading; `Err` names the URL, the
/// reading and the threshold.
pub fn check(gate: &MetricsGate, nodes: &[&InventoryNode]) -> Result<f64, String> {
    let mut highest = f64::NEG_INFINITY;
    for url in urls(gate, nodes) {
        let value = read(&url, Duration::from_secs(gate.timeout_seconds))?;
        if value > gate.max {
            return Err(format!(
                "metrics gate: {url} reads {value}, above the maximum {}",
                gate.max
            ));
        }
        highest = highest.max(value);
    }
    Ok(highest)
}

/// The URLs a gate reads for `nodes`.
pub fn urls(gate: &MetricsGate, nodes: &[&InventoryNode]) -> Vec<String> {
    if !gate.url.contains("{name}") && !gate.url.contains("{address}") {
        return vec![gate.url.clone()];
    }
    nodes
        .iter()
        .map(|n| {
            gate.url
                .replace("{name}", &n.name)
                .replace("{address}", &n.address)
        })
        .collect()
}

/// One reading: a 2xx answer whose body, trimmed, is one finite number.
pub fn read(url: &str, timeout: Duration) -> Result<f64, String> {
    let (status, body) = ferry_node::http_probe::get(url, timeout, MAX_BODY)
        .map_err(|e| format!("metrics gate: {e}"))?;
    if !(200..300).contains(&status) {
        return Err(format!("metrics gate: GET {url} answered {status}"));
    }
    parse_reading(&body).map_err(|e| format!("metrics gate: {url}: {e}"))
}

/// The number in a gate's body.
pub fn parse_reading(body: &str) -> Result<f64, String> {
    let text = body.trim();
    let value: f64 = text.parse().map_err(|_| {
        let shown: String = text.chars().take(60).collect();
        format!(
            "the body {} is not a number (the gate needs an endpoint that returns one number)",
            shell_quote(&shown)
        )
    })?;
    if !value.is_finite() {
        return Err(format!("the reading {value} is not a finite number"));
    }
    Ok(value)
}

/// How a bake ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Bake {
    /// The gate held for the whole bake time.
    Held,
    /// The gate failed during the bake.
    Broken(String),
    /// `stop()` said to stop (an abort was requested).
    Stopped,
}

/// Waits `seconds`, reading the gate every `interval_seconds` (and once at
/// the end) when there is one, and asking `stop` every half second.
pub fn bake(
    gate: Option<&MetricsGate>,
    nodes: &[&InventoryNode],
    seconds: u64,
    stop: &dyn Fn() -> bool,
) -> Bake {
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let interval = gate.map(|g| Duration::from_secs(g.interval_seconds));
    let mut next_reading = started + interval.unwrap_or(Duration::MAX / 4);
    loop {
        if stop() {
            return Bake::Stopped;
        }
        let now = Instant::now();
        if now >= until {
            break;
        }
        if let (Some(gate), Some(interval)) = (gate, interval) {
            if now >= next_reading {
                if let Err(e) = check(gate, nodes) {
                    return Bake::Broken(e);
                }
                next_reading = Instant::now() + interval;
            }
        }
        let wake = until
            .min(next_reading)
            .min(now + Duration::from_millis(500));
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    if let Some(gate) = gate {
        if let Err(e) = check(gate, nodes) {
            return Bake::Broken(e);
        }
    }
    Bake::Held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Role;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn gate(url: &str, max: f64) -> MetricsGate {
        MetricsGate {
            url: url.into(),
            max,
            interval_seconds: 1,
            timeout_seconds: 2,
        }
    }

    fn node(name: &str) -> InventoryNode {
        InventoryNode {
            name: name.into(),
            address: format!("10.0.0.{}", name.len()),
            role: Role::Follower,
            labels: Default::default(),
        }
    }

    /// A server on 127.0.0.1 answering each request with the next body of
    /// `bodies` (the last one repeats); returns its base URL and a counter.
    fn serve(bodies: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut buf = [0u8; 2048];
                let _ = stream.read(&mut buf);
                let i = seen.fetch_add(1, Ordering::SeqCst);
                let (status, body) = bodies[i.min(bodies.len() - 1)];
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, count)
    }

    #[test]
    fn only_one_finite_number_is_a_reading() {
        assert_eq!(parse_reading(" 0.25\n"), Ok(0.25));
        assert_eq!(parse_reading("3"), Ok(3.0));
        for bad in ["", "ok", "0.1 0.2", "NaN", "inf", "<html>"] {
            assert!(parse_reading(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_per_node_url_is_read_for_every_node_and_a_plain_one_once() {
        let (a, b) = (node("a"), node("bb"));
        let per_node = gate("http://{address}:9/err?n={name}", 1.0);
        assert_eq!(
            urls(&per_node, &[&a, &b]),
            vec!["http://10.0.0.1:9/err?n=a", "http://10.0.0.2:9/err?n=bb"]
        );
        assert_eq!(
            urls(&gate("http://x/err", 1.0), &[&a, &b]),
            vec!["http://x/err"]
        );
    }

    #[test]
    fn a_reading_above_the_maximum_or_not_a_number_fails_the_gate() {
        let (url, _) = serve(vec![(200, "0.01")]);
        assert_eq!(check(&gate(&url, 0.05), &[]), Ok(0.01));
        let (url, _) = serve(vec![(200, "0.2")]);
        let e = check(&gate(&url, 0.05), &[]).unwrap_err();
        assert!(
            e.contains("0.2") && e.contains("above the maximum 0.05"),
            "{e}"
        );
        let (url, _) = serve(vec![(500, "0.0")]);
        assert!(check(&gate(&url, 1.0), &[])
            .unwrap_err()
            .contains("answered 500"));
        let (url, _) = serve(vec![(200, "fine")]);
        assert!(check(&gate(&url, 1.0), &[])
            .unwrap_err()
            .contains("not a number"));
    }

    #[test]
    fn an_unreachable_gate_fails_closed() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = check(&gate(&format!("http://127.0.0.1:{port}/"), 1.0), &[]).unwrap_err();
        assert!(e.contains(&port.to_string()), "{e}");
    }

    #[test]
    fn a_bake_holds_only_if_every_reading_passes() {
        let (url, count) = serve(vec![(200, "0.0")]);
        assert_eq!(bake(Some(&gate(&url, 0.5)), &[], 2, &|| false), Bake::Held);
        // Readings at 1 s and 2 s, and the final one.
        assert!(count.load(Ordering::SeqCst) >= 2);

        let (url, _) = serve(vec![(200, "0.0"), (200, "0.9")]);
        match bake(Some(&gate(&url, 0.5)), &[], 30, &|| false) {
            Bake::Broken(e) => assert!(e.contains("0.9"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(bake(None, &[], 30, &|| true), Bake::Stopped);
        assert_eq!(bake(None, &[], 0, &|| false), Bake::Held);
    }
}

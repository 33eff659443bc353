//! The range of every number in `ferry.toml`: durations, sizes, retries
//! and counts.
//!
//! A number far outside what anyone means (`timeout_seconds =
//! 9223372036854775807`) is a mistake, and left alone it does harm later:
//! `Instant + Duration` overflows and panics on the first fetch, a retry
//! count keeps a node busy for ever. Each key's range is checked when the
//! configuration is loaded, so every command refuses such a file with the
//! key, its value and the range named, before anything runs.
//!
//! The bounds are generous: a day for a timeout, an hour for a pause
//! between probes, a week for a migration or a wait for a pull-mode turn.

use crate::config::Config;
use crate::error::ConfigMistake;

/// One number of the configuration and the values it may take.
struct Bounded {
    /// `[section] key`, as the operator finds it in the file.
    key: String,
    value: u64,
    min: u64,
    max: u64,
}

const DAY_SECONDS: u64 = 24 * 60 * 60;
const WEEK_SECONDS: u64 = 7 * DAY_SECONDS;
const HOUR_MS: u64 = 60 * 60 * 1000;
const MINUTE_MS: u64 = 60 * 1000;
/// A rate or memory size no machine has: 1 TiB (per second, or in MiB).
const TERA: u64 = 1 << 40;

/// Checks every bounded number of `config`; the first one out of range
/// is refused.
pub fn check(config: &Config) -> Result<(), ConfigMistake> {
    for b in bounded(config) {
        if !(b.min..=b.max).contains(&b.value) {
            return Err(ConfigMistake::new(format!(
                "{} = {} is out of range: use {} to {}",
                b.key, b.value, b.min, b.max
            )));
        }
    }
    Ok(())
}

fn bounded(config: &Config) -> Vec<Bounded> {
    let mut all = Vec::new();
    let mut add = |section: &str, key: &str, value: Option<u64>, min: u64, max: u64| {
        if let Some(value) = value {
            all.push(Bounded {
                key: format!("{section} {key}"),
                value,
                min,
                max,
            });
        }
    };
    let r = &config.repository;
    add(
        "[repository]",
        "timeout_seconds",
        Some(r.timeout_seconds),
        1,
        DAY_SECONDS,
    );
    add("[repository]", "retries", Some(r.retries.into()), 0, 100);
    add(
        "[repository]",
        "stall_timeout_seconds",
        r.stall_timeout_seconds,
        1,
        DAY_SECONDS,
    );
    add(
        "[repository]",
        "min_bytes_per_second",
        Some(r.min_bytes_per_second),
        0,
        TERA,
    );
    let i = &config.install;
    add(
        "[install]",
        "keep_releases",
        Some(i.keep_releases as u64),
        2,
        1000,
    );
    add(
        "[install]",
        "keep_restore_points",
        Some(i.keep_restore_points as u64),
        1,
        1000,
    );
    let s = &config.service;
    add(
        "[service]",
        "command_timeout_seconds",
        s.command_timeout_seconds,
        1,
        DAY_SECONDS,
    );
    add(
        "[service]",
        "hook_timeout_seconds",
        s.hook_timeout_seconds,
        1,
        DAY_SECONDS,
    );
    if let Some(h) = &config.health {
        add(
            "[health]",
            "expected_status",
            Some(h.expected_status.into()),
            100,
            599,
        );
        add("[health]", "interval_ms", Some(h.interval_ms), 1, HOUR_MS);
        add("[health]", "retries", Some(h.retries.into()), 0, 100_000);
        add(
            "[health]",
            "timeout_seconds",
            Some(h.timeout_seconds),
            1,
            DAY_SECONDS,
        );
        add(
            "[health]",
            "probe_timeout_ms",
            Some(h.probe_timeout_ms),
            1,
            HOUR_MS,
        );
    }
    add(
        "[migrations]",
        "timeout_seconds",
        Some(config.migrations.timeout_seconds),
        1,
        WEEK_SECONDS,
    );
    let p = &config.preflight;
    add(
        "[preflight]",
        "min_available_memory_mb",
        Some(p.min_available_memory_mb),
        0,
        TERA,
    );
    add("[preflight]", "timeout_ms", Some(p.timeout_ms), 1, HOUR_MS);
    for (index, n) in config.notify.iter().enumerate() {
        let section = format!("[[notify]] #{index}");
        add(
            &section,
            "timeout_seconds",
            Some(n.timeout_seconds),
            1,
            60 * 60,
        );
        add(&section, "retries", Some(n.retries.into()), 0, 100);
        add(
            &section,
            "initial_backoff_ms",
            Some(n.initial_backoff_ms),
            0,
            MINUTE_MS,
        );
    }
    if let Some(c) = &config.coordination {
        add(
            "[coordination]",
            "max_unavailable",
            Some(c.max_unavailable.into()),
            1,
            1_000_000,
        );
        add(
            "[coordination]",
            "lease_seconds",
            Some(c.lease_seconds),
            2,
            DAY_SECONDS,
        );
        add(
            "[coordination]",
            "followers",
            c.followers.map(u64::from),
            0,
            1_000_000,
        );
        add(
            "[coordination]",
            "wait_timeout_seconds",
            Some(c.wait_timeout_seconds),
            0,
            WEEK_SECONDS,
        );
        add(
            "[coordination]",
            "poll_interval_ms",
            Some(c.poll_interval_ms),
            1,
            HOUR_MS,
        );
        add(
            "[coordination]",
            "request_timeout_seconds",
            Some(c.request_timeout_seconds),
            1,
            60 * 60,
        );
    }
    all
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    /// The smallest valid configuration (config.rs's tests), then every
    /// other section with its defaults.
    fn every_section() -> String {
        format!("{}{EVERY_OTHER_SECTION}", crate::config::tests::GOOD)
    }

    const EVERY_OTHER_SECTION: &str = r#"
[service]
[health]
command = "true"
[migrations]
[preflight]
[[notify]]
url = "http://127.0.0.1:9/hook"
[coordination]
kind = "etcd"
endpoints = ["http://127.0.0.1:2379"]
prefix = "/ferry/t"
"#;

    /// A default out of its own range would refuse every configuration
    /// that leaves the key out.
    #[test]
    fn every_default_is_in_range() {
        let config = Config::parse(&every_section(), Path::new("t.toml")).unwrap();
        assert!(super::bounded(&config).len() >= 20);
    }

    #[test]
    fn the_key_the_value_and_the_range_are_named() {
        let text =
            every_section().replace("[migrations]", "[migrations]\ntimeout_seconds = 604801");
        let err = Config::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("[migrations] timeout_seconds = 604801 is out of range: use 1 to 604800"),
            "{err}"
        );
        let text =
            every_section().replace("[migrations]", "[migrations]\ntimeout_seconds = 604800");
        assert!(Config::parse(&text, Path::new("t.toml")).is_ok());
    }
}

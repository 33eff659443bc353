//! Retrying transient network failures with exponential backoff and jitter.
//!
//! A dropped connection, a timeout or an overloaded server (HTTP 5xx, 429)
//! says nothing about the data, so the fetch is tried again after a pause
//! that doubles each time (0.2 s, 0.4 s, 0.8 s, … capped at 10 s), shortened
//! by a random jitter so that a fleet of nodes failing together does not
//! retry together. What is permanent (404, a body larger than signed, a
//! failed verification) is not retried: more attempts cannot fix it. The
//! number of retries is `[repository] retries` (default 5).

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::config::RepositoryConfig;

/// How often and how patiently to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `retries + 1` attempts in all).
    pub retries: u32,
    /// Pause before the first retry; each further retry doubles it.
    pub base_delay: Duration,
    /// The longest pause.
    pub max_delay: Duration,
    /// Log each retry at debug level, not as a warning: with mirrors, a
    /// source given up on is named in one warning (`crate::sources`), and
    /// its retries would only repeat its name.
    pub quiet: bool,
}

pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(200);
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(10);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: crate::config::DEFAULT_RETRIES,
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            quiet: false,
        }
    }
}

impl RetryPolicy {
    pub fn from_config(config: &RepositoryConfig) -> RetryPolicy {
        RetryPolicy {
            retries: config.retries,
            ..RetryPolicy::default()
        }
    }

    /// No retries at all.
    pub fn never() -> RetryPolicy {
        RetryPolicy {
            retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// Attempts in all.
    pub fn attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The pause before retry number `retry` (1 for the first retry) without
    /// jitter: `base_delay * 2^(retry-1)`, at most `max_delay`.
    pub fn nominal_delay(&self, retry: u32) -> Duration {
        if self.base_delay.is_zero() {
            return Duration::ZERO;
        }
        let doubled = match 1u32.checked_shl(retry.saturating_sub(1)) {
            Some(factor) => self.base_delay.saturating_mul(factor),
            None => Duration::MAX,
        };
        doubled.min(self.max_delay)
    }

    /// The pause before retry number `retry` with `jitter` in `[0, 1]`:
    /// between half the nominal delay (jitter 0) and all of it (jitter 1),
    /// so the schedule never waits longer than [`nominal_delay`] says.
    ///
    /// [`nominal_delay`]: RetryPolicy::nominal_delay
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let nominal = self.nominal_delay(retry);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        nominal / 2 + (nominal / 2).mul_f64(jitter)
    }
}

/// The longest pause a server's `Retry-After` gets from a node: a fetch
/// waits at most this long before its next attempt, and a notification
/// asked to wait longer gives up.
pub const LONGEST_ASKED_PAUSE: Duration = Duration::from_secs(60);

/// The pause an HTTP `Retry-After` value asks for: delay-seconds, or an
/// HTTP-date (RFC 9110) counted from `now` (a date already past is no
/// pause). `None` when it is neither, and the schedule's own pause applies.
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    Some(
        date.duration_since(now)
            .try_into()
            .unwrap_or(Duration::ZERO),
    )
}

/// The `Retry-After` of an HTTP response, if it has a valid one.
pub fn retry_after_of(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()))
}

/// What one failed attempt means.
#[derive(Debug)]
pub enum Verdict<E> {
    /// Worth another attempt, if the budget allows.
    Retry(E),
    /// Not worth another attempt.
    Fail(E),
    /// Worth another attempt, but not before this pause: the server said
    /// when (HTTP `Retry-After`). The caller caps it; the schedule's own
    /// pause applies when it is longer.
    RetryAfter(E, Duration),
}

/// The error of the last attempt, and how many attempts were made.
#[derive(Debug)]
pub struct GaveUp<E> {
    pub error: E,
    pub attempts: u32,
    /// True if the last error was transient and only the budget ran out.
    pub exhausted: bool,
}

/// Runs `attempt` (given the attempt number, from 1) until it succeeds, it
/// fails permanently, or `policy.retries` retries have failed. Each retry is
/// logged with what was being done, the attempt and the cause.
pub fn run<T, E: fmt::Display>(
    policy: &RetryPolicy,
    what: &dyn fmt::Display,
    mut attempt: impl FnMut(u32) -> Result<T, Verdict<E>>,
) -> Result<T, GaveUp<E>> {
    let attempts = policy.attempts();
    let mut n = 1;
    loop {
        let (error, asked) = match attempt(n) {
            Ok(value) => return Ok(value),
            Err(Verdict::Fail(error)) => {
                return Err(GaveUp {
                    error,
                    attempts: n,
                    exhausted: false,
                })
            }
            Err(Verdict::Retry(error)) => (error, Duration::ZERO),
            Err(Verdict::RetryAfter(error, asked)) => (error, asked),
        };
        if n >= attempts {
            return Err(GaveUp {
                error,
                attempts: n,
                exhausted: true,
            });
        }
        let delay = policy.delay(n, random_unit()).max(asked);
        let message = format!(
            "{what}: attempt {n} of {attempts} failed: {error}; retrying in {} ms",
            delay.as_millis()
        );
        if policy.quiet {
            tracing::debug!("{message}");
        } else {
            tracing::warn!("{message}");
        }
        std::thread::sleep(delay);
        n += 1;
    }
}

/// A random number in `[0, 1]` for jitter. The standard library's hasher
/// keys are random per process and per call, which is all jitter needs.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / ((1u64 << 53) - 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_schedule_doubles_from_the_base_up_to_the_cap() {
        let p = RetryPolicy::default();
        let nominal: Vec<Duration> = (1..=9).map(|r| p.nominal_delay(r)).collect();
        assert_eq!(
            nominal,
            [
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(6400),
                ms(10_000),
                ms(10_000),
                ms(10_000)
            ]
        );
        // Absurd retry numbers neither overflow nor exceed the cap.
        assert_eq!(p.nominal_delay(31), ms(10_000));
        assert_eq!(p.nominal_delay(u32::MAX), ms(10_000));
        let uncapped = RetryPolicy {
            max_delay: Duration::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(uncapped.nominal_delay(3), ms(800));
        assert!(uncapped.nominal_delay(u32::MAX) >= uncapped.nominal_delay(40));
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_nominal_delay() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, 0.0), ms(100));
        assert_eq!(p.delay(1, 1.0), ms(200));
        assert_eq!(p.delay(3, 0.5), ms(600));
        assert_eq!(p.delay(20, 0.0), ms(5000));
        // Out-of-range jitter is clamped, never a longer wait.
        assert_eq!(p.delay(2, 7.0), ms(400));
        assert_eq!(p.delay(2, -1.0), ms(200));
        assert_eq!(p.delay(2, f64::NAN), ms(200));
        for _ in 0..1000 {
            let j = random_unit();
            assert!((0.0..=1.0).contains(&j), "{j}");
            let d = p.delay(4, j);
            assert!(d >= ms(800) && d <= ms(1600), "{d:?}");
        }
    }

    fn quick(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            quiet: false,
        }
    }

    #[test]
    fn transient_failures_are_retried_up_to_the_budget() {
        let calls = Cell::new(0);
        let result = run(&quick(3), &"test", |n| {
            calls.set(n);
            if n < 3 {
                Err(Verdict::Retry(format!("flaky {n}")))
            } else {
                Ok(n)
            }
        });
        assert_eq!(result.unwrap(), 3);
        assert_eq!(calls.get(), 3);

        let gave_up = run(&quick(2), &"test", |n| -> Result<(), _> {
            calls.set(n);
            Err(Verdict::Retry(n))
        })
        .unwrap_err();
        assert_eq!(
            (gave_up.error, gave_up.attempts, gave_up.exhausted),
            (3, 3, true)
        );

        let never = run(&RetryPolicy::never(), &"test", |n| -> Result<(), _> {
            Err(Verdict::Retry(n))
        })
        .unwrap_err();
        assert_eq!((never.attempts, never.exhausted), (1, true));
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        let gave_up = run(&quick(5), &"test", |n| -> Result<(), _> {
            Err(Verdict::Fail(n))
        })
        .unwrap_err();
        assert_eq!(
            (gave_up.error, gave_up.attempts, gave_up.exhausted),
            (1, 1, false)
        );
    }

    #[test]
    fn the_default_budget_waits_a_bounded_time() {
        let p = RetryPolicy::default();
        let worst: Duration = (1..p.attempts()).map(|r| p.delay(r, 1.0)).sum();
        assert_eq!(p.attempts(), 6);
        assert_eq!(worst, ms(200 + 400 + 800 + 1600 + 3200));
    }

    #[test]
    fn a_pause_the_server_asked_for_is_waited_when_longer_than_the_schedule() {
        let policy = RetryPolicy {
            retries: 1,
            base_delay: ms(1),
            max_delay: ms(1),
            quiet: false,
        };
        let started = std::time::Instant::now();
        let result: Result<(), GaveUp<&str>> = run(&policy, &"asking", |n| match n {
            1 => Err(Verdict::RetryAfter("busy", ms(150))),
            _ => Ok(()),
        });
        assert!(result.is_ok());
        assert!(started.elapsed() >= ms(150), "{:?}", started.elapsed());
        // The budget still bounds the attempts.
        let gave_up = run(&RetryPolicy::never(), &"asking", |_| {
            Err::<(), _>(Verdict::RetryAfter("busy", ms(1)))
        })
        .unwrap_err();
        assert_eq!((gave_up.attempts, gave_up.exhausted), (1, true));
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 12:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date already past asks for no pause at all.
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for garbage in ["", "-5", "soon", "1.5"] {
            assert_eq!(parse_retry_after(garbage, now), None, "{garbage:?}");
        }
    }
}

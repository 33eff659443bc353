//! Slow-retrieval defence: how long a download may go without data, and how
//! slowly it may crawl.
//!
//! A server (or someone between it and the node) can hold a node without
//! ever failing a request: by sending nothing after the headers (a stall),
//! or by sending a byte now and then, just often enough that no single read
//! times out (a trickle). Either would keep `ferry apply` — and the lock it
//! holds — alive indefinitely, and with it every later update.
//!
//! Two limits stop that, both from `[repository]`:
//! - `stall_timeout_seconds` (default: `timeout_seconds`, 30): the longest
//!   wait for any one read. It is ureq's per-read timeout; [`Paced`] only
//!   turns its error into a message that names the setting.
//! - `min_bytes_per_second` (default 1024): after a grace period equal to
//!   the stall timeout (a transfer gets that long to get going: TCP slow
//!   start, a cold cache), the body's *average* rate since its first byte
//!   must stay at or above the floor. An average, not a per-read rate,
//!   because real networks burst and pause; a floor on the average still
//!   bounds every transfer: a body of `n` bytes ends, or fails, within
//!   `max(grace, n / floor) + stall` seconds of its first byte, and `n`
//!   itself is capped by the signed size (the index and signatures by fixed
//!   caps). A per-fetch deadline derived from the signed size would give
//!   the same bound but needs the size everywhere a body is read; the
//!   floor needs nothing but the clock.
//!
//! Both failures are transient ([`crate::transport::FetchError::Network`]):
//! the retry resumes what is on disk, so a link that is merely poor still
//! makes progress across attempts, while a hostile server costs at most
//! `attempts × (grace + stall)` before the node gives up and says why.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// The limits one transfer must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceLimits {
    /// The longest wait for one read; also the grace before the floor applies.
    pub stall: Duration,
    /// Minimum average bytes per second once the grace has passed; 0: none.
    pub min_bytes_per_second: u64,
}

impl PaceLimits {
    pub fn from_config(config: &crate::config::RepositoryConfig) -> PaceLimits {
        PaceLimits {
            stall: Duration::from_secs(
                config
                    .stall_timeout_seconds
                    .unwrap_or(config.timeout_seconds),
            ),
            min_bytes_per_second: config.min_bytes_per_second,
        }
    }

    /// Why a transfer that received `received` bytes in `elapsed` is too
    /// slow, or `None` if it may go on.
    pub fn too_slow(&self, received: u64, elapsed: Duration) -> Option<String> {
        if self.min_bytes_per_second == 0 || elapsed <= self.stall {
            return None;
        }
        let rate = received as f64 / elapsed.as_secs_f64();
        (rate < self.min_bytes_per_second as f64).then(|| {
            format!(
                "too slow: {received} bytes in {:.1} s ({rate:.0} bytes/s), below repository.min_bytes_per_second = {}",
                elapsed.as_secs_f64(),
                self.min_bytes_per_second
            )
        })
    }
}

/// A response body held to [`PaceLimits`]. Its errors are
/// [`io::ErrorKind::TimedOut`] with a message naming the setting that fired.
pub struct Paced<R> {
    inner: R,
    limits: PaceLimits,
    /// Set at the first read: the time before it (connecting, waiting for
    /// the headers) has its own timeouts.
    started: Option<Instant>,
    received: u64,
}

impl<R: Read> Paced<R> {
    pub fn new(inner: R, limits: PaceLimits) -> Paced<R> {
        Paced {
            inner,
            limits,
            started: None,
            received: 0,
        }
    }
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if is_read_timeout(&e) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                    "stalled: no data for {} s after {} bytes (repository.stall_timeout_seconds)",
                    self.limits.stall.as_secs_f64(),
                    self.received
                ),
                ))
            }
            Err(e) => return Err(e),
        };
        self.received += n as u64;
        if n > 0 {
            if let Some(why) = self.limits.too_slow(self.received, started.elapsed()) {
                return Err(io::Error::new(io::ErrorKind::TimedOut, why));
            }
        }
        Ok(n)
    }
}

/// True for a read that timed out, as the OS or ureq reports it.
fn is_read_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) || e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(stall_ms: u64, floor: u64) -> PaceLimits {
        PaceLimits {
            stall: Duration::from_millis(stall_ms),
            min_bytes_per_second: floor,
        }
    }

    #[test]
    fn the_floor_applies_only_after_the_grace_and_only_when_set() {
        let l = limits(1000, 1024);
        assert_eq!(l.too_slow(0, Duration::from_millis(999)), None);
        assert_eq!(l.too_slow(2048, Duration::from_secs(2)), None);
        let why = l.too_slow(100, Duration::from_secs(2)).unwrap();
        assert!(why.contains("min_bytes_per_second = 1024"), "{why}");
        assert!(why.contains("100 bytes"), "{why}");
        assert_eq!(limits(1000, 0).too_slow(1, Duration::from_secs(3600)), None);
    }

    /// Yields one byte per read, sleeping `pause` before each.
    struct Trickle {
        pause: Duration,
        left: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 || buf.is_empty() {
                return Ok(0);
            }
            std::thread::sleep(self.pause);
            self.left -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn a_trickle_fails_soon_after_the_grace() {
        let trickle = Trickle {
            pause: Duration::from_millis(20),
            left: usize::MAX,
        };
        let started = Instant::now();
        let err =
            io::copy(&mut Paced::new(trickle, limits(200, 1024)), &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("too slow"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_fast_body_and_a_read_timeout_are_told_apart() {
        let fast = &[7u8; 100_000][..];
        let mut out = Vec::new();
        io::copy(&mut Paced::new(fast, limits(1, 1 << 20)), &mut out).unwrap();
        assert_eq!(out.len(), 100_000);

        struct TimesOut;
        impl Read for TimesOut {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other(ureq::Error::Timeout(
                    ureq::Timeout::PerRead,
                )))
            }
        }
        let err = Paced::new(TimesOut, limits(3000, 1))
            .read(&mut [0; 8])
            .unwrap_err();
        assert!(err.to_string().contains("stall_timeout_seconds"), "{err}");
        assert!(err.to_string().contains("3 s"), "{err}");
    }
}

//! Fetching repository files over `file://` and `http(s)://`.
//!
//! Transport knows nothing about signatures; it only promises never to read
//! more than the caller's cap, which is always a size from signed metadata or
//! a fixed bound for the index. That cap is what stops an endless or
//! oversized response from filling a node's disk before verification can
//! reject it. Offsets let a partial download continue where it stopped.
//!
//! Each error says whether it is worth retrying ([`FetchError::is_transient`]);
//! the retrying itself, with backoff, is the caller's ([`crate::retry`]),
//! with the policy the transport was opened with. Over http(s) every body
//! is also held to the stall timeout and rate floor of [`crate::pace`], so a
//! server can neither flood a node (the cap) nor hold it (the pace).
//!
//! A transport is one source; [`crate::sources::Sources`] owns a
//! repository's sources (the primary and its mirrors, or a bundle) and
//! decides which of them to ask and believe.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use manifests::untrusted_text::escape;
use thiserror::Error;

use crate::config::RepositoryConfig;
use crate::error::NodeError;
use crate::pace::{PaceLimits, Paced};
use crate::regular_file::{open_regular, OpenError};
use crate::retry::{self, RetryPolicy, Verdict};

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("{url} was not found")]
    NotFound { url: String },
    /// More bytes than signed (or than the fixed cap for the index and
    /// signatures): the server's file is not the published one, or the
    /// server sends endless data.
    #[error("{url} is larger than the {limit} bytes allowed for it (its signed size, or the fixed cap for index.json and signatures): the server does not serve the published file; refusing the rest")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: server answered HTTP {status}{}", asked_text(*retry_after))]
    Http {
        url: String,
        status: u16,
        /// The pause the server asked for (`Retry-After`), if any.
        retry_after: Option<Duration>,
    },
    /// A connection, timeout or read failure: worth retrying. `message`
    /// may quote the server (escaped when shown).
    #[error("{url}: {}", escape(message))]
    Network { url: String, message: String },
    /// No connection to the server at all (refused, no route, unknown
    /// host, connect timeout): worth retrying, and what the operator must
    /// look at is the server or the way to it, not the file.
    #[error("the repository at {base} cannot be reached ({}, fetching {url}): check the address in [repository] url or mirrors, that the server is up, and this node's network, DNS and proxy", escape(message))]
    Unreachable {
        base: String,
        url: String,
        message: String,
    },
    /// A failure more attempts cannot fix: TLS and certificate errors, an
    /// invalid URL.
    #[error("{url}: {}", escape(message))]
    Refused { url: String, message: String },
    /// The server did not continue a partial download where it stopped (a
    /// wrong `Content-Range`, 416, a file shorter than the part): the caller
    /// must discard the partial file and start again from byte 0.
    #[error("{url}: cannot resume: {}", escape(message))]
    RangeMismatch { url: String, message: String },
    #[error("{context}: {source}")]
    Local {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn asked_text(retry_after: Option<Duration>) -> String {
    retry_after.map_or(String::new(), |pause| {
        format!(" (Retry-After: {} s)", pause.as_secs())
    })
}

impl FetchError {
    /// The pause before the next attempt the server asked for, at most
    /// [`retry::LONGEST_ASKED_PAUSE`]: a transient failure with it is
    /// retried no sooner (so that a fleet backs off as its server asks).
    pub fn asked_pause(&self) -> Option<Duration> {
        match self {
            FetchError::Http {
                retry_after: Some(pause),
                ..
            } => Some((*pause).min(retry::LONGEST_ASKED_PAUSE)),
            _ => None,
        }
    }

    /// This failure as a retry verdict: transient ones are retried (after
    /// the pause the server asked for, if any), the rest are final.
    pub fn verdict(self) -> Verdict<FetchError> {
        if !self.is_transient() {
            return Verdict::Fail(self);
        }
        match self.asked_pause() {
            Some(pause) => Verdict::RetryAfter(self, pause),
            None => Verdict::Retry(self),
        }
    }

    /// True for failures that say nothing about the data and may well not
    /// happen again: connection errors, timeouts, HTTP 408, 425, 429 and 5xx,
    /// and a resume the server refused (retried from scratch).
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Network { .. }
            | FetchError::Unreachable { .. }
            | FetchError::RangeMismatch { .. } => true,
            FetchError::Http { status, .. } => {
                matches!(status, 408 | 425 | 429) || (500..600).contains(status)
            }
            FetchError::NotFound { .. }
            | FetchError::TooLarge { .. }
            | FetchError::Refused { .. }
            | FetchError::Local { .. } => false,
        }
    }
}

impl From<FetchError> for NodeError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::TooLarge { .. } => NodeError::verification(e.to_string()),
            // The node's own disk, not the source: kept apart so that mirror
            // fallback does not try every source against a full disk.
            FetchError::Local { context, source } => NodeError::Io { context, source },
            other => NodeError::Fetch(Box::new(other)),
        }
    }
}

pub trait Transport {
    /// The full location of `path`, for messages.
    fn url(&self, path: &str) -> String;

    /// How to retry this transport's transient failures (from the
    /// repository configuration).
    fn retry_policy(&self) -> &RetryPolicy;

    /// Streams `path` from byte `offset` into `out`. Fails with `TooLarge` as
    /// soon as the file would exceed `limit` bytes counted from its start.
    /// Returns the number of bytes written to `out`. Bytes written before a
    /// failure are valid data of the file at their position, except after
    /// `RangeMismatch`, when nothing was written and the caller must start
    /// again from 0.
    fn fetch(
        &self,
        path: &str,
        offset: u64,
        limit: u64,
        out: &mut dyn Write,
    ) -> Result<u64, FetchError>;
}

/// Fetches a whole small file (index, manifest, signature) into memory,
/// retrying transient failures from scratch as the transport's policy says.
pub fn fetch_bytes(t: &dyn Transport, path: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
    let what = format!("fetching {}", t.url(path));
    retry::run(t.retry_policy(), &what, |_| {
        let mut buf = Vec::new();
        t.fetch(path, 0, limit, &mut buf)
            .map(|_| buf)
            .map_err(FetchError::verdict)
    })
    .map_err(|gave_up| gave_up.error)
}

/// Copies at most `limit - already` bytes, failing if the source has more.
fn copy_capped(
    mut from: impl Read,
    out: &mut dyn Write,
    already: u64,
    limit: u64,
    url: &dyn Fn() -> String,
) -> Result<u64, FetchError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = already;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total - already),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(FetchError::Network {
                    url: url(),
                    message: e.to_string(),
                })
            }
        };
        total += n as u64;
        if total > limit {
            return Err(FetchError::TooLarge { url: url(), limit });
        }
        out.write_all(&buf[..n])
            .map_err(|source| FetchError::Local {
                context: format!("writing {}", url()),
                source,
            })?;
    }
}

fn check_relative(path: &str) -> Result<(), FetchError> {
    // Paths are derived by ferry from verified digests and versions; this is a
    // second line of defence, not the first.
    manifests::SafeRelativePath::new(path)
        .map(|_| ())
        .map_err(|e| FetchError::Local {
            context: "refusing to fetch".into(),
            source: io::Error::other(e),
        })
}

pub struct FileTransport {
    base: PathBuf,
    retry: RetryPolicy,
}

impl FileTransport {
    pub fn new(base: PathBuf, retry: RetryPolicy) -> FileTransport {
        FileTransport { base, retry }
    }
}

impl Transport for FileTransport {
    fn url(&self, path: &str) -> String {
        format!("file://{}", self.base.join(path).display())
    }

    fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    fn fetch(
        &self,
        path: &str,
        offset: u64,
        limit: u64,
        out: &mut dyn Write,
    ) -> Result<u64, FetchError> {
        check_relative(path)?;
        let url = || self.url(path);
        // No timeout applies to a local file: a fifo planted in the
        // repository must be refused, not opened (which blocks).
        let mut file = open_regular(&self.base.join(path)).map_err(|e| match e {
            e if e.is_not_found() => FetchError::NotFound { url: url() },
            OpenError::NotRegular(_) => FetchError::Refused {
                url: url(),
                message: e.to_string(),
            },
            OpenError::Io(e) => FetchError::Network {
                url: url(),
                message: e.to_string(),
            },
        })?;
        if offset > 0 {
            let len = file
                .metadata()
                .map_err(|e| FetchError::Network {
                    url: url(),
                    message: e.to_string(),
                })?
                .len();
            if len < offset {
                return Err(FetchError::RangeMismatch {
                    url: url(),
                    message: format!(
                        "the file has {len} bytes, fewer than the {offset} already fetched"
                    ),
                });
            }
        }
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| FetchError::Network {
                url: url(),
                message: e.to_string(),
            })?;
        copy_capped(file, out, offset, limit, &url)
    }
}

pub struct HttpTransport {
    base: String,
    agent: ureq::Agent,
    retry: RetryPolicy,
    pace: PaceLimits,
}

/// Where Debian, Fedora/RHEL, openSUSE and Alpine keep the system CA bundle.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

impl HttpTransport {
    pub fn new(config: &RepositoryConfig, retry: RetryPolicy) -> Result<Self, NodeError> {
        Self::for_url(config, &config.url, retry)
    }

    /// A transport for `url` (the primary or a mirror) with the timeouts,
    /// pace and CA settings of `config`.
    pub fn for_url(
        config: &RepositoryConfig,
        url: &str,
        retry: RetryPolicy,
    ) -> Result<Self, NodeError> {
        let timeout = Some(Duration::from_secs(config.timeout_seconds));
        let pace = PaceLimits::from_config(config);
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(timeout)
            .timeout_recv_response(timeout)
            // A stall is a read that waits too long, headers or body.
            .timeout_per_read(Some(pace.stall))
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")));
        if url.starts_with("https://") {
            builder = builder.tls_config(tls_config(config)?);
        }
        let mut base = url.to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        Ok(HttpTransport {
            base,
            agent: builder.build().new_agent(),
            retry,
            pace,
        })
    }
}

/// Why https cannot be set up: no CA certificate to trust.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("https needs CA certificates: none found in the system store; install ca-certificates or set {setting}")]
    NoSystemStore { setting: String },
    /// The file holds no PEM certificate; `setting` when the operator
    /// named it (rather than the system store).
    #[error("{} holds no PEM certificate{}", path.display(), setting.as_ref().map_or(String::new(), |s| format!(" ({s})")))]
    NoCertificate {
        path: PathBuf,
        setting: Option<String>,
    },
}

fn tls_config(config: &RepositoryConfig) -> Result<ureq::tls::TlsConfig, NodeError> {
    tls_config_for(config.ca_file.as_deref(), "repository.ca_file")
}

/// TLS trusting the CA certificates in `ca_file`, or the system store when
/// it is `None`; `setting` names the key that sets `ca_file`, for errors.
/// Webhook notifications (`crate::notify`) use it too, so every https
/// connection a node makes trusts the same way.
pub fn tls_config_for(
    ca_file: Option<&Path>,
    setting: &str,
) -> Result<ureq::tls::TlsConfig, NodeError> {
    use ureq::tls::{PemItem, RootCerts, TlsConfig, TlsProvider};
    let (path, pinned) = match ca_file {
        Some(p) => (p.to_path_buf(), true),
        None => match SYSTEM_CA_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        {
            Some(p) => (p, false),
            None => {
                return Err(TlsSetupError::NoSystemStore {
                    setting: setting.to_string(),
                }
                .into())
            }
        },
    };
    let pem = std::fs::read(&path)
        .map_err(|e| NodeError::io(format!("cannot read CA file {}", path.display()), e))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path,
            setting: pinned.then(|| setting.to_string()),
        }
        .into());
    }
    Ok(TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::Specific(Arc::new(certs)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build())
}

impl Transport for HttpTransport {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    fn fetch(
        &self,
        path: &str,
        offset: u64,
        limit: u64,
        out: &mut dyn Write,
    ) -> Result<u64, FetchError> {
        check_relative(path)?;
        let url = self.url(path);
        let url_fn = || url.clone();
        let network = |message: String| FetchError::Network {
            url: url.clone(),
            message,
        };
        let mut request = self.agent.get(&url);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let response = request
            .call()
            .map_err(|e| call_error(&self.base, &url, e))?;
        let status = response.status().as_u16();
        match status {
            200 | 206 => {}
            404 | 410 => return Err(FetchError::NotFound { url }),
            // Our range starts at or past the end of the server's file: it
            // is not the file the part came from.
            416 => {
                return Err(FetchError::RangeMismatch {
                    url,
                    message: format!("the server has no bytes from offset {offset} (HTTP 416)"),
                })
            }
            _ => {
                return Err(FetchError::Http {
                    url,
                    status,
                    retry_after: retry::retry_after_of(response.headers()),
                })
            }
        }
        // Where the body starts in the file.
        let start = if status == 206 {
            let header = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok());
            let range = header.and_then(parse_content_range);
            match range {
                Some(r) if r.start == offset => {
                    if r.end >= limit || r.total.is_some_and(|total| total > limit) {
                        return Err(FetchError::TooLarge { url, limit });
                    }
                    offset
                }
                _ => {
                    return Err(FetchError::RangeMismatch {
                        url,
                        message: format!(
                            "asked for bytes from {offset}, the server sent Content-Range {:?}",
                            header.unwrap_or("(none)")
                        ),
                    })
                }
            }
        } else {
            0
        };
        if let Some(len) = response.body().content_length() {
            // The server's number: a length near u64::MAX must not wrap.
            let Some(end) = start.checked_add(len).filter(|end| *end <= limit) else {
                return Err(FetchError::TooLarge { url, limit });
            };
            if end < offset {
                return Err(FetchError::RangeMismatch {
                    url,
                    message: format!(
                        "the file has {len} bytes, fewer than the {offset} already fetched"
                    ),
                });
            }
        }
        let mut reader = Paced::new(
            response
                .into_body()
                .into_with_config()
                .limit(limit.saturating_add(1))
                .reader(),
            self.pace,
        );
        if start < offset {
            // The server ignored the Range header and sends the whole file
            // (HTTP allows that): skip what the part already holds.
            let skip = offset - start;
            let skipped = io::copy(&mut (&mut reader).take(skip), &mut io::sink())
                .map_err(|e| network(e.to_string()))?;
            if skipped < skip {
                return Err(FetchError::RangeMismatch {
                    url,
                    message: format!(
                        "the file ended after {} bytes, before the {offset} already fetched",
                        start + skipped
                    ),
                });
            }
        }
        copy_capped(reader, out, offset, limit, &url_fn)
    }
}

/// Sorts a failed request: what a retry may fix (connection, timeout, I/O)
/// from what it cannot (TLS and certificates, a bad URL).
fn call_error(base: &str, url: &str, e: ureq::Error) -> FetchError {
    let message = match &e {
        ureq::Error::Timeout(_) => format!(
            "{e} (repository.timeout_seconds bounds connecting and the response headers, repository.stall_timeout_seconds each read)"
        ),
        ureq::Error::Io(io) => io.to_string(),
        _ => e.to_string(),
    };
    let url = url.to_string();
    if no_connection(&e) {
        return FetchError::Unreachable {
            base: base.to_string(),
            url,
            message,
        };
    }
    match e {
        ureq::Error::Io(_)
        | ureq::Error::Timeout(_)
        | ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Protocol(_)
        | ureq::Error::BodyStalled => FetchError::Network { url, message },
        _ => FetchError::Refused { url, message },
    }
}

/// Whether `e` means no connection was made: the server, or the way to
/// it, is the problem.
fn no_connection(e: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(timeout) => {
            matches!(timeout, ureq::Timeout::Connect | ureq::Timeout::Resolve)
        }
        ureq::Error::Io(io) => {
            matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::NetworkDown
                    | ErrorKind::AddrNotAvailable
            )
            // A failed name lookup reaches ureq as std's resolver error,
            // which has no kind of its own; its text is std's.
            || io.to_string().starts_with("failed to lookup address")
        }
        _ => false,
    }
}

/// A `Content-Range: bytes START-END/TOTAL` header (`TOTAL` may be `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    start: u64,
    end: u64,
    total: Option<u64>,
}

fn parse_content_range(header: &str) -> Option<ContentRange> {
    let spec = header.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = spec.split_once('/')?;
    let (start, end) = range.trim().split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some(ContentRange { start, end, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_parsed_strictly() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some(ContentRange {
                start: 100,
                end: 199,
                total: Some(200)
            })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/*").map(|r| (r.start, r.total)),
            Some((5, None))
        );
        for bad in [
            "",
            "bytes */200",
            "bytes 10-5/200",
            "bytes 0-200/200",
            "items 0-1/2",
            "bytes 0-1",
            "bytes a-1/2",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn transient_and_permanent_failures_are_told_apart() {
        let url = || "u".to_string();
        let transient = [
            FetchError::Network {
                url: url(),
                message: "reset".into(),
            },
            FetchError::RangeMismatch {
                url: url(),
                message: "416".into(),
            },
            FetchError::Http {
                url: url(),
                status: 500,
                retry_after: None,
            },
            FetchError::Http {
                url: url(),
                status: 503,
                retry_after: None,
            },
            FetchError::Http {
                url: url(),
                status: 429,
                retry_after: None,
            },
        ];
        let permanent = [
            FetchError::NotFound { url: url() },
            FetchError::TooLarge {
                url: url(),
                limit: 1,
            },
            FetchError::Http {
                url: url(),
                status: 403,
                retry_after: None,
            },
            FetchError::Refused {
                url: url(),
                message: "bad certificate".into(),
            },
            FetchError::Local {
                context: "disk".into(),
                source: io::Error::other("full"),
            },
        ];
        assert!(transient.iter().all(FetchError::is_transient));
        assert!(!permanent.iter().any(FetchError::is_transient));
    }

    #[test]
    fn a_server_asked_pause_is_honoured_up_to_a_minute_and_only_when_transient() {
        let http = |status, secs: Option<u64>| FetchError::Http {
            url: "http://r/x".into(),
            status,
            retry_after: secs.map(Duration::from_secs),
        };
        assert_eq!(
            http(503, Some(7)).asked_pause(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            http(429, Some(86_400)).asked_pause(),
            Some(retry::LONGEST_ASKED_PAUSE)
        );
        assert_eq!(http(503, None).asked_pause(), None);
        assert!(matches!(
            http(503, Some(7)).verdict(),
            Verdict::RetryAfter(_, pause) if pause == Duration::from_secs(7)
        ));
        assert!(matches!(http(503, None).verdict(), Verdict::Retry(_)));
        // A permanent failure stays permanent, whatever it asks.
        assert!(matches!(http(403, Some(7)).verdict(), Verdict::Fail(_)));
        assert!(http(503, Some(7))
            .to_string()
            .ends_with("HTTP 503 (Retry-After: 7 s)"));
    }

    /// An HTTP transport against a one-shot server on 127.0.0.1 that
    /// answers any request with `response`; returns what `fetch` from
    /// `offset` gave and the request the server saw.
    fn http_fetch(response: &'static [u8], offset: u64) -> (Result<Vec<u8>, FetchError>, String) {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(response).unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        let config = RepositoryConfig {
            url: format!("http://{addr}/"),
            channel: "stable".into(),
            public_keys: vec![],
            ca_file: None,
            timeout_seconds: 10,
            retries: 0,
            mirrors: vec![],
            stall_timeout_seconds: None,
            min_bytes_per_second: 1024,
        };
        let t = HttpTransport::new(&config, RetryPolicy::never()).unwrap();
        let mut out = Vec::new();
        let result = t.fetch("objects/f", offset, 10, &mut out).map(|_| out);
        (result, server.join().unwrap())
    }

    #[test]
    fn a_resume_continues_only_where_the_server_says_it_does() {
        // A correct 206: the body is appended as is.
        let (got, request) = http_fetch(
            b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 4-9/10\r\nContent-Length: 6\r\nConnection: close\r\n\r\n456789",
            4,
        );
        assert_eq!(got.unwrap(), b"456789");
        assert!(
            request.to_lowercase().contains("range: bytes=4-"),
            "{request}"
        );

        // A 206 for another range, or without Content-Range: start again.
        for response in [
            &b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-9/10\r\nContent-Length: 8\r\nConnection: close\r\n\r\n23456789"[..],
            b"HTTP/1.1 206 Partial Content\r\nContent-Length: 6\r\nConnection: close\r\n\r\n456789",
            b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */3\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ] {
            let (got, _) = http_fetch(response, 4);
            assert!(
                matches!(got, Err(FetchError::RangeMismatch { .. })),
                "{got:?} for {}",
                String::from_utf8_lossy(response)
            );
        }

        // A range larger than signed is refused before any byte is kept.
        let (got, _) = http_fetch(
            b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 4-11/12\r\nContent-Length: 8\r\nConnection: close\r\n\r\n456789ab",
            4,
        );
        assert!(matches!(got, Err(FetchError::TooLarge { .. })), "{got:?}");
    }

    #[test]
    fn a_server_ignoring_range_is_skipped_to_the_offset() {
        let (got, _) = http_fetch(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
            4,
        );
        assert_eq!(got.unwrap(), b"456789");
        // Whole file shorter than the part: it is not the same file.
        let (got, _) = http_fetch(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n012",
            4,
        );
        assert!(
            matches!(got, Err(FetchError::RangeMismatch { .. })),
            "{got:?}"
        );
        // Cut short while skipping: a network failure, worth a retry.
        let (got, _) = http_fetch(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n01",
            4,
        );
        assert!(got.as_ref().is_err_and(FetchError::is_transient), "{got:?}");
        assert!(matches!(got, Err(FetchError::Network { .. })), "{got:?}");
    }

    #[test]
    fn file_transport_resumes_at_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("objects")).unwrap();
        std::fs::write(dir.path().join("objects/f"), b"0123456789").unwrap();
        let t = FileTransport::new(dir.path().to_path_buf(), RetryPolicy::never());
        let mut out = Vec::new();
        assert_eq!(t.fetch("objects/f", 4, 10, &mut out).unwrap(), 6);
        assert_eq!(out, b"456789");
        let err = t.fetch("objects/f", 11, 20, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, FetchError::RangeMismatch { .. }), "{err}");
        let err = t.fetch("objects/f", 0, 9, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");
    }
}

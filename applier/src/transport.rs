//! Fetching repository files over `file://` and `http(s)://`.
//!
//! Transport knows nothing about signatures; it only promises never to read
//! more than the caller's cap, which is always a size from signed metadata or
//! a fixed bound for the index. That cap is what stops an endless or
//! oversized response from filling a node's disk before verification can
//! reject it. Offsets let a partial download continue where it stopped.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::config::RepositoryConfig;
use crate::error::NodeError;

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("{url} was not found")]
    NotFound { url: String },
    #[error("{url} is larger than the {limit} bytes the signed metadata allows")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: server answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: {message}")]
    Network { url: String, message: String },
    #[error("{context}: {source}")]
    Local {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl From<FetchError> for NodeError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::TooLarge { .. } => NodeError::verification(e.to_string()),
            other => NodeError::Other(other.to_string()),
        }
    }
}

pub trait Transport {
    /// The full location of `path`, for messages.
    fn url(&self, path: &str) -> String;

    /// Streams `path` from byte `offset` into `out`. Fails with `TooLarge` as
    /// soon as the file would exceed `limit` bytes counted from its start.
    /// Returns the number of bytes written to `out`.
    fn fetch(
        &self,
        path: &str,
        offset: u64,
        limit: u64,
        out: &mut dyn Write,
    ) -> Result<u64, FetchError>;
}

/// Fetches a whole small file (index, manifest, signature) into memory.
pub fn fetch_bytes(t: &dyn Transport, path: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
    let mut buf = Vec::new();
    t.fetch(path, 0, limit, &mut buf)?;
    Ok(buf)
}

pub fn open(config: &RepositoryConfig) -> Result<Box<dyn Transport>, NodeError> {
    if let Some(path) = config.url.strip_prefix("file://") {
        return Ok(Box::new(FileTransport {
            base: PathBuf::from(path),
        }));
    }
    Ok(Box::new(HttpTransport::new(config)?))
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
}

impl Transport for FileTransport {
    fn url(&self, path: &str) -> String {
        format!("file://{}", self.base.join(path).display())
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
        let mut file = File::open(self.base.join(path)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => FetchError::NotFound { url: url() },
            _ => FetchError::Network {
                url: url(),
                message: e.to_string(),
            },
        })?;
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
}

/// Where Debian, Fedora/RHEL, openSUSE and Alpine keep the system CA bundle.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

impl HttpTransport {
    pub fn new(config: &RepositoryConfig) -> Result<Self, NodeError> {
        let timeout = Some(Duration::from_secs(config.timeout_seconds));
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(timeout)
            .timeout_recv_response(timeout)
            .timeout_per_read(timeout)
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")));
        if config.url.starts_with("https://") {
            builder = builder.tls_config(tls_config(config)?);
        }
        let mut base = config.url.clone();
        if !base.ends_with('/') {
            base.push('/');
        }
        Ok(HttpTransport {
            base,
            agent: builder.build().new_agent(),
        })
    }
}

fn tls_config(config: &RepositoryConfig) -> Result<ureq::tls::TlsConfig, NodeError> {
    use ureq::tls::{PemItem, RootCerts, TlsConfig, TlsProvider};
    let (path, pinned) = match &config.ca_file {
        Some(p) => (p.clone(), true),
        None => match SYSTEM_CA_BUNDLES.iter().map(PathBuf::from).find(|p| p.exists()) {
            Some(p) => (p, false),
            None => {
                return Err(NodeError::Other(
                    "https needs CA certificates: none found in the system store; install ca-certificates or set repository.ca_file".into(),
                ))
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
        return Err(NodeError::Other(format!(
            "{} holds no PEM certificate{}",
            path.display(),
            if pinned { " (repository.ca_file)" } else { "" }
        )));
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
        let mut request = self.agent.get(&url);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let response = request.call().map_err(|e| FetchError::Network {
            url: url.clone(),
            message: e.to_string(),
        })?;
        let status = response.status().as_u16();
        match status {
            200 | 206 => {}
            404 | 410 => return Err(FetchError::NotFound { url }),
            _ => return Err(FetchError::Http { url, status }),
        }
        if let Some(len) = response.body().content_length() {
            let start = if status == 206 { offset } else { 0 };
            if start + len > limit {
                return Err(FetchError::TooLarge { url, limit });
            }
        }
        let mut reader = response
            .into_body()
            .into_with_config()
            .limit(limit.saturating_add(1))
            .reader();
        if offset > 0 && status == 200 {
            // The server ignored the Range header: skip what we already have.
            let skipped =
                io::copy(&mut (&mut reader).take(offset), &mut io::sink()).map_err(|e| {
                    FetchError::Network {
                        url: url.clone(),
                        message: e.to_string(),
                    }
                })?;
            if skipped < offset {
                return Err(FetchError::Network {
                    url,
                    message: "file is shorter than the part already fetched".into(),
                });
            }
        }
        copy_capped(reader, out, offset, limit, &url_fn)
    }
}

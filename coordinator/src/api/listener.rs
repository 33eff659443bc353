//! The accept loop: a bounded number of connections, each on a thread of
//! its own, and a listener that outlives running out of file descriptors.
//!
//! A flood of idle connections must not stop the API (a stopped API that
//! exits 0 is not restarted by `Restart=on-failure`), nor hold a thread
//! per connection without bound. So: at most `max_connections` are served
//! at once and the rest are refused at once (503 in clear; closed on a TLS
//! port, where no answer can be sent before a handshake); a transient
//! accept error (no descriptor left, a connection aborted before it was
//! accepted) is waited out with a growing pause; any other accept error
//! ends `serve` with an error, so the process exits non-zero.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::io::Errno;

use super::http::{Connection, DeadlineStream, REQUEST_DEADLINE};
use crate::error::{CoordinatorError, Result};

/// The connection cap when `--max-connections` is not given: this many,
/// or half the process's descriptor limit if that is lower (the other half
/// is left for the records, logs and child processes requests open).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// The longest pause between two accepts after transient errors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// [`DEFAULT_MAX_CONNECTIONS`], lowered to half of `RLIMIT_NOFILE`.
pub fn default_max_connections() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    match limit {
        Some(limit) => DEFAULT_MAX_CONNECTIONS.min((limit / 2).max(1) as usize),
        None => DEFAULT_MAX_CONNECTIONS,
    }
}

/// The server's TLS setup from `--tls-cert` and `--tls-key` (PEM).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let bad = |path: &Path, what: &str, reason: String| CoordinatorError::Tls {
        path: path.to_path_buf(),
        what: what.to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, "--tls-cert", e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(
            cert,
            "--tls-cert",
            "no PEM certificate in it".to_string(),
        ));
    }
    let private_key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, "--tls-key", e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, "--tls-cert", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map(Arc::new)
        .map_err(|e| {
            bad(
                key,
                "--tls-key",
                format!("{e} (is it the key of the certificate in --tls-cert?)"),
            )
        })
}

/// Whether an accept error is worth waiting out. accept(2) reports
/// running out of descriptors or memory, and errors of connections that
/// died in the queue (Linux passes their network errors on); none of them
/// says the listening socket is broken.
fn transient(error: &io::Error) -> bool {
    let errno = Errno::from_io_error(error);
    [
        Errno::MFILE,
        Errno::NFILE,
        Errno::NOBUFS,
        Errno::NOMEM,
        Errno::CONNABORTED,
        Errno::INTR,
        Errno::AGAIN,
        Errno::PROTO,
        Errno::PERM,
        Errno::NETDOWN,
        Errno::NOPROTOOPT,
        Errno::HOSTDOWN,
        Errno::NONET,
        Errno::HOSTUNREACH,
        Errno::NETUNREACH,
        Errno::TIMEDOUT,
        Errno::CONNRESET,
    ]
    .into_iter()
    .any(|transient| errno == Some(transient))
}

/// One connection being served; counted until dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts connections forever, serving each with `serve` on a thread of
/// its own; returns only on a fatal accept error.
pub fn run(
    listener: &TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
    serve: Arc<dyn Fn(Connection) + Send + Sync>,
) -> Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    let mut backoff = Duration::ZERO;
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if transient(&e) => {
                if backoff.is_zero() {
                    errln!("warning: accepting a connection failed, retrying: {e}");
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_BACKOFF);
                std::thread::sleep(backoff);
                continue;
            }
            Err(e) => {
                return Err(CoordinatorError::io(
                    "cannot accept connections any more",
                    e,
                ))
            }
        };
        backoff = Duration::ZERO;
        if open.load(Ordering::SeqCst) >= max_connections {
            refuse(stream, tls.is_some());
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(Arc::clone(&open));
        let tls = tls.clone();
        let serve = Arc::clone(&serve);
        let started = std::thread::Builder::new().spawn(move || {
            let _slot = slot;
            if let Some(connection) = connect(stream, tls) {
                serve(connection);
            }
        });
        if let Err(e) = started {
            // The stream and the slot went with the closure: the client
            // sees its connection closed. Threads are short: wait a bit.
            errln!("warning: cannot start a thread for a connection: {e}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The connection over `stream`, with its request deadline running from
/// now (the TLS handshake counts against it).
fn connect(mut stream: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) -> Option<Connection> {
    // One deadline for the whole request: the wait for a TLS client's
    // first byte counts against it, or a silent client would hold its
    // slot for two deadlines.
    let deadline = Instant::now() + REQUEST_DEADLINE;
    if tls.is_some() && !starts_a_tls_handshake(&mut stream, deadline)? {
        // The client already sent its request (and any token) in clear;
        // saying so plainly is all that is left to do.
        let body = br#"{"error": "this server speaks HTTPS only: use an https:// URL"}"#;
        let reply = super::http::response(400, &[("Content-Type", "application/json")], body);
        let _ = stream.write_all(&reply);
        super::http::close_after_answer(&stream);
        return None;
    }
    let stream = DeadlineStream::new(stream, deadline).ok()?;
    Some(match tls {
        None => Connection::Plain(stream),
        Some(config) => {
            let session = rustls::ServerConnection::new(config).ok()?;
            Connection::Tls(Box::new(rustls::StreamOwned::new(session, stream)))
        }
    })
}

/// Whether the client's first byte opens a TLS handshake record (0x16),
/// waiting for it up to the request deadline; `None`: nothing came.
fn starts_a_tls_handshake(stream: &mut TcpStream, deadline: Instant) -> Option<bool> {
    let left = deadline.saturating_duration_since(Instant::now());
    stream
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    let mut first = [0u8; 1];
    match stream.peek(&mut first) {
        Ok(1) => Some(first[0] == 0x16),
        _ => None,
    }
}

/// Turns away a connection over the cap without waiting on it.
fn refuse(mut stream: TcpStream, tls: bool) {
    if !tls && stream.set_nonblocking(true).is_ok() {
        let body = br#"{"error": "too many connections at once: retry in a moment"}"#;
        let reply = super::http::response(
            503,
            &[("Content-Type", "application/json"), ("Retry-After", "1")],
            body,
        );
        let _ = stream.write_all(&reply);
        // The answer is followed by a FIN, and the request the client
        // already sent is read away: closing with it unread would make the
        // kernel send a reset that can destroy the 503 before the client
        // reads it. Only what is already here is read; the accept loop
        // never waits on a refused client.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    #[test]
    fn running_out_of_descriptors_is_transient_a_broken_listener_is_not() {
        for errno in [
            Errno::MFILE,
            Errno::NFILE,
            Errno::CONNABORTED,
            Errno::NOBUFS,
        ] {
            assert!(transient(&io::Error::from_raw_os_error(
                errno.raw_os_error()
            )));
        }
        for errno in [Errno::BADF, Errno::INVAL, Errno::NOTSOCK, Errno::FAULT] {
            assert!(!transient(&io::Error::from_raw_os_error(
                errno.raw_os_error()
            )));
        }
    }

    /// A listening socket shut down under the server makes accept fail
    /// with EINVAL: the loop returns an error (exit 1) instead of spinning
    /// or returning Ok (exit 0, which `Restart=on-failure` ignores).
    #[test]
    fn a_fatal_accept_error_ends_the_loop_with_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let same_socket = TcpStream::from(OwnedFd::from(listener.try_clone().unwrap()));
        same_socket.shutdown(std::net::Shutdown::Both).unwrap();
        let error = run(&listener, None, 4, Arc::new(|_| {})).unwrap_err();
        assert!(
            error.to_string().contains("cannot accept connections"),
            "{error}"
        );
    }
}

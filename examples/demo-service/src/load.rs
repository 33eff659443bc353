//! A load generator that counts every request a restart dropped.
//!
//! Each worker opens a new connection per request, as a fresh client
//! would: that is what a restart can break (refused while nothing listens,
//! reset while queued on a closing listener), whereas a kept-alive
//! connection would only test the old instance's keep-alive handling.
//! Every request is counted: a response other than a complete 200, a
//! refused or reset connection and a timeout all count as failed.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long one request may take before it counts as failed: far above a
/// loopback round trip, short enough to notice a stuck server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How many error messages a report keeps (the first ones).
const KEPT_ERRORS: usize = 8;

/// What the workers saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Complete 200 responses.
    pub ok: u64,
    /// Everything else.
    pub failed: u64,
    /// The first few failures, said in words.
    pub errors: Vec<String>,
    /// How many ok responses each version gave.
    pub versions: BTreeMap<String, u64>,
}

impl LoadReport {
    fn record(&mut self, outcome: Result<String, String>) {
        match outcome {
            Ok(version) => {
                self.ok += 1;
                *self.versions.entry(version).or_default() += 1;
            }
            Err(error) => {
                self.failed += 1;
                if self.errors.len() < KEPT_ERRORS {
                    self.errors.push(error);
                }
            }
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: LoadReport) {
        self.ok += other.ok;
        self.failed += other.failed;
        for error in other.errors {
            if self.errors.len() < KEPT_ERRORS {
                self.errors.push(error);
            }
        }
        for (version, count) in other.versions {
            *self.versions.entry(version).or_default() += count;
        }
    }
}

/// Workers sending `GET /version` to one address until stopped.
pub struct LoadGenerator {
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<LoadReport>>,
}

impl LoadGenerator {
    /// Starts `workers` threads, each sending one request after another.
    pub fn start(addr: SocketAddr, workers: usize) -> LoadGenerator {
        let stopping = Arc::new(AtomicBool::new(false));
        let workers = (0..workers.max(1))
            .map(|worker| {
                let stopping = Arc::clone(&stopping);
                thread::Builder::new()
                    .name(format!("load-{worker}"))
                    .spawn(move || {
                        let mut report = LoadReport::default();
                        while !stopping.load(Ordering::Relaxed) {
                            let outcome =
                                get_version(addr).map_err(|e| format!("worker {worker}: {e}"));
                            if outcome.is_err() {
                                // Nothing listening fails in microseconds:
                                // count it, but do not spin a core on it.
                                thread::sleep(Duration::from_millis(1));
                            }
                            report.record(outcome);
                        }
                        report
                    })
                    .expect("cannot start a load generator thread")
            })
            .collect();
        LoadGenerator { stopping, workers }
    }

    /// Stops the workers after their current request; their merged report.
    pub fn stop(self) -> LoadReport {
        self.stopping.store(true, Ordering::Relaxed);
        let mut report = LoadReport::default();
        for worker in self.workers {
            report.merge(worker.join().expect("a load generator thread panicked"));
        }
        report
    }
}

/// One request on a new connection; the version a 200 response gave.
fn get_version(addr: SocketAddr) -> Result<String, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| format!("socket options: {e}"))?;
    stream
        .write_all(
            format!("GET /version HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("receive: {e} (after {} bytes)", response.len()))?;
    let (status, body) = parse_response(&response)?;
    if status != 200 {
        return Err(format!("status {status}: {}", body.trim_end()));
    }
    Ok(body.trim_end().to_string())
}

/// The status and body of a complete Content-Length response.
fn parse_response(response: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(format!(
            "incomplete response ({} bytes, no end of head)",
            response.len()
        ));
    };
    let status = head
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP/1.1 response: {head:?}"))?;
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .ok_or_else(|| format!("response without Content-Length: {head:?}"))?;
    if body.len() != length {
        return Err(format!(
            "truncated response: Content-Length {length}, {} bytes of body",
            body.len()
        ));
    }
    Ok((status, body.to_string()))
}

/// Opens `n` connections and leaves each idle after one keep-alive
/// `GET /version`, which proves the server accepted it (a connection only
/// queued in the backlog would not be held by the server at all).
pub fn hold_idle_connections(addr: SocketAddr, n: usize) -> io::Result<Vec<TcpStream>> {
    let request = format!("GET /version HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    (0..n)
        .map(|i| {
            let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)?;
            stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
            stream.write_all(request.as_bytes())?;
            read_one_response(&mut stream).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("idle connection {i} of {n} to {addr}: {e}"),
                )
            })?;
            Ok(stream)
        })
        .collect()
}

/// Reads exactly one Content-Length response from a kept-alive connection.
fn read_one_response(stream: &mut TcpStream) -> io::Result<()> {
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte up to the end of the head: reading further would eat
    // into nothing (the server sends nothing else) but could block.
    while !response.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the response head",
            ));
        }
        response.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&response);
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Content-Length"))?;
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "not a 200 response: {}",
                head.lines().next().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_complete_response_counts() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n2.0.0\n";
        assert_eq!(parse_response(ok), Ok((200, "2.0.0\n".to_string())));
        let truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n2.0";
        assert!(parse_response(truncated).unwrap_err().contains("truncated"));
        assert!(parse_response(b"").unwrap_err().contains("incomplete"));
    }

    #[test]
    fn a_refused_connection_is_a_failure() {
        // Bind then drop: the port is free, nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let load = LoadGenerator::start(addr, 1);
        thread::sleep(Duration::from_millis(30));
        let report = load.stop();
        assert_eq!(report.ok, 0);
        assert!(report.failed > 0);
        assert!(report.errors[0].contains("connect"), "{:?}", report.errors);
    }

    #[test]
    fn merging_adds_counts() {
        let mut a = LoadReport::default();
        a.record(Ok("1.0.0".into()));
        let mut b = LoadReport::default();
        b.record(Ok("1.0.0".into()));
        b.record(Ok("2.0.0".into()));
        b.record(Err("boom".into()));
        a.merge(b);
        assert_eq!((a.ok, a.failed), (3, 1));
        assert_eq!(a.versions["1.0.0"], 2);
        assert_eq!(a.errors, vec!["boom".to_string()]);
    }
}

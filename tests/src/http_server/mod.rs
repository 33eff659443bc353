//! A small HTTP/1.1 static file server on 127.0.0.1, with fault injection.
//!
//! A ferry repository is a directory of static files, so a node fetching over
//! HTTP needs nothing more than GET, HEAD and byte ranges. Serving it from
//! the test process (threads and `std::net`, no async runtime) lets a test
//! count what a node downloaded and make the network misbehave on purpose:
//! slow answers, error statuses, cut or corrupted bodies, stalls, trickles,
//! endless bodies, servers that ignore `Range` ([`Fault`], by path prefix),
//! and stale or foreign files served in place of the real ones
//! ([`TestServer::snapshot`], [`TestServer::replay`],
//! [`TestServer::serve_bytes`], by exact path). It binds 127.0.0.1 only and
//! stops when dropped.
//!
//! Every response carries `Connection: close`: one request per connection
//! keeps the server simple and every client copes with it.

mod faults;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use faults::Fault;

/// The longest a [`Fault::Stall`], [`Fault::Trickle`] or [`Fault::Endless`]
/// holds a connection: the server stops by itself even if a test forgets
/// to drop it.
pub const STALL_LIMIT: Duration = Duration::from_secs(120);

/// One request the server received.
/// Every request served since the last [`TestServer::reset_counters`].
/// An answer still being sent when the log is reset (an endless body, say)
/// finds its entry gone: it updates nothing, rather than another request's
/// entry or a missing one.
#[derive(Debug, Default)]
struct RequestLog {
    entries: Vec<Request>,
    /// Entries forgotten by resets: a request's slot counts from the start.
    forgotten: usize,
}

impl RequestLog {
    fn get_mut(&mut self, slot: usize) -> Option<&mut Request> {
        let at = slot.checked_sub(self.forgotten)?;
        self.entries.get_mut(at)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request path without the leading `/` or query, e.g. `objects/ab12…`.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    pub status: u16,
    /// Body bytes handed to the socket for this request.
    pub body_bytes: u64,
    /// When its head had been read.
    pub at: Instant,
}

struct FaultRule {
    prefix: String,
    /// Match the path exactly rather than as a prefix.
    exact: bool,
    fault: Fault,
    /// How many more requests it applies to; `None`: all of them.
    remaining: Option<u64>,
}

impl FaultRule {
    fn matches(&self, path: &str) -> bool {
        if self.exact {
            path == self.prefix
        } else {
            path.starts_with(self.prefix.as_str())
        }
    }
}

struct State {
    root: PathBuf,
    shutdown: AtomicBool,
    /// Every matching fault applies.
    faults: Mutex<Vec<FaultRule>>,
    /// Bytes served instead of the file at exactly this path.
    overrides: Mutex<BTreeMap<String, Vec<u8>>>,
    /// Copies of files taken by [`TestServer::snapshot`].
    snapshots: Mutex<BTreeMap<String, Vec<u8>>>,
    log: Mutex<RequestLog>,
}

impl State {
    fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}

/// A path as the server keys it: without a leading `/`.
fn key(path: &str) -> String {
    path.trim_start_matches('/').to_string()
}

/// A running server. Dropping it stops it.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Serves `dir` on `127.0.0.1` at a free port.
    pub fn serve(dir: impl AsRef<Path>) -> TestServer {
        let root = dir.as_ref().to_path_buf();
        assert!(
            root.is_dir(),
            "TestServer::serve: {} is not a directory",
            root.display()
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(State {
            root,
            shutdown: AtomicBool::new(false),
            faults: Mutex::new(Vec::new()),
            overrides: Mutex::new(BTreeMap::new()),
            snapshots: Mutex::new(BTreeMap::new()),
            log: Mutex::new(RequestLog::default()),
        });
        let accept_state = Arc::clone(&state);
        let acceptor = thread::Builder::new()
            .name(format!("test-http-{}", addr.port()))
            .spawn(move || accept_loop(listener, accept_state))
            .expect("spawn the accept thread");
        TestServer {
            addr,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies `fault` to every request whose path (without the leading `/`)
    /// starts with `path_prefix` (a leading `/` in the prefix is ignored);
    /// `""` matches every request. Faults add up; see [`clear_faults`].
    ///
    /// [`clear_faults`]: TestServer::clear_faults
    pub fn set_fault(&self, path_prefix: &str, fault: Fault) {
        self.add_fault(path_prefix, fault, None);
    }

    /// Like [`set_fault`], but the fault applies only to the first `times`
    /// requests it matches (whether or not another fault pre-empted it, as
    /// a status fault pre-empts a body fault); later ones are answered
    /// normally as far as this fault is concerned.
    ///
    /// [`set_fault`]: TestServer::set_fault
    pub fn set_fault_times(&self, path_prefix: &str, fault: Fault, times: u64) {
        self.add_fault(path_prefix, fault, Some(times));
    }

    /// Like [`set_fault`], but only for requests of exactly `path`: a
    /// prefix `index.json` would also hit `index.json.minisig`.
    ///
    /// [`set_fault`]: TestServer::set_fault
    pub fn set_fault_exact(&self, path: &str, fault: Fault) {
        self.state.faults.lock().unwrap().push(FaultRule {
            prefix: key(path),
            exact: true,
            fault,
            remaining: None,
        });
    }

    fn add_fault(&self, path_prefix: &str, fault: Fault, remaining: Option<u64>) {
        self.state.faults.lock().unwrap().push(FaultRule {
            prefix: key(path_prefix),
            exact: false,
            fault,
            remaining,
        });
    }

    /// Removes every fault, replay and served-bytes override: the server
    /// serves the directory as it is again. Snapshots are kept.
    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
        self.state.overrides.lock().unwrap().clear();
    }

    /// Serves `bytes` for requests of exactly `path` instead of the file
    /// (which need not exist), until [`clear_faults`] or [`stop_serving`].
    /// Faults still apply on top.
    ///
    /// [`clear_faults`]: TestServer::clear_faults
    /// [`stop_serving`]: TestServer::stop_serving
    pub fn serve_bytes(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        self.state
            .overrides
            .lock()
            .unwrap()
            .insert(key(path), bytes.into());
    }

    /// Serves the file at `path` from the directory again.
    pub fn stop_serving(&self, path: &str) {
        self.state.overrides.lock().unwrap().remove(&key(path));
    }

    /// Keeps a copy of the file at `path` as it is now, for [`replay`].
    ///
    /// [`replay`]: TestServer::replay
    pub fn snapshot(&self, path: &str) {
        let file = self.state.root.join(key(path));
        let bytes = std::fs::read(&file)
            .unwrap_or_else(|e| panic!("snapshot: cannot read {}: {e}", file.display()));
        self.state
            .snapshots
            .lock()
            .unwrap()
            .insert(key(path), bytes);
    }

    /// Serves the copy [`snapshot`] took of `path` instead of its current
    /// version: a mirror replaying an earlier file.
    ///
    /// [`snapshot`]: TestServer::snapshot
    pub fn replay(&self, path: &str) {
        let bytes = self
            .state
            .snapshots
            .lock()
            .unwrap()
            .get(&key(path))
            .cloned()
            .unwrap_or_else(|| panic!("replay: no snapshot of {path}"));
        self.serve_bytes(path, bytes);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().entries.clone()
    }

    /// Requests whose path starts with `path_prefix`.
    pub fn requests_for(&self, path_prefix: &str) -> Vec<Request> {
        let prefix = path_prefix.trim_start_matches('/');
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// Body bytes served for all requests so far.
    pub fn bytes_served(&self) -> u64 {
        self.state
            .log
            .lock()
            .unwrap()
            .entries
            .iter()
            .map(|r| r.body_bytes)
            .sum()
    }

    /// Body bytes served per path.
    pub fn bytes_served_by_path(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for r in self.state.log.lock().unwrap().entries.iter() {
            *out.entry(r.path.clone()).or_insert(0) += r.body_bytes;
        }
        out
    }

    /// Forgets the request log (faults stay).
    pub fn reset_counters(&self) {
        let mut log = self.state.log.lock().unwrap();
        log.forgotten += log.entries.len();
        log.entries.clear();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.state.shutdown.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    for stream in listener.incoming() {
        if state.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let state = Arc::clone(&state);
        // Connection threads are not joined: a stalled one ends on shutdown.
        let _ = thread::Builder::new()
            .name("test-http-conn".into())
            .spawn(move || {
                let _ = handle(stream, &state);
            });
    }
}

struct Parsed {
    method: String,
    target: String,
    range: Option<String>,
}

fn read_request(stream: &mut TcpStream) -> io::Result<Option<Parsed>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return Ok(None);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let mut range = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    Ok(Some(Parsed {
        method: method.to_string(),
        target: target.to_string(),
        range,
    }))
}

fn handle(mut stream: TcpStream, state: &State) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let Some(request) = read_request(&mut stream)? else {
        return Ok(());
    };
    let raw_path = request.target.split(['?', '#']).next().unwrap_or_default();
    let path = percent_decode(raw_path.trim_start_matches('/'));
    let faults: Vec<Fault> = state
        .faults
        .lock()
        .unwrap()
        .iter_mut()
        .filter(|rule| rule.matches(&path))
        .filter_map(|rule| match &mut rule.remaining {
            Some(0) => None,
            Some(n) => {
                *n -= 1;
                Some(rule.fault.clone())
            }
            None => Some(rule.fault.clone()),
        })
        .collect();
    let slot = {
        let mut log = state.log.lock().unwrap();
        log.entries.push(Request {
            method: request.method.clone(),
            path: path.clone(),
            range: request.range.clone(),
            status: 0,
            body_bytes: 0,
            at: Instant::now(),
        });
        log.forgotten + log.entries.len() - 1
    };
    let set_status = |status: u16| {
        if let Some(entry) = state.log.lock().unwrap().get_mut(slot) {
            entry.status = status;
        }
    };

    for fault in &faults {
        if let Fault::Delay(d) = fault {
            sleep_unless_shutdown(state, *d);
        }
    }
    let head = request.method == "HEAD";
    if request.method != "GET" && !head {
        set_status(405);
        return simple(&mut stream, 405, "only GET and HEAD\n", head);
    }
    if let Some((status, retry_after)) = faults.iter().find_map(|f| match f {
        Fault::Status(s) => Some((*s, None)),
        Fault::Throttle {
            status,
            retry_after,
        } => Some((*status, Some(retry_after.as_str()))),
        _ => None,
    }) {
        set_status(status);
        let extra = retry_after.map_or(String::new(), |v| format!("Retry-After: {v}\r\n"));
        return simple_with(
            &mut stream,
            status,
            &extra,
            "fault injected by the test server\n",
            head,
        );
    }
    if path.split('/').any(|c| c == ".." || c == ".") || path.contains('\0') {
        set_status(400);
        return simple(&mut stream, 400, "refused path\n", head);
    }
    let file = state.root.join(&path);
    let replaced = state.overrides.lock().unwrap().get(&path).cloned();
    let data = match (replaced, std::fs::metadata(&file)) {
        (Some(bytes), _) => bytes,
        (None, Ok(m)) if m.is_file() => std::fs::read(&file)?,
        _ => {
            set_status(404);
            return simple(&mut stream, 404, "not found\n", head);
        }
    };
    let len = data.len() as u64;
    let shape = faults::shape(&faults, len);
    let range = if shape.ignore_range {
        None
    } else {
        request.range.as_deref().and_then(parse_range)
    };
    let (status, start, end) = match range {
        None => (200, 0, len),
        Some(ByteRange::From(n)) if n < len => (206, n, len),
        Some(ByteRange::FromTo(n, m)) if n < len && n <= m => (206, n, (m + 1).min(len)),
        Some(ByteRange::Suffix(n)) if n > 0 && len > 0 => (206, len.saturating_sub(n), len),
        Some(_) => {
            set_status(416);
            let headers = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(headers.as_bytes())?;
            return Ok(());
        }
    };
    set_status(status);
    let content_length = match shape.content_length {
        None => format!("Content-Length: {}\r\n", end - start),
        Some(Some(n)) => format!("Content-Length: {n}\r\n"),
        Some(None) => String::new(),
    };
    let mut headers = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/octet-stream\r\n\
         {content_length}Accept-Ranges: bytes\r\nConnection: close\r\n",
        reason(status),
    );
    if status == 206 {
        let value = shape
            .content_range
            .clone()
            .unwrap_or_else(|| format!("bytes {start}-{}/{len}", end - 1));
        headers.push_str(&format!("Content-Range: {value}\r\n"));
    }
    headers.push_str("\r\n");
    stream.write_all(headers.as_bytes())?;
    if head {
        return Ok(());
    }

    let body = data[start as usize..end as usize].to_vec();
    let count = |n: u64| {
        if let Some(entry) = state.log.lock().unwrap().get_mut(slot) {
            entry.body_bytes += n;
        }
    };
    faults::send_body(
        &mut stream,
        state,
        &faults,
        start,
        body,
        shape.extra,
        &count,
    )?;
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}

fn simple(stream: &mut TcpStream, status: u16, body: &str, head: bool) -> io::Result<()> {
    simple_with(stream, status, "", body, head)
}

/// [`simple`] with `extra` header lines (each ending in CRLF).
fn simple_with(
    stream: &mut TcpStream,
    status: u16,
    extra: &str,
    body: &str,
    head: bool,
) -> io::Result<()> {
    let headers = format!(
        "HTTP/1.1 {status} {}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(headers.as_bytes())?;
    if !head {
        stream.write_all(body.as_bytes())?;
    }
    Ok(())
}

fn sleep_unless_shutdown(state: &State, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !state.is_shut_down() {
        thread::sleep(Duration::from_millis(10).min(until - Instant::now()));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// `bytes=N-`
    From(u64),
    /// `bytes=N-M` (inclusive)
    FromTo(u64, u64),
    /// `bytes=-N`: the last N bytes
    Suffix(u64),
}

/// Parses a single-range `Range` header; anything else is ignored (and the
/// whole file served), which HTTP allows.
fn parse_range(header: &str) -> Option<ByteRange> {
    let spec = header.strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    match (a.trim(), b.trim()) {
        ("", n) => n.parse().ok().map(ByteRange::Suffix),
        (n, "") => n.parse().ok().map(ByteRange::From),
        (n, m) => Some(ByteRange::FromTo(n.parse().ok()?, m.parse().ok()?)),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Fault",
    }
}

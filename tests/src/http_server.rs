//! A small HTTP/1.1 static file server on 127.0.0.1, with fault injection.
//!
//! A ferry repository is a directory of static files, so a node fetching over
//! HTTP needs nothing more than GET, HEAD and byte ranges. Serving it from
//! the test process (threads and `std::net`, no async runtime) lets a test
//! count what a node downloaded and make the network misbehave on purpose:
//! slow answers, error statuses, cut or corrupted bodies, stalls, servers that
//! ignore `Range`. It binds 127.0.0.1 only and stops when dropped.
//!
//! Every response carries `Connection: close`: one request per connection
//! keeps the server simple and every client copes with it.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Something to do wrong when answering a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long before answering.
    Delay(Duration),
    /// Answer with this status and a short text body instead of the file.
    Status(u16),
    /// Announce the full length, send this many body bytes, then close.
    TruncateBody(u64),
    /// Invert the byte at this offset of the file (if the response covers it).
    FlipByte(u64),
    /// Send this many body bytes, then stop sending without closing, until
    /// the server is dropped (or [`STALL_LIMIT`] passes).
    Stall(u64),
    /// Answer a range request with the whole file and status 200.
    IgnoreRange,
}

/// The longest a [`Fault::Stall`] holds a connection: the server stops by
/// itself even if a test forgets to drop it.
pub const STALL_LIMIT: Duration = Duration::from_secs(120);

/// One request the server received.
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
}

struct FaultRule {
    prefix: String,
    fault: Fault,
    /// How many more requests it applies to; `None`: all of them.
    remaining: Option<u64>,
}

struct State {
    root: PathBuf,
    shutdown: AtomicBool,
    /// Every matching fault applies.
    faults: Mutex<Vec<FaultRule>>,
    log: Mutex<Vec<Request>>,
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
            log: Mutex::new(Vec::new()),
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

    fn add_fault(&self, path_prefix: &str, fault: Fault, remaining: Option<u64>) {
        let prefix = path_prefix.trim_start_matches('/').to_string();
        self.state.faults.lock().unwrap().push(FaultRule {
            prefix,
            fault,
            remaining,
        });
    }

    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
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
            .iter()
            .map(|r| r.body_bytes)
            .sum()
    }

    /// Body bytes served per path.
    pub fn bytes_served_by_path(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for r in self.state.log.lock().unwrap().iter() {
            *out.entry(r.path.clone()).or_insert(0) += r.body_bytes;
        }
        out
    }

    /// Forgets the request log (faults stay).
    pub fn reset_counters(&self) {
        self.state.log.lock().unwrap().clear();
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
        .filter(|rule| path.starts_with(rule.prefix.as_str()))
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
        log.push(Request {
            method: request.method.clone(),
            path: path.clone(),
            range: request.range.clone(),
            status: 0,
            body_bytes: 0,
        });
        log.len() - 1
    };
    let set_status = |status: u16| state.log.lock().unwrap()[slot].status = status;

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
    if let Some(status) = faults.iter().find_map(|f| match f {
        Fault::Status(s) => Some(*s),
        _ => None,
    }) {
        set_status(status);
        return simple(
            &mut stream,
            status,
            "fault injected by the test server\n",
            head,
        );
    }
    if path.split('/').any(|c| c == ".." || c == ".") || path.contains('\0') {
        set_status(400);
        return simple(&mut stream, 400, "refused path\n", head);
    }
    let file = state.root.join(&path);
    let data = match std::fs::metadata(&file) {
        Ok(m) if m.is_file() => std::fs::read(&file)?,
        _ => {
            set_status(404);
            return simple(&mut stream, 404, "not found\n", head);
        }
    };
    let len = data.len() as u64;
    let ignore_range = faults.contains(&Fault::IgnoreRange);
    let range = if ignore_range {
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
    let mut headers = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
        reason(status),
        end - start
    );
    if status == 206 {
        headers.push_str(&format!(
            "Content-Range: bytes {start}-{}/{len}\r\n",
            end - 1
        ));
    }
    headers.push_str("\r\n");
    stream.write_all(headers.as_bytes())?;
    if head {
        return Ok(());
    }

    let mut body = data[start as usize..end as usize].to_vec();
    let mut limit = body.len() as u64;
    let mut stall = false;
    for fault in &faults {
        match *fault {
            Fault::FlipByte(offset) if (start..end).contains(&offset) => {
                body[(offset - start) as usize] ^= 0xff;
            }
            Fault::TruncateBody(n) => limit = limit.min(n),
            Fault::Stall(n) if n < limit => {
                limit = n;
                stall = true;
            }
            _ => {}
        }
    }
    for chunk in body[..limit as usize].chunks(16 * 1024) {
        state.log.lock().unwrap()[slot].body_bytes += chunk.len() as u64;
        stream.write_all(chunk)?;
    }
    stream.flush()?;
    if stall {
        sleep_unless_shutdown(state, STALL_LIMIT);
    }
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}

fn simple(stream: &mut TcpStream, status: u16, body: &str, head: bool) -> io::Result<()> {
    let headers = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
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
    while Instant::now() < until && !state.shutdown.load(Ordering::SeqCst) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn get(server: &TestServer, path: &str, extra: &str) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        write!(s, "GET /{path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&raw[..split]).into_owned(),
            raw[split + 4..].to_vec(),
        )
    }

    fn server_with_file() -> (tempfile::TempDir, TestServer) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("objects")).unwrap();
        std::fs::write(dir.path().join("objects/f"), b"0123456789").unwrap();
        let server = TestServer::serve(dir.path());
        (dir, server)
    }

    #[test]
    fn serves_files_ranges_and_404() {
        let (_dir, server) = server_with_file();
        let (h, body) = get(&server, "objects/f", "");
        assert!(h.starts_with("HTTP/1.1 200"), "{h}");
        assert_eq!(body, b"0123456789");
        let (h, body) = get(&server, "objects/f", "Range: bytes=3-\r\n");
        assert!(
            h.starts_with("HTTP/1.1 206") && h.contains("Content-Range: bytes 3-9/10"),
            "{h}"
        );
        assert_eq!(body, b"3456789");
        let (h, body) = get(&server, "objects/f", "Range: bytes=2-4\r\n");
        assert!(h.contains("Content-Range: bytes 2-4/10"), "{h}");
        assert_eq!(body, b"234");
        let (h, _) = get(&server, "objects/f", "Range: bytes=10-\r\n");
        assert!(h.starts_with("HTTP/1.1 416"), "{h}");
        let (h, _) = get(&server, "objects/missing", "");
        assert!(h.starts_with("HTTP/1.1 404"), "{h}");
        let (h, _) = get(&server, "objects/../objects/f", "");
        assert!(h.starts_with("HTTP/1.1 400"), "{h}");
        assert_eq!(server.bytes_served_by_path()["objects/f"], 10 + 7 + 3);
        assert_eq!(server.requests_for("objects/f").len(), 4);
    }

    #[test]
    fn faults_apply_by_prefix() {
        let (_dir, server) = server_with_file();
        server.set_fault("objects/", Fault::FlipByte(1));
        server.set_fault("/objects/f", Fault::TruncateBody(4));
        let (_, body) = get(&server, "objects/f", "");
        assert_eq!(body, [b'0', b'1' ^ 0xff, b'2', b'3']);
        server.clear_faults();
        server.set_fault("", Fault::IgnoreRange);
        let (h, body) = get(&server, "objects/f", "Range: bytes=5-\r\n");
        assert!(h.starts_with("HTTP/1.1 200"), "{h}");
        assert_eq!(body.len(), 10);
        server.clear_faults();
        server.set_fault("", Fault::Status(503));
        let (h, _) = get(&server, "objects/f", "");
        assert!(h.starts_with("HTTP/1.1 503"), "{h}");
        server.clear_faults();
        server.set_fault("", Fault::Delay(Duration::from_millis(200)));
        let t = Instant::now();
        get(&server, "objects/f", "");
        assert!(t.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn counted_faults_fire_only_the_first_times() {
        let (_dir, server) = server_with_file();
        server.set_fault_times("objects/", Fault::Status(500), 2);
        server.set_fault_times("index.json", Fault::Status(503), 5);
        for _ in 0..2 {
            let (h, _) = get(&server, "objects/f", "");
            assert!(h.starts_with("HTTP/1.1 500"), "{h}");
        }
        let (h, body) = get(&server, "objects/f", "");
        assert!(h.starts_with("HTTP/1.1 200"), "{h}");
        assert_eq!(body, b"0123456789");
        server.set_fault_times("objects/f", Fault::TruncateBody(3), 1);
        let (_, body) = get(&server, "objects/f", "");
        assert_eq!(body, b"012");
        let (_, body) = get(&server, "objects/f", "");
        assert_eq!(body, b"0123456789");
        let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [500, 500, 200, 200, 200]);
    }

    #[test]
    fn stall_holds_the_connection_until_drop() {
        let (_dir, server) = server_with_file();
        server.set_fault("", Fault::Stall(3));
        let mut s = TcpStream::connect(server.addr()).unwrap();
        write!(s, "GET /objects/f HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut raw = Vec::new();
        let err = s.read_to_end(&mut raw).unwrap_err();
        assert!(matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        assert!(
            raw.ends_with(b"\r\n\r\n012"),
            "{:?}",
            String::from_utf8_lossy(&raw)
        );
        drop(server);
    }
}

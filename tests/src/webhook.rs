//! A webhook receiver on 127.0.0.1 that records what it is POSTed, and
//! addresses where no receiver answers.
//!
//! `[[notify]]` promises things only a real socket shows: the body arrives
//! in the receiver's shape, an overloaded receiver (5xx) gets the same
//! notification again until it takes it, and a receiver that is down or
//! silent costs the update no more than the configured timeouts. The
//! [`WebhookReceiver`] answers a scripted list of statuses first (say 500,
//! 500), then 200, and keeps every request; [`closed_port_url`] and
//! [`Unresponsive`] are the receivers that are down.
//!
//! Like [`crate::http_server`], one request per connection, threads and
//! `std::net` only; it stops when dropped.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub method: String,
    /// The request path without the leading `/`.
    pub path: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// The status the receiver answered.
    pub status: u16,
    /// When the request had been read, before the answer.
    pub at: Instant,
}

impl Delivery {
    /// The body as JSON; panics with the body if it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body POSTed to /{} is not JSON ({e}): {}",
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

struct State {
    shutdown: AtomicBool,
    /// Answers to the next requests, in order; 200 once it is empty.
    script: Mutex<VecDeque<Answer>>,
    /// How long every answer is held back.
    delay: Duration,
    log: Mutex<Vec<Delivery>>,
}

/// One scripted answer: a status and, if set, a `Retry-After` header.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
}

/// A running receiver. Dropping it stops it.
pub struct WebhookReceiver {
    addr: SocketAddr,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

impl WebhookReceiver {
    /// A receiver answering 200 to everything.
    pub fn start() -> WebhookReceiver {
        Self::answering(&[])
    }

    /// A receiver answering `statuses` to its first requests, one each,
    /// then 200.
    pub fn answering(statuses: &[u16]) -> WebhookReceiver {
        let script: Vec<Answer> = statuses
            .iter()
            .map(|&status| Answer {
                status,
                retry_after: None,
            })
            .collect();
        Self::scripted(&script, Duration::ZERO)
    }

    /// A receiver that takes `delay` to answer anything (200).
    pub fn slow(delay: Duration) -> WebhookReceiver {
        Self::scripted(&[], delay)
    }

    /// A receiver giving `script`'s answers first, then 200, each after
    /// `delay`.
    pub fn scripted(script: &[Answer], delay: Duration) -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(State {
            shutdown: AtomicBool::new(false),
            script: Mutex::new(script.iter().cloned().collect()),
            delay,
            log: Mutex::new(Vec::new()),
        });
        let accept_state = Arc::clone(&state);
        let acceptor = thread::Builder::new()
            .name(format!("webhook-{}", addr.port()))
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept_state.shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        // One at a time: the order of the log is the order
                        // of arrival (ferry sends to several receivers at
                        // once; their requests wait in the backlog here).
                        let _ = handle(stream, &accept_state);
                    }
                }
            })
            .expect("spawn the webhook receiver");
        WebhookReceiver {
            addr,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT/<path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Every request so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests to exactly `path` (without the leading `/`).
    pub fn deliveries_to(&self, path: &str) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.path == path.trim_start_matches('/'))
            .collect()
    }

    /// The JSON bodies of the requests to `path` that were answered 2xx:
    /// the notifications that count as delivered.
    pub fn delivered_to(&self, path: &str) -> Vec<serde_json::Value> {
        self.deliveries_to(path)
            .iter()
            .filter(|d| (200..300).contains(&d.status))
            .map(Delivery::json)
            .collect()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.state.shutdown.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn handle(mut stream: TcpStream, state: &State) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line
        .next()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let mut length = 0usize;
    let mut content_type = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "content-type" => content_type = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = buf[header_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let answer = state.script.lock().unwrap().pop_front().unwrap_or(Answer {
        status: 200,
        retry_after: None,
    });
    let status = answer.status;
    state.log.lock().unwrap().push(Delivery {
        method,
        path,
        content_type,
        body,
        status,
        at: Instant::now(),
    });
    thread::sleep(state.delay);
    let retry_after = answer
        .retry_after
        .map(|value| format!("Retry-After: {value}\r\n"))
        .unwrap_or_default();
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    stream.write_all(
        format!(
            "HTTP/1.1 {status} {reason}\r\n{retry_after}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )?;
    stream.flush()
}

/// `http://127.0.0.1:PORT/hook` where nothing listens: a port that was just
/// bound and released, so connecting is refused at once.
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    format!("http://{addr}/hook")
}

/// A receiver that accepts connections (the kernel does, into the listen
/// backlog) and never answers: only a client's timeout ends the wait.
pub struct Unresponsive {
    listener: TcpListener,
}

impl Default for Unresponsive {
    fn default() -> Self {
        Self::new()
    }
}

impl Unresponsive {
    pub fn new() -> Unresponsive {
        Unresponsive {
            listener: TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"),
        }
    }

    /// `http://127.0.0.1:PORT/hook`
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.listener.local_addr().unwrap())
    }
}

//! The API's HTTP/1.1: one request per connection, read under a deadline,
//! answered, closed.
//!
//! Written over `std::net` rather than taken from a server crate because
//! the API needs exactly what those lacked: a deadline on the whole request
//! head and body (a client that sends half a request line and then nothing
//! is cut after [`REQUEST_DEADLINE`], not held forever by a thread), and
//! no keep-alive (a connection is one request, so an idle client cannot
//! hold a slot between requests). Bodies come only with `Content-Length`
//! (the API's bodies are small JSON documents); chunked request bodies are
//! refused with 411.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The longest a client may take to send its whole request (head and
/// body). Slow-header and slow-body clients are cut after this.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// The longest one write may wait for a client that does not read (a
/// watch stream's reader that stopped reading is dropped after it).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;

/// A TCP stream whose reads fail once a deadline has passed, however the
/// bytes trickle in: each read waits at most for what is left.
pub struct DeadlineStream {
    stream: TcpStream,
    deadline: Option<Instant>,
}

impl DeadlineStream {
    pub fn new(stream: TcpStream, deadline: Instant) -> io::Result<DeadlineStream> {
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(DeadlineStream {
            stream,
            deadline: Some(deadline),
        })
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        self.stream.read(buf).map_err(|e| match e.kind() {
            // What a read timeout looks like on Linux.
            io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut.into(),
            _ => e,
        })
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Closes a connection whose answer is written. Bytes the client sent
/// that were not read (a refused body, a request in clear on a TLS port)
/// are drained first: closing with them unread makes the kernel send a
/// reset, which can destroy the answer before the client reads it.
pub fn close_after_answer(stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // A second at most, however the client drips bytes.
    let until = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    let mut reader = stream;
    while drained < 256 * 1024 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// One client connection, in clear or over TLS.
pub enum Connection {
    Plain(DeadlineStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, DeadlineStream>>),
}

impl Connection {
    fn socket(&mut self) -> &mut DeadlineStream {
        match self {
            Connection::Plain(stream) => stream,
            Connection::Tls(tls) => &mut tls.sock,
        }
    }

    /// Lifts the request deadline once the request is read: a watch
    /// stream's reader sends nothing more and is not cut for it.
    pub fn request_read(&mut self) {
        self.socket().deadline = None;
    }

    /// Ends the connection cleanly (a TLS client is told the response is
    /// complete, so it cannot mistake a cut for the end).
    pub fn close(mut self) {
        if let Connection::Tls(tls) = &mut self {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        close_after_answer(&self.socket().stream);
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Connection::Plain(stream) => stream.read(buf),
            Connection::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Connection::Plain(stream) => stream.write(buf),
            Connection::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Connection::Plain(stream) => stream.flush(),
            Connection::Tls(tls) => tls.flush(),
        }
    }
}

/// A request as read off the wire.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of header `name` (the first, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why no request was read: answered with its status, or (`status` None)
/// the connection is just dropped (the client went away, timed out, or
/// does not speak TLS on a TLS port).
#[derive(Debug)]
pub struct BadRequest {
    pub status: Option<u16>,
    pub message: String,
}

impl BadRequest {
    fn answer(status: u16, message: impl Into<String>) -> BadRequest {
        BadRequest {
            status: Some(status),
            message: message.into(),
        }
    }

    fn drop_connection(message: impl Into<String>) -> BadRequest {
        BadRequest {
            status: None,
            message: message.into(),
        }
    }
}

/// Reads one request of at most `max_body` body bytes from `input`.
pub fn read_request(input: &mut impl Read, max_body: u64) -> Result<Request, BadRequest> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD {
            return Err(BadRequest::answer(
                431,
                format!("the request head is over {MAX_HEAD} bytes"),
            ));
        }
        match input.read(&mut chunk) {
            Ok(0) => return Err(BadRequest::drop_connection("closed before a whole request")),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BadRequest::drop_connection(e.to_string())),
        }
    };
    let head = std::str::from_utf8(&buffer[..head_end])
        .map_err(|_| BadRequest::answer(400, "the request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest::answer(
            400,
            "the request line is not `METHOD /path HTTP/1.1`",
        ));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(BadRequest::answer(
            400,
            "the request line is not `METHOD /path HTTP/1.1`",
        ));
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(BadRequest::answer(
                400,
                format!("a header line without a colon: {line:?}"),
            ));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut request = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Vec::new(),
    };
    if request.header("Transfer-Encoding").is_some() {
        return Err(BadRequest::answer(
            411,
            "send the request body with a Content-Length, not chunked",
        ));
    }
    let length = match request.header("Content-Length") {
        None => 0,
        Some(value) => value.parse::<u64>().map_err(|_| {
            BadRequest::answer(400, format!("Content-Length {value:?} is not a number"))
        })?,
    };
    if length > max_body {
        return Err(BadRequest::answer(
            413,
            format!(
                "the request body is over {max_body} bytes: send only the fields the endpoint takes"
            ),
        ));
    }
    let mut body = buffer.split_off(head_end + 4);
    // `length` <= max_body, a few KiB: it fits a usize.
    let length = length as usize;
    if body.len() > length {
        body.truncate(length);
    }
    while body.len() < length {
        match input.read(&mut chunk) {
            Ok(0) => return Err(BadRequest::drop_connection("closed inside the body")),
            Ok(n) => body.extend_from_slice(&chunk[..n.min(length - body.len())]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(BadRequest::drop_connection(e.to_string())),
        }
    }
    request.body = body;
    Ok(request)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The reason phrase of the statuses the API answers with.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A whole response (`Connection: close`: one request per connection).
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Request, BadRequest> {
        read_request(&mut &bytes[..], 100)
    }

    #[test]
    fn requests_are_read_with_their_headers_and_body() {
        let request = read(
            b"POST /api/v1/updates/plan?x=1 HTTP/1.1\r\nHost: h\r\ncontent-length: 4\r\n\r\nbodyEXTRA",
        )
        .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/api/v1/updates/plan?x=1");
        assert_eq!(request.header("Content-Length"), Some("4"));
        assert_eq!(request.body, b"body");
    }

    #[test]
    fn broken_requests_get_a_status_or_are_dropped() {
        let status = |bytes: &[u8]| read(bytes).unwrap_err().status;
        assert_eq!(status(b"GET /\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET / HTTP/1.1 x\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET x HTTP/1.1\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"), Some(400));
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n"),
            Some(413)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(411)
        );
        assert_eq!(status(&[b'a'; MAX_HEAD + 10]), Some(431));
        assert_eq!(status(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nshort"),
            None
        );
    }
}

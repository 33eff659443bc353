//! Just enough HTTP/1.1 for health checks and load: a request line and
//! headers in, a Content-Length response out.
//!
//! Responses always carry Content-Length so that keep-alive works without
//! chunked encoding; request bodies are read and discarded so that the next
//! request on the connection starts where it should.

use std::io::{self, BufRead, Read, Write};

/// Longest request head accepted: health checkers and load generators send
/// a few short headers, anything longer is not one of them.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The client asked to close after this response (`Connection: close`,
    /// or HTTP/1.0 without `Connection: keep-alive`).
    pub close: bool,
}

/// What reading one request gave.
#[derive(Debug)]
pub enum Incoming {
    Request(Request),
    /// The peer closed the connection before sending a request.
    Closed,
    /// Not HTTP we understand; answer 400 and close.
    Malformed(String),
}

/// Reads one request head (and discards its body).
pub fn read_request(reader: &mut impl BufRead) -> io::Result<Incoming> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let read = Read::take(&mut *reader, (MAX_HEAD_BYTES + 1 - head.len()) as u64)
            .read_until(b'\n', &mut head)?;
        if read == 0 {
            return Ok(if head.is_empty() {
                Incoming::Closed
            } else {
                Incoming::Malformed("connection closed inside the request head".into())
            });
        }
        if head.len() > MAX_HEAD_BYTES {
            return Ok(Incoming::Malformed(format!(
                "request head longer than {MAX_HEAD_BYTES} bytes"
            )));
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            // Tolerate blank lines before a request (RFC 9112 §2.2).
            if before == 0 {
                head.clear();
                continue;
            }
            break;
        }
    }
    let Ok(text) = std::str::from_utf8(&head) else {
        return Ok(Incoming::Malformed("request head is not UTF-8".into()));
    };
    let mut lines = text.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(protocol), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(Incoming::Malformed(format!(
            "bad request line {request_line:?}"
        )));
    };
    let http_1_0 = match protocol {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        other => {
            return Ok(Incoming::Malformed(format!(
                "unsupported protocol {other:?}"
            )))
        }
    };
    let mut close = http_1_0;
    let mut body_length = 0u64;
    for line in lines.take_while(|line| !line.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Ok(Incoming::Malformed(format!("bad header line {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            match value.parse() {
                Ok(length) => body_length = length,
                Err(_) => {
                    return Ok(Incoming::Malformed(format!("bad Content-Length {value:?}")));
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Ok(Incoming::Malformed(
                "request bodies with Transfer-Encoding are not supported".into(),
            ));
        }
    }
    let discarded = io::copy(&mut Read::take(&mut *reader, body_length), &mut io::sink())?;
    if discarded < body_length {
        return Ok(Incoming::Malformed(
            "connection closed inside the request body".into(),
        ));
    }
    Ok(Incoming::Request(Request {
        method: method.to_string(),
        path: target.to_string(),
        close,
    }))
}

/// A complete response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    /// Writes the response; `head_only` leaves out the body (HEAD).
    pub fn write_to(&self, out: &mut impl Write, close: bool, head_only: bool) -> io::Result<()> {
        let mut bytes = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            if close { "close" } else { "keep-alive" },
        )
        .into_bytes();
        if !head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        // One write: a response split over two segments would wait on
        // Nagle's algorithm and the peer's delayed ACK.
        out.write_all(&bytes)?;
        out.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &str) -> Incoming {
        read_request(&mut io::BufReader::new(bytes.as_bytes())).unwrap()
    }

    #[test]
    fn http_1_1_keeps_the_connection_unless_told_to_close() {
        let Incoming::Request(kept) = parse("GET /health HTTP/1.1\r\nHost: x\r\n\r\n") else {
            panic!("not parsed");
        };
        assert_eq!(
            kept,
            Request {
                method: "GET".into(),
                path: "/health".into(),
                close: false
            }
        );
        let Incoming::Request(closed) = parse("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n") else {
            panic!("not parsed");
        };
        assert!(closed.close);
        let Incoming::Request(old) = parse("GET / HTTP/1.0\r\n\r\n") else {
            panic!("not parsed");
        };
        assert!(old.close);
    }

    #[test]
    fn a_body_is_skipped_so_the_next_request_parses() {
        let mut reader = io::BufReader::new(
            "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /version HTTP/1.1\r\n\r\n"
                .as_bytes(),
        );
        assert!(
            matches!(read_request(&mut reader).unwrap(), Incoming::Request(r) if r.path == "/x")
        );
        assert!(
            matches!(read_request(&mut reader).unwrap(), Incoming::Request(r) if r.path == "/version")
        );
        assert!(matches!(
            read_request(&mut reader).unwrap(),
            Incoming::Closed
        ));
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        assert!(matches!(parse("hello\r\n\r\n"), Incoming::Malformed(_)));
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost"),
            Incoming::Malformed(_)
        ));
        assert!(matches!(
            parse("GET / HTTP/2\r\n\r\n"),
            Incoming::Malformed(_)
        ));
        let huge = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert!(matches!(parse(&huge), Incoming::Malformed(m) if m.contains("longer")));
    }

    #[test]
    fn responses_carry_their_length() {
        let mut out = Vec::new();
        Response::new(503, "application/json", "{}")
            .write_to(&mut out, true, false)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
    }
}

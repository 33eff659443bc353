//! What the test server can do wrong, and how a response body is sent with
//! those faults applied.
//!
//! Each fault mimics one thing a broken or hostile server, proxy or mirror
//! does: flip or replace bytes (tampering), stop early (truncation), stop
//! sending without closing (a stall), send slowly (a trickle, the
//! slow-retrieval attack), or send more than the file (the endless-data
//! attack, with an honest, a lying or no `Content-Length`).

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{sleep_unless_shutdown, State, STALL_LIMIT};

/// Something to do wrong when answering a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long before answering.
    Delay(Duration),
    /// Answer with this status and a short text body instead of the file.
    Status(u16),
    /// Like `Status`, with a `Retry-After` header (seconds or an HTTP date):
    /// a server shedding load and saying when to come back.
    Throttle { status: u16, retry_after: String },
    /// Announce the full length, send this many body bytes, then close.
    TruncateBody(u64),
    /// Invert the byte at this offset of the file (if the response covers it).
    FlipByte(u64),
    /// Overwrite the file's bytes from `offset` with `bytes` (as far as the
    /// response covers them; the length does not change).
    ReplaceBytes { offset: u64, bytes: Vec<u8> },
    /// Send this many body bytes, then stop sending without closing, until
    /// the server is dropped (or [`STALL_LIMIT`] passes).
    Stall(u64),
    /// Send the body `bytes` at a time, one burst every `every`: the first
    /// `until` body bytes if set (the rest at full speed), else all of it.
    Trickle {
        bytes: u64,
        every: Duration,
        until: Option<u64>,
    },
    /// Send the file followed by this many extra bytes, with an honest
    /// `Content-Length` (the file's length plus `extra`).
    Oversize(u64),
    /// Send the file followed by filler that never ends (until the client
    /// hangs up, the server is dropped or [`STALL_LIMIT`] passes), as a
    /// whole-file 200 whatever the `Range`. `content_length`: the
    /// `Content-Length` to announce — a lie either way — or none (the body
    /// then ends only when the connection does).
    Endless { content_length: Option<u64> },
    /// Answer a range request with the whole file and status 200.
    IgnoreRange,
    /// Announce this `Content-Length` (a lie: e.g. near `u64::MAX`),
    /// status, range and body unchanged.
    ContentLength(u64),
    /// Answer a range request with this `Content-Range` value (a lie)
    /// instead of the true one, body unchanged.
    ContentRange(String),
}

/// What the faults of one request change in its headers.
pub(super) struct Shape {
    /// Serve the whole file with 200, whatever the `Range`.
    pub ignore_range: bool,
    /// Extra body bytes after the file: `Some(None)` endless.
    pub extra: Option<Option<u64>>,
    /// The `Content-Length` to announce instead of the true one: `Some(None)`
    /// for none at all.
    pub content_length: Option<Option<u64>>,
    /// The `Content-Range` value of a 206 instead of the true one.
    pub content_range: Option<String>,
}

pub(super) fn shape(faults: &[Fault], file_len: u64) -> Shape {
    let mut shape = Shape {
        ignore_range: faults.contains(&Fault::IgnoreRange),
        extra: None,
        content_length: None,
        content_range: None,
    };
    for fault in faults {
        match *fault {
            Fault::Oversize(extra) => {
                shape.ignore_range = true;
                shape.extra = Some(Some(extra));
                shape.content_length = Some(Some(file_len + extra));
            }
            Fault::Endless { content_length } => {
                shape.ignore_range = true;
                shape.extra = Some(None);
                shape.content_length = Some(content_length);
            }
            Fault::ContentLength(n) => shape.content_length = Some(Some(n)),
            Fault::ContentRange(ref value) => shape.content_range = Some(value.clone()),
            _ => {}
        }
    }
    shape
}

/// Filler for oversized and endless bodies: recognisable in a hex dump.
const FILLER: &[u8] = b"ferry-test-server: more bytes than the file has\n";

/// Sends `body` (the file's bytes `start..` of the response), then any
/// extra bytes, applying `faults`. Counts sent bytes with `count`.
pub(super) fn send_body(
    stream: &mut TcpStream,
    state: &State,
    faults: &[Fault],
    start: u64,
    mut body: Vec<u8>,
    extra: Option<Option<u64>>,
    count: &dyn Fn(u64),
) -> io::Result<()> {
    let end = start + body.len() as u64;
    let mut limit = body.len() as u64;
    let mut stall = false;
    let mut trickle = None;
    for fault in faults {
        match fault {
            Fault::FlipByte(offset) if (start..end).contains(offset) => {
                body[(offset - start) as usize] ^= 0xff;
            }
            Fault::ReplaceBytes { offset, bytes } => {
                for (i, b) in bytes.iter().enumerate() {
                    let at = offset + i as u64;
                    if (start..end).contains(&at) {
                        body[(at - start) as usize] = *b;
                    }
                }
            }
            Fault::TruncateBody(n) => limit = limit.min(*n),
            Fault::Stall(n) if *n < limit => {
                limit = *n;
                stall = true;
            }
            Fault::Trickle {
                bytes,
                every,
                until,
            } => trickle = Some((*bytes.max(&1), *every, *until)),
            _ => {}
        }
    }
    let body = &body[..limit as usize];
    let truncated = limit < end - start;
    let mut sent = 0usize;
    if let Some((bytes, every, until)) = trickle {
        let slow_end = until.map_or(body.len(), |u| (u as usize).min(body.len()));
        let deadline = Instant::now() + STALL_LIMIT;
        while sent < slow_end {
            if state.is_shut_down() || Instant::now() > deadline {
                return Ok(());
            }
            let n = (bytes as usize).min(slow_end - sent);
            write_counted(stream, &body[sent..sent + n], count)?;
            sent += n;
            sleep_unless_shutdown(state, every);
        }
    }
    for chunk in body[sent..].chunks(16 * 1024) {
        write_counted(stream, chunk, count)?;
    }
    if !truncated && !stall {
        send_extra(stream, state, extra, count)?;
    }
    stream.flush()?;
    if stall {
        sleep_unless_shutdown(state, STALL_LIMIT);
    }
    Ok(())
}

/// The bytes past the end of the file: `extra` of them, or endlessly.
fn send_extra(
    stream: &mut TcpStream,
    state: &State,
    extra: Option<Option<u64>>,
    count: &dyn Fn(u64),
) -> io::Result<()> {
    let Some(extra) = extra else { return Ok(()) };
    let block: Vec<u8> = FILLER.iter().copied().cycle().take(64 * 1024).collect();
    let mut left = extra.unwrap_or(u64::MAX);
    let deadline = Instant::now() + STALL_LIMIT;
    while left > 0 && !state.is_shut_down() && Instant::now() < deadline {
        let n = (block.len() as u64).min(left) as usize;
        // The client hanging up (it stopped reading at its cap) ends this
        // with an error, which is the expected way out.
        write_counted(stream, &block[..n], count)?;
        left -= n as u64;
    }
    Ok(())
}

fn write_counted(stream: &mut TcpStream, bytes: &[u8], count: &dyn Fn(u64)) -> io::Result<()> {
    // Counted as handed to the socket, as the request log promises.
    count(bytes.len() as u64);
    stream.write_all(bytes)
}

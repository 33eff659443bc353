//! `GET /api/v1/updates/watch/{id}`: server-sent events, one per change of
//! the rollout's record.
//!
//! The coordinator (another process) rewrites the record atomically after
//! every node state change, so watching is polling one small file and
//! sending it whenever its bytes change: no channel between processes, and
//! a watcher can never slow a rollout down. Changes closer together than
//! the poll interval arrive as one event (the later state).
//!
//! Each event is one chunk, flushed at once; after a terminal state an
//! `end` event and the last chunk end the response (and the connection;
//! a browser's reader is told to stop by `end`).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::http::Connection;
use crate::record::RolloutRecord;

const POLL: Duration = Duration::from_millis(50);

fn chunk(out: &mut dyn Write, text: &str) -> std::io::Result<()> {
    write!(out, "{:x}\r\n{text}\r\n", text.len())?;
    out.flush()
}

/// Streams rollout `id`'s record; a comment line every `heartbeat` of
/// silence keeps proxies and clients from timing the stream out.
pub fn watch(out: &mut Connection, state_dir: &Path, id: &str, heartbeat: Duration) {
    let path = RolloutRecord::path(state_dir, id);
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if out
        .write_all(head.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return;
    }
    let mut last: Option<Vec<u8>> = None;
    let mut sent = Instant::now();
    let mut number = 0u64;
    // Any write error means the client went away: stop quietly.
    let _ = (|| -> std::io::Result<()> {
        loop {
            match std::fs::read(&path) {
                Ok(bytes) if last.as_ref() != Some(&bytes) => {
                    // A record that does not parse is skipped until it does.
                    if let Ok(record) = serde_json::from_slice::<RolloutRecord>(&bytes) {
                        number += 1;
                        let data = serde_json::to_string(&record).expect("records serialise");
                        chunk(
                            out,
                            &format!("id: {number}\nevent: state\ndata: {data}\n\n"),
                        )?;
                        sent = Instant::now();
                        if record.state.is_terminal() {
                            // The bare state (`succeeded`), as the document
                            // says: not a JSON string.
                            let state = crate::record::label(record.state);
                            chunk(out, &format!("event: end\ndata: {state}\n\n"))?;
                            break;
                        }
                    }
                    last = Some(bytes);
                }
                Ok(_) => {}
                Err(e) => {
                    let message = serde_json::to_string(&format!(
                        "the record of rollout {id} cannot be read any more: {e}"
                    ))
                    .expect("strings serialise");
                    chunk(out, &format!("event: error\ndata: {message}\n\n"))?;
                    break;
                }
            }
            if sent.elapsed() >= heartbeat {
                chunk(out, ": heartbeat\n\n")?;
                sent = Instant::now();
            }
            std::thread::sleep(POLL);
        }
        out.write_all(b"0\r\n\r\n")?;
        out.flush()
    })();
}

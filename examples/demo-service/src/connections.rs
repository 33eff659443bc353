//! Open connections, each on its own thread, and how they end on stop.
//!
//! A graceful stop must tell two kinds of connection apart: one with a
//! request in flight gets its response (then closes), an idle keep-alive
//! one is closed at once — waiting for its client to send another request
//! could take forever. A connection that has not sent its first request
//! yet counts as in flight: its client connected to send one, and the
//! bytes may simply not have arrived when the accept queue was drained
//! (closing it would fail exactly the request a handover must not lose).
//! The registry records which is which under one lock, so a connection
//! cannot start a request after it was closed as idle.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::{read_request, Incoming, Response};
use crate::service::Service;

/// A connection thread does little: a small stack lets one process hold
/// the benchmark's thousand idle connections without reserving gigabytes.
const CONNECTION_STACK_BYTES: usize = 128 * 1024;

/// Every open connection, and whether the service is stopping.
#[derive(Default)]
pub struct Connections {
    registry: Mutex<Registry>,
    emptied: Condvar,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, Open>,
    stopping: bool,
    accepted: u64,
    requests: u64,
}

struct Open {
    /// A second handle on the socket, to shut it down from `stop`.
    stream: TcpStream,
    busy: bool,
    /// Answered at least one request: now waiting means keep-alive idling.
    answered: bool,
    closed_by_stop: bool,
}

/// What the connections did, for the stop log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub connections: u64,
    pub requests: u64,
    /// Connections still busy when the grace period ended.
    pub cut_off: usize,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panicking connection thread must not take the others with it.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `stream` and serves it on a thread of its own.
    pub fn serve(self: &Arc<Self>, stream: TcpStream, service: &Arc<Service>) {
        let id = {
            let Ok(handle) = stream.try_clone() else {
                return;
            };
            let mut registry = self.lock();
            let id = registry.next_id;
            registry.next_id += 1;
            registry.accepted += 1;
            registry.open.insert(
                id,
                Open {
                    stream: handle,
                    busy: false,
                    answered: false,
                    closed_by_stop: false,
                },
            );
            id
        };
        let connections = Arc::clone(self);
        let tag = service.tag().to_string();
        let service = Arc::clone(service);
        let spawned = thread::Builder::new()
            .name(format!("connection-{id}"))
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                connections.converse(id, stream, &service);
                connections.remove(id);
            });
        if let Err(e) = spawned {
            eprintln!("{tag}: cannot start a thread for a connection ({e}); closing it");
            self.remove(id);
        }
    }

    /// Request after request until the client or a stop closes the connection.
    fn converse(&self, id: u64, stream: TcpStream, service: &Service) {
        let Ok(read_half) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(read_half);
        let mut writer = stream;
        loop {
            // Idle until the first byte of the next request arrives.
            match reader.fill_buf() {
                Ok([]) | Err(_) => return,
                Ok(_) => {}
            }
            if !self.begin_request(id) {
                return;
            }
            let (response, close, head_only) = match read_request(&mut reader) {
                Ok(Incoming::Request(request)) => (
                    service.respond(&request),
                    request.close,
                    request.method == "HEAD",
                ),
                Ok(Incoming::Malformed(why)) => (
                    Response::new(400, "text/plain", format!("{why}\n")),
                    true,
                    false,
                ),
                Ok(Incoming::Closed) | Err(_) => return,
            };
            let close = close || self.lock().stopping;
            let written = response.write_to(&mut writer, close, head_only);
            self.end_request(id);
            if close || written.is_err() {
                return;
            }
        }
    }

    /// Marks `id` busy; false if a stop already closed it as idle.
    fn begin_request(&self, id: u64) -> bool {
        let mut registry = self.lock();
        match registry.open.get_mut(&id) {
            Some(open) if !open.closed_by_stop => {
                open.busy = true;
                true
            }
            _ => false,
        }
    }

    fn end_request(&self, id: u64) {
        let mut registry = self.lock();
        registry.requests += 1;
        if let Some(open) = registry.open.get_mut(&id) {
            open.busy = false;
            open.answered = true;
        }
    }

    fn remove(&self, id: u64) {
        let mut registry = self.lock();
        registry.open.remove(&id);
        if registry.open.is_empty() {
            self.emptied.notify_all();
        }
    }

    /// Closes idle keep-alive connections now, lets the others finish
    /// their request (a new one: its first), and waits up to `grace` for
    /// all of them to end.
    pub fn stop(&self, grace: Duration) -> Served {
        let deadline = Instant::now() + grace;
        let mut registry = self.lock();
        registry.stopping = true;
        for open in registry.open.values_mut() {
            if open.answered && !open.busy {
                open.closed_by_stop = true;
                // Wakes the thread blocked reading; it sees end of file.
                let _ = open.stream.shutdown(Shutdown::Both);
            }
        }
        while !registry.open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            registry = self
                .emptied
                .wait_timeout(registry, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        Served {
            connections: registry.accepted,
            requests: registry.requests,
            cut_off: registry.open.len(),
        }
    }
}

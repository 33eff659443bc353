//! A metrics endpoint on 127.0.0.1 for the rollout's metrics gate: it
//! answers every GET with the number the test sets (an "error rate"), and
//! counts the readings.
//!
//! Threads and `std::net` only, one request per connection; it stops when
//! dropped.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct MetricsEndpoint {
    pub url: String,
    value: Arc<Mutex<String>>,
    readings: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Serves `initial` until [`set`](Self::set) changes it.
    pub fn start(initial: &str) -> MetricsEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/error_rate", listener.local_addr().unwrap());
        let value = Arc::new(Mutex::new(initial.to_string()));
        let readings = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (value, readings, stop) = (value.clone(), readings.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((mut stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf);
                    readings.fetch_add(1, Ordering::SeqCst);
                    let body = value.lock().unwrap().clone();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            })
        };
        MetricsEndpoint {
            url,
            value,
            readings,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set(&self, value: &str) {
        *self.value.lock().unwrap() = value.to_string();
    }

    /// How many readings it answered.
    pub fn readings(&self) -> usize {
        self.readings.load(Ordering::SeqCst)
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

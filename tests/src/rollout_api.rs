//! For the rollout API tests: a real `ferry rollout serve` on 127.0.0.1
//! over a five-node cluster (`cluster`), and a plain HTTP/1.1 client on a
//! `TcpStream` (so tests can send anything: no token, a wrong one, broken
//! JSON) that also reads server-sent event streams.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::binaries;
use crate::fixtures::{Node, Workspace};

pub const TOKEN: &str = "test-token-5f1c2a9e7b3d4c68";

/// A `cluster.toml` with n1 the leader, the `command` transport, canary 1,
/// batches of up to 3. Each apply (and rollback) first sleeps
/// `delay_seconds`, so watchers see the rollout in progress, then waits
/// while the node's [`hold_file`] exists; the apply of `failing` (if any)
/// exits 1 before running ferry.
pub fn write_inventory(
    ws: &Workspace,
    nodes: &[Node],
    delay_seconds: f64,
    failing: Option<&str>,
) -> PathBuf {
    let hold = hold_file(ws, "{name}").display().to_string();
    crate::cluster::command_inventory_with(
        ws,
        nodes,
        &format!("sleep {delay_seconds} && while test -e {hold}; do sleep 0.1; done"),
        failing,
        "canary = 1\nmax_unavailable = 3\nbake_seconds = 0",
    )
}

/// While this file exists, `node`'s apply waits (see [`write_inventory`]):
/// a test holds a rollout at a known point, then lets it go on.
pub fn hold_file(ws: &Workspace, node: &str) -> PathBuf {
    ws.dir.join(format!("hold-{node}"))
}

/// A running `ferry rollout serve`, killed on drop.
pub struct ApiServer {
    child: Child,
    /// The token in its `--token-file`.
    pub token: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub state_dir: PathBuf,
}

impl ApiServer {
    /// Starts the server on a free port of 127.0.0.1 with [`TOKEN`] (in a
    /// mode-0600 file) and the coordinator state dir the `cluster` helpers use.
    pub fn start(ws: &Workspace, inventory: &Path) -> ApiServer {
        ApiServer::start_with(ws, inventory, &[])
    }

    /// [`start`](Self::start) with more `rollout serve` arguments.
    pub fn start_with(ws: &Workspace, inventory: &Path, extra: &[&str]) -> ApiServer {
        ApiServer::start_with_token(ws, inventory, TOKEN, extra)
    }

    /// [`start_with`](Self::start_with) with another token than [`TOKEN`].
    pub fn start_with_token(
        ws: &Workspace,
        inventory: &Path,
        token: &str,
        extra: &[&str],
    ) -> ApiServer {
        ApiServer::launch(ws, inventory, token, None, extra)
    }

    /// [`start_with`](Self::start_with) under `ulimit -n open_files`.
    pub fn start_with_file_limit(
        ws: &Workspace,
        inventory: &Path,
        open_files: u32,
        extra: &[&str],
    ) -> ApiServer {
        ApiServer::launch(ws, inventory, TOKEN, Some(open_files), extra)
    }

    fn launch(
        ws: &Workspace,
        inventory: &Path,
        token: &str,
        open_files: Option<u32>,
        extra: &[&str],
    ) -> ApiServer {
        let token_file = ws.dir.join("api-token");
        fs::write(&token_file, format!("{token}\n")).unwrap();
        fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).unwrap();
        let state_dir = ws.dir.join("coordinator");
        let mut command = match open_files {
            None => Command::new(binaries::ferry()),
            Some(limit) => {
                // exec: the server is the child itself, its pid ours to watch.
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(binaries::ferry());
                sh
            }
        };
        let mut child = command
            .env_remove("FERRY_CONFIG")
            .args([
                "rollout",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--token-file",
            ])
            .arg(&token_file)
            .arg("--inventory")
            .arg(inventory)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start ferry rollout serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("ferry rollout serve printed no address within 30 s");
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        ApiServer {
            child,
            token: token.to_string(),
            addr,
            state_dir,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server still runs (its exit status if not).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// The server's threads right now (`Threads:` of /proc/PID/status).
    pub fn threads(&self) -> usize {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Threads: in /proc/{}/status", self.pid()))
    }

    /// The server's open sockets right now (links to `socket:` in
    /// /proc/PID/fd: the listener and the connections it holds).
    pub fn open_sockets(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    }

    /// `METHOD path` with `Authorization: Bearer <token>` when `token` is
    /// given, and `body` as JSON.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Reply {
        http(&self.addr, method, path, token, body)
    }

    /// The JSON of a call that must answer `status`.
    pub fn json(&self, method: &str, path: &str, body: Option<&str>, status: u16) -> Value {
        let reply = self.call(method, path, Some(&self.token), body);
        assert_eq!(reply.status, status, "{method} {path}: {reply:?}");
        reply.json()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error` message of a JSON error reply.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {self:?}"))
            .to_string()
    }
}

fn send(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line: {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            return (status, headers);
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    })
}

/// The next chunk of a chunked body (`None` after the last).
fn read_chunk(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut size = String::new();
    if reader.read_line(&mut size).ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(size.trim(), 16)
        .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
    let mut data = vec![0; size + 2];
    reader.read_exact(&mut data).ok()?;
    data.truncate(size);
    (size > 0).then_some(data)
}

pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut reader = BufReader::new(send(addr, method, path, token, body));
    let (status, headers) = read_head(&mut reader);
    let mut body = Vec::new();
    if is_chunked(&headers) {
        while let Some(chunk) = read_chunk(&mut reader) {
            body.extend(chunk);
        }
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: String,
    /// When it arrived.
    pub at: Instant,
}

/// Reads `GET path` as an event stream (token as `?token=` when
/// `query_token`, else as a header) until the server ends it; panics
/// after `deadline`. Heartbeat comments are skipped.
pub fn watch(addr: &str, path: &str, query_token: bool, deadline: Duration) -> (Reply, Vec<Event>) {
    let (path, header) = if query_token {
        (format!("{path}?token={TOKEN}"), None)
    } else {
        (path.to_string(), Some(TOKEN))
    };
    let stream = send(addr, "GET", &path, header, None);
    stream.set_read_timeout(Some(deadline)).unwrap();
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let head = Reply {
        status,
        headers,
        body: String::new(),
    };
    let mut events = Vec::new();
    if status != 200 || !is_chunked(&head.headers) {
        return (head, events);
    }
    let started = Instant::now();
    let mut pending = String::new();
    while let Some(chunk) = read_chunk(&mut reader) {
        assert!(
            started.elapsed() < deadline,
            "the stream did not end within {deadline:?}"
        );
        pending.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            let mut event = Event {
                name: "message".into(),
                data: String::new(),
                at: Instant::now(),
            };
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event.name = name.to_string();
                } else if let Some(data) = line.strip_prefix("data: ") {
                    event.data.push_str(data);
                }
            }
            if !block.starts_with(':') {
                events.push(event);
            }
        }
    }
    (head, events)
}

/// Every chunk of `GET path` (token in the header) that arrives within
/// `listen`, heartbeat comments included, each with its arrival time
/// since the request.
pub fn raw_stream(addr: &str, path: &str, listen: Duration) -> Vec<(Duration, String)> {
    let stream = send(addr, "GET", path, Some(TOKEN), None);
    let started = Instant::now();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let (status, _) = read_head(&mut reader);
    assert_eq!(status, 200, "GET {path}");
    let mut chunks = Vec::new();
    loop {
        let Some(left) = listen.checked_sub(started.elapsed()) else {
            return chunks;
        };
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match read_chunk(&mut reader) {
            Some(chunk) => chunks.push((started.elapsed(), String::from_utf8(chunk).unwrap())),
            None => return chunks,
        }
    }
}

/// Waits until `check` holds for rollout `id`'s record (read through the
/// API), or panics with the last record after `deadline`.
pub fn wait_for(
    server: &ApiServer,
    id: &str,
    deadline: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let record = server.json("GET", &format!("/api/v1/updates/status/{id}"), None, 200);
        if check(&record) {
            return record;
        }
        assert!(
            started.elapsed() < deadline,
            "rollout {id} did not get there within {deadline:?}: {record:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `DIR/cluster.toml`: a one-node cluster the server can load, for tests
/// where no request reaches a node (its transport runs `false`).
pub fn idle_inventory(dir: &Path) -> PathBuf {
    let path = dir.join("cluster.toml");
    fs::write(
        &path,
        "[[node]]\nname = \"n1\"\naddress = \"127.0.0.1\"\nrole = \"leader\"\n\
         [transport]\nkind = \"command\"\ntemplate = \"false\"\nstatus_template = \"false\"\n",
    )
    .unwrap();
    path
}

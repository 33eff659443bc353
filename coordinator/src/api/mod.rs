//! `ferry rollout serve`: the rollout HTTP API and its live dashboard.
//!
//! A small synchronous server of its own (`http`, `listener`: a thread per
//! connection, a cap on connections, a deadline on every request, TLS with
//! rustls when `--tls-cert`/`--tls-key` are given) so the binary keeps no
//! async runtime: the API's work is reading small record files and
//! starting child processes, and a watch stream is a thread that polls one
//! file. Rollouts themselves run as child processes of this executable
//! (`ferry rollout execute|promote|rollback ID`), so the per-rollout lock,
//! the record and `resume` behave exactly as from the command line, and a
//! slow node never blocks the server.
//!
//! Every API request needs the bearer token from `--token-file` in an
//! `Authorization: Bearer` header. The dashboard page (`GET /`) reads the
//! token from its URL fragment (`/#token=...`, which a browser never
//! sends) and sends it as that header, the watch stream included (read
//! with `fetch`, not `EventSource`). Older links put it in the query
//! (`/?token=...`, which the page still reads): the watch stream still
//! accepts it there; no other endpoint does (a token in a URL ends up in
//! histories and logs).
//! The page itself is static and holds no secret, so it is served without
//! a token: a browser cannot send the fragment with the page load. The
//! routes and their schemas are in `docs/rollout-api.yaml`.

mod auth;
mod http;
mod listener;
mod routes;
mod sse;

use std::io::Write;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use http::{Connection, Request};
pub use listener::DEFAULT_MAX_CONNECTIONS;

use crate::error::{CoordinatorError, Result};
use crate::inventory::Inventory;

pub use routes::ROUTES;

/// `ferry rollout serve`'s arguments.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    pub listen: String,
    pub token_file: PathBuf,
    pub inventory: PathBuf,
    pub state_dir: PathBuf,
    /// How often an idle watch stream gets a comment line.
    pub heartbeat: std::time::Duration,
    /// `--tls-cert` and `--tls-key`: serve HTTPS only.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--max-connections`: connections served at once (watch streams
    /// included); `None`: [`DEFAULT_MAX_CONNECTIONS`] or half the
    /// descriptor limit.
    pub max_connections: Option<usize>,
}

/// The largest request body read: plans are a few hundred bytes.
const MAX_BODY: u64 = 64 * 1024;

/// What a request is answered with (watch streams answer themselves).
pub(crate) struct Reply {
    status: u16,
    body: ReplyBody,
    headers: Vec<(&'static str, String)>,
}

enum ReplyBody {
    Json(Value),
    Html(&'static str),
}

impl Reply {
    pub(crate) fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: ReplyBody::Json(body),
            headers: Vec::new(),
        }
    }

    /// `{"error": message}`: the message says what was wrong and what to do.
    pub(crate) fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, json!({ "error": message.into() }))
    }

    fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// Started child processes, reaped by a thread of their own so none is
/// left a zombie; the ids tell which rollouts a child is working on, and
/// the last child of each id leaves its exit code (-1: killed by a
/// signal) for the request that started it.
#[derive(Default)]
struct Children {
    running: Mutex<Vec<(String, Child)>>,
    exited: Mutex<std::collections::HashMap<String, i32>>,
}

impl Children {
    fn add(&self, id: &str, child: Child) {
        self.exited
            .lock()
            .expect("children lock poisoned")
            .remove(id);
        self.running
            .lock()
            .expect("children lock poisoned")
            .push((id.to_string(), child));
    }

    fn busy(&self, id: &str) -> bool {
        self.reap();
        self.running
            .lock()
            .expect("children lock poisoned")
            .iter()
            .any(|(i, _)| i == id)
    }

    /// The exit code of rollout `id`'s last child, once it has exited.
    fn exit_code(&self, id: &str) -> Option<i32> {
        self.reap();
        self.exited
            .lock()
            .expect("children lock poisoned")
            .get(id)
            .copied()
    }

    fn reap(&self) {
        let mut ended = Vec::new();
        self.running
            .lock()
            .expect("children lock poisoned")
            .retain_mut(|(id, child)| match child.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) => {
                    ended.push((id.clone(), status.code().unwrap_or(-1)));
                    false
                }
                Err(_) => {
                    ended.push((id.clone(), -1));
                    false
                }
            });
        self.exited
            .lock()
            .expect("children lock poisoned")
            .extend(ended);
    }
}

/// What every request thread shares.
pub(crate) struct Api {
    args: ServeArgs,
    token: auth::Token,
    own_ferry: PathBuf,
    children: Children,
}

pub fn serve(args: &ServeArgs) -> Result<()> {
    let token = auth::Token::load(&args.token_file)?;
    // Refuse a broken inventory or TLS files now rather than on the first
    // request.
    Inventory::load(&args.inventory)?;
    let tls = match &args.tls {
        Some((cert, key)) => Some(listener::tls_config(cert, key)?),
        None => None,
    };
    let own_ferry = crate::commands::own_ferry()?;
    let socket =
        std::net::TcpListener::bind(&args.listen).map_err(|e| CoordinatorError::Listen {
            address: args.listen.clone(),
            reason: e.to_string(),
        })?;
    let bound = socket
        .local_addr()
        .map_err(|e| CoordinatorError::io("cannot read the listening address", e))?;
    let api = Arc::new(Api {
        args: args.clone(),
        token,
        own_ferry,
        children: Children::default(),
    });
    {
        let api = Arc::clone(&api);
        std::thread::spawn(move || loop {
            api.children.reap();
            std::thread::sleep(Duration::from_millis(500));
        });
    }
    let max_connections = args
        .max_connections
        .unwrap_or_else(listener::default_max_connections);
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The bound address, with the real port when --listen asked for port 0.
    outln!("serving the rollout API and dashboard on {scheme}://{bound}/");
    outln!(
        "at most {max_connections} connections at once; a request must arrive within {} s",
        http::REQUEST_DEADLINE.as_secs()
    );
    listener::run(
        &socket,
        tls,
        max_connections,
        Arc::new(move |connection| api.serve_connection(connection)),
    )
}

impl Api {
    /// Reads the connection's one request and answers it.
    fn serve_connection(&self, mut connection: Connection) {
        match http::read_request(&mut connection, MAX_BODY) {
            Ok(request) => {
                connection.request_read();
                self.handle(request, &mut connection);
            }
            Err(bad) => {
                if let Some(status) = bad.status {
                    respond(&mut connection, Reply::error(status, bad.message));
                }
            }
        }
        connection.close();
    }

    fn handle(&self, request: Request, out: &mut Connection) {
        let url = request.target.as_str();
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let route = routes::find(path);
        let method = request.method.as_str();
        let get = method == "GET";
        // The dashboard page is static (no secret in it) and must load
        // before its script can send the token from the URL fragment.
        let public = get && matches!(route, Some((routes::Endpoint::Dashboard, _)));
        // The token comes first, before the route is even judged: without
        // it nobody learns which paths or ids exist.
        let query_allowed = get && matches!(route, Some((routes::Endpoint::Watch, _)));
        if !public && !self.authorized(&request, query, query_allowed) {
            let reply = Reply::error(
                401,
                "missing or wrong token: send `Authorization: Bearer <token>` with the token in the server's --token-file",
            )
            .with_header("WWW-Authenticate", "Bearer".into());
            return respond(out, reply);
        }
        let Some((endpoint, id)) = route else {
            return respond(
                out,
                Reply::error(
                    404,
                    format!("no endpoint {path}: the API is described in docs/rollout-api.yaml"),
                ),
            );
        };
        let expected = endpoint.method();
        if method != expected {
            let reply = Reply::error(405, format!("{path} takes {expected}, not {method}"))
                .with_header("Allow", expected.into());
            return respond(out, reply);
        }
        if endpoint == routes::Endpoint::Watch {
            let id = id.unwrap_or_default();
            return match self.find(&id) {
                Ok(_) => sse::watch(out, &self.args.state_dir, &id, self.args.heartbeat),
                Err(reply) => respond(out, reply),
            };
        }
        let reply = self.dispatch(endpoint, id.as_deref(), &request.body);
        respond(out, reply);
    }

    fn authorized(&self, request: &Request, query: &str, query_allowed: bool) -> bool {
        let header = request.header("Authorization").and_then(auth::bearer);
        if let Some(given) = header {
            return self.token.matches(given);
        }
        query_allowed && auth::query_token(query).is_some_and(|given| self.token.matches(&given))
    }
}

fn respond(out: &mut Connection, reply: Reply) {
    let (bytes, content_type) = match reply.body {
        ReplyBody::Json(value) => (
            serde_json::to_vec_pretty(&value).expect("JSON values serialise"),
            "application/json",
        ),
        ReplyBody::Html(html) => (html.as_bytes().to_vec(), "text/html; charset=utf-8"),
    };
    let mut headers = vec![
        ("Content-Type", content_type),
        ("Cache-Control", "no-store"),
    ];
    headers.extend(reply.headers.iter().map(|(n, v)| (*n, v.as_str())));
    // A client that went away needs no answer.
    let _ = out
        .write_all(&http::response(reply.status, &headers, &bytes))
        .and_then(|()| out.flush());
}

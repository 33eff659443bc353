//! `ferry rollout serve`: the rollout HTTP API and its live dashboard.
//!
//! A small synchronous server (`tiny_http`, one thread per request) so the
//! applier keeps no async runtime: the API's work is reading small record
//! files and starting child processes, and a watch stream is a thread
//! that polls one file. Rollouts themselves run as child processes of this
//! executable (`ferry rollout execute|promote|rollback ID`), so the
//! per-rollout lock, the record and `resume` behave exactly as from the
//! command line, and a slow node never blocks the server.
//!
//! Every request, the dashboard's included, needs the bearer token from
//! `--token-file`. A browser cannot put headers on a page load or an
//! `EventSource`, so `GET /` and `GET /api/v1/updates/watch/{id}` also
//! accept it as `?token=`; every other endpoint takes the header only (a
//! token in a URL ends up in histories and logs, so it is allowed only
//! where there is no other way). The routes and their schemas are in
//! `docs/rollout-api.yaml`.

mod auth;
mod routes;
mod sse;

use std::io::Read;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response};

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
}

/// Requests served at once at most (watch streams included); more get 503
/// instead of a thread each.
const MAX_IN_FLIGHT: usize = 256;
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
/// left a zombie; the ids tell which rollouts a child is working on.
#[derive(Default)]
struct Children(Mutex<Vec<(String, Child)>>);

impl Children {
    fn add(&self, id: &str, child: Child) {
        self.0
            .lock()
            .expect("children lock poisoned")
            .push((id.to_string(), child));
    }

    fn busy(&self, id: &str) -> bool {
        self.reap();
        self.0
            .lock()
            .expect("children lock poisoned")
            .iter()
            .any(|(i, _)| i == id)
    }

    fn reap(&self) {
        self.0
            .lock()
            .expect("children lock poisoned")
            .retain_mut(|(_, child)| !matches!(child.try_wait(), Ok(Some(_)) | Err(_)));
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
    // Refuse a broken inventory now rather than on the first request.
    Inventory::load(&args.inventory)?;
    let own_ferry = crate::commands::own_ferry()?;
    let server = tiny_http::Server::http(&args.listen).map_err(|e| CoordinatorError::Listen {
        address: args.listen.clone(),
        reason: e.to_string(),
    })?;
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
    // The bound address, with the real port when --listen asked for port 0.
    outln!(
        "serving the rollout API and dashboard on http://{}/",
        server.server_addr()
    );
    let in_flight = Arc::new(AtomicUsize::new(0));
    for request in server.incoming_requests() {
        if in_flight.load(Ordering::SeqCst) >= MAX_IN_FLIGHT {
            respond(
                request,
                Reply::error(503, "too many requests at once: retry in a moment"),
            );
            continue;
        }
        let api = Arc::clone(&api);
        let slot = InFlight::take(&in_flight);
        std::thread::spawn(move || {
            // Held to the end, even if the handler panics.
            let _slot = slot;
            api.handle(request);
        });
    }
    Ok(())
}

/// One request being served; counted until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn take(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Api {
    fn handle(&self, mut request: Request) {
        let url = request.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
        let route = routes::find(path);
        let method = request.method().clone();
        // The token comes first, before the route is even judged: without
        // it nobody learns which paths or ids exist.
        let query_allowed = method == Method::Get
            && route.as_ref().is_some_and(|(endpoint, _)| {
                matches!(
                    endpoint,
                    routes::Endpoint::Dashboard | routes::Endpoint::Watch
                )
            });
        if !self.authorized(&request, query, query_allowed) {
            let reply = Reply::error(
                401,
                "missing or wrong token: send `Authorization: Bearer <token>` with the token in the server's --token-file",
            )
            .with_header("WWW-Authenticate", "Bearer".into());
            return respond(request, reply);
        }
        let Some((endpoint, id)) = route else {
            return respond(
                request,
                Reply::error(
                    404,
                    format!("no endpoint {path}: the API is described in docs/rollout-api.yaml"),
                ),
            );
        };
        let expected = endpoint.method();
        if method.as_str() != expected {
            let reply = Reply::error(
                405,
                format!("{path} takes {expected}, not {}", method.as_str()),
            )
            .with_header("Allow", expected.into());
            return respond(request, reply);
        }
        if endpoint == routes::Endpoint::Watch {
            let id = id.unwrap_or_default();
            return match self.find(&id) {
                Ok(_) => sse::watch(request, &self.args.state_dir, &id, self.args.heartbeat),
                Err(reply) => respond(request, reply),
            };
        }
        let body = if method == Method::Post {
            let mut body = Vec::new();
            if let Err(e) = request
                .as_reader()
                .take(MAX_BODY + 1)
                .read_to_end(&mut body)
            {
                return respond(
                    request,
                    Reply::error(400, format!("cannot read the request body: {e}")),
                );
            }
            if body.len() as u64 > MAX_BODY {
                return respond(
                    request,
                    Reply::error(
                        413,
                        format!("the request body is over {MAX_BODY} bytes: send only the fields the endpoint takes"),
                    ),
                );
            }
            body
        } else {
            Vec::new()
        };
        let reply = self.dispatch(endpoint, id.as_deref(), &body);
        respond(request, reply);
    }

    fn authorized(&self, request: &Request, query: &str, query_allowed: bool) -> bool {
        let header = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .and_then(|h| auth::bearer(h.value.as_str()));
        if let Some(given) = header {
            return self.token.matches(given);
        }
        query_allowed
            && auth::query_param(query, "token").is_some_and(|given| self.token.matches(&given))
    }
}

fn respond(request: Request, reply: Reply) {
    let (bytes, content_type) = match reply.body {
        ReplyBody::Json(value) => (
            serde_json::to_vec_pretty(&value).expect("JSON values serialise"),
            "application/json",
        ),
        ReplyBody::Html(html) => (html.as_bytes().to_vec(), "text/html; charset=utf-8"),
    };
    let mut response = Response::from_data(bytes)
        .with_status_code(reply.status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"));
    for (name, value) in &reply.headers {
        response = response.with_header(header(name, value));
    }
    // A client that went away needs no answer.
    let _ = request.respond(response);
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

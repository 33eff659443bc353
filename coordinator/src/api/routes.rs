//! The API's endpoints: which path is which, and what each one does.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};

use ferry_node::exit::Exit;
use semver::Version;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Api, Reply, ReplyBody};
use crate::cluster;
use crate::commands::PolicyOverrides;
use crate::error::CoordinatorError;
use crate::execute::RolloutLock;
use crate::inventory::{Canary, Inventory, Promote, Role, RollbackScope};
use crate::lock::StopRequest;
use crate::prepare;
use crate::record::{NodeRolloutState, RolloutRecord, RolloutState};
use crate::revert;
use crate::stop::Stopped;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Dashboard,
    Version,
    Plan,
    Execute,
    Status,
    History,
    Promote,
    Rollback,
    Watch,
    Abort,
    Pause,
    Resume,
}

/// Every route: method, path (`{id}`: a rollout id), endpoint. The one
/// list the router and the OpenAPI document's test both read, so the
/// document cannot miss a route.
pub const ROUTES: &[(&str, &str, Endpoint)] = &[
    ("GET", "/", Endpoint::Dashboard),
    ("GET", "/api/v1/updates/version", Endpoint::Version),
    ("POST", "/api/v1/updates/plan", Endpoint::Plan),
    ("POST", "/api/v1/updates/execute", Endpoint::Execute),
    ("GET", "/api/v1/updates/status/{id}", Endpoint::Status),
    ("GET", "/api/v1/updates/history", Endpoint::History),
    ("POST", "/api/v1/updates/promote/{id}", Endpoint::Promote),
    ("POST", "/api/v1/updates/rollback/{id}", Endpoint::Rollback),
    ("GET", "/api/v1/updates/watch/{id}", Endpoint::Watch),
    ("POST", "/api/v1/updates/abort/{id}", Endpoint::Abort),
    ("POST", "/api/v1/updates/pause/{id}", Endpoint::Pause),
    ("POST", "/api/v1/updates/resume/{id}", Endpoint::Resume),
];

impl Endpoint {
    pub fn method(self) -> &'static str {
        ROUTES
            .iter()
            .find(|(_, _, e)| *e == self)
            .map(|(m, _, _)| *m)
            .expect("every endpoint has a route")
    }
}

/// The endpoint `path` names, with its `{id}` if it has one.
pub fn find(path: &str) -> Option<(Endpoint, Option<String>)> {
    ROUTES.iter().find_map(
        |(_, pattern, endpoint)| match pattern.strip_suffix("{id}") {
            Some(prefix) => {
                let id = path.strip_prefix(prefix)?;
                (!id.is_empty() && !id.contains('/')).then(|| (*endpoint, Some(id.to_string())))
            }
            None => (path == *pattern).then_some((*endpoint, None)),
        },
    )
}

/// `POST /api/v1/updates/plan`'s body: the version and optional overrides
/// of the inventory's `[rollout]` keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanRequest {
    version: Version,
    #[serde(default, deserialize_with = "present")]
    canary: Option<Canary>,
    #[serde(default, deserialize_with = "present")]
    max_unavailable: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    bake_seconds: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    promote: Option<Promote>,
    #[serde(default, deserialize_with = "present")]
    rollback_on_failure: Option<RollbackScope>,
    #[serde(default)]
    allow_downgrade: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteRequest {
    id: String,
}

/// An optional key that, when present, holds a value: `null` is refused
/// (the document gives each key a type, and leaving a key out is how a
/// request keeps the inventory's value).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

const DASHBOARD: &str = include_str!("dashboard.html");

/// A request body: one JSON object of the endpoint's shape. serde would
/// also read a struct from a JSON array of its fields in order; the API
/// takes objects only, as its document says.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], example: &str) -> Result<T, Reply> {
    let refuse = |why: String| {
        Reply::error(
            400,
            format!("the request body is not what this endpoint takes ({why}); send JSON like {example}"),
        )
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| refuse(e.to_string()))?;
    if !value.is_object() {
        return Err(refuse("it is not a JSON object".into()));
    }
    serde_json::from_value(value).map_err(|e| refuse(e.to_string()))
}

impl Api {
    pub(super) fn dispatch(&self, endpoint: Endpoint, id: Option<&str>, body: &[u8]) -> Reply {
        let id = id.unwrap_or_default();
        let result = match endpoint {
            Endpoint::Dashboard => Ok(Reply {
                status: 200,
                body: ReplyBody::Html(DASHBOARD),
                headers: Vec::new(),
            }),
            Endpoint::Version => self.versions(),
            Endpoint::Plan => self.plan(body),
            Endpoint::Execute => parse::<ExecuteRequest>(body, r#"{"id": "<rollout id>"}"#)
                .and_then(|request| self.execute(&request.id)),
            Endpoint::Status => self.find(id).map(|record| Reply::json(200, json!(record))),
            Endpoint::History => self.history(),
            Endpoint::Promote => self.promote(id),
            Endpoint::Rollback => self.rollback(id),
            Endpoint::Watch => unreachable!("watch streams are answered by sse::watch"),
            Endpoint::Abort => self.stop(id, StopRequest::Abort),
            Endpoint::Pause => self.stop(id, StopRequest::Pause),
            Endpoint::Resume => self.resume(id),
        };
        result.unwrap_or_else(|reply| reply)
    }

    fn inventory(&self) -> Result<Inventory, Reply> {
        Inventory::load(&self.args.inventory).map_err(|e| Reply::error(500, e.to_string()))
    }

    /// The record of rollout `id`, or 404.
    pub(super) fn find(&self, id: &str) -> Result<RolloutRecord, Reply> {
        let well_formed = !id.is_empty()
            && !id.starts_with('.')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
        let state_dir = &self.args.state_dir;
        if !well_formed || !RolloutRecord::path(state_dir, id).is_file() {
            return Err(Reply::error(
                404,
                format!("no rollout {id:?}: GET /api/v1/updates/history lists the rollouts"),
            ));
        }
        RolloutRecord::load(state_dir, id).map_err(|e| Reply::error(500, e.to_string()))
    }

    fn versions(&self) -> Result<Reply, Reply> {
        let inventory = self.inventory()?;
        // Who leads now (`leader_command`), not who led when the file was
        // written; if it cannot be asked, the roles the file gives.
        let leader = inventory.current_leader().ok().flatten();
        let answers = prepare::ask_versions(&inventory, &self.own_ferry);
        let nodes: Vec<Value> = inventory
            .nodes
            .iter()
            .zip(answers)
            .map(|(node, answer)| {
                let leads = match &leader {
                    Some(name) => name == &node.name,
                    None => node.role == Role::Leader,
                };
                let role = if leads { "leader" } else { "follower" };
                match answer.answer {
                    Ok(version) => json!({
                        "name": node.name, "address": node.address, "role": role,
                        "reachable": true, "version": version,
                    }),
                    Err(e) => json!({
                        "name": node.name, "address": node.address, "role": role,
                        "reachable": false, "version": null, "error": e,
                    }),
                }
            })
            .collect();
        Ok(Reply::json(200, json!({ "nodes": nodes })))
    }

    fn plan(&self, body: &[u8]) -> Result<Reply, Reply> {
        let request: PlanRequest = parse(body, r#"{"version": "1.2.0", "canary": 1}"#)?;
        let overrides = PolicyOverrides {
            canary: request.canary,
            max_unavailable: request.max_unavailable,
            bake_seconds: request.bake_seconds,
            promote: request.promote,
            rollback_on_failure: request.rollback_on_failure,
            allow_downgrade: request.allow_downgrade,
        };
        let inventory = self.inventory()?;
        let policy = overrides
            .apply_to(&inventory.rollout)
            .map_err(|e| match e {
                CoordinatorError::ZeroMaxUnavailable => Reply::error(
                    400,
                    "max_unavailable = 0: at least 1 node must be updated at a time; send 1 or more",
                ),
                e => Reply::error(400, e.to_string()),
            })?;
        let record = prepare::plan_rollout(
            &self.args.inventory,
            &request.version,
            &policy,
            &self.args.state_dir,
            &self.own_ferry,
        )
        .map_err(|e| match e.exit() {
            Exit::ClusterBusy => Reply::error(409, e.to_string()),
            _ => Reply::error(422, e.to_string()),
        })?;
        let order: Vec<&str> = record.plan.nodes_in_order().collect();
        Ok(Reply::json(
            201,
            json!({
                "id": record.id,
                "version": record.version,
                "state": record.state,
                "order": order,
                "stages": record.plan.stages,
                "skipped": record.plan.skipped,
                "leader": record.plan.leader,
                "warnings": record.plan.warnings,
                "policy": policy,
            }),
        ))
    }

    fn history(&self) -> Result<Reply, Reply> {
        let mut records = RolloutRecord::list(&self.args.state_dir)
            .map_err(|e| Reply::error(500, e.to_string()))?;
        records.reverse();
        let rollouts: Vec<Value> = records
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "version": r.version,
                    "state": r.state,
                    "created": r.created,
                    "updated": r.updated,
                    "stage_index": r.stage_index,
                    "stages": r.plan.stages.len(),
                    "nodes": r.plan.nodes_in_order().count(),
                    "updated_nodes": r.count(NodeRolloutState::Updated),
                    "failed_nodes": r.count(NodeRolloutState::Failed),
                })
            })
            .collect();
        Ok(Reply::json(200, json!({ "rollouts": rollouts })))
    }

    fn execute(&self, id: &str) -> Result<Reply, Reply> {
        self.start_child(id, "execute", |state| {
            (state != RolloutState::Planned).then_some(
                "only a planned rollout can be executed (a stopped one continues with `ferry rollout resume`)",
            )
        })
    }

    fn promote(&self, id: &str) -> Result<Reply, Reply> {
        self.start_child(id, "promote", |state| {
            (state != RolloutState::AwaitingPromotion)
                .then_some("only a rollout awaiting promotion (its canary done) can be promoted")
        })
    }

    fn rollback(&self, id: &str) -> Result<Reply, Reply> {
        self.start_child(id, "rollback", revert::refuse_rollback)
    }

    fn resume(&self, id: &str) -> Result<Reply, Reply> {
        self.start_child(id, "resume", |state| {
            (!matches!(state, RolloutState::Paused | RolloutState::Running)).then_some(
                "only a paused rollout, or one whose coordinator died (running), can be resumed",
            )
        })
    }

    /// Abort or pause: asked of the coordinator driving it (202), or done
    /// at once when nobody drives it (200).
    fn stop(&self, id: &str, request: StopRequest) -> Result<Reply, Reply> {
        self.find(id)?;
        let stopped =
            crate::stop::stop(&self.args.state_dir, id, request).map_err(|e| match e {
                CoordinatorError::WrongState { .. } | CoordinatorError::AlreadyEnded { .. } => {
                    Reply::error(409, e.to_string())
                }
                e => Reply::error(500, e.to_string()),
            })?;
        let watch = format!("/api/v1/updates/watch/{id}");
        Ok(match stopped {
            Stopped::Requested => Reply::json(
                202,
                json!({ "id": id, "requested": request.done(), "watch": watch }),
            ),
            Stopped::Now(state) => Reply::json(200, json!({ "id": id, "state": state })),
        })
    }

    /// Starts `ferry rollout VERB ID` unless `refuse` objects to the
    /// rollout's state or something drives it already (409 then). Its
    /// output goes to `<state dir>/rollouts/<id>.log`.
    fn start_child(
        &self,
        id: &str,
        verb: &str,
        refuse: impl Fn(RolloutState) -> Option<&'static str>,
    ) -> Result<Reply, Reply> {
        let record = self.find(id)?;
        let state = serde_json::to_value(record.state).unwrap_or_default();
        if let Some(why) = refuse(record.state) {
            return Err(Reply::error(
                409,
                format!("rollout {id} is {}: {why}", state.as_str().unwrap_or("?")),
            ));
        }
        let busy = || {
            Reply::error(
                409,
                format!("rollout {id} is being driven by a coordinator right now: watch it, or retry when it stops"),
            )
        };
        if self.children.busy(id) {
            return Err(busy());
        }
        // Another rollout holding the cluster: 409 now, naming it, rather
        // than a 202 for a child that would refuse.
        let key = cluster::of_record(&record);
        drop(
            cluster::claim(&self.args.state_dir, &key, Some(id))
                .map_err(|e| Reply::error(409, e.to_string()))?,
        );
        // Tried and released at once: the child takes it for real, and
        // fails cleanly if another coordinator wins the gap.
        drop(RolloutLock::acquire(&self.args.state_dir, id).map_err(|_| busy())?);
        let log = RolloutRecord::dir(&self.args.state_dir).join(format!("{id}.log"));
        let open_log = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&log)
        };
        let cannot = |e: std::io::Error| {
            Reply::error(
                500,
                format!(
                    "cannot start `ferry rollout {verb} {id}` (log {}): {e}",
                    log.display()
                ),
            )
        };
        let (stdout, stderr) = (open_log().map_err(cannot)?, open_log().map_err(cannot)?);
        let child = Command::new(&self.own_ferry)
            .args(["rollout", verb, id, "--state-dir"])
            .arg(&self.args.state_dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(cannot)?;
        self.children.add(id, child);
        if let Some(failed) = self.await_start(&record, id) {
            let why = log_tail(&log);
            let status = if failed == i32::from(Exit::ClusterBusy.code()) {
                409
            } else {
                500
            };
            return Err(Reply::error(
                status,
                format!("`ferry rollout {verb} {id}` stopped at once (exit {failed}): {why}"),
            ));
        }
        Ok(Reply::json(
            202,
            json!({
                "id": id,
                "started": verb,
                "status": format!("/api/v1/updates/status/{id}"),
                "watch": format!("/api/v1/updates/watch/{id}"),
                "log": log,
            }),
        ))
    }
}

impl Api {
    /// Waits (a few seconds at most) until the child has saved the
    /// rollout's next state or exited, so a watch opened after the 202
    /// follows the new work instead of ending on the old terminal state.
    /// Returns the child's exit code when it failed before changing the
    /// rollout's state: then there is no work to watch, and the request
    /// is answered with the failure instead of a 202.
    fn await_start(&self, before: &RolloutRecord, id: &str) -> Option<i32> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let changed = RolloutRecord::load(&self.args.state_dir, id)
                .is_ok_and(|now| now.state != before.state || now.updated != before.updated);
            if changed {
                return None;
            }
            if let Some(code) = self.children.exit_code(id) {
                return (code != 0).then_some(code);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The last line of a child's log: its one-line error.
fn log_tail(log: &std::path::Path) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    format!("{} (log {})", last.trim(), log.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_endpoints_and_ids() {
        assert_eq!(find("/"), Some((Endpoint::Dashboard, None)));
        assert_eq!(
            find("/api/v1/updates/status/r-1.1.0"),
            Some((Endpoint::Status, Some("r-1.1.0".into())))
        );
        assert_eq!(find("/api/v1/updates/status/"), None);
        assert_eq!(find("/api/v1/updates/status/a/b"), None);
        assert_eq!(find("/api/v1/updates/nope"), None);
        assert_eq!(Endpoint::Plan.method(), "POST");
        assert_eq!(Endpoint::Watch.method(), "GET");
    }

    /// The OpenAPI document describes every route the server knows, with
    /// its method, so the two cannot drift apart.
    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc = include_str!("../../../docs/rollout-api.yaml");
        for (method, path, _) in ROUTES {
            let at = doc
                .find(&format!("\n  {path}:\n"))
                .unwrap_or_else(|| panic!("{path} is not in docs/rollout-api.yaml"));
            let section = &doc[at + 1..];
            let end = section[1..].find("\n  /").map_or(section.len(), |i| i + 1);
            assert!(
                section[..end].contains(&format!("\n    {}:\n", method.to_lowercase())),
                "{method} {path} is not in docs/rollout-api.yaml"
            );
        }
    }
}

//! The promise: whatever instant an update or a rollback of a node with a
//! running service is killed at, the next mutating command (`ferry
//! repair`) leaves exactly one instance of the service running, and it
//! serves the release `current` names: the old one or the new one, never
//! both and never none. The release the node lands on is in service as the
//! uninterrupted operation would have left it: restarted, reloaded or
//! started beside the old one and the old one stopped (blue-green), then
//! `post_apply` (an update) or `post_rollback` (a rollback) run last.
//!
//! The walk covers {restart, reload, blue-green} × {update, rollback, failed
//! update}, and every crash point of each: ferry's own (listed by a discovery run with
//! `FERRY_CRASH_LOG`, as in crash_at_every_point.rs) and one right after
//! each service command and hook. Those commands note themselves in the
//! same log and, when `FERRY_CRASH_AT` names them, SIGKILL ferry (their
//! parent): the states ferry has no crash point for, where the service has
//! changed (a candidate started, the old instance stopped, a reload
//! signalled, a hook run). A failed update installs a release that never
//! becomes healthy, so its walk crosses the way back too (the bad release
//! live, the old one put back into service): whatever it is cut at, the
//! node ends on the old release. Each case is a fresh node with the demo service
//! (`examples/demo-service`) in a network namespace of its own, so cases
//! run side by side on one port number. Instances are counted from /proc
//! (every demo-service process naming the node's directory) and asked
//! their version over HTTP from inside the namespace.

#![allow(clippy::disallowed_macros)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_demo_service::commands::{blue_green_commands, reload_command, restart_command};
use ferry_tests::binaries;
use ferry_tests::blue_green::{ferry_in, namespace, ADDR};
use ferry_tests::crash_walk;
use ferry_tests::fixtures::{Node, Workspace, CHANNEL};
use ferry_tests::load::{start_demo_load, LoadReport};
use ferry_tests::netns::NetworkNamespace;
use ferry_tests::run::{run, Output};

const OLD: &str = "1.0.0";
const NEW: &str = "2.0.0";
/// The release in service before the failed update (a version belongs to
/// one channel, so not `OLD`).
const GOOD: &str = "1.5.0";
/// Published, after `GOOD`, on [`FAILING`] only: its `/health` answers 503.
const BAD: &str = "3.0.0";
/// The channel of the failed update's walk.
const FAILING: &str = "failing";

/// Cases run at once. Most of a case is waiting (a service starting, a
/// health probe's interval, a stop), so more than the two cores CI has.
const WORKERS: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Strategy {
    Restart,
    Reload,
    BlueGreen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    /// 1.0.0 in service; `ferry apply` to 2.0.0.
    Update,
    /// 1.0.0, then 2.0.0 installed and in service; `ferry rollback` to 1.0.0.
    Rollback,
    /// 1.5.0 in service; `ferry apply` to 3.0.0, which never passes its
    /// health gate and is rolled back (exit 6).
    FailedUpdate,
}

impl Operation {
    /// (release before, release after).
    fn versions(self) -> (&'static str, &'static str) {
        match self {
            Operation::Update => (OLD, NEW),
            Operation::Rollback => (NEW, OLD),
            Operation::FailedUpdate => (GOOD, BAD),
        }
    }

    /// The release the node must end on: the target, unless the operation
    /// fails on purpose.
    fn lands_on(self) -> Vec<&'static str> {
        let (before, after) = self.versions();
        match self {
            Operation::FailedUpdate => vec![before],
            Operation::Update | Operation::Rollback => vec![before, after],
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Operation::Update | Operation::FailedUpdate => &["apply"],
            Operation::Rollback => &["rollback"],
        }
    }

    /// How the uninterrupted operation exits.
    fn exit_code(self) -> i32 {
        match self {
            Operation::FailedUpdate => 6,
            Operation::Update | Operation::Rollback => 0,
        }
    }

    fn channel(self) -> &'static str {
        match self {
            Operation::FailedUpdate => FAILING,
            Operation::Update | Operation::Rollback => CHANNEL,
        }
    }

    /// `operation` in `ferry history --json`.
    fn kind(self) -> &'static str {
        match self {
            Operation::Update | Operation::FailedUpdate => "apply",
            Operation::Rollback => "rollback",
        }
    }

    /// The hooks the operation runs, before and after its switch.
    fn hooks(self) -> [&'static str; 2] {
        match self {
            Operation::Update | Operation::FailedUpdate => ["pre_apply", "post_apply"],
            Operation::Rollback => ["pre_rollback", "post_rollback"],
        }
    }
}

/// The points the service commands and hooks of one uninterrupted update
/// or rollback note, each once.
fn service_points(strategy: Strategy, operation: Operation) -> Vec<String> {
    let [pre, post] = operation.hooks();
    let commands: &[&str] = match strategy {
        Strategy::Restart => &["restart_command"],
        Strategy::Reload => &["reload_command"],
        Strategy::BlueGreen => &["start_command", "stop_command"],
    };
    std::iter::once(pre)
        .chain(commands.iter().copied())
        .chain(std::iter::once(post))
        .map(service_point)
        .collect()
}

fn service_point(name: &str) -> String {
    format!("svc:{name}#1")
}

/// Shell run at the end of a service command or hook: noted as a crash
/// point in a discovery run, and the crash itself (SIGKILL to ferry, the
/// shell's parent) when `FERRY_CRASH_AT` names it. The point is
/// `svc:NAME#N` for the command's Nth run since [`ServiceNode::prepare`]
/// (counted in a file in `counters`): a failed update restarts twice, onto
/// the bad release and back.
fn crash_point(name: &str, counters: &Path) -> String {
    let count = counters.join(format!("count-{name}"));
    let count = count.display();
    format!(
        "n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo $n > {count}; point=svc:{name}#$n; \
         if [ -n \"$FERRY_CRASH_LOG\" ]; then echo $point >> \"$FERRY_CRASH_LOG\"; fi; \
         if [ \"$FERRY_CRASH_AT\" = $point ]; then kill -9 $PPID; fi"
    )
}

/// Shell that waits (at most 10 s) for `pid_file`, which the demo service
/// writes once it listens: a command that starts it returns once it
/// serves, so a crash right after one finds the instance up, as it would
/// be by the time a later ferry run comes.
fn until_listening(pid_file: &str) -> String {
    format!("i=0; while [ ! -s {pid_file} ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done")
}

/// A demo-service release: its demo.toml and a `bin/demo-service` that
/// runs the one binary the tests built, with `--release-dir` its own
/// release (resolved: through `current` it is `releases/<v>`) unless the
/// command line names one, as the reload strategy's names `current`. A
/// copy of the binary in each release would have the publisher compress
/// and every apply hash 20 MB in a debug build: seconds per case.
fn release(ws: &Workspace, version: &str) -> PathBuf {
    let dir = ws.dir.join("inputs").join(format!("launched-{version}"));
    fs::create_dir_all(dir.join("bin")).unwrap();
    let launcher = dir.join("bin/demo-service");
    fs::write(
        &launcher,
        format!(
            "#!/bin/sh\n\
             case \" $* \" in *\" --release-dir \"*) exec {demo} \"$@\";; esac\n\
             exec {demo} --release-dir \"$(cd \"$(dirname \"$0\")/..\" && pwd -P)\" \"$@\"\n",
            demo = binaries::demo_service().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&launcher, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("demo.toml"), format!("version = \"{version}\"\n")).unwrap();
    dir
}

/// `release` made to answer 503 on `/health`, whatever else it does.
fn unhealthy(release: PathBuf) -> PathBuf {
    let settings = release.join("demo.toml");
    let mut text = fs::read_to_string(&settings).unwrap();
    text.push_str("healthy = false\n");
    fs::write(&settings, text).unwrap();
    release
}

/// One demo-service process: its pid and command line.
#[derive(Debug)]
struct Instance {
    pid: u32,
    args: Vec<String>,
}

impl Instance {
    /// The release it was started from, when its `--release-dir` names
    /// one (`releases/<v>`; the reload strategy's follows `current`).
    fn release(&self) -> Option<&str> {
        let at = self.args.iter().position(|a| a == "--release-dir")?;
        let dir = Path::new(self.args.get(at + 1)?);
        let parent = dir.parent()?;
        (parent.file_name()? == "releases").then(|| dir.file_name()?.to_str())?
    }
}

/// A node whose service runs the demo service with `strategy`, in a
/// network namespace of its own.
struct ServiceNode {
    node: Node,
    marker: PathBuf,
    /// Where the crash points count the runs of each command.
    counters: PathBuf,
    ns: NetworkNamespace,
}

impl ServiceNode {
    fn new(ws: &Workspace, name: &str, walk: Walk) -> ServiceNode {
        let Walk {
            strategy,
            operation,
        } = walk;
        let ns = namespace("crash_walk_leaves_one_instance_serving").expect("a namespace");
        let node = ws.node(name);
        let marker = node.dir.join("marker");
        let log = node.dir.join("demo.log");
        let pid_file = node.dir.join("demo.pid");
        let pid = pid_file.display().to_string();
        let counters = node.dir.join("counters");
        fs::create_dir_all(&counters).unwrap();
        // Lines apart: a start command ends in `&`, which `;` cannot follow.
        let mut commands = match strategy {
            Strategy::Restart => format!(
                "strategy = \"restart\"\nrestart_command = {:?}\n",
                format!(
                    "{}\n{}\n{}",
                    restart_command(&node.root, ADDR, &pid_file, &log),
                    until_listening(&pid),
                    crash_point("restart_command", &counters)
                )
            ),
            Strategy::Reload => format!(
                "strategy = \"reload\"\nreload_command = {:?}\n",
                format!(
                    "{}\n{}\n{}",
                    reload_command(&node.root, ADDR, &pid_file, &log),
                    until_listening(&pid),
                    crash_point("reload_command", &counters)
                )
            ),
            Strategy::BlueGreen => {
                let pid_dir = node.dir.join("pids");
                fs::create_dir_all(&pid_dir).unwrap();
                let (start, stop) = blue_green_commands(ADDR, &pid_dir, &log);
                format!(
                    "strategy = \"blue-green\"\nstart_command = {:?}\nstop_command = {:?}\n",
                    format!(
                        "{start}\n{}\n{}",
                        until_listening(&format!("{}/demo-{{version}}.pid", pid_dir.display())),
                        crash_point("start_command", &counters)
                    ),
                    format!("{stop}\n{}", crash_point("stop_command", &counters))
                )
            }
        };
        for hook in ["pre_apply", "post_apply", "pre_rollback", "post_rollback"] {
            let line = format!(
                "echo \"{hook} $FERRY_TO_VERSION\" >> {}; {}",
                marker.display(),
                crash_point(hook, &counters)
            );
            commands.push_str(&format!("{hook} = {line:?}\n"));
        }
        // A release that never becomes healthy fails its gate in 2 s, not
        // 10: every case of the failed update waits that out once or twice.
        let retries = match operation {
            Operation::FailedUpdate => 100,
            Operation::Update | Operation::Rollback => 500,
        };
        let channel = format!("channel = \"{CHANNEL}\"");
        let config = fs::read_to_string(&node.config).unwrap();
        assert!(config.contains(&channel), "{channel} not in {config}");
        let mut config =
            config.replace(&channel, &format!("channel = \"{}\"", operation.channel()));
        config.push_str(&format!(
            "\n[service]\n{commands}command_timeout_seconds = 20\nhook_timeout_seconds = 10\n\
             [health]\nurl = \"http://{ADDR}/health\"\nexpect_version = true\ninterval_ms = 20\nretries = {retries}\ntimeout_seconds = 15\n"
        ));
        fs::write(&node.config, config).unwrap();
        ServiceNode {
            node,
            marker,
            counters,
            ns,
        }
    }

    /// `ferry ARGS` inside the namespace.
    fn ferry(&self, args: &[&str]) -> Output {
        run(&mut self.command(binaries::ferry(), args))
    }

    fn command(&self, binary: &Path, args: &[&str]) -> Command {
        ferry_in(&self.ns, binary, &self.node.config, args)
    }

    /// The fault-injection build of `ferry ARGS` inside the namespace.
    fn fault(&self, args: &[&str]) -> Command {
        self.command(binaries::ferry_with_fault_injection(), args)
    }

    /// The node's state before `operation`: its service serving the
    /// release the operation leaves, and an empty marker.
    #[track_caller]
    fn prepare(&self, operation: Operation) {
        match operation {
            Operation::Update => self.ferry(&["apply", "--version", OLD]),
            Operation::Rollback => {
                self.ferry(&["apply", "--version", OLD]).assert_success();
                self.ferry(&["apply", "--version", NEW])
            }
            Operation::FailedUpdate => self.ferry(&["apply", "--version", GOOD]),
        }
        .assert_success();
        let _ = fs::remove_file(&self.marker);
        fs::remove_dir_all(&self.counters).unwrap();
        fs::create_dir_all(&self.counters).unwrap();
    }

    /// Every live demo-service process started for this node (the `/`
    /// keeps node `n1` from counting `n10`'s).
    fn instances(&self) -> Vec<Instance> {
        let mine = format!("{}/", self.node.dir.display());
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            // Gone for a process that exited meanwhile; empty (so not a
            // demo-service) for a zombie.
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_demo = args
                .first()
                .is_some_and(|a| a.ends_with("/demo-service") || a == "demo-service");
            if is_demo && args.iter().any(|a| a.starts_with(&mine)) {
                found.push(Instance { pid, args });
            }
        }
        found
    }

    /// `GET /version` on new connections for a tenth of a second from
    /// inside the namespace: every instance listening on the port answers
    /// some of them.
    fn ask(&self) -> LoadReport {
        let addr = ADDR.parse().unwrap();
        let command = self.ns.command(binaries::demo_load());
        start_demo_load(command, addr, 2, Duration::from_millis(100)).finish()
    }

    /// What the hooks wrote since `prepare`.
    fn marker(&self) -> Vec<String> {
        fs::read_to_string(&self.marker)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// The operations the node's history holds.
    fn recorded(&self) -> Vec<serde_json::Value> {
        self.node.history_json()
    }
}

impl Drop for ServiceNode {
    /// Nothing of a case outlives it: its instances (however many a bug
    /// left), then its files; the namespace goes last, as a field.
    fn drop(&mut self) {
        for instance in self.instances() {
            let _ = Command::new("kill")
                .args(["-KILL", &instance.pid.to_string()])
                .status();
        }
        let _ = fs::remove_dir_all(&self.node.dir);
    }
}

/// One strategy × operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Walk {
    strategy: Strategy,
    operation: Operation,
}

impl Walk {
    fn all() -> Vec<Walk> {
        let mut walks = Vec::new();
        for strategy in [Strategy::Restart, Strategy::Reload, Strategy::BlueGreen] {
            for operation in [
                Operation::Update,
                Operation::Rollback,
                Operation::FailedUpdate,
            ] {
                walks.push(Walk {
                    strategy,
                    operation,
                });
            }
        }
        walks
    }

    fn name(self) -> String {
        format!("{:?}-{:?}", self.strategy, self.operation).to_lowercase()
    }

    /// Every crash point of the uninterrupted operation, in order: ferry's
    /// and those of its service commands and hooks.
    fn discover(self, ws: &Workspace) -> Vec<String> {
        let node = ServiceNode::new(ws, &format!("discover-{}", self.name()), self);
        node.prepare(self.operation);
        let log = ws.dir.join(format!("points-{}.log", self.name()));
        let points = crash_walk::discover_exiting(
            &mut node.fault(self.operation.args()),
            &log,
            &format!("{self:?}"),
            self.operation.exit_code(),
        );
        let mut seen = std::collections::BTreeSet::new();
        let twice: Vec<&String> = points.iter().filter(|p| !seen.insert(*p)).collect();
        assert!(twice.is_empty(), "{self:?}: points noted twice: {twice:?}");
        let noted: Vec<String> = points
            .iter()
            .filter(|p| p.starts_with("svc:"))
            .cloned()
            .collect();
        if self.operation == Operation::FailedUpdate {
            // The bad release put into service and the old one put back:
            // its strategy's commands more than once, never `post_apply`.
            let [pre, post] = self.operation.hooks();
            assert_eq!(
                noted.first(),
                Some(&service_point(pre)),
                "{self:?}: {noted:?}"
            );
            assert!(
                noted.len() >= 3 && !noted.iter().any(|p| p.contains(post)),
                "{self:?}: service commands and hooks {noted:?}"
            );
        } else {
            let expected = service_points(self.strategy, self.operation);
            assert_eq!(noted, expected, "{self:?}: service commands and hooks");
        }
        let ferry_points = points.len() - noted.len();
        assert!(
            ferry_points >= 10,
            "{self:?} passes only {ferry_points} of ferry's crash points: {points:?}"
        );
        // The walk crosses the switch.
        crash_walk::position(&points, "switch:after-rename");
        points
    }

    /// A fresh node killed at `point`, recovered by `ferry repair` and
    /// checked. The version it landed on.
    fn case(self, ws: &Workspace, index: usize, point: &str) -> String {
        let (before, after) = self.operation.versions();
        let [_, post] = self.operation.hooks();
        let context = format!("{:?} {:?} killed at {point}", self.strategy, self.operation);
        let node = ServiceNode::new(ws, &format!("{}-{index}", self.name()), self);
        node.prepare(self.operation);
        let recorded_before = node.recorded().len();

        crash_walk::kill_at(&mut node.fault(self.operation.args()), point, &context);
        let out = node.ferry(&["repair"]);
        // The repair that finds the bad release live takes it out of
        // service as the interrupted update would have: rolled back, 6.
        let repaired = match self.operation {
            Operation::FailedUpdate => matches!(out.code, Some(0 | 6)),
            Operation::Update | Operation::Rollback => out.success(),
        };
        assert!(repaired, "{context}, then `ferry repair` failed:\n{out}");
        let case = format!("{context}, then `ferry repair`");

        let current = node.node.current_version();
        let lands_on = self.operation.lands_on();
        let Some(landed) = current.clone().filter(|v| lands_on.contains(&v.as_str())) else {
            panic!("{case}: current is {current:?}, not one of {lands_on:?}\n{out}");
        };
        let instances = node.instances();
        let asked = node.ask();
        let serving = format!(
            "instances {instances:?}; answers over HTTP: {:?} ({} failed: {:?})",
            asked.versions, asked.failed, asked.errors
        );
        assert_eq!(
            instances.len(),
            1,
            "{case}: current is {landed}, {serving}\n{out}"
        );
        assert_eq!(
            (asked.versions.keys().collect::<Vec<_>>(), asked.failed),
            (vec![&landed], 0),
            "{case}: current is {landed}, but {serving}\n{out}"
        );
        if let Some(release) = instances[0].release() {
            assert_eq!(
                release, landed,
                "{case}: the instance runs {release}'s files\n{out}"
            );
        }

        // The hooks: the operation's own `post` hook after the release it
        // put into service, and never one that claims a release live that
        // is not.
        let marker = node.marker();
        if landed == after {
            assert_eq!(
                marker.last().map(String::as_str),
                Some(format!("{post} {after}").as_str()),
                "{case}: {after} is in service, its hooks ran {marker:?}\n{out}"
            );
        } else {
            assert!(
                !marker.iter().any(|line| line.starts_with(post)),
                "{case}: the node stayed on {before}, its hooks ran {marker:?}\n{out}"
            );
        }

        assert!(
            !node.node.state_dir.join("journal.json").exists(),
            "{case}: the journal is still open\n{out}"
        );
        let records = node.recorded();
        let succeeded = records[recorded_before..].iter().any(|op| {
            op["operation"] == self.operation.kind()
                && op["outcome"] == "success"
                && op["to_version"] == after
        });
        assert_eq!(
            succeeded,
            landed == after,
            "{case}: landed on {landed}, history since: {:#?}\n{out}",
            &records[recorded_before..]
        );
        landed
    }
}

/// The message of a caught panic.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "a panic without a message".into(), |m| m.to_string()),
    }
}

/// Runs `job(i)` for every `i < count` on [`WORKERS`] threads; each
/// result, or the message of its panic, in order.
fn in_parallel<T: Send>(count: usize, job: impl Fn(usize) -> T + Sync) -> Vec<Result<T, String>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<T, String>>>> =
        Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS.min(count) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let result =
                    panic::catch_unwind(AssertUnwindSafe(|| job(i))).map_err(panic_message);
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

#[test]
fn a_crash_at_any_point_of_any_strategy_leaves_one_instance_serving() {
    if namespace("a_crash_at_any_point_of_any_strategy_leaves_one_instance_serving").is_none() {
        return;
    }
    let started = Instant::now();
    let ws = Workspace::new();
    ws.publish(OLD, CHANNEL, &release(&ws, OLD));
    ws.publish(NEW, CHANNEL, &release(&ws, NEW));
    ws.publish(GOOD, FAILING, &release(&ws, GOOD));
    ws.publish(BAD, FAILING, &unhealthy(release(&ws, BAD)));
    // Built before the threads start, so no case waits on cargo.
    binaries::ferry_with_fault_injection();
    binaries::demo_load();

    let walks = Walk::all();
    let discovered: Vec<Vec<String>> = in_parallel(walks.len(), |i| walks[i].discover(&ws))
        .into_iter()
        .zip(&walks)
        .map(|(points, walk)| points.unwrap_or_else(|e| panic!("discovering {walk:?}: {e}")))
        .collect();
    let cases: Vec<(Walk, usize, &str)> = walks
        .iter()
        .zip(&discovered)
        .flat_map(|(walk, points)| {
            points
                .iter()
                .enumerate()
                .map(move |(i, point)| (*walk, i, point.as_str()))
        })
        .collect();
    let results = in_parallel(cases.len(), |i| {
        let (walk, index, point) = cases[i];
        walk.case(&ws, index, point)
    });

    let mut failures = Vec::new();
    let mut landed: BTreeMap<Walk, BTreeMap<String, usize>> = BTreeMap::new();
    for ((walk, _, point), result) in cases.iter().zip(results) {
        match result {
            Ok(version) => *landed.entry(*walk).or_default().entry(version).or_default() += 1,
            Err(message) => failures.push(format!("{walk:?} at {point}: {message}")),
        }
    }
    for (walk, points) in walks.iter().zip(&discovered) {
        let (before, after) = walk.operation.versions();
        let outcomes = landed.get(walk).cloned().unwrap_or_default();
        let in_service = points.iter().filter(|p| p.starts_with("svc:")).count();
        println!(
            "{:?} {:?} {before} -> {after}: walked {} crash points ({} of ferry's, {in_service} after service commands and hooks); recovery ended on {outcomes:?}",
            walk.strategy,
            walk.operation,
            points.len(),
            points.len() - in_service,
        );
        // A walk that never crossed the switch proves nothing about it
        // (a failed update's ends on the old release, whatever it crossed).
        let sides: Vec<&str> = outcomes.keys().map(String::as_str).collect();
        let mut expected = walk.operation.lands_on();
        expected.sort();
        if failures.is_empty() && sides != expected {
            failures.push(format!(
                "{walk:?} ({before} -> {after}): recovery ended on {outcomes:?}, not on each of {:?}",
                walk.operation.lands_on()
            ));
        }
    }
    println!(
        "walked {} crash points in all ({} failed) in {:.0?}",
        cases.len(),
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

//! The promise: nodes that update themselves (`ferry apply`, pull mode)
//! with `[coordination]` take turns through a real etcd — never more than
//! `max_unavailable` updating at once (checked in etcd's history of every
//! revision, and by the nodes' own hooks), a node that crashed before its
//! switch frees its slot when its lease expires (one that crashed after
//! it keeps the slot: tests/crashed_pull_node_holds_its_slot.rs), the leader updates only after every
//! follower reported the new version, a failing canary halts the fleet
//! until `ferry coordination clear-halt` (even when etcd is down as it
//! fails), a node that lost its slot stops
//! before its switch, an operator can halt the fleet and forget a departed
//! node by hand, and without etcd no node updates.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ferry_tests::cluster::five_nodes_on_1_0_0;
use ferry_tests::etcd::{free_port, Etcd, Key};
use ferry_tests::fixtures::{Node, Workspace};
use ferry_tests::run::Output;
use serde_json::Value;

const PREFIX: &str = "/ferry/test";

/// What a node's `ferry.toml` gets on top of the fixture's.
struct Coordinated<'a> {
    endpoint: &'a str,
    max_unavailable: u32,
    /// `Some(followers)` makes the node the leader.
    leader_of: Option<u32>,
    pre_apply: String,
    post_apply: String,
}

/// Appends `[node]`, `[service]` hooks and `[coordination]` to `node`'s
/// configuration. The hooks log `start <name>` and `end <name>` to `log`.
fn coordinate(node: &Node, log: &Path, c: &Coordinated) {
    let log = log.display();
    let name = &node.name;
    let role = match c.leader_of {
        Some(followers) => format!("role = \"leader\"\nfollowers = {followers}\n"),
        None => "role = \"follower\"\n".into(),
    };
    let extra = format!(
        "\n[node]\nid = \"{name}\"\n\n[service]\npre_apply = \"echo start {name} >> {log}; {}\"\npost_apply = \"echo end {name} >> {log}; {}\"\n\n[coordination]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nprefix = \"{PREFIX}\"\nmax_unavailable = {}\nlease_seconds = 2\npoll_interval_ms = 100\nwait_timeout_seconds = 120\n{role}",
        c.pre_apply, c.post_apply, c.endpoint, c.max_unavailable
    );
    let mut text = fs::read_to_string(&node.config).unwrap();
    text.push_str(&extra);
    fs::write(&node.config, text).unwrap();
}

fn cluster(
    etcd: &Etcd,
    max_unavailable: u32,
    leader: Option<&str>,
) -> (Workspace, Vec<Node>, PathBuf) {
    let (ws, nodes) = five_nodes_on_1_0_0();
    let log = ws.dir.join("hooks.log");
    for node in &nodes {
        coordinate(
            node,
            &log,
            &Coordinated {
                endpoint: &etcd.url,
                max_unavailable,
                leader_of: (leader == Some(node.name.as_str())).then_some(4),
                pre_apply: "sleep 2".into(),
                post_apply: "true".into(),
            },
        );
    }
    (ws, nodes, log)
}

fn apply(node: &Node) -> Output {
    node.ferry(&["apply", "--version", "1.1.0", "--output", "json"])
}

/// Runs `apply` on every node at once (each started `stagger` after the
/// previous one); returns each node's output by name.
fn apply_all(nodes: &[Node], stagger: Duration) -> BTreeMap<String, Output> {
    let handles: Vec<_> = nodes
        .iter()
        .map(|node| {
            let node = node.clone();
            let handle = thread::spawn(move || (node.name.clone(), apply(&node)));
            thread::sleep(stagger);
            handle
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// `ferry apply` to 1.1.0 on `node` in its own process group, so that
/// [`kill_group`] takes its hooks with it, as a crash of the machine would.
fn spawn_apply_in_own_group(node: &Node) -> Child {
    node.command(&["apply", "--version", "1.1.0", "--output", "json"])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGKILL to `child`'s whole process group, then waits for it.
fn kill_group(mut child: Child) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
}

/// The last JSON event `apply --output json` printed.
fn last_event(out: &Output) -> Value {
    let line = out
        .stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON event\n{out}"));
    serde_json::from_str(line).unwrap()
}

/// The node names under `<PREFIX>/<section>/` in `keys`.
fn names(keys: &[Key], section: &str) -> BTreeSet<String> {
    let prefix = format!("{PREFIX}/{section}/");
    keys.iter()
        .filter_map(|k| k.key.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// The most `start`s without their `end` at any point of the hook log.
fn hook_peak(log: &Path) -> usize {
    let mut running = BTreeSet::new();
    let mut peak = 0;
    for line in fs::read_to_string(log).unwrap().lines() {
        match line.split_once(' ') {
            Some(("start", name)) => {
                assert!(running.insert(name.to_string()), "{name} started twice")
            }
            Some(("end", name)) => assert!(running.remove(name), "{name} ended without a start"),
            _ => panic!("unexpected hook log line {line:?}"),
        }
        peak = peak.max(running.len());
    }
    peak
}

#[test]
fn never_more_than_max_unavailable_nodes_update_at_once() {
    let Some(etcd) = Etcd::start_or_skip("never_more_than_max_unavailable_nodes_update_at_once")
    else {
        return;
    };
    let (_ws, nodes, log) = cluster(&etcd, 2, None);
    let outputs = apply_all(&nodes, Duration::ZERO);
    for node in &nodes {
        let out = &outputs[&node.name];
        out.assert_success();
        assert_eq!(last_event(out)["event"], "applied", "{out}");
        assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    }

    // etcd's own record, revision by revision: who held an updating key.
    let history = etcd.history(&format!("{PREFIX}/updating/"));
    let mut seen = BTreeSet::new();
    let mut peak = 0;
    for (revision, keys) in &history {
        let updating = names(keys, "updating");
        assert!(
            updating.len() <= 2,
            "at revision {revision} {} nodes were updating: {updating:?}",
            updating.len()
        );
        peak = peak.max(updating.len());
        seen.extend(updating);
    }
    let all: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    assert_eq!(seen, all, "every node had its turn");
    // Five nodes asking at once with a 2 s pre_apply: the two slots were
    // used together, so the limit was what held the others back.
    assert_eq!(peak, 2, "two nodes updated side by side at some point");
    // The nodes' own view: no more than two between pre_apply and post_apply.
    assert!((1..=2).contains(&hook_peak(&log)));
    // Every slot and updating key went with its lease; members report 1.1.0.
    assert!(etcd
        .get_prefix(&format!("{PREFIX}/slots/"), None)
        .is_empty());
    assert!(etcd
        .get_prefix(&format!("{PREFIX}/updating/"), None)
        .is_empty());
    let members = etcd.get_prefix(&format!("{PREFIX}/members/"), None);
    assert_eq!(members.len(), 5);
    for member in members {
        let value: Value = serde_json::from_str(&member.value).unwrap();
        assert_eq!(value["version"], "1.1.0", "{}", member.key);
    }
}

#[test]
fn a_node_killed_holding_a_slot_frees_it_when_its_lease_expires() {
    let Some(etcd) =
        Etcd::start_or_skip("a_node_killed_holding_a_slot_frees_it_when_its_lease_expires")
    else {
        return;
    };
    let (_ws, nodes, log) = cluster(&etcd, 1, None);
    // n1 hangs in pre_apply, holding the only slot, until it is killed.
    let hanging = nodes[0].config.clone();
    let text = fs::read_to_string(&hanging).unwrap().replacen(
        "echo start n1 >> ",
        "sleep 600; echo start n1 >> ",
        1,
    );
    fs::write(&hanging, text).unwrap();
    let n1 = spawn_apply_in_own_group(&nodes[0]);
    let updating = format!("{PREFIX}/updating/");
    wait_until("n1 holds the slot", || {
        names(&etcd.get_prefix(&updating, None), "updating").contains("n1")
    });

    let others = thread::spawn({
        let nodes = nodes[1..].to_vec();
        move || apply_all(&nodes, Duration::ZERO)
    });
    // The others queue behind n1.
    wait_until("four nodes queue behind n1", || {
        names(&etcd.get_prefix(&format!("{PREFIX}/slots/"), None), "slots").len() == 5
    });
    let killed_at_revision = etcd.revision();
    let killed = Instant::now();
    kill_group(n1);
    wait_until("another node takes the freed slot", || {
        !names(&etcd.get_prefix(&updating, None), "updating")
            .iter()
            .all(|n| n == "n1")
    });
    let waited = killed.elapsed();

    let outputs = others.join().unwrap();
    for node in &nodes[1..] {
        outputs[&node.name].assert_success();
        assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    }
    assert_eq!(nodes[0].current_version().as_deref(), Some("1.0.0"));
    // Nobody took n1's slot while its lease lived: the first other node
    // became `updating` only after n1's key was gone, and that took about
    // the lease's 2 s (less at most the third since its last renewal), not
    // the 120 s the nodes would have waited for a slot.
    let history = etcd.history(&updating);
    let freed = history
        .iter()
        .find(|(revision, keys)| {
            *revision > killed_at_revision && !names(keys, "updating").contains("n1")
        })
        .map(|(revision, _)| *revision)
        .expect("n1's slot was freed");
    for (revision, keys) in &history {
        let holders = names(keys, "updating");
        assert!(holders.len() <= 1, "at revision {revision}: {holders:?}");
        if *revision < freed {
            assert!(
                holders.iter().all(|h| h == "n1"),
                "at revision {revision}: {holders:?}"
            );
        }
    }
    assert!(
        waited >= Duration::from_millis(1300) && waited < Duration::from_secs(10),
        "another node went on {waited:?} after the kill: n1's lease lives 2 s"
    );
    assert!(!fs::read_to_string(&log).unwrap().contains("start n1"));
}

#[test]
fn the_leader_updates_only_after_every_follower_reported_the_new_version() {
    let Some(etcd) = Etcd::start_or_skip(
        "the_leader_updates_only_after_every_follower_reported_the_new_version",
    ) else {
        return;
    };
    let (_ws, nodes, log) = cluster(&etcd, 2, Some("n1"));
    // The leader asks first; it must still go last.
    let outputs = apply_all(&nodes, Duration::from_millis(300));
    for node in &nodes {
        outputs[&node.name].assert_success();
        assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    }
    let leader = &outputs["n1"];
    assert!(
        leader.stdout.contains("\"for\":\"followers\""),
        "the leader said it waited for the followers\n{leader}"
    );

    // In etcd: the revision the leader began updating at, and those at
    // which each follower reported 1.1.0.
    let history = etcd.history(&format!("{PREFIX}/"));
    let leader_began = history
        .iter()
        .find(|(_, keys)| names(keys, "updating").contains("n1"))
        .map(|(revision, _)| *revision)
        .expect("the leader updated");
    for follower in ["n2", "n3", "n4", "n5"] {
        let reported = history
            .iter()
            .find(|(_, keys)| {
                keys.iter().any(|k| {
                    k.key == format!("{PREFIX}/members/{follower}") && k.value.contains("\"1.1.0\"")
                })
            })
            .map(|(revision, _)| *revision)
            .unwrap_or_else(|| panic!("{follower} reported 1.1.0"));
        assert!(
            reported < leader_began,
            "{follower} reported 1.1.0 at revision {reported}, after the leader began at {leader_began}"
        );
    }
    // And by the hooks: the leader's pre_apply after every follower's end.
    let lines: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let leader_start = lines.iter().position(|l| l == "start n1").unwrap();
    assert_eq!(lines.iter().filter(|l| l.starts_with("end ")).count(), 5);
    assert_eq!(
        lines[..leader_start]
            .iter()
            .filter(|l| l.starts_with("end "))
            .count(),
        4,
        "every follower finished before the leader started\n{lines:?}"
    );
    assert!(hook_peak(&log) <= 2);
}

#[test]
fn a_failing_canary_halts_the_fleet_until_the_halt_is_cleared() {
    let Some(etcd) =
        Etcd::start_or_skip("a_failing_canary_halts_the_fleet_until_the_halt_is_cleared")
    else {
        return;
    };
    let (ws, nodes, _log) = cluster(&etcd, 1, None);
    // The canary's post_apply fails: the node rolls itself back (exit 6).
    // Its pre_apply holds it until the others queue behind it.
    let canary = &nodes[0];
    let go = ws.dir.join("canary-may-go");
    let text = fs::read_to_string(&canary.config)
        .unwrap()
        .replacen(
            "echo start n1 >> ",
            &format!(
                "until test -e {}; do sleep 0.1; done; echo start n1 >> ",
                go.display()
            ),
            1,
        )
        .replacen("echo end n1 >> ", "exit 3; echo ", 1);
    fs::write(&canary.config, text).unwrap();
    let canary_run = thread::spawn({
        let canary = canary.clone();
        move || apply(&canary)
    });
    let updating = format!("{PREFIX}/updating/");
    wait_until("the canary holds the slot", || {
        names(&etcd.get_prefix(&updating, None), "updating").contains("n1")
    });
    let queued = thread::spawn({
        let nodes = nodes[1..].to_vec();
        move || apply_all(&nodes, Duration::ZERO)
    });
    wait_until("four nodes queue behind the canary", || {
        names(&etcd.get_prefix(&format!("{PREFIX}/slots/"), None), "slots").len() == 5
    });
    fs::write(&go, "").unwrap();

    let out = canary_run.join().unwrap();
    out.assert_code(6);
    assert_eq!(last_event(&out)["event"], "rolled_back", "{out}");
    assert_eq!(canary.current_version().as_deref(), Some("1.0.0"));
    let halt = etcd.get_prefix(&format!("{PREFIX}/halt"), None);
    assert_eq!(halt.len(), 1, "the canary wrote the halt key");
    let halt: Value = serde_json::from_str(&halt[0].value).unwrap();
    assert_eq!(
        (halt["node"].as_str(), halt["version"].as_str()),
        (Some("n1"), Some("1.1.0"))
    );
    assert!(
        halt["reason"].as_str().unwrap().contains("post_apply"),
        "{halt}"
    );
    // The nodes queued behind it gave up their places instead of updating.
    let outputs = queued.join().unwrap();
    for node in &nodes[1..] {
        let out = &outputs[&node.name];
        out.assert_code(7);
        assert_eq!(last_event(out)["event"], "halted", "{out}");
        assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    }
    assert!(etcd
        .get_prefix(&format!("{PREFIX}/slots/"), None)
        .is_empty());

    // A node starting now refuses as well, with its own outcome, and
    // changes nothing.
    let outputs = apply_all(&nodes[1..], Duration::ZERO);
    for node in &nodes[1..] {
        let out = &outputs[&node.name];
        out.assert_code(7);
        let event = last_event(out);
        assert_eq!(event["event"], "halted", "{out}");
        assert!(
            event["message"]
                .as_str()
                .unwrap()
                .contains("n1 failed to update to 1.1.0"),
            "{out}"
        );
        out.assert_stderr_contains("ferry coordination clear-halt");
        assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    }
    // Nobody took a slot while halted.
    assert!(etcd
        .history(&format!("{PREFIX}/updating/"))
        .iter()
        .all(|(_, keys)| names(keys, "updating").iter().all(|n| n == "n1")));

    let status = nodes[1].ferry_ok(&["coordination", "status", "--json"]);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["halt"]["node"], "n1");
    nodes[1]
        .ferry_ok(&["coordination", "clear-halt"])
        .assert_stdout_contains("cleared the halt");
    assert!(etcd.get_prefix(&format!("{PREFIX}/halt"), None).is_empty());
    let status = nodes[1].ferry_ok(&["coordination", "status", "--json"]);
    assert!(serde_json::from_str::<Value>(&status.stdout).unwrap()["halt"].is_null());

    for node in &nodes[1..] {
        apply(node).assert_success();
        assert_eq!(node.current_version().as_deref(), Some("1.1.0"));
    }
}

#[test]
fn a_node_that_lost_its_slot_stops_before_the_switch() {
    let Some(etcd) = Etcd::start_or_skip("a_node_that_lost_its_slot_stops_before_the_switch")
    else {
        return;
    };
    let (ws, nodes, log) = cluster(&etcd, 1, None);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    // Once, in n1's pre_apply: its slot key vanishes (as when its lease
    // expires while etcd is out of reach), and n2, queued behind it, takes
    // the slot and starts updating.
    let once = ws.dir.join("lose-the-slot-once");
    fs::write(&once, "").unwrap();
    let ctl = format!("ETCDCTL_API=3 /usr/bin/etcdctl --endpoints={}", etcd.url);
    let lose = format!(
        "if test -e {once}; then rm {once}; {ctl} del {PREFIX}/slots/n1; until {ctl} get --prefix {PREFIX}/updating/n2 | grep -q n2; do sleep 0.1; done; fi; ",
        once = once.display()
    );
    let text = fs::read_to_string(&n1.config).unwrap().replacen(
        "echo start n1 >> ",
        &format!("{lose}echo start n1 >> "),
        1,
    );
    fs::write(&n1.config, text).unwrap();

    let first = thread::spawn({
        let n1 = n1.clone();
        move || apply(&n1)
    });
    wait_until("n1 holds the slot", || {
        names(
            &etcd.get_prefix(&format!("{PREFIX}/updating/"), None),
            "updating",
        )
        .contains("n1")
    });
    let second = thread::spawn({
        let n2 = n2.clone();
        move || apply(&n2)
    });
    let out = first.join().unwrap();
    assert!(!out.success(), "{out}");
    out.assert_stderr_contains("no longer holds its coordination slot")
        .assert_stderr_contains("stopped before the switch")
        .assert_stderr_contains("1.0.0 still runs");
    assert_eq!(last_event(&out)["event"], "failed", "{out}");
    assert_eq!(n1.current_version().as_deref(), Some("1.0.0"));
    second.join().unwrap().assert_success();
    assert_eq!(n2.current_version().as_deref(), Some("1.1.0"));
    // n1 never went past pre_apply, and a lost turn is not the version's
    // fault: no halt.
    let hooks = fs::read_to_string(&log).unwrap();
    assert!(!hooks.contains("end n1"), "{hooks}");
    assert!(etcd.get_prefix(&format!("{PREFIX}/halt"), None).is_empty());
    // Nothing is left behind: the next run queues again and updates.
    apply(n1).assert_success();
    assert_eq!(n1.current_version().as_deref(), Some("1.1.0"));
}

#[test]
fn a_halt_is_written_even_when_etcd_is_down_at_that_moment() {
    let Some(mut etcd) =
        Etcd::start_or_skip("a_halt_is_written_even_when_etcd_is_down_at_that_moment")
    else {
        return;
    };
    let (ws, nodes, _log) = cluster(&etcd, 1, None);
    let canary = &nodes[0];
    // The canary's post_apply fails, but only once the test has killed
    // etcd: the node's first attempts to write the halt are refused.
    let (reached, killed) = (
        ws.dir.join("post-apply-reached"),
        ws.dir.join("etcd-killed"),
    );
    let text = fs::read_to_string(&canary.config).unwrap().replacen(
        "echo end n1 >> ",
        &format!(
            "touch {}; until test -e {}; do sleep 0.1; done; exit 3; echo ",
            reached.display(),
            killed.display()
        ),
        1,
    );
    fs::write(&canary.config, text).unwrap();
    let run = thread::spawn({
        let canary = canary.clone();
        move || apply(&canary)
    });
    wait_until("the canary's post_apply runs", || reached.exists());
    etcd.stop();
    fs::write(&killed, "").unwrap();
    thread::sleep(Duration::from_secs(3));
    etcd.restart();
    let out = run.join().unwrap();
    out.assert_code(6);
    assert_eq!(canary.current_version().as_deref(), Some("1.0.0"));
    let halt = etcd.get_prefix(&format!("{PREFIX}/halt"), None);
    assert_eq!(
        halt.len(),
        1,
        "the halt key was written once etcd was back:\n{out}"
    );
    let halt: Value = serde_json::from_str(&halt[0].value).unwrap();
    assert_eq!(halt["node"], "n1", "{halt}");
    out.assert_stderr_contains("cannot write the halt key yet")
        .assert_stderr_contains("this failure halted the fleet");
    apply(&nodes[1]).assert_code(7);
}

#[test]
fn an_operator_halts_the_fleet_and_forgets_a_departed_node() {
    let Some(etcd) = Etcd::start_or_skip("an_operator_halts_the_fleet_and_forgets_a_departed_node")
    else {
        return;
    };
    let (_ws, nodes, _log) = cluster(&etcd, 1, Some("n5"));
    let (n1, n2, n3, leader) = (&nodes[0], &nodes[1], &nodes[2], &nodes[4]);
    let text = fs::read_to_string(&leader.config)
        .unwrap()
        .replace("followers = 4", "followers = 1");
    fs::write(&leader.config, text).unwrap();

    n1.ferry(&["coordination", "halt", "--reason", " "])
        .assert_code(1)
        .assert_stderr_contains("--reason is empty");
    assert!(etcd.get_prefix(&format!("{PREFIX}/halt"), None).is_empty());
    n1.ferry_ok(&["coordination", "halt", "--reason", "error rate too high"])
        .assert_stdout_contains("no node takes a slot");
    n2.ferry_ok(&["coordination", "halt", "--reason", "again"])
        .assert_stdout_contains("already halted")
        .assert_stdout_contains("error rate too high");
    // n3 registers on 1.0.0 and is refused; it then "leaves the fleet".
    let out = apply(n3);
    out.assert_code(7);
    let event = last_event(&out);
    assert_eq!(event["event"], "halted", "{out}");
    let message = event["message"].as_str().unwrap();
    assert!(
        message.contains("halted by hand from n1") && message.contains("error rate too high"),
        "{out}"
    );
    assert_eq!(n3.current_version().as_deref(), Some("1.0.0"));
    n1.ferry_ok(&["coordination", "clear-halt"]);
    apply(n2).assert_success();

    // The leader waits for every registered follower, n3 included.
    let leader_run = thread::spawn({
        let leader = leader.clone();
        move || apply(&leader)
    });
    wait_until("the leader registers", || {
        !etcd
            .get_prefix(&format!("{PREFIX}/members/n5"), None)
            .is_empty()
    });
    thread::sleep(Duration::from_secs(1));
    let before_forget = etcd.revision();
    n1.ferry_ok(&["coordination", "forget", "n3"])
        .assert_stdout_contains("forgot n3 (it last reported 1.0.0)");
    n1.ferry(&["coordination", "forget", "n3"])
        .assert_code(1)
        .assert_stderr_contains("n3 is not a member");
    leader_run.join().unwrap().assert_success();
    assert_eq!(leader.current_version().as_deref(), Some("1.1.0"));
    assert_eq!(n3.current_version().as_deref(), Some("1.0.0"));
    // The leader took its slot only after n3 was forgotten.
    let first_turn = etcd
        .history(&format!("{PREFIX}/updating/"))
        .into_iter()
        .find(|(_, keys)| names(keys, "updating").contains("n5"))
        .map(|(revision, _)| revision)
        .expect("the leader held a slot");
    assert!(
        first_turn > before_forget,
        "leader updating at revision {first_turn}, before n3 was forgotten (after {before_forget})"
    );
    let status = n1.ferry_ok(&["coordination", "status", "--json"]);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    let members: Vec<&str> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["node"].as_str().unwrap())
        .collect();
    assert!(!members.contains(&"n3"), "{status:#}");
}

#[test]
fn without_etcd_no_node_updates() {
    let (ws, nodes) = five_nodes_on_1_0_0();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let node = &nodes[0];
    coordinate(
        node,
        &ws.dir.join("hooks.log"),
        &Coordinated {
            endpoint: &endpoint,
            max_unavailable: 1,
            leader_of: None,
            pre_apply: "true".into(),
            post_apply: "true".into(),
        },
    );
    let out = apply(node);
    out.assert_code(1);
    out.assert_stderr_contains(&endpoint)
        .assert_stderr_contains("does not update without its turn");
    assert_eq!(node.current_version().as_deref(), Some("1.0.0"));
    assert!(!ws.dir.join("hooks.log").exists(), "no hook ran");
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

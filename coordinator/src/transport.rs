//! Running `ferry` on a node: the command lines the `[transport]` makes,
//! and reading a node's `ferry status --json`.
//!
//! Both transports produce one shell line, run with
//! [`ShellCommand`](ferry_node::shell::ShellCommand) so a node that hangs (a
//! dead host, an ssh waiting on a password) is killed at a deadline
//! instead of hanging the coordinator. ssh runs with `BatchMode=yes` for
//! the same reason: a prompt nobody answers is a hang.

use std::path::Path;
use std::time::Duration;

use semver::Version;

use ferry_node::commands::status::StatusReport;

use crate::inventory::{InventoryNode, SshTransport, Transport, APPLY_ARGS};
use ferry_node::shell::ShellCommand;

/// How long reading one node's status may take.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(60);

/// What to run on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteCommand<'a> {
    /// `ferry apply --version V --output json`.
    Apply(&'a Version),
    /// `ferry apply --version V --allow-downgrade --output json`: a
    /// rollout started with `--allow-downgrade`.
    ApplyDowngrade(&'a Version),
    /// `ferry status --json`.
    Status,
    /// `ferry rollback --to V`.
    Rollback(&'a Version),
}

impl RemoteCommand<'_> {
    /// The version it names, if any.
    pub fn version(&self) -> Option<&Version> {
        match self {
            RemoteCommand::Apply(v)
            | RemoteCommand::ApplyDowngrade(v)
            | RemoteCommand::Rollback(v) => Some(v),
            RemoteCommand::Status => None,
        }
    }
}

/// The shell line that runs `what` on `node`. `own_ferry` is this
/// executable, for `{ferry}` in a command template.
pub fn command_line(
    transport: &Transport,
    node: &InventoryNode,
    what: RemoteCommand<'_>,
    own_ferry: &Path,
) -> String {
    match transport {
        Transport::Ssh(ssh) => ssh_line(ssh, node, what),
        Transport::Command(command) => {
            let template = match what {
                RemoteCommand::Apply(_) => command.template.clone(),
                RemoteCommand::ApplyDowngrade(_) => command.template.replace(
                    APPLY_ARGS,
                    "apply --version {version} --allow-downgrade --output json",
                ),
                RemoteCommand::Status => command
                    .status_template
                    .clone()
                    .unwrap_or_else(|| command.template.replace(APPLY_ARGS, "status --json")),
                RemoteCommand::Rollback(_) => command
                    .template
                    .replace(APPLY_ARGS, "rollback --to {version}"),
            };
            let version = match what {
                RemoteCommand::Apply(v)
                | RemoteCommand::ApplyDowngrade(v)
                | RemoteCommand::Rollback(v) => v.to_string(),
                RemoteCommand::Status => String::new(),
            };
            template
                .replace("{name}", &shell_quote(&node.name))
                .replace("{address}", &shell_quote(&node.address))
                .replace("{version}", &shell_quote(&version))
                .replace("{ferry}", &shell_quote(&own_ferry.to_string_lossy()))
        }
    }
}

fn ssh_line(ssh: &SshTransport, node: &InventoryNode, what: RemoteCommand<'_>) -> String {
    let mut args: Vec<String> = vec!["ssh".into(), "-o".into(), "BatchMode=yes".into()];
    if let Some(port) = ssh.port {
        args.extend(["-p".into(), port.to_string()]);
    }
    if let Some(identity) = &ssh.identity {
        args.extend(["-i".into(), identity.to_string_lossy().into_owned()]);
    }
    args.extend(ssh.extra_args.iter().cloned());
    args.push(match &ssh.user {
        Some(user) => format!("{user}@{}", node.address),
        None => node.address.clone(),
    });
    args.push("--".into());
    // ssh joins the remote words with spaces and hands them to the
    // remote shell: quote each for that shell. `{name}` lets one inventory
    // reach several ferry installs on one host (one per node), as the
    // end-to-end tests do; filled before quoting, so a name is one word.
    let per_node = |s: &str| s.replace("{name}", &node.name);
    let mut remote = vec![per_node(&ssh.ferry_path)];
    if let Some(config) = &ssh.config {
        remote.extend(["--config".into(), per_node(config)]);
    }
    match what {
        RemoteCommand::Apply(v) => remote.extend([
            "apply".into(),
            "--version".into(),
            v.to_string(),
            "--output".into(),
            "json".into(),
        ]),
        RemoteCommand::ApplyDowngrade(v) => remote.extend([
            "apply".into(),
            "--version".into(),
            v.to_string(),
            "--allow-downgrade".into(),
            "--output".into(),
            "json".into(),
        ]),
        RemoteCommand::Status => remote.extend(["status".into(), "--json".into()]),
        RemoteCommand::Rollback(v) => {
            remote.extend(["rollback".into(), "--to".into(), v.to_string()])
        }
    }
    let remote_line = remote
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    args.push(remote_line);
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` as one shell word: as is when it holds only safe characters,
/// else in single quotes.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/:@%+=-,".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What the coordinator reads from a node's `ferry status --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// `None`: nothing installed.
    pub current: Option<Version>,
    /// Another ferry operation runs on the node right now
    /// (`operation_in_progress`: status recovers a dead one first, so a
    /// journal it still shows belongs to a live process).
    pub busy: bool,
}

/// Runs `ferry status --json` on `node` and returns its current version
/// (`None`: nothing installed). The error says what ran and how it failed.
pub fn current_version(
    transport: &Transport,
    node: &InventoryNode,
    own_ferry: &Path,
) -> Result<Option<Version>, String> {
    status(transport, node, own_ferry).map(|s| s.current)
}

/// How often [`settled_version`] asks a busy node again.
const SETTLE_POLL: Duration = Duration::from_millis(500);

/// The node's current version once no ferry operation runs on it, waiting
/// at most `limit`. A coordinator killed mid-apply leaves that apply
/// running on the node (ssh carries on without it); asking for the
/// version at once would read the old one, and applying again would only
/// find the node locked and fail it.
pub fn settled_version(
    transport: &Transport,
    node: &InventoryNode,
    own_ferry: &Path,
    limit: Duration,
) -> Result<Option<Version>, String> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let status = status(transport, node, own_ferry)?;
        if !status.busy {
            return Ok(status.current);
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "node {} still runs another ferry operation after {}s; wait for it \
                 (`ferry status` on the node), then resume",
                node.name,
                limit.as_secs()
            ));
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

/// Runs `ferry status --json` on `node`. The error says what ran and how
/// it failed.
pub fn status(
    transport: &Transport,
    node: &InventoryNode,
    own_ferry: &Path,
) -> Result<NodeStatus, String> {
    let line = command_line(transport, node, RemoteCommand::Status, own_ferry);
    let what = format!("status of node {}", node.name);
    // ShellCommand keeps only the tail of the output, mixed with stderr:
    // fine for messages, not for a JSON document. So stdout goes to a file
    // of our own (created exclusively, so the redirection cannot be
    // pointed elsewhere), and stderr stays for the error message.
    let stdout_path = std::env::temp_dir().join(format!(
        "ferry-rollout-status-{}-{}-{}.json",
        std::process::id(),
        node.name,
        jiff::Timestamp::now().as_nanosecond()
    ));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&stdout_path)
        .map_err(|e| format!("{what}: cannot create {}: {e}", stdout_path.display()))?;
    let redirected = format!(
        "( {line}\n) >{}",
        shell_quote(&stdout_path.to_string_lossy())
    );
    let finished = ShellCommand {
        what: &what,
        line: &redirected,
        env: Vec::new(),
        cwd: None,
        timeout: STATUS_TIMEOUT,
    }
    .run();
    let stdout = std::fs::read_to_string(&stdout_path);
    let _ = std::fs::remove_file(&stdout_path);
    let finished = finished.map_err(|e| format!("{what}: `{line}` could not be started: {e}"))?;
    if !finished.success() {
        return Err(format!(
            "{what}: `{line}` {}",
            finished.describe(STATUS_TIMEOUT)
        ));
    }
    let stdout = stdout.map_err(|e| format!("{what}: cannot read its output: {e}"))?;
    parse_status(&stdout).map_err(|e| format!("{what}: `{line}` printed no status JSON ({e})"))
}

/// [`NodeStatus`] from `ferry status --json` output, read as the node's
/// own [`StatusReport`] type.
pub fn parse_status(stdout: &str) -> Result<NodeStatus, String> {
    let report: StatusReport = serde_json::from_str(stdout.trim()).map_err(|e| e.to_string())?;
    Ok(NodeStatus {
        current: report.current_version,
        // Absent (an older ferry) reads as idle, as before this field was read.
        busy: report.operation_in_progress.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{CommandTransport, Role};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn node() -> InventoryNode {
        InventoryNode {
            name: "db-1".into(),
            address: "10.0.0.1".into(),
            role: Role::Follower,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn command_templates_fill_placeholders_and_derive_the_status_line() {
        let t = Transport::Command(CommandTransport {
            template: "{ferry} --config /n/{name}/f.toml apply --version {version} --output json # {address}".into(),
            status_template: None,
        });
        let own = Path::new("/usr/bin/my ferry");
        let v = Version::new(1, 2, 3);
        assert_eq!(
            command_line(&t, &node(), RemoteCommand::Apply(&v), own),
            "'/usr/bin/my ferry' --config /n/db-1/f.toml apply --version 1.2.3 --output json # 10.0.0.1"
        );
        assert_eq!(
            command_line(&t, &node(), RemoteCommand::Status, own),
            "'/usr/bin/my ferry' --config /n/db-1/f.toml status --json # 10.0.0.1"
        );
        let from = Version::new(1, 0, 0);
        assert_eq!(
            command_line(&t, &node(), RemoteCommand::Rollback(&from), own),
            "'/usr/bin/my ferry' --config /n/db-1/f.toml rollback --to 1.0.0 # 10.0.0.1"
        );
        let explicit = Transport::Command(CommandTransport {
            template: "x".into(),
            status_template: Some("cat /s/{name}.json".into()),
        });
        assert_eq!(
            command_line(&explicit, &node(), RemoteCommand::Status, own),
            "cat /s/db-1.json"
        );
    }

    #[test]
    fn ssh_lines_carry_every_option_and_quote_the_remote_command() {
        let t = Transport::Ssh(SshTransport {
            user: Some("deploy".into()),
            port: Some(2222),
            identity: Some(PathBuf::from("/k/id")),
            extra_args: vec!["-o".into(), "StrictHostKeyChecking=yes".into()],
            ferry_path: "/opt/ferry".into(),
            config: Some("/etc/my ferry.toml".into()),
        });
        let v = Version::new(2, 0, 0);
        assert_eq!(
            command_line(&t, &node(), RemoteCommand::Apply(&v), Path::new("/x")),
            "ssh -o BatchMode=yes -p 2222 -i /k/id -o StrictHostKeyChecking=yes deploy@10.0.0.1 -- \
             '/opt/ferry --config '\\''/etc/my ferry.toml'\\'' apply --version 2.0.0 --output json'"
        );
        let bare = Transport::Ssh(SshTransport {
            user: None,
            port: None,
            identity: None,
            extra_args: vec![],
            ferry_path: "ferry".into(),
            config: None,
        });
        assert_eq!(
            command_line(&bare, &node(), RemoteCommand::Status, Path::new("/x")),
            "ssh -o BatchMode=yes 10.0.0.1 -- 'ferry status --json'"
        );
        assert_eq!(
            command_line(
                &bare,
                &node(),
                RemoteCommand::Rollback(&Version::new(1, 9, 0)),
                Path::new("/x")
            ),
            "ssh -o BatchMode=yes 10.0.0.1 -- 'ferry rollback --to 1.9.0'"
        );
    }

    #[test]
    fn ssh_config_and_ferry_path_take_the_node_name() {
        let t = Transport::Ssh(SshTransport {
            user: None,
            port: None,
            identity: None,
            extra_args: vec![],
            ferry_path: "/opt/{name}/ferry".into(),
            config: Some("/srv/nodes/{name}/ferry.toml".into()),
        });
        assert_eq!(
            command_line(&t, &node(), RemoteCommand::Status, Path::new("/x")),
            "ssh -o BatchMode=yes 10.0.0.1 -- '/opt/db-1/ferry --config /srv/nodes/db-1/ferry.toml status --json'"
        );
        // A name with a space or a quote stays inside its word on the node.
        let mut odd = node();
        odd.name = "db 1'".into();
        let remote = format!(
            "{} --config {} status --json",
            shell_quote("/opt/db 1'/ferry"),
            shell_quote("/srv/nodes/db 1'/ferry.toml")
        );
        assert_eq!(
            command_line(&t, &odd, RemoteCommand::Status, Path::new("/x")),
            format!("ssh -o BatchMode=yes 10.0.0.1 -- {}", shell_quote(&remote))
        );
    }

    #[test]
    fn status_output_gives_the_current_version() {
        assert_eq!(
            parse_status("{\"current_version\": \"1.0.0\", \"x\": {}}\n").unwrap(),
            NodeStatus {
                current: Some(Version::new(1, 0, 0)),
                busy: false
            }
        );
        assert_eq!(
            parse_status("{\"current_version\": null, \"operation_in_progress\": null}").unwrap(),
            NodeStatus {
                current: None,
                busy: false
            }
        );
        assert_eq!(
            parse_status(&format!(
                "{{\"current_version\": \"1.0.0\", \"operation_in_progress\": {JOURNAL}}}"
            ))
            .unwrap(),
            NodeStatus {
                current: Some(Version::new(1, 0, 0)),
                busy: true
            }
        );
        assert!(parse_status("error: no config").is_err());
        assert!(parse_status("{\"other\": 1}").is_err());
        assert!(parse_status("{\"current_version\": \"one\"}").is_err());
    }

    /// A running apply's journal, as `status --json` shows it.
    const JOURNAL: &str = r#"{"id": "1-1", "operation": "apply", "from_version": "1.0.0", "to_version": "1.1.0", "step": "fetching", "started_at": "2030-01-01T00:00:00Z"}"#;

    #[test]
    fn a_busy_node_is_asked_again_until_its_operation_ends() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        // Busy (still on 1.0.0) the first time, then idle on 1.1.0.
        let t = Transport::Command(CommandTransport {
            template: "x".into(),
            status_template: Some(format!(
                "if [ -e {0} ]; then echo '{{\"current_version\": \"1.1.0\", \"operation_in_progress\": null}}'; \
                 else touch {0}; echo '{{\"current_version\": \"1.0.0\", \"operation_in_progress\": {1}}}'; fi",
                seen.display(),
                JOURNAL
            )),
        });
        assert_eq!(
            settled_version(&t, &node(), Path::new("/x"), Duration::from_secs(30)).unwrap(),
            Some(Version::new(1, 1, 0))
        );
        let always_busy = Transport::Command(CommandTransport {
            template: "x".into(),
            status_template: Some(format!(
                "echo '{{\"current_version\": \"1.0.0\", \"operation_in_progress\": {JOURNAL}}}'"
            )),
        });
        let err =
            settled_version(&always_busy, &node(), Path::new("/x"), Duration::ZERO).unwrap_err();
        assert!(
            err.contains("node db-1 still runs another ferry operation"),
            "{err}"
        );
    }

    #[test]
    fn a_failing_status_command_names_the_node() {
        let t = Transport::Command(CommandTransport {
            template: "x".into(),
            status_template: Some("echo broken config >&2; exit 2".into()),
        });
        let err = current_version(&t, &node(), Path::new("/x")).unwrap_err();
        assert!(
            err.contains("status of node db-1") && err.contains("broken config"),
            "{err}"
        );
        let printed = Transport::Command(CommandTransport {
            template: "x".into(),
            status_template: Some(
                "echo notice >&2; echo '{\"current_version\": \"1.4.0\"}'".into(),
            ),
        });
        assert_eq!(
            current_version(&printed, &node(), Path::new("/x")).unwrap(),
            Some(Version::new(1, 4, 0))
        );
    }
}

//! `requirements` of a release manifest: what a node must have before it
//! installs the release (docs/FORMAT.md, "Requirements").
//!
//! A release built against a newer kernel, glibc or database client breaks
//! at run time on a node that lacks them, after the switch; declaring the
//! need lets the node refuse before it writes anything. The publisher
//! states a need; the node measures (see the applier's `preflight`).
//!
//! Three kinds, each with a semver requirement as `constraint`
//! (`>=5.10`, `>=2.31, <3`):
//! - `kernel`: the running kernel's release (`uname -r`);
//! - `glibc`: the system's GNU C library;
//! - `command`: the first `x.y[.z]` a shell `command` prints, for the tool
//!   called `name` (`psql --version`).
//!
//! The kind stays a string on the wire so that a node meeting a kind it
//! does not know can say so by name ("upgrade ferry") rather than fail to
//! parse the manifest.

use std::collections::BTreeSet;
use std::fmt;

use semver::VersionReq;
use serde::{Deserialize, Serialize};

/// Longest `name` of a command requirement: it appears in messages.
pub const MAX_NAME_LEN: usize = 64;

/// Longest `command` line: a version probe, not a script.
pub const MAX_COMMAND_LEN: usize = 1024;

/// One requirement as the manifest carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// `kernel`, `glibc` or `command`.
    pub kind: String,
    /// A semver requirement the measured version must satisfy.
    pub constraint: String,
    /// Kind `command` only: the tool's name, unique within the release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Kind `command` only: the shell line that prints the tool's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// What a requirement asks for, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    Kernel(VersionReq),
    Glibc(VersionReq),
    Command {
        name: String,
        command: String,
        constraint: VersionReq,
    },
}

impl Requirement {
    pub fn kernel(constraint: &str) -> Requirement {
        Requirement::system("kernel", constraint)
    }

    pub fn glibc(constraint: &str) -> Requirement {
        Requirement::system("glibc", constraint)
    }

    fn system(kind: &str, constraint: &str) -> Requirement {
        Requirement {
            kind: kind.to_string(),
            constraint: constraint.to_string(),
            name: None,
            command: None,
        }
    }

    pub fn command(name: &str, constraint: &str, command: &str) -> Requirement {
        Requirement {
            kind: "command".to_string(),
            constraint: constraint.to_string(),
            name: Some(name.to_string()),
            command: Some(command.to_string()),
        }
    }

    /// What the requirement is called in messages and reports: the kind,
    /// or `command:<name>`. Unique within a manifest.
    pub fn label(&self) -> String {
        match (self.kind.as_str(), &self.name) {
            ("command", Some(name)) => format!("command:{name}"),
            (kind, _) => kind.to_string(),
        }
    }

    /// Checks the fields against the kind and parses the constraint.
    pub fn need(&self) -> Result<Need, String> {
        let constraint = parse_constraint(&self.constraint)
            .map_err(|e| format!("requirement {}: {e}", self.label()))?;
        let only_for_command = |field: &str| {
            Err(format!(
                "requirement {} has a {field:?} field, which only kind \"command\" takes",
                self.kind
            ))
        };
        match self.kind.as_str() {
            "kernel" | "glibc" => {
                if self.name.is_some() {
                    return only_for_command("name");
                }
                if self.command.is_some() {
                    return only_for_command("command");
                }
                Ok(if self.kind == "kernel" {
                    Need::Kernel(constraint)
                } else {
                    Need::Glibc(constraint)
                })
            }
            "command" => {
                let (Some(name), Some(command)) = (&self.name, &self.command) else {
                    return Err(
                        "a requirement of kind \"command\" needs both \"name\" and \"command\""
                            .to_string(),
                    );
                };
                check_name(name)?;
                check_command_line(name, command)?;
                Ok(Need::Command {
                    name: name.clone(),
                    command: command.clone(),
                    constraint,
                })
            }
            other => Err(format!(
                "requirement kind {other:?} is unknown (known: kernel, glibc, command): \
                 upgrade ferry to install this release"
            )),
        }
    }
}

impl fmt::Display for Requirement {
    /// `kernel >=5.10`, `command:psql >=14 (psql --version)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.label(), self.constraint)?;
        if let Some(command) = &self.command {
            write!(f, " ({command})")?;
        }
        Ok(())
    }
}

/// A semver requirement such as `>=5.10` or `>=2.31, <3`. An empty one
/// (which semver reads as "anything") is refused: it is surely a mistake.
pub fn parse_constraint(text: &str) -> Result<VersionReq, String> {
    if text.trim().is_empty() {
        return Err("the constraint is empty: write one such as >=5.10 or >=2.31, <3".into());
    }
    VersionReq::parse(text).map_err(|e| {
        format!("constraint {text:?} is not a semver requirement ({e}): write one such as >=5.10 or >=2.31, <3")
    })
}

fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(allowed) {
        return Err(format!(
            "command requirement name {name:?} is invalid: use 1-{MAX_NAME_LEN} characters \
             from a-z, A-Z, 0-9, '.', '_', '-' and '+'"
        ));
    }
    Ok(())
}

fn check_command_line(name: &str, command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err(format!("command requirement {name} has an empty command"));
    }
    if command.len() > MAX_COMMAND_LEN || command.contains('\0') {
        return Err(format!(
            "command requirement {name}: the command must be at most {MAX_COMMAND_LEN} bytes \
             without NUL characters"
        ));
    }
    Ok(())
}

/// Every requirement valid, and no two with the same label (two kernel
/// requirements are one with both constraints: `>=5.10, <7`).
pub fn validate(requirements: &[Requirement]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for requirement in requirements {
        requirement.need()?;
        let label = requirement.label();
        if !seen.insert(label.clone()) {
            return Err(format!(
                "requirement {label} appears twice: join the constraints in one (\">=5.10, <7\")"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use semver::Version;

    use super::*;

    #[test]
    fn constraints_compare_as_semver_requirements() {
        let req = parse_constraint(">=5.10").unwrap();
        assert!(req.matches(&Version::new(5, 10, 0)));
        assert!(req.matches(&Version::new(6, 18, 44)));
        assert!(!req.matches(&Version::new(5, 9, 200)));
        let range = parse_constraint(">=2.31, <3").unwrap();
        assert!(range.matches(&Version::new(2, 36, 0)));
        assert!(!range.matches(&Version::new(2, 30, 9)));
        assert!(!range.matches(&Version::new(3, 0, 0)));
        for bad in ["", "  ", "five", ">=5.x.y", "=>5", ">=5.10 <<6"] {
            let err = parse_constraint(bad).unwrap_err();
            assert!(err.contains(">=5.10"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn each_kind_takes_its_own_fields() {
        assert_eq!(
            Requirement::kernel(">=5.10").need().unwrap(),
            Need::Kernel(VersionReq::parse(">=5.10").unwrap())
        );
        assert!(matches!(
            Requirement::glibc(">=2.31").need(),
            Ok(Need::Glibc(_))
        ));
        let psql = Requirement::command("psql", ">=14", "psql --version");
        assert_eq!(psql.label(), "command:psql");
        assert_eq!(psql.to_string(), "command:psql >=14 (psql --version)");
        assert!(matches!(psql.need(), Ok(Need::Command { .. })));

        let mut kernel_with_command = Requirement::kernel(">=5");
        kernel_with_command.command = Some("uname -r".into());
        let err = kernel_with_command.need().unwrap_err();
        assert!(err.contains("only kind \"command\""), "{err}");
        let mut nameless = psql.clone();
        nameless.name = None;
        assert!(nameless.need().unwrap_err().contains("both"));
        let mut lineless = psql.clone();
        lineless.command = None;
        assert!(lineless.need().unwrap_err().contains("both"));
        let err = Requirement::command("my tool", ">=1", "t --version")
            .need()
            .unwrap_err();
        assert!(err.contains("\"my tool\""), "{err}");
        assert!(Requirement::command("t", ">=1", "  ").need().is_err());
        let err = Requirement::system("libc", ">=1").need().unwrap_err();
        assert!(
            err.contains("unknown") && err.contains("upgrade ferry"),
            "{err}"
        );
    }

    #[test]
    fn labels_are_unique_within_a_release() {
        let ok = [
            Requirement::kernel(">=5.10"),
            Requirement::glibc(">=2.31"),
            Requirement::command("psql", ">=14", "psql --version"),
            Requirement::command("redis", ">=7", "redis-server --version"),
        ];
        validate(&ok).unwrap();
        let twice = [Requirement::kernel(">=5.10"), Requirement::kernel("<7")];
        assert!(validate(&twice).unwrap_err().contains("appears twice"));
        let same_tool = [
            Requirement::command("psql", ">=14", "psql --version"),
            Requirement::command("psql", "<17", "psql -V"),
        ];
        assert!(validate(&same_tool)
            .unwrap_err()
            .contains("command:psql appears twice"));
    }

    #[test]
    fn a_manifest_with_a_bad_requirement_does_not_validate() {
        let manifest = |requirements: serde_json::Value| -> crate::Manifest {
            serde_json::from_value(serde_json::json!({
                "format": 1, "version": "2.0.0", "channel": "stable",
                "created": "2026-01-01T00:00:00Z", "files": [],
                "requirements": requirements,
            }))
            .unwrap()
        };
        manifest(serde_json::json!([
            {"kind": "kernel", "constraint": ">=5.10"},
            {"kind": "command", "constraint": ">=14", "name": "psql", "command": "psql --version"},
        ]))
        .validate()
        .unwrap();
        for (bad, expected) in [
            (
                serde_json::json!([{"kind": "kernel", "constraint": "new enough"}]),
                "not a semver requirement",
            ),
            (
                serde_json::json!([{"kind": "firmware", "constraint": ">=1"}]),
                "\"firmware\" is unknown",
            ),
            (
                serde_json::json!([{"kind": "command", "constraint": ">=1", "name": "t"}]),
                "needs both",
            ),
            (
                serde_json::json!([{"kind": "glibc", "constraint": ">=2", "name": "libc"}]),
                "only kind \"command\"",
            ),
            (
                serde_json::json!([
                    {"kind": "glibc", "constraint": ">=2.31"},
                    {"kind": "glibc", "constraint": "<3"},
                ]),
                "appears twice",
            ),
        ] {
            let err = manifest(bad.clone()).validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
            assert!(err.contains("manifest of 2.0.0"), "{err}");
        }
    }

    #[test]
    fn absent_command_fields_stay_out_of_the_json() {
        let json = serde_json::to_string(&Requirement::kernel(">=5.10")).unwrap();
        assert_eq!(json, r#"{"kind":"kernel","constraint":">=5.10"}"#);
        let back: Requirement =
            serde_json::from_str(r#"{"kind":"kernel","constraint":">=5.10"}"#).unwrap();
        assert_eq!(back, Requirement::kernel(">=5.10"));
        let psql = Requirement::command("psql", ">=14", "psql --version");
        let back: Requirement =
            serde_json::from_str(&serde_json::to_string(&psql).unwrap()).unwrap();
        assert_eq!(back, psql);
    }
}

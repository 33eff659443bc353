//! `ferry install-units`: writes the systemd service and timer that run
//! `ferry apply --unattended` every hour.
//!
//! The unit files ship inside the binary (the node gets one static file,
//! nothing else to copy) and are written with this node's ferry and
//! configuration paths filled in. systemctl is left to the operator: this
//! may run in an image build or a chroot where systemd is not running, and
//! enabling a timer is a decision the operator should see being made.
//! A unit edited by hand is not silently replaced: local changes belong in
//! a drop-in, and `--force` says the operator means it.

use std::path::{Path, PathBuf};

use crate::durable::write_atomic;
use crate::error::{NodeError, Result};

/// Where systemd looks for units the administrator installs.
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";
pub const SERVICE_UNIT: &str = "ferry-update.service";
pub const TIMER_UNIT: &str = "ferry-update.timer";

const SERVICE_TEMPLATE: &str = include_str!("../../systemd/ferry-update.service");
const TIMER_TEMPLATE: &str = include_str!("../../systemd/ferry-update.timer");

/// What `ferry install-units` was asked to do.
#[derive(Debug, Clone)]
pub struct InstallUnitsArgs {
    /// The directory the units go to.
    pub dir: PathBuf,
    /// The ferry the service runs; `None`: this executable.
    pub ferry_path: Option<PathBuf>,
    /// The configuration the service passes to ferry (need not exist yet).
    pub config: PathBuf,
    /// Replace unit files that differ from what would be written.
    pub force: bool,
}

/// A unit file as it will be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    pub name: &'static str,
    pub contents: String,
}

/// The two units with `ferry` and `config` (absolute paths) filled in.
pub fn render(ferry: &Path, config: &Path) -> Result<Vec<UnitFile>> {
    let ferry = exec_word(ferry, "--ferry-path")?;
    let config = exec_word(config, "--config")?;
    let service = SERVICE_TEMPLATE
        .replace("@FERRY@", &ferry)
        .replace("@CONFIG@", &config);
    Ok(vec![
        UnitFile {
            name: SERVICE_UNIT,
            contents: service,
        },
        UnitFile {
            name: TIMER_UNIT,
            contents: TIMER_TEMPLATE.to_string(),
        },
    ])
}

/// Why the units were not written: a path a unit cannot hold, or a unit
/// the operator changed. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum UnitsError {
    #[error("{flag} {} is not UTF-8, which a systemd unit cannot hold; use a UTF-8 path", path.display())]
    NotUtf8 { flag: &'static str, path: PathBuf },
    #[error("{flag} {path} is relative; systemd runs the service from /, give an absolute path")]
    Relative { flag: &'static str, path: String },
    #[error("{flag} {path:?} contains a control character, which a systemd unit cannot hold")]
    ControlCharacter { flag: &'static str, path: String },
    #[error("refusing to overwrite {}: it differs from the unit ferry would write (edited by hand, or written for another ferry or configuration); put local changes in a drop-in (systemctl edit {unit}), or pass --force to replace it", path.display())]
    Edited { path: PathBuf, unit: &'static str },
}

/// `path` as one word of an ExecStart= line. systemd expands `%`
/// specifiers and `$` variables there and splits on whitespace, so a path
/// holding any of them is escaped and quoted instead of becoming another
/// command line.
fn exec_word(path: &Path, flag: &'static str) -> Result<String> {
    let Some(text) = path.to_str() else {
        return Err(UnitsError::NotUtf8 {
            flag,
            path: path.to_path_buf(),
        }
        .into());
    };
    if !path.is_absolute() {
        return Err(UnitsError::Relative {
            flag,
            path: text.to_string(),
        }
        .into());
    }
    if text.chars().any(char::is_control) {
        return Err(UnitsError::ControlCharacter {
            flag,
            path: text.to_string(),
        }
        .into());
    }
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@,=".contains(c));
    Ok(if plain {
        escaped
    } else {
        format!("\"{escaped}\"")
    })
}

/// Writes the units into `args.dir`; prints what it did and what to run next.
pub fn run(args: &InstallUnitsArgs) -> Result<()> {
    let ferry = match &args.ferry_path {
        Some(path) => absolute(path, "--ferry-path")?,
        None => std::env::current_exe().map_err(|e| {
            NodeError::io(
                "cannot tell where this ferry executable is; pass --ferry-path",
                e,
            )
        })?,
    };
    let config = absolute(&args.config, "--config")?;
    let units = render(&ferry, &config)?;
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| NodeError::io(format!("cannot create {}", args.dir.display()), e))?;

    // Every file is checked before any is written: refusing one must not
    // leave a new service beside an old timer.
    let mut changed = Vec::new();
    for unit in &units {
        let path = args.dir.join(unit.name);
        match std::fs::read_to_string(&path) {
            Ok(existing) if existing == unit.contents => {
                outln!("unchanged {}", path.display());
            }
            Ok(_) if !args.force => {
                return Err(UnitsError::Edited {
                    path,
                    unit: unit.name,
                }
                .into());
            }
            Ok(_) => changed.push((path, unit)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => changed.push((path, unit)),
            Err(e) => {
                return Err(NodeError::io(format!("cannot read {}", path.display()), e));
            }
        }
    }
    for (path, unit) in changed {
        write_atomic(&path, unit.contents.as_bytes(), 0o644)
            .map_err(|e| NodeError::io(format!("cannot write {}", path.display()), e))?;
        outln!("wrote {}", path.display());
    }
    outln!(
        "next (ferry does not run systemctl itself):\n  systemctl daemon-reload\n  \
         systemctl enable --now {TIMER_UNIT}"
    );
    Ok(())
}

fn absolute(path: &Path, flag: &str) -> Result<PathBuf> {
    std::path::absolute(path)
        .map_err(|e| NodeError::io(format!("cannot make {flag} {} absolute", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_in_both_paths_and_leaves_no_placeholder() {
        let units = render(
            Path::new("/usr/local/bin/ferry"),
            Path::new("/etc/ferry/ferry.toml"),
        )
        .unwrap();
        let names: Vec<_> = units.iter().map(|u| u.name).collect();
        assert_eq!(names, [SERVICE_UNIT, TIMER_UNIT]);
        assert!(units[0].contents.contains(
            "\nExecStart=/usr/local/bin/ferry --config /etc/ferry/ferry.toml apply --unattended\n"
        ));
        assert!(units.iter().all(|u| !u.contents.contains('@')));
        assert!(units[1].contents.contains("\nOnCalendar=hourly\n"));
    }

    #[test]
    fn escapes_what_systemd_would_expand_or_split() {
        assert_eq!(
            exec_word(Path::new("/opt/my ferry/100%/$HOME/ferry"), "--ferry-path").unwrap(),
            "\"/opt/my ferry/100%%/$$HOME/ferry\""
        );
        assert_eq!(
            exec_word(Path::new("/a\"b\\c"), "--config").unwrap(),
            "\"/a\\\"b\\\\c\""
        );
    }

    #[test]
    fn refuses_relative_and_multi_line_paths() {
        let relative = exec_word(Path::new("ferry.toml"), "--config").unwrap_err();
        assert!(relative.to_string().contains("absolute"), "{relative}");
        let newline = exec_word(Path::new("/etc/a\nExecStartPre=/bin/x"), "--config").unwrap_err();
        assert!(newline.to_string().contains("control"), "{newline}");
    }
}

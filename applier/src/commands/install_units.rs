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
//!
//! What the service may write and how long it may run come from the
//! configuration (when it exists yet): the sandbox is read-only but for the
//! install root and state directory, and the timeout outlasts the longest
//! wait ferry allows itself. The ferry it runs is named by a path that
//! survives self-updates: a ferry shipped in its own release is run through
//! `current`, never through `releases/<v>/`, which a later update prunes.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::config::{Config, InstallMode};
use crate::coordination::DEFAULT_WAIT_TIMEOUT_SECONDS;
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

/// What the service unit says beyond the two paths, derived from the
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLimits {
    /// The paths the sandbox leaves writable; `None`: not known (no
    /// configuration yet), so the coarser ProtectSystem=full.
    pub writable: Option<Vec<PathBuf>>,
    /// TimeoutStartSec=, in seconds.
    pub timeout_seconds: u64,
}

/// An hour for the run itself: a large first download on a slow link,
/// hooks, health checks.
const RUN_SECONDS: u64 = 3600;

impl ServiceLimits {
    /// For a node whose configuration does not exist yet: the default
    /// coordination wait, and the sandbox left coarse.
    pub fn unknown() -> ServiceLimits {
        ServiceLimits {
            writable: None,
            timeout_seconds: DEFAULT_WAIT_TIMEOUT_SECONDS + RUN_SECONDS,
        }
    }

    pub fn of(config: &Config) -> ServiceLimits {
        let install = &config.install;
        let mut writable = Vec::new();
        match install.mode {
            InstallMode::Symlink => writable.push(install.root.clone()),
            // Each file is replaced by a rename in its own directory; a
            // directory target is written below itself. Never the install
            // root itself, which in place is often `/`.
            InstallMode::InPlace => {
                for target in &install.targets {
                    let path = Path::new(target.trim_end_matches('/'));
                    let dir = match target.ends_with('/') {
                        true => path,
                        false => path.parent().unwrap_or(path),
                    };
                    writable.push(dir.to_path_buf());
                }
            }
        }
        writable.push(install.state_dir.clone());
        writable.sort();
        writable.dedup();
        let wait = config
            .coordination
            .as_ref()
            .map_or(0, |c| c.wait_timeout_seconds);
        ServiceLimits {
            writable: Some(writable),
            timeout_seconds: wait.saturating_add(RUN_SECONDS),
        }
    }

    /// The lines that replace `@SANDBOX@`.
    fn sandbox(&self) -> Result<String> {
        let Some(paths) = &self.writable else {
            return Ok("ProtectSystem=full".into());
        };
        // `-`: a path that does not exist yet (a first install) must not
        // stop the service from starting; ferry creates it.
        let words: Vec<String> = paths
            .iter()
            .map(|p| exec_word(p, "--config").map(|w| format!("-{w}")))
            .collect::<Result<_>>()?;
        Ok(format!(
            "ProtectSystem=strict\nReadWritePaths={}",
            words.join(" ")
        ))
    }
}

/// The two units with `ferry` and `config` (absolute paths) and `limits`
/// filled in.
pub fn render(ferry: &Path, config: &Path, limits: &ServiceLimits) -> Result<Vec<UnitFile>> {
    let ferry = exec_word(ferry, "--ferry-path")?;
    let config = exec_word(config, "--config")?;
    let service = SERVICE_TEMPLATE
        .replace("@FERRY@", &ferry)
        .replace("@CONFIG@", &config)
        .replace("@TIMEOUT@", &limits.timeout_seconds.to_string())
        .replace("@SANDBOX@", &limits.sandbox()?);
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
        None => invoked()?,
    };
    let config = absolute(&args.config, "--config")?;
    let loaded = match std::fs::metadata(&config) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        // One that exists must be right: the sandbox is cut from it.
        _ => Some(Config::load(&config)?),
    };
    let limits = match &loaded {
        Some(loaded) => ServiceLimits::of(loaded),
        None => {
            tracing::warn!(
                config = %config.display(),
                "no configuration yet: the unit cannot confine ferry to its install root and state directory (ProtectSystem=full); run `ferry install-units --force` again once the configuration exists"
            );
            ServiceLimits::unknown()
        }
    };
    let ferry = stable_path(ferry, loaded.as_ref());
    let units = render(&ferry, &config, &limits)?;
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

/// This ferry by the path it was started as (argv[0], looked up in PATH
/// when it has no `/`), not the resolved /proc/self/exe: started through
/// `current/bin/ferry`, that is the path that follows updates.
fn invoked() -> Result<PathBuf> {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&argv0);
    if name.components().count() > 1 {
        return absolute(name, "--ferry-path");
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    });
    match found {
        Some(path) => absolute(&path, "--ferry-path"),
        None => std::env::current_exe().map_err(|e| {
            NodeError::io(
                "cannot tell where this ferry executable is; pass --ferry-path",
                e,
            )
        }),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `ferry` unless it lies inside a release directory (`releases/<v>/…`),
/// which ferry prunes two updates later: then the same file through
/// `<root>/current/…`, which follows updates, when the configuration's
/// root holds it; otherwise a warning.
fn stable_path(ferry: PathBuf, config: Option<&Config>) -> PathBuf {
    let resolved = std::fs::canonicalize(&ferry).unwrap_or_else(|_| ferry.clone());
    if let Some(config) = config.filter(|c| c.install.mode == InstallMode::Symlink) {
        let root = &config.install.root;
        let releases =
            std::fs::canonicalize(root.join("releases")).unwrap_or_else(|_| root.join("releases"));
        if let Ok(inside) = resolved.strip_prefix(&releases) {
            let mut parts = inside.components();
            let version = parts.next();
            let through_current = root.join("current").join(parts.as_path());
            if ferry.starts_with(root.join("current")) {
                return ferry;
            }
            if std::fs::canonicalize(&through_current).is_ok_and(|p| p == resolved) {
                outln!(
                    "ferry lives in release {}: the unit runs it as {}, which follows updates (not {}, which a later update prunes)",
                    version.map_or(String::new(), |v| v.as_os_str().to_string_lossy().into_owned()),
                    through_current.display(),
                    resolved.display()
                );
                return through_current;
            }
        }
    }
    let in_a_release = resolved
        .ancestors()
        .filter_map(Path::parent)
        .any(|dir| dir.file_name() == Some(OsStr::new("releases")));
    if in_a_release {
        tracing::warn!(
            ferry = %ferry.display(),
            "the unit runs ferry from inside a release directory, which ferry prunes after later updates; the timer would then stop updating this node: pass --ferry-path with a path that stays (e.g. <root>/current/bin/ferry)"
        );
    }
    ferry
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
            &ServiceLimits::unknown(),
        )
        .unwrap();
        let names: Vec<_> = units.iter().map(|u| u.name).collect();
        assert_eq!(names, [SERVICE_UNIT, TIMER_UNIT]);
        assert!(units[0].contents.contains(
            "\nExecStart=/usr/local/bin/ferry --config /etc/ferry/ferry.toml apply --unattended\n"
        ));
        assert!(units[0].contents.contains("\nTimeoutStartSec=7200\n"));
        assert!(units[0].contents.contains("\nProtectSystem=full\n"));
        for unit in &units {
            for placeholder in ["@FERRY@", "@CONFIG@", "@TIMEOUT@", "@SANDBOX@"] {
                assert!(!unit.contents.contains(placeholder), "{placeholder} left");
            }
        }
        assert!(units[1].contents.contains("\nOnCalendar=hourly\n"));
    }

    #[test]
    fn the_sandbox_opens_only_what_the_configuration_writes() {
        let limits = ServiceLimits {
            writable: Some(vec![
                PathBuf::from("/srv/my app"),
                PathBuf::from("/var/lib/ferry"),
            ]),
            timeout_seconds: 5400,
        };
        let units = render(Path::new("/f"), Path::new("/c"), &limits).unwrap();
        assert!(units[0]
            .contents
            .contains("\nProtectSystem=strict\nReadWritePaths=-\"/srv/my app\" -/var/lib/ferry\n"));
        assert!(units[0].contents.contains("\nTimeoutStartSec=5400\n"));
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

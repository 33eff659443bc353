//! Where a ferry run spends its durable-I/O time, from
//! `strace -f -T -y -e trace=fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat`.
//!
//! ferry has no internal timings, so this is how a benchmark isolates the
//! fsyncs and renames from fetching, decompressing and hashing: strace's `-T` gives
//! each syscall's duration, `-y` the path behind each file descriptor, and a
//! directory fsync is charged to whatever the same process renamed into that
//! directory just before (that is how `durable::write_atomic` pairs them).

use std::collections::HashMap;

/// The syscalls to trace.
pub const TRACE: &str = "trace=fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat";

/// One traced syscall.
#[derive(Debug, Clone, PartialEq)]
pub struct Syscall {
    pub pid: u32,
    pub name: String,
    /// fsync/fdatasync: the file behind the descriptor; rename: the
    /// destination; unlink: the path removed.
    pub path: Option<String>,
    pub secs: f64,
}

/// Parses strace's output file, joining `<unfinished ...>` / `resumed`
/// pairs; lines that are not syscalls (signals, exits) are skipped.
pub fn parse(trace: &str) -> Vec<Syscall> {
    let mut pending: HashMap<u32, String> = HashMap::new();
    let mut calls = Vec::new();
    for line in trace.lines() {
        let (pid, rest) = split_pid(line);
        if let Some(start) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, start.to_string());
            continue;
        }
        let joined;
        let complete = if let Some(after) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = after.split_once(" resumed>") else {
                continue;
            };
            let Some(start) = pending.remove(&pid) else {
                continue;
            };
            joined = format!("{start}{tail}");
            joined.as_str()
        } else {
            rest
        };
        if let Some(call) = parse_call(pid, complete) {
            calls.push(call);
        }
    }
    calls
}

fn split_pid(line: &str) -> (u32, &str) {
    let line = line.trim_start();
    match line.split_once(' ') {
        Some((pid, rest)) if pid.chars().all(|c| c.is_ascii_digit()) && !pid.is_empty() => {
            (pid.parse().unwrap_or(0), rest.trim_start())
        }
        _ => (0, line),
    }
}

/// `name(args) = result <secs>`.
fn parse_call(pid: u32, line: &str) -> Option<Syscall> {
    let (name, _) = line.split_once('(')?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let open = line.rfind(" <")?;
    let secs = line[open + 2..].strip_suffix('>')?.parse().ok()?;
    let args_end = line[..open].rfind(") = ")?;
    let args = &line[name.len() + 1..args_end];
    let path = match name {
        "fsync" | "fdatasync" => {
            let start = args.find('<')?;
            let end = args.rfind('>')?;
            (end > start).then(|| args[start + 1..end].to_string())
        }
        // rename(old, new), renameat(dfd, old, dfd, new[, flags]): the
        // destination is the second string.
        "rename" | "renameat" | "renameat2" => quoted(args).into_iter().nth(1),
        "unlink" | "unlinkat" => quoted(args).into_iter().next(),
        _ => None,
    };
    Some(Syscall {
        pid,
        name: name.to_string(),
        path,
        secs,
    })
}

/// The double-quoted strings in `args`, with `\"` and `\\` unescaped.
fn quoted(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => s.extend(chars.next()),
                '"' => break,
                c => s.push(c),
            }
        }
        out.push(s);
    }
    out
}

/// Durable-I/O time of one ferry run, by what it made durable.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Breakdown {
    /// Store objects: fsync of each decompressed file, its rename into
    /// `store/`, and the fsync of `store/`.
    pub objects: f64,
    /// The release tree: directory fsyncs while staging, the rename of the
    /// staging directory to `releases/<version>`, the fsync of `releases/`.
    pub stage: f64,
    /// `current`: the rename of the new symlink and the fsync of the root.
    pub switch: f64,
    /// `journal.json`: every durable write and the closing unlink + fsync.
    pub journal: f64,
    pub journal_writes: usize,
    /// Everything else (state.json, history, kept manifests, trust state).
    pub other: f64,
}

impl Breakdown {
    pub fn total(&self) -> f64 {
        self.objects + self.stage + self.switch + self.journal + self.other
    }
}

#[derive(Clone, Copy)]
enum Part {
    Objects,
    Stage,
    Switch,
    Journal,
    Other,
}

/// Charges each syscall of a run against install root `root` and state
/// directory `state` (both as given in ferry's config).
pub fn breakdown(calls: &[Syscall], root: &str, state: &str) -> Breakdown {
    let store = format!("{state}/store/");
    let releases = format!("{root}/releases");
    let journal = format!("{state}/journal.json");
    let current = format!("{root}/current");
    let by_path = |path: &str| {
        if path.starts_with(&store) {
            Part::Objects
        } else if path.contains("/.journal.json.tmp-") || path == journal {
            Part::Journal
        } else if path == releases || path.starts_with(&format!("{releases}/")) {
            Part::Stage
        } else if path == current {
            Part::Switch
        } else {
            Part::Other
        }
    };
    // After a rename or unlink: (pid → the directory whose next fsync
    // makes it durable, and what it belongs to).
    let mut awaiting: HashMap<u32, (String, Part)> = HashMap::new();
    let mut b = Breakdown::default();
    for call in calls {
        let path = call.path.as_deref().unwrap_or("");
        let part = match call.name.as_str() {
            "fsync" | "fdatasync" => match awaiting.get(&call.pid) {
                Some((dir, part)) if dir == path => {
                    let part = *part;
                    awaiting.remove(&call.pid);
                    part
                }
                _ => by_path(path),
            },
            "rename" | "renameat" | "renameat2" => {
                let part = by_path(path);
                if path == journal {
                    b.journal_writes += 1;
                }
                if let Some((dir, _)) = path.rsplit_once('/') {
                    awaiting.insert(call.pid, (dir.to_string(), part));
                }
                part
            }
            "unlink" | "unlinkat" if path == journal => {
                awaiting.insert(call.pid, (state.to_string(), Part::Journal));
                Part::Journal
            }
            // Other removals (garbage collection, temp files) are not
            // durability work.
            _ => continue,
        };
        let slot = match part {
            Part::Objects => &mut b.objects,
            Part::Stage => &mut b.stage,
            Part::Switch => &mut b.switch,
            Part::Journal => &mut b.journal,
            Part::Other => &mut b.other,
        };
        *slot += call.secs;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE_TEXT: &str = r#"100 fsync(3</n/state>) = 0 <0.000100>
100 rename("/n/state/.trusted.json.tmp-100", "/n/state/trusted.json") = 0 <0.000010>
100 fsync(3</n/state>) = 0 <0.000200>
100 fsync(4</n/state/.journal.json.tmp-100>) = 0 <0.001000>
100 rename("/n/state/.journal.json.tmp-100", "/n/state/journal.json") = 0 <0.000020>
100 fsync(3</n/state>) = 0 <0.002000>
100 fsync(5</n/state/store/.tmp-abc-100> <unfinished ...>
101 fsync(6</elsewhere>) = 0 <0.000001>
100 <... fsync resumed>) = 0 <0.500000>
100 rename("/n/state/store/.tmp-abc-100", "/n/state/store/abc") = 0 <0.000030>
100 fsync(3</n/state/store>) = 0 <0.004000>
100 fsync(7</n/app/releases/.staging-2.0.0-100/data>) = 0 <0.000300>
100 renameat2(AT_FDCWD</n>, "/n/app/releases/.staging-2.0.0-100", AT_FDCWD</n>, "/n/app/releases/2.0.0", 0) = 0 <0.000040>
100 fsync(3</n/app/releases>) = 0 <0.000500>
100 rename("/n/app/.current.tmp-100", "/n/app/current") = 0 <0.000050>
100 fsync(3</n/app>) = 0 <0.000600>
100 unlink("/n/state/downloads/abc.part") = 0 <0.010000>
100 unlink("/n/state/journal.json") = 0 <0.000070>
100 fsync(3</n/state>) = 0 <0.000700>
100 --- SIGCHLD {si_signo=SIGCHLD} ---
100 +++ exited with 0 +++
"#;

    #[test]
    fn lines_are_parsed_and_unfinished_calls_joined() {
        let calls = parse(TRACE_TEXT);
        assert_eq!(calls.len(), 18);
        let resumed = calls
            .iter()
            .find(|c| c.secs == 0.5)
            .expect("the resumed fsync");
        assert_eq!(resumed.pid, 100);
        assert_eq!(resumed.name, "fsync");
        assert_eq!(resumed.path.as_deref(), Some("/n/state/store/.tmp-abc-100"));
        let staged = calls.iter().find(|c| c.name == "renameat2").unwrap();
        assert_eq!(staged.path.as_deref(), Some("/n/app/releases/2.0.0"));
        assert_eq!(
            quoted(r#""a\"b", 3, "c\\d""#),
            vec![r#"a"b"#.to_string(), r"c\d".to_string()]
        );
    }

    #[test]
    fn durable_io_is_charged_to_what_it_made_durable() {
        let b = breakdown(&parse(TRACE_TEXT), "/n/app", "/n/state");
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(b.objects, 0.5 + 0.00003 + 0.004), "{b:?}");
        assert!(close(b.stage, 0.0003 + 0.00004 + 0.0005), "{b:?}");
        assert!(close(b.switch, 0.00005 + 0.0006), "{b:?}");
        assert!(
            close(b.journal, 0.00002 + 0.001 + 0.002 + 0.00007 + 0.0007),
            "{b:?}"
        );
        assert_eq!(b.journal_writes, 1);
        // trusted.json and its dir fsync, the unrelated state fsync, and
        // another process's fsync.
        assert!(
            close(b.other, 0.0001 + 0.00001 + 0.0002 + 0.000001),
            "{b:?}"
        );
        assert!(close(
            b.total(),
            b.objects + b.stage + b.switch + b.journal + b.other
        ));
    }
}

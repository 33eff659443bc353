//! `ferry-delta`: the delta crate's two halves on files, for measuring them
//! (`cargo xtask bench deltas` runs it as a child process so that its peak
//! RSS is the patching's own, in a release build).
//!
//! ```text
//! ferry-delta make BASE TARGET PATCH [--level N] [--window-log N]
//! ferry-delta apply ALGORITHM BASE PATCH OUT --size BYTES
//! ```
//!
//! `make` uses the publisher's default settings unless told otherwise,
//! writes the smallest patch and prints one `candidate NAME BYTES` line per
//! encoding tried, then `chosen ALGORITHM BYTES`. `apply` is the node's
//! file-to-file path ([`delta::decode::apply_file`]) and prints `applied
//! BYTES SHA256`. Not a user-facing tool: the publisher and the node are.

use std::fs::{self, File, OpenOptions};
use std::process::ExitCode;

use delta::encode::{self, DeltaSettings, PairBuffer};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("make") => make(&args[1..]),
        Some("apply") => apply(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-delta: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: ferry-delta make BASE TARGET PATCH [--level N] [--window-log N]\n       ferry-delta apply ALGORITHM BASE PATCH OUT --size BYTES";

/// `--name value` pairs.
type Options<'a> = Vec<(&'a str, &'a str)>;

/// Positional arguments and `--name value` options, in any order.
fn split_args(args: &[String]) -> Result<(Vec<&str>, Options<'_>), String> {
    let (mut positional, mut options) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.strip_prefix("--") {
            Some(name) => {
                let value = it.next().ok_or(format!("--{name} needs a value"))?;
                options.push((name, value.as_str()));
            }
            None => positional.push(arg.as_str()),
        }
    }
    Ok((positional, options))
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("--{name}: not a number: {value}"))
}

fn make(args: &[String]) -> Result<(), String> {
    let (paths, options) = split_args(args)?;
    let [base, target, patch] = paths[..] else {
        return Err(USAGE.into());
    };
    let mut settings = DeltaSettings::DEFAULT;
    for (name, value) in options {
        match name {
            "level" => settings.level = number(name, value)?,
            "window-log" => settings.max_window_log = number(name, value)?,
            _ => return Err(format!("unknown option --{name}\n{USAGE}")),
        }
    }
    let read = |p: &str| fs::read(p).map_err(|e| format!("cannot read {p}: {e}"));
    let mut bytes = read(base)?;
    let base_len = bytes.len();
    bytes.extend_from_slice(&read(target)?);
    let pair = PairBuffer::new(bytes, base_len);
    let candidates = encode::candidates(&pair, &settings).map_err(|e| e.to_string())?;
    for c in &candidates {
        println!("candidate {} {}", c.label, c.patch.bytes.len());
    }
    let best = encode::smallest(candidates).ok_or("no encoding applies to this pair")?;
    fs::write(patch, &best.bytes).map_err(|e| format!("cannot write {patch}: {e}"))?;
    println!(
        "chosen {} {}",
        delta::name(best.algorithm),
        best.bytes.len()
    );
    Ok(())
}

fn apply(args: &[String]) -> Result<(), String> {
    let (paths, options) = split_args(args)?;
    let [algorithm, base, patch, out] = paths[..] else {
        return Err(USAGE.into());
    };
    let algorithm = delta::from_name(algorithm).ok_or(format!("unknown algorithm {algorithm}"))?;
    let mut size = None;
    for (name, value) in options {
        match name {
            "size" => size = Some(number::<u64>(name, value)?),
            _ => return Err(format!("unknown option --{name}\n{USAGE}")),
        }
    }
    let size = size.ok_or("--size is required")?;
    let open = |p: &str| File::open(p).map_err(|e| format!("cannot open {p}: {e}"));
    let mut base = open(base)?;
    let patch = std::io::BufReader::new(open(patch)?);
    let mut out_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| format!("cannot create {out}: {e}"))?;
    let applied = delta::decode::apply_file(algorithm, &mut base, patch, &mut out_file, size)
        .map_err(|e| e.to_string())?;
    println!("applied {} {}", applied.size, applied.sha256);
    Ok(())
}

//! `ferry-output`: stdout and stderr lines that never stop a program.
//!
//! `println!` panics when its reader has gone (`ferry --output json apply |
//! head -1`, a closed ssh channel, `ferry-publish list | head`): a panic in
//! the middle of an apply kills it between two journal steps. Output is a
//! report about the work, never part of it, so these macros drop what
//! cannot be written and the work finishes. The first lost stdout line is
//! said once on stderr, so an operator who piped stdout away still learns
//! why it went quiet. Each binary crate's `clippy.toml` bans the std print
//! macros, so nothing slips back to `println!`.
//!
//! Not for: formatting, progress bars (`indicatif` already ignores write
//! errors) or logs (`tracing`).

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// The running program's name for the one warning ("ferry", "ferry-publish").
fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "ferry".into())
}

/// Whether log lines on stderr may carry colour (ANSI escapes): only on a
/// terminal, and not when `NO_COLOR` is set to anything but the empty
/// string (<https://no-color.org>). A file, a pipe or journald gets plain
/// text: escapes there are noise in every `grep` and log viewer.
pub fn stderr_wants_colour() -> bool {
    use std::io::IsTerminal;
    colour_allowed(std::env::var_os("NO_COLOR").as_deref()) && io::stderr().is_terminal()
}

fn colour_allowed(no_color: Option<&std::ffi::OsStr>) -> bool {
    no_color.is_none_or(|v| v.is_empty())
}

static STDOUT_LOST: AtomicBool = AtomicBool::new(false);

/// Writes `args` (and a newline if `newline`) to stdout; a failure is
/// noted once on stderr and otherwise ignored.
pub fn to_stdout(args: fmt::Arguments<'_>, newline: bool) {
    let mut out = io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if !STDOUT_LOST.swap(true, Ordering::Relaxed) {
            to_stderr(
                format_args!(
                    "{}: stdout is gone ({e}); its output is dropped, the operation goes on",
                    program_name()
                ),
                true,
            );
        }
    }
}

/// Writes `args` (and a newline if `newline`) to stderr; there is nowhere
/// to report a failure, so it is ignored.
pub fn to_stderr(args: fmt::Arguments<'_>, newline: bool) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| {
        if newline {
            err.write_all(b"\n")
        } else {
            Ok(())
        }
    });
}

/// `println!` that never panics: see the crate docs.
#[macro_export]
macro_rules! outln {
    () => { $crate::to_stdout(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::to_stdout(format_args!($($arg)*), true) };
}

/// `print!` that never panics: see the crate docs.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::to_stdout(format_args!($($arg)*), false) };
}

/// `eprintln!` that never panics: see the crate docs.
#[macro_export]
macro_rules! errln {
    () => { $crate::to_stderr(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::to_stderr(format_args!($($arg)*), true) };
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    #[test]
    fn any_non_empty_no_color_turns_colour_off() {
        assert!(super::colour_allowed(None));
        assert!(super::colour_allowed(Some(OsStr::new(""))));
        assert!(!super::colour_allowed(Some(OsStr::new("1"))));
        assert!(!super::colour_allowed(Some(OsStr::new("false"))));
    }
}

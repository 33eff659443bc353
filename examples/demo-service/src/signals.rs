//! SIGTERM and SIGINT (stop) and SIGHUP (reload), received by one thread
//! with `sigwait`.
//!
//! A signal handler may do almost nothing safely; blocking the signals in
//! every thread and waiting for them in one ordinary thread turns a signal
//! into a plain value that thread can act on (it wakes the accept loop, or
//! re-reads the release's settings). The mask must be set before any other
//! thread starts, because threads inherit it: a thread started earlier
//! could receive the signal and die of it.

use std::io;
use std::mem::MaybeUninit;

/// The signals the service acts on, blocked in this thread and every
/// thread it starts.
pub struct Signals {
    set: libc::sigset_t,
}

/// What a received signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// SIGTERM or SIGINT (the number): stop gracefully.
    Stop(i32),
    /// SIGHUP: re-read the release's settings.
    Reload,
}

impl Signals {
    /// Blocks SIGTERM, SIGINT and SIGHUP. Call first thing in `main`.
    pub fn block() -> io::Result<Self> {
        // SAFETY: sigemptyset initialises the set before sigaddset and
        // pthread_sigmask read it; all three only touch memory we own.
        unsafe {
            let mut set = MaybeUninit::<libc::sigset_t>::uninit();
            if libc::sigemptyset(set.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut set = set.assume_init();
            for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                if libc::sigaddset(&mut set, signal) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let failed = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if failed != 0 {
                return Err(io::Error::from_raw_os_error(failed));
            }
            Ok(Signals { set })
        }
    }

    /// Waits for the next of the three signals and says what it asks for.
    pub fn wait(&self) -> io::Result<Asked> {
        let mut signal = 0;
        // SAFETY: `self.set` was initialised in `block`; sigwait writes
        // only `signal`.
        let failed = unsafe { libc::sigwait(&self.set, &mut signal) };
        if failed != 0 {
            return Err(io::Error::from_raw_os_error(failed));
        }
        Ok(match signal {
            libc::SIGHUP => Asked::Reload,
            stop => Asked::Stop(stop),
        })
    }
}

/// "SIGTERM", "SIGINT", or the number, for log lines.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        other => format!("signal {other}"),
    }
}

//! SIGTERM and SIGINT, received by one thread with `sigwait`.
//!
//! A signal handler may do almost nothing safely; blocking the two signals
//! in every thread and waiting for them in one ordinary thread turns a
//! signal into a plain value that thread can act on (it wakes the accept
//! loop). The mask must be set before any other thread starts, because
//! threads inherit it: a thread started earlier could receive the signal
//! and die of it.

use std::io;
use std::mem::MaybeUninit;

/// The stop signals, blocked in this thread and every thread it starts.
pub struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    /// Blocks SIGTERM and SIGINT. Call first thing in `main`.
    pub fn block() -> io::Result<Self> {
        // SAFETY: sigemptyset initialises the set before sigaddset and
        // pthread_sigmask read it; all three only touch memory we own.
        unsafe {
            let mut set = MaybeUninit::<libc::sigset_t>::uninit();
            if libc::sigemptyset(set.as_mut_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut set = set.assume_init();
            for signal in [libc::SIGTERM, libc::SIGINT] {
                if libc::sigaddset(&mut set, signal) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let failed = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if failed != 0 {
                return Err(io::Error::from_raw_os_error(failed));
            }
            Ok(StopSignals { set })
        }
    }

    /// Waits for SIGTERM or SIGINT and returns which one came.
    pub fn wait(&self) -> io::Result<i32> {
        let mut signal = 0;
        // SAFETY: `self.set` was initialised in `block`; sigwait writes
        // only `signal`.
        let failed = unsafe { libc::sigwait(&self.set, &mut signal) };
        if failed != 0 {
            return Err(io::Error::from_raw_os_error(failed));
        }
        Ok(signal)
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

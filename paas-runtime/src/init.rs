//! The container's init: PID 1 of every container (instances, one-offs, builds). The kernel
//! drops signals a namespace's init has no handler for, so an app that ran as PID 1 without a
//! SIGTERM handler (most node and python servers) ignored every SIGTERM and waited out the
//! grace period; and nobody reaped orphans, so zombies piled up. This init forks the command,
//! forwards the stop signals to every process of the container (as Heroku does to a dyno),
//! reaps every child, and exits with the command's status once the command exits (the kernel
//! then kills whatever else is left in the namespace).
//!
//! It runs our code as the app's uid, after the privilege drop and under the seccomp filter,
//! in the container's child process, which has one thread (so forking and allocating here are
//! safe). Must not know about apps: it supervises one command.

use std::io::Write;
use std::os::fd::OwnedFd;

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The signals the init passes on to every process of the container.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// How the command ended, as the init reports it to the monitor (its own exit code cannot say
/// "killed by a signal": an init is never killed by its own namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

impl Ended {
    /// The init's exit code: the command's, or 128 + signal like a shell.
    pub fn exit_code(self) -> i32 {
        match self {
            Ended::Exited(c) => c,
            Ended::Signaled(s) => 128 + s,
        }
    }

    /// The record on the status pipe: `exited N` or `signaled N`.
    pub fn record(self) -> String {
        match self {
            Ended::Exited(c) => format!("exited {c}"),
            Ended::Signaled(s) => format!("signaled {s}"),
        }
    }

    /// Parses [`Ended::record`]; anything else is `None` (the monitor then trusts the wait
    /// status of the init itself).
    pub fn parse(record: &str) -> Option<Ended> {
        let (kind, n) = record.trim().split_once(' ')?;
        let n: i32 = n.parse().ok()?;
        match kind {
            "exited" => Some(Ended::Exited(n)),
            "signaled" => Some(Ended::Signaled(n)),
            _ => None,
        }
    }
}

/// The mask the init runs with: the forwarded signals and SIGCHLD stay pending until it
/// waits for them. Blocked signals are never dropped, even for a namespace's init.
pub fn mask() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks [`mask`] before the fork, so no signal slips in between the fork and the wait loop.
pub fn block() -> nix::Result<SigSet> {
    let set = mask();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(set)
}

/// PID 1's loop once `main` (the command) is forked: forwards signals, reaps children, and
/// exits with `main`'s status, written first to `status` for the monitor.
pub fn supervise(main: Pid, set: &SigSet, status: OwnedFd) -> ! {
    let mut status = std::fs::File::from(status);
    loop {
        let Ok(sig) = set.wait() else { continue };
        if sig != Signal::SIGCHLD {
            // Every process of the container but this one (kill(-1) from a namespace's init),
            // so a `bash -c` wrapper and the server it started both hear it.
            let _ = kill(Pid::from_raw(-1), sig);
            continue;
        }
        if let Some(ended) = reap(main) {
            let _ = status.write_all(ended.record().as_bytes());
            drop(status);
            // SAFETY: _exit ends this process without running destructors or atexit handlers
            // of the image we were forked from.
            unsafe { libc::_exit(ended.exit_code()) }
        }
    }
}

/// Reaps every child that has exited (one SIGCHLD may stand for several); returns how `main`
/// ended if it was among them.
fn reap(main: Pid) -> Option<Ended> {
    let mut ended = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == main => ended = Some(Ended::Exited(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == main => {
                ended = Some(Ended::Signaled(sig as i32))
            }
            Ok(WaitStatus::StillAlive) => return ended,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            // ECHILD: nobody left to wait for.
            Err(_) => return ended,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_exit_codes_follow_the_shell() {
        for e in [Ended::Exited(0), Ended::Exited(3), Ended::Signaled(9)] {
            assert_eq!(Ended::parse(&e.record()), Some(e));
        }
        assert_eq!(Ended::Signaled(15).exit_code(), 143);
        assert_eq!(Ended::Exited(7).exit_code(), 7);
        assert_eq!(Ended::parse("nonsense"), None);
        assert_eq!(Ended::parse("exited x"), None);
        assert_eq!(Ended::parse(""), None);
    }

    #[test]
    fn the_mask_holds_the_forwarded_signals_and_sigchld() {
        let m = mask();
        for s in FORWARDED {
            assert!(m.contains(s), "{s}");
        }
        assert!(m.contains(Signal::SIGCHLD));
        assert!(!m.contains(Signal::SIGKILL));
    }
}

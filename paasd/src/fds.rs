//! paasd's file-descriptor limit: the soft RLIMIT_NOFILE is raised to the hard one at start,
//! since every proxied connection, container helper, log file and health check takes
//! descriptors and the administrator's hard limit (systemd's `LimitNOFILE`) is what was meant.
//! Owns only that; how the descriptors are shared is the router's budget
//! (`paas_router::connection_budget`).

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// The kernel's default `fs.nr_open`: the most a process may open when its hard limit says
/// "unlimited" (a soft limit above `nr_open` is refused).
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// RLIMIT_NOFILE before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub before: u64,
    pub now: u64,
}

/// The soft limit to ask for, given the current soft and hard ones: the hard limit, or
/// `nr_open` when the hard limit is unlimited; never lower than what we have.
pub fn target(soft: u64, hard: u64, nr_open: u64) -> u64 {
    let want = if hard == RLIM_INFINITY { nr_open } else { hard };
    want.max(soft)
}

/// Raises the soft limit (see [`target`]) and says what it was and is.
pub fn raise() -> Result<NoFile, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NR_OPEN_DEFAULT);
    let want = target(soft, hard, nr_open);
    if want != soft {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard)?;
    }
    Ok(NoFile {
        before: soft,
        now: want,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_goes_to_the_hard_one() {
        assert_eq!(target(1024, 524_288, NR_OPEN_DEFAULT), 524_288);
        assert_eq!(target(20_000, 20_000, NR_OPEN_DEFAULT), 20_000);
        // "Unlimited" is refused for NOFILE: the kernel's ceiling instead.
        assert_eq!(target(1024, RLIM_INFINITY, 2_000_000), 2_000_000);
        // Never lowered.
        assert_eq!(target(4096, 1024, NR_OPEN_DEFAULT), 4096);
    }

    #[test]
    fn raising_twice_is_a_no_op() {
        let first = raise().expect("raise");
        let again = raise().expect("raise again");
        assert_eq!(again.before, first.now);
        assert_eq!(again.now, first.now);
    }
}

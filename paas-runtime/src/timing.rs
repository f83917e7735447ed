//! Phase timestamps for studying container start time. Off unless `PAAS_RUNTIME_TIMING` is set
//! in paasd's environment (the helper inherits it); then each [`mark`] writes one line
//! `@paas-timing <pid> <CLOCK_MONOTONIC ns> <phase>` to stderr. paasd and the helper share the
//! clock, so the lines of both merge into one timeline (bench/container.sh sums them up).

use std::sync::OnceLock;

const VAR: &str = "PAAS_RUNTIME_TIMING";

/// Where lines go: a duplicate of stderr taken at the first mark (close-on-exec), so that marks
/// of the container's process still reach paasd's stderr after its stdio was redirected.
fn sink() -> Option<&'static std::fs::File> {
    static SINK: OnceLock<Option<std::fs::File>> = OnceLock::new();
    SINK.get_or_init(|| {
        std::env::var_os(VAR)?;
        let fd = std::os::fd::AsFd::as_fd(&std::io::stderr())
            .try_clone_to_owned()
            .ok()?;
        Some(std::fs::File::from(fd))
    })
    .as_ref()
}

/// Records that `phase` was reached (a no-op unless timing is on).
pub fn mark(phase: &str) {
    let Some(mut out) = sink() else {
        return;
    };
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    });
    // One write per line, so lines of concurrent processes do not interleave.
    let line = format!("@paas-timing {} {now} {phase}\n", std::process::id());
    let _ = std::io::Write::write_all(&mut out, line.as_bytes());
}

//! The process's heaps: handing memory freed after a burst back to the kernel. paasd's Rust
//! allocations live in mimalloc (its global allocator), the C libraries' (SQLite, the TLS
//! crypto) in glibc's malloc. Neither gives everything back on its own: glibc returns only
//! the top of its main heap, so after 20,000 client connections came and went the RSS stayed
//! at its peak; mimalloc keeps a thread's emptied pages in that thread's heap until the
//! thread itself collects them, and a worker thread gone idle after a flood never does.
//!
//! This module is only the safe wrappers; when to call them is paasd's decision
//! (`paasd/src/memory.rs`). It keeps one counter (`ASKED`) and, per thread, the last value it
//! acted on; it must not allocate.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many times `ask_threads` was called.
static ASKED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The `ASKED` this thread last collected for.
    static COLLECTED: Cell<u64> = const { Cell::new(0) };
}

/// Returns the free memory of every glibc malloc arena to the kernel (`malloc_trim(0)`: free
/// pages inside the heaps are `madvise`d away, not only the top). True if any was released.
/// A no-op outside glibc. It walks every arena under its lock, a few milliseconds per
/// hundred megabytes, so it belongs on a blocking thread and after a burst, not on a
/// schedule. mimalloc's pages are `ask_threads`' job: they belong to the threads that
/// allocated them.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointer and leaves every live allocation where it
        // is; glibc documents it as MT-safe (it takes each arena's lock itself).
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Asks every thread that runs `collect_if_asked` (a tokio runtime's `on_thread_park`) to
/// hand its free mimalloc pages back the next time it parks.
pub fn ask_threads() {
    ASKED.fetch_add(1, Ordering::Relaxed);
}

/// For `on_thread_park`: one atomic load and a thread-local read when nothing was asked,
/// cheap enough for a worker that parks thousands of times a second under load. After
/// `ask_threads`, once: the thread's mimalloc pages with no live block go back to the
/// arenas, and the arenas' free ranges (program-wide) to the kernel.
pub fn collect_if_asked() {
    let asked = ASKED.load(Ordering::Relaxed);
    if COLLECTED.get() != asked {
        COLLECTED.set(asked);
        // SAFETY: mi_collect takes no pointer and frees only blocks already freed; it is
        // safe to call from any thread (it works on the caller's own heap and the shared
        // arenas).
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_after_a_burst_leaves_live_memory_alone() {
        let keep: Vec<u8> = vec![7; 1 << 16];
        let burst: Vec<Vec<u8>> = (0..2000).map(|i| vec![i as u8; 8192]).collect();
        drop(burst);
        let _ = trim();
        assert!(keep.iter().all(|b| *b == 7));
        // Calling it again with nothing freed in between is harmless.
        let _ = trim();
    }

    #[test]
    fn a_thread_collects_once_per_ask() {
        let keep: Vec<u8> = vec![9; 1 << 16];
        ask_threads();
        collect_if_asked();
        let seen = COLLECTED.get();
        assert_eq!(seen, ASKED.load(Ordering::Relaxed));
        collect_if_asked();
        assert_eq!(COLLECTED.get(), seen, "nothing new was asked");
        ask_threads();
        collect_if_asked();
        assert!(COLLECTED.get() > seen);
        assert!(keep.iter().all(|b| *b == 9));
    }
}

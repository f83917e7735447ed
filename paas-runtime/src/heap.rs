//! The C heap of the process: handing memory freed after a burst back to the kernel. glibc
//! keeps what is freed in its arenas for reuse and on its own returns only the top of the
//! main heap, so after 20,000 client connections came and went paasd's RSS stayed at its
//! peak. This module is only the safe wrapper; when to call it is paasd's decision
//! (`paasd/src/memory.rs`). Must not allocate or keep state.

/// Returns the free memory of every malloc arena to the kernel (`malloc_trim(0)`: free pages
/// inside the heaps are `madvise`d away, not only the top). True if any was released. A
/// no-op outside glibc. It walks every arena under its lock, a few milliseconds per hundred
/// megabytes, so it belongs on a blocking thread and after a burst, not on a schedule.
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
}

//! How the process's allocator treats the CPU kernels' activations.
//!
//! Every layer of a CPU forward pass allocates its output (megabytes to tens of megabytes) and
//! frees its input. With glibc's defaults the freed memory goes back to the kernel (large
//! blocks are `mmap`ed and unmapped, the top of the heap is trimmed), so the next layer's
//! output faults in fresh zeroed pages: HRNet-W32 at batch 8 took 310,000 page faults in 8
//! passes and spent about a tenth of its time in them. Keeping freed blocks in the heap
//! makes the next pass reuse them; the process then holds its peak working set, which it
//! needed anyway, rather than less.

/// Blocks up to this size come from the heap, not from `mmap` (glibc's largest allowed value
/// on 64-bit systems).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Keeps freed activation memory in the process for reuse (see the module's text). Call once,
/// early, before threads start; a no-op outside glibc. Returns whether every setting took.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes the allocator's parameters; it is called before the
        // worker threads exist.
        unsafe {
            // The trim threshold is an int: its largest value means "never trim".
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
                && libc::mallopt(libc::M_TOP_PAD, 64 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Hands the free memory of every heap back to the kernel: for after a one-off peak (parsing a
/// large boxes file) that would otherwise stay resident, since [`keep_freed_memory`] stops the
/// heap from being trimmed. A no-op outside glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_every_setting() {
        assert!(super::keep_freed_memory());
    }
}

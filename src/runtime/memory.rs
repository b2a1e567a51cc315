//! The allocator's tunables.

/// Limits glibc's malloc to two arenas. By default it gives each thread
/// that allocates at once an arena of its own (up to eight per core), and
/// the runtime's workers all allocate for the same caches: the arenas only
/// fragment the heap. Two arenas lowered the peak RSS at 3000 instances
/// (BENCHMARKS.md) with no change in convergence time. Call it before any
/// other thread starts.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; it is called from
    // main before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

//! One process-wide thread policy: how many threads batch work uses by default
//! ([`set_default_threads`], else `INTERLEAF_THREADS`, else the cores this process may run on),
//! and rayon pools cached by size, so no call ever builds a pool of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rayon::ThreadPool;

/// The most threads one pool may have (a larger request is an error, not a hang).
pub const MAX_THREADS: usize = 512;

static DEFAULT: AtomicUsize = AtomicUsize::new(0);

/// The cores this process may run on, read once (`available_parallelism` reads the affinity
/// mask and cgroup files on every call, which showed in per-batch profiles).
fn available() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Checks a thread count: 1 to [`MAX_THREADS`].
pub fn check(threads: usize) -> Result<usize, String> {
    if (1..=MAX_THREADS).contains(&threads) {
        Ok(threads)
    } else {
        Err(format!("threads must be in [1, {MAX_THREADS}], got {threads}"))
    }
}

/// The default thread count: the last [`set_default_threads`], else `INTERLEAF_THREADS`, else
/// the cores this process may run on.
pub fn default_threads() -> usize {
    match DEFAULT.load(Ordering::Relaxed) {
        0 => std::env::var("INTERLEAF_THREADS").ok().and_then(|v| v.trim().parse().ok()).and_then(|n| check(n).ok()).unwrap_or_else(available),
        n => n,
    }
}

/// Sets the default thread count for every later call that does not name one.
pub fn set_default_threads(threads: usize) -> Result<(), String> {
    DEFAULT.store(check(threads)?, Ordering::Relaxed);
    Ok(())
}

/// The pool of `threads` threads (the default count when `None`), built once per size.
pub fn pool(threads: Option<usize>) -> Result<Arc<ThreadPool>, String> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<ThreadPool>>>> = OnceLock::new();
    let n = check(threads.unwrap_or_else(default_threads))?;
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.get(&n) {
        return Ok(p.clone());
    }
    let p = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(move |i| format!("interleaf-{n}-{i}")).build().map_err(|e| e.to_string())?);
    pools.insert(n, p.clone());
    Ok(p)
}

/// Runs `f` on the pool of `threads` threads (see [`pool`]).
pub fn install<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    Ok(pool(threads)?.install(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_cached_by_size_and_bounded() {
        let a = pool(Some(2)).unwrap();
        let b = pool(Some(2)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(install(Some(3), rayon::current_num_threads).unwrap(), 3);
        assert!(pool(Some(0)).is_err());
        assert!(pool(Some(MAX_THREADS + 1)).unwrap_err().contains("threads must be in"));
    }
}

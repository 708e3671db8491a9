//! Cooperative cancellation of long computations. A caller that may have to stop one (the
//! Python bindings, on Ctrl-C) runs it [`within`] a flag; the long loops take the flag of the
//! computation they belong to with [`Check::current`] and stop early once it is set. A
//! cancelled computation's result is incomplete: the caller that cancelled it discards it.
//! Without a flag (every other caller, the tests) nothing is ever cancelled.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

thread_local! {
    static CURRENT: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// The cancellation flag of the computation that took it (none: never cancelled).
#[derive(Clone, Debug, Default)]
pub struct Check(Option<Arc<AtomicBool>>);

impl Check {
    /// The flag of the computation running on this thread (set by [`within`]), or none.
    pub fn current() -> Check {
        Check(CURRENT.with(|c| c.borrow().clone()))
    }

    /// Whether the computation was asked to stop.
    #[inline]
    pub fn cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

/// Runs `f` with `flag` as this thread's [`Check::current`] (the previous one back after it,
/// also when `f` panics).
pub fn within<T>(flag: Arc<AtomicBool>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Arc<AtomicBool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.borrow_mut().replace(flag)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_is_seen_within_and_only_there() {
        assert!(!Check::current().cancelled());
        let flag = Arc::new(AtomicBool::new(false));
        let check = within(flag.clone(), Check::current);
        assert!(!check.cancelled());
        flag.store(true, Ordering::Relaxed);
        assert!(check.cancelled());
        assert!(!Check::current().cancelled()); // restored after `within`
        let other = Arc::new(AtomicBool::new(false));
        assert!(!within(other, Check::current).cancelled()); // one computation's flag only
    }
}

//! The `-j` limit on what runs, apart from how many actions are in flight.
//!
//! With a remote cache, most of an action's time on a fresh checkout is spent waiting on round
//! trips (the dependency manifest, then the action, then their blobs), not on the machine's
//! cores. The scheduler then keeps more actions in flight than `-j` ([`LOOKUP_WIDTH`]), so
//! that many lookups overlap, and every action that has to run (locally or on a remote worker)
//! first takes one of `-j` [`Slots`]: the build never runs more commands at once than asked.

use std::sync::{Condvar, Mutex};

/// Actions in flight when a remote cache is consulted: lookups are I/O-bound, so more of them
/// overlap than there are cores. A hit only restores files; a miss waits for a slot.
pub const LOOKUP_WIDTH: usize = 16;

/// A counting semaphore of `-j` slots.
pub struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

/// One taken slot, given back when dropped.
pub struct Slot<'a>(&'a Slots);

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n.max(1)),
            cv: Condvar::new(),
        }
    }

    /// Waits for a free slot.
    pub fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap();
        while *free == 0 {
            free = self.cv.wait(free).unwrap();
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap() += 1;
        self.0.cv.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_than_n_slots_are_taken_at_once() {
        let slots = Slots::new(2);
        let now = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let _slot = slots.take();
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        now.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        let most = most.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} slots taken at once");
    }
}

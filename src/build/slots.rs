//! The `-j` limit on what runs, apart from how many actions are in flight.
//!
//! With a remote cache, most of an action's time on a fresh checkout is spent waiting on round
//! trips (the dependency manifest, then the action, then their blobs), not on the machine's
//! cores. The scheduler then keeps more actions in flight than `-j` ([`LOOKUP_WIDTH`]), so
//! that many lookups overlap, and every action that has to run (locally or on a remote worker)
//! first takes one of `-j` [`Slots`]: the build never runs more commands at once than asked.
//! When a failure stops the build, [`Slots::stop`] makes actions still waiting for a slot give
//! up instead of running, as actions not yet started do.

use std::sync::{Condvar, Mutex};

/// Actions in flight when a remote cache is consulted: lookups are I/O-bound, so more of them
/// overlap than there are cores. A hit only restores files; a miss waits for a slot.
pub const LOOKUP_WIDTH: usize = 16;

/// A counting semaphore of `-j` slots.
pub struct Slots {
    /// Free slots, and whether the build has stopped.
    free: Mutex<(usize, bool)>,
    cv: Condvar,
}

/// One taken slot, given back when dropped.
pub struct Slot<'a>(&'a Slots);

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new((n.max(1), false)),
            cv: Condvar::new(),
        }
    }

    /// Waits for a free slot; None once the build has stopped.
    pub fn take(&self) -> Option<Slot<'_>> {
        let mut free = self.free.lock().unwrap();
        while free.0 == 0 && !free.1 {
            free = self.cv.wait(free).unwrap();
        }
        if free.1 {
            return None;
        }
        free.0 -= 1;
        Some(Slot(self))
    }

    /// No more slots: the build stopped after a failure.
    pub fn stop(&self) {
        self.free.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.free.lock().unwrap().0 += 1;
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
                        let _slot = slots.take().unwrap();
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

    #[test]
    fn a_stopped_build_hands_out_no_slot_even_to_a_waiter() {
        let slots = Slots::new(1);
        let held = slots.take().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| slots.take().is_none());
            slots.stop();
            assert!(waiter.join().unwrap(), "a waiter got a slot after stop");
        });
        drop(held);
        assert!(slots.take().is_none());
    }
}

//! Traffic counters: monotonic, per user and per inbound, written without contention.
//!
//! Each counter has one cache-line-aligned slot per worker. Only that worker's thread writes
//! its slot (a relaxed load and store, no read-modify-write), and readers sum the slots. Values
//! only grow; reading never resets them, so a consumer computes deltas itself and nothing is
//! lost between two reads.

use std::sync::atomic::{AtomicU64, Ordering};

#[repr(align(128))]
#[derive(Default)]
struct Slot {
    up: AtomicU64,
    down: AtomicU64,
}

/// Uplink (client to destination) and downlink (destination to client) payload bytes.
pub struct Traffic {
    slots: Box<[Slot]>,
}

/// A snapshot of a [`Traffic`] counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrafficStats {
    /// Bytes from clients toward destinations.
    pub uplink: u64,
    /// Bytes from destinations toward clients.
    pub downlink: u64,
}

impl Traffic {
    /// A counter with one slot per worker.
    pub fn new(workers: usize) -> Traffic {
        Traffic {
            slots: (0..workers.max(1)).map(|_| Slot::default()).collect(),
        }
    }

    /// Adds uplink bytes. Must be called only from worker `worker`'s thread.
    #[inline]
    pub fn add_up(&self, worker: usize, n: u64) {
        let s = &self.slots[worker].up;
        s.store(s.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Adds downlink bytes. Must be called only from worker `worker`'s thread.
    #[inline]
    pub fn add_down(&self, worker: usize, n: u64) {
        let s = &self.slots[worker].down;
        s.store(s.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Totals over all workers.
    pub fn read(&self) -> TrafficStats {
        self.slots
            .iter()
            .fold(TrafficStats::default(), |acc, s| TrafficStats {
                uplink: acc.uplink + s.up.load(Ordering::Relaxed),
                downlink: acc.downlink + s.down.load(Ordering::Relaxed),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_slots_and_never_resets() {
        let t = Traffic::new(3);
        t.add_up(0, 5);
        t.add_up(2, 7);
        t.add_down(1, 11);
        assert_eq!(
            t.read(),
            TrafficStats {
                uplink: 12,
                downlink: 11
            }
        );
        assert_eq!(
            t.read(),
            TrafficStats {
                uplink: 12,
                downlink: 11
            }
        );
    }
}

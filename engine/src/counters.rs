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
    opened: AtomicU64,
    closed: AtomicU64,
}

/// Uplink (client to destination) and downlink (destination to client) payload bytes, and
/// connections opened and closed.
pub struct Traffic {
    storage: Storage,
}

enum Storage {
    Heap(Box<[Slot]>),
    /// In the counters file, so the values outlive the process (see `runtime::mapped`).
    Mapped(crate::runtime::mapped::MappedSlots, usize),
}

const UP: usize = 0;
const DOWN: usize = 1;
const OPENED: usize = 2;
const CLOSED: usize = 3;

/// A snapshot of a [`Traffic`] counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrafficStats {
    /// Bytes from clients toward destinations.
    pub uplink: u64,
    /// Bytes from destinations toward clients.
    pub downlink: u64,
    /// Connections (TCP) and sessions (UDP) open now.
    pub open: u64,
}

/// Keeps a connection counted as open; see [`Traffic::open_guard`].
pub struct OpenGuard<'a> {
    traffic: &'a Traffic,
    worker: usize,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.traffic.closed(self.worker);
    }
}

fn bump(c: &AtomicU64, n: u64) {
    // Single writer per slot: a load and a store, no locked read-modify-write.
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl Traffic {
    /// A counter with one slot per worker, on the heap.
    pub fn new(workers: usize) -> Traffic {
        Traffic {
            storage: Storage::Heap((0..workers.max(1)).map(|_| Slot::default()).collect()),
        }
    }

    /// A counter whose slots live in the counters file.
    pub fn mapped(slots: crate::runtime::mapped::MappedSlots, workers: usize) -> Traffic {
        Traffic {
            storage: Storage::Mapped(slots, workers),
        }
    }

    #[inline]
    fn counter(&self, worker: usize, which: usize) -> &AtomicU64 {
        match &self.storage {
            Storage::Heap(slots) => {
                let s = &slots[worker];
                match which {
                    UP => &s.up,
                    DOWN => &s.down,
                    OPENED => &s.opened,
                    _ => &s.closed,
                }
            }
            Storage::Mapped(m, _) => m.counter(worker, which),
        }
    }

    fn workers(&self) -> usize {
        match &self.storage {
            Storage::Heap(slots) => slots.len(),
            Storage::Mapped(_, w) => *w,
        }
    }

    /// Adds uplink bytes. Must be called only from worker `worker`'s thread.
    #[inline]
    pub fn add_up(&self, worker: usize, n: u64) {
        bump(self.counter(worker, UP), n);
    }

    /// Adds downlink bytes. Must be called only from worker `worker`'s thread.
    #[inline]
    pub fn add_down(&self, worker: usize, n: u64) {
        bump(self.counter(worker, DOWN), n);
    }

    /// Counts a connection or session as open (from worker `worker`'s thread only), to be
    /// paired with [`Traffic::closed`].
    pub fn opened(&self, worker: usize) {
        bump(self.counter(worker, OPENED), 1);
    }

    /// Counts a connection or session as closed.
    pub fn closed(&self, worker: usize) {
        bump(self.counter(worker, CLOSED), 1);
    }

    /// Counts one open connection until the returned guard drops.
    pub fn open_guard(&self, worker: usize) -> OpenGuard<'_> {
        self.opened(worker);
        OpenGuard {
            traffic: self,
            worker,
        }
    }

    /// Totals over all workers.
    pub fn read(&self) -> TrafficStats {
        let (mut opened, mut closed) = (0u64, 0u64);
        let mut t = TrafficStats::default();
        for w in 0..self.workers() {
            t.uplink += self.counter(w, UP).load(Ordering::Relaxed);
            t.downlink += self.counter(w, DOWN).load(Ordering::Relaxed);
            closed += self.counter(w, CLOSED).load(Ordering::Relaxed);
            opened += self.counter(w, OPENED).load(Ordering::Relaxed);
        }
        t.open = opened.saturating_sub(closed);
        t
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
                downlink: 11,
                open: 0
            }
        );
        assert_eq!(
            t.read(),
            TrafficStats {
                uplink: 12,
                downlink: 11,
                open: 0
            }
        );
        t.opened(1);
        assert_eq!(t.read().open, 1);
        t.closed(1);
        assert_eq!(t.read().open, 0);
    }
}

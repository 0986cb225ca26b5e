//! Replay protection: an exact salt set and a sliding window of packet ids.

use std::collections::HashSet;

/// Remembers salts for at least `ttl` seconds, exactly (no false positives, unlike a Bloom
/// filter; SIP022 forbids those).
///
/// Two generations: salts go into `current`; every `ttl` seconds `current` becomes `previous`
/// and the old `previous` is dropped. A salt is therefore remembered between `ttl` and `2 * ttl`
/// seconds. A generation may also be capped in size (for AEAD (2017), which has no timestamps
/// and would otherwise grow without bound); when the cap is hit the generations rotate early.
pub struct SaltFilter {
    current: HashSet<[u8; 32]>,
    previous: HashSet<[u8; 32]>,
    rotated_at: u64,
    ttl: u64,
    cap: usize,
}

impl SaltFilter {
    /// A filter keeping salts for `ttl` seconds, at most `cap` per generation.
    pub fn new(ttl: u64, cap: usize) -> SaltFilter {
        SaltFilter {
            current: HashSet::new(),
            previous: HashSet::new(),
            rotated_at: 0,
            ttl,
            cap: cap.max(1),
        }
    }

    /// Returns `true` and records `salt` if it was not seen; `false` for a replay.
    pub fn check_and_insert(&mut self, salt: &[u8], now: u64) -> bool {
        if now >= self.rotated_at.saturating_add(self.ttl) || self.current.len() >= self.cap {
            self.previous = std::mem::take(&mut self.current);
            self.rotated_at = now;
        }
        let mut k = [0u8; 32];
        let n = salt.len().min(32);
        k[..n].copy_from_slice(&salt[..n]);
        if self.previous.contains(&k) {
            return false;
        }
        self.current.insert(k)
    }

    /// Number of salts held.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether no salt is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What checks a salt for replay during a handshake; implemented by [`SaltFilter`] and by the
/// engine's shared, locked filter.
pub trait SaltCheck {
    /// `true` if fresh (and now recorded), `false` if replayed.
    fn check_and_insert(&mut self, salt: &[u8], now: u64) -> bool;
}

impl SaltCheck for SaltFilter {
    fn check_and_insert(&mut self, salt: &[u8], now: u64) -> bool {
        SaltFilter::check_and_insert(self, salt, now)
    }
}

/// Anti-replay window over packet ids (RFC 6479 style, as WireGuard does), 1024 ids wide.
#[derive(Clone, Debug, Default)]
pub struct SlidingWindow {
    /// Highest id accepted so far, plus one (0 = nothing yet).
    next: u64,
    bits: [u64; SlidingWindow::WORDS],
}

impl SlidingWindow {
    const WORDS: usize = 16;
    /// Width of the window in packet ids.
    pub const SIZE: u64 = (Self::WORDS as u64) * 64;

    /// Whether `id` would be accepted (not a duplicate, not too old). Does not record it.
    /// `u64::MAX` never is: no client counts that far, and the window's next id must not wrap
    /// (a wrapped window would accept old ids again).
    pub fn check(&self, id: u64) -> bool {
        if id == u64::MAX {
            return false;
        }
        if id >= self.next {
            return true;
        }
        if self.next - id > Self::SIZE {
            return false;
        }
        let (w, b) = Self::slot(id);
        self.bits[w] & (1 << b) == 0
    }

    /// Records `id` as seen; call only after the packet has been validated.
    pub fn accept(&mut self, id: u64) -> bool {
        if !self.check(id) {
            return false;
        }
        if id >= self.next {
            // Clear the words that slide out of the window between next and id.
            let advance = id + 1 - self.next;
            if advance >= Self::SIZE {
                self.bits = [0; Self::WORDS];
            } else {
                for x in self.next..=id {
                    let (w, b) = Self::slot(x);
                    self.bits[w] &= !(1 << b);
                }
            }
            self.next = id + 1;
        }
        let (w, b) = Self::slot(id);
        self.bits[w] |= 1 << b;
        true
    }

    fn slot(id: u64) -> (usize, u32) {
        (((id / 64) % Self::WORDS as u64) as usize, (id % 64) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_packet_id_is_refused_without_touching_the_window() {
        let mut w = SlidingWindow::default();
        assert!(!w.accept(u64::MAX));
        assert!(w.accept(u64::MAX - 1));
        assert!(!w.accept(u64::MAX));
        assert!(!w.accept(u64::MAX - 1), "a replay after the largest id");
        assert!(w.accept(u64::MAX - 2));
        // A fresh window: the first packet may be anywhere short of the last id.
        let mut w = SlidingWindow::default();
        assert!(w.accept(1));
        assert!(!w.accept(1));
    }

    #[test]
    fn salt_filter_is_exact_and_expires() {
        let mut f = SaltFilter::new(60, 1 << 20);
        assert!(f.check_and_insert(&[1; 32], 1000));
        assert!(!f.check_and_insert(&[1; 32], 1001));
        assert!(f.check_and_insert(&[2; 32], 1001));
        // Still remembered one generation later.
        assert!(!f.check_and_insert(&[1; 32], 1061));
        // Forgotten after two.
        assert!(f.check_and_insert(&[1; 32], 1200));
    }

    #[test]
    fn window_rejects_duplicates_and_old_ids() {
        let mut w = SlidingWindow::default();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(5));
        assert!(w.accept(3));
        assert!(!w.accept(3));
        assert!(w.accept(2000));
        assert!(!w.check(5));
        assert!(w.check(1999));
        assert!(w.accept(1999));
        assert!(!w.accept(1999));
        assert!(w.accept(100_000));
        assert!(!w.check(2000));
    }
}

//! The byte stream every benchmark transfer carries, so the receiver can check each byte.
//!
//! Byte `i` of a stream is `block[i % PERIOD]`, where `block` is pseudo-random and `PERIOD` is a
//! prime: no read or chunk size lines up with it, so a lost, duplicated or reordered span shows
//! up as a mismatch. Filling and checking are `memcpy`/`memcmp` over a precomputed block, cheap
//! enough that the load generator stays far from being the bottleneck of the server under test.

use std::sync::OnceLock;

/// Length of the repeating block: a prime a little under 1 MiB.
pub const PERIOD: usize = 1_048_573;

/// Longest span handled in one piece; longer spans are split.
const SPAN: usize = 128 * 1024;

/// The shared pattern.
pub struct TestPattern {
    /// `PERIOD` pseudo-random bytes followed by the first `SPAN` of them again, so that any span
    /// of up to `SPAN` bytes is one contiguous slice.
    block: Vec<u8>,
}

impl TestPattern {
    /// The process-wide pattern (built on first use).
    pub fn get() -> &'static TestPattern {
        static PATTERN: OnceLock<TestPattern> = OnceLock::new();
        PATTERN.get_or_init(|| {
            // xorshift64*: deterministic, so the pattern is the same in every process.
            let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut block = Vec::with_capacity(PERIOD + SPAN);
            while block.len() < PERIOD {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
                let take = (PERIOD - block.len()).min(8);
                block.extend_from_slice(&word.to_le_bytes()[..take]);
            }
            block.extend_from_within(..SPAN);
            TestPattern { block }
        })
    }

    /// Writes the stream's bytes `offset..offset + out.len()` into `out`.
    pub fn fill(&self, mut offset: u64, out: &mut [u8]) {
        for piece in out.chunks_mut(SPAN) {
            let at = (offset % PERIOD as u64) as usize;
            piece.copy_from_slice(&self.block[at..at + piece.len()]);
            offset += piece.len() as u64;
        }
    }

    /// Whether `data` equals the stream's bytes `offset..offset + data.len()`.
    pub fn matches(&self, mut offset: u64, data: &[u8]) -> bool {
        data.chunks(SPAN).all(|piece| {
            let at = (offset % PERIOD as u64) as usize;
            offset += piece.len() as u64;
            piece == &self.block[at..at + piece.len()]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_and_match_agree_across_the_period() {
        let p = TestPattern::get();
        let mut buf = vec![0u8; 300_000];
        for offset in [0, 1, PERIOD as u64 - 7, 5 * PERIOD as u64 + 3] {
            p.fill(offset, &mut buf);
            assert!(p.matches(offset, &buf));
            assert!(!p.matches(offset + 1, &buf));
            buf[200_000] ^= 1;
            assert!(!p.matches(offset, &buf));
        }
    }
}

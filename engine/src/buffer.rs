//! Per-core pools of relay buffers.
//!
//! A relay reads each byte once into a [`RelayBuffer`], decrypts or encrypts it there in place
//! and writes it from the same memory. Buffers come from the pool of the executor that runs the
//! connection and go back to it when dropped, so steady-state relaying allocates nothing. A
//! pool is plain per-core state (`Rc`, `RefCell`): no locks, no atomics.
//!
//! Some consumers keep what they are given past the call: quinn's send streams hold written
//! data until the peer acknowledges it. For them a [`SendBuffer`] is filled like a relay
//! buffer and then frozen into [`Bytes`] that own its memory; when the last reference drops,
//! the memory goes back to the spares of the thread that drops it.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use bytes::Bytes;

/// A pool of equally sized buffers owned by one executor.
pub struct BufferPool {
    size: usize,
    max_idle: usize,
    free: RefCell<Vec<Box<[u8]>>>,
}

impl BufferPool {
    /// A pool handing out `size`-byte buffers and keeping at most `max_idle` of them spare.
    pub fn new(size: usize, max_idle: usize) -> Rc<BufferPool> {
        Rc::new(BufferPool {
            size,
            max_idle,
            free: RefCell::new(Vec::new()),
        })
    }

    /// Takes a buffer (allocating only when the pool is empty).
    pub fn get(self: &Rc<Self>) -> RelayBuffer {
        let buf = self
            .free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into());
        RelayBuffer {
            buf: Some(buf),
            pool: Rc::clone(self),
        }
    }

    /// Buffers currently idle in the pool.
    pub fn idle(&self) -> usize {
        self.free.borrow().len()
    }

    /// Size of each buffer.
    pub fn buffer_size(&self) -> usize {
        self.size
    }
}

/// A buffer borrowed from a [`BufferPool`]; returns itself on drop.
pub struct RelayBuffer {
    buf: Option<Box<[u8]>>,
    pool: Rc<BufferPool>,
}

impl Deref for RelayBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.as_deref().expect("present until drop")
    }
}

impl DerefMut for RelayBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.buf.as_deref_mut().expect("present until drop")
    }
}

impl Drop for RelayBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let mut free = self.pool.free.borrow_mut();
            if free.len() < self.pool.max_idle {
                free.push(buf);
            }
        }
    }
}

thread_local! {
    /// This thread's spare [`SendBuffer`] memory, any size (a taker skips other sizes).
    static SPARE_SEND_BUFFERS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// Most spare [`SendBuffer`]s a thread keeps.
const MAX_SPARE_SEND_BUFFERS: usize = 64;

/// A buffer to fill and then hand over, without a copy, as [`Bytes`] that own it
/// ([`SendBuffer::freeze`]). Its memory comes from, and goes back to, the spares of the
/// thread that uses it, so a steady flow of them reuses the same few buffers.
pub struct SendBuffer {
    buf: Box<[u8]>,
}

impl SendBuffer {
    /// A `size`-byte buffer, from this thread's spares when one of that size is there.
    pub fn take(size: usize) -> SendBuffer {
        let spare = SPARE_SEND_BUFFERS
            .try_with(|spares| {
                let mut spares = spares.borrow_mut();
                let at = spares.iter().rposition(|b| b.len() == size)?;
                Some(spares.swap_remove(at))
            })
            .ok()
            .flatten();
        SendBuffer {
            buf: spare.unwrap_or_else(|| vec![0u8; size].into()),
        }
    }

    /// The first `len` bytes as [`Bytes`] that own this buffer (one small allocation for the
    /// shared count, none for the data). The buffer returns to the spares of the thread that
    /// drops the last reference.
    ///
    /// # Panics
    ///
    /// If `len` exceeds the buffer's size.
    pub fn freeze(self, len: usize) -> Bytes {
        assert!(
            len <= self.buf.len(),
            "{len} bytes frozen from a {}-byte buffer",
            self.buf.len()
        );
        Bytes::from_owner(Frozen { buf: self.buf, len })
    }
}

impl Deref for SendBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl DerefMut for SendBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

/// The owner behind [`SendBuffer::freeze`]'s `Bytes`.
struct Frozen {
    buf: Box<[u8]>,
    len: usize,
}

impl AsRef<[u8]> for Frozen {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // A thread past its thread-locals' teardown just frees the memory.
        let _ = SPARE_SEND_BUFFERS.try_with(|spares| {
            let mut spares = spares.borrow_mut();
            if spares.len() < MAX_SPARE_SEND_BUFFERS {
                spares.push(buf);
            }
        });
    }
}

/// Spare [`SendBuffer`]s this thread holds.
#[cfg(test)]
fn spare_send_buffers() -> usize {
    SPARE_SEND_BUFFERS.with(|spares| spares.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_return_to_the_pool() {
        let pool = BufferPool::new(1024, 2);
        let a = pool.get();
        let b = pool.get();
        let c = pool.get();
        assert_eq!(a.len(), 1024);
        drop((a, b, c));
        assert_eq!(pool.idle(), 2);
        let _d = pool.get();
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn send_buffers_come_back_when_the_last_reference_drops() {
        let mut buf = SendBuffer::take(4096);
        buf[..5].copy_from_slice(b"hello");
        let before = spare_send_buffers();
        let bytes = buf.freeze(5);
        assert_eq!(&bytes[..], b"hello");
        let tail = bytes.slice(1..);
        drop(bytes);
        assert_eq!(spare_send_buffers(), before, "a clone still holds it");
        assert_eq!(&tail[..], b"ello");
        drop(tail);
        assert_eq!(spare_send_buffers(), before + 1);
        // The next take of that size reuses it; another size does not.
        let other = SendBuffer::take(1024);
        assert_eq!(other.len(), 1024);
        assert_eq!(spare_send_buffers(), before + 1);
        let again = SendBuffer::take(4096);
        assert_eq!(&again[..5], b"hello");
        assert_eq!(spare_send_buffers(), before);
    }

    #[test]
    fn a_buffer_dropped_on_another_thread_stays_there() {
        let bytes = SendBuffer::take(2048).freeze(2048);
        std::thread::spawn(move || {
            drop(bytes);
            assert_eq!(spare_send_buffers(), 1);
        })
        .join()
        .unwrap();
    }
}

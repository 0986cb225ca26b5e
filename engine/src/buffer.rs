//! Per-core pools of relay buffers.
//!
//! A relay reads each byte once into a [`RelayBuffer`], decrypts or encrypts it there in place
//! and writes it from the same memory. Buffers come from the pool of the executor that runs the
//! connection and go back to it when dropped, so steady-state relaying allocates nothing. A
//! pool is plain per-core state (`Rc`, `RefCell`): no locks, no atomics.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

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
}

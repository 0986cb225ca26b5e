//! Zero-copy relaying between two TCP sockets with `splice(2)`: bytes go from the source
//! socket into a pipe and from the pipe into the destination socket, page references moved
//! inside the kernel, never copied into user space.
//!
//! ```text
//!   from socket ──splice──▶ pipe (kernel pages) ──splice──▶ to socket
//!        ▲ readable?                                 ▲ writable?
//!        └──── io_uring POLL_ADD (glommio's reactor) ┘
//! ```
//!
//! Both calls are non-blocking: the sockets are switched to `O_NONBLOCK` and the pipes are
//! created non-blocking. io_uring's own `SPLICE` operation is not used: for a socket the kernel
//! runs it on a blocking io-wq worker thread (one per waiting splice), which would put a
//! kernel thread behind every idle connection; readiness through the ring and a non-blocking
//! `splice(2)` keep everything on the executor's thread.
//!
//! Pipes come from a per-worker [`PipePool`]. A relay direction holds one only while bytes
//! are in flight (taken when the source has data, given back once the pipe is empty and the
//! direction waits again), so an idle connection holds no pipe and no extra descriptors.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::TcpStream;

/// What one pipe may hold: as Go's runtime does for its splice relay, 1 MiB (the default
/// `fs.pipe-max-size`), so one pair of calls moves whatever the socket has queued. A pipe
/// whose size cannot be raised (the per-user pipe budget is spent) keeps the kernel's default
/// of 64 KiB and works the same, in smaller steps.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Most bytes asked of one `splice` from a socket into a pipe.
pub const MAX_SPLICE: usize = PIPE_SIZE as usize;

/// Free pipes a worker keeps for reuse; more are closed when given back.
const POOL_KEEP: usize = 64;

/// A non-blocking pipe: its read end and its write end.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two descriptors for `pipe2` to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `pipe2` succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: `F_SETPIPE_SZ` only resizes the pipe of a descriptor we own. Failure (the
        // per-user budget spent) leaves the default size, which works as well.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(Pipe { read, write })
    }
}

/// A worker's free pipes.
#[derive(Default)]
pub struct PipePool {
    free: RefCell<Vec<Pipe>>,
}

impl PipePool {
    /// A free pipe, or a new one.
    pub fn take(&self) -> io::Result<Pipe> {
        match self.free.borrow_mut().pop() {
            Some(p) => Ok(p),
            None => Pipe::new(),
        }
    }

    /// Gives back an empty pipe. A pipe that may still hold bytes must be dropped instead.
    pub fn give(&self, pipe: Pipe) {
        let mut free = self.free.borrow_mut();
        if free.len() < POOL_KEEP {
            free.push(pipe);
        }
    }
}

/// Switches `stream` to non-blocking mode (`O_NONBLOCK`), as `splice` needs: glommio's own
/// reads and writes pass `MSG_DONTWAIT` or go through the ring, so they are unaffected.
pub fn set_nonblocking(stream: &TcpStream) -> io::Result<()> {
    let mut on: libc::c_int = 1;
    // SAFETY: `FIONBIO` reads one `int` through the pointer, which is valid for the call; the
    // descriptor is `stream`'s, open while it is borrowed. (One system call, where
    // `fcntl(F_GETFL)` then `fcntl(F_SETFL)` would be two.)
    if unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONBIO, &mut on) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn splice(from: libc::c_int, to: libc::c_int, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (borrowed from their
    // owners by the callers); null offsets are what `splice` takes for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Moves up to `len` bytes from `from` into `pipe` without waiting: the count (0 at end of
/// stream), or `WouldBlock` when the socket has nothing queued.
pub fn splice_in(from: &TcpStream, pipe: &Pipe, len: usize) -> io::Result<usize> {
    splice(from.as_raw_fd(), pipe.write.as_raw_fd(), len)
}

/// Moves up to `len` bytes from `pipe` into `to` without waiting: the count, or `WouldBlock`
/// when the socket's send buffer is full.
pub fn splice_out(pipe: &Pipe, to: &TcpStream, len: usize) -> io::Result<usize> {
    splice(pipe.read.as_raw_fd(), to.as_raw_fd(), len)
}

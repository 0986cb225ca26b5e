//! The WebSocket transport: the upgrade (through `proto::ws::handshake`) and [`WsStream`], the
//! byte stream carried in WebSocket frames, over plain TCP or TLS.
//!
//! Reads go straight into the caller's buffer (a pooled relay buffer) and are decoded there in
//! place: `proto::ws::FrameDecoder` unmasks the payload and moves it over the frame headers.
//! Writes frame the caller's bytes as they are: one binary frame per write, its header (at most
//! 10 bytes) from a small array in the stream, so relaying allocates nothing per chunk. Header
//! and payload leave together, as one vectored send (plain TCP) or one TLS record. Pings
//! are answered and a client's close is echoed, at frame boundaries only. A client that breaks
//! the framing (an unmasked or oversize frame, garbage) gets every later read failed, so the
//! connection closes at once.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use proto::ws::frame::{
    close_frame, server_header, CLOSE_NORMAL, CONTROL_FRAME_ROOM, MAX_SERVER_HEADER, OP_BINARY,
};
use proto::ws::FrameDecoder;

use super::ClientStream;

/// Largest data frame accepted from a client. Frames are streamed, never held whole; the
/// limit only bounds what a frame header may claim. Clients write a frame per write of a few
/// KiB to a few tens of KiB.
pub const MAX_CLIENT_FRAME: u64 = 1 << 20;

/// A WebSocket connection after its upgrade, read and written as a byte stream.
pub(crate) struct WsStream {
    inner: ClientStream,
    decoder: FrameDecoder,
    /// Early data from the upgrade request, returned before anything else.
    early: Vec<u8>,
    /// Frame bytes that arrived with the request head, decoded before the socket is read.
    pending: Vec<u8>,
    /// Bytes of the data frame being written still owed.
    owed: usize,
    head: [u8; MAX_SERVER_HEADER],
    head_len: usize,
    head_sent: usize,
    /// A control frame to send at the next frame boundary (pong or close).
    control: [u8; CONTROL_FRAME_ROOM],
    control_len: usize,
    control_sent: usize,
    /// A control frame queued while another was half sent.
    next_control: Option<Control>,
    /// Our close frame was queued: no more data frames.
    close_queued: bool,
    /// The client broke the framing: every read fails from then on.
    broken: bool,
    /// The writing side is waiting for the socket. The runtime keeps one waiter per socket
    /// direction, so the reading side must not then write (it would take the waiter's place).
    writer_waiting: bool,
}

/// A control frame the server sends.
#[derive(Clone, Copy)]
enum Control {
    /// Answers the latest ping.
    Pong,
    /// Answers the client's close.
    CloseReply,
    /// Closes from our side.
    Close,
}

impl WsStream {
    /// A stream over `inner` whose first bytes are `early` (decoded early data), followed by
    /// the frames in `pending` (bytes read after the request head), then the socket's.
    pub(crate) fn new(inner: ClientStream, early: Vec<u8>, pending: Vec<u8>) -> WsStream {
        WsStream {
            inner,
            decoder: FrameDecoder::new(MAX_CLIENT_FRAME),
            early,
            pending,
            owed: 0,
            head: [0; MAX_SERVER_HEADER],
            head_len: 0,
            head_sent: 0,
            control: [0; CONTROL_FRAME_ROOM],
            control_len: 0,
            control_sent: 0,
            next_control: None,
            close_queued: false,
            broken: false,
            writer_waiting: false,
        }
    }

    pub(crate) fn inner(&self) -> &ClientStream {
        &self.inner
    }

    /// Queues a control frame, replacing one not yet started (a newer pong answers for an
    /// older ping); behind one half sent.
    fn queue_control(&mut self, control: Control) {
        if self.control_sent > 0 && self.control_sent < self.control_len {
            self.next_control = Some(control);
            return;
        }
        let out = &mut self.control;
        self.control_len = match control {
            Control::Pong => self.decoder.pong(out),
            Control::CloseReply => self.decoder.close_reply(out),
            Control::Close => close_frame(CLOSE_NORMAL, out),
        };
        self.control_sent = 0;
    }

    /// Whether the stream is between frames (nothing of a data frame owed).
    fn at_boundary(&self) -> bool {
        self.owed == 0 && self.head_sent == self.head_len
    }

    /// Sends the queued control frame, if any, when between data frames.
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.at_boundary() && self.control_sent < self.control_len {
            let n = ready!(Pin::new(&mut self.inner)
                .poll_write(cx, &self.control[self.control_sent..self.control_len]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.control_sent += n;
            if self.control_sent == self.control_len {
                if let Some(next) = self.next_control.take() {
                    self.queue_control(next);
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// From the reading side: sends a queued control frame if the writing side is not waiting
    /// (it sends it otherwise). A socket that is not ready wakes the reader to try again.
    fn nudge_control(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.writer_waiting || self.control_sent == self.control_len {
            // Nothing queued (`next_control` only waits behind a frame being sent).
            return Ok(());
        }
        match self.poll_control(cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Ok(()),
        }
    }

    /// Notes whether the writing side waits.
    fn writer<T>(&mut self, p: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.writer_waiting = p.is_pending();
        p
    }
}

impl AsyncRead for WsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.len());
            buf[..n].copy_from_slice(&this.early[..n]);
            this.early.drain(..n);
            return Poll::Ready(Ok(n));
        }
        loop {
            if this.broken {
                return Poll::Ready(Err(io::ErrorKind::InvalidData.into()));
            }
            this.nudge_control(cx)?;
            if this.decoder.is_closed() || buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let n = if this.pending.is_empty() {
                match ready!(Pin::new(&mut this.inner).poll_read(cx, buf))? {
                    0 => return Poll::Ready(Ok(0)),
                    n => n,
                }
            } else {
                let n = this.pending.len().min(buf.len());
                buf[..n].copy_from_slice(&this.pending[..n]);
                this.pending.drain(..n);
                n
            };
            let got = match this.decoder.decode(&mut buf[..n]) {
                Ok(got) => got,
                Err(e) => {
                    this.broken = true;
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                }
            };
            if got.ping {
                this.queue_control(Control::Pong);
            }
            if got.closed && !this.close_queued {
                this.queue_control(Control::CloseReply);
                this.close_queued = true;
            }
            if got.ping || got.closed {
                this.nudge_control(cx)?;
            }
            if got.data > 0 {
                return Poll::Ready(Ok(got.data));
            }
        }
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = this.write_frame(cx, buf);
        this.writer(p)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = match this.poll_control(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        };
        this.writer(p)
    }

    /// Sends a close frame (unless the client's close was already answered), then closes the
    /// transport's sending side.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued && this.at_boundary() {
            this.queue_control(Control::Close);
            this.close_queued = true;
        }
        let p = match this.poll_control(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_close(cx),
            other => other,
        };
        this.writer(p)
    }
}

impl WsStream {
    /// Writes (part of) `buf` as data: a new frame of `buf.len()` bytes at a frame boundary,
    /// else more of the frame being written.
    fn write_frame(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self;
        ready!(this.poll_control(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.at_boundary() {
            if this.close_queued {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            this.head_len = server_header(OP_BINARY, buf.len(), &mut this.head);
            this.head_sent = 0;
            this.owed = buf.len();
        }
        let take = this.owed.min(buf.len());
        while this.head_sent < this.head_len {
            // Header and payload in one write where the transport can (TLS: one record).
            let bufs = [
                io::IoSlice::new(&this.head[this.head_sent..this.head_len]),
                io::IoSlice::new(&buf[..take]),
            ];
            let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &bufs))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let of_head = n.min(this.head_len - this.head_sent);
            this.head_sent += of_head;
            if n > of_head {
                this.owed -= n - of_head;
                return Poll::Ready(Ok(n - of_head));
            }
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..take]))?;
        this.owed -= n;
        Poll::Ready(Ok(n))
    }
}

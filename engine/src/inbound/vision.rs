//! XTLS Vision (`xtls-rprx-vision`) for VLESS directly over TLS 1.3: the client stream as a
//! reader and a writer that pad the first packets and switch to direct copy, over the codec
//! in `proto::vless::vision` (wire diagram there).
//!
//! ```text
//!  client ─TLS records: padded blocks──► VisionRead ─payload─► target     (uplink)
//!         ─raw inner TLS (after Direct)─►
//!  client ◄─TLS records: header + padded blocks── VisionWrite ◄─ target   (downlink)
//!         ◄─raw inner TLS (after our Direct)───
//! ```
//!
//! Both halves share the TLS session (each borrows it only inside a poll) and the filter
//! that decides whether the proxied traffic is TLS 1.3. Each direction switches on its own:
//! the uplink when the client's `Direct` block ends (what the TLS layer has buffered behind it
//! is raw already), the downlink when the target's first TLS 1.3 application data goes out in
//! our `Direct` block; every later byte goes to the TCP socket as is.

use std::cell::{Cell, RefCell, RefMut};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use proto::vless::vision::{
    block_len, padding_len, plan_write, write_block, Command, TlsFilter, Unpadder, WritePlan,
    MAX_CONTENT, UUID_LEN,
};
use proto::vless::RESPONSE_HEADER;
use rand::Rng;

use super::relay::{
    splice_pipe, splice_ready, write_all, Meter, SharedRead, SharedSocket, Tally, GATHER_ROOM,
    SPLICE_AFTER,
};
use crate::buffer::RelayBuffer;
use crate::runtime::splice::PipePool;
use crate::runtime::{self, TcpStream};
use crate::transport::tls::TlsStream;

/// Blocks one write seals at most (well within a relay buffer of records).
const MAX_BLOCKS_PER_WRITE: usize = 8;

struct Shared {
    tls: RefCell<Box<TlsStream>>,
    filter: RefCell<TlsFilter>,
}

/// The client's TCP socket, for the direct part: only borrowed once each direction that uses
/// it is raw (nothing sealed pending, nothing buffered unread).
impl SharedSocket for Shared {
    fn socket(&self) -> RefMut<'_, TcpStream> {
        RefMut::map(self.tls.borrow_mut(), |tls| tls.tcp_mut())
    }
}

/// Splits a TLS client stream into Vision's reader and writer for the user `uuid` (the id
/// the client sent).
pub(crate) fn split(tls: Box<TlsStream>, uuid: [u8; UUID_LEN]) -> (VisionRead, VisionWrite) {
    let shared = Rc::new(Shared {
        tls: RefCell::new(tls),
        filter: RefCell::new(TlsFilter::default()),
    });
    let read = VisionRead {
        shared: Rc::clone(&shared),
        unpadder: Unpadder::new(uuid),
        mode: ReadMode::Padded,
    };
    let write = VisionWrite {
        shared,
        uuid,
        mode: WriteMode::Padded,
        header_owed: true,
    };
    (read, write)
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadMode {
    /// Blocks, through TLS.
    Padded,
    /// The plain stream, through TLS.
    Plain,
    /// Direct: what the TLS layer holds, then the socket.
    Unread,
    /// Direct: the socket.
    Raw,
}

/// The uplink: the client's payload, padding removed.
pub(crate) struct VisionRead {
    shared: Rc<Shared>,
    unpadder: Unpadder,
    mode: ReadMode,
}

impl VisionRead {
    /// Removes the padding from `buf`, payload read from TLS, moving the rest to its front;
    /// returns its length. For the payload that came with the request header, then every
    /// read until the padding ends.
    pub(crate) fn unpad(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let unpadded = self.unpadder.unpad(buf).map_err(invalid)?;
        let payload = &buf[..unpadded.len];
        if !payload.is_empty() {
            self.shared.filter.borrow_mut().observe(payload);
        }
        match unpadded.ended {
            Some(Command::Direct) => {
                tracing::trace!("vision: uplink direct");
                self.mode = ReadMode::Unread;
            }
            Some(_) => self.mode = ReadMode::Plain,
            None => {}
        }
        Ok(unpadded.len)
    }
}

impl AsyncRead for VisionRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let shared = Rc::clone(&this.shared);
            let mut tls = shared.tls.borrow_mut();
            match this.mode {
                ReadMode::Raw => return tls.poll_read_raw(cx, buf),
                ReadMode::Unread => match tls.take_unread(buf) {
                    0 => this.mode = ReadMode::Raw,
                    n => return Poll::Ready(Ok(n)),
                },
                ReadMode::Plain => {
                    let n = ready!(Pin::new(&mut **tls).poll_read(cx, buf))?;
                    if n > 0 {
                        shared.filter.borrow_mut().observe(&buf[..n]);
                    }
                    return Poll::Ready(Ok(n));
                }
                ReadMode::Padded => {
                    let n = ready!(Pin::new(&mut **tls).poll_read(cx, buf))?;
                    if n == 0 {
                        return Poll::Ready(Ok(0));
                    }
                    drop(tls);
                    let len = this.unpad(&mut buf[..n])?;
                    if len > 0 {
                        return Poll::Ready(Ok(len));
                    }
                    // Only padding: read on (or take what follows a Direct block).
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteMode {
    Padded,
    Plain,
    Raw,
}

/// The downlink: the response header, then the target's bytes, padded at first.
pub(crate) struct VisionWrite {
    shared: Rc<Shared>,
    uuid: [u8; UUID_LEN],
    mode: WriteMode,
    /// Nothing went out yet: the first block carries the response header and the UUID.
    header_owed: bool,
}

impl VisionWrite {
    /// Seals `buf` (one read of the target) as padded blocks, one record each, the response
    /// header in front of the first. Returns how much of `buf` went.
    fn poll_write_padded(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let shared = Rc::clone(&self.shared);
        let mut tls = shared.tls.borrow_mut();
        ready!(tls.poll_send_pending(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let plan = {
            let mut filter = shared.filter.borrow_mut();
            filter.observe(buf);
            plan_write(&filter, buf)
        };
        let batch = buf.len().min(MAX_BLOCKS_PER_WRITE * MAX_CONTENT);
        let mut rng = rand::thread_rng();
        let mut taken = 0;
        while taken < batch {
            let content = &buf[taken..batch.min(taken + MAX_CONTENT)];
            let last = taken + content.len() == batch;
            let (command, long) = match plan {
                WritePlan::Continue { long } => (Command::Continue, long),
                WritePlan::Finish { last: command } if last => (command, true),
                WritePlan::Finish { .. } => (Command::Continue, true),
                WritePlan::EndNow { long } => (Command::End, long),
            };
            let padding = padding_len(content.len(), long, rng.gen());
            let header = if self.header_owed {
                RESPONSE_HEADER.len()
            } else {
                0
            };
            let uuid = self.header_owed.then_some(&self.uuid);
            let len = header + block_len(uuid.is_some(), content.len(), padding);
            let sealed = tls.seal_record_with(len, |out| {
                out[..header].copy_from_slice(&RESPONSE_HEADER[..header]);
                write_block(&mut out[header..], uuid, command, content, padding);
            })?;
            if !sealed {
                break;
            }
            self.header_owed = false;
            taken += content.len();
            match command {
                Command::Continue => {}
                Command::End => {
                    self.mode = WriteMode::Plain;
                    break;
                }
                Command::Direct => {
                    tracing::trace!("vision: downlink direct");
                    self.mode = WriteMode::Raw;
                    break;
                }
            }
        }
        // Start sending; the rest goes on the next call (or flush).
        let _ = tls.poll_send_pending(cx);
        if taken == 0 {
            return Poll::Ready(Err(invalid("no room for a Vision block")));
        }
        Poll::Ready(Ok(taken))
    }
}

impl AsyncWrite for VisionWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.mode {
            WriteMode::Padded => this.poll_write_padded(cx, buf),
            WriteMode::Plain => Pin::new(&mut **this.shared.tls.borrow_mut()).poll_write(cx, buf),
            WriteMode::Raw => this.shared.tls.borrow_mut().poll_write_raw(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut **self.shared.tls.borrow_mut()).poll_flush(cx)
    }

    /// Ends the downlink: the response header first if the target sent nothing (as plain
    /// VLESS does), then close_notify, or after direct copy a plain TCP half-close.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut tls = this.shared.tls.borrow_mut();
        if this.header_owed {
            ready!(tls.poll_send_pending(cx))?;
            let header = RESPONSE_HEADER;
            if tls.seal_record_with(header.len(), |out| out.copy_from_slice(&header))? {
                this.header_owed = false;
            }
        }
        match this.mode {
            WriteMode::Raw => tls.poll_close_raw(cx),
            _ => Pin::new(&mut **tls).poll_close(cx),
        }
    }
}

/// Relays a Vision TCP connection to `dest`: both directions through the Vision reader and
/// writer; a direction that went direct moves to `splice(2)` once a read brings
/// [`SPLICE_AFTER`] bytes, as plain TCP relays do (TCP on both sides by then).
pub(crate) async fn relay_tcp(
    mut reader: VisionRead,
    mut writer: VisionWrite,
    dest: TcpStream,
    (up, down): (RelayBuffer, RelayBuffer),
    pipes: &PipePool,
    activity: &Cell<Instant>,
    meter: &Meter<'_>,
) {
    let dest = RefCell::new(dest);
    let dest = &dest;
    let uplink = async move {
        let (mut up, tally) = (up, Tally::Up(meter));
        loop {
            let mut n = match reader.read(&mut up).await {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            // Records that arrived together go out in one write.
            while n + GATHER_ROOM <= up.len() {
                match futures_lite::future::poll_once(reader.read(&mut up[n..])).await {
                    Some(Ok(more)) if more > 0 => n += more,
                    _ => break,
                }
            }
            activity.set(Instant::now());
            if !write_all(dest, &up[..n]).await {
                break;
            }
            tally.count(n).await;
            if reader.mode == ReadMode::Raw
                && n >= SPLICE_AFTER
                && splice_ready(&*reader.shared, dest)
            {
                drop(up);
                splice_pipe(&*reader.shared, dest, pipes, activity, tally).await;
                break;
            }
        }
        let _ = runtime::shutdown_write(&dest.borrow());
    };
    let downlink = async move {
        let (mut down, tally) = (down, Tally::Down(meter));
        loop {
            let n = match SharedRead(dest).read(&mut down).await {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            activity.set(Instant::now());
            if writer.write_all(&down[..n]).await.is_err() || writer.flush().await.is_err() {
                break;
            }
            tally.count(n).await;
            // Raw, every sealed record is out (a raw write sends them first).
            if writer.mode == WriteMode::Raw
                && n >= SPLICE_AFTER
                && splice_ready(dest, &*writer.shared)
            {
                drop(down);
                splice_pipe(dest, &*writer.shared, pipes, activity, tally).await;
                break;
            }
        }
        let _ = writer.close().await;
    };
    futures_lite::future::zip(uplink, downlink).await;
}

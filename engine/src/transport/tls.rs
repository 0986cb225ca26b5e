//! A TLS server connection: rustls runs the handshake (its unbuffered API, over buffers from the
//! worker's pool), then hands over the traffic keys (its kernel-connection API, the one kTLS
//! uses) and our record layer ([`proto::tls`]) seals and opens records in place.
//!
//! rustls 0.23 copies each record into a fresh `Vec` on both of its own paths. Here a record is
//! read into a pooled buffer, opened where it lies and read from there; a write is sealed in a
//! pooled buffer and sent from it. Nothing is allocated per record, and an idle connection holds
//! no buffer (see [`TlsStream`]).
//!
//! rustls keeps the key schedule: a TLS 1.3 `KeyUpdate` from the client gets new receive keys
//! from it (and, when the client asks, we send our own and take new send keys), and our send
//! keys are updated before the suite's confidentiality limit. TLS 1.2 has no key update: a
//! connection that reaches the limit is closed, as rustls would close it.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use proto::tls::{self as record, Protection, Suite, Version};
use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, InsufficientSizeError};
use rustls::{ConnectionTrafficSecrets, ProtocolVersion, SupportedCipherSuite};

use crate::buffer::{BufferPool, RelayBuffer};
use crate::runtime::TcpStream;

/// Handshake message type of a TLS 1.3 `KeyUpdate`.
const KEY_UPDATE: u8 = 24;
/// Bytes of a sealed TLS 1.3 `KeyUpdate` record: header, the 5-byte message, type, tag.
const KEY_UPDATE_RECORD: usize = record::HEADER_LEN + 5 + 1 + record::TAG_LEN;
/// Alert level: warning.
const WARNING: u8 = 1;
/// Records without data a client may send in a row.
const MAX_USELESS_RECORDS: u8 = 32;
/// Alert level: fatal.
const FATAL: u8 = 2;
/// Alert description: user_canceled.
const USER_CANCELED: u8 = 90;
/// Alert descriptions sent on errors (RFC 8446 section 6.2).
const UNEXPECTED_MESSAGE: u8 = 10;
const BAD_RECORD_MAC: u8 = 20;
const RECORD_OVERFLOW: u8 = 22;
const DECODE_ERROR: u8 = 50;
const INTERNAL_ERROR: u8 = 80;

/// The alert that answers a record error.
fn alert_for(e: &record::RecordError) -> u8 {
    use record::RecordError as E;
    match e {
        E::Decrypt => BAD_RECORD_MAC,
        E::Oversize(..) | E::PlaintextOversize(..) => RECORD_OVERFLOW,
        E::Short(..) => DECODE_ERROR,
        E::BadHeader(..) | E::NoContentType | E::Unprotected(..) => UNEXPECTED_MESSAGE,
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Runs the server side of a handshake on `stream` with `config` (which must allow secret
/// extraction), reading with buffers from `pool`.
pub(crate) async fn accept(
    config: &Arc<rustls::ServerConfig>,
    mut stream: TcpStream,
    pool: &Rc<BufferPool>,
) -> io::Result<TlsStream> {
    let mut conn = UnbufferedServerConnection::new(Arc::clone(config)).map_err(invalid)?;
    let mut incoming = pool.get();
    // rustls sees `incoming[start..fed]`, whole records given one at a time and none once the
    // handshake is over: what follows the client's Finished (data, a KeyUpdate, an alert) is
    // the record layer's. rustls would act on a KeyUpdate itself and queue its answer where
    // the handover does not look, and the keys handed over would not match the client's.
    let (mut start, mut fed, mut end) = (0, 0, 0);
    // Handshake records to send.
    let mut outgoing = Vec::new();
    loop {
        let until = if conn.is_handshaking() { fed } else { start };
        let status = conn.process_tls_records(&mut incoming[start..until]);
        let discard = status.discard;
        let mut read_more = false;
        match status.state {
            Err(e) => {
                send_alerts(&mut conn, &mut stream).await;
                return Err(invalid(e));
            }
            Ok(ConnectionState::EncodeTlsData(mut data)) => encode(&mut data, &mut outgoing)?,
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                stream.write_all(&outgoing).await?;
                outgoing.clear();
                transmit.done();
            }
            Ok(ConnectionState::BlockedHandshake) => read_more = true,
            // rustls may send (0.5-RTT) before the client's Finished: keep reading until the
            // handshake is over, so that the keys are final.
            Ok(ConnectionState::WriteTraffic(_)) => read_more = true,
            // Data (`ReadTraffic`) cannot come here: early data is off, and nothing after the
            // client's Finished reaches rustls.
            Ok(other) => return Err(invalid(format!("TLS handshake ended in {other:?}"))),
        }
        start += discard;
        if start == end {
            (start, fed, end) = (0, 0, 0);
        }
        if !conn.is_handshaking() && outgoing.is_empty() && read_more {
            break;
        }
        if read_more {
            // The next whole record, if one is here; otherwise more bytes.
            match record::record_len(&incoming[fed..end], Version::Tls12) {
                Ok(Some(len)) if fed + len <= end => {
                    fed += len;
                    continue;
                }
                // Not a record: rustls says why.
                Err(_) => {
                    fed = end;
                    continue;
                }
                _ => {}
            }
            if end == incoming.len() {
                incoming.copy_within(start..end, 0);
                (fed, end) = (fed - start, end - start);
                start = 0;
                if end == incoming.len() {
                    return Err(invalid("TLS handshake message larger than a buffer"));
                }
            }
            match stream.read(&mut incoming[end..]).await? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => end += n,
            }
        }
    }
    let (secrets, keys) = conn.dangerous_into_kernel_connection().map_err(invalid)?;
    let version = match keys.protocol_version() {
        ProtocolVersion::TLSv1_3 => Version::Tls13,
        _ => Version::Tls12,
    };
    let (tx_seq, tx) = secrets.tx;
    let (rx_seq, rx) = secrets.rx;
    let send_limit = match keys.negotiated_cipher_suite() {
        SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
        SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
    };
    let incoming = (start < end).then_some(incoming);
    Ok(TlsStream {
        stream,
        pool: Rc::clone(pool),
        rx: protection(version, rx, rx_seq)?,
        tx: protection(version, tx, tx_seq)?,
        keys,
        // Re-key (or close) well before the limit, as rustls does.
        send_limit: send_limit.saturating_sub(send_limit / 16),
        incoming,
        start,
        end,
        plain: 0..0,
        useless: 0,
        outgoing: None,
        out_start: 0,
        out_end: 0,
        key_update_owed: false,
        read_done: false,
        close_notify_sent: false,
    })
}

/// Encodes rustls' next handshake record behind `out`.
fn encode(
    data: &mut rustls::unbuffered::EncodeTlsData<'_, ServerConnectionData>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let at = out.len();
    loop {
        match data.encode(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                out.resize(at + required_size, 0);
            }
            Err(e) => return Err(invalid(e)),
        }
    }
}

/// After a failed handshake: sends the alert rustls queued (a client sees why), best effort.
async fn send_alerts(conn: &mut UnbufferedServerConnection, stream: &mut TcpStream) {
    let mut out = Vec::new();
    for _ in 0..4 {
        match conn.process_tls_records(&mut []).state {
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                if encode(&mut data, &mut out).is_err() {
                    return;
                }
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                let _ = stream.write_all(&out).await;
                transmit.done();
                return;
            }
            _ => return,
        }
    }
}

fn protection(
    version: Version,
    secrets: ConnectionTrafficSecrets,
    seq: u64,
) -> io::Result<Protection> {
    let (suite, key, iv) = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Suite::Aes128Gcm, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Suite::Aes256Gcm, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            (Suite::Chacha20Poly1305, key, iv)
        }
        _ => return Err(invalid("a cipher suite the record layer does not know")),
    };
    let iv: [u8; 12] = iv
        .as_ref()
        .try_into()
        .map_err(|_| invalid("a TLS IV that is not 12 bytes"))?;
    Protection::new(version, suite, key.as_ref(), iv, seq).map_err(invalid)
}

/// A TLS connection after its handshake, read and written like the socket under it.
///
/// Reading: records arrive in `incoming[start..end]`, a buffer from the pool; each is opened
/// in place and its plaintext (`incoming[plain]`) handed out from there. Writing: plaintext is
/// copied once into record slots of `outgoing` (another pool buffer), sealed there and sent
/// from there. Either buffer goes back to the pool as soon as it holds nothing, so a
/// connection that waits holds none.
pub(crate) struct TlsStream {
    stream: TcpStream,
    pool: Rc<BufferPool>,
    rx: Protection,
    tx: Protection,
    /// rustls' key schedule, for TLS 1.3 key updates.
    keys: KernelConnection<ServerConnectionData>,
    /// Records sent with one key before it must change.
    send_limit: u64,
    incoming: Option<RelayBuffer>,
    start: usize,
    end: usize,
    plain: Range<usize>,
    /// Records in a row that carried no data (empty, a key update, an ignored alert).
    useless: u8,
    outgoing: Option<RelayBuffer>,
    out_start: usize,
    out_end: usize,
    /// The client asked for a key update: ours goes out before our next record.
    key_update_owed: bool,
    /// close_notify arrived: reads return end of stream.
    read_done: bool,
    close_notify_sent: bool,
}

impl TlsStream {
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.stream
    }

    /// The TCP connection itself, for a caller that moves raw bytes on it (XTLS Vision's
    /// direct copy, once nothing sealed is pending).
    pub(crate) fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// True when the session runs TLS 1.3.
    pub(crate) fn is_tls13(&self) -> bool {
        self.rx.version() == Version::Tls13
    }

    /// For a peer that stops using TLS for what it sends next (XTLS Vision's direct copy):
    /// moves to `out` what was received but not read, first the rest of the record being
    /// read (plaintext), then the bytes behind it exactly as they arrived (not opened).
    /// Returns how many; 0 once nothing is left. Reading with [`AsyncRead`] after this is
    /// an error of the caller's.
    pub(crate) fn take_unread(&mut self, out: &mut [u8]) -> usize {
        let Some(incoming) = self.incoming.as_ref() else {
            return 0;
        };
        let from = if self.plain.is_empty() {
            let raw = self.start..self.end;
            let n = raw.len().min(out.len());
            self.start += n;
            raw.start..raw.start + n
        } else {
            let n = self.plain.len().min(out.len());
            self.plain.start += n;
            self.plain.start - n..self.plain.start
        };
        out[..from.len()].copy_from_slice(&incoming[from.clone()]);
        if self.plain.is_empty() && self.start == self.end {
            self.incoming = None;
            (self.start, self.end) = (0, 0);
        }
        from.len()
    }

    /// Reads from the TCP connection itself, outside TLS (after [`TlsStream::take_unread`]
    /// returned 0).
    pub(crate) fn poll_read_raw(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }

    /// Writes to the TCP connection itself, outside TLS, once every sealed record is out.
    pub(crate) fn poll_write_raw(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_send_pending(cx))?;
        super::poll_send_vectored(&mut self.stream, cx, &[io::IoSlice::new(buf)])
    }

    /// Closes the TCP connection's sending side without a close_notify (the peer reads raw
    /// bytes there), once every sealed record is out.
    pub(crate) fn poll_close_raw(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_pending(cx))?;
        self.close_notify_sent = true;
        Pin::new(&mut self.stream).poll_close(cx)
    }

    /// Seals one application data record of `len` plaintext bytes, which `fill` writes in
    /// place, behind what is pending. `Ok(false)`, sealing nothing, when there is no room
    /// for it; sending is the caller's ([`TlsStream::poll_send_pending`]).
    pub(crate) fn seal_record_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> io::Result<bool> {
        if self.close_notify_sent {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        match self.next_record()? {
            Some(capacity) if len <= capacity => {
                self.seal_next(len, fill);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Makes room for one more application data record behind what is pending, a key
    /// update that is owed or due going first: its plaintext capacity (at most 16 KiB), or
    /// `None` when the outgoing buffer cannot hold another record.
    fn next_record(&mut self) -> io::Result<Option<usize>> {
        let (prefix, suffix) = (self.tx.prefix_len(), self.tx.suffix_len());
        let room = self
            .outgoing
            .as_ref()
            .map_or(usize::MAX, |o| o.len() - self.out_end);
        let due = self.key_update_owed || self.tx.seq() >= self.send_limit;
        let key_update = if due { KEY_UPDATE_RECORD } else { 0 };
        if room <= key_update + prefix + suffix {
            return Ok(None);
        }
        if due {
            self.rekey()?;
        }
        let out = self.outgoing.get_or_insert_with(|| self.pool.get());
        let room = out.len() - self.out_end;
        Ok(Some(record::MAX_PLAINTEXT.min(room - prefix - suffix)))
    }

    /// Seals the record [`TlsStream::next_record`] made room for: `fill` writes its `len`
    /// plaintext bytes (at most that capacity) in place.
    fn seal_next(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) {
        let out = self.outgoing.as_mut().expect("made by next_record");
        let data = self.out_end + self.tx.prefix_len();
        fill(&mut out[data..data + len]);
        self.out_end +=
            self.tx
                .seal_in_place(&mut out[self.out_end..], len, record::APPLICATION_DATA);
    }

    /// Opens the next whole record in `incoming`, if there is one: `Ok(true)` when it was
    /// opened (its plaintext, if any, is now `plain`).
    fn open_next(&mut self) -> io::Result<bool> {
        let Some(incoming) = self.incoming.as_mut() else {
            return Ok(false);
        };
        let buffered = &mut incoming[self.start..self.end];
        let len = match record::record_len(buffered, self.rx.version()) {
            Ok(Some(len)) if len <= buffered.len() => len,
            Ok(_) => return Ok(false),
            Err(e) => return Err(self.fatal(alert_for(&e), e)),
        };
        let opened = match self.rx.open_in_place(&mut buffered[..len]) {
            Ok(opened) => opened,
            Err(e) => return Err(self.fatal(alert_for(&e), e)),
        };
        let at = self.start;
        self.start += len;
        let payload = at + opened.payload.start..at + opened.payload.end;
        match opened.content_type {
            record::APPLICATION_DATA if !payload.is_empty() => {
                self.useless = 0;
                self.plain = payload;
            }
            // Empty data: allowed, but a run of them is a peer wasting our time.
            record::APPLICATION_DATA => self.useless()?,
            record::ALERT => match incoming[payload] {
                // close_notify: the client sends no more (anything behind it is ignored).
                [_, 0] => {
                    self.read_done = true;
                    self.start = self.end;
                }
                // user_canceled (a close_notify follows), and TLS 1.2's warnings, as rustls
                // reads them: nothing to act on.
                [_, USER_CANCELED] => self.useless()?,
                [WARNING, _] if self.rx.version() == Version::Tls12 => self.useless()?,
                [_, description] => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("TLS alert {description} from the client"),
                    ))
                }
                _ => return Err(self.fatal(DECODE_ERROR, "malformed TLS alert")),
            },
            record::HANDSHAKE if self.rx.version() == Version::Tls13 => {
                self.key_update(payload)?;
                self.useless()?;
            }
            other => {
                let e = format!("unexpected TLS record of type {other}");
                return Err(self.fatal(UNEXPECTED_MESSAGE, e));
            }
        }
        Ok(true)
    }

    /// Counts a record that carried no data; too many in a row end the connection (rustls
    /// and Go's TLS stop such peers too).
    fn useless(&mut self) -> io::Result<()> {
        self.useless += 1;
        if self.useless > MAX_USELESS_RECORDS {
            return Err(self.fatal(UNEXPECTED_MESSAGE, "too many TLS records without data"));
        }
        Ok(())
    }

    /// Ends the connection for a protocol error: a fatal alert with `description` goes out
    /// (RFC 8446 section 6.2; no close_notify after it, and no more data), as rustls would
    /// send; the error to return.
    fn fatal(&mut self, description: u8, e: impl std::fmt::Display) -> io::Error {
        if !self.close_notify_sent {
            self.close_notify_sent = true;
            // Behind what is pending, if there is room (a close without it otherwise).
            if self.seal_message(record::ALERT, &[FATAL, description]) {
                // Best effort now; whatever the socket does not take goes out on close.
                let out = self.outgoing.as_ref().expect("holds the alert");
                let slice = [io::IoSlice::new(&out[self.out_start..self.out_end])];
                if let Ok(n) = crate::runtime::try_send_vectored(&self.stream, &slice) {
                    self.out_start += n;
                }
            }
        }
        invalid(e)
    }

    /// Handles post-handshake messages from a TLS 1.3 client: only `KeyUpdate` is valid, and
    /// it must end the record (RFC 8446 section 5.1).
    fn key_update(&mut self, payload: Range<usize>) -> io::Result<()> {
        let incoming = self.incoming.as_ref().expect("holds the record");
        match incoming[payload] {
            [KEY_UPDATE, 0, 0, 1, request @ (0 | 1)] => {
                let (seq, secrets) = self
                    .keys
                    .update_rx_secret()
                    .map_err(|e| self.fatal(INTERNAL_ERROR, e))?;
                self.rx = protection(Version::Tls13, secrets, seq)?;
                self.key_update_owed |= request == 1;
                Ok(())
            }
            _ => Err(self.fatal(
                UNEXPECTED_MESSAGE,
                "unexpected TLS 1.3 post-handshake message",
            )),
        }
    }

    /// Sends what `outgoing` holds; the buffer goes back to the pool once it is all out.
    pub(crate) fn poll_send_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_start < self.out_end {
            let out = self.outgoing.as_ref().expect("holds the pending bytes");
            let slice = [io::IoSlice::new(&out[self.out_start..self.out_end])];
            match ready!(super::poll_send_vectored(&mut self.stream, cx, &slice)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.out_start += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.outgoing = None;
        (self.out_start, self.out_end) = (0, 0);
        Poll::Ready(Ok(()))
    }

    /// Seals a record of `content_type` from `data` behind the pending bytes in `outgoing`.
    /// `false`, sealing nothing, when `outgoing` has no room for it behind what is pending.
    fn seal_message(&mut self, content_type: u8, data: &[u8]) -> bool {
        let out = self.outgoing.get_or_insert_with(|| self.pool.get());
        let at = self.out_end + self.tx.prefix_len();
        if at + data.len() + self.tx.suffix_len() > out.len() {
            return false;
        }
        out[at..at + data.len()].copy_from_slice(data);
        self.out_end += self
            .tx
            .seal_in_place(&mut out[self.out_end..], data.len(), content_type);
        true
    }

    /// Our key update, owed or due, in front of the next record (room for
    /// [`KEY_UPDATE_RECORD`] bytes is the caller's to check). `Err` when TLS 1.2 keys are worn
    /// out (the connection must close).
    fn rekey(&mut self) -> io::Result<()> {
        if self.tx.version() != Version::Tls13 {
            return Err(invalid("TLS 1.2 keys reached their confidentiality limit"));
        }
        // KeyUpdate(update_not_requested) under the old keys, then the new ones.
        if !self.seal_message(record::HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0]) {
            return Err(invalid("no room for a key update"));
        }
        let (seq, secrets) = self.keys.update_tx_secret().map_err(invalid)?;
        self.tx = protection(Version::Tls13, secrets, seq)?;
        self.key_update_owed = false;
        Ok(())
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let incoming = this.incoming.as_ref().expect("holds the plaintext");
                let n = buf.len().min(this.plain.len());
                buf[..n].copy_from_slice(&incoming[this.plain.start..this.plain.start + n]);
                this.plain.start += n;
                return Poll::Ready(Ok(n));
            }
            if this.read_done {
                return Poll::Ready(Ok(0));
            }
            if this.open_next()? {
                continue;
            }
            // No whole record: read more, behind what is buffered.
            let incoming = this.incoming.get_or_insert_with(|| this.pool.get());
            if this.start == this.end {
                (this.start, this.end) = (0, 0);
            } else if incoming.len() - this.start
                < record::HEADER_LEN + record::MAX_PLAINTEXT + 2048
            {
                incoming.copy_within(this.start..this.end, 0);
                (this.start, this.end) = (0, this.end - this.start);
            }
            match Pin::new(&mut this.stream).poll_read(cx, &mut incoming[this.end..]) {
                Poll::Pending => {
                    if this.start == this.end {
                        this.incoming = None;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => {
                    if this.start != this.end {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                    this.incoming = None;
                    this.read_done = true;
                }
                Poll::Ready(Ok(n)) => this.end += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    /// Seals as much of `bufs` as one pool buffer holds, in records of up to 16 KiB (several
    /// small buffers share a record), and sends it; bytes the socket did not take yet go out
    /// before the next write (or on flush).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_send_pending(cx))?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if this.close_notify_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let (mut part, mut offset, mut taken) = (0, 0, 0);
        while taken < total {
            let Some(capacity) = this.next_record()? else {
                break;
            };
            let len = capacity.min(total - taken);
            this.seal_next(len, |data| {
                let mut at = 0;
                while at < len {
                    let src = &bufs[part][offset..];
                    let n = src.len().min(len - at);
                    data[at..at + n].copy_from_slice(&src[..n]);
                    (at, offset) = (at + n, offset + n);
                    if offset == bufs[part].len() {
                        (part, offset) = (part + 1, 0);
                    }
                }
            });
            taken += len;
        }
        // Start sending now; what the socket does not take goes on the next call, and so does
        // an error (these bytes are taken: sealed, their sequence numbers spent).
        let _ = this.poll_send_pending(cx);
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_pending(cx))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    /// Sends close_notify, then closes the socket's sending side.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_pending(cx))?;
        if !this.close_notify_sent {
            this.close_notify_sent = true;
            // close_notify (0).
            // Nothing is pending here: the record fits.
            let _ = this.seal_message(record::ALERT, &[WARNING, 0]);
            ready!(this.poll_send_pending(cx))?;
        }
        Pin::new(&mut this.stream).poll_close(cx)
    }
}

//! Hysteria2 inbound: a QUIC server per worker on quinn-proto, driven by hand over the
//! worker's `SO_REUSEPORT` UDP socket, with the protocol above QUIC from `proto::hysteria2`.
//!
//! ```text
//!  UDP socket ──► [Salamander off] ──► Endpoint::handle ──► Conn inbox ──┐
//!  (one per worker)                      new connection ──► Conn driver ◄┘ (one task each)
//!                                                               │
//!      Connection::poll_transmit ◄─ timers, stream I/O, datagrams┘
//!            │
//!            └──► [Salamander on] ──► UDP socket
//!
//!  per connection:  bidi stream: HTTP/3 request  ─► auth (233) | masquerade
//!                   bidi stream: 0x401 request   ─► TCP relay       (stream.rs)
//!                   datagrams:   UDP messages    ─► UDP sessions    (udp.rs)
//! ```
//!
//! Everything here is per worker: the endpoint, its connections and their streams are plain
//! `Rc`/`RefCell` state of one executor. A connection lives on the worker whose socket
//! received its first packet (see "Hysteria2" in docs/ARCHITECTURE.md for what that means
//! for clients that change address).
//!
//! quinn-proto is sans-IO: the endpoint turns received packets into events for its
//! connections, and each connection, fed events, timeouts and application reads and writes,
//! yields packets to send. One driver task per connection ([`conn::Conn::drive`]) does that
//! loop; stream and session tasks read and write through the connection and wake the driver,
//! which wakes them back when quinn reports their stream readable or writable.

mod brutal;
mod conn;
mod site;
mod stream;
mod udp;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::BytesMut;
use proto::hysteria2::http3;
use proto::hysteria2::salamander::{Salamander, SALT_LEN};
use proto::hysteria2::{Hysteria2Users, ASSUMED_MAX_DATAGRAM};
use quinn_proto::crypto::rustls::QuicServerConfig;
use quinn_proto::{
    ConnectionHandle, DatagramEvent, EndpointConfig, MtuDiscoveryConfig, ServerConfig, Transmit,
    TransportConfig,
};

use super::{InboundKind, InboundShared, WorkerCtx};
use crate::config::{ConfigError, Hysteria2Config, MasqueradeConfig, ObfsConfig, TlsConfig};
use crate::quic::AssumedDatagramLimit;
use crate::runtime::{self, UdpSocket};
use conn::Conn;

/// Room for one receive: the largest UDP payload, or as many datagrams as the kernel
/// coalesces into one (64 KiB at most).
const RECV_BUFFER: usize = 64 * 1024;
/// Datagrams handled before the connections' drivers get to run.
const RECV_BATCH: usize = 64;
/// How long a QUIC connection may stay silent (the reference server's default).
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Flow-control windows: per stream and per connection (the reference server's defaults).
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 20 << 20;
/// Concurrent TCP streams a client may open.
const MAX_BIDI_STREAMS: u32 = 1024;
/// Concurrent unidirectional streams: HTTP/3's control and QPACK streams.
const MAX_UNI_STREAMS: u32 = 16;

/// Shared (read-mostly) state of one Hysteria2 inbound.
pub(crate) struct Inbound {
    /// Users by password, swapped whole when users change.
    pub(crate) keys: ArcSwap<Hysteria2Users>,
    /// The server config every connection starts from (each gets its own congestion
    /// controller factory, see [`Inbound::server_config`]).
    server: Arc<ServerConfig>,
    obfs: Option<Salamander>,
    masquerade: Masquerade,
    /// The most the server sends to one client, bytes per second (0: no cap).
    max_send: u64,
    /// What the authentication answer declares as the server's receive rate.
    receive: http3::ServerRx,
}

/// Bytes per second in `mbps` megabits per second.
fn bytes_per_sec(mbps: u32) -> u64 {
    u64::from(mbps) * 125_000
}

/// The largest UDP payload we send: quinn's own default bound for path MTU discovery, which
/// fits Ethernet's 1500-byte MTU under IPv6 and IPv4 headers.
const MAX_UDP_PAYLOAD: u16 = 1452;

/// The largest QUIC packet quinn may build: [`MAX_UDP_PAYLOAD`], less Salamander's salt when
/// every packet carries one (`obfuscated`). quinn's other packet sizes (`initial_mtu`,
/// `min_mtu`) stay at QUIC's minimum of 1200, which the salt may exceed: every path must carry
/// 1208 bytes, as for the reference server.
fn max_quic_packet(obfuscated: bool) -> u16 {
    if obfuscated {
        MAX_UDP_PAYLOAD - SALT_LEN as u16
    } else {
        MAX_UDP_PAYLOAD
    }
}

/// The QUIC transport settings of every connection, with `rate` bound to its controller;
/// packets sized for Salamander's salt when `obfuscated`.
fn transport(rate: brutal::SendRate, obfuscated: bool) -> TransportConfig {
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(max_quic_packet(obfuscated));
    let mut transport = TransportConfig::default();
    transport
        .mtu_discovery_config(Some(mtu))
        .max_concurrent_bidi_streams(MAX_BIDI_STREAMS.into())
        .max_concurrent_uni_streams(MAX_UNI_STREAMS.into())
        .stream_receive_window(STREAM_WINDOW.into())
        .receive_window(CONNECTION_WINDOW.into())
        .send_window(u64::from(CONNECTION_WINDOW))
        .max_idle_timeout(Some(MAX_IDLE.try_into().expect("30 s fits a varint")))
        .datagram_receive_buffer_size(Some(1 << 20))
        .datagram_send_buffer_size(1 << 20)
        .congestion_controller_factory(Arc::new(brutal::Factory { rate }));
    transport
}

fn invalid(field: String, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.to_string(),
    }
}

impl Inbound {
    /// Builds the QUIC server from the inbound's `tls` (path `at`) and settings.
    pub(crate) fn new(
        c: &Hysteria2Config,
        tls: &TlsConfig,
        at: &str,
    ) -> Result<Inbound, ConfigError> {
        let tls_at = format!("{at}.tls");
        let mut tls = crate::transport::server_config(tls, &tls_at)?;
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let quic = QuicServerConfig::try_from(tls).map_err(|e| invalid(tls_at, e))?;
        let crypto = AssumedDatagramLimit::new(Arc::new(quic), ASSUMED_MAX_DATAGRAM as u64);
        let obfs = match &c.obfs {
            None => None,
            Some(ObfsConfig::Salamander { password }) => Some(
                Salamander::new(password.as_bytes())
                    .map_err(|e| invalid(format!("{at}.settings.obfs.password"), e))?,
            ),
        };
        let mut server = ServerConfig::with_crypto(Arc::new(crypto));
        let rate = brutal::SendRate::default();
        server.transport_config(Arc::new(transport(rate, obfs.is_some())));
        let receive = if c.ignore_client_bandwidth {
            http3::ServerRx::Auto
        } else {
            http3::ServerRx::Rate(c.down_mbps.map_or(0, bytes_per_sec))
        };
        Ok(Inbound {
            keys: ArcSwap::from_pointee(Hysteria2Users::default()),
            server: Arc::new(server),
            obfs,
            masquerade: match &c.masquerade {
                Some(MasqueradeConfig::Proxy { address, host }) => Masquerade::Proxy {
                    address: *address,
                    host: host.clone(),
                },
                Some(MasqueradeConfig::File { dir }) => Masquerade::Site {
                    site: site::StaticSite::load(dir)
                        .map_err(|e| invalid(format!("{at}.settings.masquerade.dir"), e))?,
                    not_found: Answer::masquerade(None),
                },
                other => Masquerade::Fixed(Answer::masquerade(other.as_ref())),
            },
            max_send: if c.ignore_client_bandwidth {
                0
            } else {
                c.up_mbps.map_or(0, bytes_per_sec)
            },
            receive,
        })
    }

    /// A connection's server config: the inbound's, with a congestion controller bound to
    /// `rate`, which authentication sets.
    fn server_config(&self, rate: brutal::SendRate) -> Arc<ServerConfig> {
        let mut config = ServerConfig::clone(&self.server);
        config.transport_config(Arc::new(transport(rate, self.obfs.is_some())));
        Arc::new(config)
    }

    /// The rate to send to a client that declared it receives `declared` bytes per second
    /// (0: unknown): none (0, Cubic) when unknown or ignored, else capped by `up_mbps`.
    fn send_rate(&self, declared: u64) -> u64 {
        match (declared, self.max_send) {
            (0, _) => 0,
            _ if matches!(self.receive, http3::ServerRx::Auto) => 0,
            (d, 0) => d,
            (d, max) => d.min(max),
        }
    }
}

/// What every HTTP/3 request but a successful authentication gets.
enum Masquerade {
    /// The same answer every time.
    Fixed(Answer),
    /// The operator's site's answer (`stream::proxy`).
    Proxy {
        address: SocketAddr,
        host: Option<String>,
    },
    /// A directory's files; `not_found` for any other path.
    Site {
        site: site::StaticSite,
        not_found: Answer,
    },
}

/// An answer made here (not the operator's site's): status, fields and body.
struct Answer {
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    /// The fixed answer: the configured one, or the reference server's default, Go's
    /// `404 page not found`.
    fn masquerade(c: Option<&MasqueradeConfig>) -> Answer {
        match c {
            None | Some(MasqueradeConfig::Proxy { .. } | MasqueradeConfig::File { .. }) => Answer {
                status: 404,
                fields: vec![
                    (
                        "content-type".to_owned(),
                        "text/plain; charset=utf-8".to_owned(),
                    ),
                    ("x-content-type-options".to_owned(), "nosniff".to_owned()),
                ],
                body: b"404 page not found\n".to_vec(),
            },
            Some(MasqueradeConfig::String {
                status_code,
                content,
                headers,
            }) => Answer {
                status: *status_code,
                fields: headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect(),
                body: content.as_bytes().to_vec(),
            },
        }
    }

    /// Appends it as the HTTP/3 response to a `method` request: HEADERS, then the body in one
    /// DATA frame, but not to `HEAD` and not with a status that has none (1xx, 204, 304).
    fn push(&self, method: &str, out: &mut Vec<u8>) {
        let fields: Vec<(&[u8], &[u8])> = self
            .fields
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        if method == "HEAD" || matches!(self.status, 100..=199 | 204 | 304) {
            push_http3_head(self.status, &fields, Some(self.body.len()), out);
        } else {
            push_http3_response(self.status, &fields, &self.body, out);
        }
    }
}

/// Appends an HTTP/3 response: HEADERS ([`push_http3_head`] with the body's length) and the
/// body in one DATA frame.
fn push_http3_response(status: u16, fields: &[(&[u8], &[u8])], body: &[u8], out: &mut Vec<u8>) {
    push_http3_head(status, fields, Some(body.len()), out);
    if !body.is_empty() {
        http3::push_frame_header(http3::DATA, body.len(), out);
        out.extend_from_slice(body);
    }
}

/// Appends an HTTP/3 response's HEADERS frame: `status`, `fields` but any `content-length`,
/// a `date` (now) unless they have one, as every HTTP server sends it (the reference
/// server's among them), and a `content-length` of `length` if given (never for 1xx and 204,
/// which have none). Alone, the answer to a `HEAD` request.
fn push_http3_head(
    status: u16,
    fields: &[(&[u8], &[u8])],
    length: Option<usize>,
    out: &mut Vec<u8>,
) {
    let length = length
        .filter(|_| status >= 200 && status != 204)
        .map(|l| l.to_string());
    let status = status.to_string();
    // Only years past 9999 fail to print.
    let date = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&jiff::Timestamp::now())
        .unwrap_or_default();
    let mut all: Vec<(&[u8], &[u8])> = vec![(b":status", status.as_bytes())];
    all.extend(
        fields
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case(b"content-length"))
            .copied(),
    );
    if !fields.iter().any(|(k, _)| k.eq_ignore_ascii_case(b"date")) {
        all.push((b"date", date.as_bytes()));
    }
    if let Some(length) = &length {
        all.push((b"content-length", length.as_bytes()));
    }
    http3::push_headers_frame(&all, out);
}

/// One worker's QUIC endpoint for one inbound: the socket, quinn's endpoint state and the
/// connections it routes packets to.
struct Endpoint {
    socket: UdpSocket,
    quic: RefCell<quinn_proto::Endpoint>,
    conns: RefCell<HashMap<ConnectionHandle, Rc<Conn>>>,
    obfs: Option<Salamander>,
    /// Whether the kernel segments our batches (UDP GSO); off once it says it cannot
    /// ([`segmentation_unsupported`]).
    gso: Cell<bool>,
    /// Connections accepted whose handshake has not completed (nor failed) yet.
    pub(super) handshaking: Cell<usize>,
}

/// Handshakes in progress on one worker's endpoint from which a new client must first prove
/// its address with a Retry round trip (RFC 9000 section 8.1.2): Initial packets from forged
/// addresses then cost the server no connection state, only the Retry packet it answers.
/// Clients follow a Retry without being told (QUIC v1 requires it).
const HANDSHAKES_BEFORE_RETRY: usize = 64;
/// Handshakes in progress on one worker's endpoint from which new connections are refused
/// (CONNECTION_REFUSED), proven addresses too.
const MAX_HANDSHAKES: usize = 1024;

/// Most QUIC packets a connection hands over for one send (one `sendmsg` with GSO). Forty
/// of the largest ([`MAX_UDP_PAYLOAD`], salt included) stay under the 64 KiB a UDP send may
/// carry; the kernel takes up to 64 segments.
pub(super) const SEND_BATCH: usize = 40;

impl Endpoint {
    /// How many packets a connection may hand over at once.
    pub(super) fn batch(&self) -> usize {
        if self.gso.get() {
            SEND_BATCH
        } else {
            1
        }
    }

    /// Sends what quinn wrote for `t` (`packets`, the first `t.size` bytes of its buffer):
    /// datagrams of `t.segment_size` bytes each (the last may be shorter), or one datagram
    /// when that is `None`, to `t.destination` from `t.src_ip` when quinn knows it. Each is
    /// obfuscated on its own when configured (`scratch` holds the salted copies); together they
    /// go in one `sendmsg` that the kernel segments, or one by one when that send fails (the
    /// socket full, the batch refused; segmenting stops for good only when the kernel cannot do
    /// it at all). A failed send is a lost packet, which QUIC recovers from.
    pub(super) async fn send(&self, t: &Transmit, packets: &[u8], scratch: &mut Vec<u8>) {
        let (to, from) = (t.destination, t.src_ip);
        let packets = &packets[..t.size];
        let segment = t
            .segment_size
            .filter(|&s| s > 0 && s < packets.len())
            .unwrap_or(packets.len());
        let (data, segment) = match &self.obfs {
            None => (packets, segment),
            Some(obfs) => {
                scratch.clear();
                for packet in packets.chunks(segment) {
                    let start = scratch.len();
                    scratch.resize(start + SALT_LEN, 0);
                    scratch.extend_from_slice(packet);
                    obfs.obfuscate(rand::random(), &mut scratch[start..]);
                }
                (&scratch[..], segment + SALT_LEN)
            }
        };
        if data.len() > segment && self.gso.get() {
            let sent = u16::try_from(segment)
                .map_err(std::io::Error::other)
                .and_then(|s| runtime::try_send_msg(&self.socket, data, to, Some(s), from));
            match sent {
                Ok(_) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if segmentation_unsupported(&e) => {
                    tracing::debug!(%to, "UDP segmentation refused ({e}): one datagram per send from now on");
                    self.gso.set(false);
                }
                Err(e) => {
                    tracing::trace!(%to, "segmented UDP send failed ({e}): this batch one by one");
                }
            }
        }
        for datagram in data.chunks(segment) {
            self.send_datagram(datagram, to, from).await;
        }
    }

    /// Sends one datagram as it is, waiting while the socket has no room.
    async fn send_datagram(&self, datagram: &[u8], to: SocketAddr, from: Option<IpAddr>) {
        loop {
            match runtime::try_send_msg(&self.socket, datagram, to, None, from) {
                Ok(_) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.socket.writable().await {
                        tracing::trace!(%to, "QUIC send failed waiting for room: {e}");
                        return;
                    }
                }
                Err(e) => {
                    tracing::trace!(%to, "QUIC send failed: {e}");
                    return;
                }
            }
        }
    }
}

/// Whether a failed segmented send (UDP GSO) means the kernel cannot segment for this socket
/// at all, so that every later batch would fail too. Linux answers `EIO` when the route or
/// device cannot (no checksum offload, IPsec, UDP-Lite). Its `EINVAL` and `EMSGSIZE` are about
/// the batch (a segment larger than the route's MTU, too many segments), and any other error
/// (an unreachable destination, a full buffer) is about the destination or the moment: those
/// batches go one datagram at a time, and the next batch is segmented again.
fn segmentation_unsupported(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EIO)
}

/// Serves one Hysteria2 inbound on this worker's UDP socket until the inbound closes, or the
/// engine stops and its last connection here is gone, or the engine's grace period ends.
/// After the engine's stop signal new connections are refused and live ones go on.
pub(crate) async fn serve(ctx: Rc<WorkerCtx>, ib: Arc<InboundShared>, socket: UdpSocket) {
    let InboundKind::Hysteria2(h) = &ib.kind else {
        unreachable!("serve is only called for Hysteria2 inbounds")
    };
    // Bound to a wildcard address, the socket must say which local address each datagram
    // came to, so that replies leave from it.
    let wildcard = socket.local_addr().is_ok_and(|a| a.ip().is_unspecified());
    // Each datagram then carries it (`Coalesced::to`); quinn keeps it per connection.
    if wildcard {
        if let Err(e) = runtime::enable_destination_info(&socket) {
            tracing::warn!(inbound = %ib.tag, "cannot learn datagrams' local addresses ({e}): on a host with several addresses, replies may leave from another than the client's");
        }
    }
    let ep = Rc::new(Endpoint {
        socket,
        quic: RefCell::new(quinn_proto::Endpoint::new(
            Arc::new(EndpointConfig::default()),
            Some(Arc::clone(&h.server)),
            true,
            None,
        )),
        conns: RefCell::new(HashMap::new()),
        obfs: h.obfs.clone(),
        gso: Cell::new(true),
        handshaking: Cell::new(0),
    });
    // quinn's MTU probes must reach the path as they are, or fail: never fragmented here.
    if let Err(e) = runtime::forbid_fragmentation(&ep.socket) {
        tracing::warn!(inbound = %ib.tag, "cannot forbid IP fragmentation ({e}): path MTU probes may be fragmented");
    }
    if let Err(e) = runtime::enable_gro(&ep.socket) {
        tracing::debug!(inbound = %ib.tag, "UDP receive offload unavailable ({e}): one datagram per receive");
    }
    let mut rx = BytesMut::with_capacity(RECV_BUFFER);
    let mut out = Vec::with_capacity(1500);
    let mut scratch = Vec::new();
    // Made once: polled again with every wait, not rebuilt (and its listeners re-registered).
    // After the engine's stop signal the endpoint serves until its last connection is gone
    // (new ones are refused meanwhile), or until the grace period ends.
    let drained = async {
        ctx.shared.stop.wait().await;
        while !ep.conns.borrow().is_empty() {
            runtime::sleep(Duration::from_millis(20)).await;
        }
    };
    let stop = async {
        let ends = futures_lite::future::or(ctx.shared.close.wait(), ib.closed.wait());
        futures_lite::future::or(ends, drained).await;
    };
    let mut stop = std::pin::pin!(stop);
    // Datagrams handled since the connections' drivers last ran.
    let mut taken = 0;
    loop {
        rx.clear();
        match runtime::try_recv_gro(&ep.socket, &mut rx) {
            Ok(c) => {
                // One clock read for what one receive brought.
                let now = Instant::now();
                // Each datagram goes to quinn as a copy of its own. quinn keeps the stream
                // and datagram frames it has not delivered yet as slices of what it was
                // handed, and bounds that memory by each packet's size: parts of one shared
                // area would let a few held bytes keep the whole area alive (a client that
                // leaves a gap in a stream could pin far more than its flow-control window).
                for datagram in rx[..c.len].chunks(c.stride.max(1)) {
                    on_datagram(
                        &ep,
                        &ctx,
                        &ib,
                        h,
                        BytesMut::from(datagram),
                        c.from,
                        c.to,
                        now,
                        &mut out,
                        &mut scratch,
                    )
                    .await;
                    taken += 1;
                }
                // The drivers run after a batch: they see many packets at once (one
                // acknowledgement, one wake-up), and a busy socket cannot starve them.
                if taken >= RECV_BATCH {
                    taken = 0;
                    futures_lite::future::yield_now().await;
                    if futures_lite::future::poll_once(stop.as_mut())
                        .await
                        .is_some()
                    {
                        break;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                taken = 0;
                let ready =
                    futures_lite::future::or(async { Some(ep.socket.readable().await) }, async {
                        stop.as_mut().await;
                        None
                    })
                    .await;
                match ready {
                    None => break,
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        tracing::debug!(inbound = %ib.tag, "UDP readiness failed: {e}");
                    }
                }
            }
            // A reported error (an ICMP unreachable, say) is consumed by the receive that
            // returns it.
            Err(e) => tracing::debug!(inbound = %ib.tag, "UDP receive failed: {e}"),
        }
    }
}

/// Hands one received datagram (Salamander removed first, when configured) to the endpoint
/// and acts on what it makes of it.
#[allow(clippy::too_many_arguments)]
async fn on_datagram(
    ep: &Rc<Endpoint>,
    ctx: &Rc<WorkerCtx>,
    ib: &Arc<InboundShared>,
    h: &Inbound,
    mut data: BytesMut,
    from: SocketAddr,
    local: Option<IpAddr>,
    now: Instant,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) {
    // No datagram can be sent back to port 0: such a source is forged or broken.
    if from.port() == 0 {
        return;
    }
    if let Some(obfs) = &ep.obfs {
        match obfs.deobfuscate(&mut data) {
            Ok(range) => {
                data.truncate(range.end);
                let _ = data.split_to(range.start);
            }
            Err(_) => return,
        }
    }
    out.clear();
    let event = ep
        .quic
        .borrow_mut()
        .handle(now, from, local, None, data, out);
    match event {
        None => {}
        Some(DatagramEvent::ConnectionEvent(handle, event)) => {
            let conn = ep.conns.borrow().get(&handle).cloned();
            if let Some(conn) = conn {
                conn.deliver(event);
            }
        }
        Some(DatagramEvent::Response(t)) => ep.send(&t, out, scratch).await,
        Some(DatagramEvent::NewConnection(incoming)) => {
            if ctx.shared.stop.is_fired() {
                let t = ep.quic.borrow_mut().refuse(incoming, out);
                ep.send(&t, out, scratch).await;
                return;
            }
            // Under a flood of handshakes, a client first proves its address (Retry), and
            // past a bound none is taken at all.
            let pending = ep.handshaking.get();
            if pending >= HANDSHAKES_BEFORE_RETRY
                && !incoming.remote_address_validated()
                && incoming.may_retry()
            {
                let retried = ep.quic.borrow_mut().retry(incoming, out);
                match retried {
                    Ok(t) => ep.send(&t, out, scratch).await,
                    Err(e) => ep.quic.borrow_mut().ignore(e.into_incoming()),
                }
                return;
            }
            if pending >= MAX_HANDSHAKES {
                tracing::debug!(inbound = %ib.tag, peer = %from, "{pending} QUIC handshakes in progress: refused");
                let t = ep.quic.borrow_mut().refuse(incoming, out);
                ep.send(&t, out, scratch).await;
                return;
            }
            let rate = brutal::SendRate::default();
            let config = h.server_config(rate.clone());
            let accepted = ep
                .quic
                .borrow_mut()
                .accept(incoming, now, out, Some(config));
            match accepted {
                Ok((handle, connection)) => {
                    let conn = Conn::new(Rc::clone(ep), handle, connection, from, rate);
                    ep.handshaking.set(ep.handshaking.get() + 1);
                    ep.conns.borrow_mut().insert(handle, Rc::clone(&conn));
                    let guard = ctx.live_guard(ib);
                    runtime::spawn(conn.drive(Rc::clone(ctx), Arc::clone(ib), guard));
                }
                Err(e) => {
                    tracing::debug!(inbound = %ib.tag, peer = %from, "QUIC accept failed: {}", e.cause);
                    if let Some(t) = e.response {
                        ep.send(&t, out, scratch).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salamander_packets_with_their_salt_fit_the_same_bound() {
        for obfuscated in [false, true] {
            let t = transport(brutal::SendRate::default(), obfuscated);
            let bound = max_quic_packet(obfuscated);
            let debug = format!("{t:?}");
            assert!(debug.contains(&format!("upper_bound: {bound}")), "{debug}");
            assert!(debug.contains("initial_mtu: 1200") && debug.contains("min_mtu: 1200"));
        }
        assert_eq!(max_quic_packet(false), MAX_UDP_PAYLOAD);
        assert_eq!(
            usize::from(max_quic_packet(true)) + SALT_LEN,
            usize::from(MAX_UDP_PAYLOAD)
        );
    }

    #[test]
    fn only_eio_turns_segmentation_off() {
        let os = std::io::Error::from_raw_os_error;
        assert!(segmentation_unsupported(&os(libc::EIO)));
        for errno in [
            libc::EINVAL,
            libc::EMSGSIZE,
            libc::ENETUNREACH,
            libc::EPERM,
            libc::ENOBUFS,
        ] {
            assert!(!segmentation_unsupported(&os(errno)), "errno {errno}");
        }
        assert!(!segmentation_unsupported(&std::io::Error::other(
            "not a number"
        )));
    }
}

//! Clients of our own, written with `proto`'s codecs, for what no third-party client can be
//! made to do: a Mux.Cool connection driven frame by frame, a VMess request built by hand.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use proto::mux::{parse_frame, Frame, MuxRead, Network, Status, MAX_HEADER_LEN};
use proto::TargetAddr;

use crate::RELAYED;

/// A VLESS Mux.Cool connection written and read by hand.
pub struct MuxConn {
    pub stream: TcpStream,
    got: Vec<u8>,
    /// Where the next unparsed frame starts in `got` (after the VLESS response header).
    at: usize,
}

/// One frame as read: session, status, options and data.
pub type MuxFrame = (u16, Status, u8, Vec<u8>);

impl MuxConn {
    /// Connects as VLESS user `uuid`; with `small_window`, a 4 KiB receive buffer, so that a
    /// client that does not read blocks the engine's downlink soon.
    pub fn connect(server: SocketAddr, uuid: &str, small_window: bool) -> MuxConn {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(server),
            socket2::Type::STREAM,
            None,
        )
        .expect("a socket");
        if small_window {
            socket.set_recv_buffer_size(4096).unwrap();
        }
        socket.connect(&server.into()).expect("connects");
        let mut stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(RELAYED)).unwrap();
        stream.write_all(&vless_mux_request(uuid)).unwrap();
        MuxConn {
            stream,
            got: Vec::new(),
            at: 2,
        }
    }

    pub fn send(&mut self, frame: Frame, data: Option<&[u8]>) {
        let mut out = vec![0u8; MAX_HEADER_LEN];
        let n = frame.write(&mut out, data.map(|d| d.len() as u16));
        out.truncate(n);
        out.extend_from_slice(data.unwrap_or_default());
        self.stream.write_all(&out).unwrap();
    }

    /// Opens session `session` to `to` (with XUDP GlobalID `g`), `data` its first packet.
    pub fn open(
        &mut self,
        session: u16,
        network: Network,
        to: SocketAddr,
        g: Option<[u8; 8]>,
        data: &[u8],
    ) {
        let frame = Frame {
            session,
            status: Status::New,
            options: 0,
            target: Some((network, TargetAddr::Ip(to))),
            global_id: g,
        };
        self.send(frame, Some(data));
    }

    /// Data for session `session`, to its own target.
    pub fn keep(&mut self, session: u16, data: &[u8]) {
        self.send(Frame::keep(session, None), Some(data));
    }

    pub fn end(&mut self, session: u16, error: bool) {
        self.send(Frame::end(session, error), None);
    }

    /// The next frame, of any session.
    pub fn next_frame(&mut self) -> MuxFrame {
        let mut buf = [0u8; 65536];
        loop {
            if let Some(Ok(MuxRead::Frame {
                frame,
                data,
                consumed,
            })) = self.got.get(self.at..).map(parse_frame)
            {
                let bytes = self.got[self.at + data.start..self.at + data.end].to_vec();
                self.at += consumed;
                return (frame.session, frame.status, frame.options, bytes);
            }
            let n = self.stream.read(&mut buf).expect("a frame");
            assert!(n > 0, "closed early");
            self.got.extend_from_slice(&buf[..n]);
        }
    }

    /// Frames up to and including the first one of `session`.
    pub fn until(&mut self, session: u16) -> Vec<MuxFrame> {
        let mut seen = Vec::new();
        loop {
            let frame = self.next_frame();
            let done = frame.0 == session;
            seen.push(frame);
            if done {
                return seen;
            }
        }
    }

    /// The next frame of `session` (those of others are skipped): its status and data.
    pub fn next_of(&mut self, session: u16) -> (Status, Vec<u8>) {
        let (_, status, _, data) = self.until(session).pop().expect("a frame");
        (status, data)
    }
}

/// A VLESS request header for Mux.Cool (command 3) as user `uuid`.
pub fn vless_mux_request(uuid: &str) -> Vec<u8> {
    let mut wire = vec![0u8; 512];
    let n = proto::vless::ClientRequest {
        uuid: proto::vless::parse_user_id(uuid).unwrap(),
        flow: "",
        command: &proto::vless::Command::Mux,
    }
    .encode(&mut wire);
    wire.truncate(n);
    wire
}

/// A VMess request header (AEAD, aes-128-gcm body, `options`) as user `id` for `command`,
/// with fresh keys, and the body's sealer and opener.
pub fn vmess_request(
    id: &str,
    command: &proto::vless::Command,
    options: u8,
) -> (Vec<u8>, proto::vmess::BodySealer, proto::vmess::BodyOpener) {
    let req = proto::vmess::ClientRequest {
        cmd_key: proto::vmess::cmd_key(&proto::vless::parse_user_id(id).unwrap()),
        command,
        security: proto::vmess::Security::Aes128Gcm,
        options,
        key: rand::random(),
        iv: rand::random(),
        response_auth: rand::random(),
        padding: 0,
        auth_random: rand::random(),
        nonce: rand::random(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = vec![0u8; req.encoded_len()];
    let (n, sealer, opener) = req.encode(now, &mut header);
    header.truncate(n);
    (header, sealer, opener)
}

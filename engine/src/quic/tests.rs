//! An in-memory QUIC client and server (quinn-proto endpoints passing packets by hand): a
//! client that does not advertise `max_datagram_frame_size` still gets the server's datagrams
//! through [`AssumedDatagramLimit`], and does not without it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn_proto::{
    ClientConfig, Connection, ConnectionHandle, DatagramEvent, Endpoint, EndpointConfig, Event,
    SendDatagramError, ServerConfig, Transmit,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use super::*;

const SERVER: &str = "127.0.0.1:4433";
const CLIENT: &str = "127.0.0.1:50000";

struct Pair {
    now: Instant,
    client_ep: Endpoint,
    client: (ConnectionHandle, Connection),
    server_ep: Endpoint,
    server: Option<(ConnectionHandle, Connection)>,
}

fn configs(wrap: bool) -> (ServerConfig, ClientConfig) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = CertificateDer::from(generated.cert.der().to_vec());
    let key = PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der());
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())
        .unwrap();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = Arc::new(QuicServerConfig::try_from(tls).unwrap());
    let server = if wrap {
        ServerConfig::with_crypto(Arc::new(AssumedDatagramLimit::new(quic, 1200)))
    } else {
        ServerConfig::with_crypto(quic)
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = Arc::new(QuicClientConfig::try_from(tls).unwrap());
    (server, ClientConfig::new(Arc::new(OmitDatagramLimit(quic))))
}

impl Pair {
    fn new(wrap: bool) -> Pair {
        let (server_config, client_config) = configs(wrap);
        let now = Instant::now();
        let endpoint_config = Arc::new(EndpointConfig::default());
        let server_ep = Endpoint::new(
            endpoint_config.clone(),
            Some(Arc::new(server_config)),
            true,
            Some([1; 32]),
        );
        let mut client_ep = Endpoint::new(endpoint_config, None, true, Some([2; 32]));
        let client = client_ep
            .connect(now, client_config, SERVER.parse().unwrap(), "localhost")
            .unwrap();
        Pair {
            now,
            client_ep,
            client,
            server_ep,
            server: None,
        }
    }

    fn server(&mut self) -> &mut Connection {
        &mut self.server.as_mut().expect("accepted").1
    }

    /// Moves packets both ways until neither side has anything to send.
    fn drive(&mut self) {
        for _ in 0..100 {
            self.now += Duration::from_millis(1);
            let mut moved = false;
            let mut buf = Vec::new();
            while let Some(t) = self.client.1.poll_transmit(self.now, 1, &mut buf) {
                moved = true;
                self.deliver_to_server(&buf[..t.size]);
                buf.clear();
            }
            while let Some((_, conn)) = &mut self.server {
                let Some(t) = conn.poll_transmit(self.now, 1, &mut buf) else {
                    break;
                };
                moved = true;
                let data = buf[..t.size].to_vec();
                buf.clear();
                self.deliver_to_client(&data);
            }
            self.endpoint_events();
            if !moved {
                return;
            }
        }
        panic!("the connection never went quiet");
    }

    fn deliver_to_server(&mut self, packet: &[u8]) {
        let mut buf = Vec::new();
        let event = self.server_ep.handle(
            self.now,
            CLIENT.parse().unwrap(),
            None,
            None,
            BytesMut::from(packet),
            &mut buf,
        );
        match event {
            Some(DatagramEvent::NewConnection(incoming)) => {
                let accepted = self
                    .server_ep
                    .accept(incoming, self.now, &mut buf, None)
                    .unwrap();
                self.server = Some(accepted);
            }
            Some(DatagramEvent::ConnectionEvent(_, event)) => self.server().handle_event(event),
            Some(DatagramEvent::Response(Transmit { size, .. })) => {
                let data = buf[..size].to_vec();
                self.deliver_to_client(&data);
            }
            None => {}
        }
    }

    fn deliver_to_client(&mut self, packet: &[u8]) {
        let mut buf = Vec::new();
        let server: SocketAddr = SERVER.parse().unwrap();
        let event = self.client_ep.handle(
            self.now,
            server,
            None,
            None,
            BytesMut::from(packet),
            &mut buf,
        );
        if let Some(DatagramEvent::ConnectionEvent(_, event)) = event {
            self.client.1.handle_event(event);
        }
    }

    fn endpoint_events(&mut self) {
        while let Some(event) = self.client.1.poll_endpoint_events() {
            if let Some(back) = self.client_ep.handle_event(self.client.0, event) {
                self.client.1.handle_event(back);
            }
        }
        if let Some((handle, conn)) = &mut self.server {
            while let Some(event) = conn.poll_endpoint_events() {
                if let Some(back) = self.server_ep.handle_event(*handle, event) {
                    conn.handle_event(back);
                }
            }
        }
    }

    fn connected(conn: &mut Connection) -> bool {
        let mut connected = false;
        while let Some(event) = conn.poll() {
            connected |= matches!(event, Event::Connected);
        }
        connected
    }
}

#[test]
fn server_sends_datagrams_to_a_client_that_advertised_no_limit() {
    let mut pair = Pair::new(true);
    pair.drive();
    assert!(Pair::connected(&mut pair.client.1));
    assert!(Pair::connected(pair.server()));
    let max = pair
        .server()
        .datagrams()
        .max_size()
        .expect("a limit is assumed");
    assert!(max < 1200 && max > 1100, "{max}");
    pair.server()
        .datagrams()
        .send(Bytes::from_static(b"reply"), true)
        .unwrap();
    pair.drive();
    assert_eq!(
        pair.client.1.datagrams().recv(),
        Some(Bytes::from_static(b"reply"))
    );
    // The client still sends datagrams: the server advertised its limit.
    pair.client
        .1
        .datagrams()
        .send(Bytes::from_static(b"request"), true)
        .unwrap();
    pair.drive();
    assert_eq!(
        pair.server().datagrams().recv(),
        Some(Bytes::from_static(b"request"))
    );
}

#[test]
fn stock_quinn_refuses_without_the_wrapper() {
    let mut pair = Pair::new(false);
    pair.drive();
    assert!(Pair::connected(pair.server()));
    assert_eq!(pair.server().datagrams().max_size(), None);
    assert!(matches!(
        pair.server()
            .datagrams()
            .send(Bytes::from_static(b"reply"), true),
        Err(SendDatagramError::UnsupportedByPeer)
    ));
}

#[test]
fn finds_parameters_in_an_encoded_list() {
    // id 0x20 len 2 value 1200; id 0x0e (active_connection_id_limit) len 1 value 2.
    let list = [0x0e, 0x01, 0x02, 0x20, 0x02, 0x44, 0xb0];
    assert!(has_parameter(&list, 0x20));
    assert!(has_parameter(&list, 0x0e));
    assert!(!has_parameter(&list, 0x01));
    assert!(!has_parameter(&[0x0e, 0x05, 0x02], 0x20));
}

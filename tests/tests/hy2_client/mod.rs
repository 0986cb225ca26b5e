//! A Hysteria2 client of our own on quinn (an independent QUIC stack), shared by the test
//! files that need what sing-box cannot do.

use std::net::SocketAddr;
use std::sync::Arc;

use e2e::localhost_certificate;
use engine::quic::OmitDatagramLimit;
use proto::hysteria2::{http3, qpack, varint};
use proto::Progress;
use quinn::crypto::rustls::QuicClientConfig;

/// A certificate for `localhost`, as PEM files, and the certificate for the client to trust.
pub fn certificate() -> (std::path::PathBuf, std::path::PathBuf, Trusted) {
    let (cert, key, der) = localhost_certificate("hy2");
    (cert, key, Trusted::from(der))
}

/// A certificate the client trusts.
pub type Trusted = rustls::pki_types::CertificateDer<'static>;

/// Connects to `server` trusting `cert`; with `omit`, without advertising the datagram limit.
pub async fn connect(server: SocketAddr, cert: &Trusted, omit: bool) -> quinn::Connection {
    let quic = Arc::new(QuicClientConfig::try_from(tls(cert)).unwrap());
    let mut config = if omit {
        quinn::ClientConfig::new(Arc::new(OmitDatagramLimit(quic)))
    } else {
        quinn::ClientConfig::new(quic)
    };
    let mut transport = quinn::TransportConfig::default();
    transport.datagram_receive_buffer_size(Some(1 << 20));
    config.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    endpoint
        .connect(server, "localhost")
        .unwrap()
        .await
        .expect("QUIC handshake")
}

/// A client's TLS configuration for Hysteria2 (TLS 1.3, ALPN h3), trusting `cert`.
pub fn tls(cert: &Trusted) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls
}

/// An HTTP/3 response: status, fields and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub fields: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Reads a whole HTTP/3 response (HEADERS, then DATA frames) from `recv`.
pub async fn read_response(recv: &mut quinn::RecvStream) -> Response {
    let bytes = recv.read_to_end(1 << 20).await.expect("a response");
    let mut at = 0;
    let mut response = Response {
        status: 0,
        fields: Vec::new(),
        body: Vec::new(),
    };
    while at < bytes.len() {
        let Progress::Done((kind, n)) = varint::decode(&bytes[at..]) else {
            panic!("truncated frame type")
        };
        let Progress::Done((len, m)) = varint::decode(&bytes[at + n..]) else {
            panic!("truncated frame length")
        };
        let payload = &bytes[at + n + m..at + n + m + len as usize];
        match kind {
            http3::HEADERS => {
                for f in qpack::decode_field_section(payload).expect("a field section") {
                    let name = String::from_utf8(f.name).unwrap();
                    let value = String::from_utf8(f.value).unwrap();
                    if name == ":status" {
                        response.status = value.parse().unwrap();
                    } else {
                        response.fields.push((name, value));
                    }
                }
            }
            http3::DATA => response.body.extend_from_slice(payload),
            other => panic!("unexpected frame {other:#x}"),
        }
        at += n + m + len as usize;
    }
    response
}

/// Sends `request` (frames) on a new stream and reads the response.
pub async fn exchange(conn: &quinn::Connection, request: &[u8]) -> Response {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(request).await.unwrap();
    send.finish().unwrap();
    read_response(&mut recv).await
}

/// Authenticates with `password`.
pub async fn auth(conn: &quinn::Connection, password: &str) -> Response {
    let mut request = Vec::new();
    http3::push_auth_request(password.as_bytes(), 0, b"pad", &mut request);
    exchange(conn, &request).await
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

//! Transports: how a client's bytes reach an inbound's protocol. Plain TCP, or TLS (rustls)
//! over it, with ALPN and a server-name (SNI) allow-list; and WebSocket ([`ws`]) over either.
//!
//! The protocols above (VLESS, Trojan, VMess) see one [`ClientStream`] whatever the transport,
//! so each is written once. TLS ([`tls`]) is a rustls handshake followed by our own record
//! layer, in place in pooled buffers.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::buffer::BufferPool;
use crate::config::{ConfigError, TlsConfig};
use crate::runtime::TcpStream;

pub(crate) mod tls;
pub(crate) mod ws;

/// A TLS server: certificate, ALPN and accepted server names, ready to accept connections.
pub(crate) struct TlsServer {
    config: Arc<rustls::ServerConfig>,
}

fn invalid(field: String, message: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.to_string(),
    }
}

impl TlsServer {
    /// Reads (or generates) the certificate and builds the server; errors name the field of
    /// `at` (the `tls` object's path) at fault.
    pub(crate) fn new(c: &TlsConfig, at: &str) -> Result<TlsServer, ConfigError> {
        let mut config = server_config(c, at)?;
        // The record layer after the handshake is ours (see [`tls`]).
        config.enable_secret_extraction = true;
        Ok(TlsServer {
            config: Arc::new(config),
        })
    }

    /// Runs the server side of a TLS handshake on `stream`, with buffers from `pool`.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        pool: &Rc<BufferPool>,
    ) -> io::Result<ClientStream> {
        let tls = tls::accept(&self.config, stream, pool).await?;
        Ok(ClientStream::Tls(Box::new(tls)))
    }
}

/// The rustls server configuration of `c`: certificate read (or generated), server names
/// checked, ALPN as configured. Errors name the field of `at` at fault.
pub(crate) fn server_config(c: &TlsConfig, at: &str) -> Result<rustls::ServerConfig, ConfigError> {
    let (certs, key) = match (&c.certificate, &c.key, &c.self_signed) {
        (Some(cert), Some(key), _) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    invalid(
                        format!("{at}.certificate"),
                        format!("{}: {e}", cert.display()),
                    )
                })?;
            if certs.is_empty() {
                return Err(invalid(
                    format!("{at}.certificate"),
                    format!("{}: no certificate in the file", cert.display()),
                ));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| invalid(format!("{at}.key"), format!("{}: {e}", key.display())))?;
            (certs, key)
        }
        (_, _, Some(names)) => {
            let generated = rcgen::generate_simple_self_signed(names.clone())
                .map_err(|e| invalid(format!("{at}.self_signed"), e))?;
            let key = PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der());
            (vec![generated.cert.der().clone()], key.into())
        }
        _ => return Err(invalid(format!("{at}.certificate"), "required")),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid(format!("{at}.key"), e))?;
    let certified = CertifiedKey::new(certs, signing);
    certified
        .keys_match()
        .or_else(|e| match e {
            // A key type whose public half rustls cannot derive: trust the files.
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown) => Ok(()),
            e => Err(e),
        })
        .map_err(|e| {
            invalid(
                format!("{at}.key"),
                format!("does not match the certificate: {e}"),
            )
        })?;
    let resolver = ServerNameCheck {
        key: Arc::new(certified),
        names: c
            .server_names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(at.to_owned(), e))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = c.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(config)
}

/// Hands out the certificate only to clients that name an accepted server (any, when the
/// list is empty); rustls refuses the others with an alert during the handshake.
#[derive(Debug)]
struct ServerNameCheck {
    key: Arc<CertifiedKey>,
    /// Lowercase.
    names: Vec<String>,
}

impl ResolvesServerCert for ServerNameCheck {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.names.is_empty() {
            return Some(Arc::clone(&self.key));
        }
        let sni = hello.server_name()?;
        self.names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(sni))
            .then(|| Arc::clone(&self.key))
    }
}

/// A vectored write on a socket: one `sendmsg` for every buffer (glommio's socket would send
/// only the first), waiting through glommio when the send buffer is full.
fn poll_send_vectored(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    match crate::runtime::try_send_vectored(stream, bufs) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            Pin::new(stream).poll_write_vectored(cx, bufs)
        }
        done => Poll::Ready(done),
    }
}

/// A client connection after its transport: what a protocol reads and writes.
pub(crate) enum ClientStream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<tls::TlsStream>),
    /// WebSocket over plain TCP or TLS.
    Ws(Box<ws::WsStream>),
}

impl ClientStream {
    /// The TCP socket under the transport.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Tcp(s) => s,
            ClientStream::Tls(s) => s.tcp(),
            ClientStream::Ws(s) => s.inner().tcp(),
        }
    }

    /// Sets the underlying socket's read timeout (reads then fail with `TimedOut`).
    pub(crate) fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        Ok(self.tcp().set_read_timeout(d)?)
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            ClientStream::Ws(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            ClientStream::Ws(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => poll_send_vectored(s, cx, bufs),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            ClientStream::Ws(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            ClientStream::Ws(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_close(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
            ClientStream::Ws(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

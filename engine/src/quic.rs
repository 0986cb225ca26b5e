//! QUIC glue for Hysteria2 over quinn-proto (see "Hysteria2" in docs/ARCHITECTURE.md).
//!
//! What the Hysteria2 inbound needs from quinn-proto beyond its public configuration lives here:
//! [`AssumedDatagramLimit`], which makes quinn-proto send datagrams to clients that do
//! not advertise `max_datagram_frame_size`, as current Hysteria2 clients do not.
//!
//! quinn-proto 0.11 refuses in `Datagrams::max_size()` when the peer's transport parameters
//! lack the limit. Its packet builder never looks at the parameter again, and receiving
//! depends only on our own configuration, so giving quinn a set of peer parameters that holds
//! the limit the reference server assumes (1200) is enough. The wrapper does that at the one
//! place quinn reads the peer's parameters: `crypto::Session::transport_parameters`.

use std::any::Any;
use std::sync::Arc;

use proto::hysteria2::varint;
use proto::Progress;
use quinn_proto::crypto::{
    self, ExportKeyingMaterialError, HeaderKey, KeyPair, Keys, PacketKey, UnsupportedVersion,
};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::{ConnectionId, Side, TransportError};

/// The transport parameter id of `max_datagram_frame_size` (RFC 9221).
const MAX_DATAGRAM_FRAME_SIZE: u64 = 0x20;

/// Whether an encoded transport parameter list holds parameter `id`.
fn has_parameter(mut list: &[u8], id: u64) -> bool {
    while let Progress::Done((found, n)) = varint::decode(list) {
        let Progress::Done((len, m)) = varint::decode(&list[n..]) else {
            return false;
        };
        if found == id {
            return true;
        }
        let Some(rest) = usize::try_from(len)
            .ok()
            .and_then(|len| list.get(n + m + len..))
        else {
            return false;
        };
        list = rest;
    }
    false
}

/// `params` with `max_datagram_frame_size` set to `limit` unless the peer gave one.
fn with_datagram_limit(
    params: TransportParameters,
    limit: u64,
    side: Side,
) -> Result<TransportParameters, TransportError> {
    let mut list = Vec::new();
    params.write(&mut list);
    if has_parameter(&list, MAX_DATAGRAM_FRAME_SIZE) {
        return Ok(params);
    }
    varint::push(MAX_DATAGRAM_FRAME_SIZE, &mut list);
    varint::push(varint::encoded_len(limit) as u64, &mut list);
    varint::push(limit, &mut list);
    Ok(TransportParameters::read(side, &mut &list[..])?)
}

/// A client crypto config that advertises its transport parameters without
/// `max_datagram_frame_size`, as Hysteria2 clients since app v2.8.2 do, while its own receive
/// side keeps datagrams on. For tests of [`AssumedDatagramLimit`] (here and end to end).
#[doc(hidden)]
pub struct OmitDatagramLimit<C>(pub Arc<C>);

impl<C: crypto::ClientConfig + 'static> crypto::ClientConfig for OmitDatagramLimit<C> {
    fn start_session(
        self: Arc<Self>,
        version: u32,
        server_name: &str,
        params: &TransportParameters,
    ) -> Result<Box<dyn crypto::Session>, quinn_proto::ConnectError> {
        let mut list = Vec::new();
        params.write(&mut list);
        assert!(
            has_parameter(&list, MAX_DATAGRAM_FRAME_SIZE),
            "quinn advertised no max_datagram_frame_size to omit"
        );
        let mut kept = Vec::new();
        let mut rest = &list[..];
        while let Progress::Done((id, n)) = varint::decode(rest) {
            let Progress::Done((len, m)) = varint::decode(&rest[n..]) else {
                panic!("quinn wrote a truncated transport parameter")
            };
            let end = n + m + len as usize;
            if id != MAX_DATAGRAM_FRAME_SIZE {
                kept.extend_from_slice(&rest[..end]);
            }
            rest = &rest[end..];
        }
        let params = TransportParameters::read(Side::Server, &mut &kept[..]).expect("valid");
        self.0.clone().start_session(version, server_name, &params)
    }
}

/// A server crypto config whose sessions report the peer's transport parameters with a
/// `max_datagram_frame_size` of `limit` when the peer sent none.
pub struct AssumedDatagramLimit<C> {
    inner: Arc<C>,
    limit: u64,
}

impl<C> AssumedDatagramLimit<C> {
    /// Wraps `inner` (normally `quinn_proto::crypto::rustls::QuicServerConfig`).
    ///
    /// # Panics
    /// If `limit` does not fit a QUIC varint (a caller bug).
    pub fn new(inner: Arc<C>, limit: u64) -> Self {
        assert!(limit <= varint::MAX);
        AssumedDatagramLimit { inner, limit }
    }
}

impl<C: crypto::ServerConfig + 'static> crypto::ServerConfig for AssumedDatagramLimit<C> {
    fn initial_keys(
        &self,
        version: u32,
        dst_cid: &ConnectionId,
    ) -> Result<Keys, UnsupportedVersion> {
        self.inner.initial_keys(version, dst_cid)
    }

    fn retry_tag(&self, version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        self.inner.retry_tag(version, orig_dst_cid, packet)
    }

    fn start_session(
        self: Arc<Self>,
        version: u32,
        params: &TransportParameters,
    ) -> Box<dyn crypto::Session> {
        Box::new(LimitSession {
            inner: self.inner.clone().start_session(version, params),
            limit: self.limit,
        })
    }
}

/// A server session that passes everything through but the peer's transport parameters.
struct LimitSession {
    inner: Box<dyn crypto::Session>,
    limit: u64,
}

impl crypto::Session for LimitSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        self.inner.initial_keys(dst_cid, side)
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        self.inner.handshake_data()
    }

    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        self.inner.peer_identity()
    }

    fn early_crypto(&self) -> Option<(Box<dyn HeaderKey>, Box<dyn PacketKey>)> {
        self.inner.early_crypto()
    }

    fn early_data_accepted(&self) -> Option<bool> {
        self.inner.early_data_accepted()
    }

    fn is_handshaking(&self) -> bool {
        self.inner.is_handshaking()
    }

    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        self.inner.read_handshake(buf)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        match self.inner.transport_parameters()? {
            Some(params) => with_datagram_limit(params, self.limit, Side::Server).map(Some),
            None => Ok(None),
        }
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        self.inner.write_handshake(buf)
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn PacketKey>>> {
        self.inner.next_1rtt_keys()
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        self.inner.is_valid_retry(orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        self.inner.export_keying_material(output, label, context)
    }
}

#[cfg(test)]
mod tests;

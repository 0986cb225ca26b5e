//! Target addresses in the form the V2Ray family (VLESS, VMess, Mux.Cool/XUDP) carries them:
//! port first, then an address type numbered differently from SOCKS5.
//!
//! ```text
//! +----------+------+----------------------+
//! | port     | type | address              |
//! +----------+------+----------------------+
//! | u16 BE   | 0x01 | 4 bytes IPv4         |
//! | u16 BE   | 0x02 | 1 byte len + name    |
//! | u16 BE   | 0x03 | 16 bytes IPv6        |
//! +----------+------+----------------------+
//! ```
//!
//! Source: Xray-core `common/protocol/address.go` with the `PortThenAddress` option, as
//! `proxy/vless/encoding`, `proxy/vmess/encoding` and `common/mux` configure it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::address::{AddressError, Parsed, TargetAddr};

/// Longest port-first encoding: port + type + length byte + 255-byte name.
pub const MAX_PORT_FIRST_LEN: usize = 2 + 1 + 1 + 255;

impl TargetAddr {
    /// Parses a port-first address (VLESS, VMess, Mux.Cool) from the start of `buf`.
    pub fn parse_port_first(buf: &[u8]) -> Result<Parsed, AddressError> {
        let [p0, p1, kind, rest @ ..] = buf else {
            return Ok(Parsed::NeedMore);
        };
        let port = u16::from_be_bytes([*p0, *p1]);
        match kind {
            0x01 => {
                let Some(ip) = rest.first_chunk::<4>() else {
                    return Ok(Parsed::NeedMore);
                };
                let ip = Ipv4Addr::from(*ip);
                Ok(Parsed::Done(
                    TargetAddr::Ip(SocketAddr::new(ip.into(), port)),
                    7,
                ))
            }
            0x03 => {
                let Some(ip) = rest.first_chunk::<16>() else {
                    return Ok(Parsed::NeedMore);
                };
                let ip = Ipv6Addr::from(*ip);
                Ok(Parsed::Done(
                    TargetAddr::Ip(SocketAddr::new(ip.into(), port)),
                    19,
                ))
            }
            0x02 => {
                let Some((&len, name)) = rest.split_first() else {
                    return Ok(Parsed::NeedMore);
                };
                let len = usize::from(len);
                if len == 0 {
                    return Err(AddressError::BadDomain);
                }
                let Some(name) = name.get(..len) else {
                    return Ok(Parsed::NeedMore);
                };
                let name = std::str::from_utf8(name).map_err(|_| AddressError::BadDomain)?;
                // An IP literal sent as a name is treated as the IP, as Xray does.
                let addr = match name.parse::<IpAddr>() {
                    Ok(ip) => TargetAddr::Ip(SocketAddr::new(ip, port)),
                    Err(_) => TargetAddr::Domain(name.to_owned(), port),
                };
                Ok(Parsed::Done(addr, 4 + len))
            }
            &other => Err(AddressError::UnknownType(other)),
        }
    }

    /// Number of bytes [`TargetAddr::write_port_first`] produces.
    pub fn port_first_len(&self) -> usize {
        self.encoded_len()
    }

    /// Writes the address in port-first form at the start of `out`; returns the length.
    ///
    /// # Panics
    /// If `out` is shorter than [`TargetAddr::port_first_len`] (a caller bug).
    pub fn write_port_first(&self, out: &mut [u8]) -> usize {
        out[..2].copy_from_slice(&self.port().to_be_bytes());
        match self {
            TargetAddr::Ip(SocketAddr::V4(a)) => {
                out[2] = 0x01;
                out[3..7].copy_from_slice(&a.ip().octets());
                7
            }
            TargetAddr::Ip(SocketAddr::V6(a)) => {
                out[2] = 0x03;
                out[3..19].copy_from_slice(&a.ip().octets());
                19
            }
            TargetAddr::Domain(name, _) => {
                let name = &name.as_bytes()[..name.len().min(255)];
                out[2] = 0x02;
                out[3] = name.len() as u8;
                out[4..4 + name.len()].copy_from_slice(name);
                4 + name.len()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind_and_needs_more_at_every_cut() {
        let cases = [
            TargetAddr::Ip("1.2.3.4:80".parse().unwrap()),
            TargetAddr::Ip("[2001:db8::1]:443".parse().unwrap()),
            TargetAddr::Domain("example.com".into(), 8080),
        ];
        for addr in cases {
            let mut buf = [0u8; MAX_PORT_FIRST_LEN];
            let n = addr.write_port_first(&mut buf);
            assert_eq!(n, addr.port_first_len());
            assert_eq!(
                TargetAddr::parse_port_first(&buf[..n]),
                Ok(Parsed::Done(addr.clone(), n))
            );
            for cut in 0..n {
                assert_eq!(
                    TargetAddr::parse_port_first(&buf[..cut]),
                    Ok(Parsed::NeedMore)
                );
            }
        }
    }

    /// The bytes Xray writes for `www.example.com:80` and `1.2.3.4:443`.
    #[test]
    fn known_encodings() {
        let mut buf = [0u8; MAX_PORT_FIRST_LEN];
        let n = TargetAddr::Domain("www.example.com".into(), 80).write_port_first(&mut buf);
        assert_eq!(&buf[..n], b"\x00\x50\x02\x0fwww.example.com");
        let n = TargetAddr::Ip("1.2.3.4:443".parse().unwrap()).write_port_first(&mut buf);
        assert_eq!(&buf[..n], [1, 187, 1, 1, 2, 3, 4]);
    }

    #[test]
    fn rejects_garbage() {
        // SOCKS5's IPv6 type (4) is not a V2Ray type.
        assert_eq!(
            TargetAddr::parse_port_first(&[0, 80, 4, 1]),
            Err(AddressError::UnknownType(4))
        );
        assert_eq!(
            TargetAddr::parse_port_first(&[0, 80, 2, 0]),
            Err(AddressError::BadDomain)
        );
        assert_eq!(
            TargetAddr::parse_port_first(&[0, 80, 2, 1, 0xff]),
            Err(AddressError::BadDomain)
        );
        assert_eq!(
            TargetAddr::parse_port_first(b"\x00\x35\x02\x078.8.8.8"),
            Ok(Parsed::Done(
                TargetAddr::Ip("8.8.8.8:53".parse().unwrap()),
                11
            ))
        );
    }
}

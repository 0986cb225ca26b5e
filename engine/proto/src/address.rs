//! Target addresses in SOCKS5 form ([RFC 1928 section 5]), as every protocol here carries them.
//!
//! ```text
//! +------+----------------------+----------+
//! | ATYP | address              | port     |
//! +------+----------------------+----------+
//! | 0x01 | 4 bytes IPv4         | u16 BE   |
//! | 0x03 | 1 byte len + name    | u16 BE   |
//! | 0x04 | 16 bytes IPv6        | u16 BE   |
//! +------+----------------------+----------+
//! ```
//!
//! [RFC 1928 section 5]: https://datatracker.ietf.org/doc/html/rfc1928#section-5

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Where a client asks to be connected.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetAddr {
    /// A literal IP address and port.
    Ip(SocketAddr),
    /// A host name (not yet resolved) and port.
    Domain(String, u16),
}

/// Why an address could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The ATYP byte is not 1, 3 or 4.
    #[error("unknown address type {0:#04x}")]
    UnknownType(u8),
    /// A host name that is empty or not UTF-8.
    #[error("host name is empty or not valid UTF-8")]
    BadDomain,
}

/// Outcome of [`TargetAddr::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The address and how many bytes it took.
    Done(TargetAddr, usize),
    /// The input ends inside the address.
    NeedMore,
}

/// Longest encoding: ATYP + length byte + 255-byte name + port.
pub const MAX_ADDR_LEN: usize = 1 + 1 + 255 + 2;

impl TargetAddr {
    /// Parses an address from the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Parsed, AddressError> {
        let Some(&atyp) = buf.first() else {
            return Ok(Parsed::NeedMore);
        };
        let port_at = |at: usize| u16::from_be_bytes([buf[at], buf[at + 1]]);
        match atyp {
            0x01 => {
                if buf.len() < 7 {
                    return Ok(Parsed::NeedMore);
                }
                let ip = Ipv4Addr::new(buf[1], buf[2], buf[3], buf[4]);
                Ok(Parsed::Done(
                    TargetAddr::Ip(SocketAddr::new(ip.into(), port_at(5))),
                    7,
                ))
            }
            0x04 => {
                if buf.len() < 19 {
                    return Ok(Parsed::NeedMore);
                }
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&buf[1..17]);
                let ip = Ipv6Addr::from(octets);
                Ok(Parsed::Done(
                    TargetAddr::Ip(SocketAddr::new(ip.into(), port_at(17))),
                    19,
                ))
            }
            0x03 => {
                let Some(&len) = buf.get(1) else {
                    return Ok(Parsed::NeedMore);
                };
                let len = len as usize;
                if len == 0 {
                    return Err(AddressError::BadDomain);
                }
                let total = 2 + len + 2;
                if buf.len() < total {
                    return Ok(Parsed::NeedMore);
                }
                let name =
                    std::str::from_utf8(&buf[2..2 + len]).map_err(|_| AddressError::BadDomain)?;
                // A name that is really an IP literal is treated as one, as the reference
                // servers do, so that policy checks see the address.
                let port = port_at(2 + len);
                let addr = match name.parse::<IpAddr>() {
                    Ok(ip) => TargetAddr::Ip(SocketAddr::new(ip, port)),
                    Err(_) => TargetAddr::Domain(name.to_owned(), port),
                };
                Ok(Parsed::Done(addr, total))
            }
            other => Err(AddressError::UnknownType(other)),
        }
    }

    /// Number of bytes [`TargetAddr::write`] produces.
    pub fn encoded_len(&self) -> usize {
        match self {
            TargetAddr::Ip(SocketAddr::V4(_)) => 7,
            TargetAddr::Ip(SocketAddr::V6(_)) => 19,
            TargetAddr::Domain(name, _) => 4 + name.len().min(255),
        }
    }

    /// Writes the address at the start of `out`, returning the length written.
    ///
    /// # Panics
    /// If `out` is shorter than [`TargetAddr::encoded_len`] (a caller bug, never peer input).
    pub fn write(&self, out: &mut [u8]) -> usize {
        match self {
            TargetAddr::Ip(SocketAddr::V4(a)) => {
                out[0] = 0x01;
                out[1..5].copy_from_slice(&a.ip().octets());
                out[5..7].copy_from_slice(&a.port().to_be_bytes());
                7
            }
            TargetAddr::Ip(SocketAddr::V6(a)) => {
                out[0] = 0x04;
                out[1..17].copy_from_slice(&a.ip().octets());
                out[17..19].copy_from_slice(&a.port().to_be_bytes());
                19
            }
            TargetAddr::Domain(name, port) => {
                let name = &name.as_bytes()[..name.len().min(255)];
                out[0] = 0x03;
                out[1] = name.len() as u8;
                out[2..2 + name.len()].copy_from_slice(name);
                out[2 + name.len()..4 + name.len()].copy_from_slice(&port.to_be_bytes());
                4 + name.len()
            }
        }
    }

    /// The port asked for.
    pub fn port(&self) -> u16 {
        match self {
            TargetAddr::Ip(a) => a.port(),
            TargetAddr::Domain(_, p) => *p,
        }
    }
}

impl From<SocketAddr> for TargetAddr {
    fn from(a: SocketAddr) -> Self {
        TargetAddr::Ip(a)
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetAddr::Ip(a) => write!(f, "{a}"),
            TargetAddr::Domain(d, p) => write!(f, "{d}:{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let cases = [
            TargetAddr::Ip("1.2.3.4:80".parse().unwrap()),
            TargetAddr::Ip("[2001:db8::1]:443".parse().unwrap()),
            TargetAddr::Domain("example.com".into(), 8080),
        ];
        for addr in cases {
            let mut buf = [0u8; MAX_ADDR_LEN];
            let n = addr.write(&mut buf);
            assert_eq!(n, addr.encoded_len());
            assert_eq!(
                TargetAddr::parse(&buf[..n]).unwrap(),
                Parsed::Done(addr.clone(), n)
            );
            for short in 0..n {
                assert_eq!(TargetAddr::parse(&buf[..short]).unwrap(), Parsed::NeedMore);
            }
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            TargetAddr::parse(&[0x05, 1, 2]),
            Err(AddressError::UnknownType(5))
        );
        assert_eq!(
            TargetAddr::parse(&[0x03, 0, 0, 80]),
            Err(AddressError::BadDomain)
        );
        assert_eq!(
            TargetAddr::parse(&[0x03, 2, 0xff, 0xfe, 0, 80]),
            Err(AddressError::BadDomain)
        );
    }

    #[test]
    fn ip_literal_in_a_domain_is_an_ip() {
        let mut buf = vec![0x03, 9];
        buf.extend_from_slice(b"127.0.0.1");
        buf.extend_from_slice(&80u16.to_be_bytes());
        let Parsed::Done(addr, _) = TargetAddr::parse(&buf).unwrap() else {
            panic!()
        };
        assert_eq!(addr, TargetAddr::Ip("127.0.0.1:80".parse().unwrap()));
    }

    #[test]
    fn short_ipv6_literal_encodes_longer_than_it_arrived() {
        // Found by the target_addr fuzz target: a 2-byte name "::" becomes the 16-byte
        // unspecified IPv6 address, so its encoding is longer than the bytes consumed.
        let wire = [0x03, 2, b':', b':', 0x01, 0xbb];
        let Parsed::Done(addr, n) = TargetAddr::parse(&wire).unwrap() else {
            panic!()
        };
        assert_eq!(n, wire.len());
        assert_eq!(addr, TargetAddr::Ip("[::]:443".parse().unwrap()));
        let mut out = [0u8; MAX_ADDR_LEN];
        let written = addr.write(&mut out);
        assert_eq!(written, 19);
        assert_eq!(
            TargetAddr::parse(&out[..written]),
            Ok(Parsed::Done(addr, 19))
        );
    }
}

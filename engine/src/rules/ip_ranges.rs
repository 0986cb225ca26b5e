//! Sets of IP addresses as sorted, merged ranges, and the built-in special ranges.
//!
//! A set is two sorted vectors of disjoint, non-adjacent inclusive ranges (one for IPv4 as
//! `u32`, one for IPv6 as `u128`), so membership is one binary search: O(log n) however many
//! CIDRs and countries a rule lists. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are always
//! stored and looked up as IPv4.

use std::net::IpAddr;

/// An IP network: an address and a prefix length, host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cidr {
    V4(u32, u8),
    V6(u128, u8),
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n` or a bare address (a host route). Host bits are cleared,
    /// as Xray and sing-box do; an IPv4-mapped IPv6 network becomes the IPv4 network.
    pub(crate) fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let ip: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Cidr::new(ip, len))
    }

    pub(crate) fn new(ip: IpAddr, len: u8) -> Cidr {
        match ip {
            IpAddr::V4(v4) => Cidr::V4(u32::from(v4) & mask32(len), len),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & mask128(len);
                // ::ffff:0:0/96 and below are IPv4 networks in disguise.
                if len >= 96 && bits >> 32 == 0xffff {
                    Cidr::V4(bits as u32, len - 96)
                } else {
                    Cidr::V6(bits, len)
                }
            }
        }
    }

    /// Whether every address of `self` is inside `outer`.
    pub(crate) fn is_within(self, outer: Cidr) -> bool {
        match (self, outer) {
            (Cidr::V4(a, l), Cidr::V4(b, m)) => l >= m && a & mask32(m) == b,
            (Cidr::V6(a, l), Cidr::V6(b, m)) => l >= m && a & mask128(m) == b,
            _ => false,
        }
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// `ip` with an IPv4-mapped IPv6 address turned into the IPv4 address it carries.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A set of addresses. Build it with [`IpRangesBuilder`].
#[derive(Clone, Debug, Default)]
pub(crate) struct IpRanges {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpRanges {
    /// Whether the set holds `ip` (which must already be [`canonical`]).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => in_ranges(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => in_ranges(&self.v6, u128::from(v6)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// Whether `x` is in one of `ranges` (sorted, disjoint, inclusive).
pub(crate) fn in_ranges<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // The ranges are sorted and disjoint: the candidate is the last one starting at or before x.
    let i = ranges.partition_point(|&(start, _)| start <= x);
    i > 0 && x <= ranges[i - 1].1
}

/// Collects networks, then sorts and merges them into an [`IpRanges`].
#[derive(Default)]
pub(crate) struct IpRangesBuilder {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpRangesBuilder {
    pub(crate) fn add(&mut self, cidr: Cidr) {
        match cidr {
            Cidr::V4(a, l) => self.v4.push((a, a | !mask32(l))),
            Cidr::V6(a, l) => self.v6.push((a, a | !mask128(l))),
        }
    }

    pub(crate) fn extend(&mut self, other: &IpRanges) {
        self.v4.extend_from_slice(&other.v4);
        self.v6.extend_from_slice(&other.v6);
    }

    pub(crate) fn build(self) -> IpRanges {
        IpRanges {
            v4: merge(self.v4, |x| x.checked_add(1)),
            v6: merge(self.v6, |x| x.checked_add(1)),
        }
    }
}

/// Sorts inclusive ranges and joins overlapping or adjacent ones (`next` is the integer after
/// a range's end, `None` at the top of the address space).
pub(crate) fn merge<T: Ord + Copy>(
    mut ranges: Vec<(T, T)>,
    next: fn(T) -> Option<T>,
) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if next(last.1).is_none_or(|n| start <= n) => {
                if end > last.1 {
                    last.1 = end;
                }
            }
            _ => out.push((start, end)),
        }
    }
    out.shrink_to_fit();
    out
}

/// A class of destination that is blocked unless the policy or an explicit rule allows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialRange {
    /// 127.0.0.0/8, ::1. Opened by `allow_loopback`.
    Loopback,
    /// 0.0.0.0/8 ("this network"), ::. Opened by `allow_private`, like every class below.
    Unspecified,
    /// 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (RFC 1918), fc00::/7 (ULA).
    Private,
    /// 100.64.0.0/10 (RFC 6598 shared address space).
    Cgnat,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
}

impl std::fmt::Display for SpecialRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpecialRange::Loopback => "loopback",
            SpecialRange::Unspecified => "unspecified",
            SpecialRange::Private => "private",
            SpecialRange::Cgnat => "CGNAT",
            SpecialRange::LinkLocal => "link-local",
            SpecialRange::Multicast => "multicast",
            SpecialRange::Broadcast => "broadcast",
        })
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Cidr {
    Cidr::V4(u32::from_be_bytes([a, b, c, d]), len)
}

const fn v6(first: u16, rest: u128, len: u8) -> Cidr {
    Cidr::V6(((first as u128) << 112) | rest, len)
}

/// Every special network with its class. Fixed and short, so a linear scan is constant time.
pub(crate) const SPECIAL_NETWORKS: [(Cidr, SpecialRange); 14] = [
    (v4(127, 0, 0, 0, 8), SpecialRange::Loopback),
    (v6(0, 1, 128), SpecialRange::Loopback),
    (v4(0, 0, 0, 0, 8), SpecialRange::Unspecified),
    (v6(0, 0, 128), SpecialRange::Unspecified),
    (v4(10, 0, 0, 0, 8), SpecialRange::Private),
    (v4(172, 16, 0, 0, 12), SpecialRange::Private),
    (v4(192, 168, 0, 0, 16), SpecialRange::Private),
    (v6(0xfc00, 0, 7), SpecialRange::Private),
    (v4(100, 64, 0, 0, 10), SpecialRange::Cgnat),
    (v4(169, 254, 0, 0, 16), SpecialRange::LinkLocal),
    (v6(0xfe80, 0, 10), SpecialRange::LinkLocal),
    (v4(224, 0, 0, 0, 4), SpecialRange::Multicast),
    (v6(0xff00, 0, 8), SpecialRange::Multicast),
    (v4(255, 255, 255, 255, 32), SpecialRange::Broadcast),
];

/// The IPv6 well-known NAT64 prefix, 64:ff9b::/96 (RFC 6052), as the top 96 bits.
const NAT64_PREFIX: u128 = 0x0064_ff9b_0000_0000_0000_0000;

/// The special class of `ip` (already [`canonical`]), if it has one. An address under the
/// well-known NAT64 prefix has the class of the IPv4 address it embeds: behind a NAT64
/// gateway, 64:ff9b::a00:1 reaches 10.0.0.1.
pub(crate) fn special_range(ip: IpAddr) -> Option<SpecialRange> {
    let ip = match ip {
        IpAddr::V6(a) if u128::from(a) >> 32 == NAT64_PREFIX => {
            IpAddr::V4((u128::from(a) as u32).into())
        }
        other => other,
    };
    let host = match ip {
        IpAddr::V4(a) => Cidr::V4(u32::from(a), 32),
        IpAddr::V6(a) => Cidr::V6(u128::from(a), 128),
    };
    SPECIAL_NETWORKS
        .iter()
        .find(|(net, _)| host.is_within(*net))
        .map(|&(_, class)| class)
}

/// Whether every address of `cidr` is in one special network (so a rule naming it names that
/// special range explicitly).
pub(crate) fn is_inside_special(cidr: Cidr) -> bool {
    SPECIAL_NETWORKS.iter().any(|(net, _)| cidr.is_within(*net))
}

/// Turns an IPv4 network found in an IPv6 GeoIP tree (`::a.b.c.d/96+n`) into IPv4.
pub(crate) fn from_geoip_network(ip: IpAddr, len: u8) -> Cidr {
    match ip {
        IpAddr::V6(v6) if len >= 96 && u128::from(v6) >> 32 == 0 => {
            Cidr::V4(u128::from(v6) as u32, len - 96)
        }
        _ => Cidr::new(ip, len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(cidrs: &[&str]) -> IpRanges {
        let mut b = IpRangesBuilder::default();
        for c in cidrs {
            b.add(Cidr::parse(c).unwrap());
        }
        b.build()
    }

    fn has(r: &IpRanges, ip: &str) -> bool {
        r.contains(canonical(ip.parse().unwrap()))
    }

    #[test]
    fn parses_and_masks() {
        assert_eq!(
            Cidr::parse("192.0.2.77/24"),
            Ok(v4(192, 0, 2, 0, 24)),
            "host bits are cleared"
        );
        assert_eq!(Cidr::parse("192.0.2.1"), Ok(v4(192, 0, 2, 1, 32)));
        assert_eq!(Cidr::parse("0.0.0.0/0"), Ok(v4(0, 0, 0, 0, 0)));
        assert_eq!(
            Cidr::parse("::ffff:192.0.2.0/120"),
            Ok(v4(192, 0, 2, 0, 24)),
            "mapped networks become IPv4"
        );
        assert_eq!(
            Cidr::parse("2001:db8::/32"),
            Ok(v6(0x2001, 0xdb8 << 96, 32))
        );
        assert!(Cidr::parse("192.0.2.0/33").is_err());
        assert!(Cidr::parse("2001:db8::/129").is_err());
        assert!(Cidr::parse("192.0.2.0/").is_err());
        assert!(Cidr::parse("example.com/24").is_err());
        assert!(Cidr::parse("").is_err());
    }

    #[test]
    fn merges_overlapping_and_adjacent() {
        let r = ranges(&[
            "198.51.100.128/25",
            "198.51.100.0/25",
            "203.0.113.0/24",
            "203.0.113.7",
            "2001:db8::/48",
            "2001:db8:0:1::/64",
        ]);
        assert_eq!(
            r.v4,
            vec![(0xc633_6400, 0xc633_64ff), (0xcb00_7100, 0xcb00_71ff)]
        );
        assert_eq!(r.v6.len(), 1);
        for ip in [
            "198.51.100.0",
            "198.51.100.255",
            "203.0.113.9",
            "::ffff:203.0.113.9",
            "2001:db8::1",
            "2001:db8:0:ffff::1",
        ] {
            assert!(has(&r, ip), "{ip}");
        }
        for ip in ["198.51.101.0", "192.0.2.1", "2001:db8:1::1", "::"] {
            assert!(!has(&r, ip), "{ip}");
        }
    }

    #[test]
    fn whole_spaces_and_edges() {
        let r = ranges(&["0.0.0.0/0", "::/0"]);
        assert!(has(&r, "0.0.0.0") && has(&r, "255.255.255.255"));
        assert!(has(&r, "::") && has(&r, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        let r = ranges(&["255.255.255.255", "255.255.255.254"]);
        assert_eq!(r.v4, vec![(0xffff_fffe, 0xffff_ffff)]);
        assert!(!ranges(&[]).contains("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn classifies_special_ranges() {
        use SpecialRange::*;
        for (ip, class) in [
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("::", Some(Unspecified)),
            ("10.1.2.3", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("fc00::1", Some(Private)),
            ("fd12:3456::1", Some(Private)),
            ("100.64.0.1", Some(Cgnat)),
            ("100.127.255.255", Some(Cgnat)),
            ("169.254.1.1", Some(LinkLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("ff02::1", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("192.0.2.1", None),
            ("2001:db8::1", None),
            ("fec0::1", None),
            ("::2", None),
            // NAT64 (64:ff9b::/96): the embedded IPv4 address decides.
            ("64:ff9b::a00:1", Some(Private)),
            ("64:ff9b::7f00:1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(LinkLocal)),
            ("64:ff9b::808:808", None),
            ("64:ff9b:0:0:1::a00:1", None),
        ] {
            assert_eq!(special_range(canonical(ip.parse().unwrap())), class, "{ip}");
        }
    }

    #[test]
    fn explicit_special_networks() {
        let inside = |c: &str| is_inside_special(Cidr::parse(c).unwrap());
        assert!(inside("10.0.0.0/8"));
        assert!(inside("10.1.0.0/16"));
        assert!(inside("127.0.0.1"));
        assert!(inside("::ffff:192.168.0.0/112"));
        assert!(inside("fd00::/8"));
        assert!(!inside("0.0.0.0/0"), "a catch-all is not explicit");
        assert!(!inside("8.0.0.0/6"), "a supernet of 10/8 is not explicit");
        assert!(!inside("::/0"));
        assert!(!inside("192.0.2.0/24"));
    }
}

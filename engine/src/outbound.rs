//! The direct outbound: resolve, check the destination policy, connect.
//!
//! Names are resolved on the process's resolver threads ([`resolver`]), never on a worker,
//! each lookup waited for until a deadline at most.
//!
//! Architecture invariant: no destination in a loopback, private (RFC 1918, ULA), CGNAT,
//! link-local, multicast or unspecified range is ever connected to or sent to unless the
//! configuration allows it. The check runs on resolved addresses, so a host name that resolves
//! to 127.0.0.1 is refused like the literal.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use proto::TargetAddr;

use crate::config::{Network, OutboundConfig};
use crate::rules::{Decision, Query, RuleSet};
use crate::runtime::TcpStream;

pub mod resolver;
pub use resolver::{Lookup, Resolver};

/// Why a destination could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// Name resolution failed.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// Host name.
        host: String,
        /// Underlying error.
        source: io::Error,
    },
    /// Name resolution took longer than the deadline.
    #[error("resolving {0} timed out")]
    ResolveTimeout(String),
    /// Too many lookups are waiting for a resolver thread.
    #[error("cannot resolve {0}: too many lookups waiting")]
    ResolverBusy(String),
    /// The routing rules refuse the destination.
    #[error("destination {target} refused by {reason}")]
    Denied {
        /// The destination.
        target: String,
        /// The rule (or built-in block) that refused it.
        reason: String,
    },
    /// The name resolved to nothing.
    #[error("{0} resolved to no address")]
    NoAddress(String),
    /// Connecting failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Address tried.
        addr: SocketAddr,
        /// Underlying error.
        source: io::Error,
    },
    /// Connecting took too long.
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
}

/// Which destination ranges are allowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct DestinationPolicy {
    /// 127.0.0.0/8 and ::1.
    pub allow_loopback: bool,
    /// Private, CGNAT, link-local, multicast, broadcast and unspecified ranges.
    pub allow_private: bool,
}

impl From<&OutboundConfig> for DestinationPolicy {
    fn from(c: &OutboundConfig) -> Self {
        DestinationPolicy {
            allow_loopback: c.allow_loopback,
            allow_private: c.allow_private,
        }
    }
}

impl DestinationPolicy {
    /// Whether `ip` may be a destination.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        if ip.is_loopback() {
            return self.allow_loopback;
        }
        if self.allow_private {
            return true;
        }
        match ip {
            IpAddr::V4(v4) => !is_special_v4(v4),
            IpAddr::V6(v6) => !is_special_v6(v6),
        }
    }
}

fn is_special_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
}

fn is_special_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
}

/// Who asks for a destination, for the routing rules.
#[derive(Clone, Copy, Debug)]
pub struct Route<'a> {
    /// The rules.
    pub rules: &'a RuleSet,
    /// User name.
    pub user: &'a str,
    /// Inbound tag.
    pub inbound: &'a str,
    /// TCP or UDP.
    pub network: Network,
    /// Client address.
    pub source: IpAddr,
    /// Unix seconds.
    pub now: u64,
}

impl Route<'_> {
    fn query<'q>(&'q self, domain: Option<&'q str>, ip: Option<IpAddr>, port: u16) -> Query<'q> {
        let mut q = Query::new(self.source, port, self.now);
        q.user = Some(self.user);
        q.inbound = Some(self.inbound);
        q.network = self.network;
        q.domain = domain;
        q.ip = ip;
        q
    }

    /// Decides a resolved address (with the name it came from, if any).
    pub fn check(&self, domain: Option<&str>, addr: SocketAddr) -> Result<(), OutboundError> {
        match self
            .rules
            .decide(&self.query(domain, Some(addr.ip()), addr.port()))
        {
            Decision::Allow(_) => Ok(()),
            Decision::Deny(reason) => Err(OutboundError::Denied {
                target: domain
                    .map(|d| format!("{d} ({addr})"))
                    .unwrap_or_else(|| addr.to_string()),
                reason: reason.to_string(),
            }),
            Decision::Resolve => unreachable!("an address is always decided"),
        }
    }
}

/// Resolves `target` to the addresses the routing rules allow (at least one, or an error),
/// through `resolver` (an address is not looked up). A name the rules deny whatever its
/// address is never resolved.
pub async fn resolve(
    target: &TargetAddr,
    route: Route<'_>,
    resolver: &Resolver,
) -> Result<Vec<SocketAddr>, OutboundError> {
    let (domain, addrs) = match target {
        TargetAddr::Ip(a) => (None, vec![*a]),
        TargetAddr::Domain(host, port) => {
            if let Decision::Deny(reason) =
                route.rules.decide(&route.query(Some(host), None, *port))
            {
                return Err(OutboundError::Denied {
                    target: target.to_string(),
                    reason: reason.to_string(),
                });
            }
            (Some(host.as_str()), resolver.lookup(host, *port).await?)
        }
    };
    if addrs.is_empty() {
        return Err(OutboundError::NoAddress(target.to_string()));
    }
    let mut first_error = None;
    let mut allowed = Vec::with_capacity(addrs.len());
    for a in addrs {
        match route.check(domain, a) {
            Ok(()) => allowed.push(a),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if allowed.is_empty() => Err(e),
        _ => Ok(allowed),
    }
}

/// Connects to `target` over TCP (resolved through `resolver`), trying each allowed address
/// in turn, each for at most `timeout`.
pub async fn connect_tcp(
    target: &TargetAddr,
    route: Route<'_>,
    resolver: &Resolver,
    timeout: Duration,
) -> Result<TcpStream, OutboundError> {
    let mut last = None;
    for addr in resolve(target, route, resolver).await? {
        match TcpStream::connect_timeout(addr, timeout).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => {
                last = Some(OutboundError::Timeout(addr))
            }
            Err(e) => {
                last = Some(OutboundError::Connect {
                    addr,
                    source: e.into(),
                })
            }
        }
    }
    Err(last.expect("resolve returns at least one address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn blocks_special_ranges_by_default() {
        let p = DestinationPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
        ] {
            assert!(!p.permits(ip.parse().unwrap()), "{ip} should be blocked");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700::1111",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            assert!(p.permits(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[test]
    fn loopback_flag_allows_only_loopback() {
        let p = DestinationPolicy {
            allow_loopback: true,
            allow_private: false,
        };
        assert!(p.permits("127.0.0.2".parse().unwrap()));
        assert!(p.permits("::1".parse().unwrap()));
        assert!(!p.permits("10.0.0.1".parse().unwrap()));
    }

    /// A resolver whose lookup answers 127.0.0.1 and counts its calls.
    fn loopback_resolver() -> (Resolver, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let lookup: Lookup = Arc::new(move |_: &str, port| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        });
        (Resolver::new(Duration::from_secs(10), Some(lookup)), calls)
    }

    fn resolve_with(
        policy: DestinationPolicy,
        target: TargetAddr,
        resolver: &Resolver,
    ) -> Result<Vec<SocketAddr>, OutboundError> {
        let rules = RuleSet::builtin(policy);
        let route = Route {
            rules: &rules,
            user: "u",
            inbound: "in",
            network: Network::Tcp,
            source: IpAddr::from([127, 0, 0, 1]),
            now: 0,
        };
        glommio::LocalExecutor::default().run(resolve(&target, route, resolver))
    }

    #[test]
    fn an_address_is_not_looked_up_and_a_name_is_checked_once_resolved() {
        let (r, calls) = loopback_resolver();
        let public = SocketAddr::from(([1, 1, 1, 1], 443));
        let got = resolve_with(DestinationPolicy::default(), TargetAddr::Ip(public), &r);
        assert_eq!(got.unwrap(), [public]);
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        // The name resolves to loopback: refused like the literal unless allowed.
        let name = || TargetAddr::Domain("somewhere.test".into(), 80);
        let err = resolve_with(DestinationPolicy::default(), name(), &r).unwrap_err();
        assert!(matches!(err, OutboundError::Denied { .. }), "{err}");
        let allowed = DestinationPolicy {
            allow_loopback: true,
            allow_private: false,
        };
        let got = resolve_with(allowed, name(), &r).unwrap();
        assert_eq!(got, [SocketAddr::from(([127, 0, 0, 1], 80))]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}

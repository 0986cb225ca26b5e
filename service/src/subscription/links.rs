//! Share links (`ss://`, SIP002), one a line, and their base64 form for v2rayN-style clients.

use std::net::{Ipv4Addr, SocketAddr};

use base64::Engine as _;
use engine::config::InboundConfig;
use engine::links::{percent_encode, share_links};
use serde_json::json;

use super::{Proxy, ProxyProtocol};

/// The share link of one proxy.
pub fn link(proxy: &Proxy) -> String {
    match &proxy.protocol {
        ProxyProtocol::Shadowsocks(ss) => {
            // The engine's `share_links` holds the SIP002 rules (base64 userinfo for AEAD 2017,
            // percent-encoded `method:psk:key` for 2022, IPv6 brackets): hand it a one-user
            // inbound at the proxy's port and replace its remark with ours. Built from JSON so
            // that optional fields the engine adds later take their defaults.
            let mut settings = json!({
                "method": ss.method,
                "users": [{"name": "user", "password": ss.key}],
            });
            if let Some(psk) = &ss.psk {
                settings["psk"] = psk.as_str().into();
            }
            let inbound: InboundConfig = serde_json::from_value(json!({
                "tag": "subscription",
                "listen": SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), proxy.port),
                "protocol": "shadowsocks",
                "settings": settings,
            }))
            .expect("a Shadowsocks inbound in the engine's own format");
            let config = engine::Config {
                inbounds: vec![inbound],
                ..engine::Config::default()
            };
            let url = share_links(&config, Some(&proxy.server))
                .pop()
                .map(|l| l.url)
                .unwrap_or_default();
            let without_remark = url.split_once('#').map_or(url.as_str(), |(u, _)| u);
            format!("{without_remark}#{}", percent_encode(&proxy.remark))
        }
    }
}

/// The links, one a line.
pub fn render(proxies: &[Proxy]) -> String {
    proxies.iter().map(link).collect::<Vec<_>>().join("\n")
}

/// Base64 (standard, padded) of [`render`].
pub fn render_base64(proxies: &[Proxy]) -> String {
    base64::engine::general_purpose::STANDARD.encode(render(proxies))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::tests::{entries, user};
    use crate::subscription::{proxies, ShadowsocksProxy};

    fn ss(method: &'static str, psk: Option<&str>, key: &str, server: &str) -> Proxy {
        Proxy {
            remark: "de 1".into(),
            server: server.into(),
            port: 8388,
            tcp: true,
            udp: true,
            protocol: ProxyProtocol::Shadowsocks(ShadowsocksProxy {
                method,
                psk: psk.map(str::to_owned),
                key: key.into(),
            }),
        }
    }

    #[test]
    fn sip002_links() {
        assert_eq!(
            link(&ss("aes-256-gcm", None, "p@ss", "example.com")),
            "ss://YWVzLTI1Ni1nY206cEBzcw@example.com:8388#de%201"
        );
        assert_eq!(
            link(&ss(
                "2022-blake3-aes-128-gcm",
                Some("AAAAAAAAAAAAAAAAAAAAAA=="),
                "AQEBAQEBAQEBAQEBAQEBAQ==",
                "2001:db8::1"
            )),
            "ss://2022-blake3-aes-128-gcm:AAAAAAAAAAAAAAAAAAAAAA%3D%3D%3AAQEBAQEBAQEBAQEBAQEBAQ%3D%3D@[2001:db8::1]:8388#de%201"
        );
    }

    #[test]
    fn links_and_base64_agree() {
        let p = proxies(&user(), &entries(), 0);
        let text = render(&p);
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().all(|l| l.starts_with("ss://")));
        assert!(text.contains("#alice%20de"));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(render_base64(&p))
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), text);
        assert_eq!(render(&[]), "");
        assert_eq!(render_base64(&[]), "");
    }
}

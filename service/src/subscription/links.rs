//! Share links, one a line, and their base64 form for v2rayN-style clients: `ss://` (SIP002),
//! `vless://` and `trojan://` (the URI scheme Xray and v2rayN share: credential as userinfo,
//! transport and TLS in the query), `vmess://` (base64 of v2rayN's JSON, version 2),
//! `hysteria2://` (the Hysteria 2 URI scheme: password as userinfo; `sni`, `insecure`, `obfs`,
//! `obfs-password` in the query).

use std::net::{Ipv4Addr, SocketAddr};

use base64::Engine as _;
use engine::config::InboundConfig;
use engine::links::{percent_encode, query_string, share_links};
use serde_json::json;

use super::{Proxy, ProxyProtocol, Transport};

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
        ProxyProtocol::Vless { id, vision } => {
            let flow = vision.then_some(("flow", proto_flow()));
            let first: Vec<_> = [("encryption", "none")].into_iter().chain(flow).collect();
            uri("vless", id, proxy, &first)
        }
        ProxyProtocol::Trojan { password } => uri("trojan", password, proxy, &[]),
        ProxyProtocol::Hysteria2 { password, obfs } => {
            let mut params: Vec<(&str, &str)> = Vec::new();
            let tls = proxy.tls.as_ref();
            if let Some(sni) = tls.and_then(|t| t.server_name.as_deref()) {
                params.push(("sni", sni));
            }
            if tls.is_some_and(|t| t.allow_insecure) {
                params.push(("insecure", "1"));
            }
            if let Some(obfs) = obfs {
                params.push(("obfs", "salamander"));
                params.push(("obfs-password", obfs));
            }
            let query = query_string(&params);
            format!(
                "hysteria2://{}@{}:{}/?{query}#{}",
                percent_encode(password),
                bracketed(&proxy.server),
                proxy.port,
                percent_encode(&proxy.remark)
            )
        }
        ProxyProtocol::Vmess { id } => {
            let (host, path) = match &proxy.transport {
                Transport::Tcp => (String::new(), String::new()),
                Transport::WebSocket(ws) => (ws.host.clone().unwrap_or_default(), ws.path.clone()),
            };
            let tls = proxy.tls.as_ref();
            let json = json!({
                "v": "2",
                "ps": proxy.remark,
                "add": proxy.server,
                "port": proxy.port.to_string(),
                "id": id,
                "aid": "0",
                "scy": "auto",
                "net": proxy.transport.name(),
                "type": "none",
                "host": host,
                "path": path,
                "tls": if tls.is_some() { "tls" } else { "" },
                "sni": tls.and_then(|t| t.server_name.clone()).unwrap_or_default(),
                "alpn": tls.map(|t| t.alpn.join(",")).unwrap_or_default(),
            });
            format!(
                "vmess://{}",
                base64::engine::general_purpose::STANDARD.encode(json.to_string())
            )
        }
    }
}

/// A `vless://` or `trojan://` link: `scheme://credential@host:port?query#remark`.
fn uri(scheme: &str, credential: &str, proxy: &Proxy, first: &[(&str, &str)]) -> String {
    let mut params: Vec<(&str, String)> = first.iter().map(|(k, v)| (*k, v.to_string())).collect();
    match &proxy.tls {
        Some(tls) => {
            params.push(("security", "tls".into()));
            if let Some(sni) = &tls.server_name {
                params.push(("sni", sni.clone()));
            }
            if !tls.alpn.is_empty() {
                params.push(("alpn", tls.alpn.join(",")));
            }
            if tls.allow_insecure {
                params.push(("allowInsecure", "1".into()));
            }
        }
        None => params.push(("security", "none".into())),
    }
    params.push(("type", proxy.transport.name().into()));
    if let Transport::WebSocket(ws) = &proxy.transport {
        params.push(("path", ws.path.clone()));
        if let Some(host) = &ws.host {
            params.push(("host", host.clone()));
        }
    }
    let query = query_string(&params);
    format!(
        "{scheme}://{}@{}:{}?{query}#{}",
        percent_encode(credential),
        bracketed(&proxy.server),
        proxy.port,
        percent_encode(&proxy.remark)
    )
}

/// The flow name of XTLS Vision, as clients spell it.
pub(super) fn proto_flow() -> &'static str {
    engine::links::VISION_FLOW
}

/// A host for a URI: IPv6 literals in brackets.
fn bracketed(server: &str) -> String {
    if server.contains(':') {
        format!("[{server}]")
    } else {
        server.to_owned()
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
    use crate::subscription::{proxies, ShadowsocksProxy, TlsSettings, WebSocket};

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
            tls: None,
            transport: Transport::Tcp,
        }
    }

    fn stream(protocol: ProxyProtocol, tls: Option<TlsSettings>, transport: Transport) -> Proxy {
        Proxy {
            remark: "de 1".into(),
            server: "example.com".into(),
            port: 443,
            tcp: true,
            udp: true,
            protocol,
            tls,
            transport,
        }
    }

    const ID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";

    #[test]
    fn vless_trojan_and_vmess_links() {
        let tls = TlsSettings {
            server_name: Some("sni.example".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
            allow_insecure: true,
        };
        let ws = Transport::WebSocket(WebSocket {
            path: "/ws?ed=2048".into(),
            host: Some("cdn.example".into()),
        });
        assert_eq!(
            link(&stream(ProxyProtocol::Vless { id: ID.into(), vision: false }, Some(tls.clone()), Transport::Tcp)),
            format!("vless://{ID}@example.com:443?encryption=none&security=tls&sni=sni.example&alpn=h2%2Chttp%2F1.1&allowInsecure=1&type=tcp#de%201")
        );
        assert_eq!(
            link(&stream(ProxyProtocol::Trojan { password: "p@ss".into() }, None, ws.clone())),
            "trojan://p%40ss@example.com:443?security=none&type=ws&path=%2Fws%3Fed%3D2048&host=cdn.example#de%201"
        );
        assert_eq!(
            link(&stream(ProxyProtocol::Vless { id: ID.into(), vision: true }, Some(tls.clone()), Transport::Tcp)),
            format!("vless://{ID}@example.com:443?encryption=none&flow=xtls-rprx-vision&security=tls&sni=sni.example&alpn=h2%2Chttp%2F1.1&allowInsecure=1&type=tcp#de%201")
        );
        let mut v6 = stream(
            ProxyProtocol::Vless {
                id: ID.into(),
                vision: false,
            },
            None,
            Transport::Tcp,
        );
        v6.server = "2001:db8::1".into();
        assert!(link(&v6).contains("@[2001:db8::1]:443?"));
        let vmess = link(&stream(
            ProxyProtocol::Vmess { id: ID.into() },
            Some(tls),
            ws,
        ));
        let json: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(vmess.strip_prefix("vmess://").unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            json,
            json!({"v": "2", "ps": "de 1", "add": "example.com", "port": "443", "id": ID,
                   "aid": "0", "scy": "auto", "net": "ws", "type": "none", "host": "cdn.example",
                   "path": "/ws?ed=2048", "tls": "tls", "sni": "sni.example", "alpn": "h2,http/1.1"})
        );
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

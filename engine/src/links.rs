//! Share links for clients: `ss://` (SIP002), `vless://` and `trojan://` (the URI scheme
//! Xray and v2rayN share), `vmess://` (base64 of v2rayN's JSON, version 2).
//!
//! A WebSocket inbound's links carry its path and host; with early data on, the path ends in
//! `?ed=N`, the convention Xray (and the sing-box based apps) read as "send up to N bytes of
//! early data in `Sec-WebSocket-Protocol`" (the server ignores the query when matching paths).

use base64::Engine as _;

use crate::config::{Config, InboundConfig, ObfsConfig, ProtocolConfig, WsConfig};

/// One share link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareLink {
    /// Inbound tag.
    pub inbound: String,
    /// User name.
    pub user: String,
    /// The link.
    pub url: String,
}

/// The `flow` value of a VLESS link (and client configuration) for XTLS Vision.
pub const VISION_FLOW: &str = proto::vless::FLOW_VISION;

/// Links for every user on every inbound, pointing at `address` (or each inbound's listen IP).
pub fn share_links(config: &Config, address: Option<&str>) -> Vec<ShareLink> {
    let mut out = Vec::new();
    for ib in &config.inbounds {
        let host = match address {
            Some(a) => a.to_owned(),
            None => ib.listen.ip().to_string(),
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let port = ib.listen.port();
        match &ib.protocol {
            ProtocolConfig::Shadowsocks(ss) => {
                let method = ss.method();
                for u in &ss.users {
                    let password = match &ss.psk {
                        Some(psk) => format!("{psk}:{}", u.password),
                        None => u.password.clone(),
                    };
                    // SIP002: AEAD (2017) userinfo is URL-safe base64 of method:password; 2022
                    // userinfo is plain, percent-encoded.
                    let userinfo = if method.is_2022() {
                        format!("{}:{}", method.name(), percent_encode(&password))
                    } else {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .encode(format!("{}:{password}", method.name()))
                    };
                    let remark = percent_encode(&format!("{} {}", ib.tag, u.name));
                    out.push(ShareLink {
                        inbound: ib.tag.clone(),
                        user: u.name.clone(),
                        url: format!("ss://{userinfo}@{host}:{port}#{remark}"),
                    });
                }
            }
            ProtocolConfig::Vless(c) => {
                let flow = c.flow.map(|_| ("flow", VISION_FLOW));
                let extra: Vec<_> = [("encryption", "none")].into_iter().chain(flow).collect();
                for u in &c.users {
                    let query = transport_query(ib, &extra);
                    out.push(ShareLink {
                        inbound: ib.tag.clone(),
                        user: u.name.clone(),
                        url: format!(
                            "vless://{}@{host}:{port}?{query}#{}",
                            percent_encode(&u.id),
                            remark(ib, &u.name)
                        ),
                    });
                }
            }
            ProtocolConfig::Trojan(c) => {
                for u in &c.users {
                    let query = transport_query(ib, &[]);
                    out.push(ShareLink {
                        inbound: ib.tag.clone(),
                        user: u.name.clone(),
                        url: format!(
                            "trojan://{}@{host}:{port}?{query}#{}",
                            percent_encode(&u.password),
                            remark(ib, &u.name)
                        ),
                    });
                }
            }
            ProtocolConfig::Vmess(c) => {
                for u in &c.users {
                    let tls = ib.tls.as_ref();
                    let ws = ib.ws.as_ref();
                    let json = serde_json::json!({
                        "v": "2",
                        "ps": format!("{} {}", ib.tag, u.name),
                        "add": host.trim_start_matches('[').trim_end_matches(']'),
                        "port": port.to_string(),
                        "id": u.id,
                        "aid": "0",
                        "scy": "auto",
                        "net": if ws.is_some() { "ws" } else { "tcp" },
                        "type": "none",
                        "host": ws.and_then(|w| w.host.clone()).unwrap_or_default(),
                        "path": ws.map(ws_path).unwrap_or_default(),
                        "tls": if tls.is_some() { "tls" } else { "" },
                        "sni": server_name(ib).unwrap_or_default(),
                        "alpn": tls.map(|t| t.alpn.join(",")).unwrap_or_default(),
                    });
                    out.push(ShareLink {
                        inbound: ib.tag.clone(),
                        user: u.name.clone(),
                        url: format!(
                            "vmess://{}",
                            base64::engine::general_purpose::STANDARD.encode(json.to_string())
                        ),
                    });
                }
            }
            ProtocolConfig::Hysteria2(c) => {
                let mut params: Vec<(&str, String)> = Vec::new();
                if let Some(sni) = server_name(ib) {
                    params.push(("sni", sni.into()));
                }
                if ib.tls.as_ref().is_some_and(|t| t.self_signed.is_some()) {
                    params.push(("insecure", "1".into()));
                }
                if let Some(ObfsConfig::Salamander { password }) = &c.obfs {
                    params.push(("obfs", "salamander".into()));
                    params.push(("obfs-password", password.clone()));
                }
                let query = query_string(&params);
                for u in &c.users {
                    out.push(ShareLink {
                        inbound: ib.tag.clone(),
                        user: u.name.clone(),
                        url: format!(
                            "hysteria2://{}@{host}:{port}/?{query}#{}",
                            percent_encode(&u.password),
                            remark(ib, &u.name)
                        ),
                    });
                }
            }
        }
    }
    out
}

fn remark(ib: &InboundConfig, user: &str) -> String {
    percent_encode(&format!("{} {user}", ib.tag))
}

/// The name a client should send (SNI): the first accepted or self-signed name.
fn server_name(ib: &InboundConfig) -> Option<&str> {
    let tls = ib.tls.as_ref()?;
    tls.server_names
        .first()
        .or(tls.self_signed.as_ref().and_then(|n| n.first()))
        .map(String::as_str)
}

/// The query of a `vless://` or `trojan://` link: transport and TLS parameters.
fn transport_query(ib: &InboundConfig, first: &[(&str, &str)]) -> String {
    let mut params: Vec<(&str, String)> = first.iter().map(|(k, v)| (*k, v.to_string())).collect();
    match &ib.tls {
        Some(tls) => {
            params.push(("security", "tls".into()));
            if let Some(sni) = server_name(ib) {
                params.push(("sni", sni.into()));
            }
            if !tls.alpn.is_empty() {
                params.push(("alpn", tls.alpn.join(",")));
            }
            if tls.self_signed.is_some() {
                params.push(("allowInsecure", "1".into()));
            }
        }
        None => params.push(("security", "none".into())),
    }
    match &ib.ws {
        Some(ws) => {
            params.push(("type", "ws".into()));
            params.push(("path", ws_path(ws)));
            if let Some(host) = &ws.host {
                params.push(("host", host.clone()));
            }
        }
        None => params.push(("type", "tcp".into())),
    }
    query_string(&params)
}

/// A WebSocket path as links give it: with `?ed=N` when early data is on.
fn ws_path(ws: &WsConfig) -> String {
    if ws.max_early_data > 0 {
        format!("{}?ed={}", ws.path, ws.max_early_data)
    } else {
        ws.path.clone()
    }
}

/// A link's query, `k=v&k=v`, values percent-encoded.
pub fn query_string<V: AsRef<str>>(params: &[(&str, V)]) -> String {
    let mut out = String::new();
    for (k, v) in params {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(&percent_encode(v.as_ref()));
    }
    out
}

/// Percent-encodes everything outside RFC 3986's unreserved set.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON inside a `vmess://` link.
    fn vmess_json(url: &str) -> serde_json::Value {
        let b64 = url.strip_prefix("vmess://").unwrap();
        let json = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    #[test]
    fn sip002_links() {
        let config = Config::from_json(
            r#"{"inbounds":[
              {"tag":"old","listen":"0.0.0.0:8388","protocol":"shadowsocks",
               "settings":{"method":"aes-256-gcm","users":[{"name":"alice","password":"p@ss"}]}},
              {"tag":"new","listen":"127.0.0.1:8389","protocol":"shadowsocks",
               "settings":{"method":"2022-blake3-aes-128-gcm","psk":"AAAAAAAAAAAAAAAAAAAAAA==",
                           "users":[{"name":"bob","password":"AQEBAQEBAQEBAQEBAQEBAQ=="}]}}]}"#,
        )
        .unwrap();
        let links = share_links(&config, Some("example.com"));
        assert_eq!(
            links[0].url,
            "ss://YWVzLTI1Ni1nY206cEBzcw@example.com:8388#old%20alice"
        );
        assert_eq!(
            links[1].url,
            "ss://2022-blake3-aes-128-gcm:AAAAAAAAAAAAAAAAAAAAAA%3D%3D%3AAQEBAQEBAQEBAQEBAQEBAQ%3D%3D@example.com:8389#new%20bob"
        );
    }

    #[test]
    fn vless_trojan_vmess_links() {
        let config = Config::from_json(
            r#"{"inbounds":[
              {"tag":"vl","listen":"0.0.0.0:443","protocol":"vless",
               "settings":{"users":[{"name":"alice","id":"b831381d-6324-4d53-ad4f-8cda48b30811"}]},
               "tls":{"self_signed":["example.com"],"alpn":["h2","http/1.1"]}},
              {"tag":"tj","listen":"0.0.0.0:8443","protocol":"trojan",
               "settings":{"users":[{"name":"bob","password":"p@ss word"}]},
               "tls":{"self_signed":["localhost"],"server_names":["example.com"]}},
              {"tag":"vm","listen":"0.0.0.0:10086","network":["tcp"],"protocol":"vmess",
               "settings":{"users":[{"name":"carol","id":"b831381d-6324-4d53-ad4f-8cda48b30811"}]}}]}"#,
        )
        .unwrap();
        let links = share_links(&config, Some("example.com"));
        assert_eq!(
            links[0].url,
            "vless://b831381d-6324-4d53-ad4f-8cda48b30811@example.com:443?encryption=none&security=tls&sni=example.com&alpn=h2%2Chttp%2F1.1&allowInsecure=1&type=tcp#vl%20alice"
        );
        assert_eq!(
            links[1].url,
            "trojan://p%40ss%20word@example.com:8443?security=tls&sni=example.com&allowInsecure=1&type=tcp#tj%20bob"
        );
        let json = vmess_json(&links[2].url);
        assert_eq!(json["v"], "2");
        assert_eq!(json["add"], "example.com");
        assert_eq!(json["port"], "10086");
        assert_eq!(json["id"], "b831381d-6324-4d53-ad4f-8cda48b30811");
        assert_eq!(json["aid"], "0");
        assert_eq!(json["net"], "tcp");
        assert_eq!(json["tls"], "");
        assert_eq!(json["ps"], "vm carol");
    }

    #[test]
    fn vless_vision_link() {
        let config = Config::from_json(
            r#"{"inbounds":[{"tag":"vl","listen":"0.0.0.0:443","network":["tcp"],"protocol":"vless",
                "settings":{"users":[{"name":"u","id":"b831381d-6324-4d53-ad4f-8cda48b30811"}],
                            "flow":"xtls-rprx-vision"},
                "tls":{"self_signed":["example.com"]}}]}"#,
        )
        .unwrap();
        assert_eq!(
            share_links(&config, None)[0].url,
            "vless://b831381d-6324-4d53-ad4f-8cda48b30811@0.0.0.0:443?encryption=none\
             &flow=xtls-rprx-vision&security=tls&sni=example.com&allowInsecure=1&type=tcp#vl%20u"
        );
    }

    #[test]
    fn hysteria2_links() {
        let config = Config::from_json(
            r#"{"inbounds":[{"tag":"hy","listen":"0.0.0.0:443","network":["udp"],"protocol":"hysteria2",
                "settings":{"users":[{"name":"u","password":"p@ss word"}],
                            "obfs":{"type":"salamander","password":"ob fs"}},
                "tls":{"self_signed":["example.com"]}}]}"#,
        )
        .unwrap();
        let links = share_links(&config, Some("203.0.113.1"));
        assert_eq!(
            links[0].url,
            "hysteria2://p%40ss%20word@203.0.113.1:443/?sni=example.com&insecure=1\
             &obfs=salamander&obfs-password=ob%20fs#hy%20u"
        );
    }

    #[test]
    fn websocket_links() {
        let config = Config::from_json(
            r#"{"inbounds":[
              {"tag":"vl","listen":"0.0.0.0:443","protocol":"vless",
               "settings":{"users":[{"name":"alice","id":"b831381d-6324-4d53-ad4f-8cda48b30811"}]},
               "tls":{"self_signed":["example.com"]},"ws":{"path":"/vl","host":"cdn.example.com"}},
              {"tag":"tj","listen":"0.0.0.0:80","protocol":"trojan",
               "settings":{"users":[{"name":"bob","password":"pw"}]},
               "ws":{"path":"/tj","max_early_data":0}},
              {"tag":"vm","listen":"0.0.0.0:8080","protocol":"vmess",
               "settings":{"users":[{"name":"carol","id":"b831381d-6324-4d53-ad4f-8cda48b30811"}]},
               "ws":{"path":"/vm","host":"example.org"}}]}"#,
        )
        .unwrap();
        let links = share_links(&config, Some("example.com"));
        assert_eq!(
            links[0].url,
            "vless://b831381d-6324-4d53-ad4f-8cda48b30811@example.com:443?encryption=none&security=tls&sni=example.com&allowInsecure=1&type=ws&path=%2Fvl%3Fed%3D2048&host=cdn.example.com#vl%20alice"
        );
        assert_eq!(
            links[1].url,
            "trojan://pw@example.com:80?security=none&type=ws&path=%2Ftj#tj%20bob"
        );
        let json = vmess_json(&links[2].url);
        assert_eq!(json["net"], "ws");
        assert_eq!(json["path"], "/vm?ed=2048");
        assert_eq!(json["host"], "example.org");
        assert_eq!(json["tls"], "");
    }
}

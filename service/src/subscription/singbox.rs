//! sing-box configuration (JSON) for SFA, SFI, SFM, Hiddify, Karing and the sing-box CLI.
//!
//! The layout is sing-box 1.12's (typed DNS servers, rule actions, `default_domain_resolver`):
//! a TUN inbound; a `proxy` selector over `auto` (a URL test) and every proxy; remote DNS
//! through the proxy; private ranges direct. Without proxies (a user who may not connect) the
//! config rejects everything. `tests/subscription_clients.rs` runs `sing-box check` on it.

use serde_json::{json, Value};

use super::{Proxy, ProxyProtocol, Transport, EARLY_DATA_HEADER};

/// The outbound of one proxy, tagged with its remark.
pub fn outbound(proxy: &Proxy) -> Value {
    let stream = |kind: &str, credential: (&str, &str)| {
        let mut o = json!({
            "type": kind,
            "tag": proxy.remark,
            "server": proxy.server,
            "server_port": proxy.port,
        });
        o[credential.0] = credential.1.into();
        if let Some(tls) = &proxy.tls {
            let mut t = json!({"enabled": true});
            if let Some(name) = &tls.server_name {
                t["server_name"] = name.as_str().into();
            }
            if tls.allow_insecure {
                t["insecure"] = true.into();
            }
            if !tls.alpn.is_empty() {
                t["alpn"] = tls.alpn.clone().into();
            }
            o["tls"] = t;
        }
        if let Transport::WebSocket(ws) = &proxy.transport {
            let (path, early_data) = ws.early_data();
            let mut t = json!({"type": "ws", "path": path});
            if let Some(n) = early_data {
                t["max_early_data"] = n.into();
                t["early_data_header_name"] = EARLY_DATA_HEADER.into();
            }
            if let Some(host) = &ws.host {
                t["headers"] = json!({"Host": host});
            }
            o["transport"] = t;
        }
        o
    };
    match &proxy.protocol {
        ProxyProtocol::Vless { id, vision } => {
            let mut o = stream("vless", ("uuid", id));
            if *vision {
                o["flow"] = super::links::proto_flow().into();
            }
            o
        }
        ProxyProtocol::Trojan { password } => stream("trojan", ("password", password)),
        ProxyProtocol::Hysteria2 { password, obfs } => {
            let mut o = stream("hysteria2", ("password", password));
            if let Some(obfs) = obfs {
                o["obfs"] = json!({"type": "salamander", "password": obfs});
            }
            o
        }
        ProxyProtocol::Vmess { id } => {
            let mut o = stream("vmess", ("uuid", id));
            o["security"] = "auto".into();
            o["alter_id"] = 0.into();
            o
        }
        ProxyProtocol::Shadowsocks(ss) => {
            let mut o = json!({
                "type": "shadowsocks",
                "tag": proxy.remark,
                "server": proxy.server,
                "server_port": proxy.port,
                "method": ss.method,
                "password": ss.password(),
            });
            match (proxy.tcp, proxy.udp) {
                (true, false) => o["network"] = "tcp".into(),
                (false, true) => o["network"] = "udp".into(),
                _ => {}
            }
            o
        }
    }
}

/// The whole configuration.
pub fn render(proxies: &[Proxy]) -> String {
    let tun = json!({
        "type": "tun",
        "tag": "tun-in",
        "address": ["172.19.0.1/30", "fdfe:dcba:9876::1/126"],
        "auto_route": true,
        "strict_route": true,
    });
    let config = if proxies.is_empty() {
        json!({
            "log": {"level": "warn"},
            "inbounds": [tun],
            "outbounds": [{"type": "direct", "tag": "direct"}],
            "route": {
                "rules": [{"action": "reject"}],
                "final": "direct",
                "auto_detect_interface": true,
            },
        })
    } else {
        let tags: Vec<&str> = proxies.iter().map(|p| p.remark.as_str()).collect();
        let mut outbounds = vec![
            json!({
                "type": "selector",
                "tag": "proxy",
                "outbounds": std::iter::once("auto").chain(tags.iter().copied()).collect::<Vec<_>>(),
                "interrupt_exist_connections": true,
            }),
            json!({"type": "urltest", "tag": "auto", "outbounds": tags}),
        ];
        outbounds.extend(proxies.iter().map(outbound));
        outbounds.push(json!({"type": "direct", "tag": "direct"}));
        json!({
            "log": {"level": "warn"},
            "dns": {
                "servers": [
                    {"type": "tcp", "tag": "remote", "server": "1.1.1.1", "detour": "proxy"},
                    {"type": "local", "tag": "local"},
                ],
                "final": "remote",
                "strategy": "prefer_ipv4",
            },
            "inbounds": [tun],
            "outbounds": outbounds,
            "route": {
                "rules": [
                    {"action": "sniff"},
                    {"protocol": "dns", "action": "hijack-dns"},
                    {"ip_is_private": true, "outbound": "direct"},
                ],
                "final": "proxy",
                "auto_detect_interface": true,
                "default_domain_resolver": "local",
            },
        })
    };
    serde_json::to_string_pretty(&config).expect("JSON values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::proxies;
    use crate::subscription::tests::{entries, user};

    #[test]
    fn outbounds_carry_server_method_and_password() {
        let p = proxies(&user(), &entries(), 0);
        let config: Value = serde_json::from_str(&render(&p)).unwrap();
        let outbounds = config["outbounds"].as_array().unwrap();
        assert_eq!(outbounds[0]["type"], "selector");
        assert_eq!(
            outbounds[0]["outbounds"],
            json!(["auto", "v6", "plain", "alice de"])
        );
        assert_eq!(
            outbounds[1]["outbounds"],
            json!(["v6", "plain", "alice de"])
        );
        let ss: Vec<&Value> = outbounds
            .iter()
            .filter(|o| o["type"] == "shadowsocks")
            .collect();
        assert_eq!(ss.len(), 3);
        assert_eq!(ss[0]["server"], "2001:db8::1");
        assert_eq!(ss[0]["server_port"], 9443);
        assert_eq!(ss[1]["server"], "203.0.113.7");
        assert_eq!(ss[1]["method"], "aes-256-gcm");
        assert_eq!(
            ss[1]["password"],
            crate::sync::credential(&entries()[0].config, &user().key)
        );
        assert_eq!(ss[2]["method"], "2022-blake3-aes-128-gcm");
        let password = ss[2]["password"].as_str().unwrap();
        assert!(password.starts_with("AAAAAAAAAAAAAAAAAAAAAA==:"));
        assert!(ss.iter().all(|o| o.get("network").is_none()));
        assert_eq!(config["route"]["final"], "proxy");
    }

    #[test]
    fn network_follows_the_inbound() {
        let mut p = proxies(&user(), &entries(), 0).remove(0);
        p.udp = false;
        assert_eq!(outbound(&p)["network"], "tcp");
        p.udp = true;
        p.tcp = false;
        assert_eq!(outbound(&p)["network"], "udp");
    }

    #[test]
    fn no_proxies_reject_everything() {
        let config: Value = serde_json::from_str(&render(&[])).unwrap();
        assert_eq!(
            config["outbounds"],
            json!([{"type": "direct", "tag": "direct"}])
        );
        assert_eq!(config["route"]["rules"], json!([{"action": "reject"}]));
    }
}

//! Xray configuration (JSON) for v2rayN, v2rayNG and Streisand: as Marzneshin sends it, an
//! array of complete configurations, one per proxy, each named by `remarks`; an empty array
//! for a user who may not connect.
//!
//! Each has a SOCKS inbound on 127.0.0.1:10808, the proxy as outbound `proxy`, and private
//! ranges sent `direct` (as CIDRs, so no geoip file is needed). `tests/subscription_clients.rs`
//! runs `v2ray test` on each.

use serde_json::{json, Value};

use super::{Proxy, ProxyProtocol, Transport, PRIVATE_RANGES};

/// The `streamSettings` of a VLESS, VMess or Trojan outbound.
fn stream_settings(proxy: &Proxy) -> Value {
    let mut s = json!({"network": proxy.transport.name()});
    match &proxy.tls {
        Some(tls) => {
            s["security"] = "tls".into();
            let mut t = json!({"allowInsecure": tls.allow_insecure});
            if let Some(name) = &tls.server_name {
                t["serverName"] = name.as_str().into();
            }
            if !tls.alpn.is_empty() {
                t["alpn"] = tls.alpn.clone().into();
            }
            s["tlsSettings"] = t;
        }
        None => s["security"] = "none".into(),
    }
    if let Transport::WebSocket(ws) = &proxy.transport {
        let mut w = json!({"path": ws.path});
        if let Some(host) = &ws.host {
            w["headers"] = json!({"Host": host});
        }
        s["wsSettings"] = w;
    }
    s
}

/// The outbound of one proxy, tagged `proxy` (`None` for Hysteria2, which Xray lacks).
pub fn outbound(proxy: &Proxy) -> Option<Value> {
    let vnext = |protocol: &str, user: Value| {
        json!({
            "tag": "proxy",
            "protocol": protocol,
            "settings": {"vnext": [{"address": proxy.server, "port": proxy.port, "users": [user]}]},
            "streamSettings": stream_settings(proxy),
        })
    };
    Some(match &proxy.protocol {
        ProxyProtocol::Hysteria2 { .. } => return None,
        ProxyProtocol::Vless { id, vision } => {
            let mut user = json!({"id": id, "encryption": "none"});
            if *vision {
                user["flow"] = super::links::proto_flow().into();
            }
            vnext("vless", user)
        }
        ProxyProtocol::Vmess { id } => {
            vnext("vmess", json!({"id": id, "alterId": 0, "security": "auto"}))
        }
        ProxyProtocol::Trojan { password } => json!({
            "tag": "proxy",
            "protocol": "trojan",
            "settings": {"servers": [{"address": proxy.server, "port": proxy.port, "password": password}]},
            "streamSettings": stream_settings(proxy),
        }),
        ProxyProtocol::Shadowsocks(ss) => json!({
            "tag": "proxy",
            "protocol": "shadowsocks",
            "settings": {
                "servers": [{
                    "address": proxy.server,
                    "port": proxy.port,
                    "method": ss.method,
                    "password": ss.password(),
                }],
            },
        }),
    })
}

/// The configuration for one proxy (`None` for a protocol Xray lacks).
pub fn config(proxy: &Proxy) -> Option<Value> {
    Some(json!({
        "remarks": proxy.remark,
        "log": {"loglevel": "warning"},
        "dns": {"servers": ["1.1.1.1", "8.8.8.8"]},
        "inbounds": [{
            "tag": "socks",
            "listen": "127.0.0.1",
            "port": 10808,
            "protocol": "socks",
            "settings": {"auth": "noauth", "udp": true},
            "sniffing": {"enabled": true, "destOverride": ["http", "tls"], "routeOnly": true},
        }],
        "outbounds": [
            outbound(proxy)?,
            {"tag": "direct", "protocol": "freedom"},
            {"tag": "block", "protocol": "blackhole"},
        ],
        "routing": {
            "domainStrategy": "AsIs",
            "rules": [{"type": "field", "ip": PRIVATE_RANGES, "outboundTag": "direct"}],
        },
    }))
}

/// Every proxy's configuration, as a JSON array. Hysteria2 proxies are left out: Xray (and
/// v2ray) have no Hysteria2 outbound in the versions these clients run.
pub fn render(proxies: &[Proxy]) -> String {
    let all: Vec<Value> = proxies.iter().filter_map(config).collect();
    serde_json::to_string_pretty(&all).expect("JSON values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::proxies;
    use crate::subscription::tests::{entries, user};

    #[test]
    fn one_config_per_proxy_with_a_shadowsocks_outbound() {
        let p = proxies(&user(), &entries(), 0);
        let all: Vec<Value> = serde_json::from_str(&render(&p)).unwrap();
        assert_eq!(all.len(), 3);
        let plain = &all[1];
        assert_eq!(plain["remarks"], "plain");
        assert_eq!(plain["inbounds"][0]["protocol"], "socks");
        assert_eq!(plain["inbounds"][0]["listen"], "127.0.0.1");
        assert_eq!(plain["inbounds"][0]["port"], 10808);
        let out = &plain["outbounds"][0];
        assert_eq!(out["protocol"], "shadowsocks");
        let server = &out["settings"]["servers"][0];
        assert_eq!(server["address"], "203.0.113.7");
        assert_eq!(server["port"], 8388);
        assert_eq!(server["method"], "aes-256-gcm");
        assert_eq!(
            server["password"],
            crate::sync::credential(&entries()[0].config, &user().key)
        );
        assert_eq!(
            all[0]["outbounds"][0]["settings"]["servers"][0]["address"],
            "2001:db8::1"
        );
        assert!(all[2]["outbounds"][0]["settings"]["servers"][0]["password"]
            .as_str()
            .unwrap()
            .starts_with("AAAAAAAAAAAAAAAAAAAAAA==:"));
    }

    #[test]
    fn no_proxies_is_an_empty_list() {
        assert_eq!(render(&[]), "[]");
    }
}

//! Clash Meta (mihomo) configuration (YAML) for Clash Verge, ClashMeta for Android, FlClash,
//! Stash and other Clash clients.
//!
//! Proxies of `type: ss`, `vless`, `vmess`, `trojan` (Trojan only with TLS: Clash has no
//! plain Trojan, so such a proxy is left out) and `hysteria2`; a `Proxy` selector over `Auto` (a URL test) and every proxy; private
//! ranges direct, everything else through `Proxy`. Without proxies everything is rejected.

use serde::Serialize;

use super::{Proxy, ProxyProtocol, Transport, EARLY_DATA_HEADER, PRIVATE_RANGES};

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClashConfig<'a> {
    mixed_port: u16,
    allow_lan: bool,
    mode: &'static str,
    log_level: &'static str,
    proxies: Vec<ClashProxy<'a>>,
    proxy_groups: Vec<ProxyGroup<'a>>,
    rules: Vec<String>,
}

#[derive(Default, Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClashProxy<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    server: &'a str,
    port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    cipher: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<&'static str>,
    #[serde(rename = "alterId", skip_serializing_if = "Option::is_none")]
    alter_id: Option<u8>,
    udp: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    servername: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sni: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_cert_verify: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alpn: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ws_opts: Option<WsOpts<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    obfs: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    obfs_password: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct WsOpts<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<WsHeaders<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_early_data: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    early_data_header_name: Option<&'static str>,
}

#[derive(Serialize)]
struct WsHeaders<'a> {
    #[serde(rename = "Host")]
    host: &'a str,
}

#[derive(Serialize)]
struct ProxyGroup<'a> {
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<u32>,
    proxies: Vec<&'a str>,
}

/// Whether Clash can express `p` (it has no Trojan without TLS).
fn expressible(p: &Proxy) -> bool {
    !matches!(p.protocol, ProxyProtocol::Trojan { .. }) || p.tls.is_some()
}

fn proxy(p: &Proxy) -> ClashProxy<'_> {
    let base = || ClashProxy {
        name: &p.remark,
        server: &p.server,
        port: p.port,
        udp: p.udp,
        ..ClashProxy::default()
    };
    let stream = ClashProxy {
        tls: Some(p.tls.is_some()),
        skip_cert_verify: p.tls.as_ref().map(|t| t.allow_insecure),
        alpn: p
            .tls
            .as_ref()
            .map(|t| &t.alpn[..])
            .filter(|a| !a.is_empty()),
        network: Some(p.transport.name()),
        ws_opts: match &p.transport {
            Transport::Tcp => None,
            Transport::WebSocket(ws) => {
                let (path, early_data) = ws.early_data();
                Some(WsOpts {
                    path,
                    headers: ws.host.as_deref().map(|host| WsHeaders { host }),
                    max_early_data: early_data,
                    early_data_header_name: early_data.map(|_| EARLY_DATA_HEADER),
                })
            }
        },
        ..base()
    };
    let server_name = p.tls.as_ref().and_then(|t| t.server_name.as_deref());
    match &p.protocol {
        ProxyProtocol::Shadowsocks(ss) => ClashProxy {
            kind: "ss",
            cipher: Some(ss.method),
            password: Some(ss.password()),
            ..base()
        },
        ProxyProtocol::Vless { id, vision } => ClashProxy {
            kind: "vless",
            uuid: Some(id),
            flow: vision.then_some(super::links::proto_flow()),
            servername: server_name,
            ..stream
        },
        ProxyProtocol::Vmess { id } => ClashProxy {
            kind: "vmess",
            uuid: Some(id),
            alter_id: Some(0),
            cipher: Some("auto"),
            servername: server_name,
            ..stream
        },
        ProxyProtocol::Trojan { password } => ClashProxy {
            kind: "trojan",
            password: Some(password.clone()),
            tls: None,
            sni: server_name,
            ..stream
        },
        ProxyProtocol::Hysteria2 { password, obfs } => ClashProxy {
            kind: "hysteria2",
            password: Some(password.clone()),
            sni: server_name,
            skip_cert_verify: stream.skip_cert_verify,
            alpn: stream.alpn,
            obfs: obfs.as_ref().map(|_| "salamander"),
            obfs_password: obfs.as_deref(),
            ..base()
        },
    }
}

/// The whole configuration.
pub fn render(proxies: &[Proxy]) -> String {
    let proxies: Vec<&Proxy> = proxies.iter().filter(|p| expressible(p)).collect();
    let names: Vec<&str> = proxies.iter().map(|p| p.remark.as_str()).collect();
    let (groups, rules) = if proxies.is_empty() {
        (
            vec![ProxyGroup {
                name: "Proxy",
                kind: "select",
                url: None,
                interval: None,
                proxies: vec!["REJECT"],
            }],
            vec!["MATCH,Proxy".to_owned()],
        )
    } else {
        let mut rules: Vec<String> = PRIVATE_RANGES
            .iter()
            .map(|r| {
                let kind = if r.contains(':') {
                    "IP-CIDR6"
                } else {
                    "IP-CIDR"
                };
                format!("{kind},{r},DIRECT,no-resolve")
            })
            .collect();
        rules.push("MATCH,Proxy".to_owned());
        (
            vec![
                ProxyGroup {
                    name: "Proxy",
                    kind: "select",
                    url: None,
                    interval: None,
                    proxies: std::iter::once("Auto")
                        .chain(names.iter().copied())
                        .collect(),
                },
                ProxyGroup {
                    name: "Auto",
                    kind: "url-test",
                    url: Some("https://www.gstatic.com/generate_204"),
                    interval: Some(300),
                    proxies: names.clone(),
                },
            ],
            rules,
        )
    };
    let config = ClashConfig {
        mixed_port: 7890,
        allow_lan: false,
        mode: "rule",
        log_level: "warning",
        proxies: proxies.iter().map(|p| proxy(p)).collect(),
        proxy_groups: groups,
        rules,
    };
    serde_norway::to_string(&config).expect("plain values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::proxies;
    use crate::subscription::tests::{entries, user};
    use serde_norway::Value;

    #[test]
    fn ss_proxies_groups_and_rules() {
        let mut e = entries();
        e[1].hosts[0].remark = "#1: de, {USERNAME}'s \"main\"".into();
        let p = proxies(&user(), &e, 0);
        let config: Value = serde_norway::from_str(&render(&p)).unwrap();
        let list = config["proxies"].as_sequence().unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[1]["name"], "plain");
        assert_eq!(list[1]["type"], "ss");
        assert_eq!(list[1]["server"], "203.0.113.7");
        assert_eq!(list[1]["port"], 8388);
        assert_eq!(list[1]["cipher"], "aes-256-gcm");
        assert_eq!(
            list[1]["password"],
            crate::sync::credential(&entries()[0].config, &user().key).as_str()
        );
        assert_eq!(list[1]["udp"], true);
        assert_eq!(list[2]["name"], "#1: de, alice's \"main\"");
        assert_eq!(list[2]["cipher"], "2022-blake3-aes-128-gcm");
        assert_eq!(list[0]["server"], "2001:db8::1");
        let groups = config["proxy-groups"].as_sequence().unwrap();
        assert_eq!(groups[0]["name"], "Proxy");
        assert_eq!(groups[0]["proxies"].as_sequence().unwrap().len(), 4);
        assert_eq!(groups[1]["type"], "url-test");
        let rules = config["rules"].as_sequence().unwrap();
        assert_eq!(rules.last().unwrap(), "MATCH,Proxy");
        assert!(rules
            .iter()
            .any(|r| r == "IP-CIDR,192.168.0.0/16,DIRECT,no-resolve"));
        assert!(rules
            .iter()
            .any(|r| r == "IP-CIDR6,fc00::/7,DIRECT,no-resolve"));
    }

    #[test]
    fn vless_vmess_and_trojan_proxies() {
        use crate::subscription::tests::stream_entries;
        let mut e = stream_entries();
        // A Trojan host without TLS: Clash cannot say it, so it is left out.
        let mut plain = e[1].hosts[0].clone();
        plain.tls = Some(false);
        plain.remark = "plain trojan".into();
        e[1].hosts.push(plain);
        let p = proxies(&user(), &e, 0);
        assert_eq!(p.len(), 5);
        let config: Value = serde_norway::from_str(&render(&p)).unwrap();
        let list = config["proxies"].as_sequence().unwrap();
        let names: Vec<&str> = list.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["vl", "tj trojan tcp", "vm ws", "vm cdn"]);
        let groups = config["proxy-groups"].as_sequence().unwrap();
        assert_eq!(groups[1]["proxies"].as_sequence().unwrap().len(), 4);
        let vl = &list[0];
        assert_eq!(vl["type"], "vless");
        assert_eq!(
            vl["uuid"],
            crate::sync::credential(&e[0].config, &user().key).as_str()
        );
        assert_eq!(vl["tls"], true);
        assert_eq!(vl["servername"], "localhost");
        assert_eq!(vl["skip-cert-verify"], true);
        assert_eq!(vl["alpn"][1], "http/1.1");
        assert_eq!(vl["network"], "tcp");
        let tj = &list[1];
        assert_eq!(tj["type"], "trojan");
        assert_eq!(tj["sni"], "alice.example.com");
        assert_eq!(tj["skip-cert-verify"], false);
        assert!(tj.get("tls").is_none());
        assert_eq!(tj["password"].as_str().unwrap().len(), 32);
        let vm = &list[3];
        assert_eq!(vm["type"], "vmess");
        assert_eq!(vm["alterId"], 0);
        assert_eq!(vm["cipher"], "auto");
        assert_eq!(vm["tls"], false);
        assert_eq!(vm["network"], "ws");
        assert_eq!(vm["ws-opts"]["path"], "/alice");
        assert_eq!(vm["ws-opts"]["headers"]["Host"], "cdn.example");
        assert!(vm["ws-opts"].get("max-early-data").is_none());
        let early = &list[2]["ws-opts"];
        assert_eq!(early["path"], "/vm");
        assert_eq!(early["max-early-data"], 2048);
        assert_eq!(early["early-data-header-name"], "Sec-WebSocket-Protocol");
    }

    #[test]
    fn no_proxies_reject_everything() {
        let config: Value = serde_norway::from_str(&render(&[])).unwrap();
        assert!(config["proxies"].as_sequence().unwrap().is_empty());
        assert_eq!(config["proxy-groups"][0]["proxies"][0], "REJECT");
        assert_eq!(config["rules"][0], "MATCH,Proxy");
    }
}

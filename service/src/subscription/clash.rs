//! Clash Meta (mihomo) configuration (YAML) for Clash Verge, ClashMeta for Android, FlClash,
//! Stash and other Clash clients.
//!
//! Proxies of `type: ss`; a `Proxy` selector over `Auto` (a URL test) and every proxy; private
//! ranges direct, everything else through `Proxy`. Without proxies everything is rejected.

use serde::Serialize;

use super::{Proxy, ProxyProtocol, PRIVATE_RANGES};

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

#[derive(Serialize)]
struct ClashProxy<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    server: &'a str,
    port: u16,
    cipher: &'static str,
    password: String,
    udp: bool,
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

fn proxy(p: &Proxy) -> ClashProxy<'_> {
    match &p.protocol {
        ProxyProtocol::Shadowsocks(ss) => ClashProxy {
            name: &p.remark,
            kind: "ss",
            server: &p.server,
            port: p.port,
            cipher: ss.method,
            password: ss.password(),
            udp: p.udp,
        },
    }
}

/// The whole configuration.
pub fn render(proxies: &[Proxy]) -> String {
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
        proxies: proxies.iter().map(proxy).collect(),
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
    fn no_proxies_reject_everything() {
        let config: Value = serde_norway::from_str(&render(&[])).unwrap();
        assert!(config["proxies"].as_sequence().unwrap().is_empty());
        assert_eq!(config["proxy-groups"][0]["proxies"][0], "REJECT");
        assert_eq!(config["rules"][0], "MATCH,Proxy");
    }
}

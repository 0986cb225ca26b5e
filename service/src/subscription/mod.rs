//! Subscriptions: what a user's client downloads from `/sub/{username}/{key}`, in the format
//! that client reads (docs/subscriptions.md).
//!
//! ```text
//!  user row ─► SubscriptionUser ─┐
//!  inbounds + their hosts ───────┴─► proxies() ─► [Proxy] ─► render(Format) ─► body
//!  User-Agent + Accept ─► detect() ─► Format        (links, base64, sing-box, clash-meta,
//!                                                    xray, or an HTML page for browsers)
//! ```
//!
//! Everything here is pure, plain data in and text out, so every generator is tested without
//! HTTP or a database; `api::subscription` loads the data and sends the result.
//!
//! Credentials come from [`crate::sync::credential`], the same derivation the engine is given,
//! so a subscription and the engine always agree: a password for Shadowsocks and Trojan, a
//! UUID for VLESS and VMess. TLS (server name, ALPN, whether to skip verification for a
//! self-signed certificate) follows the host, then the inbound; so do a WebSocket transport's
//! path and `Host` (the inbound's `ws`, with early data as Xray's `?ed=N` in the path). Users
//! who may not connect (disabled, over their data limit, expired) get no proxies at all: an empty list, or a config without
//! proxy outbounds; the headers still tell their client why.

pub mod clash;
pub mod detect;
pub mod links;
pub mod options;
pub mod page;
pub mod placeholders;
pub mod singbox;
pub mod xray;

use std::collections::HashSet;

use engine::config::{InboundConfig, Network, ObfsConfig, ProtocolConfig};

pub use detect::detect;

pub use options::SubscriptionOptions;

use crate::db::UserRow;
use crate::model::{ExpireStrategy, ResetStrategy, UserStatus};

/// What a subscription knows about its user.
#[derive(Clone, Debug)]
pub struct SubscriptionUser {
    /// Name.
    pub username: String,
    /// The secret credentials derive from.
    pub key: String,
    /// Status at the time of the fetch.
    pub status: UserStatus,
    /// Bytes used since the last reset.
    pub used_traffic: i64,
    /// Bytes allowed per period (none: unlimited).
    pub data_limit: Option<i64>,
    /// When access ends, Unix seconds, when known (a fixed date, or first use plus the
    /// usage duration).
    pub expire_at: Option<i64>,
    /// Seconds of access after first use, for a user who has not started yet.
    pub on_hold_duration: Option<i64>,
    /// When used traffic resets.
    pub reset_strategy: ResetStrategy,
}

impl SubscriptionUser {
    /// The view of a stored user at `now`.
    pub fn from_row(row: &UserRow, now: i64) -> SubscriptionUser {
        let (expire_at, on_hold_duration) = match row.expire_strategy {
            ExpireStrategy::Never => (None, None),
            ExpireStrategy::FixedDate => (row.expire_date, None),
            ExpireStrategy::StartOnFirstUse => match row.activated_at {
                Some(at) => (row.usage_duration.map(|d| at + d), None),
                None => (None, row.usage_duration),
            },
        };
        SubscriptionUser {
            username: row.username.clone(),
            key: row.key.clone(),
            status: row.status(now),
            used_traffic: row.used_traffic,
            data_limit: row.data_limit.filter(|&l| l > 0),
            expire_at,
            on_hold_duration,
            reset_strategy: row.reset_strategy,
        }
    }

    /// Whether the user gets working configurations.
    pub fn may_connect(&self) -> bool {
        matches!(self.status, UserStatus::Active | UserStatus::OnHold)
    }

    /// The `subscription-userinfo` header: `upload=..; download=..; total=..; expire=..`
    /// (bytes and Unix seconds, 0 for unlimited or never). Per-direction usage is not kept per
    /// period, so, as Marzneshin does, all of it is reported as download.
    pub fn userinfo(&self) -> String {
        format!(
            "upload=0; download={}; total={}; expire={}",
            self.used_traffic.max(0),
            self.data_limit.unwrap_or(0),
            self.expire_at.unwrap_or(0).max(0)
        )
    }
}

/// A host as the generators need it (`api::hosts::Host` without its ids).
#[derive(Clone, Debug, Default)]
pub struct HostEntry {
    /// Name shown by clients (placeholders allowed).
    pub remark: String,
    /// Address clients connect to (placeholders allowed).
    pub address: String,
    /// Port (none: the inbound's).
    pub port: Option<u16>,
    /// Lower weights come first.
    pub weight: i64,
    /// TLS server name (none: the inbound's first accepted or self-signed name).
    pub sni: Option<String>,
    /// HTTP `Host` header of a WebSocket transport (none: the inbound's).
    pub host: Option<String>,
    /// HTTP path of a WebSocket transport (none: the inbound's).
    pub path: Option<String>,
    /// Whether clients use TLS towards this host (none: as the inbound does).
    pub tls: Option<bool>,
}

/// An inbound the user may use, with its hosts.
#[derive(Clone, Debug)]
pub struct InboundEntry {
    /// The engine inbound configuration.
    pub config: InboundConfig,
    /// Where clients reach it; none: the inbound's listen address.
    pub hosts: Vec<HostEntry>,
}

impl InboundEntry {
    /// An inbound from its stored JSON configuration.
    pub fn from_json(config: &str, hosts: Vec<HostEntry>) -> anyhow::Result<InboundEntry> {
        Ok(InboundEntry {
            config: serde_json::from_str(config)?,
            hosts,
        })
    }
}

/// A WebSocket transport's parameters, as clients need them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebSocket {
    /// The HTTP path of the upgrade request, with `?ed=N` when the client may send up to N
    /// bytes of early data in `Sec-WebSocket-Protocol` (Xray's convention, which share links
    /// and Xray configurations carry as they are).
    pub path: String,
    /// The HTTP `Host` header (none: the server address).
    pub host: Option<String>,
}

impl WebSocket {
    /// The path without an `?ed=N` query, and N: what sing-box and Clash take as
    /// `max_early_data` (with `Sec-WebSocket-Protocol` as the header).
    pub fn early_data(&self) -> (&str, Option<u32>) {
        match self.path.split_once("?ed=") {
            Some((path, n)) => match n.parse() {
                Ok(n) => (path, Some(n)),
                Err(_) => (&self.path, None),
            },
            None => (&self.path, None),
        }
    }
}

/// The header early data travels in (what the engine and Xray read).
pub const EARLY_DATA_HEADER: &str = "Sec-WebSocket-Protocol";

/// How a client carries its protocol to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP (TLS, if any, directly on it).
    Tcp,
    /// WebSocket.
    WebSocket(WebSocket),
}

impl Transport {
    /// Its name in links and in `{TRANSPORT}`.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::WebSocket(_) => "ws",
        }
    }
}

/// TLS towards the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// Server name (SNI) to send and verify.
    pub server_name: Option<String>,
    /// ALPN protocols to offer.
    pub alpn: Vec<String>,
    /// Skip certificate verification: the inbound uses a self-signed certificate.
    pub allow_insecure: bool,
}

/// One configuration for a client: where to connect, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    /// Name shown by clients, unique within one subscription.
    pub remark: String,
    /// Host name or IP address (IPv6 without brackets).
    pub server: String,
    /// Port.
    pub port: u16,
    /// Whether the inbound serves TCP.
    pub tcp: bool,
    /// Whether the inbound serves UDP (for VLESS, VMess and Trojan: inside the stream).
    pub udp: bool,
    /// The protocol and the user's credentials.
    pub protocol: ProxyProtocol,
    /// TLS, if clients use it (never for Shadowsocks).
    pub tls: Option<TlsSettings>,
    /// The transport (always TCP for Shadowsocks).
    pub transport: Transport,
}

/// The protocol of a [`Proxy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// Shadowsocks.
    Shadowsocks(ShadowsocksProxy),
    /// VLESS, with the user's UUID.
    Vless {
        /// The user's UUID on this inbound.
        id: String,
        /// The inbound runs XTLS Vision (`flow: xtls-rprx-vision`).
        vision: bool,
    },
    /// VMess AEAD (alterId 0), with the user's UUID.
    Vmess {
        /// The user's UUID on this inbound.
        id: String,
    },
    /// Trojan, with the user's password.
    Trojan {
        /// The user's password on this inbound.
        password: String,
    },
    /// Hysteria2 (QUIC, always TLS with ALPN `h3`), with the user's password.
    Hysteria2 {
        /// The user's password on this inbound.
        password: String,
        /// The Salamander obfuscation password, when the inbound obfuscates.
        obfs: Option<String>,
    },
}

impl ProxyProtocol {
    /// The protocol's name (`shadowsocks`, `vless`, `vmess`, `trojan`).
    pub fn name(&self) -> &'static str {
        match self {
            ProxyProtocol::Shadowsocks(_) => "shadowsocks",
            ProxyProtocol::Vless { .. } => "vless",
            ProxyProtocol::Vmess { .. } => "vmess",
            ProxyProtocol::Trojan { .. } => "trojan",
            ProxyProtocol::Hysteria2 { .. } => "hysteria2",
        }
    }
}

/// A Shadowsocks client configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowsocksProxy {
    /// Method name (`aes-128-gcm`, `2022-blake3-aes-128-gcm`, ...).
    pub method: &'static str,
    /// The server's identity PSK (2022 with identity headers).
    pub psk: Option<String>,
    /// The user's credential on this inbound.
    pub key: String,
}

impl ShadowsocksProxy {
    /// The password a client is given: `psk:key` with a server PSK, else the key.
    pub fn password(&self) -> String {
        match &self.psk {
            Some(psk) => format!("{psk}:{}", self.key),
            None => self.key.clone(),
        }
    }
}

/// What a subscription is sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Share links, one a line.
    Links,
    /// Base64 of the share links (what v2rayN-style clients expect).
    Base64,
    /// A sing-box configuration (JSON).
    SingBox,
    /// A Clash Meta (mihomo) configuration (YAML).
    ClashMeta,
    /// A JSON array of Xray configurations, one per proxy.
    Xray,
    /// An HTML page for a person.
    Page,
}

impl Format {
    /// The `content-type` of the body.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Links | Format::Base64 => "text/plain; charset=utf-8",
            Format::SingBox | Format::Xray => "application/json",
            Format::ClashMeta => "text/yaml; charset=utf-8",
            Format::Page => "text/html; charset=utf-8",
        }
    }
}

/// Tags the generators use for their own outbounds and groups; a remark equal to one of
/// these (ignoring case) is renamed.
const RESERVED: &[&str] = &[
    "proxy", "auto", "direct", "block", "reject", "pass", "global", "dns-out", "tun-in", "socks",
];

/// Private and local ranges that clients reach directly.
pub const PRIVATE_RANGES: &[&str] = &[
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// The proxies `user` is given: one per host of each inbound (the inbound's listen address
/// when it has none), ordered by weight (lower first, as Marzneshin orders them), remarks made
/// unique. Empty when the user may not connect.
pub fn proxies<'a>(
    user: &SubscriptionUser,
    inbounds: impl IntoIterator<Item = &'a InboundEntry>,
    now: i64,
) -> Vec<Proxy> {
    if !user.may_connect() {
        return Vec::new();
    }
    let vars = placeholders::Variables::new(user, now);
    // Replaces `*` in a host's SNI and `Host` (a fresh one per fetch, as in Marzneshin).
    let salt: String = (0..8)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let mut weighted: Vec<(i64, Proxy)> = Vec::new();
    for inbound in inbounds {
        let c = &inbound.config;
        let default_host = HostEntry {
            remark: c.tag.clone(),
            address: c.listen.ip().to_string(),
            weight: 1,
            ..HostEntry::default()
        };
        let hosts = if inbound.hosts.is_empty() {
            std::slice::from_ref(&default_host)
        } else {
            &inbound.hosts[..]
        };
        let credential = crate::sync::credential(c, &user.key);
        let (protocol, udp) = match &c.protocol {
            ProtocolConfig::Shadowsocks(ss) => (
                ProxyProtocol::Shadowsocks(ShadowsocksProxy {
                    method: ss.method().name(),
                    psk: ss.psk.clone(),
                    key: credential,
                }),
                c.network.contains(&Network::Udp),
            ),
            // UDP travels inside the stream: always offered.
            ProtocolConfig::Vless(c) => (
                ProxyProtocol::Vless {
                    id: credential,
                    vision: c.flow.is_some(),
                },
                true,
            ),
            ProtocolConfig::Vmess(_) => (ProxyProtocol::Vmess { id: credential }, true),
            ProtocolConfig::Trojan(_) => (
                ProxyProtocol::Trojan {
                    password: credential,
                },
                true,
            ),
            // UDP travels in QUIC datagrams: always offered.
            ProtocolConfig::Hysteria2(h) => (
                ProxyProtocol::Hysteria2 {
                    password: credential,
                    obfs: h.obfs.as_ref().map(|o| match o {
                        ObfsConfig::Salamander { password } => password.clone(),
                    }),
                },
                true,
            ),
        };
        let shadowsocks = matches!(protocol, ProxyProtocol::Shadowsocks(_));
        let hysteria2 = matches!(protocol, ProxyProtocol::Hysteria2 { .. });
        for host in hosts {
            let port = host.port.unwrap_or(c.listen.port());
            if port == 0 {
                // The engine picked a port at run time: no client can be told it.
                continue;
            }
            let (transport, tls) = if shadowsocks {
                (Transport::Tcp, None)
            } else if hysteria2 {
                // QUIC is always TLS 1.3 with ALPN h3, whatever the host says.
                let host = HostEntry {
                    tls: Some(true),
                    ..host.clone()
                };
                let tls = tls(c, &host, &vars, &salt).map(|t| TlsSettings {
                    alpn: vec!["h3".into()],
                    ..t
                });
                (Transport::Tcp, tls)
            } else {
                (
                    transport(inbound, host, &vars, &salt),
                    tls(c, host, &vars, &salt),
                )
            };
            let vars = vars.for_protocol(&c.protocol, transport.name());
            let address = vars.fill(&host.address);
            weighted.push((
                host.weight,
                Proxy {
                    remark: vars.fill(&host.remark),
                    server: address.trim_matches(['[', ']']).to_owned(),
                    port,
                    tcp: c.network.contains(&Network::Tcp),
                    udp,
                    protocol: protocol.clone(),
                    tls,
                    transport,
                },
            ));
        }
    }
    weighted.sort_by_key(|(w, _)| *w);
    let mut out: Vec<Proxy> = weighted.into_iter().map(|(_, p)| p).collect();
    unique_remarks(&mut out);
    out
}

/// One of the comma-separated `choices` (as Marzneshin reads a host's `sni` and `host`), picked
/// at random, with each `*` replaced by `salt`: `*.cdn.example` gives every fetch a fresh name
/// under a wildcard certificate.
fn pick(choices: &str, salt: &str) -> Option<String> {
    use rand::seq::SliceRandom as _;
    let list: Vec<&str> = choices
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    list.choose(&mut rand::thread_rng())
        .map(|c| c.replace('*', salt))
}

/// The transport clients use towards `host` of `inbound`: WebSocket when the inbound has it,
/// the host's path and `Host` header replacing the inbound's (an inbound's path gets `?ed=N`
/// when it accepts early data; a host's path is taken as written).
fn transport(
    inbound: &InboundEntry,
    host: &HostEntry,
    vars: &placeholders::Variables,
    salt: &str,
) -> Transport {
    match &inbound.config.ws {
        None => Transport::Tcp,
        Some(ws) => Transport::WebSocket(WebSocket {
            path: host.path.as_deref().map_or_else(
                || match ws.max_early_data {
                    0 => ws.path.clone(),
                    n => format!("{}?ed={n}", ws.path),
                },
                |p| vars.fill(p),
            ),
            host: host
                .host
                .as_deref()
                .and_then(|h| pick(&vars.fill(h), salt))
                .or_else(|| ws.host.clone()),
        }),
    }
}

/// TLS towards `host` of inbound `c`, if clients use it: the host decides, else the inbound.
/// The server name is the host's, else the inbound's first accepted or self-signed name.
fn tls(
    c: &InboundConfig,
    host: &HostEntry,
    vars: &placeholders::Variables,
    salt: &str,
) -> Option<TlsSettings> {
    let inbound = c.tls.as_ref();
    if !host.tls.unwrap_or(inbound.is_some()) {
        return None;
    }
    let inbound_name = inbound.and_then(|t| {
        t.server_names
            .first()
            .or(t.self_signed.as_ref().and_then(|n| n.first()))
            .cloned()
    });
    Some(TlsSettings {
        server_name: host
            .sni
            .as_deref()
            .and_then(|s| pick(&vars.fill(s), salt))
            .or(inbound_name),
        alpn: inbound.map(|t| t.alpn.clone()).unwrap_or_default(),
        allow_insecure: inbound.is_some_and(|t| t.self_signed.is_some()),
    })
}

/// Renames repeated (or reserved) remarks to `remark (2)`, `remark (3)`, ...: sing-box tags
/// and Clash names must be unique.
fn unique_remarks(proxies: &mut [Proxy]) {
    let mut seen: HashSet<String> = RESERVED.iter().map(|s| s.to_string()).collect();
    for p in proxies {
        let base = match p.remark.trim() {
            "" => "server".to_owned(),
            r => r.to_owned(),
        };
        let mut name = base.clone();
        let mut n = 2;
        while !seen.insert(name.to_lowercase()) {
            name = format!("{base} ({n})");
            n += 1;
        }
        p.remark = name;
    }
}

/// The body of a subscription in `format` (the page also shows the support URL of `options`).
pub fn render(
    format: Format,
    user: &SubscriptionUser,
    proxies: &[Proxy],
    options: &SubscriptionOptions,
    now: i64,
) -> String {
    match format {
        Format::Links => links::render(proxies),
        Format::Base64 => links::render_base64(proxies),
        Format::SingBox => singbox::render(proxies),
        Format::ClashMeta => clash::render(proxies),
        Format::Xray => xray::render(proxies),
        Format::Page => page::render(user, proxies, options.support_url.as_deref(), now),
    }
}

/// The `profile-title` header: `base64:` and the title in base64, as clients expect.
pub fn profile_title(title: &str) -> String {
    use base64::Engine as _;
    format!(
        "base64:{}",
        base64::engine::general_purpose::STANDARD.encode(title)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An active user with a fixed key.
    pub fn user() -> SubscriptionUser {
        SubscriptionUser {
            username: "alice".into(),
            key: "0123456789abcdef0123456789abcdef".into(),
            status: UserStatus::Active,
            used_traffic: 1_610_612_736,
            data_limit: Some(10 * 1024 * 1024 * 1024),
            expire_at: Some(1_900_000_000),
            on_hold_duration: None,
            reset_strategy: ResetStrategy::Month,
        }
    }

    /// An inbound from JSON.
    pub fn inbound(tag: &str, listen: &str, settings: &str) -> InboundConfig {
        serde_json::from_str(&format!(
            r#"{{"tag":"{tag}","listen":"{listen}","protocol":"shadowsocks","settings":{settings}}}"#
        ))
        .unwrap()
    }

    pub fn host(remark: &str, address: &str, port: Option<u16>, weight: i64) -> HostEntry {
        HostEntry {
            remark: remark.into(),
            address: address.into(),
            port,
            weight,
            ..HostEntry::default()
        }
    }

    /// Two inbounds (AEAD 2017 without hosts; 2022 with a PSK and two hosts).
    pub fn entries() -> Vec<InboundEntry> {
        vec![
            InboundEntry {
                config: inbound(
                    "plain",
                    "203.0.113.7:8388",
                    r#"{"method":"aes-256-gcm","users":[]}"#,
                ),
                hosts: vec![],
            },
            InboundEntry {
                config: inbound(
                    "multi",
                    "0.0.0.0:8443",
                    r#"{"method":"2022-blake3-aes-128-gcm","psk":"AAAAAAAAAAAAAAAAAAAAAA==","users":[]}"#,
                ),
                hosts: vec![
                    host("{USERNAME} de", "de.example.com", None, 2),
                    host("v6", "[2001:db8::1]", Some(9443), 0),
                ],
            },
        ]
    }

    #[test]
    fn hysteria2_in_every_format() {
        let u = user();
        let entry = InboundEntry {
            config: serde_json::from_str(
                r#"{"tag":"hy2","listen":"0.0.0.0:443","protocol":"hysteria2",
                    "settings":{"obfs":{"type":"salamander","password":"ob fs"}},
                    "tls":{"self_signed":["localhost"]}}"#,
            )
            .unwrap(),
            hosts: vec![HostEntry {
                // A host cannot turn TLS off: QUIC always runs it.
                tls: Some(false),
                sni: Some("hy.example.com".into()),
                ..host("hy", "hy.example.com", None, 1)
            }],
        };
        let p = proxies(&u, &[entry], 0);
        let password = hex_password(&u.key);
        assert_eq!(
            p[0].protocol,
            ProxyProtocol::Hysteria2 {
                password: password.clone(),
                obfs: Some("ob fs".into())
            }
        );
        let tls = p[0].tls.as_ref().expect("always TLS");
        assert_eq!(tls.alpn, ["h3"]);
        assert_eq!(tls.server_name.as_deref(), Some("hy.example.com"));
        assert_eq!(
            links::link(&p[0]),
            format!(
                "hysteria2://{password}@hy.example.com:443/?sni=hy.example.com\
                 &insecure=1&obfs=salamander&obfs-password=ob%20fs#hy"
            )
        );
        let out = singbox::outbound(&p[0]);
        assert_eq!(out["type"], "hysteria2");
        assert_eq!(out["password"], password.as_str());
        assert_eq!(out["tls"]["alpn"], serde_json::json!(["h3"]));
        assert_eq!(out["obfs"]["password"], "ob fs");
        let yaml = clash::render(&p);
        assert!(yaml.contains("type: hysteria2"), "{yaml}");
        assert!(yaml.contains("obfs: salamander"), "{yaml}");
        assert!(yaml.contains("obfs-password: ob fs"), "{yaml}");
        assert_eq!(xray::render(&p), "[]");
    }

    /// Hysteria2 and Trojan passwords: the key's digest in hex.
    fn hex_password(key: &str) -> String {
        crate::sync::key_digest(key)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn proxies_follow_hosts_weights_and_credentials() {
        let u = user();
        let p = proxies(&u, &entries(), 1_700_000_000);
        let remarks: Vec<&str> = p.iter().map(|p| p.remark.as_str()).collect();
        assert_eq!(remarks, ["v6", "plain", "alice de"], "ordered by weight");
        assert_eq!((p[0].server.as_str(), p[0].port), ("2001:db8::1", 9443));
        assert_eq!((p[1].server.as_str(), p[1].port), ("203.0.113.7", 8388));
        assert_eq!((p[2].server.as_str(), p[2].port), ("de.example.com", 8443));
        let ProxyProtocol::Shadowsocks(plain) = &p[1].protocol else {
            panic!("not Shadowsocks: {:?}", p[1].protocol)
        };
        assert_eq!(plain.method, "aes-256-gcm");
        assert_eq!(
            plain.password(),
            crate::sync::credential(&entries()[0].config, &u.key)
        );
        let ProxyProtocol::Shadowsocks(multi) = &p[2].protocol else {
            panic!("not Shadowsocks: {:?}", p[2].protocol)
        };
        assert_eq!(
            multi.password(),
            format!(
                "AAAAAAAAAAAAAAAAAAAAAA==:{}",
                crate::sync::credential(&entries()[1].config, &u.key)
            )
        );
        assert!(p.iter().all(|p| p.tcp && p.udp));
    }

    /// VLESS with a self-signed certificate and ALPN, Trojan behind a TLS-terminating host,
    /// VMess over a WebSocket (its hosts override the path and `Host`).
    pub fn stream_entries() -> Vec<InboundEntry> {
        let entry = |json: serde_json::Value, hosts: Vec<HostEntry>| {
            InboundEntry::from_json(&json.to_string(), hosts).unwrap()
        };
        vec![
            entry(
                serde_json::json!({"tag": "vl", "listen": "203.0.113.7:443", "protocol": "vless",
                    "settings": {"users": []},
                    "tls": {"self_signed": ["localhost"], "alpn": ["h2", "http/1.1"]}}),
                vec![],
            ),
            entry(
                serde_json::json!({"tag": "tj", "listen": "0.0.0.0:8443", "protocol": "trojan",
                    "settings": {"users": []}}),
                vec![HostEntry {
                    sni: Some("{USERNAME}.example.com".into()),
                    tls: Some(true),
                    ..host("tj {PROTOCOL} {TRANSPORT}", "cdn.example.com", Some(443), 1)
                }],
            ),
            entry(
                serde_json::json!({"tag": "vm", "listen": "0.0.0.0:10086", "protocol": "vmess",
                    "settings": {"users": []},
                    "ws": {"path": "/vm", "host": "in.example"}}),
                vec![
                    host("vm {TRANSPORT}", "vm.example.com", None, 1),
                    HostEntry {
                        path: Some("/{USERNAME}".into()),
                        host: Some("cdn.example".into()),
                        ..host("vm cdn", "cdn.example.com", None, 1)
                    },
                ],
            ),
        ]
    }

    #[test]
    fn stream_protocols_get_credentials_tls_and_transport() {
        let u = user();
        let p = proxies(&u, &stream_entries(), 0);
        let remarks: Vec<&str> = p.iter().map(|p| p.remark.as_str()).collect();
        assert_eq!(remarks, ["vl", "tj trojan tcp", "vm ws", "vm cdn"]);
        let uuid = crate::sync::credential(&stream_entries()[0].config, &u.key);
        assert_eq!(
            p[0].protocol,
            ProxyProtocol::Vless {
                id: uuid.clone(),
                vision: false
            }
        );
        assert_eq!(p[0].transport, Transport::Tcp);
        assert_eq!(
            p[0].tls,
            Some(TlsSettings {
                server_name: Some("localhost".into()),
                alpn: vec!["h2".into(), "http/1.1".into()],
                allow_insecure: true,
            })
        );
        assert!(p[0].tcp && p[0].udp);
        assert_eq!(
            p[1].protocol,
            ProxyProtocol::Trojan {
                password: crate::sync::key_digest(&u.key)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            }
        );
        assert_eq!((p[1].server.as_str(), p[1].port), ("cdn.example.com", 443));
        assert_eq!(
            p[1].tls,
            Some(TlsSettings {
                server_name: Some("alice.example.com".into()),
                ..TlsSettings::default()
            })
        );
        assert_eq!(p[2].protocol, ProxyProtocol::Vmess { id: uuid });
        assert_eq!(p[2].tls, None);
        assert_eq!(
            p[2].transport,
            Transport::WebSocket(WebSocket {
                path: "/vm?ed=2048".into(),
                host: Some("in.example".into())
            })
        );
        assert_eq!(
            p[3].transport,
            Transport::WebSocket(WebSocket {
                path: "/alice".into(),
                host: Some("cdn.example".into())
            })
        );
        // A host can turn the inbound's TLS off.
        let mut e = stream_entries();
        e[0].hosts = vec![HostEntry {
            tls: Some(false),
            ..host("plain", "203.0.113.7", None, 1)
        }];
        assert_eq!(proxies(&u, &e, 0)[0].tls, None);
    }

    #[test]
    fn sni_and_host_lists_pick_one_and_fill_wildcards() {
        let mut e = stream_entries();
        e[2].hosts[1].host = Some("a.example, b.example,".into());
        e[1].hosts[0].sni = Some("*.cdn.example".into());
        let mut seen = HashSet::new();
        for _ in 0..64 {
            let p = proxies(&user(), &e, 0);
            let Transport::WebSocket(ws) = &p[3].transport else {
                panic!("not a WebSocket: {:?}", p[3].transport)
            };
            seen.insert(ws.host.clone().unwrap());
            let sni = p[1].tls.as_ref().unwrap().server_name.clone().unwrap();
            let salt = sni.strip_suffix(".cdn.example").unwrap();
            assert_eq!(salt.len(), 16, "{sni}");
            assert!(salt.bytes().all(|b| b.is_ascii_hexdigit()), "{sni}");
        }
        let expected: HashSet<String> = ["a.example".to_owned(), "b.example".to_owned()].into();
        assert_eq!(seen, expected);
        assert_eq!(pick(" , ", "x"), None);
    }

    #[test]
    fn early_data_is_split_off_the_path() {
        let ws = |path: &str| WebSocket {
            path: path.into(),
            host: None,
        };
        assert_eq!(ws("/vm?ed=2048").early_data(), ("/vm", Some(2048)));
        assert_eq!(ws("/vm").early_data(), ("/vm", None));
        assert_eq!(ws("/vm?ed=x").early_data(), ("/vm?ed=x", None));
    }

    #[test]
    fn inactive_users_get_nothing() {
        for status in [
            UserStatus::Disabled,
            UserStatus::Limited,
            UserStatus::Expired,
        ] {
            let u = SubscriptionUser { status, ..user() };
            assert!(proxies(&u, &entries(), 0).is_empty(), "{status:?}");
        }
        let on_hold = SubscriptionUser {
            status: UserStatus::OnHold,
            ..user()
        };
        assert_eq!(proxies(&on_hold, &entries(), 0).len(), 3);
    }

    #[test]
    fn remarks_are_unique_and_never_reserved() {
        let mut e = entries();
        e[1].hosts = vec![
            host("same", "a.example", None, 1),
            host("same", "b.example", None, 1),
            host("Proxy", "c.example", None, 1),
            host(" ", "d.example", None, 1),
        ];
        let p = proxies(&user(), &e, 0);
        let remarks: Vec<&str> = p.iter().map(|p| p.remark.as_str()).collect();
        assert_eq!(
            remarks,
            ["plain", "same", "same (2)", "Proxy (2)", "server"]
        );
    }

    #[test]
    fn userinfo_header() {
        assert_eq!(
            user().userinfo(),
            "upload=0; download=1610612736; total=10737418240; expire=1900000000"
        );
        let unlimited = SubscriptionUser {
            data_limit: None,
            expire_at: None,
            ..user()
        };
        assert_eq!(
            unlimited.userinfo(),
            "upload=0; download=1610612736; total=0; expire=0"
        );
        assert_eq!(profile_title("alice"), "base64:YWxpY2U=");
    }
}

//! The engine's configuration: a JSON document, documented in `docs/engine-config.md` with a
//! JSON Schema in `docs/engine-config.schema.json`.
//!
//! Loading is two steps, both before anything is bound: serde parses the document (an error
//! names the JSON path of the offending field), then [`Config::validate`] checks what serde
//! cannot (keys decode, names are unique, methods know identity headers, ...), again naming the
//! field.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use proto::shadowsocks::{Method, UserKeys};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A configuration problem, with the path of the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The document is not valid JSON or a field has the wrong type.
    #[error("{field}: {message}")]
    Parse {
        /// JSON path of the field (`inbounds[0].settings.method`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A field's value is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// JSON path of the field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// The whole engine configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Number of executors (threads, one per core). Default: every CPU available.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Where the engine may connect.
    #[serde(default)]
    pub outbound: OutboundConfig,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Routing rules (docs/rules.md). Without them only the built-in private-range block
    /// applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<crate::rules::RulesConfig>,
    /// Listeners (none is fine: the panel adds them later).
    #[serde(default)]
    pub inbounds: Vec<InboundConfig>,
}

/// Destination policy of the direct outbound.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// Allow 127.0.0.0/8 and ::1 (local testing only).
    #[serde(default)]
    pub allow_loopback: bool,
    /// Allow private (RFC 1918, ULA), link-local, CGNAT and unspecified ranges.
    #[serde(default)]
    pub allow_private: bool,
}

/// Timeouts, in seconds.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Time a client has to complete its handshake; also how long a failed handshake is
    /// drained before the connection is closed.
    pub handshake_secs: u64,
    /// Time to resolve a destination's name, and then to connect to each of its addresses.
    pub connect_secs: u64,
    /// A TCP relay with no traffic in either direction for this long is closed.
    pub idle_secs: u64,
    /// A UDP session with no traffic for this long is forgotten.
    pub udp_session_secs: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake_secs: 30,
            connect_secs: 10,
            idle_secs: 300,
            udp_session_secs: 120,
        }
    }
}

/// One listener.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundConfig {
    /// Unique name, used in counters and links.
    pub tag: String,
    /// Address and port to listen on (port 0 picks a free port, the same on every core).
    pub listen: SocketAddr,
    /// Which transports to serve: `tcp`, `udp` or both (default both).
    #[serde(default = "default_network")]
    pub network: Vec<Network>,
    /// The protocol and its settings.
    #[serde(flatten)]
    pub protocol: ProtocolConfig,
    /// TLS in front of the protocol (VLESS, Trojan, VMess).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// WebSocket in front of the protocol (VLESS, Trojan, VMess), inside TLS when `tls` is
    /// set too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<WsConfig>,
}

impl InboundConfig {
    /// Whether this inbound listens on `network`. VLESS, Trojan and VMess carry UDP inside
    /// their TCP stream, so they never bind a UDP socket (`udp` in `network` is ignored);
    /// Hysteria2 carries TCP inside QUIC, so it binds only UDP.
    pub fn listens(&self, network: Network) -> bool {
        self.network.contains(&network)
            && match self.protocol {
                ProtocolConfig::Shadowsocks(_) => true,
                ProtocolConfig::Hysteria2(_) => network == Network::Udp,
                _ => network == Network::Tcp,
            }
    }
}

/// TLS server settings of an inbound: a certificate from PEM files, or a self-signed one made
/// at start (for testing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM file), leaf first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<PathBuf>,
    /// Private key of the certificate (PEM file: PKCS#8, PKCS#1 or SEC1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Instead of `certificate` and `key`: generate a self-signed certificate for these names
    /// when the inbound starts (testing only: clients must skip verification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<Vec<String>>,
    /// ALPN protocols offered, in order of preference (`h2`, `http/1.1`); empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// Server names (SNI) accepted; a client naming another (or none) is refused during the
    /// TLS handshake. Empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_names: Vec<String>,
}

/// WebSocket transport settings of an inbound (the V2Ray family's `ws`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsConfig {
    /// The request path clients must use (the query is ignored, so Xray's `/path?ed=2048`
    /// matches `/path`). Default `/`.
    #[serde(default = "default_ws_path")]
    pub path: String,
    /// The `Host` clients must send (compared without port, case-insensitively); any when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The early data clients are told to send in the `Sec-WebSocket-Protocol` header
    /// (base64url, as Xray's `?ed=` and sing-box's `max_early_data` with
    /// `early_data_header_name: Sec-WebSocket-Protocol` send it), at most 4096; 0 turns early
    /// data off. Default 2048. When on, the server takes any length that fits the request head
    /// (8 KiB), as Xray's and sing-box's servers do.
    #[serde(default = "default_max_early_data")]
    pub max_early_data: usize,
}

fn default_ws_path() -> String {
    "/".into()
}

fn default_max_early_data() -> usize {
    2048
}

/// Largest `max_early_data`: its base64 text must fit the request head limit.
pub const MAX_EARLY_DATA: usize = 4096;

impl WsConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if !self.path.starts_with('/')
            || self
                .path
                .bytes()
                .any(|b| b == b'?' || b == b'#' || !b.is_ascii_graphic())
        {
            return Err(invalid(
                format!("{at}.path"),
                "must start with / and hold no query, fragment, space or control character",
            ));
        }
        if let Some(host) = &self.host {
            if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(format!("{at}.host"), "must be a host name"));
            }
        }
        if self.max_early_data > MAX_EARLY_DATA {
            return Err(invalid(
                format!("{at}.max_early_data"),
                format!("at most {MAX_EARLY_DATA}"),
            ));
        }
        Ok(())
    }
}

fn default_network() -> Vec<Network> {
    vec![Network::Tcp, Network::Udp]
}

/// A transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// The protocol of an inbound, with its settings.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "protocol", content = "settings", rename_all = "lowercase")]
pub enum ProtocolConfig {
    /// Shadowsocks (AEAD 2017 and 2022).
    Shadowsocks(ShadowsocksConfig),
    /// VLESS (version 0), usually with `tls`.
    Vless(VlessConfig),
    /// Trojan, usually with `tls`.
    Trojan(TrojanConfig),
    /// VMess AEAD (alterId 0).
    Vmess(VmessConfig),
    /// Hysteria2 over QUIC (UDP); `tls` is required.
    Hysteria2(Hysteria2Config),
}

impl ProtocolConfig {
    /// The protocol's name as it appears in the config.
    pub fn name(&self) -> &'static str {
        match self {
            ProtocolConfig::Shadowsocks(_) => "shadowsocks",
            ProtocolConfig::Vless(_) => "vless",
            ProtocolConfig::Trojan(_) => "trojan",
            ProtocolConfig::Vmess(_) => "vmess",
            ProtocolConfig::Hysteria2(_) => "hysteria2",
        }
    }

    /// The users listed in the settings: `(name, credential)`, the credential being the
    /// password (Shadowsocks, Trojan) or the id (VLESS, VMess).
    pub fn users(&self) -> Vec<(&str, &str)> {
        match self {
            ProtocolConfig::Shadowsocks(c) => c.users.iter().map(UserConfig::pair).collect(),
            ProtocolConfig::Trojan(c) => c.users.iter().map(UserConfig::pair).collect(),
            ProtocolConfig::Vless(c) => c.users.iter().map(IdUserConfig::pair).collect(),
            ProtocolConfig::Vmess(c) => c.users.iter().map(IdUserConfig::pair).collect(),
            ProtocolConfig::Hysteria2(c) => c.users.iter().map(UserConfig::pair).collect(),
        }
    }

    /// Drops the users listed in the settings (what is left identifies the listener).
    pub fn clear_users(&mut self) {
        match self {
            ProtocolConfig::Shadowsocks(c) => c.users.clear(),
            ProtocolConfig::Trojan(c) => c.users.clear(),
            ProtocolConfig::Vless(c) => c.users.clear(),
            ProtocolConfig::Vmess(c) => c.users.clear(),
            ProtocolConfig::Hysteria2(c) => c.users.clear(),
        }
    }
}

/// VLESS inbound settings.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VlessConfig {
    /// Users, each with a UUID.
    #[serde(default)]
    pub users: Vec<IdUserConfig>,
    /// `"xtls-rprx-vision"`: every user of the inbound uses XTLS Vision (padding, then
    /// direct copy of TLS 1.3 traffic), as an Xray client with `flow` set does. Needs `tls`
    /// and no `ws`. Without it, requests that ask for a flow are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<VlessFlow>,
    /// Where a connection that is not VLESS or names no user goes, with every byte read so
    /// far (`"127.0.0.1:8080"`, a web site); without it such a connection is drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<SocketAddr>,
}

/// A VLESS flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VlessFlow {
    /// XTLS Vision.
    #[serde(rename = "xtls-rprx-vision")]
    Vision,
}

/// Trojan inbound settings.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrojanConfig {
    /// Users, each with a password.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Where a connection that is not Trojan or has a wrong password goes, with every byte
    /// read so far; without it such a connection is drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<SocketAddr>,
}

/// Hysteria2 inbound settings. The inbound's `tls` holds the certificate (QUIC runs TLS 1.3
/// with ALPN `h3` whatever `tls.alpn` says).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hysteria2Config {
    /// Users, each with a password (the client's `hysteria-auth`).
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Obfuscation of every QUIC packet; clients must use the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obfs: Option<ObfsConfig>,
    /// What any HTTP/3 request other than a successful authentication gets (a prober sees a
    /// web server). Default: `404 page not found`, as the reference server answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masquerade: Option<MasqueradeConfig>,
    /// The most the server sends to one client, in Mbit/s: caps the rate a client declares
    /// (Brutal). None: the client's declared rate as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_mbps: Option<u32>,
    /// The most one client should send to the server, in Mbit/s, told to clients in the
    /// authentication answer (they cap their Brutal rate at it). None: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_mbps: Option<u32>,
    /// Ignore the rates clients declare: no Brutal either way; the server answers
    /// `Hysteria-CC-RX: auto`, so clients run their own congestion control too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_client_bandwidth: bool,
}

/// Packet obfuscation of a Hysteria2 inbound.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum ObfsConfig {
    /// Salamander: each packet XORed with BLAKE2b-256(password, salt) behind an 8-byte salt.
    Salamander {
        /// Shared password (at least 4 bytes).
        password: String,
    },
}

/// The web site a Hysteria2 inbound shows to anything but an authenticated client.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum MasqueradeConfig {
    /// A fixed answer to every request.
    String {
        /// The HTTP status (default 200).
        #[serde(default = "default_masquerade_status")]
        status_code: u16,
        /// The body.
        #[serde(default)]
        content: String,
        /// Response header fields (names are sent lowercase).
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
    },
    /// A static site: the files under a directory, read when the inbound starts (at most
    /// 64 MiB, 10 000 files; symbolic links are not followed) and served by path, `index.html`
    /// for a directory, `404 page not found` for anything else.
    File {
        /// The directory.
        dir: std::path::PathBuf,
    },
    /// A reverse proxy: every request goes to the operator's own HTTP site and its answer
    /// comes back (the destination rules do not apply: the operator names it, not a client).
    Proxy {
        /// The site (`"127.0.0.1:8080"`), plain HTTP/1.1.
        address: SocketAddr,
        /// The `Host` sent to the site; default: the request's authority.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
}

fn default_masquerade_status() -> u16 {
    200
}

/// VMess inbound settings.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmessConfig {
    /// Users, each with a UUID.
    #[serde(default)]
    pub users: Vec<IdUserConfig>,
}

/// A user of a VLESS or VMess inbound.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdUserConfig {
    /// The user's name: counters are kept per name across inbounds.
    pub name: String,
    /// UUID (or any other text of 1 to 30 bytes, mapped to a UUID as Xray does).
    pub id: String,
}

impl IdUserConfig {
    fn pair(&self) -> (&str, &str) {
        (&self.name, &self.id)
    }
}

/// Shadowsocks inbound settings.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowsocksConfig {
    /// Cipher name.
    pub method: String,
    /// 2022 AES methods: server identity PSK (base64) that turns on identity headers (SIP023),
    /// so many users share the port with O(1) lookup. Clients then use `psk:user_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psk: Option<String>,
    /// Users.
    pub users: Vec<UserConfig>,
}

/// A user of a Shadowsocks or Trojan inbound.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user's name: counters are kept per name across inbounds.
    pub name: String,
    /// Password: Shadowsocks AEAD (2017) and Trojan, any text; Shadowsocks 2022, a base64 PSK
    /// of the method's key size.
    pub password: String,
}

impl UserConfig {
    fn pair(&self) -> (&str, &str) {
        (&self.name, &self.password)
    }
}

impl Config {
    /// The JSON Schema of the configuration (checked in as `docs/engine-config.schema.json`).
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(Config);
        serde_json::to_string_pretty(&schema).expect("schema serialises") + "\n"
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_json(&text)
    }

    /// Parses and validates a configuration document.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::Parse {
                field: if field == "." {
                    "(document)".into()
                } else {
                    field
                },
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks everything serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers == Some(0) {
            return Err(invalid(
                "workers",
                "must be at least 1 (omit it to use every CPU)",
            ));
        }
        let t = &self.timeouts;
        for (name, v) in [
            ("handshake_secs", t.handshake_secs),
            ("connect_secs", t.connect_secs),
            ("idle_secs", t.idle_secs),
            ("udp_session_secs", t.udp_session_secs),
        ] {
            if v == 0 {
                return Err(invalid(
                    format!("timeouts.{name}"),
                    "must be at least 1 second",
                ));
            }
        }
        self.compile_rules()?;
        let mut tags = HashSet::new();
        let mut binds = HashSet::new();
        for (i, inbound) in self.inbounds.iter().enumerate() {
            let at = format!("inbounds[{i}]");
            if inbound.tag.is_empty() {
                return Err(invalid(format!("{at}.tag"), "must not be empty"));
            }
            if !tags.insert(inbound.tag.as_str()) {
                return Err(invalid(
                    format!("{at}.tag"),
                    format!("duplicate tag {:?}", inbound.tag),
                ));
            }
            if inbound.network.is_empty() {
                return Err(invalid(
                    format!("{at}.network"),
                    "name at least one of tcp, udp",
                ));
            }
            if !inbound.listens(Network::Tcp) && !inbound.listens(Network::Udp) {
                let message = match inbound.protocol {
                    ProtocolConfig::Hysteria2(_) => {
                        "hysteria2 runs over UDP (QUIC): name udp".to_owned()
                    }
                    _ => format!(
                        "{} runs over TCP (UDP travels inside it): name tcp",
                        inbound.protocol.name()
                    ),
                };
                return Err(invalid(format!("{at}.network"), message));
            }
            for net in inbound.network.iter().filter(|n| inbound.listens(**n)) {
                if inbound.listen.port() != 0 && !binds.insert((inbound.listen, *net)) {
                    return Err(invalid(
                        format!("{at}.listen"),
                        format!(
                            "{} is already used by another inbound for {net:?}",
                            inbound.listen
                        ),
                    ));
                }
            }
            let settings = format!("{at}.settings");
            match &inbound.protocol {
                ProtocolConfig::Shadowsocks(ss) => ss.validate(&settings)?,
                ProtocolConfig::Vless(c) => {
                    check_names(&settings, c.users.iter().map(|u| u.name.as_str()))?;
                    check_ids(&settings, &c.users)?;
                }
                ProtocolConfig::Vmess(c) => {
                    check_names(&settings, c.users.iter().map(|u| u.name.as_str()))?;
                    check_ids(&settings, &c.users)?;
                }
                ProtocolConfig::Hysteria2(c) => c.validate(&settings)?,
                ProtocolConfig::Trojan(c) => {
                    check_names(&settings, c.users.iter().map(|u| u.name.as_str()))?;
                    proto::trojan::TrojanUsers::new(
                        c.users
                            .iter()
                            .enumerate()
                            .map(|(i, u)| (i as u32, u.password.as_str())),
                    )
                    .map_err(|(i, e)| {
                        invalid(format!("{settings}.users[{i}].password"), e.to_string())
                    })?;
                }
            }
            match (&inbound.tls, &inbound.protocol) {
                (None, ProtocolConfig::Hysteria2(_)) => {
                    return Err(invalid(
                        format!("{at}.tls"),
                        "Hysteria2 needs a certificate (QUIC is always TLS)",
                    ))
                }
                (Some(_), ProtocolConfig::Shadowsocks(_)) => {
                    return Err(invalid(
                        format!("{at}.tls"),
                        "Shadowsocks does not run over TLS",
                    ))
                }
                (Some(tls), _) => tls.validate(&format!("{at}.tls"))?,
                (None, _) => {}
            }
            match (&inbound.ws, &inbound.protocol) {
                (Some(_), ProtocolConfig::Shadowsocks(_)) => {
                    return Err(invalid(
                        format!("{at}.ws"),
                        "Shadowsocks does not run over WebSocket",
                    ))
                }
                (Some(_), ProtocolConfig::Hysteria2(_)) => {
                    return Err(invalid(
                        format!("{at}.ws"),
                        "Hysteria2 does not run over WebSocket",
                    ))
                }
                (Some(ws), _) => ws.validate(&format!("{at}.ws"))?,
                (None, _) => {}
            }
            if let ProtocolConfig::Vless(VlessConfig { flow: Some(_), .. }) = &inbound.protocol {
                let field = format!("{at}.settings.flow");
                if inbound.tls.is_none() {
                    return Err(invalid(
                        field,
                        "xtls-rprx-vision needs `tls` on the inbound",
                    ));
                }
                if inbound.ws.is_some() {
                    return Err(invalid(
                        field,
                        "xtls-rprx-vision runs on TLS directly, not over WebSocket",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The routing rules, compiled (reads the GeoIP database, if one is named).
    pub fn compile_rules(&self) -> Result<crate::rules::RuleSet, ConfigError> {
        let policy = crate::outbound::DestinationPolicy::from(&self.outbound);
        compile_routing(self.routing.as_ref(), policy)
    }

    /// Number of workers to run.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

/// The rule set of a `routing` section under `policy` (without one, only the built-in block
/// of special ranges); an error names the field under `routing`.
pub(crate) fn compile_routing(
    routing: Option<&crate::rules::RulesConfig>,
    policy: crate::outbound::DestinationPolicy,
) -> Result<crate::rules::RuleSet, ConfigError> {
    match routing {
        None => Ok(crate::rules::RuleSet::builtin(policy)),
        Some(r) => crate::rules::RuleSet::compile(r, policy)
            .map_err(|e| invalid(format!("routing.{}", e.field), e.message)),
    }
}

/// User names within one inbound: not empty, unique.
fn check_names<'a>(at: &str, names: impl Iterator<Item = &'a str>) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        if name.is_empty() {
            return Err(invalid(
                format!("{at}.users[{i}].name"),
                "must not be empty",
            ));
        }
        if !seen.insert(name) {
            return Err(invalid(
                format!("{at}.users[{i}].name"),
                format!("duplicate user {name:?} in this inbound"),
            ));
        }
    }
    Ok(())
}

/// VLESS and VMess ids: valid and unique within one inbound.
fn check_ids(at: &str, users: &[IdUserConfig]) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, u) in users.iter().enumerate() {
        let uuid = proto::vless::parse_user_id(&u.id)
            .map_err(|e| invalid(format!("{at}.users[{i}].id"), e.to_string()))?;
        if !seen.insert(uuid) {
            return Err(invalid(
                format!("{at}.users[{i}].id"),
                "two users share one id",
            ));
        }
    }
    Ok(())
}

impl TlsConfig {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        match (&self.certificate, &self.key, &self.self_signed) {
            (Some(_), Some(_), None) => {}
            (None, None, Some(names)) => {
                if names.is_empty() || names.iter().any(|n| n.is_empty()) {
                    return Err(invalid(
                        format!("{at}.self_signed"),
                        "name at least one host name, none empty",
                    ));
                }
            }
            (_, _, Some(_)) => {
                return Err(invalid(
                    format!("{at}.self_signed"),
                    "give either self_signed or certificate and key, not both",
                ))
            }
            (None, _, None) => {
                return Err(invalid(
                    format!("{at}.certificate"),
                    "required (or self_signed for testing)",
                ))
            }
            (Some(_), None, None) => return Err(invalid(format!("{at}.key"), "required")),
        }
        for (i, p) in self.alpn.iter().enumerate() {
            if p.is_empty() || p.len() > 255 {
                return Err(invalid(format!("{at}.alpn[{i}]"), "must be 1 to 255 bytes"));
            }
        }
        crate::transport::TlsServer::new(self, at).map(|_| ())
    }
}

impl Hysteria2Config {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        check_names(at, self.users.iter().map(|u| u.name.as_str()))?;
        proto::hysteria2::Hysteria2Users::new(
            self.users
                .iter()
                .enumerate()
                .map(|(i, u)| (i as u32, u.password.as_str())),
        )
        .map_err(|(i, e)| invalid(format!("{at}.users[{i}].password"), e.to_string()))?;
        if let Some(ObfsConfig::Salamander { password }) = &self.obfs {
            proto::hysteria2::salamander::Salamander::new(password.as_bytes())
                .map_err(|e| invalid(format!("{at}.obfs.password"), e.to_string()))?;
        }
        if let Some(MasqueradeConfig::Proxy {
            host: Some(host), ..
        }) = &self.masquerade
        {
            if host.is_empty() || host.bytes().any(|b| !b.is_ascii_graphic()) {
                return Err(invalid(
                    format!("{at}.masquerade.host"),
                    "must be a host name (visible ASCII, no spaces)",
                ));
            }
        }
        if let Some(MasqueradeConfig::File { dir }) = &self.masquerade {
            // Read in full when the inbound starts; here only whether it can be.
            std::fs::read_dir(dir).map_err(|e| {
                invalid(
                    format!("{at}.masquerade.dir"),
                    format!("{}: {e}", dir.display()),
                )
            })?;
        }
        if let Some(MasqueradeConfig::String {
            status_code,
            headers,
            ..
        }) = &self.masquerade
        {
            if !(200..=599).contains(status_code) || *status_code == 233 {
                return Err(invalid(
                    format!("{at}.masquerade.status_code"),
                    "must be an HTTP status from 200 to 599 (not 233)",
                ));
            }
            for (name, value) in headers {
                let ok = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    && !value.bytes().any(|b| b"\r\n\0".contains(&b));
                if !ok {
                    return Err(invalid(
                        format!("{at}.masquerade.headers"),
                        format!("{name:?}: not a header field name, or a value with CR, LF or NUL"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl ShadowsocksConfig {
    /// The parsed method (valid after [`Config::validate`]).
    pub fn method(&self) -> Method {
        self.method.parse().expect("validated")
    }

    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let method: Method =
            self.method
                .parse()
                .map_err(|e: proto::shadowsocks::ConfigError| {
                    invalid(format!("{at}.method"), e.to_string())
                })?;
        let mut names = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() {
                return Err(invalid(
                    format!("{at}.users[{i}].name"),
                    "must not be empty",
                ));
            }
            if !names.insert(u.name.as_str()) {
                return Err(invalid(
                    format!("{at}.users[{i}].name"),
                    format!("duplicate user {:?} in this inbound", u.name),
                ));
            }
        }
        UserKeys::new(
            method,
            self.psk.as_deref(),
            self.users
                .iter()
                .enumerate()
                .map(|(i, u)| (i as u32, u.password.as_str())),
        )
        .map_err(|(user, e)| match user {
            Some(i) => invalid(format!("{at}.users[{i}].password"), e.to_string()),
            None => invalid(format!("{at}.psk"), e.to_string()),
        })?;
        Ok(())
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Network::Tcp => "tcp",
            Network::Udp => "udp",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Config::from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        let base = |settings: &str| {
            format!(
                r#"{{"inbounds":[{{"tag":"a","listen":"127.0.0.1:1","protocol":"shadowsocks","settings":{settings}}}]}}"#
            )
        };
        assert!(err(&base(r#"{"method":"rc4","users":[]}"#))
            .starts_with("inbounds[0].settings.method: unknown method"));
        assert!(err(&base(
            r#"{"method":"2022-blake3-aes-128-gcm","users":[{"name":"u","password":"AAAA"}]}"#
        ))
        .starts_with("inbounds[0].settings.users[0].password: key is 3 bytes"));
        assert!(
            err(r#"{"inbounds":[{"tag":"a","listen":"nope"}]}"#).starts_with("inbounds[0].listen")
        );
        assert!(err(r#"{"inbounds":[],"bogus":1}"#).contains("bogus"));
        assert!(
            Config::from_json(r#"{"inbounds":[]}"#).is_ok(),
            "an engine may start empty"
        );
    }

    #[test]
    fn stream_protocol_errors_name_the_field() {
        let inbound = |protocol: &str, settings: &str, extra: &str| {
            format!(
                r#"{{"inbounds":[{{"tag":"a","listen":"127.0.0.1:1","protocol":"{protocol}","settings":{settings}{extra}}}]}}"#
            )
        };
        assert!(
            err(&inbound("vless", r#"{"users":[{"name":"u","id":""}]}"#, ""))
                .starts_with("inbounds[0].settings.users[0].id: user id")
        );
        let two = r#"{"users":[{"name":"u","id":"b831381d-6324-4d53-ad4f-8cda48b30811"},{"name":"v","id":"B831381D-6324-4D53-AD4F-8CDA48B30811"}]}"#;
        assert!(err(&inbound("vmess", two, ""))
            .starts_with("inbounds[0].settings.users[1].id: two users share one id"));
        assert!(err(&inbound(
            "trojan",
            r#"{"users":[{"name":"u","password":"p"},{"name":"u","password":"q"}]}"#,
            ""
        ))
        .starts_with("inbounds[0].settings.users[1].name: duplicate user"));
        assert!(err(&inbound(
            "trojan",
            r#"{"users":[{"name":"u","password":""}]}"#,
            ""
        ))
        .starts_with("inbounds[0].settings.users[0].password: password is empty"));
        let e = err(&inbound("vless", r#"{"fallback":"nowhere"}"#, ""));
        assert!(
            e.starts_with("inbounds[0]") && e.contains("socket address"),
            "{e}"
        );
        assert!(err(&inbound("trojan", "{}", r#","network":["udp"]"#))
            .starts_with("inbounds[0].network: trojan runs over TCP"));
        let tls = r#","tls":{"self_signed":["localhost"]}"#;
        assert!(err(&inbound("hysteria2", "{}", r#","network":["tcp"]"#))
            .starts_with("inbounds[0].network: hysteria2 runs over UDP"));
        assert!(err(&inbound("hysteria2", "{}", ""))
            .starts_with("inbounds[0].tls: Hysteria2 needs a certificate"));
        assert!(err(&inbound(
            "hysteria2",
            "{}",
            r#","tls":{"self_signed":["x"]},"ws":{}"#
        ))
        .starts_with("inbounds[0].ws: Hysteria2 does not run over WebSocket"));
        assert!(err(&inbound(
            "hysteria2",
            r#"{"obfs":{"type":"salamander","password":"abc"}}"#,
            tls
        ))
        .starts_with("inbounds[0].settings.obfs.password"));
        assert!(err(&inbound(
            "hysteria2",
            r#"{"users":[{"name":"u","password":"p"},{"name":"v","password":"p"}]}"#,
            tls
        ))
        .starts_with("inbounds[0].settings.users[1].password: two users share one password"));
        assert!(err(&inbound(
            "hysteria2",
            r#"{"masquerade":{"type":"string","status_code":233}}"#,
            tls
        ))
        .starts_with("inbounds[0].settings.masquerade.status_code"));
        assert!(err(&inbound(
            "hysteria2",
            r#"{"masquerade":{"type":"string","headers":{"x-a":"b\r\nc"}}}"#,
            tls
        ))
        .starts_with("inbounds[0].settings.masquerade.headers"));
        assert!(err(&inbound(
            "hysteria2",
            r#"{"masquerade":{"type":"file","dir":"/nonexistent/site"}}"#,
            tls
        ))
        .starts_with("inbounds[0].settings.masquerade.dir: /nonexistent/site: "));
        Config::from_json(&inbound(
            "hysteria2",
            r#"{"users":[{"name":"u","password":"p"}],"obfs":{"type":"salamander","password":"abcd"},"masquerade":{"type":"string","content":"hi","headers":{"server":"nginx"}}}"#,
            tls,
        ))
        .expect("a valid Hysteria2 inbound");
        assert!(err(&inbound(
            "vless",
            "{}",
            r#","tls":{"certificate":"/nonexistent.pem"}"#
        ))
        .starts_with("inbounds[0].tls.key: required"));
        assert!(err(&inbound(
            "vless",
            "{}",
            r#","tls":{"certificate":"/nonexistent.pem","key":"/nonexistent.key"}"#
        ))
        .starts_with("inbounds[0].tls.certificate: /nonexistent.pem"));
        assert!(err(&inbound("vless", "{}", r#","tls":{"self_signed":[]}"#))
            .starts_with("inbounds[0].tls.self_signed"));
        let vision = r#"{"flow":"xtls-rprx-vision"}"#;
        assert!(err(&inbound("vless", vision, ""))
            .starts_with("inbounds[0].settings.flow: xtls-rprx-vision needs `tls`"));
        assert!(
            err(&inbound("vless", vision, &format!("{tls},\"ws\":{{}}")))
                .starts_with("inbounds[0].settings.flow: xtls-rprx-vision runs on TLS directly")
        );
        Config::from_json(&inbound("vless", vision, tls)).expect("Vision over TLS");
        assert!(
            err(&inbound("vless", r#"{"flow":"xtls-rprx-direct"}"#, tls))
                .contains("unknown variant")
        );
        assert!(err(&inbound(
            "shadowsocks",
            r#"{"method":"aes-128-gcm","users":[]}"#,
            r#","tls":{"self_signed":["x"]}"#
        ))
        .starts_with("inbounds[0].tls: Shadowsocks does not run over TLS"));
        assert!(Config::from_json(&inbound(
            "vless",
            "{}",
            r#","tls":{"self_signed":["localhost"],"alpn":["http/1.1"],"server_names":["localhost"]}"#
        ))
        .is_ok());
        assert!(err(&inbound("vless", "{}", r#","ws":{"path":"ws"}"#))
            .starts_with("inbounds[0].ws.path: must start with /"));
        assert!(err(&inbound("vmess", "{}", r#","ws":{"path":"/a?ed=1"}"#))
            .starts_with("inbounds[0].ws.path"));
        assert!(err(&inbound("trojan", "{}", r#","ws":{"host":""}"#))
            .starts_with("inbounds[0].ws.host"));
        assert!(
            err(&inbound("trojan", "{}", r#","ws":{"max_early_data":4097}"#))
                .starts_with("inbounds[0].ws.max_early_data: at most 4096")
        );
        assert!(err(&inbound(
            "shadowsocks",
            r#"{"method":"aes-128-gcm","users":[]}"#,
            r#","ws":{}"#
        ))
        .starts_with("inbounds[0].ws: Shadowsocks does not run over WebSocket"));
        let ws = Config::from_json(&inbound("vless", "{}", r#","ws":{}"#)).unwrap();
        assert_eq!(
            ws.inbounds[0].ws,
            Some(WsConfig {
                path: "/".into(),
                host: None,
                max_early_data: 2048
            })
        );
    }

    #[test]
    fn tls_from_pem_files() {
        let dir = std::env::temp_dir().join(format!("marzneshin-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["example.com".into()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
        let json = format!(
            r#"{{"inbounds":[{{"tag":"a","listen":"127.0.0.1:1","protocol":"trojan","settings":{{}},"tls":{{"certificate":{:?},"key":{:?}}}}}]}}"#,
            cert.display().to_string(),
            key.display().to_string()
        );
        Config::from_json(&json).unwrap();
        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key, other.serialize_pem()).unwrap();
        assert!(err(&json).starts_with("inbounds[0].tls.key: does not match"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checked_in_schema_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/engine-config.schema.json");
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == Config::json_schema(),
            "docs/engine-config.schema.json is stale: run `cargo run -p service -- engine schema > docs/engine-config.schema.json`"
        );
    }

    #[test]
    fn every_example_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("docs/examples exists") {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen > 0, "no examples found in {}", dir.display());
    }
}

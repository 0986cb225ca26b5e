//! The engine's configuration: a JSON document, documented in `docs/engine-config.md` with a
//! JSON Schema in `docs/engine-config.schema.json`.
//!
//! Loading is two steps, both before anything is bound: serde parses the document (an error
//! names the JSON path of the offending field), then [`Config::validate`] checks what serde
//! cannot (keys decode, names are unique, methods know identity headers, ...), again naming the
//! field.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

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
    /// Time to connect to a destination.
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

/// A user of an inbound.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user's name: counters are kept per name across inbounds.
    pub name: String,
    /// Password (AEAD 2017) or base64 PSK of the method's key size (2022).
    pub password: String,
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
            for net in &inbound.network {
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
            match &inbound.protocol {
                ProtocolConfig::Shadowsocks(ss) => ss.validate(&format!("{at}.settings"))?,
            }
        }
        Ok(())
    }

    /// The routing rules, compiled (reads the GeoIP database, if one is named).
    pub fn compile_rules(&self) -> Result<crate::rules::RuleSet, ConfigError> {
        let policy = crate::outbound::DestinationPolicy::from(&self.outbound);
        match &self.routing {
            None => Ok(crate::rules::RuleSet::builtin(policy)),
            Some(r) => crate::rules::RuleSet::compile(r, policy)
                .map_err(|e| invalid(format!("routing.{}", e.field), e.message)),
        }
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

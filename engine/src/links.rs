//! Share links for clients: `ss://` (SIP002).

use base64::Engine as _;

use crate::config::{Config, ProtocolConfig};

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
        }
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
}

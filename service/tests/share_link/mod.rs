//! A strict reader of share links, written from the published standards and independent of
//! the panel's writer (service/src/subscription/links.rs), that turns each link into the
//! sing-box outbound a client importing it would build:
//!
//! - `ss://` — SIP002: `ss://USERINFO@HOST:PORT[/][?plugin=...]#TAG`, USERINFO the URL-safe
//!   base64 of `method:password` (padding optional) for the AEAD 2017 methods, or
//!   percent-encoded `method:password` (never base64) for the 2022 methods (SIP022).
//! - `vless://`, `trojan://` — the VMessAEAD/VLESS share link standard (XTLS/Xray-core
//!   issue 91) that v2rayN also uses for Trojan: `scheme://CREDENTIAL@HOST:PORT?QUERY#REMARK`,
//!   every value percent-encoded, names and constants case-sensitive, no name twice; `type`
//!   (`tcp` when absent), `security` (`none` when absent; Trojan: `tls`), `sni`, `alpn` (comma
//!   separated), `path` (`/` when absent) and `host` for `ws`; VLESS requires
//!   `encryption=none`. `allowInsecure=1` is v2rayN's extension.
//! - `vmess://` — v2rayN's format, version 2: base64 of a JSON object with `v`, `ps`, `add`,
//!   `port`, `id`, `aid`, `scy`, `net`, `type`, `host`, `path`, `tls`, `sni`, `alpn`.
//!
//! A WebSocket path ending in `?ed=N` asks for N bytes of early data in the
//! `Sec-WebSocket-Protocol` header (Xray's convention, which sing-box's importers map to
//! `max_early_data`).

#![allow(dead_code)] // each test file uses part of this

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// What went wrong reading a link.
pub type LinkError = String;

/// `%XX` sequences decoded; a `%` not followed by two hex digits, or bytes that are not
/// UTF-8, are refused.
pub fn percent_decode(s: &str) -> Result<String, LinkError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// `HOST:PORT` of a URL authority: an IPv6 address must be in brackets; the port is
/// required and 1 to 65535.
fn host_port(authority: &str) -> Result<(String, u16), LinkError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in {authority:?}"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("no port in {authority:?}"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{host:?} in brackets is not an IPv6 address"));
        }
        (host.to_owned(), port)
    } else {
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("no port in {authority:?}"))?;
        if host.contains(':') {
            return Err(format!("IPv6 address {host:?} without brackets"));
        }
        (host.to_owned(), port)
    };
    if host.is_empty() {
        return Err(format!("empty host in {authority:?}"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("port {port:?} is not 1 to 65535"))?;
    Ok((host, port))
}

/// A URL split as `scheme://userinfo@authority[/]?query#fragment`, each part still encoded.
struct Url<'a> {
    userinfo: &'a str,
    authority: &'a str,
    query: &'a str,
    fragment: Option<&'a str>,
}

fn split_url<'a>(link: &'a str, scheme: &str) -> Result<Url<'a>, LinkError> {
    let rest = link
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| format!("not a {scheme}:// link: {link:?}"))?;
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(format!("unexpected path in {link:?}"));
    }
    let (userinfo, authority) = rest
        .rsplit_once('@')
        .ok_or_else(|| format!("no credential in {link:?}"))?;
    if userinfo.is_empty() {
        return Err(format!("empty credential in {link:?}"));
    }
    Ok(Url {
        userinfo,
        authority,
        query,
        fragment,
    })
}

/// The query's fields, decoded; a name given twice is refused.
fn query_fields(query: &str) -> Result<BTreeMap<String, String>, LinkError> {
    let mut fields = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("query field without a value: {pair:?}"))?;
        let name = percent_decode(name)?;
        if fields
            .insert(name.clone(), percent_decode(value)?)
            .is_some()
        {
            return Err(format!("query field {name:?} given twice"));
        }
    }
    Ok(fields)
}

fn remark(fragment: Option<&str>) -> Result<String, LinkError> {
    fragment.map_or(Ok(String::new()), percent_decode)
}

/// sing-box's `tls` object for a TLS link.
fn tls(sni: Option<&str>, alpn: Option<&str>, insecure: bool) -> Value {
    let mut tls = json!({"enabled": true});
    if let Some(sni) = sni.filter(|s| !s.is_empty()) {
        tls["server_name"] = sni.into();
    }
    if let Some(alpn) = alpn.filter(|a| !a.is_empty()) {
        tls["alpn"] = alpn.split(',').collect::<Vec<_>>().into();
    }
    if insecure {
        tls["insecure"] = true.into();
    }
    tls
}

/// sing-box's `transport` object for a WebSocket link.
fn websocket(path: &str, host: Option<&str>) -> Result<Value, LinkError> {
    if !path.starts_with('/') {
        return Err(format!("WebSocket path {path:?} does not start with /"));
    }
    let mut transport = json!({"type": "ws", "path": path});
    if let Some((bare, ed)) = path.rsplit_once("?ed=") {
        if let Ok(ed) = ed.parse::<u32>() {
            transport["path"] = bare.into();
            transport["max_early_data"] = ed.into();
            transport["early_data_header_name"] = "Sec-WebSocket-Protocol".into();
        }
    }
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        transport["headers"] = json!({"Host": host});
    }
    Ok(transport)
}

/// The outbound a client builds from an `ss://` link (SIP002, SIP022).
pub fn shadowsocks(link: &str) -> Result<Value, LinkError> {
    let url = split_url(link, "ss")?;
    let (host, port) = host_port(url.authority)?;
    let (method, password) = if url.userinfo.contains('%') || url.userinfo.contains(':') {
        let decoded = percent_decode(url.userinfo)?;
        let (method, password) = decoded
            .split_once(':')
            .map(|(m, p)| (m.to_owned(), p.to_owned()))
            .ok_or_else(|| format!("no method:password in {link:?}"))?;
        if !method.starts_with("2022-") {
            return Err(format!("{method} userinfo must be base64 (SIP002)"));
        }
        (method, password)
    } else {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(url.userinfo.trim_end_matches('='))
            .map_err(|e| format!("userinfo of {link:?} is not URL-safe base64: {e}"))?;
        let decoded = String::from_utf8(bytes).map_err(|_| "userinfo is not UTF-8".to_owned())?;
        let (method, password) = decoded
            .split_once(':')
            .map(|(m, p)| (m.to_owned(), p.to_owned()))
            .ok_or_else(|| format!("no method:password in {link:?}"))?;
        if method.starts_with("2022-") {
            return Err(format!("{method} userinfo must not be base64 (SIP022)"));
        }
        (method, password)
    };
    let fields = query_fields(url.query)?;
    if let Some(plugin) = fields.get("plugin") {
        return Err(format!("plugin {plugin:?} is not expected from this panel"));
    }
    Ok(json!({
        "type": "shadowsocks",
        "tag": remark(url.fragment)?,
        "server": host,
        "server_port": port,
        "method": method,
        "password": password,
    }))
}

/// The outbound a client builds from a `vless://` or `trojan://` link (XTLS/Xray-core
/// issue 91).
pub fn vless_or_trojan(link: &str) -> Result<Value, LinkError> {
    let scheme = link.split("://").next().unwrap_or_default();
    if scheme != "vless" && scheme != "trojan" {
        return Err(format!("not a vless:// or trojan:// link: {link:?}"));
    }
    let url = split_url(link, scheme)?;
    let (host, port) = host_port(url.authority)?;
    let credential = percent_decode(url.userinfo)?;
    let mut fields = query_fields(url.query)?;
    let mut take = |name: &str| fields.remove(name);

    let mut outbound = Map::new();
    outbound.insert("type".into(), scheme.into());
    outbound.insert("tag".into(), remark(url.fragment)?.into());
    outbound.insert("server".into(), host.into());
    outbound.insert("server_port".into(), port.into());
    if scheme == "vless" {
        if uuid_invalid(&credential) {
            return Err(format!("{credential:?} is not a UUID"));
        }
        match take("encryption").as_deref() {
            Some("none") => {}
            other => return Err(format!("VLESS needs encryption=none, got {other:?}")),
        }
        if let Some(flow) = take("flow").filter(|f| !f.is_empty()) {
            return Err(format!("flow {flow:?} is not expected from this panel"));
        }
        outbound.insert("uuid".into(), credential.into());
    } else {
        outbound.insert("password".into(), credential.into());
    }

    let default_security = if scheme == "trojan" { "tls" } else { "none" };
    let security = take("security").unwrap_or_else(|| default_security.into());
    let sni = take("sni");
    let alpn = take("alpn");
    let insecure = match take("allowInsecure").as_deref() {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => return Err(format!("allowInsecure={other:?} is neither 0 nor 1")),
    };
    match security.as_str() {
        "none" => {
            if sni.is_some() || alpn.is_some() || insecure {
                return Err("TLS fields without security=tls".into());
            }
        }
        "tls" => {
            outbound.insert("tls".into(), tls(sni.as_deref(), alpn.as_deref(), insecure));
        }
        other => return Err(format!("security {other:?} is not none or tls")),
    }

    let network = take("type").unwrap_or_else(|| "tcp".into());
    let path = take("path");
    let ws_host = take("host");
    let header_type = take("headerType");
    match network.as_str() {
        "tcp" => {
            if path.is_some() || header_type.as_deref().is_some_and(|t| t != "none") {
                return Err("path or HTTP header obfuscation on type=tcp".into());
            }
        }
        "ws" => {
            let path = path.unwrap_or_else(|| "/".into());
            outbound.insert("transport".into(), websocket(&path, ws_host.as_deref())?);
        }
        other => return Err(format!("transport type {other:?} is not expected here")),
    }
    // `fp` (uTLS fingerprint) is optional; anything else is unknown to the standard.
    take("fp");
    if let Some(unknown) = fields.keys().next() {
        return Err(format!("unknown query field {unknown:?}"));
    }
    Ok(Value::Object(outbound))
}

fn uuid_invalid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12]
        || !groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The outbound a client builds from a `vmess://` link (v2rayN, version 2).
pub fn vmess(link: &str) -> Result<Value, LinkError> {
    let encoded = link
        .strip_prefix("vmess://")
        .ok_or_else(|| format!("not a vmess:// link: {link:?}"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("vmess:// body is not base64: {e}"))?;
    let json: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("vmess:// body is not JSON: {e}"))?;
    let text = |name: &str| -> Result<String, LinkError> {
        match &json[name] {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Ok(String::new()),
            other => Err(format!("{name} is {other}, not a string")),
        }
    };
    if text("v")? != "2" {
        return Err(format!("version {:?} is not 2", json["v"]));
    }
    let port: u16 = text("port")?
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("port {:?} is not 1 to 65535", json["port"]))?;
    let id = text("id")?;
    if uuid_invalid(&id) {
        return Err(format!("{id:?} is not a UUID"));
    }
    let alter_id: u16 = text("aid")?
        .parse()
        .map_err(|_| format!("aid {:?} is not a number", json["aid"]))?;
    let server = text("add")?;
    if server.is_empty() {
        return Err("empty add".into());
    }
    let security = match text("scy")?.as_str() {
        "" => "auto".to_owned(),
        s @ ("auto" | "aes-128-gcm" | "chacha20-poly1305" | "none" | "zero") => s.to_owned(),
        other => return Err(format!("scy {other:?} is not a VMess security")),
    };
    let mut outbound = json!({
        "type": "vmess",
        "tag": text("ps")?,
        "server": server,
        "server_port": port,
        "uuid": id,
        "security": security,
        "alter_id": alter_id,
    });
    match text("tls")?.as_str() {
        "" | "none" => {}
        "tls" => {
            let (sni, alpn) = (text("sni")?, text("alpn")?);
            // v2rayN's format has no field for an unverified certificate.
            outbound["tls"] = tls(Some(&sni), Some(&alpn), false);
        }
        other => return Err(format!("tls {other:?} is not tls or empty")),
    }
    match text("net")?.as_str() {
        "tcp" => {
            if !matches!(text("type")?.as_str(), "" | "none") {
                return Err("HTTP header obfuscation is not expected here".into());
            }
        }
        "ws" => {
            let path = match text("path")? {
                p if p.is_empty() => "/".to_owned(),
                p => p,
            };
            outbound["transport"] = websocket(&path, Some(&text("host")?))?;
        }
        other => return Err(format!("net {other:?} is not expected here")),
    }
    Ok(outbound)
}

/// The outbound for any link this panel gives.
pub fn outbound(link: &str) -> Result<Value, LinkError> {
    match link.split("://").next() {
        Some("ss") => shadowsocks(link),
        Some("vless" | "trojan") => vless_or_trojan(link),
        Some("vmess") => vmess(link),
        _ => Err(format!("unknown scheme: {link:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";

    #[test]
    fn sip002_examples() {
        // SIP002's own example (AEAD 2017, base64 without padding).
        let o = shadowsocks("ss://YWVzLTEyOC1nY206dGVzdA@192.168.100.1:8888#Example1").unwrap();
        assert_eq!(
            o,
            json!({"type": "shadowsocks", "tag": "Example1", "server": "192.168.100.1",
                   "server_port": 8888, "method": "aes-128-gcm", "password": "test"})
        );
        // SIP022: 2022 methods are percent-encoded, never base64.
        let o = shadowsocks(
            "ss://2022-blake3-aes-256-gcm:YctPZ6U7xPPcU%2Bgp3u%2B0tx%2FtRizJN9K8y%2BuKlW2qjlI%3D@[::1]:8888",
        )
        .unwrap();
        assert_eq!(
            o["password"],
            "YctPZ6U7xPPcU+gp3u+0tx/tRizJN9K8y+uKlW2qjlI="
        );
        assert_eq!(o["server"], "::1");
        for bad in [
            "ss://YWVzLTEyOC1nY206dGVzdA@192.168.100.1#no-port",
            "ss://YWVzLTEyOC1nY206dGVzdA@::1:8888",
            "ss://aes-128-gcm:test@192.168.100.1:8888",
            "ss://MjAyMi1ibGFrZTMtYWVzLTEyOC1nY206QUFBQQ@h:1",
            "ss://YWVzLTEyOC1nY206dGVzdA@h:0",
            "ss://YWVzLTEyOC1nY206dGVzdA@h:1?plugin=obfs-local",
        ] {
            assert!(shadowsocks(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn vless_and_trojan_fields() {
        let o = vless_or_trojan(&format!(
            "vless://{ID}@[2001:db8::1]:443?encryption=none&security=tls&sni=a.example\
             &alpn=h2%2Chttp%2F1.1&type=ws&path=%2Fws%3Fed%3D2048&host=cdn.example#de%201"
        ))
        .unwrap();
        assert_eq!(
            o,
            json!({"type": "vless", "tag": "de 1", "server": "2001:db8::1", "server_port": 443,
                   "uuid": ID,
                   "tls": {"enabled": true, "server_name": "a.example", "alpn": ["h2", "http/1.1"]},
                   "transport": {"type": "ws", "path": "/ws", "max_early_data": 2048,
                                 "early_data_header_name": "Sec-WebSocket-Protocol",
                                 "headers": {"Host": "cdn.example"}}})
        );
        let o = vless_or_trojan("trojan://p%40ss@h:1?allowInsecure=1&sni=s#t").unwrap();
        assert_eq!(o["password"], "p@ss");
        assert_eq!(
            o["tls"],
            json!({"enabled": true, "server_name": "s", "insecure": true})
        );
        for bad in [
            format!("vless://{ID}@h:1?security=tls"),
            format!("vless://{ID}@h:1?encryption=none&type=ws&type=tcp"),
            format!("vless://{ID}@h:1?encryption=none&security=TLS"),
            format!("vless://{ID}@h:1?encryption=none&security=none&sni=a"),
            format!("vless://{ID}@h:1?encryption=none&mystery=1"),
            format!("vless://{ID}@h:1?encryption=none&type=grpc"),
            "vless://not-a-uuid@h:1?encryption=none".to_owned(),
            "trojan://p@h:1?path=%zz".to_owned(),
        ] {
            assert!(vless_or_trojan(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn v2rayn_vmess() {
        let body = json!({"v": "2", "ps": "r", "add": "h", "port": "443", "id": ID, "aid": "0",
                          "scy": "auto", "net": "ws", "type": "none", "host": "", "path": "",
                          "tls": "tls", "sni": "", "alpn": ""});
        let link = format!(
            "vmess://{}",
            base64::engine::general_purpose::STANDARD.encode(body.to_string())
        );
        assert_eq!(
            vmess(&link).unwrap(),
            json!({"type": "vmess", "tag": "r", "server": "h", "server_port": 443, "uuid": ID,
                   "security": "auto", "alter_id": 0, "tls": {"enabled": true},
                   "transport": {"type": "ws", "path": "/"}})
        );
        for (field, value) in [
            ("v", json!("1")),
            ("port", json!("0")),
            ("port", json!(443)),
            ("scy", json!("rc4")),
            ("net", json!("kcp")),
            ("tls", json!("reality")),
        ] {
            let mut bad = body.clone();
            bad[field] = value;
            let link = format!(
                "vmess://{}",
                base64::engine::general_purpose::STANDARD.encode(bad.to_string())
            );
            assert!(vmess(&link).is_err(), "{bad}");
        }
    }
}

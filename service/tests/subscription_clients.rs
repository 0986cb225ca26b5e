//! Real clients accept what subscriptions give them: `sing-box check` on the sing-box
//! configuration and `v2ray test` on each Xray configuration, for every Shadowsocks method,
//! VLESS, VMess and Trojan over TCP, TLS and WebSocket, and awkward remarks and addresses;
//! then sing-box and v2ray, configured from a live panel's subscription, carry traffic through
//! the panel's engine with the credentials it derived (Shadowsocks, VLESS, Trojan, VMess;
//! TCP, TLS and WebSocket); and each share link of a live subscription, read by a strict
//! reader of the share-link standards (tests/share_link), becomes a sing-box outbound that
//! `sing-box check` accepts and that carries traffic through the engine, with `ssurl`
//! (shadowsocks-rust) reading every `ss://` link the same way.
//!
//! Peers: `sing-box` (tests/install-sing-box.sh) and `v2ray` (Debian's `v2ray`, 4.34, which
//! predates the 2022 methods: those are checked by sing-box only), `ssurl` (shadowsocks-rust,
//! installed by tests/run.sh). A missing peer fails.

mod panel;
mod share_link;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::{echo_transfer, peer, socks5_connect, tcp_echo, wait_for_port, ChildGuard, Ending};
use panel::{free_port, Backend, Options, TestPanel};
use serde_json::{json, Value};
use service::model::{ResetStrategy, UserStatus};
use service::subscription::{self, HostEntry, InboundEntry, SubscriptionUser};

fn user(status: UserStatus) -> SubscriptionUser {
    SubscriptionUser {
        username: "alice".into(),
        key: "58dc0f51d409b2916c9ed42800352dfe".into(),
        status,
        used_traffic: 0,
        data_limit: None,
        expire_at: None,
        on_hold_duration: None,
        reset_strategy: ResetStrategy::NoReset,
    }
}

fn inbound(tag: &str, method: &str, psk: Option<&str>, network: &[&str]) -> InboundEntry {
    let mut settings = json!({"method": method, "users": []});
    if let Some(psk) = psk {
        settings["psk"] = psk.into();
    }
    let config = json!({
        "tag": tag, "listen": "0.0.0.0:8388", "network": network,
        "protocol": "shadowsocks", "settings": settings,
    });
    InboundEntry::from_json(&config.to_string(), Vec::new()).unwrap()
}

fn host(remark: &str, address: &str, port: Option<u16>) -> HostEntry {
    HostEntry {
        remark: remark.into(),
        address: address.into(),
        port,
        weight: 1,
        ..HostEntry::default()
    }
}

/// Every method, a PSK, a TCP-only inbound, IPv6, and remarks that need quoting, repeat each
/// other or clash with the generators' own tags.
fn every_method() -> Vec<InboundEntry> {
    let mut all = vec![
        inbound("aes-128", "aes-128-gcm", None, &["tcp", "udp"]),
        inbound("aes-256", "aes-256-gcm", None, &["tcp"]),
        inbound("chacha", "chacha20-ietf-poly1305", None, &["tcp", "udp"]),
        inbound(
            "2022-aes-128",
            "2022-blake3-aes-128-gcm",
            Some("AAAAAAAAAAAAAAAAAAAAAA=="),
            &["tcp", "udp"],
        ),
        inbound(
            "2022-aes-256",
            "2022-blake3-aes-256-gcm",
            None,
            &["tcp", "udp"],
        ),
        inbound(
            "2022-chacha",
            "2022-blake3-chacha20-poly1305",
            None,
            &["tcp", "udp"],
        ),
    ];
    all[0].hosts = vec![
        host("🇩🇪 {USERNAME} \"main\": #1", "de.example.com", Some(443)),
        host("🇩🇪 {USERNAME} \"main\": #1", "[2001:db8::1]", None),
        host("proxy", "203.0.113.9", Some(1)),
        host("direct", "203.0.113.10", Some(65535)),
    ];
    all
}

/// VLESS, VMess and Trojan over TCP, TLS (self-signed, with ALPN, or named by the host) and
/// WebSocket (with and without TLS, a host overriding path and `Host`).
fn stream_protocols() -> Vec<InboundEntry> {
    let entry = |tag: &str, protocol: &str, extra: Value, hosts: Vec<HostEntry>| {
        let mut config = json!({
            "tag": tag, "listen": "0.0.0.0:443", "protocol": protocol, "settings": {"users": []},
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        InboundEntry::from_json(&config.to_string(), hosts).unwrap()
    };
    let self_signed = json!({"tls": {"self_signed": ["localhost"], "alpn": ["h2", "http/1.1"]}});
    let ws = json!({"ws": {"path": "/ws", "host": "in.example"}});
    let ws_tls = json!({"tls": {"server_names": ["example.com"]}, "ws": {"max_early_data": 0}});
    let cdn = || {
        vec![HostEntry {
            sni: Some("cdn.example.com".into()),
            host: Some("cdn.example.com".into()),
            path: Some("/{USERNAME}?ed=2048".into()),
            tls: Some(true),
            ..host("{PROTOCOL} {TRANSPORT} cdn", "cdn.example.com", Some(8443))
        }]
    };
    let mut all = Vec::new();
    for protocol in ["vless", "vmess", "trojan"] {
        all.push(entry(
            &format!("{protocol}-tcp"),
            protocol,
            json!({}),
            vec![],
        ));
        all.push(entry(
            &format!("{protocol}-tls"),
            protocol,
            self_signed.clone(),
            vec![],
        ));
        all.push(entry(
            &format!("{protocol}-ws"),
            protocol,
            ws.clone(),
            vec![],
        ));
        all.push(entry(
            &format!("{protocol}-ws-tls"),
            protocol,
            ws_tls.clone(),
            cdn(),
        ));
    }
    all
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("marzneshin-sub-clients-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(contents.as_bytes())
        .unwrap();
    path
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn sing_box_check(path: &Path) -> Output {
    run(Command::new(peer("sing-box"))
        .arg("check")
        .arg("-c")
        .arg(path))
}

fn v2ray_test(path: &Path) -> Output {
    run(Command::new(peer("v2ray"))
        .arg("-test")
        .arg("-config")
        .arg(path))
}

fn assert_success(what: &str, out: &Output, contents: &str) {
    assert!(
        out.status.success(),
        "{what} refused:\n{}{}\n--- config ---\n{contents}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sing_box_checks_the_sing_box_subscription() {
    let proxies = subscription::proxies(&user(UserStatus::Active), &every_method(), 0);
    assert_eq!(proxies.len(), 9);
    let text = subscription::singbox::render(&proxies);
    let path = temp_file("sing-box.json", &text);
    assert_success("sing-box check", &sing_box_check(&path), &text);

    // A user who may not connect gets a config sing-box accepts too.
    let none = subscription::proxies(&user(UserStatus::Disabled), &every_method(), 0);
    let text = subscription::singbox::render(&none);
    let path = temp_file("sing-box-none.json", &text);
    assert_success("sing-box check", &sing_box_check(&path), &text);

    // The checker does check: repeated tags and a bad 2022 key are refused.
    let mut repeated = proxies.clone();
    repeated[1].remark = repeated[0].remark.clone();
    let path = temp_file(
        "sing-box-bad.json",
        &subscription::singbox::render(&repeated),
    );
    assert!(!sing_box_check(&path).status.success());
    let mut bad_key = proxies;
    let subscription::ProxyProtocol::Shadowsocks(ss) = &mut bad_key[8].protocol else {
        panic!("not Shadowsocks: {:?}", bad_key[8].protocol)
    };
    assert!(ss.method.starts_with("2022-"));
    ss.key = "not base64".into();
    let path = temp_file(
        "sing-box-bad-key.json",
        &subscription::singbox::render(&bad_key),
    );
    assert!(!sing_box_check(&path).status.success());
}

#[test]
fn sing_box_checks_vless_vmess_and_trojan_outbounds() {
    let proxies = subscription::proxies(&user(UserStatus::Active), &stream_protocols(), 0);
    assert_eq!(proxies.len(), 12);
    let text = subscription::singbox::render(&proxies);
    let config: Value = serde_json::from_str(&text).unwrap();
    let kinds: Vec<&str> = config["outbounds"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["type"].as_str())
        .filter(|t| ["vless", "vmess", "trojan"].contains(t))
        .collect();
    assert_eq!(kinds.len(), 12);
    let path = temp_file("sing-box-streams.json", &text);
    assert_success("sing-box check", &sing_box_check(&path), &text);

    // The checker does check: an unknown transport is refused.
    let mut bad = config;
    let ws = bad["outbounds"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|o| o["transport"]["type"] == "ws")
        .unwrap();
    ws["transport"]["type"] = "carrier-pigeon".into();
    let text = bad.to_string();
    let path = temp_file("sing-box-streams-bad.json", &text);
    assert!(!sing_box_check(&path).status.success(), "{text}");
}

#[test]
fn v2ray_tests_vless_vmess_and_trojan_configurations() {
    let proxies = subscription::proxies(&user(UserStatus::Active), &stream_protocols(), 0);
    let all: Vec<Value> = serde_json::from_str(&subscription::xray::render(&proxies)).unwrap();
    assert_eq!(all.len(), 12);
    for (i, config) in all.iter().enumerate() {
        let text = serde_json::to_string_pretty(config).unwrap();
        let path = temp_file(&format!("xray-stream-{i}.json"), &text);
        let out = v2ray_test(&path);
        assert_success("v2ray -test", &out, &text);
        assert!(String::from_utf8_lossy(&out.stdout).contains("Configuration OK"));
    }

    // The checker does check: an unknown transport is refused.
    let mut bad = all[0].clone();
    bad["outbounds"][0]["streamSettings"]["network"] = "carrier-pigeon".into();
    let path = temp_file("xray-stream-bad.json", &bad.to_string());
    assert!(!v2ray_test(&path).status.success());
}

#[test]
fn v2ray_tests_each_xray_configuration() {
    // v2ray 4.34 knows the AEAD 2017 methods only.
    let entries: Vec<InboundEntry> = every_method()
        .into_iter()
        .filter(|e| !e.config.tag.starts_with("2022"))
        .collect();
    let proxies = subscription::proxies(&user(UserStatus::Active), &entries, 0);
    assert_eq!(proxies.len(), 6);
    let all: Vec<Value> = serde_json::from_str(&subscription::xray::render(&proxies)).unwrap();
    assert_eq!(all.len(), proxies.len());
    for (i, config) in all.iter().enumerate() {
        let text = serde_json::to_string_pretty(config).unwrap();
        let path = temp_file(&format!("xray-{i}.json"), &text);
        let out = v2ray_test(&path);
        assert_success("v2ray -test", &out, &text);
        assert!(String::from_utf8_lossy(&out.stdout).contains("Configuration OK"));
    }

    // The checker does check: an unknown method is refused.
    let mut bad = all[0].clone();
    bad["outbounds"][0]["settings"]["servers"][0]["method"] = "rc4-md5-nope".into();
    let path = temp_file("xray-bad.json", &bad.to_string());
    assert!(!v2ray_test(&path).status.success());
}

/// Sends 256 KiB through the SOCKS5 proxy at `socks` to an echo server and back.
fn carry_traffic(socks: SocketAddr, client: &mut ChildGuard) {
    wait_for_port(socks, client);
    let echo = tcp_echo();
    let stream = socks5_connect(socks, echo).expect("SOCKS5 connect through the client");
    echo_transfer(stream, 256 * 1024, 7, Ending::AfterEcho).expect("echo through the engine");
    client.assert_running();
}

/// Used traffic of `name` once the panel has recorded it (waits up to 15 s for it to move).
fn used_traffic_after(panel: &TestPanel, token: &str, name: &str, before: i64) -> i64 {
    let started = Instant::now();
    loop {
        let used = panel.get(token, &format!("/api/users/{name}")).ok()["used_traffic"]
            .as_i64()
            .unwrap();
        if used > before || started.elapsed() > Duration::from_secs(15) {
            return used;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs sing-box with `outbound` (from a subscription) behind a local mixed inbound, carries
/// traffic through it, and returns alice's used traffic once it has grown past `used`.
fn sing_box_carries(panel: &TestPanel, root: &str, outbound: &Value, used: i64) -> i64 {
    let socks: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let client_config = json!({
        "log": {"level": "error"},
        "inbounds": [{"type": "mixed", "tag": "in", "listen": "127.0.0.1", "listen_port": socks.port()}],
        "outbounds": [outbound],
        "route": {"final": outbound["tag"]},
    });
    let path = temp_file(
        &format!("sing-box-run-{}.json", socks.port()),
        &client_config.to_string(),
    );
    let mut client = ChildGuard::spawn(
        "sing-box",
        Command::new(peer("sing-box"))
            .arg("run")
            .arg("-c")
            .arg(&path),
    );
    carry_traffic(socks, &mut client);
    let now_used = used_traffic_after(panel, root, "alice", used);
    assert!(
        now_used > used,
        "{}: the engine counted nothing",
        outbound["tag"]
    );
    now_used
}

/// Runs v2ray with `config` (one Xray configuration of a subscription) on a free SOCKS port,
/// without its rule sending loopback direct (the echo server is on loopback), carries traffic
/// through it, and returns alice's used traffic once it has grown past `used`.
fn v2ray_carries(panel: &TestPanel, root: &str, config: &Value, used: i64) -> i64 {
    let mut config = config.clone();
    let socks: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    config["inbounds"][0]["port"] = socks.port().into();
    config["routing"] = json!({"rules": []});
    let path = temp_file(
        &format!("v2ray-run-{}.json", socks.port()),
        &config.to_string(),
    );
    let mut client = ChildGuard::spawn(
        "v2ray",
        Command::new(peer("v2ray")).arg("-config").arg(&path),
    );
    carry_traffic(socks, &mut client);
    let now_used = used_traffic_after(panel, root, "alice", used);
    assert!(
        now_used > used,
        "v2ray {}: the engine counted nothing",
        config["remarks"]
    );
    now_used
}

/// A subscription in `format`, as JSON.
fn fetch_json(panel: &TestPanel, sub: &str, format: &str) -> Value {
    let url = format!("{}{sub}/{format}", panel.base);
    reqwest::blocking::get(url).unwrap().json().unwrap()
}

/// A panel that lets the engine reach loopback and records usage every second, with the
/// inbounds `configs` (the listen address added) in one service, and user alice on it:
/// the panel, a sudo token, and alice's subscription path.
fn panel_with_alice_on(configs: Vec<Value>) -> (TestPanel, String, String) {
    let panel = TestPanel::start_with(
        Backend::Sqlite,
        Options::default()
            .env("MARZNESHIN_ALLOW_LOOPBACK", "true")
            .env("MARZNESHIN_USAGE_INTERVAL_SECS", "1"),
    );
    let root = panel.admin_token();
    let inbound_ids: Vec<Value> = configs
        .into_iter()
        .map(|mut config| {
            config["listen"] = format!("127.0.0.1:{}", free_port()).into();
            panel
                .post(&root, "/api/inbounds", json!({"config": config}))
                .ok()["id"]
                .clone()
        })
        .collect();
    let service = panel
        .post(
            &root,
            "/api/services",
            json!({"name": "all", "inbound_ids": inbound_ids}),
        )
        .ok()["id"]
        .clone();
    let alice = panel.new_user(
        &root,
        json!({"username": "alice", "service_ids": [service]}),
    );
    let sub = format!("/sub/alice/{}", alice["key"].as_str().unwrap());
    (panel, root, sub)
}

/// The outbounds of a sing-box configuration whose type is one of `kinds`.
fn outbounds_of(config: &Value, kinds: &[&str]) -> Vec<Value> {
    config["outbounds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| kinds.contains(&o["type"].as_str().unwrap_or("")))
        .cloned()
        .collect()
}

#[test]
fn clients_configured_from_a_subscription_carry_traffic() {
    let configs = [
        ("plain", "aes-256-gcm", None),
        (
            "multi",
            "2022-blake3-aes-128-gcm",
            Some("AAAAAAAAAAAAAAAAAAAAAA=="),
        ),
        ("wide", "2022-blake3-aes-256-gcm", None),
    ]
    .into_iter()
    .map(|(tag, method, psk)| {
        let mut settings = json!({"method": method});
        if let Some(psk) = psk {
            settings["psk"] = psk.into();
        }
        json!({"tag": tag, "protocol": "shadowsocks", "settings": settings})
    })
    .collect();
    let (panel, root, sub) = panel_with_alice_on(configs);

    // sing-box: each Shadowsocks outbound of the subscription, behind a local mixed inbound.
    let outbounds = outbounds_of(&fetch_json(&panel, &sub, "sing-box"), &["shadowsocks"]);
    assert_eq!(outbounds.len(), 3);
    let mut used = 0;
    for outbound in outbounds {
        used = sing_box_carries(&panel, &root, &outbound, used);
    }

    // v2ray: the Xray configuration of the AEAD 2017 inbound.
    let xray = fetch_json(&panel, &sub, "xray");
    let config = xray
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["remarks"] == "plain")
        .unwrap();
    v2ray_carries(&panel, &root, config, used);
}

#[test]
fn vless_trojan_and_vmess_clients_configured_from_a_subscription_carry_traffic() {
    let tls = json!({"self_signed": ["localhost"]});
    let (panel, root, sub) = panel_with_alice_on(vec![
        json!({"tag": "vless-tls", "protocol": "vless", "settings": {}, "tls": tls}),
        json!({"tag": "trojan-tls", "protocol": "trojan", "settings": {}, "tls": tls}),
        json!({"tag": "vmess-tcp", "protocol": "vmess", "settings": {}}),
        json!({"tag": "vless-ws-tls", "protocol": "vless", "settings": {}, "tls": tls,
               "ws": {"path": "/vl"}}),
        json!({"tag": "vmess-ws", "protocol": "vmess", "settings": {},
               "ws": {"path": "/vm", "host": "example.org"}}),
    ]);

    // sing-box: each outbound exactly as the subscription gives it.
    let outbounds = outbounds_of(
        &fetch_json(&panel, &sub, "sing-box"),
        &["vless", "trojan", "vmess"],
    );
    let tags: Vec<&str> = outbounds
        .iter()
        .map(|o| o["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            "vless-tls",
            "trojan-tls",
            "vmess-tcp",
            "vless-ws-tls",
            "vmess-ws"
        ]
    );
    assert_eq!(
        outbounds[3]["transport"],
        json!({"type": "ws", "path": "/vl", "max_early_data": 2048,
               "early_data_header_name": "Sec-WebSocket-Protocol"})
    );
    assert_eq!(outbounds[4]["transport"]["headers"]["Host"], "example.org");
    assert_eq!(outbounds[0]["tls"]["server_name"], "localhost");
    assert_eq!(outbounds[0]["tls"]["insecure"], true);
    let mut used = 0;
    for outbound in &outbounds {
        used = sing_box_carries(&panel, &root, outbound, used);
    }

    // v2ray (4.34): the Xray configuration of each inbound.
    let xray = fetch_json(&panel, &sub, "xray");
    for remark in [
        "vless-tls",
        "trojan-tls",
        "vmess-tcp",
        "vless-ws-tls",
        "vmess-ws",
    ] {
        let config = xray
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["remarks"] == remark)
            .unwrap();
        used = v2ray_carries(&panel, &root, config, used);
    }
}

#[test]
fn hysteria2_clients_configured_from_a_subscription_carry_traffic() {
    let tls = json!({"self_signed": ["localhost"]});
    let (panel, root, sub) = panel_with_alice_on(vec![
        json!({"tag": "hy2", "protocol": "hysteria2", "settings": {}, "tls": tls}),
        json!({"tag": "hy2-obfs", "protocol": "hysteria2", "tls": tls,
               "settings": {"obfs": {"type": "salamander", "password": "obfuscated"}}}),
    ]);

    // sing-box: each outbound exactly as the subscription gives it.
    let outbounds = outbounds_of(&fetch_json(&panel, &sub, "sing-box"), &["hysteria2"]);
    assert_eq!(outbounds.len(), 2);
    assert_eq!(outbounds[0]["tls"]["alpn"], json!(["h3"]));
    assert_eq!(outbounds[0]["tls"]["insecure"], true);
    assert!(outbounds[0].get("obfs").is_none());
    assert_eq!(
        outbounds[1]["obfs"],
        json!({"type": "salamander", "password": "obfuscated"})
    );
    let mut used = 0;
    for outbound in &outbounds {
        used = sing_box_carries(&panel, &root, outbound, used);
    }

    // Xray has no Hysteria2: its format leaves these out rather than give a broken config.
    assert_eq!(fetch_json(&panel, &sub, "xray"), json!([]));
}

/// Server, port, method and password of an `ss://` link as `ssurl -d` (shadowsocks-rust's
/// own SIP002 reader) decodes it. Its output is JSON5 (unquoted keys): read field by field.
fn ssurl_decode(link: &str) -> (String, u16, String, String) {
    let out = run(Command::new(peer("ssurl")).arg("-d").arg(link));
    assert_success("ssurl -d", &out, link);
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Value {
        let prefix = format!("{name}:");
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("ssurl gave no {name}:\n{text}"));
        let value = line[prefix.len()..].trim().trim_end_matches(',');
        serde_json::from_str(value).unwrap_or_else(|e| panic!("ssurl's {name} {value}: {e}"))
    };
    (
        field("server").as_str().unwrap().to_owned(),
        u16::try_from(field("server_port").as_u64().unwrap()).unwrap(),
        field("method").as_str().unwrap().to_owned(),
        field("password").as_str().unwrap().to_owned(),
    )
}

/// A test CA and a certificate for `localhost` it signed, written to files: (certificate
/// path, key path, the CA's PEM).
fn ca_signed_localhost() -> (PathBuf, PathBuf, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "marzneshin test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    (
        temp_file("localhost.pem", &leaf.pem()),
        temp_file("localhost.key", &key.serialize_pem()),
        ca.pem(),
    )
}

#[test]
fn each_share_link_imports_into_sing_box_and_carries_traffic() {
    // TLS two ways: a self-signed certificate (links say `allowInsecure=1`; v2rayN's VMess
    // JSON has no such field, so VMess gets the other way), and a certificate from a test CA
    // that the client trusts, as a machine trusts a public CA (the link says nothing of it).
    let self_signed = json!({"self_signed": ["localhost"], "alpn": ["http/1.1"]});
    let (cert, key, ca_pem) = ca_signed_localhost();
    let ca_signed = json!({"certificate": cert, "key": key, "server_names": ["localhost"],
                           "alpn": ["http/1.1"]});
    let mut configs = vec![
        json!({"tag": "ss-aes", "protocol": "shadowsocks", "settings": {"method": "aes-256-gcm"}}),
        json!({"tag": "ss-chacha", "protocol": "shadowsocks",
               "settings": {"method": "chacha20-ietf-poly1305"}}),
        json!({"tag": "ss-2022-multi", "protocol": "shadowsocks",
               "settings": {"method": "2022-blake3-aes-128-gcm", "psk": "AAAAAAAAAAAAAAAAAAAAAA=="}}),
        json!({"tag": "ss-2022", "protocol": "shadowsocks",
               "settings": {"method": "2022-blake3-chacha20-poly1305"}}),
    ];
    for protocol in ["vless", "vmess", "trojan"] {
        let base = json!({"protocol": protocol, "settings": {}});
        let with = |transport: &str, extra: Value| {
            let mut c = base.clone();
            c["tag"] = format!("{protocol}-{transport}").into();
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            c
        };
        let tls = if protocol == "vmess" {
            &ca_signed
        } else {
            &self_signed
        };
        configs.push(with("tcp", json!({})));
        configs.push(with("tls", json!({"tls": tls})));
        // Without early data, and a Host header; with early data (`?ed=2048`) inside TLS.
        configs.push(with(
            "ws",
            json!({"ws": {"path": format!("/{protocol}"), "host": "example.org", "max_early_data": 0}}),
        ));
        configs.push(with(
            "ws-tls",
            json!({"tls": ca_signed, "ws": {"path": format!("/{protocol}-tls")}}),
        ));
    }
    let (panel, root, sub) = panel_with_alice_on(configs);
    let links = reqwest::blocking::get(format!("{}{sub}/links", panel.base))
        .unwrap()
        .text()
        .unwrap();
    let links: Vec<&str> = links.lines().collect();
    assert_eq!(links.len(), 16, "{links:#?}");

    let mut used = 0;
    let mut seen = Vec::new();
    for link in links {
        let outbound = share_link::outbound(link).unwrap_or_else(|e| panic!("{link}: {e}"));
        // What each link stands for, from the link alone.
        let kind = format!(
            "{}{}{}",
            outbound["type"].as_str().unwrap(),
            outbound["transport"]["type"]
                .as_str()
                .map_or(String::new(), |t| format!("+{t}")),
            if outbound["tls"]["enabled"] == true {
                "+tls"
            } else {
                ""
            },
        );
        if outbound["type"] == "shadowsocks" {
            let (server, port, method, password) = ssurl_decode(link);
            assert_eq!(
                json!({"server": server, "server_port": port, "method": method, "password": password}),
                json!({"server": outbound["server"], "server_port": outbound["server_port"],
                       "method": outbound["method"], "password": outbound["password"]}),
                "ssurl and the strict reader disagree on {link}"
            );
        }
        let mut outbound = outbound;
        if outbound["tls"]["enabled"] == true && outbound["tls"]["insecure"] != true {
            // The client's own trust store: the test CA.
            outbound["tls"]["certificate"] = ca_pem.clone().into();
        }
        let tag = outbound["tag"].as_str().unwrap().to_owned();
        assert!(
            tag.starts_with(outbound["type"].as_str().unwrap())
                || (tag.starts_with("ss-") && outbound["type"] == "shadowsocks"),
            "{tag} is not a {kind} inbound"
        );
        let client = json!({
            "log": {"level": "error"},
            "inbounds": [{"type": "mixed", "tag": "in", "listen": "127.0.0.1", "listen_port": free_port()}],
            "outbounds": [outbound],
            "route": {"final": tag},
        });
        eprintln!("share link {link}\n  as {outbound}");
        let text = serde_json::to_string_pretty(&client).unwrap();
        let path = temp_file(&format!("link-{tag}.json"), &text);
        assert_success("sing-box check", &sing_box_check(&path), &text);
        used = sing_box_carries(&panel, &root, &outbound, used);
        seen.push(kind);
    }
    seen.sort();
    let mut want: Vec<String> = ["vless", "vmess", "trojan"]
        .iter()
        .flat_map(|p| {
            ["", "+tls", "+ws", "+ws+tls"]
                .iter()
                .map(move |t| format!("{p}{t}"))
        })
        .chain(std::iter::repeat_n("shadowsocks".to_owned(), 4))
        .collect();
    want.sort();
    assert_eq!(seen, want);
}

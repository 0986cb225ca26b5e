//! Hosts and subscriptions over real HTTP against `marzneshin serve`, on SQLite and on
//! PostgreSQL (see `panel/mod.rs`): the hosts API, `/sub/{username}/{key}[/{format}]` in every
//! format, detection by User-Agent, the headers, the browser page, the same 404 for a wrong
//! key and an unknown user, the fetch recorded on the user, and users who may not connect
//! getting no configuration, and that a change to inbounds, hosts, services or settings made
//! through either of two panels on one database shows in the next fetch from the other; and
//! that the access log shows fetches without their key.

mod panel;

use base64::Engine as _;
use panel::{Backend, TestPanel};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use service::serve::now;

on_both_databases!(
    hosts_api,
    formats_detection_and_headers,
    wrong_key_and_unknown_user_are_the_same_404,
    users_who_may_not_connect_get_no_configuration,
    browser_page,
    vless_vmess_and_trojan_in_every_format,
    every_configuration_change_shows_in_the_next_fetch,
);

const PSK: &str = "AAAAAAAAAAAAAAAAAAAAAA==";

/// A panel with two inbounds (AEAD 2017 without hosts; 2022 with a PSK) in one service.
struct Setup {
    panel: TestPanel,
    root: String,
    plain: i64,
    plain_port: u16,
    multi: i64,
    service: i64,
}

fn setup(backend: Backend) -> Setup {
    let panel = TestPanel::start(backend);
    let root = panel.admin_token();
    let plain_port = panel::free_port();
    let plain = panel.new_inbound(&root, "plain", "aes-256-gcm", plain_port)["id"]
        .as_i64()
        .unwrap();
    let multi = panel
        .post(
            &root,
            "/api/inbounds",
            json!({"config": {
                "tag": "multi",
                "listen": format!("127.0.0.1:{}", panel::free_port()),
                "protocol": "shadowsocks",
                "settings": {"method": "2022-blake3-aes-128-gcm", "psk": PSK},
            }}),
        )
        .ok()["id"]
        .as_i64()
        .unwrap();
    let service = panel.new_service(&root, "all", &[plain, multi]);
    Setup {
        panel,
        root,
        plain,
        plain_port,
        multi,
        service,
    }
}

impl Setup {
    fn user(&self, name: &str, extra: Value) -> Value {
        let mut spec = json!({"username": name, "service_ids": [self.service]});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        self.panel.new_user(&self.root, spec)
    }

    /// A GET from the root with extra request headers: status, headers, body.
    fn fetch(&self, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, String) {
        let mut req = reqwest::blocking::Client::new().get(format!("{}{path}", self.panel.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().unwrap())
    }
}

/// `/sub/{username}/{key}` of a user as the API shows them.
fn sub_path(user: &Value) -> String {
    format!(
        "/sub/{}/{}",
        user["username"].as_str().unwrap(),
        user["key"].as_str().unwrap()
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

fn hosts_api(backend: Backend) {
    let t = setup(backend);
    let (p, root, multi) = (&t.panel, t.root.as_str(), t.multi);
    let hosts = format!("/api/inbounds/{multi}/hosts");
    assert_eq!(p.get(root, &hosts).ok(), json!([]));
    let created = p
        .post(
            root,
            &hosts,
            json!({"remark": "{USERNAME} de", "address": "de.example.com", "port": 443}),
        )
        .ok();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["inbound_id"], multi);
    assert_eq!(created["port"], 443);
    assert_eq!(created["security"], "inbound_default");
    assert_eq!(created["weight"], 1);
    assert_eq!(created["sni"], Value::Null);
    let one = format!("/api/inbounds/hosts/{id}");
    let changed = p
        .put(
            root,
            &one,
            json!({"remark": "de", "address": "de2.example.com", "sni": "cdn.example.com",
                   "security": "tls", "weight": 5}),
        )
        .ok();
    assert_eq!(changed["address"], "de2.example.com");
    assert_eq!(changed["port"], Value::Null, "no port: the inbound's");
    assert_eq!(changed["sni"], "cdn.example.com");
    assert_eq!(changed["security"], "tls");
    assert_eq!(changed["weight"], 5);
    assert_eq!(p.get(root, &one).ok(), changed);
    let second = p
        .post(
            root,
            &hosts,
            json!({"remark": "fi", "address": "fi.example.com"}),
        )
        .ok();
    assert_eq!(p.get(root, &hosts).ok().as_array().unwrap().len(), 2);
    assert_eq!(
        p.get(root, &format!("/api/inbounds/{}/hosts", t.plain))
            .ok(),
        json!([])
    );
    let second = format!("/api/inbounds/hosts/{}", second["id"]);
    assert_eq!(p.delete(root, &second).ok(), json!(true));
    p.get(root, &second).expect_error(404, None, "not found");

    // Validation names the field; unknown inbounds and hosts are 404.
    for (body, field) in [
        (
            json!({"remark": "x", "address": "a.example", "port": 70000}),
            "port",
        ),
        (
            json!({"remark": "x", "address": "a.example", "port": 0}),
            "port",
        ),
        (json!({"remark": "", "address": "a.example"}), "remark"),
        (json!({"remark": "x", "address": "a b"}), "address"),
        (
            json!({"remark": "x", "address": "a.example", "path": ""}),
            "path",
        ),
    ] {
        p.post(root, &hosts, body)
            .expect_error(422, Some(field), "");
    }
    let body = json!({"remark": "x", "address": "a.example"});
    p.post(root, "/api/inbounds/999/hosts", body.clone())
        .expect_error(404, None, "inbound 999");
    p.get(root, "/api/inbounds/999/hosts")
        .expect_error(404, None, "inbound 999");
    p.put(root, "/api/inbounds/hosts/999", body.clone())
        .expect_error(404, None, "host 999");
    p.delete(root, "/api/inbounds/hosts/999")
        .expect_error(404, None, "host 999");

    // Changes are for sudo admins; others may read. No token, no hosts.
    let helper = p.new_admin(
        root,
        json!({"username": "helper", "password": "helper-password"}),
    );
    p.post(&helper, &hosts, body.clone())
        .expect_error(403, None, "sudo");
    p.put(&helper, &one, body).expect_error(403, None, "sudo");
    p.delete(&helper, &one).expect_error(403, None, "sudo");
    assert_eq!(p.get(&helper, &hosts).ok().as_array().unwrap().len(), 1);
    assert_eq!(p.call("GET", &hosts, None, None).status, 401);

    // Deleting the inbound deletes its hosts.
    p.delete(root, &format!("/api/inbounds/{multi}")).ok();
    p.get(root, &one).expect_error(404, None, "not found");
}

fn formats_detection_and_headers(backend: Backend) {
    let t = setup(backend);
    let (p, root) = (&t.panel, t.root.as_str());
    p.post(
        root,
        &format!("/api/inbounds/{}/hosts", t.multi),
        json!({"remark": "{USERNAME} de", "address": "de.example.com", "port": 443}),
    )
    .ok();
    let expire = now() + 30 * 86_400;
    let alice = t.user(
        "alice",
        json!({"data_limit": 10_737_418_240_i64, "expire_strategy": "fixed_date", "expire_date": expire}),
    );
    let sub = sub_path(&alice);

    // No User-Agent: base64 of the links, with every header.
    let (status, headers, body) = t.fetch(&sub, &[]);
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        header(&headers, "subscription-userinfo"),
        format!("upload=0; download=0; total=10737418240; expire={expire}")
    );
    assert_eq!(header(&headers, "profile-title"), "base64:YWxpY2U=");
    assert_eq!(header(&headers, "profile-update-interval"), "12");
    assert_eq!(
        header(&headers, "content-disposition"),
        "attachment; filename=\"alice\""
    );
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    let links: Vec<&str> = decoded.lines().collect();
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(links[0].starts_with("ss://"));
    assert!(links[0].ends_with(&format!("@127.0.0.1:{}#plain", t.plain_port)));
    assert!(links[1].starts_with("ss://2022-blake3-aes-128-gcm:AAAAAAAAAAAAAAAAAAAAAA%3D%3D%3A"));
    assert!(links[1].ends_with("@de.example.com:443#alice%20de"));

    // Explicit formats, and Marzneshin's names for two of them.
    let text = |format: &str| {
        let (status, headers, body) = t.fetch(&format!("{sub}/{format}"), &[]);
        assert_eq!(status, 200, "{format}");
        assert!(headers.contains_key("subscription-userinfo"), "{format}");
        assert!(headers.contains_key("content-disposition"), "{format}");
        (header(&headers, "content-type").to_owned(), body)
    };
    let (ct, plain_links) = text("links");
    assert_eq!(ct, "text/plain; charset=utf-8");
    assert_eq!(plain_links.lines().collect::<Vec<_>>(), links);
    assert_eq!(text("base64").1, body);
    assert_eq!(text("v2ray").1, body);
    let (ct, singbox) = text("sing-box");
    assert_eq!(ct, "application/json");
    let singbox: Value = serde_json::from_str(&singbox).unwrap();
    let ss: Vec<&Value> = singbox["outbounds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "shadowsocks")
        .collect();
    assert_eq!(ss.len(), 2);
    assert_eq!(ss[0]["server"], "127.0.0.1");
    assert_eq!(ss[0]["server_port"], t.plain_port);
    assert_eq!(ss[0]["method"], "aes-256-gcm");
    assert_eq!(
        ss[0]["password"].as_str().unwrap().len(),
        32,
        "hex XXH3-128"
    );
    assert_eq!(ss[1]["server"], "de.example.com");
    assert!(ss[1]["password"]
        .as_str()
        .unwrap()
        .starts_with("AAAAAAAAAAAAAAAAAAAAAA==:"));
    let (ct, clash) = text("clash-meta");
    assert_eq!(ct, "text/yaml; charset=utf-8");
    assert_eq!(text("clash").1, clash);
    let clash: serde_norway::Value = serde_norway::from_str(&clash).unwrap();
    assert_eq!(clash["proxies"][0]["type"], "ss");
    assert_eq!(clash["proxies"][0]["port"], t.plain_port as u64);
    assert_eq!(clash["proxies"][1]["name"], "alice de");
    let (ct, xray) = text("xray");
    assert_eq!(ct, "application/json");
    let xray: Vec<Value> = serde_json::from_str(&xray).unwrap();
    assert_eq!(xray.len(), 2);
    let outbound = &xray[0]["outbounds"][0];
    assert_eq!(outbound["protocol"], "shadowsocks");
    assert_eq!(outbound["settings"]["servers"][0]["port"], t.plain_port);
    assert_eq!(xray[0]["inbounds"][0]["port"], 10808);
    let (status, _, body) = t.fetch(&format!("{sub}/nope"), &[]);
    assert_eq!(status, 400);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["detail"].is_string());

    // Detection by User-Agent (and Accept).
    for (ua, accept, want) in [
        ("v2rayNG/1.8.5", "*/*", "text/plain; charset=utf-8"),
        ("v2rayN/7.2.3", "*/*", "application/json"),
        ("Streisand/1.6", "*/*", "application/json"),
        (
            "SFA/1.11.0 (Android 14; sing-box 1.11.0)",
            "*/*",
            "application/json",
        ),
        ("HiddifyNext/2.5.7", "*/*", "application/json"),
        ("clash-verge/v2.0.3", "*/*", "text/yaml; charset=utf-8"),
        ("mihomo/1.19.0", "*/*", "text/yaml; charset=utf-8"),
        (
            "Mozilla/5.0 (X11; Linux x86_64)",
            "*/*",
            "text/html; charset=utf-8",
        ),
        ("curl/8.5.0", "text/html", "text/html; charset=utf-8"),
    ] {
        let (status, headers, body) = t.fetch(&sub, &[("user-agent", ua), ("accept", accept)]);
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), want, "{ua}");
        if want == "application/json" {
            let v: Value = serde_json::from_str(&body).unwrap();
            let sing_box = ua.starts_with("SFA") || ua.starts_with("Hiddify");
            assert_eq!(v["outbounds"].is_array(), sing_box, "{ua}: sing-box");
            assert_eq!(v.is_array(), !sing_box, "{ua}: xray");
        }
    }

    // The fetch is recorded on the user (in the background, within moments).
    t.fetch(&sub, &[("user-agent", "v2rayNG/1.9.16")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let user = loop {
        let user = p.get(root, "/api/users/alice").ok();
        if user["sub_last_user_agent"] == "v2rayNG/1.9.16" {
            break user;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fetch not recorded: {user}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(user["sub_updated_at"].as_i64().unwrap() >= now() - 60);

    // The spec's address, under /api, serves the same.
    assert_eq!(t.fetch(&format!("/api{sub}/links"), &[]).2, plain_links);
}

fn wrong_key_and_unknown_user_are_the_same_404(backend: Backend) {
    let t = setup(backend);
    let alice = t.user("alice", json!({}));
    let key = alice["key"].as_str().unwrap();
    let mut answers = Vec::new();
    for path in [
        "/sub/alice/0123456789abcdef0123456789abcdef".to_owned(),
        format!("/sub/nobody/{key}"),
        "/sub/alice/0123456789abcdef0123456789abcdef/links".to_owned(),
        format!("/sub/nobody/{key}/sing-box"),
        format!("/sub/ALICE/{key}"),
    ] {
        let (status, headers, body) = t.fetch(&path, &[("user-agent", "v2rayNG/1.8.5")]);
        assert_eq!(status, 404, "{path}");
        assert!(!headers.contains_key("subscription-userinfo"));
        answers.push(body);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let user = t.panel.get(&t.root, "/api/users/alice").ok();
    assert_eq!(
        user["sub_updated_at"],
        Value::Null,
        "a failed fetch is not recorded"
    );
    assert_eq!(user["sub_last_user_agent"], Value::Null);
}

fn users_who_may_not_connect_get_no_configuration(backend: Backend) {
    let t = setup(backend);
    let disabled = t.user("bob", json!({"enabled": false}));
    let expired = t.user(
        "carol",
        json!({"expire_strategy": "fixed_date", "expire_date": now() - 60}),
    );
    let limited = t.user("dave", json!({"data_limit": 1000}));
    t.panel.execute(
        "UPDATE users SET used_traffic = $1 WHERE id = $2",
        &[1000, limited["id"].as_i64().unwrap()],
    );
    let on_hold = t.user(
        "erin",
        json!({"expire_strategy": "start_on_first_use", "usage_duration": 86_400}),
    );
    for (user, status) in [
        (&disabled, "disabled"),
        (&expired, "expired"),
        (&limited, "limited"),
    ] {
        assert_eq!(
            t.panel
                .get(
                    &t.root,
                    &format!("/api/users/{}", user["username"].as_str().unwrap())
                )
                .ok()["status"],
            status
        );
        let sub = sub_path(user);
        let get = |format: &str| {
            let (code, headers, body) = t.fetch(&format!("{sub}{format}"), &[]);
            assert_eq!(code, 200, "{status} {format}");
            assert!(header(&headers, "subscription-userinfo").starts_with("upload=0; download="));
            assert!(headers.contains_key("profile-title"));
            assert!(headers.contains_key("profile-update-interval"));
            body
        };
        assert_eq!(get(""), "", "{status}: base64 of no links");
        assert_eq!(get("/links"), "");
        let singbox: Value = serde_json::from_str(&get("/sing-box")).unwrap();
        assert!(singbox["outbounds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["type"] != "shadowsocks"));
        assert_eq!(singbox["route"]["rules"], json!([{"action": "reject"}]));
        assert_eq!(get("/xray"), "[]");
        let clash: serde_norway::Value = serde_norway::from_str(&get("/clash-meta")).unwrap();
        assert!(clash["proxies"].as_sequence().unwrap().is_empty());
    }
    let (_, headers, _) = t.fetch(&sub_path(&limited), &[]);
    assert_eq!(
        header(&headers, "subscription-userinfo"),
        "upload=0; download=1000; total=1000; expire=0"
    );
    // Waiting for first use is not a reason to refuse.
    assert_eq!(
        t.fetch(&format!("{}/links", sub_path(&on_hold)), &[])
            .2
            .lines()
            .count(),
        2
    );
}

fn browser_page(backend: Backend) {
    let t = setup(backend);
    let alice = t.user("alice", json!({"data_limit": 1_073_741_824}));
    let (status, headers, page) = t.fetch(
        &sub_path(&alice),
        &[
            (
                "user-agent",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
            ),
            ("accept", "text/html,application/xhtml+xml"),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    assert!(
        !headers.contains_key("content-disposition"),
        "shown, not downloaded"
    );
    assert!(headers.contains_key("subscription-userinfo"));
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("alice <span class=\"status ok\">active</span>"));
    assert!(page.contains("1 GB (1 GB left)"));
    assert!(page.contains("never"));
    assert!(page.contains(&format!("@127.0.0.1:{}#plain", t.plain_port)));
    assert_eq!(page.matches("<svg").count(), 2, "a QR code per link");
    for external in ["src=", "href=", "<link", "<script", "url(", "@import"] {
        assert!(!page.contains(external), "{external}");
    }

    let disabled = t.user("dave", json!({"enabled": false}));
    let (_, _, page) = t.fetch(&sub_path(&disabled), &[("accept", "text/html")]);
    assert!(page.contains("status no\">disabled"));
    assert!(page.contains("No configurations"));
    assert!(!page.contains("ss://"));
}

/// VLESS over TLS behind a host naming its SNI, Trojan with the inbound's self-signed TLS,
/// VMess over TCP: each format carries the derived credentials, TLS and the host.
fn vless_vmess_and_trojan_in_every_format(backend: Backend) {
    let t = setup(backend);
    let (p, root) = (&t.panel, t.root.as_str());
    let mut ids = Vec::new();
    for (tag, protocol) in [("vl", "vless"), ("tj", "trojan"), ("vm", "vmess")] {
        let mut config = json!({
            "tag": tag,
            "listen": format!("127.0.0.1:{}", panel::free_port()),
            "protocol": protocol,
            "settings": {},
        });
        if protocol != "vmess" {
            config["tls"] = json!({"self_signed": ["localhost"]});
        }
        ids.push(
            p.post(root, "/api/inbounds", json!({"config": config}))
                .ok()["id"]
                .as_i64()
                .unwrap(),
        );
    }
    p.post(
        root,
        &format!("/api/inbounds/{}/hosts", ids[0]),
        json!({"remark": "{USERNAME} {PROTOCOL}", "address": "vl.example.com", "port": 443,
               "sni": "sni.example.com", "security": "tls"}),
    )
    .ok();
    let service = p.new_service(root, "streams", &ids);
    let user = p.new_user(root, json!({"username": "bob", "service_ids": [service]}));
    let sub = sub_path(&user);

    let (status, _, links) = t.fetch(&format!("{sub}/links"), &[]);
    assert_eq!(status, 200);
    let lines: Vec<&str> = links.lines().collect();
    assert_eq!(lines.len(), 3, "{links}");
    let vless = lines.iter().find(|l| l.starts_with("vless://")).unwrap();
    assert!(
        vless.contains("@vl.example.com:443?encryption=none&security=tls&sni=sni.example.com&allowInsecure=1&type=tcp#bob%20vless"),
        "{vless}"
    );
    let trojan = lines.iter().find(|l| l.starts_with("trojan://")).unwrap();
    assert!(
        trojan.contains("security=tls&sni=localhost&allowInsecure=1&type=tcp#tj"),
        "{trojan}"
    );
    assert!(lines.iter().any(|l| l.starts_with("vmess://")));

    let (_, _, body) = t.fetch(&format!("{sub}/sing-box"), &[]);
    let config: Value = serde_json::from_str(&body).unwrap();
    let outbound = |kind: &str| {
        config["outbounds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} outbound"))
            .clone()
    };
    let vl = outbound("vless");
    let uuid = vl["uuid"].as_str().unwrap();
    assert_eq!(uuid.len(), 36);
    assert_eq!(outbound("vmess")["uuid"], uuid, "one UUID per user");
    assert!(vless.starts_with(&format!("vless://{uuid}@")));
    assert_eq!(vl["tls"]["server_name"], "sni.example.com");
    let tj = outbound("trojan");
    assert_eq!(tj["password"].as_str().unwrap(), uuid.replace('-', ""));
    assert_eq!(tj["tls"]["insecure"], true);

    let (_, _, body) = t.fetch(&format!("{sub}/xray"), &[]);
    let xray: Vec<Value> = serde_json::from_str(&body).unwrap();
    let protocols: Vec<&str> = xray
        .iter()
        .map(|c| c["outbounds"][0]["protocol"].as_str().unwrap())
        .collect();
    assert_eq!(protocols, ["vless", "trojan", "vmess"]);
    assert_eq!(
        xray[0]["outbounds"][0]["settings"]["vnext"][0]["users"][0]["id"],
        uuid
    );

    let (_, _, body) = t.fetch(&format!("{sub}/clash-meta"), &[]);
    let clash: serde_norway::Value = serde_norway::from_str(&body).unwrap();
    let kinds: Vec<&str> = clash["proxies"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["vless", "trojan", "vmess"]);

    let (_, _, page) = t.fetch(&sub, &[("accept", "text/html")]);
    assert!(page.contains("vless://") && page.contains("trojan://") && page.contains("vmess://"));
}

/// Subscriptions come from a catalog each panel keeps in memory (service/src/catalog.rs):
/// every change, made through this panel or another on the same database, shows in the next
/// fetch, with no wait.
fn every_configuration_change_shows_in_the_next_fetch(backend: Backend) {
    let t = setup(backend);
    let a = &t.panel;
    let b = a.another_instance(&Default::default());
    let (root_a, root_b) = (t.root.as_str(), b.admin_token());
    let alice = t.user("alice", json!({}));
    let sub = format!("{}/links", sub_path(&alice));
    let from = |panel: &TestPanel| {
        let resp = reqwest::blocking::get(format!("{}{sub}", panel.base)).unwrap();
        assert_eq!(resp.status(), 200);
        let title = resp.headers()["profile-title"].to_str().unwrap().to_owned();
        let links: Vec<String> = resp.text().unwrap().lines().map(str::to_owned).collect();
        (links, title)
    };
    let (links, title) = from(a);
    assert_eq!(links.len(), 2, "{links:?}");
    assert_eq!(from(&b), (links.clone(), title.clone()));

    // A host added through B is in A's next fetch; its change through A in B's.
    let host = b
        .post(
            &root_b,
            &format!("/api/inbounds/{}/hosts", t.plain),
            json!({"remark": "via-b", "address": "b.example.com"}),
        )
        .ok();
    let (links, _) = from(a);
    assert!(links.iter().any(|l| l.ends_with("#via-b")), "{links:?}");
    a.put(
        root_a,
        &format!("/api/inbounds/hosts/{}", host["id"]),
        json!({"remark": "via-a", "address": "a.example.com"}),
    )
    .ok();
    let (links, _) = from(&b);
    assert!(links.iter().any(|l| l.ends_with("#via-a")), "{links:?}");
    assert!(!links.iter().any(|l| l.contains("via-b")), "{links:?}");

    // The service loses an inbound through A: B's next fetch has one link.
    a.put(
        root_a,
        &format!("/api/services/{}", t.service),
        json!({"name": "all", "inbound_ids": [t.multi]}),
    )
    .ok();
    let (links, _) = from(&b);
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(links[0].starts_with("ss://2022-blake3"), "{links:?}");

    // The settings change through B: A's next fetch has the new title.
    b.put(
        &root_b,
        "/api/settings/subscription",
        json!({"profile_title": "Changed {USERNAME}", "update_interval": 6}),
    )
    .ok();
    let (_, changed) = from(a);
    assert_ne!(changed, title);
    let expected = base64::engine::general_purpose::STANDARD.encode("Changed alice");
    assert_eq!(changed, format!("base64:{expected}"));

    // The inbound changes through B (a new port), then goes: A follows both.
    let port = panel::free_port();
    b.put(
        &root_b,
        &format!("/api/inbounds/{}", t.multi),
        json!({"config": {
            "tag": "multi",
            "listen": format!("127.0.0.1:{port}"),
            "protocol": "shadowsocks",
            "settings": {"method": "2022-blake3-aes-128-gcm", "psk": PSK},
        }}),
    )
    .ok();
    let (links, _) = from(a);
    assert!(links[0].contains(&format!(":{port}#")), "{links:?}");
    b.delete(&root_b, &format!("/api/inbounds/{}", t.multi))
        .ok();
    assert_eq!(from(a).0, Vec::<String>::new());
}

/// The access log shows each subscription fetch with the key left out (the key derives every
/// proxy password of the user), and no query string.
#[test]
fn subscription_keys_stay_out_of_the_log() {
    let t = setup(Backend::Sqlite);
    let alice = t.user("alice", json!({}));
    let key = alice["key"].as_str().unwrap();
    let wrong = "0123456789abcdef0123456789abcdef";
    for (path, status) in [
        (format!("/sub/alice/{key}"), 200),
        (format!("/sub/alice/{key}/links?token=query-secret"), 200),
        (format!("/api/sub/alice/{key}/sing-box"), 200),
        (format!("/sub/alice/{wrong}"), 404),
    ] {
        assert_eq!(t.fetch(&path, &[]).0, status, "{path}");
    }
    // Each request is logged before its answer is sent.
    let log = t.panel.log();
    for secret in [key, wrong, "query-secret"] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    let logged = |path: &str, status: u16| {
        log.lines().any(|l| {
            l.contains("method=GET")
                && l.contains(&format!("path={path} "))
                && l.contains(&format!("status={status}"))
        })
    };
    for (path, status) in [
        ("/sub/alice/<key>", 200),
        ("/sub/alice/<key>/links", 200),
        ("/api/sub/alice/<key>/sing-box", 200),
        ("/sub/alice/<key>", 404),
    ] {
        assert!(
            logged(path, status),
            "no line for {path} ({status}):\n{log}"
        );
    }
}

#[test]
fn spec_describes_hosts_and_subscriptions() {
    let spec: Value = serde_json::from_str(&service::api::service().spec()).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for (path, method) in [
        ("/inbounds/{id}/hosts", "get"),
        ("/inbounds/{id}/hosts", "post"),
        ("/inbounds/hosts/{id}", "get"),
        ("/inbounds/hosts/{id}", "put"),
        ("/inbounds/hosts/{id}", "delete"),
        ("/sub/{username}/{key}", "get"),
        ("/sub/{username}/{key}/{format}", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path}");
    }
    let sub = &paths["/sub/{username}/{key}"]["get"];
    assert_eq!(sub["tags"], json!(["Subscription"]));
    assert!(sub.get("security").is_none(), "no token needed");
    let ok = &sub["responses"]["200"];
    for ct in [
        "text/plain; charset=utf-8",
        "application/json",
        "text/yaml; charset=utf-8",
        "text/html; charset=utf-8",
    ] {
        assert!(ok["content"][ct].is_object(), "{ct}");
    }
    for h in [
        "subscription-userinfo",
        "profile-title",
        "profile-update-interval",
        "support-url",
        "profile-web-page-url",
        "content-disposition",
    ] {
        assert!(ok["headers"][h].is_object(), "{h}");
    }
    assert_ne!(ok["headers"]["support-url"]["required"], json!(true));
    assert_ne!(
        ok["headers"]["profile-web-page-url"]["required"],
        json!(true)
    );
    assert!(sub["responses"]["404"].is_object());
    let params = paths["/sub/{username}/{key}/{format}"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let format = params.iter().find(|p| p["name"] == "format").unwrap();
    let schema = match format["schema"].get("$ref") {
        Some(r) => &spec["components"]["schemas"][r.as_str().unwrap().rsplit('/').next().unwrap()],
        None => &format["schema"],
    };
    for f in ["links", "base64", "sing-box", "clash-meta", "xray"] {
        assert!(
            schema["enum"].as_array().unwrap().contains(&json!(f)),
            "{f}"
        );
    }
}

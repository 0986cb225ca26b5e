//! The panel's subscription options over real HTTP, on SQLite and PostgreSQL:
//! `GET`/`PUT /api/settings/subscription` (defaults, validation, who may read and who may
//! change them, kept across a restart) and the subscription headers and page that follow them,
//! with `profile-web-page-url` naming the page on the host the client asked for; and the
//! routing rules, `GET`/`PUT /api/settings/routing` (validation with the field named, sudo
//! only, kept across a restart; what they do to traffic is in `e2e.rs`).

mod panel;

use base64::Engine as _;
use panel::{Backend, TestPanel};
use serde_json::{json, Value};

on_both_databases!(
    subscription_settings_api,
    subscriptions_follow_the_settings,
    routing_settings_api
);

const PATH: &str = "/api/settings/subscription";

fn subscription_settings_api(backend: Backend) {
    let mut p = TestPanel::start(backend);
    let root = p.admin_token();
    assert_eq!(
        p.get(&root, PATH).ok(),
        json!({"profile_title": null, "update_interval": 12, "support_url": null})
    );

    // Validation: each field named, nothing stored.
    for (body, field, detail) in [
        (json!({"update_interval": 0}), "update_interval", "1 to 168"),
        (
            json!({"update_interval": 169}),
            "update_interval",
            "1 to 168",
        ),
        (
            json!({"update_interval": -5}),
            "update_interval",
            "1 to 168",
        ),
        (json!({"profile_title": "   "}), "profile_title", "1 to 128"),
        (
            json!({"profile_title": "x".repeat(129)}),
            "profile_title",
            "1 to 128",
        ),
        (
            json!({"profile_title": "a\u{7}b"}),
            "profile_title",
            "control",
        ),
        (
            json!({"support_url": "ftp://example.com"}),
            "support_url",
            "http://",
        ),
        (json!({"support_url": "https://"}), "support_url", "http://"),
        (
            json!({"support_url": "https://ex ample.com"}),
            "support_url",
            "printable ASCII",
        ),
        (
            json!({"support_url": "https://exämple.com"}),
            "support_url",
            "printable ASCII",
        ),
        (
            json!({"support_url": format!("https://{}", "a".repeat(2041))}),
            "support_url",
            "2048",
        ),
        // One bad field refuses the whole change.
        (
            json!({"profile_title": "Fine", "update_interval": 1000}),
            "update_interval",
            "1 to 168",
        ),
    ] {
        p.put(&root, PATH, body.clone())
            .expect_error(422, Some(field), detail);
    }
    assert_eq!(p.get(&root, PATH).ok()["profile_title"], Value::Null);

    // Set, trimmed; absent fields keep their value; null goes back to the default.
    let set = p
        .put(
            &root,
            PATH,
            json!({"profile_title": "  Fast VPN · {USERNAME}  ", "update_interval": 168,
                   "support_url": "https://t.me/fastvpn_support"}),
        )
        .ok();
    assert_eq!(
        set,
        json!({"profile_title": "Fast VPN · {USERNAME}", "update_interval": 168,
               "support_url": "https://t.me/fastvpn_support"})
    );
    let kept = p.put(&root, PATH, json!({"update_interval": 1})).ok();
    assert_eq!(kept["profile_title"], "Fast VPN · {USERNAME}");
    assert_eq!(kept["support_url"], "https://t.me/fastvpn_support");
    assert_eq!(kept["update_interval"], 1);
    let cleared = p.put(&root, PATH, json!({"support_url": null})).ok();
    assert_eq!(cleared["support_url"], Value::Null);
    assert_eq!(cleared["profile_title"], "Fast VPN · {USERNAME}");

    // Any admin may read; only a sudo admin with write access may change.
    let svc = p.new_service(&root, "svc", &[]);
    let plain = p.new_admin(
        &root,
        json!({"username": "plain", "password": "plain-password", "service_ids": [svc]}),
    );
    let plain_ro = p.new_admin(
        &root,
        json!({"username": "plain_ro", "password": "plain-ro-password", "read_only": true}),
    );
    let viewer = p.new_admin(
        &root,
        json!({"username": "viewer", "password": "viewer-password", "is_sudo": true,
               "read_only": true}),
    );
    for token in [&plain, &plain_ro, &viewer] {
        assert_eq!(p.get(token, PATH).ok(), cleared);
        p.put(token, PATH, json!({"update_interval": 2}))
            .expect_error(403, None, "");
    }
    assert_eq!(p.get("not-a-token", PATH).status, 401);
    assert_eq!(
        p.put("not-a-token", PATH, json!({"update_interval": 2}))
            .status,
        401
    );
    assert_eq!(p.get(&root, PATH).ok()["update_interval"], 1);

    // Stored in the database: a restart keeps them.
    p.restart(&panel::Options::default());
    let root = p.admin_token();
    assert_eq!(p.get(&root, PATH).ok(), cleared);

    // In the spec, with examples and the error responses.
    let spec: Value = reqwest::blocking::get(format!("{}/openapi.json", p.base))
        .unwrap()
        .json()
        .unwrap();
    let path = &spec["paths"]["/settings/subscription"];
    for status in ["200", "401", "403", "422"] {
        assert!(path["put"]["responses"][status].is_object(), "PUT {status}");
    }
    assert!(path["get"]["responses"]["200"].is_object());
    let schemas = &spec["components"]["schemas"];
    assert_eq!(
        schemas["SubscriptionSettings"]["example"]["update_interval"],
        12
    );
    assert!(schemas["SubscriptionSettingsInput"]["example"]["support_url"].is_string());
}

fn title_of(headers: &reqwest::header::HeaderMap) -> String {
    let value = headers["profile-title"].to_str().unwrap();
    let encoded = value.strip_prefix("base64:").unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

fn subscriptions_follow_the_settings(backend: Backend) {
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    let inbound = p.new_inbound(&root, "plain", "aes-256-gcm", panel::free_port());
    let svc = p.new_service(&root, "all", &[inbound["id"].as_i64().unwrap()]);
    let alice = p.new_user(
        &root,
        json!({"username": "alice", "service_ids": [svc], "data_limit": 1_073_741_824}),
    );
    let sub = format!("{}/sub/alice/{}", p.base, alice["key"].as_str().unwrap());
    let fetch_with = |accept: &str, extra: &[(&str, &str)]| {
        let mut request = reqwest::blocking::Client::new()
            .get(&sub)
            .header("accept", accept);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let r = request.send().unwrap();
        assert_eq!(r.status(), 200);
        let headers = r.headers().clone();
        (headers, r.text().unwrap())
    };
    let fetch = |accept: &str| fetch_with(accept, &[]);

    // Defaults: the user's name, 12 hours, no support URL.
    let (headers, page) = fetch("text/html");
    assert_eq!(title_of(&headers), "alice");
    assert_eq!(headers["profile-update-interval"], "12");
    assert!(!headers.contains_key("support-url"));
    assert!(!page.contains("Support"));
    // The page's address, on the host the client asked for.
    assert_eq!(headers["profile-web-page-url"], sub.as_str());
    let (headers, _) = fetch_with(
        "*/*",
        &[
            ("host", "panel.example.com"),
            ("x-forwarded-proto", "https"),
        ],
    );
    assert_eq!(
        headers["profile-web-page-url"],
        sub.replace(&p.base, "https://panel.example.com").as_str()
    );
    let (headers, _) = fetch_with("*/*", &[("host", "bad host\\x")]);
    assert!(!headers.contains_key("profile-web-page-url"));

    p.put(
        &root,
        "/api/settings/subscription",
        json!({"profile_title": "Fast VPN · {USERNAME} · {DATA_LEFT}", "update_interval": 6,
               "support_url": "https://t.me/fastvpn_support?start=1&x=2"}),
    )
    .ok();
    for accept in ["*/*", "text/html"] {
        let (headers, _) = fetch(accept);
        assert_eq!(title_of(&headers), "Fast VPN · alice · 1 GB", "{accept}");
        assert_eq!(headers["profile-update-interval"], "6", "{accept}");
        assert_eq!(
            headers["support-url"], "https://t.me/fastvpn_support?start=1&x=2",
            "{accept}"
        );
    }
    let (_, page) = fetch("text/html");
    assert!(
        page.contains(
            "<a href=\"https://t.me/fastvpn_support?start=1&amp;x=2\" rel=\"noopener noreferrer\">"
        ),
        "{page}"
    );

    // Back to the defaults.
    p.put(
        &root,
        "/api/settings/subscription",
        json!({"profile_title": null, "support_url": null}),
    )
    .ok();
    let (headers, page) = fetch("text/html");
    assert_eq!(title_of(&headers), "alice");
    assert_eq!(headers["profile-update-interval"], "6");
    assert!(!headers.contains_key("support-url"));
    assert!(!page.contains("href="));
}

const ROUTING: &str = "/api/settings/routing";

fn routing_settings_api(backend: Backend) {
    let mut p = TestPanel::start(backend);
    let root = p.admin_token();
    assert_eq!(p.get(&root, ROUTING).ok(), json!({"default": "allow"}));

    // Rules that do not parse or compile: the field is named, nothing changes.
    for (body, field, detail) in [
        (json!([]), "routing", "must be a JSON object"),
        (json!({"rulez": []}), "rulez", "unknown field `rulez`"),
        (
            json!({"default": "drop"}),
            "default",
            "unknown variant `drop`",
        ),
        (
            json!({"rules": [{"action": "deny"}, {"ports": [80]}]}),
            "rules[1]",
            "missing field `action`",
        ),
        // A rule or window written as an array of its fields is not taken for one.
        (
            json!({"rules": [["deny"]]}),
            "rules[0]",
            "expected an object",
        ),
        (
            json!({"rules": [{"action": "deny", "schedule": [[["mon"]]]}]}),
            "rules[0].schedule[0]",
            "expected an object",
        ),
        (
            json!({"rules": [{"action": "deny", "ports": [70000]}]}),
            "rules[0].ports[0]",
            "",
        ),
        (
            json!({"rules": [{"action": "deny", "destination_cidrs": ["10.0.0.0/40"]}]}),
            "rules[0].destination_cidrs[0]",
            "",
        ),
        (json!({"timezone": "Mars/Base"}), "timezone", ""),
        (
            json!({"rules": [{"action": "deny", "countries": ["DE"]}]}),
            "rules[0].countries",
            "geoip_database",
        ),
        (
            json!({"geoip_database": "/nonexistent/country.mmdb",
                   "rules": [{"action": "deny", "countries": ["DE"]}]}),
            "geoip_database",
            "cannot open",
        ),
    ] {
        p.put(&root, ROUTING, body.clone())
            .expect_error(422, Some(field), detail);
    }
    assert_eq!(p.get(&root, ROUTING).ok(), json!({"default": "allow"}));

    // Set: the answer is the rules as stored (empty lists left out).
    let rules = json!({
        "rules": [
            {"action": "deny", "users": ["alice"], "ports": [25, "465-587"], "domains": []},
            {"action": "allow", "domain_suffixes": ["example.com"], "network": ["tcp"]},
        ],
        "default": "deny",
        "timezone": "Asia/Tehran",
    });
    let stored = json!({
        "rules": [
            {"action": "deny", "users": ["alice"], "ports": [25, "465-587"]},
            {"action": "allow", "domain_suffixes": ["example.com"], "network": ["tcp"]},
        ],
        "default": "deny",
        "timezone": "Asia/Tehran",
    });
    assert_eq!(p.put(&root, ROUTING, rules.clone()).ok(), stored);
    assert_eq!(p.get(&root, ROUTING).ok(), stored);
    let log = p.sql(async |pool| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'settings.routing.modify'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(log, 1);

    // Only sudo admins read them (rules name every admin's users); only those with write
    // access change them.
    let plain = p.new_admin(
        &root,
        json!({"username": "plain", "password": "plain-password"}),
    );
    let viewer = p.new_admin(
        &root,
        json!({"username": "viewer", "password": "viewer-password", "is_sudo": true,
               "read_only": true}),
    );
    p.get(&plain, ROUTING).expect_error(403, None, "");
    assert_eq!(p.get(&viewer, ROUTING).ok(), stored);
    for token in [&plain, &viewer] {
        p.put(token, ROUTING, json!({})).expect_error(403, None, "");
    }
    assert_eq!(p.get("not-a-token", ROUTING).status, 401);
    assert_eq!(p.put("not-a-token", ROUTING, json!({})).status, 401);

    // Kept across a restart; `{}` removes every rule.
    p.restart(&panel::Options::default());
    let root = p.admin_token();
    assert_eq!(p.get(&root, ROUTING).ok(), stored);
    assert_eq!(
        p.put(&root, ROUTING, json!({})).ok(),
        json!({"default": "allow"})
    );
    assert_eq!(p.get(&root, ROUTING).ok(), json!({"default": "allow"}));
}

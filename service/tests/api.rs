//! The panel's API over real HTTP against `marzneshin serve`, each test on SQLite and on
//! PostgreSQL (see `panel/mod.rs`): every endpoint's success path, authentication failures,
//! login throttling, permission boundaries between admins, validation errors that name the
//! field, the user list's paging, sorting and filters, usage history, system statistics, the
//! panel-wide usage series and the engine's status.

mod panel;

use std::net::TcpStream;

use panel::{Backend, TestPanel, ADMIN, ADMIN_PASSWORD};
use serde_json::{json, Value};

on_both_databases!(
    admin_endpoints,
    spec_and_docs_are_served,
    auth_failures,
    login_throttling,
    oversize_bodies_are_refused,
    user_endpoints,
    service_and_inbound_endpoints,
    other_admins_users_are_invisible,
    services_not_granted_are_refused,
    read_only_admin_changes_nothing,
    admin_without_modify_users_access,
    validation_errors_name_the_field,
    user_list_pages_sorts_and_filters,
    usage_history,
    system_stats,
    usage_thresholds_in_sql,
    system_usage_and_engine,
);

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect()
}

/// The `id` of a created object.
fn id(object: &Value) -> i64 {
    object["id"].as_i64().unwrap()
}

/// A request: method, path and JSON body (if any).
type Call = (&'static str, String, Option<Value>);

/// Every endpoint that acts on the existing user `username`.
fn calls_on_user(username: &str) -> Vec<Call> {
    let at = |tail: &str| format!("/api/users/{username}{tail}");
    vec![
        ("GET", at(""), None),
        ("PUT", at(""), Some(json!({"note": "changed"}))),
        ("DELETE", at(""), None),
        ("POST", at("/enable"), Some(json!({}))),
        ("POST", at("/disable"), Some(json!({}))),
        ("POST", at("/reset"), Some(json!({}))),
        ("POST", at("/revoke_sub"), Some(json!({}))),
        ("GET", at("/usage"), None),
    ]
}

/// Every change to users: creating one, and each change to the existing user `username`.
fn user_changes(username: &str) -> Vec<Call> {
    let mut calls = vec![(
        "POST",
        "/api/users".to_owned(),
        Some(json!({"username": "new_user"})),
    )];
    calls.extend(calls_on_user(username).into_iter().filter(|c| c.0 != "GET"));
    calls
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn admin_endpoints(backend: Backend) {
    let mut p = TestPanel::start(backend);
    let login = p.login(ADMIN, ADMIN_PASSWORD).ok();
    assert_eq!(login["token_type"], "bearer");
    assert_eq!(login["is_sudo"], true);
    let root = login["access_token"].as_str().unwrap().to_owned();

    let me = p.get(&root, "/api/admins/current").ok();
    assert_eq!(me["username"], ADMIN);
    assert_eq!(me["is_sudo"], true);
    assert_eq!(me["enabled"], true);

    let svc = p.new_service(&root, "svc", &[]);
    let created = p
        .post(
            &root,
            "/api/admins",
            json!({"username": "alice", "password": "alice-pass", "service_ids": [svc]}),
        )
        .ok();
    assert_eq!(
        created,
        json!({"username": "alice", "is_sudo": false, "enabled": true, "read_only": false,
               "all_services_access": false, "modify_users_access": true, "service_ids": [svc]})
    );
    let all = p.get(&root, "/api/admins").ok();
    let listed: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["username"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ADMIN, "alice"]);

    let changed = p
        .put(
            &root,
            "/api/admins/alice",
            json!({"read_only": true, "all_services_access": true, "service_ids": []}),
        )
        .ok();
    assert_eq!(changed["read_only"], true);
    assert_eq!(changed["all_services_access"], true);
    assert_eq!(changed["service_ids"], json!([]));
    assert_eq!(changed["is_sudo"], false, "fields not sent stay");

    // Any admin may change their own password (even a read-only one); the new one works.
    let alice = p.token("alice", "alice-pass");
    p.put(
        &alice,
        "/api/admins/alice",
        json!({"password": "alice-pass-2"}),
    )
    .ok();
    p.token("alice", "alice-pass-2");
    p.login("alice", "alice-pass")
        .expect_error(401, None, "incorrect username or password");

    p.delete(&root, "/api/admins/ghost")
        .expect_error(404, None, "admin \"ghost\" not found");
    p.put(&root, "/api/admins/ghost", json!({"enabled": false}))
        .expect_error(404, None, "not found");
    p.delete(&root, &format!("/api/admins/{ADMIN}"))
        .expect_error(422, Some("username"), "cannot delete themselves");
    assert_eq!(p.delete(&root, "/api/admins/alice").ok(), json!(true));
    assert_eq!(
        p.get(&root, "/api/admins").ok().as_array().unwrap().len(),
        1
    );
    p.login("alice", "alice-pass-2")
        .expect_error(401, None, "incorrect");
    p.stop();
}

fn spec_and_docs_are_served(backend: Backend) {
    let p = TestPanel::start(backend);
    let spec = p.call("GET", "/openapi.json", None, None).ok();
    assert!(spec["paths"]["/users/{username}"]["put"].is_object());
    let docs = p.call("GET", "/docs", None, None);
    assert_eq!(docs.status, 200);
    assert!(docs.text.to_lowercase().contains("swagger"));
}

fn auth_failures(backend: Backend) {
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    for path in [
        "/api/admins/current",
        "/api/admins",
        "/api/users",
        "/api/services",
        "/api/inbounds",
        "/api/system/stats",
        "/api/system/usage",
        "/api/system/engine",
    ] {
        assert_eq!(p.call("GET", path, None, None).status, 401, "{path}");
        assert_eq!(
            p.call("GET", path, Some("not-a-token"), None).status,
            401,
            "{path}"
        );
    }
    // Tokens not signed with the panel's secret: another secret, another admin's name under
    // the admin's signature, no signature at all.
    let claims = json!({"sub": ADMIN, "iat": now(), "exp": now() + 3600, "pwd": now()});
    let other_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not the panel's secret"),
    )
    .unwrap();
    let parts: Vec<&str> = root.split('.').collect();
    let other_payload: Vec<&str> = other_secret.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other_payload[1], parts[2]);
    let unsigned = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        other_payload[1]
    );
    for forged in [other_secret, spliced, unsigned] {
        p.get(&forged, "/api/admins/current")
            .expect_error(401, None, "invalid or expired token");
    }
    let r = p.call(
        "POST",
        "/api/users",
        None,
        Some(json!({"username": "x_user"})),
    );
    assert_eq!(r.status, 401);

    // Wrong password and unknown admin look the same.
    p.login(ADMIN, "wrong-password")
        .expect_error(401, None, "incorrect username or password");
    p.login("nobody", "whatever-1")
        .expect_error(401, None, "incorrect username or password");

    // A token issued before a password change is void; one issued after works.
    p.post(
        &root,
        "/api/admins",
        json!({"username": "bob", "password": "bob-password"}),
    )
    .ok();
    let old = p.token("bob", "bob-password");
    p.get(&old, "/api/admins/current").ok();
    p.put(
        &old,
        "/api/admins/bob",
        json!({"password": "bob-password-2"}),
    )
    .ok();
    p.get(&old, "/api/admins/current")
        .expect_error(401, None, "invalid or expired token");
    let new = p.token("bob", "bob-password-2");
    assert_eq!(p.get(&new, "/api/admins/current").ok()["username"], "bob");

    // The same when a sudo admin sets the password.
    p.put(
        &root,
        "/api/admins/bob",
        json!({"password": "bob-password-3"}),
    )
    .ok();
    assert_eq!(p.get(&new, "/api/admins/current").status, 401);
    let new = p.token("bob", "bob-password-3");

    // A disabled admin's token stops working and they cannot log in.
    p.put(&root, "/api/admins/bob", json!({"enabled": false}))
        .ok();
    p.get(&new, "/api/admins/current")
        .expect_error(401, None, "invalid or expired token");
    p.login("bob", "bob-password-3")
        .expect_error(401, None, "incorrect username or password");
    p.put(&root, "/api/admins/bob", json!({"enabled": true}))
        .ok();
    // Enabled again, they log in again: the tokens issued before stay void.
    p.get(&new, "/api/admins/current")
        .expect_error(401, None, "invalid or expired token");
    let new = p.token("bob", "bob-password-3");
    p.get(&new, "/api/admins/current").ok();

    // A deleted admin's token stops working.
    p.delete(&root, "/api/admins/bob").ok();
    assert_eq!(p.get(&new, "/api/admins/current").status, 401);
}

fn login_throttling(backend: Backend) {
    let p = TestPanel::start(backend);
    let token_before_throttling = p.admin_token();
    // Failures below the limit are forgotten after a successful login.
    for _ in 0..4 {
        assert_eq!(p.login(ADMIN, "wrong-password").status, 401);
    }
    p.token(ADMIN, ADMIN_PASSWORD);
    for _ in 0..5 {
        p.login(ADMIN, "wrong-password")
            .expect_error(401, None, "incorrect username or password");
    }
    // The 6th attempt is refused, even with the right password, and says for how long.
    let r = p.login(ADMIN, ADMIN_PASSWORD);
    r.expect_error(429, None, "too many failed logins; try again in ");
    let secs: u64 = r.body["detail"]
        .as_str()
        .unwrap()
        .trim_start_matches("too many failed logins; try again in ")
        .trim_end_matches(" seconds")
        .parse()
        .unwrap();
    assert!((295..=300).contains(&secs), "{secs} seconds");
    // Claiming another client address in headers does not get around it.
    for header in [
        ("X-Real-IP", "203.0.113.7"),
        ("X-Forwarded-For", "203.0.113.8"),
        ("Forwarded", "for=203.0.113.9"),
    ] {
        assert_eq!(
            p.login_with(ADMIN, ADMIN_PASSWORD, &[header]).status,
            429,
            "{header:?}"
        );
    }
    // Tokens issued before still work: throttling is about logins only.

    // Another admin's successful login from the same address does not forgive the failures
    // as the first one.
    let root = token_before_throttling;
    p.post(
        &root,
        "/api/admins",
        json!({"username": "carol", "password": "carol-password"}),
    )
    .ok();
    for _ in 0..4 {
        assert_eq!(p.login("carol", "wrong-password").status, 401);
    }
    p.new_admin(
        &root,
        json!({"username": "dave", "password": "dave-password"}),
    );
    assert_eq!(p.login("carol", "wrong-password").status, 401);
    assert_eq!(p.login("carol", "carol-password").status, 429);

    // Attempts sent at once are counted before any password is checked: five get an
    // answer, the rest are refused.
    p.post(
        &root,
        "/api/admins",
        json!({"username": "erin", "password": "erin-password"}),
    )
    .ok();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let tries: Vec<_> = (0..12)
            .map(|_| s.spawn(|| p.login("erin", "wrong-password").status))
            .collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (statuses.len() - refused, refused),
        (5, 7),
        "statuses: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [401, 429].contains(s)),
        "{statuses:?}"
    );
}

/// A request body can make the panel hold at most so much: the login form (read before
/// anyone is authenticated) 16 KiB, anything else 8 MiB. A larger `Content-Length` gets 413
/// before the body is read; a body without one fails to read past the limit (400).
fn oversize_bodies_are_refused(backend: Backend) {
    use std::io::{Read, Write};
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    let port: u16 = p.base.rsplit(':').next().unwrap().parse().unwrap();
    // One request on its own connection, written whole before the answer is read (a body
    // still being written when the panel refuses it would race the panel's close).
    let raw = |head: String, body: &[u8]| -> String {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(body).unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    let declared = |path: &str, auth: Option<&str>, length: usize| -> String {
        let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        raw(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
                 Content-Length: {length}\r\nConnection: close\r\n\r\n"
            ),
            &[],
        )
    };
    let answer = declared("/api/admins/token", None, 20_000);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("request body too large (at most 16384 bytes)"),
        "{answer}"
    );
    let answer = declared("/api/settings/routing", Some(&root), 9 << 20);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Without a length (chunked): read up to the limit, then refused. Whole, the form would
    // be a wrong password (401).
    let mut form = b"username=admin&password=".to_vec();
    form.resize(17 << 10, b'a');
    let mut body = format!("{:x}\r\n", form.len()).into_bytes();
    body.extend_from_slice(&form);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = raw(
        "POST /api/admins/token HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_string(),
        &body,
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Under the limits, as before.
    p.login(ADMIN, ADMIN_PASSWORD).ok();
    p.put(&root, "/api/settings/routing", json!({})).ok();
}

fn user_endpoints(backend: Backend) {
    let mut p = TestPanel::start(backend);
    let root = p.admin_token();
    let port = panel::free_port();
    let inbound = p.new_inbound(&root, "ss1", "aes-128-gcm", port);
    let svc = p.new_service(&root, "svc", &[id(&inbound)]);

    let u = p.new_user(
        &root,
        json!({"username": "user_1", "data_limit": 1000000, "data_limit_reset_strategy": "month",
               "expire_strategy": "fixed_date", "expire_date": now() + 86_400, "note": "hello",
               "service_ids": [svc]}),
    );
    assert_eq!(u["username"], "user_1");
    assert_eq!(u["status"], "active");
    assert_eq!(u["enabled"], true);
    assert_eq!(u["data_limit"], 1000000);
    assert_eq!(u["used_traffic"], 0);
    assert_eq!(u["data_limit_reset_strategy"], "month");
    assert_eq!(u["expire_strategy"], "fixed_date");
    assert_eq!(u["note"], "hello");
    assert_eq!(u["owner_username"], ADMIN);
    assert_eq!(u["service_ids"], json!([svc]));
    let key = u["key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 32);

    let got = p.get(&root, "/api/users/user_1").ok();
    assert_eq!(got, u);

    // Defaults.
    let plain = p.new_user(&root, json!({"username": "plain"}));
    assert_eq!(plain["data_limit"], Value::Null);
    assert_eq!(plain["expire_strategy"], "never");
    assert_eq!(plain["data_limit_reset_strategy"], "no_reset");
    assert_eq!(plain["service_ids"], json!([]));
    let hold = p.new_user(
        &root,
        json!({"username": "on_hold", "expire_strategy": "start_on_first_use",
               "usage_duration": 3600, "activation_deadline": now() + 7 * 86_400}),
    );
    assert_eq!(hold["status"], "on_hold");

    let m = p
        .put(
            &root,
            "/api/users/user_1",
            json!({"note": "changed", "data_limit": 0, "expire_strategy": "never", "service_ids": []}),
        )
        .ok();
    assert_eq!(m["note"], "changed");
    assert_eq!(m["data_limit"], Value::Null, "0 clears the limit");
    assert_eq!(m["expire_strategy"], "never");
    assert_eq!(m["service_ids"], json!([]));
    assert_eq!(
        m["data_limit_reset_strategy"], "month",
        "fields not sent stay"
    );

    let d = p.post(&root, "/api/users/user_1/disable", json!({})).ok();
    assert_eq!(
        (d["enabled"].clone(), d["status"].clone()),
        (json!(false), json!("disabled"))
    );
    let e = p.post(&root, "/api/users/user_1/enable", json!({})).ok();
    assert_eq!(
        (e["enabled"].clone(), e["status"].clone()),
        (json!(true), json!("active"))
    );

    p.execute(
        "UPDATE users SET used_traffic = $1, lifetime_used_traffic = $1 WHERE username = 'user_1'",
        &[12345],
    );
    assert_eq!(
        p.get(&root, "/api/users/user_1").ok()["used_traffic"],
        12345
    );
    let r = p.post(&root, "/api/users/user_1/reset", json!({})).ok();
    assert_eq!(r["used_traffic"], 0);
    assert_eq!(r["lifetime_used_traffic"], 12345);

    let revoked = p
        .post(&root, "/api/users/user_1/revoke_sub", json!({}))
        .ok();
    let new_key = revoked["key"].as_str().unwrap();
    assert_ne!(new_key, key);
    assert_eq!(new_key.len(), 32);

    assert_eq!(
        p.get(&root, "/api/users/user_1/usage").ok(),
        json!([]),
        "no traffic yet"
    );

    assert_eq!(p.delete(&root, "/api/users/user_1").ok(), json!(true));
    p.get(&root, "/api/users/user_1")
        .expect_error(404, None, "user \"user_1\" not found");
    for (method, path, body) in calls_on_user("user_1") {
        p.call(method, &path, Some(&root), body).expect_error(
            404,
            None,
            "user \"user_1\" not found",
        );
    }
    let page = p.get(&root, "/api/users").ok();
    assert_eq!(page["total"], 2);
    p.stop();
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Whether `port` stops accepting connections within a few seconds (listeners close on the
/// engine's workers, after the API call returns).
fn closes(port: u16) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if !listening(port) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

fn service_and_inbound_endpoints(backend: Backend) {
    let mut p = TestPanel::start(backend);
    let root = p.admin_token();
    let (port_a, port_b, port_c) = (panel::free_port(), panel::free_port(), panel::free_port());

    let a = p.new_inbound(&root, "ss_a", "aes-256-gcm", port_a);
    assert_eq!(a["tag"], "ss_a");
    assert_eq!(a["protocol"], "shadowsocks");
    assert_eq!(a["config"]["settings"]["method"], "aes-256-gcm");
    assert!(listening(port_a), "the engine listens at once");
    let b = p.new_inbound(&root, "ss_b", "2022-blake3-aes-128-gcm", port_b);
    let (a_id, b_id) = (id(&a), id(&b));

    let list = p.get(&root, "/api/inbounds").ok();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(p.get(&root, &format!("/api/inbounds/{a_id}")).ok(), a);

    // Moving an inbound to another port moves the listener.
    let moved = p
        .put(
            &root,
            &format!("/api/inbounds/{a_id}"),
            json!({"config": {"tag": "ss_a", "listen": format!("127.0.0.1:{port_c}"),
                               "protocol": "shadowsocks", "settings": {"method": "chacha20-ietf-poly1305"}}}),
        )
        .ok();
    assert_eq!(
        moved["config"]["settings"]["method"],
        "chacha20-ietf-poly1305"
    );
    assert!(listening(port_c));
    assert!(closes(port_a), "old port closed");

    let s = p
        .post(
            &root,
            "/api/services",
            json!({"name": "both", "inbound_ids": [a_id, b_id]}),
        )
        .ok();
    let s_id = id(&s);
    assert_eq!(
        s,
        json!({"id": s_id, "name": "both", "inbound_ids": [a_id, b_id]})
    );
    let empty = p
        .post(&root, "/api/services", json!({"name": "empty"}))
        .ok();
    assert_eq!(empty["inbound_ids"], json!([]));
    assert_eq!(p.get(&root, &format!("/api/services/{s_id}")).ok(), s);
    assert_eq!(
        p.get(&root, "/api/services").ok().as_array().unwrap().len(),
        2
    );
    let renamed = p
        .put(
            &root,
            &format!("/api/services/{s_id}"),
            json!({"name": "only_b", "inbound_ids": [b_id]}),
        )
        .ok();
    assert_eq!(
        renamed,
        json!({"id": s_id, "name": "only_b", "inbound_ids": [b_id]})
    );

    // Deleting an inbound closes its port and takes it out of services.
    assert_eq!(
        p.delete(&root, &format!("/api/inbounds/{b_id}")).ok(),
        json!(true)
    );
    assert!(closes(port_b));
    assert_eq!(
        p.get(&root, &format!("/api/services/{s_id}")).ok()["inbound_ids"],
        json!([])
    );
    p.get(&root, &format!("/api/inbounds/{b_id}"))
        .expect_error(404, None, "not found");
    assert_eq!(
        p.delete(&root, &format!("/api/services/{s_id}")).ok(),
        json!(true)
    );
    p.get(&root, &format!("/api/services/{s_id}"))
        .expect_error(404, None, "not found");
    for (method, path) in [
        ("PUT", "/api/services/999"),
        ("DELETE", "/api/services/999"),
        ("PUT", "/api/inbounds/999"),
        ("DELETE", "/api/inbounds/999"),
    ] {
        let body = (method == "PUT").then(|| {
            json!({"name": "x", "config": {"tag": "x", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
                                            "settings": {"method": "aes-128-gcm"}}})
        });
        assert_eq!(
            p.call(method, path, Some(&root), body).status,
            404,
            "{method} {path}"
        );
    }
    assert_eq!(
        p.delete(&root, &format!("/api/inbounds/{a_id}")).ok(),
        json!(true)
    );
    assert!(closes(port_c));
    p.stop();
}

/// Two non-sudo admins with one service each, and a user of each.
fn two_admins(p: &TestPanel, root: &str) -> (String, String, i64, i64) {
    let svc_a = p.new_service(root, "svc_a", &[]);
    let svc_b = p.new_service(root, "svc_b", &[]);
    let alice = p.new_admin(
        root,
        json!({"username": "alice", "password": "alice-pass", "service_ids": [svc_a]}),
    );
    let bob = p.new_admin(
        root,
        json!({"username": "bob", "password": "bob-password", "service_ids": [svc_b]}),
    );
    p.new_user(
        &alice,
        json!({"username": "alice_user", "service_ids": [svc_a]}),
    );
    p.new_user(
        &bob,
        json!({"username": "bob_user", "service_ids": [svc_b]}),
    );
    (alice, bob, svc_a, svc_b)
}

fn other_admins_users_are_invisible(backend: Backend) {
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    let (alice, bob, _, _) = two_admins(&p, &root);
    for (method, path, body) in calls_on_user("bob_user") {
        p.call(method, &path, Some(&alice), body).expect_error(
            404,
            None,
            "user \"bob_user\" not found",
        );
    }
    assert_eq!(names(&p.get(&alice, "/api/users").ok()), ["alice_user"]);
    assert_eq!(names(&p.get(&bob, "/api/users").ok()), ["bob_user"]);
    assert_eq!(p.get(&alice, "/api/users").ok()["total"], 1);
    assert_eq!(p.get(&alice, "/api/system/stats").ok()["total_users"], 1);
    // The sudo admin sees everyone.
    assert_eq!(
        names(&p.get(&root, "/api/users?order=username").ok()),
        ["alice_user", "bob_user"]
    );
    assert_eq!(p.get(&root, "/api/system/stats").ok()["total_users"], 2);
    assert_eq!(
        p.get(&root, "/api/users/bob_user").ok()["owner_username"],
        "bob"
    );
    // Bob's user is untouched.
    assert_eq!(p.get(&bob, "/api/users/bob_user").ok()["enabled"], true);
    // Non-sudo admins manage no admins.
    p.get(&alice, "/api/admins")
        .expect_error(403, None, "only a sudo admin");
    p.put(&alice, "/api/admins/bob", json!({"password": "hijacked-1"}))
        .expect_error(403, None, "only a sudo admin");
    p.put(&alice, "/api/admins/alice", json!({"is_sudo": true}))
        .expect_error(403, None, "only a sudo admin");
    p.delete(&alice, "/api/admins/bob")
        .expect_error(403, None, "only a sudo admin");
    p.post(
        &alice,
        "/api/admins",
        json!({"username": "eve", "password": "eve-password"}),
    )
    .expect_error(403, None, "only a sudo admin");
    p.token("bob", "bob-password");
}

fn services_not_granted_are_refused(backend: Backend) {
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    let (alice, _, svc_a, svc_b) = two_admins(&p, &root);
    p.post(
        &alice,
        "/api/users",
        json!({"username": "sneaky", "service_ids": [svc_a, svc_b]}),
    )
    .expect_error(403, None, &format!("may not use service {svc_b}"));
    assert_eq!(
        p.get(&root, "/api/users/sneaky").status,
        404,
        "nothing created"
    );
    p.put(
        &alice,
        "/api/users/alice_user",
        json!({"service_ids": [svc_b]}),
    )
    .expect_error(403, None, &format!("may not use service {svc_b}"));
    assert_eq!(
        p.get(&alice, "/api/users/alice_user").ok()["service_ids"],
        json!([svc_a])
    );
    // Services not granted are not shown.
    let listed: Vec<i64> = p
        .get(&alice, "/api/services")
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    assert_eq!(listed, [svc_a]);
    p.get(&alice, &format!("/api/services/{svc_b}"))
        .expect_error(404, None, "not found");
    p.get(&alice, &format!("/api/services/{svc_a}")).ok();
    // Non-sudo admins change no services or inbounds.
    p.post(&alice, "/api/services", json!({"name": "mine"}))
        .expect_error(403, None, "only a sudo admin");
    p.put(
        &alice,
        &format!("/api/services/{svc_a}"),
        json!({"name": "mine"}),
    )
    .expect_error(403, None, "only a sudo admin");
    p.delete(&alice, &format!("/api/services/{svc_a}"))
        .expect_error(403, None, "only a sudo admin");
    let config = json!({"config": {"tag": "x", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
                                   "settings": {"method": "aes-128-gcm"}}});
    p.post(&alice, "/api/inbounds", config.clone())
        .expect_error(403, None, "only a sudo admin");
    // With all_services_access the admin may use every service.
    p.put(
        &root,
        "/api/admins/alice",
        json!({"all_services_access": true}),
    )
    .ok();
    let u = p
        .post(
            &alice,
            "/api/users",
            json!({"username": "now_ok", "service_ids": [svc_b]}),
        )
        .ok();
    assert_eq!(u["service_ids"], json!([svc_b]));
}

fn read_only_admin_changes_nothing(backend: Backend) {
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    let port = panel::free_port();
    let inbound = p.new_inbound(&root, "ss", "aes-128-gcm", port);
    let ib = id(&inbound);
    let svc = p.new_service(&root, "svc", &[ib]);
    // A sudo admin that is read-only: only read_only stands in the way.
    let ro = p.new_admin(
        &root,
        json!({"username": "viewer", "password": "viewer-pass", "is_sudo": true, "read_only": true}),
    );
    // And a plain read-only admin with a user of their own (made while they could write).
    let plain = p.new_admin(
        &root,
        json!({"username": "plain_ro", "password": "plain-pass", "service_ids": [svc]}),
    );
    p.new_user(
        &plain,
        json!({"username": "own_user", "service_ids": [svc]}),
    );
    p.put(&root, "/api/admins/plain_ro", json!({"read_only": true}))
        .ok();
    let plain = p.token("plain_ro", "plain-pass");
    p.new_user(&root, json!({"username": "victim", "service_ids": [svc]}));
    let inbound_body = json!({"config": {"tag": "ss2", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
                                         "settings": {"method": "aes-128-gcm"}}});
    let mut all = user_changes("victim");
    all.extend([
        (
            "POST",
            "/api/services".to_owned(),
            Some(json!({"name": "s2"})),
        ),
        (
            "PUT",
            format!("/api/services/{svc}"),
            Some(json!({"name": "s3"})),
        ),
        ("DELETE", format!("/api/services/{svc}"), None),
        (
            "POST",
            "/api/inbounds".to_owned(),
            Some(inbound_body.clone()),
        ),
        ("PUT", format!("/api/inbounds/{ib}"), Some(inbound_body)),
        ("DELETE", format!("/api/inbounds/{ib}"), None),
        (
            "POST",
            "/api/admins".to_owned(),
            Some(json!({"username": "eve", "password": "eve-password"})),
        ),
        (
            "PUT",
            "/api/admins/plain_ro".to_owned(),
            Some(json!({"enabled": false})),
        ),
        ("DELETE", "/api/admins/plain_ro".to_owned(), None),
    ]);
    for (method, path, body) in all {
        p.call(method, &path, Some(&ro), body)
            .expect_error(403, None, "read-only");
    }
    for (method, path, body) in user_changes("own_user") {
        p.call(method, &path, Some(&plain), body)
            .expect_error(403, None, "read-only");
    }
    // Nothing changed; reading works.
    let victim = p.get(&ro, "/api/users/victim").ok();
    assert_eq!(victim["enabled"], true);
    assert_eq!(victim["note"], Value::Null);
    assert_eq!(p.get(&ro, "/api/users").ok()["total"], 2);
    assert_eq!(p.get(&plain, "/api/users").ok()["total"], 1);
    p.get(&plain, "/api/users/own_user/usage").ok();
    p.get(&ro, "/api/system/stats").ok();
    assert_eq!(
        p.get(&ro, "/api/services").ok().as_array().unwrap().len(),
        1
    );
    assert_eq!(
        p.get(&ro, "/api/inbounds").ok().as_array().unwrap().len(),
        1
    );
    assert_eq!(p.get(&ro, "/api/admins").ok().as_array().unwrap().len(), 3);
    assert!(listening(port), "inbound still there");
}

fn admin_without_modify_users_access(backend: Backend) {
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    let svc = p.new_service(&root, "svc", &[]);
    let carol = p.new_admin(
        &root,
        json!({"username": "carol", "password": "carol-pass", "service_ids": [svc]}),
    );
    p.new_user(&carol, json!({"username": "carol_user"}));
    p.put(
        &root,
        "/api/admins/carol",
        json!({"modify_users_access": false}),
    )
    .ok();
    let carol = p.token("carol", "carol-pass");
    for (method, path, body) in user_changes("carol_user") {
        p.call(method, &path, Some(&carol), body)
            .expect_error(403, None, "may not modify users");
    }
    // Reading still works, and nothing changed.
    assert_eq!(names(&p.get(&carol, "/api/users").ok()), ["carol_user"]);
    let u = p.get(&carol, "/api/users/carol_user").ok();
    assert_eq!(
        (u["enabled"].clone(), u["note"].clone()),
        (json!(true), Value::Null)
    );
}

fn validation_errors_name_the_field(backend: Backend) {
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    for bad in ["ab", "has space", "dash-name", "ünïcode", &"x".repeat(33)] {
        p.post(&root, "/api/users", json!({"username": bad}))
            .expect_error(
                422,
                Some("username"),
                "must be 3 to 32 letters, digits or underscores",
            );
        p.post(
            &root,
            "/api/admins",
            json!({"username": bad, "password": "long-enough"}),
        )
        .expect_error(422, Some("username"), "must be 3 to 32");
    }
    let admin_path = format!("/api/admins/{ADMIN}");
    let cases = [
        (
            "POST",
            "/api/admins",
            json!({"username": "shorty", "password": "1234567"}),
            "password",
            "must be at least 8 characters",
        ),
        (
            "PUT",
            admin_path.as_str(),
            json!({"password": "short"}),
            "password",
            "must be at least 8 characters",
        ),
        (
            "POST",
            "/api/users",
            json!({"username": "fixed", "expire_strategy": "fixed_date"}),
            "expire_date",
            "required when expire_strategy is fixed_date",
        ),
        (
            "POST",
            "/api/users",
            json!({"username": "sofu", "expire_strategy": "start_on_first_use"}),
            "usage_duration",
            "a positive number of seconds is required for start_on_first_use",
        ),
        (
            "POST",
            "/api/users",
            json!({"username": "sofu", "expire_strategy": "start_on_first_use", "usage_duration": 0}),
            "usage_duration",
            "positive",
        ),
        (
            "POST",
            "/api/users",
            json!({"username": "neg", "data_limit": -1}),
            "data_limit",
            "must not be negative",
        ),
        // Dates and durations stay where no sum or difference of them overflows.
        (
            "POST",
            "/api/users",
            json!({"username": "far", "expire_strategy": "fixed_date",
                   "expire_date": 253_402_300_800_i64}),
            "expire_date",
            "between 0 and 253402300799",
        ),
        (
            "POST",
            "/api/users",
            json!({"username": "far", "expire_strategy": "start_on_first_use",
                   "usage_duration": 86_400, "activation_deadline": i64::MIN}),
            "activation_deadline",
            "between 0 and 253402300799",
        ),
        (
            "POST",
            "/api/users",
            json!({"username": "far", "expire_strategy": "start_on_first_use",
                   "usage_duration": i64::MAX}),
            "usage_duration",
            "at most 31622400000 seconds",
        ),
        (
            "POST",
            "/api/users",
            json!({"username": "nosvc", "service_ids": [4242]}),
            "service_ids",
            "no such id 4242",
        ),
    ];
    for (method, path, body, field, detail) in cases {
        p.call(method, path, Some(&root), Some(body))
            .expect_error(422, Some(field), detail);
    }
    assert_eq!(
        p.get(&root, "/api/users").ok()["total"],
        0,
        "nothing was created"
    );

    // A change that leaves the user inconsistent is refused too.
    p.new_user(&root, json!({"username": "taken"}));
    p.put(
        &root,
        "/api/users/taken",
        json!({"expire_strategy": "fixed_date"}),
    )
    .expect_error(422, Some("expire_date"), "required");
    p.put(
        &root,
        "/api/users/taken",
        json!({"activation_deadline": -1}),
    )
    .expect_error(422, Some("activation_deadline"), "between 0 and");
    p.post(&root, "/api/users", json!({"username": "taken"}))
        .expect_error(409, Some("username"), "username \"taken\" already exists");
    p.post(
        &root,
        "/api/admins",
        json!({"username": ADMIN, "password": "long-enough"}),
    )
    .expect_error(409, Some("username"), "already exists");

    // Inbounds: checked as the engine would check them, naming the field.
    let inbound = |settings: Value| {
        json!({"config": {"tag": "bad", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
                          "settings": settings}})
    };
    p.post(
        &root,
        "/api/inbounds",
        inbound(json!({"method": "rc4-md5"})),
    )
    .expect_error(422, Some("config.settings.method"), "rc4-md5");
    p.post(
        &root,
        "/api/inbounds",
        inbound(json!({"method": "aes-128-gcm", "users": [{"name": "a", "password": "x"}]})),
    )
    .expect_error(
        422,
        Some("config.settings.users"),
        "must be empty: users come from services",
    );
    let port = panel::free_port();
    p.new_inbound(&root, "dup", "aes-128-gcm", port);
    p.post(
        &root,
        "/api/inbounds",
        json!({"config": {"tag": "dup", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
                          "settings": {"method": "aes-128-gcm"}}}),
    )
    .expect_error(409, Some("config.tag"), "config.tag \"dup\" already exists");
    // A port already taken (here by the first inbound) is refused, and nothing is stored.
    p.post(
        &root,
        "/api/inbounds",
        json!({"config": {"tag": "busy", "listen": format!("127.0.0.1:{port}"),
                          "protocol": "shadowsocks", "settings": {"method": "aes-128-gcm"}}}),
    )
    .expect_error(
        422,
        Some("config.listen"),
        "already used by another inbound",
    );
    assert_eq!(
        p.get(&root, "/api/inbounds").ok().as_array().unwrap().len(),
        1
    );
    p.post(&root, "/api/services", json!({"name": "  "}))
        .expect_error(422, Some("name"), "must be 1 to 64 characters");
    p.post(
        &root,
        "/api/services",
        json!({"name": "svc", "inbound_ids": [999]}),
    )
    .expect_error(422, Some("inbound_ids"), "no such id 999");
    p.new_service(&root, "svc", &[]);
    p.post(&root, "/api/services", json!({"name": "svc"}))
        .expect_error(409, Some("name"), "name \"svc\" already exists");

    // Paging parameters.
    p.get(&root, "/api/users?page=0")
        .expect_error(422, Some("page"), "must be at least 1");
    p.get(&root, "/api/users?size=501").expect_error(
        422,
        Some("size"),
        "must be between 1 and 500",
    );
    // Malformed bodies and parameters are client errors, never 500.
    for r in [
        p.call("POST", "/api/users", Some(&root), Some(json!({"nope": 1}))),
        p.call(
            "POST",
            "/api/users",
            Some(&root),
            Some(json!({"username": "x_y", "expire_strategy": "soon"})),
        ),
        p.get(&root, "/api/users?status=sleepy"),
        p.get(&root, "/api/services/not-a-number"),
    ] {
        assert!((400..500).contains(&r.status), "{r:?}");
    }
}

fn user_list_pages_sorts_and_filters(backend: Backend) {
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    let names_in_order = [
        "delta", "alpha", "echo_1", "charlie", "bravo", "echo_2", "foxtrot",
    ];
    for n in names_in_order {
        p.new_user(&root, json!({"username": n}));
    }
    for (n, used) in [("charlie", 500), ("alpha", 300), ("echo_2", 900)] {
        p.execute(
            &format!("UPDATE users SET used_traffic = $1 WHERE username = '{n}'"),
            &[used],
        );
    }
    p.post(&root, "/api/users/bravo/disable", json!({})).ok();

    let newest_first: Vec<String> = names_in_order.iter().rev().map(|s| s.to_string()).collect();
    let page = p.get(&root, "/api/users").ok();
    assert_eq!(names(&page), newest_first);
    assert_eq!(
        (
            page["total"].clone(),
            page["page"].clone(),
            page["size"].clone()
        ),
        (json!(7), json!(1), json!(50))
    );
    assert_eq!(
        names(&p.get(&root, "/api/users?order=created_asc").ok()),
        names_in_order
    );
    let mut by_name: Vec<&str> = names_in_order.to_vec();
    by_name.sort();
    assert_eq!(
        names(&p.get(&root, "/api/users?order=username").ok()),
        by_name
    );
    let by_traffic = names(&p.get(&root, "/api/users?order=used_traffic_desc").ok());
    assert_eq!(by_traffic[..3], ["echo_2", "charlie", "alpha"]);

    // Pages of 3: 3, 3, 1, then none; total is the whole count.
    let mut seen = Vec::new();
    for (n, len) in [(1, 3), (2, 3), (3, 1), (4, 0)] {
        let page = p
            .get(
                &root,
                &format!("/api/users?order=created_asc&size=3&page={n}"),
            )
            .ok();
        assert_eq!(page["total"], 7);
        assert_eq!(page["page"], n);
        assert_eq!(page["size"], 3);
        assert_eq!(names(&page).len(), len, "page {n}");
        seen.extend(names(&page));
    }
    assert_eq!(seen, names_in_order);

    // Part of the name (an underscore is a literal underscore, not a wildcard).
    let f = p.get(&root, "/api/users?username=echo&order=username").ok();
    assert_eq!(names(&f), ["echo_1", "echo_2"]);
    assert_eq!(f["total"], 2);
    assert_eq!(
        names(&p.get(&root, "/api/users?username=o_2").ok()),
        ["echo_2"]
    );
    assert_eq!(
        names(&p.get(&root, "/api/users?username=a_p").ok()),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&p.get(&root, "/api/users?username=%25").ok()),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&p.get(&root, "/api/users?username=FOX").ok()),
        ["foxtrot"],
        "case-insensitive"
    );
    // Status, combined with paging.
    let disabled = p.get(&root, "/api/users?status=disabled").ok();
    assert_eq!(
        (names(&disabled), disabled["total"].clone()),
        (vec!["bravo".to_owned()], json!(1))
    );
    let active = p
        .get(
            &root,
            "/api/users?status=active&order=username&size=2&page=2",
        )
        .ok();
    assert_eq!(active["total"], 6);
    assert_eq!(names(&active), ["delta", "echo_1"]);
}

fn usage_history(backend: Backend) {
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    let heavy = id(&p.new_user(&root, json!({"username": "heavy"})));
    let other = id(&p.new_user(&root, json!({"username": "light"})));
    let hour = now() - now().rem_euclid(3600);
    let rows = [
        (heavy, hour - 30 * 3600, 1, 2),
        (heavy, hour - 5 * 3600, 10, 20),
        (heavy, hour - 3600, 100, 200),
        (heavy, hour, 1000, 2000),
        (other, hour, 7, 7),
    ];
    for (user, h, up, down) in rows {
        p.execute(
            "INSERT INTO usage_hourly (user_id, hour, uplink, downlink) VALUES ($1, $2, $3, $4)",
            &[user, h, up, down],
        );
    }
    let bucket = |h: i64, up: i64, down: i64| json!({"hour": h, "uplink": up, "downlink": down});
    // Default: the last 24 hours, oldest first.
    assert_eq!(
        p.get(&root, "/api/users/heavy/usage").ok(),
        json!([
            bucket(hour - 5 * 3600, 10, 20),
            bucket(hour - 3600, 100, 200),
            bucket(hour, 1000, 2000)
        ])
    );
    // An explicit range: the hour that contains `start` counts.
    let start = hour - 30 * 3600 + 1800;
    let end = hour - 3600;
    assert_eq!(
        p.get(
            &root,
            &format!("/api/users/heavy/usage?start={start}&end={end}")
        )
        .ok(),
        json!([
            bucket(hour - 30 * 3600, 1, 2),
            bucket(hour - 5 * 3600, 10, 20),
            bucket(hour - 3600, 100, 200)
        ])
    );
    assert_eq!(
        p.get(
            &root,
            &format!(
                "/api/users/heavy/usage?start={}&end={}",
                hour - 100 * 3600,
                hour - 50 * 3600
            )
        )
        .ok(),
        json!([])
    );
    assert_eq!(
        p.get(&root, "/api/users/light/usage").ok(),
        json!([bucket(hour, 7, 7)])
    );
    // Times out of range are refused by name (the edges of i64 once overflowed the hour and
    // default-start arithmetic); the range's own edges are fine.
    for bad in [i64::MIN, i64::MIN + 1, -1, 253_402_300_800, i64::MAX] {
        for field in ["start", "end"] {
            p.get(&root, &format!("/api/users/heavy/usage?{field}={bad}"))
                .expect_error(422, Some(field), "between 0 and 253402300799");
        }
    }
    assert_eq!(
        p.get(&root, "/api/users/light/usage?start=0&end=253402300799")
            .ok(),
        json!([bucket(hour, 7, 7)])
    );
}

fn system_stats(backend: Backend) {
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    let zero = json!({"total_users": 0, "active_users": 0, "disabled_users": 0, "limited_users": 0,
                      "expired_users": 0, "on_hold_users": 0, "online_users": 0,
                      "total_uplink": 0, "total_downlink": 0});
    assert_eq!(p.get(&root, "/api/system/stats").ok(), zero);

    let svc = p.new_service(&root, "svc", &[]);
    let alice = p.new_admin(
        &root,
        json!({"username": "alice", "password": "alice-pass", "service_ids": [svc]}),
    );
    let a1 = id(&p.new_user(&root, json!({"username": "active_1"})));
    let a2 = id(&p.new_user(&alice, json!({"username": "active_2"})));
    p.new_user(&root, json!({"username": "off", "enabled": false}));
    p.new_user(&root, json!({"username": "over", "data_limit": 100}));
    p.execute(
        "UPDATE users SET used_traffic = 100 WHERE username = 'over'",
        &[],
    );
    p.new_user(
        &root,
        json!({"username": "past", "expire_strategy": "fixed_date", "expire_date": now() - 10}),
    );
    p.new_user(
        &alice,
        json!({"username": "waiting", "expire_strategy": "start_on_first_use", "usage_duration": 86400}),
    );
    p.execute(
        "UPDATE users SET online_at = $1 WHERE id = $2",
        &[now() - 10, a1],
    );
    p.execute(
        "UPDATE users SET online_at = $1 WHERE id = $2",
        &[now() - 3600, a2],
    );
    let hour = now() - now().rem_euclid(3600);
    for (user, h, up, down) in [
        (a1, hour, 5, 50),
        (a1, hour - 7200, 1, 10),
        (a2, hour, 1000, 10000),
    ] {
        p.execute(
            "INSERT INTO usage_hourly (user_id, hour, uplink, downlink) VALUES ($1, $2, $3, $4)",
            &[user, h, up, down],
        );
    }
    assert_eq!(
        p.get(&root, "/api/system/stats").ok(),
        json!({"total_users": 6, "active_users": 2, "disabled_users": 1, "limited_users": 1,
               "expired_users": 1, "on_hold_users": 1, "online_users": 1,
               "total_uplink": 1006, "total_downlink": 10060})
    );
    // A non-sudo admin counts their own users only.
    assert_eq!(
        p.get(&alice, "/api/system/stats").ok(),
        json!({"total_users": 2, "active_users": 1, "disabled_users": 0, "limited_users": 0,
               "expired_users": 0, "on_hold_users": 1, "online_users": 0,
               "total_uplink": 1000, "total_downlink": 10000})
    );
    // The statuses also show on the users.
    let status = |n: &str| p.get(&root, &format!("/api/users/{n}")).ok()["status"].clone();
    assert_eq!(status("over"), "limited");
    assert_eq!(status("past"), "expired");
    assert_eq!(status("waiting"), "on_hold");
    assert_eq!(status("off"), "disabled");

    // The list's status filter (done in SQL) agrees with each user's status, edge cases
    // included: disabled before expired, expired before limited, limited before on hold.
    let soon = now() + 3600;
    let gone = now() - 10;
    for (name, body) in [
        (
            "off_past",
            json!({"enabled": false, "expire_strategy": "fixed_date", "expire_date": gone}),
        ),
        (
            "past_over",
            json!({"data_limit": 100, "expire_strategy": "fixed_date", "expire_date": gone}),
        ),
        ("zero_limit", json!({"data_limit": 0})),
        (
            "later",
            json!({"expire_strategy": "fixed_date", "expire_date": soon}),
        ),
        (
            "started",
            json!({"expire_strategy": "start_on_first_use", "usage_duration": 60}),
        ),
        (
            "used_up",
            json!({"expire_strategy": "start_on_first_use", "usage_duration": 60}),
        ),
        (
            "waiting_over",
            json!({"data_limit": 10, "expire_strategy": "start_on_first_use", "usage_duration": 60}),
        ),
    ] {
        let mut body = body;
        body["username"] = json!(name);
        p.new_user(&root, body);
    }
    for (sql, arg) in [
        (
            "UPDATE users SET used_traffic = 200 WHERE username = 'past_over'",
            0,
        ),
        (
            "UPDATE users SET used_traffic = 5 WHERE username = 'zero_limit'",
            0,
        ),
        (
            "UPDATE users SET used_traffic = 10 WHERE username = 'waiting_over'",
            0,
        ),
        (
            "UPDATE users SET activated_at = $1 WHERE username = 'started'",
            now() - 10,
        ),
        (
            "UPDATE users SET activated_at = $1 WHERE username = 'used_up'",
            now() - 60,
        ),
    ] {
        if sql.contains("$1") {
            p.execute(sql, &[arg]);
        } else {
            p.execute(sql, &[]);
        }
    }
    for (name, want) in [
        ("off_past", "disabled"),
        ("past_over", "expired"),
        ("zero_limit", "active"),
        ("later", "active"),
        ("started", "active"),
        ("used_up", "expired"),
        ("waiting_over", "limited"),
    ] {
        assert_eq!(status(name), want, "{name}");
    }
    let all = p.get(&root, "/api/users?order=username&size=500").ok();
    for s in ["active", "disabled", "limited", "expired", "on_hold"] {
        let want: Vec<String> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["status"] == s)
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect();
        let got = p
            .get(
                &root,
                &format!("/api/users?status={s}&order=username&size=500"),
            )
            .ok();
        assert_eq!(names(&got), want, "{s}");
        assert_eq!(got["total"], want.len(), "{s}");
    }
    // Enforcement's SQL for a user's status (one CASE expression) agrees as well.
    let case = service::db::status_case_sql("$1");
    let at = now();
    let sql_status: Vec<(String, String)> = p.sql(async |pool| {
        sqlx::query_as(&format!(
            "SELECT u.username, {case} AS s FROM users u ORDER BY u.username"
        ))
        .bind(at)
        .fetch_all(pool)
        .await
        .unwrap()
    });
    let api_status: Vec<(String, String)> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let name = u["username"].as_str().unwrap().to_owned();
            (name, u["status"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(sql_status, api_status);
    let stats = p.get(&root, "/api/system/stats").ok();
    assert_eq!(
        (
            stats["total_users"].clone(),
            stats["expired_users"].clone(),
            stats["limited_users"].clone()
        ),
        (json!(13), json!(3), json!(2))
    );
}

fn system_usage_and_engine(backend: Backend) {
    let started = now();
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    assert_eq!(p.get(&root, "/api/system/usage").ok(), json!([]));

    let svc = p.new_service(&root, "svc", &[]);
    let alice = p.new_admin(
        &root,
        json!({"username": "alice", "password": "alice-pass", "service_ids": [svc]}),
    );
    let bob = p.new_admin(
        &root,
        json!({"username": "bob", "password": "bob-pass", "service_ids": [svc]}),
    );
    let mine = id(&p.new_user(&root, json!({"username": "root_user"})));
    let hers = id(&p.new_user(&alice, json!({"username": "alice_user"})));
    let hour = now() - now().rem_euclid(3600);
    for (user, h, up, down) in [
        (mine, hour, 1, 10),
        (hers, hour, 100, 1000),
        (mine, hour - 23 * 3600, 2, 20),
        (mine, hour - 24 * 3600, 4, 40),
        (hers, hour - 100 * 3600, 300, 3000),
        (mine, hour - 200 * 3600, 8, 80),
    ] {
        p.execute(
            "INSERT INTO usage_hourly (user_id, hour, uplink, downlink) VALUES ($1, $2, $3, $4)",
            &[user, h, up, down],
        );
    }
    let bucket = |h: i64, up: i64, down: i64| json!({"hour": h, "uplink": up, "downlink": down});
    // The sudo admin: every user, summed per hour; 24 hours by default, the current one included.
    let day = json!([bucket(hour - 23 * 3600, 2, 20), bucket(hour, 101, 1010)]);
    assert_eq!(p.get(&root, "/api/system/usage").ok(), day);
    assert_eq!(p.get(&root, "/api/system/usage?hours=24").ok(), day);
    assert_eq!(
        p.get(&root, "/api/system/usage?hours=168").ok(),
        json!([
            bucket(hour - 100 * 3600, 300, 3000),
            bucket(hour - 24 * 3600, 4, 40),
            bucket(hour - 23 * 3600, 2, 20),
            bucket(hour, 101, 1010)
        ])
    );
    assert_eq!(
        p.get(&root, "/api/system/usage?hours=1").ok(),
        json!([bucket(hour, 101, 1010)])
    );
    // A non-sudo admin: their own users only; another admin without users sees nothing.
    assert_eq!(
        p.get(&alice, "/api/system/usage?hours=168").ok(),
        json!([
            bucket(hour - 100 * 3600, 300, 3000),
            bucket(hour, 100, 1000)
        ])
    );
    assert_eq!(p.get(&bob, "/api/system/usage?hours=168").ok(), json!([]));
    for bad in ["0", "745", "-1"] {
        p.get(&root, &format!("/api/system/usage?hours={bad}"))
            .expect_error(422, Some("hours"), "1 to 744");
    }

    // The engine: running since this panel started, with each inbound by tag.
    let port = panel::free_port();
    p.new_inbound(&root, "ss_engine", "aes-128-gcm", port);
    for token in [&root, &alice] {
        let engine = p.get(token, "/api/system/engine").ok();
        assert_eq!(engine["running"], true, "{engine}");
        let run_id = engine["run_id"].as_str().unwrap();
        assert!(run_id.len() >= 8, "{engine}");
        let started_at = engine["started_at"].as_i64().unwrap();
        assert!((started..=now()).contains(&started_at), "{engine}");
        let uptime = engine["uptime"].as_i64().unwrap();
        assert!((0..=now() - started_at + 1).contains(&uptime), "{engine}");
        assert!(engine["workers"].as_i64().unwrap() >= 1, "{engine}");
        assert_eq!(
            engine["inbounds"],
            json!([{"tag": "ss_engine", "open": 0, "uplink": 0, "downlink": 0}])
        );
    }
    // A TCP connection to the inbound counts as open while the handshake waits.
    let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let open = p.get(&root, "/api/system/engine").ok()["inbounds"][0]["open"].clone();
        if open == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "open stays {open}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(conn);
}

/// Enforcement finds the users whose usage crossed a webhook threshold in SQL: the expression
/// agrees with `used * 100 >= t * limit` (done here in i128) at the edges, and at the largest
/// values, where a plain product would overflow (PostgreSQL would then fail the whole pass).
fn usage_thresholds_in_sql(backend: Backend) {
    let p = TestPanel::start(backend);
    let root = p.admin_token();
    let thresholds = [50u8, 80, 90, 100];
    let max = i64::MAX;
    let cases: [(i64, i64); 12] = [
        (100, 79),
        (100, 80),
        (101, 80),
        (101, 81),
        (7, 6),
        (3, 3),
        (1, 0),
        (0, 5),
        (max, max),
        (max, max - 1),
        (max, max / 2),
        (max / 10 * 9, max),
    ];
    for (i, (limit, used)) in cases.iter().enumerate() {
        let name = format!("t_{i:02}");
        p.new_user(&root, json!({"username": name}));
        p.execute(
            &format!(
                "UPDATE users SET data_limit = $1, used_traffic = $2 WHERE username = '{name}'"
            ),
            &[*limit, *used],
        );
    }
    p.new_user(&root, json!({"username": "t_none"}));
    p.execute(
        "UPDATE users SET data_limit = NULL, used_traffic = $1 WHERE username = 't_none'",
        &[max],
    );
    let case = service::db::threshold_case_sql(&thresholds);
    let got: Vec<(String, i64)> = p.sql(async |pool| {
        sqlx::query_as(&format!(
            "SELECT u.username, {case} AS t FROM users u ORDER BY u.username"
        ))
        .fetch_all(pool)
        .await
        .unwrap()
    });
    let mut want: Vec<(String, i64)> = cases
        .iter()
        .enumerate()
        .map(|(i, &(limit, used))| {
            let reached = thresholds
                .iter()
                .map(|&t| i64::from(t))
                .filter(|&t| {
                    limit > 0 && i128::from(used) * 100 >= i128::from(t) * i128::from(limit)
                })
                .max()
                .unwrap_or(0);
            (format!("t_{i:02}"), reached)
        })
        .collect();
    want.push(("t_none".into(), 0));
    assert_eq!(got, want);
}

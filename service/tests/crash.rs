//! Crash safety of usage accounting: traffic the engine counted but the panel had not yet
//! recorded when it was killed with SIGKILL is recorded after a restart, exactly once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use e2e::{tcp_echo, SsClient};
use serde_json::{json, Value};

struct Panel {
    child: Child,
    base: String,
}

impl Drop for Panel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_panel(data: &Path, port: u16, usage_interval: u64) -> Panel {
    start_panel_on(data, None, port, usage_interval)
}

/// A panel on data directory `data` and database `database` (default: the SQLite file in
/// `data`).
fn start_panel_on(data: &Path, database: Option<&str>, port: u16, usage_interval: u64) -> Panel {
    let mut command = Command::new(env!("CARGO_BIN_EXE_marzneshin"));
    match database {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    let child = command
        .arg("serve")
        .env("MARZNESHIN_DATA_DIR", data)
        .env("MARZNESHIN_LISTEN", format!("127.0.0.1:{port}"))
        .env("MARZNESHIN_ADMIN_PASSWORD", "crash-test-password")
        .env("MARZNESHIN_ALLOW_LOOPBACK", "true")
        .env("MARZNESHIN_ENGINE_WORKERS", "2")
        .env("MARZNESHIN_USAGE_INTERVAL_SECS", usage_interval.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the panel");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::blocking::get(format!("{base}/openapi.json")).is_err() {
        assert!(Instant::now() < deadline, "panel did not start");
        thread::sleep(Duration::from_millis(100));
    }
    Panel { child, base }
}

fn token(p: &Panel) -> String {
    let r: Value = reqwest::blocking::Client::new()
        .post(format!("{}/api/admins/token", p.base))
        .form(&[("username", "admin"), ("password", "crash-test-password")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    r["access_token"].as_str().expect("token").to_owned()
}

fn call(p: &Panel, tok: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let c = reqwest::blocking::Client::new();
    let mut req = c
        .request(method.parse().unwrap(), format!("{}{path}", p.base))
        .bearer_auth(tok);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().unwrap();
    let status = resp.status();
    let v: Value = resp.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {v}");
    v
}

/// A panel on `data` with user "victim" on a Shadowsocks inbound, killed with SIGKILL after
/// traffic it never recorded (its usage interval is an hour). Returns the bytes moved and the
/// panel's port.
fn victim_with_unrecorded_traffic(data: &Path) -> (u64, u16) {
    let port = e2e::free_port();
    let ss_port = e2e::free_port();
    let panel = start_panel(data, port, 3600);
    let tok = token(&panel);
    let inbound = call(
        &panel,
        &tok,
        "POST",
        "/api/inbounds",
        Some(json!({"config": {
        "tag": "ss", "listen": format!("127.0.0.1:{ss_port}"), "network": ["tcp"],
        "protocol": "shadowsocks", "settings": {"method": "aes-256-gcm", "users": []}}})),
    );
    let service = call(
        &panel,
        &tok,
        "POST",
        "/api/services",
        Some(json!({"name": "svc", "inbound_ids": [inbound["id"]]})),
    );
    let user = call(
        &panel,
        &tok,
        "POST",
        "/api/users",
        Some(json!({"username": "victim", "service_ids": [service["id"]]})),
    );
    let config: engine::config::InboundConfig =
        serde_json::from_value(inbound["config"].clone()).unwrap();
    let password = service::sync::credential(&config, user["key"].as_str().unwrap());

    let echo = tcp_echo();
    let server = ([127, 0, 0, 1], ss_port).into();
    let mut moved = 0u64;
    let mut c = SsClient::connect(
        server,
        proto::shadowsocks::Method::Aes256Gcm,
        &password,
        None,
        echo,
        b"start",
    )
    .expect("connect through the panel's engine");
    assert_eq!(c.recv_exact(5).unwrap(), b"start");
    moved += 2 * 5;
    let chunk = vec![0x5a; 16_000];
    for _ in 0..64 {
        c.send(&chunk).unwrap();
        assert_eq!(c.recv_exact(chunk.len()).unwrap().len(), chunk.len());
        moved += 2 * chunk.len() as u64;
    }
    // Wait until the engine has counted the last write (its counters file is what survives
    // the kill), then kill the panel outright.
    let counted = || -> u64 {
        engine::read_counters_file(&data.join("counters"))
            .unwrap()
            .map_or(0, |run| {
                run.users.iter().map(|(_, up, down)| up + down).sum()
            })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while counted() != moved {
        assert!(
            Instant::now() < deadline,
            "the engine counted {} bytes, moved {moved}",
            counted()
        );
        thread::sleep(Duration::from_millis(10));
    }
    let mut panel = panel;
    sigkill(&mut panel.child);
    drop(c);
    (moved, port)
}

/// Starts the panel on `data` again and waits until it has recorded exactly `moved` bytes for
/// the victim, then checks that later passes add nothing.
fn restart_and_expect(data: &Path, port: u16, moved: u64) {
    let panel = start_panel(data, port, 1);
    let tok = token(&panel);
    let used = |p: &Panel| {
        call(p, &tok, "GET", "/api/users/victim", None)["used_traffic"]
            .as_u64()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while used(&panel) != moved {
        assert!(
            Instant::now() < deadline,
            "recorded {} bytes, moved {moved}",
            used(&panel)
        );
        thread::sleep(Duration::from_millis(100));
    }
    // And no double count on later passes.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(used(&panel), moved);
}

#[test]
fn usage_survives_sigkill_of_the_panel_exactly_once() {
    let data = std::env::temp_dir().join(format!("mzn-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (moved, port) = victim_with_unrecorded_traffic(&data);
    restart_and_expect(&data, port, moved);
    let _ = std::fs::remove_dir_all(&data);
}

/// Starts that die after recovering the killed run's traffic but before their engine has
/// taken the counters file over (a crash loop, or a counters file the new engine cannot
/// create) find the same file again: recovering it twice, then starting for good, still
/// records the traffic once.
#[test]
fn recovery_repeated_before_the_engine_starts_counts_once() {
    let data = std::env::temp_dir().join(format!("mzn-crash-twice-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (moved, port) = victim_with_unrecorded_traffic(&data);
    let url = format!("sqlite://{}?mode=rwc", data.join("marzneshin.db").display());
    let counters = data.join("counters");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = service::db::Db::connect(&url).await.unwrap();
        for _ in 0..2 {
            service::usage::recover(&db, &counters).await.unwrap();
        }
        db.pool.close().await;
    });
    restart_and_expect(&data, port, moved);
    let _ = std::fs::remove_dir_all(&data);
}

/// A name deleted and created again through another panel instance while this one was down:
/// the killed run's leftover for that name goes to the user a pass of that run charged it to
/// (deleted since, so no one), not to the new user of the name.
#[test]
fn leftover_of_a_name_taken_again_meanwhile_goes_to_its_old_user() {
    let data = std::env::temp_dir().join(format!("mzn-crash-owner-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (moved, port) = victim_with_unrecorded_traffic(&data);
    let url = format!("sqlite://{}?mode=rwc", data.join("marzneshin.db").display());
    // A pass of the killed run had charged the victim half of it, as `usage::record` does.
    let half = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = service::db::Db::connect(&url).await.unwrap();
        let run = engine::read_counters_file(&data.join("counters"))
            .unwrap()
            .expect("the killed run's counters");
        let id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'victim'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let (name, up, down) = run.users[0].clone();
        assert_eq!((name.as_str(), up + down), ("victim", moved));
        let owners = std::collections::HashMap::from([(name.clone(), id)]);
        service::usage::apply(&db, &run.run_id, &[(name, up / 2, down / 2)], &owners)
            .await
            .unwrap();
        db.pool.close().await;
        up / 2 + down / 2
    });
    // Another instance on the same database (its own data directory) deletes the victim and
    // creates another user of that name.
    {
        let other = start_panel_on(&data.join("other"), Some(&url), e2e::free_port(), 3600);
        let tok = token(&other);
        call(&other, &tok, "GET", "/api/users/victim", None);
        call(&other, &tok, "DELETE", "/api/users/victim", None);
        call(
            &other,
            &tok,
            "POST",
            "/api/users",
            Some(json!({"username": "victim", "service_ids": []})),
        );
    }
    let panel = start_panel(&data, port, 1);
    let tok = token(&panel);
    // The leftover was recovered before the API came up; passes follow every second.
    thread::sleep(Duration::from_secs(2));
    let victim = call(&panel, &tok, "GET", "/api/users/victim", None);
    assert_eq!(
        (
            victim["used_traffic"].as_u64(),
            victim["lifetime_used_traffic"].as_u64()
        ),
        (Some(0), Some(0)),
        "the new victim was charged the old one's bytes ({half} of {moved} had been recorded)"
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// `Child::kill` sends SIGKILL on Unix: no shutdown path runs.
fn sigkill(child: &mut Child) {
    child.kill().expect("SIGKILL the panel");
    child.wait().unwrap();
}

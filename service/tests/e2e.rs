//! End to end through the panel: an admin, a service, a Shadowsocks inbound and a user made
//! with the API; a real client (shadowsocks-rust `sslocal`) connects with the password derived
//! from the user's key and moves traffic to a loopback echo; the panel records exactly the
//! bytes moved, and a data limit cuts live connections and refuses new ones, also while an
//! inbound this host cannot bind makes every full sync fail; a user deleted and created again
//! is not charged for the old one's bytes. On SQLite and on PostgreSQL (see `panel/mod.rs`).

mod panel;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{
    echo_transfer, peer, socks5_connect, tcp_echo, wait_for_port, ChildGuard, Ending, SsClient,
};
use panel::{Backend, Options, TestPanel};
use serde_json::{json, Value};
use service::serve::now;

on_both_databases!(
    traffic_is_counted_and_limits_cut,
    going_over_the_limit_cuts_the_connection,
    idle_users_are_counted_exactly_and_expire_on_time,
    routing_rules_from_the_panel_decide_new_connections,
    stored_rules_that_do_not_compile_deny_everything_at_start,
    limits_hold_while_an_inbound_cannot_bind,
    a_user_created_again_pays_nothing_for_the_deleted_ones_traffic,
);

const METHOD: &str = "aes-256-gcm";

/// A panel whose users may reach loopback, recording usage every second.
fn start(backend: Backend) -> TestPanel {
    TestPanel::start_with(
        backend,
        Options::default()
            .env("MARZNESHIN_ALLOW_LOOPBACK", "true")
            .env("MARZNESHIN_USAGE_INTERVAL_SECS", "1"),
    )
}

/// Through the API: an inbound and a service (sudo), an admin given that service, and a user
/// of theirs. Returns that admin's token, the user and the inbound.
fn arrange(p: &TestPanel, username: &str, data_limit: Option<i64>) -> (String, Value, Value) {
    let root = p.admin_token();
    let inbound = p.new_inbound(&root, "ss", METHOD, panel::free_port());
    let svc = p.new_service(&root, "ss_only", &[inbound["id"].as_i64().unwrap()]);
    let reseller = p.new_admin(
        &root,
        json!({"username": "reseller", "password": "reseller-pass", "service_ids": [svc]}),
    );
    let mut spec = json!({"username": username, "service_ids": [svc]});
    if let Some(l) = data_limit {
        spec["data_limit"] = json!(l);
    }
    let user = p.new_user(&reseller, spec);
    (reseller, user, inbound)
}

/// Starts `sslocal` for `user` on `inbound`; returns it and its SOCKS5 address.
fn client(user: &Value, inbound: &Value) -> (ChildGuard, SocketAddr) {
    let config: engine::config::InboundConfig =
        serde_json::from_value(inbound["config"].clone()).unwrap();
    let password = service::sync::credential(&config, user["key"].as_str().unwrap());
    let local: SocketAddr = ([127, 0, 0, 1], panel::free_port()).into();
    let mut child = ChildGuard::spawn(
        "sslocal",
        Command::new(peer("sslocal"))
            .args(["-s", &config.listen.to_string(), "-b", &local.to_string()])
            .args(["-m", METHOD, "-k", &password]),
    );
    wait_for_port(local, &mut child);
    (child, local)
}

/// Polls the user until `done` holds (10 s at most); returns the last view.
fn wait_for_user(
    p: &TestPanel,
    token: &str,
    username: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let u = p.get(token, &format!("/api/users/{username}")).ok();
        if done(&u) {
            return u;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting; user is now {u}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `stream` is closed by the far end within `within` (EOF or reset), writing and
/// reading a little at a time.
fn is_cut(stream: &mut TcpStream, within: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if stream.write_all(&[7u8; 64]).is_err() {
            return true;
        }
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue, // echoed bytes: still open
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(_) => return true,
            }
        }
    }
    false
}

/// Whether a new connection through `socks` to `echo` carries no bytes back.
fn refused(socks: SocketAddr, echo: SocketAddr) -> bool {
    let Ok(mut s) = socks5_connect(socks, echo) else {
        return true;
    };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    if s.write_all(b"anyone there?").is_err() {
        return true;
    }
    let mut buf = [0u8; 64];
    !matches!(s.read(&mut buf), Ok(n) if n > 0)
}

/// Whether a new connection through `socks` to `echo` carries 64 KiB (pattern `seed`) there
/// and back.
fn served(socks: SocketAddr, echo: SocketAddr, seed: u64) -> bool {
    socks5_connect(socks, echo).is_ok_and(|s| {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        echo_transfer(s, 64 * 1024, seed, Ending::HalfClose).is_ok()
    })
}

/// Whether `n` new connections through `socks` to `echo`, tried at once (each waits out a
/// silent server), are all refused: with two engines on one port, both get some.
fn all_refused(socks: SocketAddr, echo: SocketAddr, n: usize) -> bool {
    std::thread::scope(|scope| {
        let tries: Vec<_> = (0..n)
            .map(|_| scope.spawn(|| refused(socks, echo)))
            .collect();
        tries.into_iter().all(|t| t.join().unwrap())
    })
}

fn traffic_is_counted_and_limits_cut(backend: Backend) {
    let p = start(backend);
    let (token, user, inbound) = arrange(&p, "traveller", None);
    assert_eq!(user["status"], "active");
    let (_client, socks) = client(&user, &inbound);
    let echo = tcp_echo();

    // 1 MiB each way: the user's traffic is exactly 2 MiB once recorded, and stays so.
    const BULK: usize = 1 << 20;
    let stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT through the panel's inbound");
    echo_transfer(stream, BULK, 1, Ending::HalfClose).expect("echo through the panel's inbound");
    // A usage pass may record part of the transfer first: waited for whole.
    let u = wait_for_user(&p, &token, "traveller", |u| u["used_traffic"] == 2 * BULK);
    std::thread::sleep(Duration::from_millis(1500));
    let u2 = p.get(&token, "/api/users/traveller").ok();
    assert_eq!(u["used_traffic"], 2 * BULK, "{u}");
    assert_eq!(u2["used_traffic"], 2 * BULK, "counted once: {u2}");
    assert_eq!(u2["lifetime_used_traffic"], 2 * BULK);
    assert!(u2["online_at"].as_i64().is_some());
    let usage = p.get(&token, "/api/users/traveller/usage").ok();
    assert_eq!(usage.as_array().unwrap().len(), 1, "{usage}");
    assert_eq!(
        (usage[0]["uplink"].clone(), usage[0]["downlink"].clone()),
        (json!(BULK), json!(BULK))
    );

    // A live connection, then a limit below what was used: cut within seconds, and no new
    // connection gets through.
    let mut live = socks5_connect(socks, echo).unwrap();
    live.write_all(b"ping").unwrap();
    let mut four = [0u8; 4];
    live.read_exact(&mut four).unwrap();
    assert_eq!(&four, b"ping");
    let limited = p
        .put(&token, "/api/users/traveller", json!({"data_limit": 1000}))
        .ok();
    assert_eq!(limited["status"], "limited");
    let t = Instant::now();
    assert!(
        is_cut(&mut live, Duration::from_secs(5)),
        "live connection not cut"
    );
    eprintln!("live connection cut {:?} after the limit", t.elapsed());
    assert!(
        refused(socks, echo),
        "a limited user got a new connection through"
    );
    // It stays that way across usage passes.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(refused(socks, echo));
    assert_eq!(
        p.get(&token, "/api/users/traveller").ok()["status"],
        "limited"
    );

    // Lifting the limit lets the user in again.
    let lifted = p
        .put(&token, "/api/users/traveller", json!({"data_limit": 0}))
        .ok();
    assert_eq!(lifted["status"], "active");
    let stream = socks5_connect(socks, echo).unwrap();
    echo_transfer(stream, 4096, 2, Ending::HalfClose).expect("echo after the limit was lifted");
}

fn going_over_the_limit_cuts_the_connection(backend: Backend) {
    let p = start(backend);
    const LIMIT: i64 = 256 * 1024;
    let (token, user, inbound) = arrange(&p, "heavy_user", Some(LIMIT));
    let (_client, socks) = client(&user, &inbound);
    let echo = tcp_echo();

    // Stream steadily (about 640 KiB/s each way): the usage pass after the limit is crossed
    // takes the user off the engine and the connection closes mid-transfer.
    let mut s = socks5_connect(socks, echo).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let chunk = [0x5Au8; 16 * 1024];
    let mut buf = vec![0u8; 64 * 1024];
    let (mut sent, mut received) = (0usize, 0usize);
    let start = Instant::now();
    let mut crossed_at = None;
    let cut = loop {
        if start.elapsed() > Duration::from_secs(20) {
            break false;
        }
        if s.write_all(&chunk).is_err() {
            break true;
        }
        sent += chunk.len();
        let mut closed = false;
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => received += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            break true;
        }
        if crossed_at.is_none() && (sent + received) as i64 > LIMIT {
            crossed_at = Some(Instant::now());
        }
    };
    assert!(
        cut,
        "still relaying after 20 s; moved {sent} up and {received} down"
    );
    let crossed_at = crossed_at.expect("the limit was crossed before the cut");
    let late = crossed_at.elapsed();
    eprintln!("cut {late:?} after crossing the limit; moved {sent} up and {received} down");
    assert!(
        late < Duration::from_secs(5),
        "cut only {late:?} after crossing the limit"
    );
    let u = wait_for_user(&p, &token, "heavy_user", |u| u["status"] == "limited");
    let used = u["used_traffic"].as_i64().unwrap();
    assert!(used > LIMIT, "{u}");
    // What the server relayed: at most what we sent, each way.
    assert!(
        used <= 2 * sent as i64,
        "recorded {used}, more than twice the {sent} bytes sent"
    );
    assert!(
        refused(socks, echo),
        "a limited user got a new connection through"
    );
}

/// The usage pass reads only what moved or changed (`usage.rs`): a user idle for several
/// passes who then moves traffic is counted exactly, and an expiry that nothing but time
/// brings (no row changes) still takes the user off the engine within seconds.
fn idle_users_are_counted_exactly_and_expire_on_time(backend: Backend) {
    let p = start(backend);
    let (token, user, inbound) = arrange(&p, "sleeper", None);
    let (_client, socks) = client(&user, &inbound);
    let echo = tcp_echo();

    const FIRST: usize = 64 << 10;
    const SECOND: usize = 32 << 10;
    let stream = socks5_connect(socks, echo).unwrap();
    echo_transfer(stream, FIRST, 1, Ending::HalfClose).unwrap();
    wait_for_user(&p, &token, "sleeper", |u| u["used_traffic"] == 2 * FIRST);
    // Idle for several passes: nothing is recorded, nothing changes.
    std::thread::sleep(Duration::from_millis(3500));
    let u = p.get(&token, "/api/users/sleeper").ok();
    assert_eq!(u["used_traffic"], 2 * FIRST, "{u}");
    let stream = socks5_connect(socks, echo).unwrap();
    echo_transfer(stream, SECOND, 1, Ending::HalfClose).unwrap();
    wait_for_user(&p, &token, "sleeper", |u| {
        u["used_traffic"] == 2 * (FIRST + SECOND)
    });
    std::thread::sleep(Duration::from_millis(2500));
    let u = p.get(&token, "/api/users/sleeper").ok();
    assert_eq!(u["used_traffic"], 2 * (FIRST + SECOND), "counted once: {u}");
    assert_eq!(u["lifetime_used_traffic"], 2 * (FIRST + SECOND));
    let usage = p.get(&token, "/api/users/sleeper/usage").ok();
    let (up, down) = usage.as_array().unwrap().iter().fold((0, 0), |(u, d), h| {
        (
            u + h["uplink"].as_u64().unwrap(),
            d + h["downlink"].as_u64().unwrap(),
        )
    });
    assert_eq!(
        (up, down),
        ((FIRST + SECOND) as u64, (FIRST + SECOND) as u64)
    );

    // An expiry a few seconds ahead: the change is seen at once (still active), then only
    // time passes until the live connection is cut.
    let mut live = socks5_connect(socks, echo).unwrap();
    live.write_all(b"ping").unwrap();
    let mut four = [0u8; 4];
    live.read_exact(&mut four).unwrap();
    let expires = now() + 8;
    let u = p
        .put(
            &token,
            "/api/users/sleeper",
            json!({"expire_strategy": "fixed_date", "expire_date": expires}),
        )
        .ok();
    assert_eq!(u["status"], "active", "{u}");
    std::thread::sleep(Duration::from_millis(1500));
    live.write_all(b"pong").unwrap();
    live.read_exact(&mut four).unwrap();
    assert_eq!(&four, b"pong", "cut before the expiry");
    assert!(
        is_cut(&mut live, Duration::from_secs(15)),
        "live connection not cut after the expiry"
    );
    assert!(now() >= expires, "cut before the expiry");
    assert!(refused(socks, echo), "an expired user got a new connection");
    assert_eq!(
        p.get(&token, "/api/users/sleeper").ok()["status"],
        "expired"
    );
}

/// A user deleted while their traffic flows and created again under the same name at once:
/// what the deleted one moved since the last usage pass is not charged to the new one (the
/// engine counted both under the one name, so the new user paid for the old one's last
/// bytes).
fn a_user_created_again_pays_nothing_for_the_deleted_ones_traffic(backend: Backend) {
    let p = start(backend);
    let (token, user, inbound) = arrange(&p, "again", None);
    let (_client, socks) = client(&user, &inbound);
    let echo = tcp_echo();
    let mut stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
    // Echoed traffic, flowing until the delete cuts the connection.
    let flowing = std::thread::spawn(move || {
        let mut buf = vec![7u8; 16 << 10];
        while stream.write_all(&buf).is_ok() && stream.read_exact(&mut buf).is_ok() {}
    });
    wait_for_user(&p, &token, "again", |u| {
        u["used_traffic"].as_i64().unwrap() > 1 << 20
    });
    assert_eq!(p.delete(&token, "/api/users/again").ok(), json!(true));
    p.new_user(
        &token,
        json!({"username": "again", "service_ids": user["service_ids"]}),
    );
    flowing.join().unwrap();
    // Passes enough to record whatever the engine counted.
    std::thread::sleep(Duration::from_millis(3500));
    let u = p.get(&token, "/api/users/again").ok();
    assert_eq!(u["used_traffic"], 0, "{u}");
    assert_eq!(u["lifetime_used_traffic"], 0, "{u}");
}

/// Two panels on one PostgreSQL database, each with its engine on the same inbound port (the
/// kernel spreads connections over both, `SO_REUSEPORT`): traffic through either is recorded
/// once, exactly; a user deleted through one panel is cut on both engines within seconds
/// (the other learns it from `users_deleted` on its next pass) and refused after.
#[test]
fn postgres_two_panels_count_once_and_cut_a_user_deleted_on_either() {
    let options = Options::default()
        .env("MARZNESHIN_ALLOW_LOOPBACK", "true")
        .env("MARZNESHIN_USAGE_INTERVAL_SECS", "1");
    let a = TestPanel::start_with(Backend::Postgres, options.clone());
    let (token, user, inbound) = arrange(&a, "roamer", None);
    let b = a.another_instance(&options);
    let root_b = b.admin_token();
    let (_client, socks) = client(&user, &inbound);
    let echo = tcp_echo();

    // Eight connections of 256 KiB each way, spread over the two engines.
    const EACH: usize = 256 << 10;
    const CONNECTIONS: usize = 8;
    for seed in 0..CONNECTIONS as u64 {
        let stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
        echo_transfer(stream, EACH, seed, Ending::HalfClose).expect("echo through either panel");
    }
    let total = 2 * EACH * CONNECTIONS;
    wait_for_user(&b, &root_b, "roamer", |u| u["used_traffic"] == total);
    // Several passes of both panels later, still counted once.
    std::thread::sleep(Duration::from_millis(2500));
    for (panel, token) in [(&a, token.as_str()), (&b, root_b.as_str())] {
        let u = panel.get(token, "/api/users/roamer").ok();
        assert_eq!(u["used_traffic"], total, "{u}");
        assert_eq!(u["lifetime_used_traffic"], total, "{u}");
    }

    // Live connections on both engines; the user is deleted through the second panel.
    let mut live: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut s = socks5_connect(socks, echo).unwrap();
            s.write_all(b"ping").unwrap();
            let mut four = [0u8; 4];
            s.read_exact(&mut four).unwrap();
            assert_eq!(&four, b"ping");
            s
        })
        .collect();
    assert_eq!(b.delete(&root_b, "/api/users/roamer").ok(), json!(true));
    for (i, s) in live.iter_mut().enumerate() {
        assert!(
            is_cut(s, Duration::from_secs(5)),
            "connection {i} of the deleted user not cut"
        );
    }
    assert!(
        all_refused(socks, echo, CONNECTIONS),
        "a deleted user got a new connection"
    );
}

/// Two panels on one PostgreSQL database, each with its engine on the same inbound port: a
/// subscription revoked through one panel gives both engines the user's new key (every
/// connection with the new password is served, wherever the kernel puts it, and the old one
/// is refused), and an inbound added to the user's service through one panel is bound by the
/// other panel's engine too, with the user on it.
#[test]
fn postgres_two_panels_follow_each_others_keys_and_inbounds() {
    let options = Options::default()
        .env("MARZNESHIN_ALLOW_LOOPBACK", "true")
        .env("MARZNESHIN_USAGE_INTERVAL_SECS", "1");
    let a = TestPanel::start_with(Backend::Postgres, options.clone());
    let (_reseller, user, inbound) = arrange(&a, "roamer", None);
    let root_a = a.admin_token();
    let b = a.another_instance(&options);
    let root_b = b.admin_token();
    let echo = tcp_echo();
    // Enough that they do not all land on one engine by chance (1 in 65 536 per try).
    const CONNECTIONS: usize = 16;
    // Whether `CONNECTIONS` connections in a row through `socks` are served; retried until
    // `deadline`, so that both engines have had their passes.
    let all_served = |socks: SocketAddr, deadline: Duration| {
        let until = Instant::now() + deadline;
        loop {
            let served = (0..CONNECTIONS as u64).all(|seed| {
                socks5_connect(socks, echo).is_ok_and(|s| {
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    echo_transfer(s, 4096, seed, Ending::HalfClose).is_ok()
                })
            });
            if served || Instant::now() > until {
                return served;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let (_old_client, old_socks) = client(&user, &inbound);
    assert!(all_served(old_socks, Duration::from_secs(10)));

    // The key changes through the second panel.
    let user = b
        .post(&root_b, "/api/users/roamer/revoke_sub", json!({}))
        .ok();
    let (_new_client, new_socks) = client(&user, &inbound);
    assert!(
        all_served(new_socks, Duration::from_secs(10)),
        "the new key is not served on both engines"
    );
    assert!(
        all_refused(old_socks, echo, CONNECTIONS),
        "the revoked key still connects"
    );

    // A second inbound, added to the user's service through the first panel.
    let second = a.new_inbound(&root_a, "ss_second", METHOD, panel::free_port());
    let service = user["service_ids"][0].as_i64().unwrap();
    a.put(
        &root_a,
        &format!("/api/services/{service}"),
        json!({"name": "ss_only", "inbound_ids": [inbound["id"], second["id"]]}),
    )
    .ok();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let engine = b.get(&root_b, "/api/system/engine").ok();
        let tags: Vec<&str> = engine["inbounds"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["tag"].as_str())
            .collect();
        if tags.contains(&"ss_second") {
            break;
        }
        assert!(
            Instant::now() < until,
            "the second panel's engine has {tags:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_second_client, second_socks) = client(&user, &second);
    assert!(
        all_served(second_socks, Duration::from_secs(10)),
        "the user is not on the new inbound of both engines"
    );

    // Routing rules set through one panel reach the other's engine at its next pass.
    let deny = json!({"rules": [{"action": "deny", "users": ["roamer"]}]});
    a.put(&root_a, "/api/settings/routing", deny).ok();
    let until = Instant::now() + Duration::from_secs(15);
    while !all_refused(new_socks, echo, CONNECTIONS) {
        assert!(
            Instant::now() < until,
            "the second panel's engine does not deny the user"
        );
    }
    b.put(&root_b, "/api/settings/routing", json!({})).ok();
    assert!(
        all_served(new_socks, Duration::from_secs(10)),
        "the rules removed through the second panel still deny on an engine"
    );
}

/// Routing rules set through the API decide every new connection at once (a deny rule for
/// the user and the echo's port, one for another user, a `deny` default, none), and a
/// connection already relaying keeps relaying; the rules survive a restart.
fn routing_rules_from_the_panel_decide_new_connections(backend: Backend) {
    let mut p = start(backend);
    let (_reseller, user, inbound) = arrange(&p, "alice", None);
    let root = p.admin_token();
    let echo = tcp_echo();
    let (_client, socks) = client(&user, &inbound);
    let served = |seed: u64| served(socks, echo, seed);
    let set = |p: &TestPanel, root: &str, rules: Value| {
        p.put(root, "/api/settings/routing", rules).ok();
    };
    assert!(served(1));
    let mut live = socks5_connect(socks, echo).unwrap();
    let mut echoed = [0u8; 5];
    live.write_all(b"hello").unwrap();
    live.read_exact(&mut echoed).unwrap();

    let port = i64::from(echo.port());
    set(
        &p,
        &root,
        json!({"rules": [{"action": "deny", "users": ["alice"], "ports": [port]}]}),
    );
    assert!(refused(socks, echo), "alice's rule does not deny her");
    live.write_all(b"still").unwrap();
    live.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"still", "the live connection was cut");

    set(
        &p,
        &root,
        json!({"rules": [{"action": "deny", "users": ["bob"], "ports": [port]}]}),
    );
    assert!(served(2), "bob's rule denies alice");
    set(&p, &root, json!({"default": "deny"}));
    assert!(refused(socks, echo), "the deny default lets alice through");

    // Kept across a restart: the engine starts with them.
    p.restart(
        &Options::default()
            .env("MARZNESHIN_ALLOW_LOOPBACK", "true")
            .env("MARZNESHIN_USAGE_INTERVAL_SECS", "1"),
    );
    let root = p.admin_token();
    assert!(refused(socks, echo), "the rules were lost in the restart");
    set(&p, &root, json!({}));
    assert!(served(3));
}

/// Rules stored that do not compile on this host (here: country rules without a database,
/// written past the API, as another host's panel with its own GeoIP file would store them)
/// stop nothing else: the running engine keeps the rules it has and users are still kept in
/// step (alice, disabled past the API, is taken off); after a restart every connection is
/// denied; replacing the rules through the API serves again.
fn stored_rules_that_do_not_compile_deny_everything_at_start(backend: Backend) {
    let options = Options::default()
        .env("MARZNESHIN_ALLOW_LOOPBACK", "true")
        .env("MARZNESHIN_USAGE_INTERVAL_SECS", "1");
    let mut p = TestPanel::start_with(backend, options.clone());
    let (_reseller, user, inbound) = arrange(&p, "alice", None);
    let echo = tcp_echo();
    let (_client, socks) = client(&user, &inbound);
    let served = |seed: u64| served(socks, echo, seed);
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "gave up waiting: {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let set_enabled = |p: &TestPanel, enabled: bool| {
        p.sql(async |pool| {
            sqlx::query(&format!(
                "UPDATE users SET enabled = {} WHERE username = 'alice'",
                i32::from(enabled)
            ))
            .execute(pool)
            .await
            .unwrap();
        })
    };
    assert!(served(1));
    // Rules in effect: alice may not reach a second echo.
    let blocked = tcp_echo();
    let root = p.admin_token();
    p.put(
        &root,
        "/api/settings/routing",
        json!({"rules": [{"action": "deny", "users": ["alice"], "ports": [blocked.port()]}]}),
    )
    .ok();
    assert!(refused(socks, blocked));
    let stored = json!({"rules": [{"action": "deny", "countries": ["DE"]}]});
    p.sql(async |pool| {
        sqlx::query("UPDATE settings SET value = $1 WHERE key = 'routing'")
            .bind(stored.to_string())
            .execute(pool)
            .await
            .unwrap();
    });
    until("the pass to find the rules", &|| {
        p.log().contains("the engine keeps the rules it has")
    });
    assert!(served(2), "the running engine dropped its rules");
    assert!(
        refused(socks, blocked),
        "the running engine dropped its rules"
    );
    set_enabled(&p, false);
    until("alice to be taken off", &|| refused(socks, echo));

    set_enabled(&p, true);
    p.restart(&options);
    let root = p.admin_token();
    assert!(p.log().contains("every connection is denied"));
    assert!(
        refused(socks, echo),
        "rules that do not compile let alice through"
    );
    let mut shown = stored.clone();
    shown["default"] = json!("allow");
    assert_eq!(p.get(&root, "/api/settings/routing").ok(), shown);
    p.put(&root, "/api/settings/routing", json!({})).ok();
    assert!(served(3), "replaced rules do not serve again");
}

/// An inbound this host cannot bind (written past the API, as another panel instance on
/// another host may have added it) makes every full sync fail; limits are enforced all the
/// same: a user pushed over their limit meanwhile is cut and refused.
fn limits_hold_while_an_inbound_cannot_bind(backend: Backend) {
    let p = start(backend);
    let root = p.admin_token();
    let inbound = p.new_inbound(&root, "ss", METHOD, panel::free_port());
    let svc = p.new_service(&root, "ss_only", &[inbound["id"].as_i64().unwrap()]);
    let user = p.new_user(
        &root,
        json!({"username": "capped", "service_ids": [svc], "data_limit": 1_000_000_000}),
    );
    let config: engine::config::InboundConfig =
        serde_json::from_value(inbound["config"].clone()).unwrap();
    let password = service::sync::credential(&config, user["key"].as_str().unwrap());
    let echo = tcp_echo();
    let connect = || {
        SsClient::connect(
            config.listen,
            proto::shadowsocks::Method::Aes256Gcm,
            &password,
            None,
            echo,
            b"hi",
        )
    };
    let mut live = connect().unwrap();
    assert_eq!(live.recv_exact(2).unwrap(), b"hi");

    // In one transaction, so that the pass that sees the user over their limit also finds an
    // inbound to give the engine: on 192.0.2.1 (TEST-NET-1), no address of this host.
    let mut elsewhere = inbound["config"].clone();
    elsewhere["tag"] = json!("elsewhere");
    elsewhere["listen"] = json!(format!("192.0.2.1:{}", panel::free_port()));
    p.sql(async |pool| {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO inbounds (tag, protocol, config) VALUES ('elsewhere', 'shadowsocks', $1)",
        )
        .bind(elsewhere.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query("UPDATE users SET used_traffic = data_limit + 1 WHERE username = 'capped'")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    });

    // The live connection is cut (within its 10 s read timeout) and a new one refused.
    live.expect_closed()
        .expect("the user over their limit kept their connection");
    let mut again = connect().unwrap();
    again
        .stream()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    assert!(
        again.recv_exact(2).is_err(),
        "the user over their limit got a new connection through"
    );
    assert_eq!(p.get(&root, "/api/users/capped").ok()["status"], "limited");
    // And the full sync did fail: this was enforcement without it.
    assert!(
        p.log()
            .contains("giving the engine every inbound and user failed"),
        "the full sync did not fail:\n{}",
        p.log()
    );
}

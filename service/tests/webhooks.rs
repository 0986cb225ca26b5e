//! Webhooks over real HTTP, on SQLite and PostgreSQL: a receiver on 127.0.0.1 checks each
//! delivery's HMAC-SHA256 signature, fails on purpose to see retries, and records the order;
//! enforcement's events (usage thresholds, limited, expired); events recorded while the
//! receiver is down survive a restart of the panel; the settings API keeps the secret to
//! itself; events given up on after every attempt failed are listed and sent again on
//! request. On PostgreSQL: the job locks, and two panels on one database deliver each event
//! once.

mod panel;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use panel::{Backend, Options, TestPanel};
use serde_json::{json, Value};
use service::db::{Db, Job, JobLock};
use sha2::Sha256;

on_both_databases!(
    settings_api,
    admin_events_are_signed_ordered_and_retried,
    enforcement_announces_thresholds_limits_and_expiry,
    events_survive_a_restart,
    failed_events_are_listed_and_retried,
);

const SECRET: &str = "test-secret-0123456789-tail";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Delivery {
    event: String,
    delivery: u64,
    signature: String,
    body: Vec<u8>,
    /// The status the receiver answered.
    answered: u16,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Whether the signature is HMAC-SHA256 of the body under `secret`.
    fn signed_with(&self, secret: &str) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.signature == format!("sha256={hex}")
    }
}

/// A webhook receiver on 127.0.0.1: answers each request with the next scripted status (200
/// when the script is empty) and records it.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    script: Arc<Mutex<VecDeque<u16>>>,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn on(listener: TcpListener) -> Receiver {
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            script: Arc::default(),
            got: Arc::default(),
        };
        let me = r.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                me.serve(stream);
            }
        });
        r
    }

    fn serve(&self, stream: std::net::TcpStream) {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            headers.push(line);
        }
        let header = |name: &str| {
            headers
                .iter()
                .filter_map(|h| h.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let status = self.script.lock().unwrap().pop_front().unwrap_or(200);
        self.got.lock().unwrap().push(Delivery {
            event: header("x-marzneshin-event"),
            delivery: header("x-marzneshin-delivery").parse().unwrap_or(0),
            signature: header("x-marzneshin-signature"),
            body,
            answered: status,
        });
        let mut stream = reader.into_inner();
        let _ = write!(
            stream,
            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
    }

    fn url(&self) -> String {
        format!("http://{}/hook?token=abc", self.addr)
    }

    /// Waits until `n` deliveries were answered 200; returns every request so far.
    fn wait_for(&self, n: usize) -> Vec<Delivery> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.iter().filter(|d| d.answered == 200).count() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "only {} deliveries within 30 s: {:?}",
                got.len(),
                got.iter().map(|d| &d.event).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The events answered 200, in the order they arrived.
    fn delivered(&self) -> Vec<Delivery> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.answered == 200)
            .cloned()
            .collect()
    }
}

fn options() -> Options {
    Options::default()
        .env("MARZNESHIN_WEBHOOK_RETRY_BASE_MS", "100")
        .env("MARZNESHIN_WEBHOOK_POLL_MS", "50")
        .env("MARZNESHIN_USAGE_INTERVAL_SECS", "1")
}

fn configure(p: &TestPanel, root: &str, url: &str) -> Value {
    p.put(
        root,
        "/api/webhook",
        json!({"url": url, "secret": SECRET, "thresholds": [100, 50, 80]}),
    )
    .ok()
}

fn settings_api(backend: Backend) {
    let p = TestPanel::start_with(backend, options());
    let root = p.admin_token();
    let default = p.get(&root, "/api/webhook").ok();
    assert_eq!(
        default,
        json!({"url": null, "secret_set": false, "secret_hint": null,
               "thresholds": [80, 100], "pending": 0, "failed": 0})
    );
    p.put(
        &root,
        "/api/webhook",
        json!({"url": "https://hooks.example.com/x"}),
    )
    .expect_error(422, Some("secret"), "required with a url");
    p.put(
        &root,
        "/api/webhook",
        json!({"url": "ftp://example.com", "secret": SECRET}),
    )
    .expect_error(422, Some("url"), "http:// or https://");
    p.put(&root, "/api/webhook", json!({"secret": "short"}))
        .expect_error(422, Some("secret"), "16 to 256");
    p.put(&root, "/api/webhook", json!({"thresholds": [0]}))
        .expect_error(422, Some("thresholds"), "1 to 100");

    let set = configure(&p, &root, "https://hooks.example.com/x");
    assert_eq!(
        set,
        json!({"url": "https://hooks.example.com/x", "secret_set": true, "secret_hint": "…tail",
               "thresholds": [50, 80, 100], "pending": 0, "failed": 0})
    );
    // Absent fields keep their value; null turns webhooks off but keeps the secret.
    let off = p.put(&root, "/api/webhook", json!({"url": null})).ok();
    assert_eq!(off["url"], Value::Null);
    assert_eq!(off["secret_set"], true);
    assert_eq!(off["thresholds"], json!([50, 80, 100]));

    // Never returned, never logged.
    assert!(!p.get(&root, "/api/webhook").text.contains(SECRET));
    assert!(!p.log().contains(SECRET));

    // Sudo only.
    let svc = p.new_service(&root, "svc", &[]);
    let admin = p.new_admin(
        &root,
        json!({"username": "plain", "password": "plain-password", "service_ids": [svc]}),
    );
    assert_eq!(p.get(&admin, "/api/webhook").status, 403);
    assert_eq!(
        p.put(&admin, "/api/webhook", json!({"url": null})).status,
        403
    );
    // A read-only sudo admin sees the settings but cannot change them.
    let viewer = p.new_admin(
        &root,
        json!({"username": "viewer", "password": "viewer-password", "is_sudo": true,
               "read_only": true}),
    );
    assert_eq!(p.get(&viewer, "/api/webhook").status, 200);
    assert_eq!(
        p.put(&viewer, "/api/webhook", json!({"url": null})).status,
        403
    );
    assert_eq!(
        p.get(&root, "/api/webhook").ok()["thresholds"],
        json!([50, 80, 100])
    );

    // In the spec, with schemas and examples.
    let spec: Value = reqwest::blocking::get(format!("{}/openapi.json", p.base))
        .unwrap()
        .json()
        .unwrap();
    let path = &spec["paths"]["/webhook"];
    assert!(path["get"].is_object() && path["put"].is_object(), "{path}");
    let schemas = &spec["components"]["schemas"];
    assert_eq!(
        schemas["WebhookSettings"]["example"]["thresholds"],
        json!([80, 100])
    );
    assert!(schemas["WebhookSettingsInput"]["example"]["secret"].is_string());
}

fn admin_events_are_signed_ordered_and_retried(backend: Backend) {
    let receiver = Receiver::start();
    // The first event fails twice: it is retried, and nothing overtakes it.
    receiver.script.lock().unwrap().extend([500, 503]);
    let p = TestPanel::start_with(backend, options());
    let root = p.admin_token();
    // Before a URL is set, nothing is recorded.
    p.new_user(&root, json!({"username": "before"}));
    configure(&p, &root, &receiver.url());

    p.new_user(&root, json!({"username": "carol", "data_limit": 1000}));
    p.put(&root, "/api/users/carol", json!({"note": "vip"}))
        .ok();
    p.post(&root, "/api/users/carol/disable", json!({})).ok();
    p.post(&root, "/api/users/carol/enable", json!({})).ok();
    p.post(&root, "/api/users/carol/reset", json!({})).ok();
    p.post(&root, "/api/users/carol/revoke_sub", json!({})).ok();
    assert_eq!(p.delete(&root, "/api/users/carol").status, 200);

    let all = receiver.wait_for(7);
    let delivered = receiver.delivered();
    let events: Vec<&str> = delivered.iter().map(|d| d.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "user.created",
            "user.updated",
            "user.disabled",
            "user.enabled",
            "user.reset",
            "user.updated",
            "user.deleted"
        ]
    );
    // Retries: the same event (same delivery id) three times, the first two answered 5xx.
    assert_eq!(all.len(), 9);
    assert_eq!(
        all[..3].iter().map(|d| d.answered).collect::<Vec<_>>(),
        [500, 503, 200]
    );
    assert!(all[..3].iter().all(|d| d.delivery == all[0].delivery));
    assert!(all[..3].iter().all(|d| d.body == all[0].body));
    // Ids increase in the order events were made.
    assert!(delivered.windows(2).all(|w| w[0].delivery < w[1].delivery));
    for d in &all {
        assert!(d.signed_with(SECRET), "bad signature on {}", d.event);
        assert!(!d.signed_with("another secret-------"));
        let body = d.json();
        assert_eq!(body["event"], d.event);
        assert_eq!(body["user"]["username"], "carol");
        assert!(body["at"].is_i64());
    }
    let body = |i: usize| delivered[i].json();
    assert_eq!(body(0)["user"]["data_limit"], 1000);
    assert_eq!(body(2)["user"]["status"], "disabled");
    assert_eq!(body(3)["user"]["status"], "active");
    assert_eq!(body(6)["user"]["enabled"], true);
    // The outbox is empty once everything is delivered.
    let settings = p.get(&root, "/api/webhook").ok();
    assert_eq!(
        (settings["pending"].clone(), settings["failed"].clone()),
        (json!(0), json!(0))
    );
}

fn enforcement_announces_thresholds_limits_and_expiry(backend: Backend) {
    let receiver = Receiver::start();
    let p = TestPanel::start_with(backend, options());
    let root = p.admin_token();
    configure(&p, &root, &receiver.url());
    let dave = p.new_user(&root, json!({"username": "dave", "data_limit": 1000}))["id"]
        .as_i64()
        .unwrap();
    let erin = p.new_user(&root, json!({"username": "erin"}))["id"]
        .as_i64()
        .unwrap();
    receiver.wait_for(2);

    // 85%: the 50% and 80% thresholds are crossed at once; only the highest is announced.
    p.execute(
        "UPDATE users SET used_traffic = $1 WHERE id = $2",
        &[850, dave],
    );
    let got = receiver.wait_for(3);
    let last = got.last().unwrap().json();
    assert_eq!(last["event"], "user.usage_threshold");
    assert_eq!(last["threshold"], 80);
    assert_eq!(last["user"]["used_traffic"], 850);

    // Over the limit: 100% and limited, once each.
    p.execute(
        "UPDATE users SET used_traffic = $1 WHERE id = $2",
        &[1200, dave],
    );
    receiver.wait_for(5);
    // Expiry.
    p.execute(
        "UPDATE users SET expire_strategy = 'fixed_date', expire_date = $1 WHERE id = $2",
        &[1, erin],
    );
    receiver.wait_for(6);
    // A few more passes announce nothing new.
    std::thread::sleep(Duration::from_secs(3));
    let delivered = receiver.delivered();
    let events: Vec<(String, String)> = delivered
        .iter()
        .map(|d| {
            let b = d.json();
            let what = match b["threshold"].as_i64() {
                Some(t) => format!("{} {t}", d.event),
                None => d.event.clone(),
            };
            (b["user"]["username"].as_str().unwrap().to_owned(), what)
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("dave", "user.created"),
        ("erin", "user.created"),
        ("dave", "user.usage_threshold 80"),
        ("dave", "user.limited"),
        ("dave", "user.usage_threshold 100"),
        ("erin", "user.expired"),
    ]
    .iter()
    .map(|(u, e)| (u.to_string(), e.to_string()))
    .collect();
    // `limited` and the 100% threshold come from one pass: either order.
    let mut sorted = events.clone();
    sorted[3..5].sort();
    assert_eq!(sorted, expected, "{events:?}");

    // After a reset the thresholds are announced again.
    p.post(&root, "/api/users/dave/reset", json!({})).ok();
    p.execute(
        "UPDATE users SET used_traffic = $1 WHERE id = $2",
        &[600, dave],
    );
    let got = receiver.wait_for(8);
    let last = got.last().unwrap().json();
    assert_eq!(
        (last["event"].as_str(), last["threshold"].as_i64()),
        (Some("user.usage_threshold"), Some(50))
    );

    // A periodic reset (daily, last one long ago) is announced once, by enforcement.
    p.execute(
        "UPDATE users SET data_limit_reset_strategy = 'day', traffic_reset_at = $1 WHERE id = $2",
        &[1, dave],
    );
    let got = receiver.wait_for(9);
    let last = got.last().unwrap().json();
    assert_eq!(last["event"], "user.reset");
    assert_eq!(last["user"]["username"], "dave");
    assert_eq!(last["user"]["used_traffic"], 0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(receiver.delivered().len(), 9);
}

fn events_survive_a_restart(backend: Backend) {
    // A URL where nothing listens yet: deliveries fail and events wait in the outbox.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut p = TestPanel::start_with(backend, options());
    let root = p.admin_token();
    configure(&p, &root, &format!("http://{addr}/hook"));
    for name in ["frank", "grace", "heidi"] {
        p.new_user(&root, json!({"username": name}));
    }
    std::thread::sleep(Duration::from_millis(500));
    let settings = p.get(&root, "/api/webhook").ok();
    assert_eq!(settings["pending"], 3, "{settings}");
    p.restart(&options());

    let receiver = Receiver::on(TcpListener::bind(addr).expect("the receiver's port is free"));
    let got = receiver.wait_for(3);
    let names: Vec<String> = got
        .iter()
        .map(|d| d.json()["user"]["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["frank", "grace", "heidi"]);
    assert!(got
        .iter()
        .all(|d| d.event == "user.created" && d.signed_with(SECRET)));
    let root = p.admin_token();
    let settings = p.get(&root, "/api/webhook").ok();
    assert_eq!(settings["pending"], 0, "{settings}");
}

/// The advisory locks: one holder per job at a time, freed by release or by the holder going.
#[test]
fn postgres_job_locks_have_one_holder() {
    let p = TestPanel::start(Backend::Postgres);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let a = Db::connect(&p.database_url).await.unwrap();
        let b = Db::connect(&p.database_url).await.unwrap();
        // Wait for the panel's own passes to let go of the enforcement lock now and then.
        let held = loop {
            if let Some(lock) = JobLock::try_acquire(&a, Job::Enforcement).await.unwrap() {
                break lock;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(JobLock::try_acquire(&b, Job::Enforcement)
            .await
            .unwrap()
            .is_none());
        // Another job is another lock.
        let deadline = Instant::now() + Duration::from_secs(10);
        let other = loop {
            if let Some(lock) = JobLock::try_acquire(&b, Job::Webhooks).await.unwrap() {
                break lock;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook lock never came free"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        held.release().await;
        let again = JobLock::try_acquire(&b, Job::Enforcement).await.unwrap();
        assert!(again.is_some(), "released, so free");
        // Dropped without release: the transaction ends when its connection goes back, and
        // the lock with it.
        drop(again);
        drop(other);
        a.pool.close().await;
        b.pool.close().await;
        let c = Db::connect(&p.database_url).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while JobLock::try_acquire(&c, Job::Webhooks)
            .await
            .unwrap()
            .is_none()
        {
            assert!(Instant::now() < deadline, "a dropped lock stayed held");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Two panels on one PostgreSQL database: every event is delivered once, in order, whichever
/// instance made it.
#[test]
fn postgres_two_panels_deliver_each_event_once() {
    let receiver = Receiver::start();
    let first = TestPanel::start_with(Backend::Postgres, options());
    let root = first.admin_token();
    configure(&first, &root, &receiver.url());
    let second = first.another_instance(&options());
    let root2 = second.admin_token();
    let mut expected = Vec::new();
    for i in 0..30 {
        let (panel, token) = if i % 2 == 0 {
            (&first, &root)
        } else {
            (&second, &root2)
        };
        let name = format!("user_{i}");
        panel.new_user(token, json!({"username": name}));
        expected.push(name);
    }
    receiver.wait_for(30);
    // Time for a duplicate to show up, if there were one.
    std::thread::sleep(Duration::from_secs(2));
    let names: Vec<String> = receiver
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.json()["user"]["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, expected);
}

/// Polls the outbox list until `pred` holds for it (60 s at most).
fn events_until(p: &TestPanel, token: &str, query: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = p.get(token, &format!("/api/webhook/events{query}")).ok();
        if pred(&page) {
            return page;
        }
        assert!(Instant::now() < deadline, "outbox never matched: {page}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn failed_events_are_listed_and_retried(backend: Backend) {
    // Every attempt fails, so the panel gives up after its 16 attempts: with a 1 ms retry
    // base the waits add up to about 33 s.
    let receiver = Receiver::start();
    receiver
        .script
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n(500, 16));
    let p = TestPanel::start_with(
        backend,
        options().env("MARZNESHIN_WEBHOOK_RETRY_BASE_MS", "1"),
    );
    let root = p.admin_token();
    configure(&p, &root, &receiver.url());
    p.new_user(&root, json!({"username": "ann"}));
    let failed = events_until(&p, &root, "?status=failed", |page| page["total"] == 1);
    let ann = failed["items"][0].clone();
    let ann_id = ann["id"].as_i64().unwrap();
    assert_eq!(ann["event"], "user.created");
    assert_eq!(ann["status"], "failed");
    assert_eq!(ann["attempts"], 16);
    assert_eq!(
        ann["last_error"],
        "receiver answered 500 Internal Server Error"
    );
    assert_eq!(ann["next_attempt_at"], Value::Null);
    assert!(ann["failed_at"].as_i64().unwrap() >= ann["created_at"].as_i64().unwrap());
    assert_eq!(ann["payload"]["user"]["username"], "ann");
    assert_eq!(receiver.got.lock().unwrap().len(), 16);
    assert_eq!(p.get(&root, "/api/webhook").ok()["failed"], 1);

    // A later event, to a receiver that is gone: pending, tried again and again.
    let gone = TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_url = format!("http://{}/hook", gone.local_addr().unwrap());
    drop(gone);
    configure(&p, &root, &gone_url);
    p.new_user(&root, json!({"username": "bob"}));
    let all = events_until(&p, &root, "", |page| {
        page["total"] == 2 && page["items"][0]["attempts"].as_i64() > Some(0)
    });
    let bob = &all["items"][0];
    let bob_id = bob["id"].as_i64().unwrap();
    assert!(bob_id > ann_id);
    assert_eq!(all["items"][1]["id"], ann_id, "newest first: {all}");
    assert_eq!(bob["status"], "pending");
    assert_eq!(bob["failed_at"], Value::Null);
    assert!(bob["next_attempt_at"].as_i64().unwrap() >= bob["created_at"].as_i64().unwrap());
    assert!(bob["last_error"].is_string());
    assert_eq!(bob["payload"]["user"]["username"], "bob");
    let ids = |page: &Value| -> Vec<i64> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        ids(&p.get(&root, "/api/webhook/events?status=failed").ok()),
        [ann_id]
    );
    assert_eq!(
        ids(&p.get(&root, "/api/webhook/events?status=pending").ok()),
        [bob_id]
    );
    let second = p.get(&root, "/api/webhook/events?page=2&size=1").ok();
    assert_eq!((ids(&second), &second["total"]), (vec![ann_id], &json!(2)));
    assert_eq!(
        ids(&p.get(&root, "/api/webhook/events?page=3&size=1").ok()),
        Vec::<i64>::new()
    );
    p.get(&root, "/api/webhook/events?size=0")
        .expect_error(422, Some("size"), "between 1 and 500");
    p.get(&root, "/api/webhook/events?page=0")
        .expect_error(422, Some("page"), "at least 1");
    assert_eq!(p.get(&root, "/api/webhook/events?status=lost").status, 400);
    assert!(!p.get(&root, "/api/webhook/events").text.contains(SECRET));

    // Only a failed event can be retried; an unknown one is not found.
    p.post(
        &root,
        &format!("/api/webhook/events/{bob_id}/retry"),
        json!({}),
    )
    .expect_error(409, None, "not failed");
    p.post(&root, "/api/webhook/events/999999/retry", json!({}))
        .expect_error(404, None, "not found");

    // Sudo only; a read-only sudo admin may look but not retry.
    let svc = p.new_service(&root, "svc", &[]);
    let admin = p.new_admin(
        &root,
        json!({"username": "plain", "password": "plain-password", "service_ids": [svc]}),
    );
    let viewer = p.new_admin(
        &root,
        json!({"username": "viewer", "password": "viewer-password", "is_sudo": true,
               "read_only": true}),
    );
    let retry = format!("/api/webhook/events/{ann_id}/retry");
    assert_eq!(p.get(&admin, "/api/webhook/events").status, 403);
    assert_eq!(p.post(&admin, &retry, json!({})).status, 403);
    assert_eq!(p.get(&viewer, "/api/webhook/events").ok()["total"], 2);
    assert_eq!(p.post(&viewer, &retry, json!({})).status, 403);
    assert_eq!(p.call("POST", &retry, None, None).status, 401);
    assert_eq!(
        p.get(&root, "/api/webhook/events?status=failed").ok()["total"],
        1,
        "a refused retry changed nothing"
    );

    // Retried, then the receiver is back: the event is due at once and goes before the newer
    // one (oldest first), and both are delivered.
    let retried = p.post(&root, &retry, json!({})).ok();
    assert_eq!(retried["id"], ann_id);
    assert_eq!(retried["status"], "pending");
    assert_eq!(retried["attempts"], 0);
    assert_eq!(retried["failed_at"], Value::Null);
    assert!(retried["next_attempt_at"].is_i64());
    assert_eq!(
        p.get(&root, "/api/webhook/events?status=failed").ok()["total"],
        0
    );
    configure(&p, &root, &receiver.url());
    let got = receiver.wait_for(2);
    assert_eq!(got.len(), 18);
    let delivered = receiver.delivered();
    let order: Vec<(u64, Value)> = delivered
        .iter()
        .map(|d| (d.delivery, d.json()["user"]["username"].clone()))
        .collect();
    assert_eq!(
        order,
        [(ann_id as u64, json!("ann")), (bob_id as u64, json!("bob"))]
    );
    events_until(&p, &root, "", |page| page["total"] == 0);

    // In the spec, with examples and error responses.
    let spec: Value = reqwest::blocking::get(format!("{}/openapi.json", p.base))
        .unwrap()
        .json()
        .unwrap();
    let list = &spec["paths"]["/webhook/events"]["get"];
    let retry = &spec["paths"]["/webhook/events/{id}/retry"]["post"];
    for code in ["401", "403", "422"] {
        assert!(list["responses"][code].is_object(), "{code}: {list}");
    }
    for code in ["401", "403", "404", "409"] {
        assert!(retry["responses"][code].is_object(), "{code}: {retry}");
    }
    let schemas = &spec["components"]["schemas"];
    assert_eq!(schemas["WebhookEvent"]["example"]["status"], "failed");
    assert!(schemas["WebhookEventPage"]["example"]["items"].is_array());
}

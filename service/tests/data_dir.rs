//! One panel per data directory: a second `marzneshin serve` on a running panel's data
//! directory refuses to start, with an error naming the directory, before it touches the
//! running engine's counters file; the running panel keeps counting.

mod panel;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{tcp_echo, SsClient};
use panel::{Backend, Options, TestPanel};
use serde_json::json;

#[test]
fn a_second_panel_on_the_same_data_directory_refuses_to_start() {
    let p = TestPanel::start_with(
        Backend::Sqlite,
        Options::default()
            .env("MARZNESHIN_ALLOW_LOOPBACK", "true")
            .env("MARZNESHIN_USAGE_INTERVAL_SECS", "1"),
    );
    let root = p.admin_token();
    let inbound = p.new_inbound(&root, "ss", "aes-256-gcm", panel::free_port());
    let svc = p.new_service(&root, "svc", &[inbound["id"].as_i64().unwrap()]);
    let user = p.new_user(&root, json!({"username": "alice", "service_ids": [svc]}));
    let config: engine::config::InboundConfig =
        serde_json::from_value(inbound["config"].clone()).unwrap();
    let password = service::sync::credential(&config, user["key"].as_str().unwrap());
    let mut c = SsClient::connect(
        config.listen,
        proto::shadowsocks::Method::Aes256Gcm,
        &password,
        None,
        tcp_echo(),
        b"hello",
    )
    .unwrap();
    assert_eq!(c.recv_exact(5).unwrap(), b"hello");
    let mut moved = 2 * 5u64;

    // The same data directory and database, another API port.
    let second: SocketAddr = ([127, 0, 0, 1], panel::free_port()).into();
    let mut child = Command::new(env!("CARGO_BIN_EXE_marzneshin"))
        .arg("serve")
        .env("MARZNESHIN_LISTEN", second.to_string())
        .env("DATABASE_URL", &p.database_url)
        .env("MARZNESHIN_DATA_DIR", &p.dir)
        .env("MARZNESHIN_ALLOW_LOOPBACK", "true")
        .env("MARZNESHIN_ENGINE_WORKERS", "1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        let started = std::net::TcpStream::connect(second).is_ok();
        if started || Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "a second panel runs on the data directory; its log:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another marzneshin is using the data directory {}",
            p.dir.display()
        )),
        "{stderr}"
    );

    // The first panel's engine still counts, in its counters file too, and its panel records.
    let chunk = vec![0x5a; 10_000];
    for _ in 0..10 {
        c.send(&chunk).unwrap();
        assert_eq!(c.recv_exact(chunk.len()).unwrap().len(), chunk.len());
        moved += 2 * chunk.len() as u64;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counted: u64 = engine::read_counters_file(&p.dir.join("counters"))
            .unwrap()
            .map_or(0, |run| {
                run.users.iter().map(|(_, up, down)| up + down).sum()
            });
        let recorded = p.get(&root, "/api/users/alice").ok()["used_traffic"].clone();
        if counted == moved && recorded == moved {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "moved {moved}; counted {counted}, recorded {recorded}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

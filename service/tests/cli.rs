//! The `marzneshin engine` command line: config errors, links, clean stop on SIGTERM/SIGINT.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_marzneshin"))
}

fn write_config(name: &str, json: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("marzneshin-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn config_error_names_the_field_and_binds_nothing() {
    let port = e2e::free_port();
    let path = write_config(
        "bad.json",
        &format!(
            r#"{{"inbounds":[
              {{"tag":"ok","listen":"127.0.0.1:{port}","protocol":"shadowsocks",
                "settings":{{"method":"aes-256-gcm","users":[{{"name":"a","password":"x"}}]}}}},
              {{"tag":"bad","listen":"127.0.0.1:0","protocol":"shadowsocks",
                "settings":{{"method":"2022-blake3-aes-128-gcm","users":[{{"name":"b","password":"AAAA"}}]}}}}]}}"#
        ),
    );
    let mut child = bin()
        .args(["engine", "run", "--config"])
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains("inbounds[1].settings.users[0].password"),
        "stderr: {err}"
    );
    assert!(err.contains("needs exactly 16"), "stderr: {err}");
    // The valid first inbound's port was never bound.
    assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
}

#[test]
fn unreadable_and_malformed_configs_fail() {
    let out = bin()
        .args(["engine", "run", "--config", "/nonexistent.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let path = write_config("malformed.json", r#"{"inbounds": [{"tag": 5}]}"#);
    let out = bin()
        .args(["engine", "run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("inbounds[0].tag"));
}

#[test]
fn links_cover_every_user_of_every_inbound() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/shadowsocks.json"
    );
    let out = bin()
        .args([
            "engine",
            "links",
            "--config",
            path,
            "--address",
            "vpn.example.com",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let links: Vec<&str> = text.lines().collect();
    assert_eq!(links.len(), 18, "six inbounds of three users each");
    assert!(links
        .iter()
        .all(|l| l.starts_with("ss://") && l.contains("@vpn.example.com:")));
}

/// Runs one engine at a time: the engine listens with `SO_REUSEPORT`, so two tests that drew
/// the same free port would both bind it, and each would see the other's listener.
static ONE_ENGINE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_until_signal(signal: i32) {
    let _one = ONE_ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let port = e2e::free_port();
    let path = write_config(
        &format!("run-{signal}.json"),
        &format!(
            r#"{{"workers":2,"inbounds":[{{"tag":"ss","listen":"127.0.0.1:{port}","protocol":"shadowsocks",
                "settings":{{"method":"aes-128-gcm","users":[{{"name":"a","password":"x"}}]}}}}]}}"#
        ),
    );
    let mut child = bin()
        .args(["engine", "run", "--grace", "2", "--config"])
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its own log says it listens (a connect could reach another test's listener on the same
    // port, and a signal sent before the handlers are installed kills the process).
    let (listening, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening") {
                let _ = listening.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("engine did not start listening");
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "engine did not stop");
        thread::sleep(Duration::from_millis(50));
    }
    // Binding, not connecting: a connect to a free port in the ephemeral range can connect
    // to itself (TCP simultaneous open).
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "port still bound after stop"
    );
}

#[test]
fn sigterm_stops_cleanly() {
    run_until_signal(15);
}

#[test]
fn sigint_stops_cleanly() {
    run_until_signal(2);
}

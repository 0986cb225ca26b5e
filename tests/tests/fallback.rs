//! Fallbacks: a connection to a VLESS or Trojan inbound that is not the protocol (a browser,
//! a prober) is forwarded with every byte already read to the configured site, and gets that
//! site's real answer: over TLS (curl, the certificate being self-signed) and over plain TCP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use e2e::*;
use serde_json::json;

const BODY: &str = "hello from the fallback site\n";

fn curl(url: &str) -> String {
    let out = Command::new(peer("curl"))
        .args(["-sk", "--max-time", "10", "--http1.1", url])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn settings(protocol: &str, fallback: std::net::SocketAddr) -> serde_json::Value {
    match protocol {
        "vless" => json!({"users": [{"name": "u", "id": "b831381d-6324-4d53-ad4f-8cda48b30811"}],
                          "fallback": fallback.to_string()}),
        _ => {
            json!({"users": [{"name": "u", "password": "secret"}], "fallback": fallback.to_string()})
        }
    }
}

fn https_request_gets_the_site(protocol: &str) {
    let (site, seen) = http_site(BODY);
    let (handle, server) = engine_with_inbound(protocol, settings(protocol, site), true);
    let got = curl(&format!("https://127.0.0.1:{}/probe", server.port()));
    assert_eq!(got, BODY);
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].starts_with(b"GET /probe HTTP/1.1\r\n"),
        "{requests:?}"
    );
    handle.stop(Duration::from_secs(1));
}

fn plain_request_gets_the_site(protocol: &str) {
    let (site, seen) = http_site(BODY);
    let (handle, server) = engine_with_inbound(protocol, settings(protocol, site), false);
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n";
    s.write_all(request).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with(BODY));
    assert_eq!(seen.lock().unwrap()[0], request, "forwarded byte for byte");
    drop(s);
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

#[test]
fn vless_tls_https_request_gets_the_fallback_site() {
    https_request_gets_the_site("vless");
}

#[test]
fn trojan_tls_https_request_gets_the_fallback_site() {
    https_request_gets_the_site("trojan");
}

#[test]
fn vless_tcp_http_request_gets_the_fallback_site() {
    plain_request_gets_the_site("vless");
}

#[test]
fn trojan_tcp_http_request_gets_the_fallback_site() {
    plain_request_gets_the_site("trojan");
}

/// A well-formed Trojan request with a wrong password goes to the site as it is.
#[test]
fn trojan_wrong_password_goes_to_the_site() {
    let (site, seen) = http_site(BODY);
    let (handle, server) = engine_with_inbound("trojan", settings("trojan", site), false);
    let mut wire = vec![0u8; proto::trojan::MAX_HEADER_LEN];
    let n = proto::trojan::encode_request(
        &proto::trojan::password_hash("wrong"),
        proto::trojan::Command::Connect,
        &proto::TargetAddr::Domain("example.com".into(), 80),
        &mut wire,
    );
    wire.truncate(n);
    wire.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&wire).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with(BODY), "{answer}");
    assert_eq!(seen.lock().unwrap()[0], wire);
    handle.stop(Duration::from_secs(1));
}

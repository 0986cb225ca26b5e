//! The floor of the side-by-side benchmark: a TCP relay with no protocol and no crypto.
//!
//! `plain_relay LISTEN TARGET` forwards every accepted connection to TARGET. Blocking threads
//! (one per direction per connection), 64 KiB buffers, `read` then `write_all` of the same
//! bytes: the least work a relay can do with ordinary sockets, so what a proxy costs above it
//! is what its protocol and design cost.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;

const BUFFER: usize = 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let parsed = match args.as_slice() {
        [_, listen, target] => listen
            .parse::<SocketAddr>()
            .ok()
            .zip(target.parse::<SocketAddr>().ok()),
        _ => None,
    };
    let Some((listen, target)) = parsed else {
        eprintln!("usage: plain_relay LISTEN_ADDR TARGET_ADDR");
        return ExitCode::FAILURE;
    };
    let listener = match TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("plain_relay: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let _ = thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || relay(client, target));
    }
    ExitCode::SUCCESS
}

fn relay(client: TcpStream, target: SocketAddr) {
    let Ok(upstream) = TcpStream::connect(target) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let down = thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || pipe(upstream2, client2));
    pipe(client, upstream);
    if let Ok(down) = down {
        let _ = down.join();
    }
}

/// Copies `from` to `to` until end of stream, then half-closes `to`.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

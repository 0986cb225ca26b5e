//! The loopback server every proxy under test relays to: a sink, a source and an echo.
//!
//! Each connection starts with a [`Command`] of [`COMMAND_LEN`] bytes (the client sends it as
//! the initial payload of its proxy request):
//!
//! ```text
//! +-----+-----------+-----------+
//! | op  | 7 x 0     | len u64 BE|   op: 'U' upload, 'D' download, 'E' echo
//! +-----+-----------+-----------+
//! ```
//!
//! - upload: the target reads `len` bytes, checks them against the [`TestPattern`] and answers
//!   with an [`UploadReport`]; then reads to end of stream;
//! - download: the target writes `len` pattern bytes, half-closes, and reads to end of stream;
//! - echo: the target writes back whatever it reads until end of stream.
//!
//! Blocking threads, one per connection, 64 KiB buffers. The target runs in the harness
//! process, so it shares CPU 1 with the load generator and never the server's CPU.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;

use crate::pattern::TestPattern;

/// Length of a command.
pub const COMMAND_LEN: usize = 16;
/// Length of an upload report.
pub const REPORT_LEN: usize = 16;

const IO_BUFFER: usize = 64 * 1024;

/// What a connection asks the target to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Receive this many pattern bytes and report.
    Upload(u64),
    /// Send this many pattern bytes.
    Download(u64),
    /// Echo until end of stream.
    Echo,
}

impl Command {
    /// The wire form.
    pub fn encode(self) -> [u8; COMMAND_LEN] {
        let (op, len) = match self {
            Command::Upload(n) => (b'U', n),
            Command::Download(n) => (b'D', n),
            Command::Echo => (b'E', 0),
        };
        let mut out = [0u8; COMMAND_LEN];
        out[0] = op;
        out[8..].copy_from_slice(&len.to_be_bytes());
        out
    }

    fn decode(b: &[u8; COMMAND_LEN]) -> Option<Command> {
        let len = u64::from_be_bytes(b[8..].try_into().expect("8 bytes"));
        match b[0] {
            b'U' => Some(Command::Upload(len)),
            b'D' => Some(Command::Download(len)),
            b'E' => Some(Command::Echo),
            _ => None,
        }
    }
}

/// What the target saw of an upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadReport {
    /// Every byte matched the pattern.
    pub intact: bool,
    /// Bytes received.
    pub received: u64,
}

impl UploadReport {
    fn encode(self) -> [u8; REPORT_LEN] {
        let mut out = [0u8; REPORT_LEN];
        out[0] = u8::from(self.intact);
        out[8..].copy_from_slice(&self.received.to_be_bytes());
        out
    }

    /// Parses a report received by the client.
    pub fn decode(b: &[u8; REPORT_LEN]) -> UploadReport {
        UploadReport {
            intact: b[0] == 1,
            received: u64::from_be_bytes(b[8..].try_into().expect("8 bytes")),
        }
    }
}

/// A running target; it lives as long as the process.
pub struct BenchTarget {
    addr: SocketAddr,
}

impl BenchTarget {
    /// Starts the target on a free loopback port.
    pub fn start() -> io::Result<BenchTarget> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        thread::Builder::new()
            .name("target-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { continue };
                    let _ = thread::Builder::new()
                        .name("target-conn".into())
                        .stack_size(256 * 1024)
                        .spawn(move || {
                            let _ = serve(conn);
                        });
                }
            })?;
        Ok(BenchTarget { addr })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve(mut conn: TcpStream) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut head = [0u8; COMMAND_LEN];
    conn.read_exact(&mut head)?;
    let mut buf = vec![0u8; IO_BUFFER];
    match Command::decode(&head) {
        Some(Command::Upload(len)) => {
            let pattern = TestPattern::get();
            let mut received = 0u64;
            let mut intact = true;
            while received < len {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                intact &= pattern.matches(received, &buf[..n]);
                received += n as u64;
            }
            conn.write_all(&UploadReport { intact, received }.encode())?;
            drain(&mut conn, &mut buf)
        }
        Some(Command::Download(len)) => {
            let pattern = TestPattern::get();
            let mut sent = 0u64;
            while sent < len {
                let n = (len - sent).min(IO_BUFFER as u64) as usize;
                pattern.fill(sent, &mut buf[..n]);
                conn.write_all(&buf[..n])?;
                sent += n as u64;
            }
            conn.shutdown(Shutdown::Write)?;
            drain(&mut conn, &mut buf)
        }
        Some(Command::Echo) => loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                return conn.shutdown(Shutdown::Write);
            }
            conn.write_all(&buf[..n])?;
        },
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unknown command",
        )),
    }
}

fn drain(conn: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
    while conn.read(buf)? > 0 {}
    Ok(())
}

//! C programs compiled with the system C compiler (`cc`, or `$CC`) against the library that
//! cargo just built, then run:
//!
//! - `tests/c/smoke.c`, linked to the shared library: starts an engine, adds a user, and
//!   (through the harness below) carries real traffic from `sslocal` (shadowsocks-rust) to a
//!   loopback echo; it then checks the user's counters equal the bytes moved, removes the
//!   user, stops, frees, and exercises every misuse the API promises to survive. It runs once
//!   as is and once under valgrind (`--leak-check=full --errors-for-leak-kinds=definite`, any
//!   error fails; the copy run under valgrind waits for io_uring completions in poll(), see
//!   tests/c/valgrind_uring_wait.c). Without valgrind the valgrind run fails when `CI` is set and is skipped,
//!   loudly, otherwise.
//! - The C example in `docs/ffi.md`, linked to the static library: so the documented example
//!   (and the static link line it documents) keeps compiling and running.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use e2e::{free_port, peer, socks5_connect, tcp_echo, wait_for_port, ChildGuard, Ending};

const SS_METHOD: &str = "chacha20-ietf-poly1305";
/// Must match `SS_PASSWORD` in tests/c/smoke.c.
const SS_PASSWORD: &str = "smoke-test-password";
/// What `rustc --print native-static-libs` lists for the staticlib on Linux.
const NATIVE_STATIC_LIBS: &[&str] = &["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl"];

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn c_source(name: &str) -> PathBuf {
    crate_dir().join("tests/c").join(name)
}

fn scratch() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

/// The directory holding `libengine_ffi.so` and `libengine_ffi.a`.
///
/// Before running any integration test cargo builds the library with every crate type into
/// the `deps/` directory this test binary lives in, so a clean checkout needs nothing else.
/// Should a runner lay things out otherwise, the library is built here with cargo into a
/// directory of its own.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps directory");
    if deps.join("libengine_ffi.so").is_file() && deps.join("libengine_ffi.a").is_file() {
        return deps.to_path_buf();
    }
    let target = scratch().join("engine-ffi-lib");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--lib", "--manifest-path"])
        .arg(crate_dir().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build of engine-ffi failed");
    target.join("debug")
}

enum Link {
    /// `-lengine_ffi` against the shared library, found again at run time through an rpath
    /// (an old-style DT_RPATH, which outranks LD_LIBRARY_PATH: cargo points that at
    /// `target/debug`, where an older copy of the library may lie).
    Shared,
    /// `libengine_ffi.a` and the system libraries the Rust standard library needs.
    Static,
}

/// Compiles C files into an executable under the test scratch directory.
fn compile(sources: &[PathBuf], name: &str, link: Link) -> PathBuf {
    let lib = library_dir();
    let exe = scratch().join(name);
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.args(["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-g", "-O1"])
        .args(["-Wall", "-Wextra", "-Wpedantic", "-Werror"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .args(sources)
        .arg("-o")
        .arg(&exe);
    match link {
        Link::Shared => {
            cmd.arg(format!("-L{}", lib.display()))
                .arg("-lengine_ffi")
                .arg(format!("-Wl,--disable-new-dtags,-rpath,{}", lib.display()));
        }
        Link::Static => {
            cmd.arg(lib.join("libengine_ffi.a"))
                .args(NATIVE_STATIC_LIBS);
        }
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
    assert!(
        out.status.success(),
        "compiling {sources:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Relays `total` bytes each way as user "alice" from a real client, `sslocal`, through the
/// engine's inbound on `port` to a loopback echo. Returns (uplink, downlink) payload bytes.
fn relay_through_sslocal(port: u16, total: usize) -> (u64, u64) {
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let socks: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut client = ChildGuard::spawn(
        "sslocal",
        Command::new(peer("sslocal"))
            .args(["-s", &server.to_string(), "-b", &socks.to_string()])
            .args(["-m", SS_METHOD, "-k", SS_PASSWORD]),
    );
    wait_for_port(socks, &mut client);
    let stream = socks5_connect(socks, tcp_echo()).expect("SOCKS5 CONNECT through sslocal");
    e2e::echo_transfer(stream, total, 7, Ending::HalfClose)
        .expect("echo transfer through sslocal and the engine");
    client.assert_running();
    (total as u64, total as u64)
}

/// Runs the smoke program (with `wrapper` in front of it, if any): answers its port with real
/// traffic, and returns its output once it exits.
fn run_smoke(program: &Path, wrapper: &[String], total: usize) -> Output {
    // `timeout` ends a hung program so the test fails instead of hanging (with SIGKILL: a
    // program stuck under valgrind does not act on SIGTERM).
    let mut child = Command::new("timeout")
        .args(["-s", "KILL", "600"])
        .args(wrapper)
        .arg(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the smoke program");
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout
        .read_line(&mut first)
        .expect("read the smoke program");
    let mut rest = Vec::new();
    if let Some(port) = first.trim().strip_prefix("port ") {
        let port: u16 = port.parse().expect("a port number");
        let (up, down) = relay_through_sslocal(port, total);
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "moved {up} {down}").expect("write to the smoke program");
        drop(stdin);
    }
    stdout
        .read_to_end(&mut rest)
        .expect("read the smoke program");
    let status = child.wait().expect("wait for the smoke program");
    let mut out = first.into_bytes();
    out.extend_from_slice(&rest);
    Output {
        status,
        stdout: out,
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn assert_ok(what: &str, out: &Output, extra: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("smoke: ok"),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}{extra}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
    );
}

#[test]
fn c_smoke_program_relays_real_traffic_and_survives_misuse() {
    let program = compile(&[c_source("smoke.c")], "smoke", Link::Shared);
    let out = run_smoke(&program, &[], 4 << 20);
    assert_ok("tests/c/smoke.c", &out, "");
}

#[test]
fn c_smoke_program_is_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "valgrind is not installed (CI must install it: apt-get install valgrind)"
        );
        eprintln!(
            "\n\n*** SKIPPED: valgrind is not installed, so tests/c/smoke.c was not checked \
             for memory errors and leaks (apt-get install valgrind) ***\n"
        );
        return;
    }
    // valgrind 3.19 freezes every thread while one waits in io_uring_enter; this copy of the
    // program waits in poll() instead (see the file for why and how).
    let program = compile(
        &[c_source("smoke.c"), c_source("valgrind_uring_wait.c")],
        "smoke-valgrind",
        Link::Shared,
    );
    let log = scratch().join("smoke-valgrind.log");
    let wrapper = vec![
        "valgrind".to_owned(),
        "--error-exitcode=1".to_owned(),
        "--leak-check=full".to_owned(),
        "--errors-for-leak-kinds=definite".to_owned(),
        format!(
            "--suppressions={}",
            crate_dir().join("tests/c/valgrind.supp").display()
        ),
        format!("--log-file={}", log.display()),
    ];
    let out = run_smoke(&program, &wrapper, 1 << 20);
    let report = std::fs::read_to_string(&log).unwrap_or_default();
    assert_ok(
        "tests/c/smoke.c under valgrind",
        &out,
        &format!("\n--- valgrind ({})\n{report}", log.display()),
    );
}

/// The first fenced C block of docs/ffi.md.
fn docs_example() -> String {
    let doc = std::fs::read_to_string(crate_dir().join("../docs/ffi.md")).expect("docs/ffi.md");
    let start = doc.find("```c\n").expect("a ```c block in docs/ffi.md") + "```c\n".len();
    let len = doc[start..].find("```").expect("the end of the ```c block");
    doc[start..start + len].to_owned()
}

#[test]
fn docs_example_compiles_links_statically_and_runs() {
    let source = scratch().join("ffi-example.c");
    std::fs::write(&source, docs_example()).expect("write the example");
    let program = compile(&[source], "ffi-example", Link::Static);
    let out = Command::new("timeout")
        .args(["-s", "KILL", "120"])
        .arg(&program)
        .output()
        .expect("run the example");
    assert!(
        out.status.success(),
        "the docs/ffi.md example failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

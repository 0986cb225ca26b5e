//! Side-by-side benchmark: our engine against the peer Shadowsocks servers (shadowsocks-rust's
//! `ssserver`, shadowsocks-libev's `ss-server`, sing-box, v2ray) and a plain relay, and against
//! the peer Hysteria2 servers (sing-box, shoes).
//!
//! ```text
//!   CPU 1                                     CPU 0                 CPU 1
//!   load generator (proto client codecs) ──► server under test ──► target (sink/source/echo)
//!   ◄─────────────────────────────────────── (one at a time)  ◄───
//!
//!   Hysteria2: load generator ─SOCKS5─► sing-box Hysteria2 client ─QUIC─► server under test ─► target
//!              (CPU 1)                  (CPU 1, the same for every server)  (CPU 0)           (CPU 1)
//! ```
//!
//! Run: `cargo run --release -p benches --bin side_by_side -- [--quick] [--out DIR]`.
//! The harness builds `marzneshin` (`cargo build --release -p service`) and the floor relay
//! itself unless `--no-build` is given. See `docs/benchmarks.md` for how to read the results.
#![forbid(unsafe_code)]

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use benches::client::Endpoint;
use benches::probe::{allowed_cpus, pin_current_thread, ticks_per_second, ProcessProbe};
use benches::report::{
    check_peer_targets, check_targets, Binary, CipherCost, ConnectionCost, Hysteria2Report,
    IdleMemory, Machine, MethodReport, Outcome, Report, RoundTrip, ServerReport, Throughput,
};
use benches::target::BenchTarget;
use benches::workload::{self, Measured};
use clap::Parser;
use proto::shadowsocks::{Key, Method};

/// CPU the servers run on.
const SERVER_CPU: usize = 0;
/// CPU the load generator and the target run on.
const CLIENT_CPU: usize = 1;
const GIB: f64 = (1u64 << 30) as f64;

#[derive(Parser)]
#[command(
    name = "side_by_side",
    about = "Side-by-side benchmark: marzneshin vs peer servers vs a plain relay, pinned, on loopback"
)]
struct Args {
    /// Smoke mode for CI: 64 MiB per transfer and fewer connections (under a minute).
    #[arg(long)]
    quick: bool,
    /// Where to write results.json, results.md and results.svg.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Bytes per throughput run, in MiB (default: 1024, or 64 with --quick).
    #[arg(long)]
    mib: Option<u64>,
    /// Methods to compare (repeatable).
    #[arg(long = "method", default_values_t = [Method::Aes256Gcm.name().to_owned(), Method::Blake3Aes256Gcm.name().to_owned()])]
    methods: Vec<String>,
    /// Runs of each throughput and connection scenario; the median is reported (default: 3,
    /// or 1 with --quick).
    #[arg(long)]
    repeat: Option<usize>,
    /// Protocols to measure (comma-separated: shadowsocks, hysteria2).
    #[arg(long, value_delimiter = ',', default_values_t = PROTOCOLS.map(str::to_owned))]
    protocols: Vec<String>,
    /// Servers to run (comma-separated: floor, marzneshin, ssserver, ss-server, sing-box,
    /// v2ray, shoes). The floor is needed for the floor + cipher ratios; shoes serves only
    /// Hysteria2 here, and sing-box both protocols.
    #[arg(long, value_delimiter = ',', default_values_t = ["floor", "ssserver", "ss-server", "sing-box", "v2ray", "shoes", "marzneshin"].map(str::to_owned))]
    servers: Vec<String>,
    /// Scenarios to run (comma-separated: idle, rtt, connections, upload, download, parallel);
    /// for profiling one of them, e.g. under `perf record -C 0`.
    #[arg(long, value_delimiter = ',', default_values_t = SCENARIOS.map(str::to_owned))]
    only: Vec<String>,
    /// Fail (exit non-zero) when a selected server could not run, e.g. a peer binary is
    /// missing or its config was refused; a peer that does not implement a method, and the
    /// optional shoes when it is not installed, still only get "n/a". CI uses this so a broken
    /// peer setup cannot pass as "missing".
    #[arg(long)]
    require_all: bool,
    /// Do not run `cargo build --release` for marzneshin and the plain relay first.
    #[arg(long)]
    no_build: bool,
    /// The marzneshin binary (default: next to this binary).
    #[arg(long)]
    marzneshin: Option<PathBuf>,
}

const PROTOCOLS: [&str; 2] = ["shadowsocks", "hysteria2"];

const SCENARIOS: [&str; 6] = [
    "idle",
    "rtt",
    "connections",
    "upload",
    "download",
    "parallel",
];

/// Sizes of each scenario, and which ones run.
struct Plan {
    bytes: u64,
    streams: usize,
    churn: usize,
    round_trips: usize,
    idle: usize,
    cipher_bytes: u64,
    repeat: usize,
    only: Vec<String>,
    /// Why the idle scenario is left out for this server, if it is.
    idle_skipped: Option<String>,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let (mib, churn, round_trips, idle) = if args.quick {
            (64, 300, 1000, 100)
        } else {
            (1024, 2000, 10_000, 10_000)
        };
        let bytes = args.mib.unwrap_or(mib) << 20;
        Plan {
            bytes,
            streams: 8,
            churn,
            round_trips,
            idle,
            cipher_bytes: bytes,
            repeat: args.repeat.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
            only: args.only.clone(),
            idle_skipped: None,
        }
    }

    /// The same plan without the idle scenario, saying why.
    fn without_idle(&self, why: &str) -> Plan {
        Plan {
            only: self.only.clone(),
            idle_skipped: Some(why.to_owned()),
            ..*self
        }
    }

    fn runs(&self, scenario: &str) -> bool {
        self.only.iter().any(|s| s == scenario)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("side_by_side: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Returns whether every figure was measured and verified (missing peers aside).
fn run(args: Args) -> Result<bool> {
    let started = Instant::now();
    let started_at = benches::unix_now();
    let methods = args
        .methods
        .iter()
        .map(|m| m.parse::<Method>())
        .collect::<Result<Vec<_>, _>>()?;
    for s in &args.only {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!(
                "unknown scenario {s:?}; expected one of {}",
                SCENARIOS.join(", ")
            );
        }
    }
    for p in &args.protocols {
        if !PROTOCOLS.contains(&p.as_str()) {
            bail!(
                "unknown protocol {p:?}; expected one of {}",
                PROTOCOLS.join(", ")
            );
        }
    }
    for s in &args.servers {
        if s != "floor"
            && s != "marzneshin"
            && Peer::from_name(s).is_none()
            && Hy2Peer::from_name(s).is_none()
        {
            bail!(
                "unknown server {s:?}; expected floor, marzneshin or a peer: {}, {}",
                Peer::ALL.map(Peer::name).join(", "),
                Hy2Peer::ALL.map(Hy2Peer::name).join(", ")
            );
        }
    }
    let wanted = |server: &str| args.servers.iter().any(|s| s == server);
    let measures = |protocol: &str| args.protocols.iter().any(|p| p == protocol);
    let shadowsocks = measures("shadowsocks");
    let methods = if shadowsocks { methods } else { Vec::new() };
    let exe_dir = std::env::current_exe()?
        .parent()
        .context("binary has no directory")?
        .to_owned();
    // Build first, on every CPU: pinning below is inherited by children.
    if !args.no_build {
        build()?;
    }
    let mut plan = Plan::new(&args);
    let machine = Machine::detect();
    if machine.cpus < 2 {
        bail!("needs at least 2 CPUs (server on CPU {SERVER_CPU}, load on CPU {CLIENT_CPU})");
    }
    which("taskset").context("`taskset` (util-linux) is needed to pin the servers")?;
    // The load generator and the target: this process, every thread it starts from now on.
    pin_current_thread(CLIENT_CPU).context("pinning the harness to CPU 1")?;
    eprintln!("harness pinned to CPU {}", allowed_cpus());
    // Only the Shadowsocks servers run the idle scenario.
    if shadowsocks && plan.runs("idle") {
        plan.idle = fit_idle_connections(plan.idle)?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let target = BenchTarget::start()?;

    let marzneshin = args
        .marzneshin
        .clone()
        .unwrap_or_else(|| exe_dir.join("marzneshin"));
    let marzneshin = marzneshin.is_file().then_some(marzneshin).ok_or_else(|| {
        "marzneshin binary missing: build it with `cargo build --release -p service` \
         (or drop --no-build)"
            .to_owned()
    });
    let relay = exe_dir.join("plain_relay");
    let relay = relay.is_file().then_some(relay).ok_or_else(|| {
        "plain_relay binary missing: build it with \
         `cargo build --release -p benches --bin plain_relay` (or drop --no-build)"
            .to_owned()
    });
    // Peers are looked up where the interop tests look: $MARZNESHIN_PEERS_DIR/bin,
    // ~/.cache/marzneshin/peers/bin, then PATH.
    let peers: Vec<(Peer, Result<PathBuf, String>)> = Peer::ALL
        .into_iter()
        .filter(|p| shadowsocks && wanted(p.name()))
        .map(|p| {
            let found = peer(p.binary())
                .ok_or_else(|| format!("{} missing: {}", p.binary(), p.install_hint()));
            (p, found)
        })
        .collect();
    let hy2_peers: Vec<(Hy2Peer, Result<PathBuf, String>)> = Hy2Peer::ALL
        .into_iter()
        .filter(|p| measures("hysteria2") && wanted(p.name()))
        .map(|p| {
            let found = peer(p.binary())
                .ok_or_else(|| format!("{} missing: {}", p.binary(), p.install_hint()));
            (p, found)
        })
        .collect();
    // Every Hysteria2 server is driven through this one client, whatever servers are chosen.
    let hy2_client = measures("hysteria2").then(|| {
        peer("sing-box").ok_or_else(|| {
            "sing-box (the Hysteria2 client) missing: run tests/install-sing-box.sh".to_owned()
        })
    });
    let mut binaries = Vec::new();
    let ours_and_floor = [("marzneshin", &marzneshin), ("plain_relay", &relay)];
    let listed: Vec<(&str, &Result<PathBuf, String>)> = ours_and_floor
        .into_iter()
        // The floor relay serves the Shadowsocks comparison only.
        .filter(|(name, _)| shadowsocks || *name != "plain_relay")
        .chain(peers.iter().map(|(p, r)| (p.binary(), r)))
        .chain(hy2_peers.iter().map(|(p, r)| (p.binary(), r)))
        .chain(hy2_client.iter().map(|r| ("sing-box", r)))
        .collect();
    for (i, &(name, r)) in listed.iter().enumerate() {
        // sing-box may serve both protocols and be the client too: list it once.
        if listed[..i].iter().any(|(n, _)| *n == name) {
            continue;
        }
        match r {
            Ok(p) => eprintln!("{name}: {}", p.display()),
            Err(why) => eprintln!("WARNING: {why}"),
        }
        binaries.push(Binary {
            name: name.to_owned(),
            path: r
                .as_ref()
                .map(|p| p.display().to_string())
                .map_err(Clone::clone),
            version: r.as_ref().ok().and_then(|p| version(name, p)),
        });
    }

    // The floor: a plain relay in front of the target.
    let floor = if !shadowsocks {
        ServerReport::skipped("floor (plain relay)", "shadowsocks not in --protocols")
    } else if !wanted("floor") {
        ServerReport::skipped("floor (plain relay)", "not in --servers")
    } else {
        let port = free_port()?;
        let listen: SocketAddr = ([127, 0, 0, 1], port).into();
        let relay_args = vec![listen.to_string(), target.addr().to_string()];
        let endpoint = Endpoint::Plain { server: listen };
        // Two threads per connection: thousands of idle connections would measure thread
        // stacks, and 2 x 10 000 threads can exhaust the machine's process ids.
        let floor_plan = plan.without_idle("the floor relay is thread-per-connection");
        run_server(
            "floor (plain relay)",
            &relay,
            &relay_args,
            &Reach::Tcp(listen),
            &endpoint,
            &floor_plan,
            &args.out.join("plain_relay.log"),
        )
    };

    let mut reports = Vec::new();
    // Peers left out because they do not implement a method, or are optional and not installed
    // (not failures under --require-all).
    let mut unsupported = Vec::new();
    for method in methods {
        let password = password(method);
        eprintln!("[{method}] cipher cost in process");
        let chunk = method.max_chunk_payload().min(16 * 1024);
        let cipher = Outcome::from_result(
            workload::cipher_cost(method, &password, plan.cipher_bytes, chunk).map(|cpu| {
                let per_gib = cpu.as_secs_f64() / (plan.cipher_bytes as f64 / GIB);
                CipherCost {
                    bytes: plan.cipher_bytes,
                    chunk,
                    seal_open_cpu_s_per_gib: per_gib,
                    one_pass_cpu_s_per_gib: per_gib / 2.0,
                }
            }),
        );
        let key = Key::from_password(method, &password)?;
        let endpoint = |listen: SocketAddr| Endpoint::Shadowsocks {
            server: listen,
            method,
            key: key.clone(),
            target: target.addr(),
        };
        let mut peer_reports = Vec::new();
        for (p, program) in &peers {
            let name = format!("{} {method}", p.name());
            if let Err(why) = p.supports(method) {
                unsupported.push(name.clone());
                peer_reports.push(ServerReport::unavailable(&name, "(not run)".into(), why));
                continue;
            }
            let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            let dir = std::fs::canonicalize(&args.out)?;
            let peer_args = p.args(listen, method, &password, &dir)?;
            peer_reports.push(run_server(
                &name,
                program,
                &peer_args,
                &Reach::Tcp(listen),
                &endpoint(listen),
                &plan,
                &args.out.join(format!("{}-{method}.log", p.name())),
            ));
        }
        let ours_report = if !wanted("marzneshin") {
            ServerReport::skipped(&format!("marzneshin {method}"), "not in --servers")
        } else {
            let port = free_port()?;
            let listen: SocketAddr = ([127, 0, 0, 1], port).into();
            let config = serde_json::json!({
                "workers": 1,
                "outbound": { "allow_loopback": true },
                "inbounds": [{
                    "tag": "bench",
                    "listen": listen.to_string(),
                    "protocol": "shadowsocks",
                    "settings": {
                        "method": method.name(),
                        "users": [{ "name": "bench", "password": password }],
                    },
                }],
            });
            let config_path =
                std::fs::canonicalize(&args.out)?.join(format!("marzneshin-{method}.json"));
            std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
            let our_args = vec![
                "engine".to_owned(),
                "run".to_owned(),
                "--config".to_owned(),
                config_path.display().to_string(),
                "--allow-loopback".to_owned(),
            ];
            run_server(
                &format!("marzneshin {method}"),
                &marzneshin,
                &our_args,
                &Reach::Tcp(listen),
                &endpoint(listen),
                &plan,
                &args.out.join(format!("marzneshin-{method}.log")),
            )
        };
        let targets = check_targets(&floor, &cipher, &ours_report, &peer_reports, plan.streams);
        reports.push(MethodReport {
            method: method.name().to_owned(),
            cipher,
            marzneshin: ours_report,
            peers: peer_reports,
            targets,
        });
    }

    let hysteria2 = match hy2_client {
        None => None,
        Some(client) => Some(run_hysteria2(
            &args,
            &plan,
            target.addr(),
            &client,
            &hy2_peers,
            wanted("marzneshin").then_some(&marzneshin),
            &mut unsupported,
        )?),
    };

    let report = Report {
        started_at,
        mode: if args.quick { "quick" } else { "full" }.into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        revision: revision(),
        machine,
        binaries,
        bytes_per_run: plan.bytes,
        parallel_streams: plan.streams,
        repeats: plan.repeat,
        floor,
        methods: reports,
        hysteria2,
        total_wall_s: started.elapsed().as_secs_f64(),
    };
    let md = report.markdown();
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(args.out.join("results.md"), &md)?;
    std::fs::write(args.out.join("results.svg"), benches::plot::svg(&report))?;
    println!("{md}");
    eprintln!(
        "results written to {} (results.json, results.md, results.svg)",
        args.out.display()
    );
    let failures = report.servers().map(|r| r.failures().len()).sum::<usize>();
    let absent: Vec<&str> = report
        .servers()
        .filter(|r| r.unavailable.is_some() && !unsupported.contains(&r.name))
        .map(|r| r.name.as_str())
        .collect();
    if args.require_all && !absent.is_empty() {
        eprintln!(
            "--require-all: these servers did not run: {}",
            absent.join(", ")
        );
        return Ok(false);
    }
    Ok(failures == 0)
}

/// The password of the one Hysteria2 user every server has.
const HY2_PASSWORD: &str = "side-by-side-hysteria2-password";

/// Runs the Hysteria2 servers side by side: the peers, then ours, each driven through its own
/// instance of the same sing-box Hysteria2 client (same binary, same configuration but for the
/// server's port), pinned to the load generator's CPU.
fn run_hysteria2(
    args: &Args,
    plan: &Plan,
    target: SocketAddr,
    client: &Result<PathBuf, String>,
    peers: &[(Hy2Peer, Result<PathBuf, String>)],
    marzneshin: Option<&Result<PathBuf, String>>,
    excused: &mut Vec<String>,
) -> Result<Hysteria2Report> {
    let dir = std::fs::canonicalize(&args.out)?;
    // One certificate for every server, so that none pays for a different key type.
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let cert = dir.join("hysteria2-cert.pem");
    let key = dir.join("hysteria2-key.pem");
    std::fs::write(&cert, generated.cert.pem())?;
    std::fs::write(&key, generated.key_pair.serialize_pem())?;
    let tls = TlsFiles { cert, key };
    // A Hysteria2 stream is not a TCP connection to the server: opening ten thousand of them
    // measures the QUIC stream limits of one client connection, not memory per connection.
    let plan = plan.without_idle("Hysteria2 connections are streams of one QUIC connection");
    let client_args = |server: SocketAddr, socks: SocketAddr, name: &str| -> Result<Vec<String>> {
        let config = serde_json::json!({
            "log": { "level": "warn" },
            "inbounds": [{
                "type": "socks",
                "listen": socks.ip().to_string(),
                "listen_port": socks.port(),
            }],
            "outbounds": [{
                "type": "hysteria2",
                "server": server.ip().to_string(),
                "server_port": server.port(),
                "password": HY2_PASSWORD,
                "tls": {
                    "enabled": true,
                    "server_name": "localhost",
                    "insecure": true,
                    "alpn": ["h3"],
                },
            }],
        });
        let path = dir.join(format!("hysteria2-client-{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        Ok(vec!["run".into(), "-c".into(), path.display().to_string()])
    };
    let measure =
        |name: &str, program: &Result<PathBuf, String>, server_args: Vec<String>, listen| {
            let client_program = match client {
                Ok(p) => p.clone(),
                Err(why) => {
                    return Ok(ServerReport::unavailable(
                        name,
                        "(not run)".into(),
                        why.clone(),
                    ));
                }
            };
            let socks: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            let short = name.split(' ').next().unwrap_or(name);
            let proxy = ProxyClient {
                program: client_program,
                args: client_args(listen, socks, short)?,
                socks,
                log: args.out.join(format!("hysteria2-client-{short}.log")),
            };
            let endpoint = Endpoint::Socks5 {
                proxy: socks,
                target,
            };
            Ok::<_, anyhow::Error>(run_server(
                name,
                program,
                &server_args,
                &Reach::Udp {
                    listen,
                    client: &proxy,
                },
                &endpoint,
                &plan,
                &args.out.join(format!("{short}-hysteria2.log")),
            ))
        };
    let mut peer_reports = Vec::new();
    for (p, program) in peers {
        let name = format!("{} hysteria2", p.name());
        if let (Hy2Peer::Shoes, Err(_)) = (p, program) {
            // Optional: named in the output, not a failure under --require-all.
            excused.push(name.clone());
        }
        let listen: SocketAddr = ([127, 0, 0, 1], free_udp_port()?).into();
        let server_args = p.args(listen, &tls, &dir)?;
        peer_reports.push(measure(&name, program, server_args, listen)?);
    }
    let name = "marzneshin hysteria2";
    let ours = match marzneshin {
        None => ServerReport::skipped(name, "not in --servers"),
        Some(program) => {
            let listen: SocketAddr = ([127, 0, 0, 1], free_udp_port()?).into();
            let config = serde_json::json!({
                "workers": 1,
                "outbound": { "allow_loopback": true },
                "inbounds": [{
                    "tag": "bench",
                    "listen": listen.to_string(),
                    "network": ["udp"],
                    "protocol": "hysteria2",
                    "settings": {
                        "users": [{ "name": "bench", "password": HY2_PASSWORD }],
                    },
                    "tls": {
                        "certificate": tls.cert.display().to_string(),
                        "key": tls.key.display().to_string(),
                    },
                }],
            });
            let config_path = dir.join("marzneshin-hysteria2.json");
            std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
            let our_args = vec![
                "engine".to_owned(),
                "run".to_owned(),
                "--config".to_owned(),
                config_path.display().to_string(),
                "--allow-loopback".to_owned(),
            ];
            measure(name, program, our_args, listen)?
        }
    };
    let client = match client {
        Ok(p) => format!(
            "taskset -c {CLIENT_CPU} {} run -c hysteria2-client-SERVER.json (socks inbound, \
             hysteria2 outbound, no declared bandwidth)",
            p.display()
        ),
        Err(why) => why.clone(),
    };
    Ok(Hysteria2Report {
        client,
        targets: check_peer_targets(&ours, &peer_reports, plan.streams),
        marzneshin: ours,
        peers: peer_reports,
    })
}

/// The certificate and key every Hysteria2 server is given.
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// A peer Hysteria2 server, with its usual configuration and one user.
#[derive(Clone, Copy, Debug)]
enum Hy2Peer {
    /// sing-box's `hysteria2` inbound.
    SingBox,
    /// shoes (optional: not every machine has it built).
    Shoes,
}

impl Hy2Peer {
    const ALL: [Hy2Peer; 2] = [Hy2Peer::SingBox, Hy2Peer::Shoes];

    fn name(self) -> &'static str {
        match self {
            Hy2Peer::SingBox => "sing-box",
            Hy2Peer::Shoes => "shoes",
        }
    }

    fn from_name(name: &str) -> Option<Hy2Peer> {
        Hy2Peer::ALL.into_iter().find(|p| p.name() == name)
    }

    fn binary(self) -> &'static str {
        self.name()
    }

    fn install_hint(self) -> &'static str {
        match self {
            Hy2Peer::SingBox => "run tests/install-sing-box.sh",
            Hy2Peer::Shoes => {
                "optional; `cargo install shoes` into ~/.cache/marzneshin/peers/bin or PATH"
            }
        }
    }

    /// Command-line arguments, writing the config file under `dir`.
    fn args(self, listen: SocketAddr, tls: &TlsFiles, dir: &Path) -> Result<Vec<String>> {
        Ok(match self {
            Hy2Peer::SingBox => {
                let path = dir.join("sing-box-hysteria2.json");
                let config = serde_json::json!({
                    "log": { "level": "warn" },
                    "inbounds": [{
                        "type": "hysteria2",
                        "listen": listen.ip().to_string(),
                        "listen_port": listen.port(),
                        "users": [{ "name": "bench", "password": HY2_PASSWORD }],
                        "tls": {
                            "enabled": true,
                            "alpn": ["h3"],
                            "certificate_path": tls.cert.display().to_string(),
                            "key_path": tls.key.display().to_string(),
                        },
                    }],
                    "outbounds": [{ "type": "direct" }],
                });
                std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
                vec!["run".into(), "-c".into(), path.display().to_string()]
            }
            Hy2Peer::Shoes => {
                // shoes reads YAML, of which JSON is a subset.
                let path = dir.join("shoes-hysteria2.yaml");
                let config = serde_json::json!([{
                    "address": listen.to_string(),
                    "transport": "quic",
                    "quic_settings": {
                        "cert": tls.cert.display().to_string(),
                        "key": tls.key.display().to_string(),
                        "alpn_protocols": ["h3"],
                    },
                    "protocol": {
                        "type": "hysteria2",
                        "password": HY2_PASSWORD,
                        "udp_enabled": true,
                    },
                }]);
                std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
                vec![
                    "--threads".into(),
                    "1".into(),
                    "--no-reload".into(),
                    path.display().to_string(),
                ]
            }
        })
    }
}

/// Builds the engine binary and the floor relay (two invocations, so that neither package's
/// dependency features change the other's build).
fn build() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for args in [
        &["build", "--release", "-p", "service"][..],
        &[
            "build",
            "--release",
            "-p",
            "benches",
            "--bin",
            "plain_relay",
        ][..],
    ] {
        eprintln!("running: cargo {}", args.join(" "));
        let mut cmd = Command::new(&cargo);
        // `cargo run` describes this package to us in CARGO_PKG_*, CARGO_MANIFEST_DIR, ...;
        // build scripts (ring's, through cc) rerun when those change, so passing them on would
        // rebuild ring and everything above it here and again in the next plain `cargo build`.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || name.starts_with("CARGO_BIN_")
                || ["CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "OUT_DIR"].contains(&&*name)
            {
                cmd.env_remove(&*name);
            }
        }
        let status = cmd
            .args(args)
            .current_dir(&root)
            .status()
            .context("running cargo")?;
        if !status.success() {
            bail!("`cargo {}` failed: {status}", args.join(" "));
        }
    }
    Ok(())
}

/// What `PROGRAM --version` prints (first line), when it has such an option.
fn version(name: &str, program: &Path) -> Option<String> {
    let arg = match name {
        "plain_relay" => return None,
        // shadowsocks-libev prints its version at the top of its help.
        "ss-server" => "-h",
        "sing-box" => "version",
        _ => "--version",
    };
    let out = Command::new(program)
        .arg(arg)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// `git describe`-like revision of the workspace being measured.
fn revision() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&root)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    match git(&[
        "status",
        "--porcelain",
        "--",
        "engine",
        "service",
        "benches",
    ]) {
        Some(s) if s.is_empty() => head,
        _ => format!("{head}-dirty"),
    }
}

/// The password (AEAD 2017) or base64 PSK (2022) every server is configured with.
fn password(method: Method) -> String {
    if method.is_2022() {
        let raw: Vec<u8> = (0..method.key_len() as u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        base64::engine::general_purpose::STANDARD.encode(raw)
    } else {
        format!("side-by-side-{}-password", method.name())
    }
}

/// A peer Shadowsocks server the harness runs next to ours, each with its usual configuration
/// and nothing tuned beyond what its documentation recommends for a single core.
#[derive(Clone, Copy, Debug)]
enum Peer {
    /// shadowsocks-rust.
    SsRust,
    /// shadowsocks-libev.
    SsLibev,
    /// sing-box.
    SingBox,
    /// v2ray 4.
    V2ray,
}

impl Peer {
    const ALL: [Peer; 4] = [Peer::SsRust, Peer::SsLibev, Peer::SingBox, Peer::V2ray];

    /// The name `--servers` and the report use.
    fn name(self) -> &'static str {
        match self {
            Peer::SsRust => "ssserver",
            Peer::SsLibev => "ss-server",
            Peer::SingBox => "sing-box",
            Peer::V2ray => "v2ray",
        }
    }

    fn from_name(name: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == name)
    }

    fn binary(self) -> &'static str {
        self.name()
    }

    fn install_hint(self) -> &'static str {
        match self {
            Peer::SsRust => {
                "install shadowsocks-rust (`cargo install shadowsocks-rust`) into \
                 ~/.cache/marzneshin/peers/bin or PATH"
            }
            Peer::SsLibev => "install Debian's shadowsocks-libev",
            Peer::SingBox => "run tests/install-sing-box.sh",
            Peer::V2ray => "install Debian's v2ray",
        }
    }

    /// Whether this peer implements the method.
    fn supports(self, method: Method) -> Result<(), String> {
        match self {
            Peer::SsLibev | Peer::V2ray if method.is_2022() => Err(format!(
                "{} does not implement Shadowsocks 2022 ({method})",
                self.name()
            )),
            _ => Ok(()),
        }
    }

    /// Command-line arguments, writing a config file under `dir` where the peer needs one.
    fn args(
        self,
        listen: SocketAddr,
        method: Method,
        password: &str,
        dir: &Path,
    ) -> Result<Vec<String>> {
        let config = |value: serde_json::Value| -> Result<String> {
            let path = dir.join(format!("{}-{method}.json", self.name()));
            std::fs::write(&path, serde_json::to_vec_pretty(&value)?)?;
            Ok(path.display().to_string())
        };
        let args: Vec<String> = match self {
            Peer::SsRust => vec![
                "-s".into(),
                listen.to_string(),
                "-m".into(),
                method.name().into(),
                "-k".into(),
                password.into(),
                "-U".into(),
                "--single-threaded".into(),
                "--tcp-no-delay".into(),
            ],
            Peer::SsLibev => vec![
                "-s".into(),
                listen.ip().to_string(),
                "-p".into(),
                listen.port().to_string(),
                "-m".into(),
                method.name().into(),
                "-k".into(),
                password.into(),
                "--no-delay".into(),
            ],
            Peer::SingBox => vec![
                "run".into(),
                "-c".into(),
                config(serde_json::json!({
                    "log": { "level": "warn" },
                    "inbounds": [{
                        "type": "shadowsocks",
                        "listen": listen.ip().to_string(),
                        "listen_port": listen.port(),
                        "method": method.name(),
                        "password": password,
                    }],
                    "outbounds": [{ "type": "direct" }],
                }))?,
            ],
            Peer::V2ray => vec![
                "-config".into(),
                config(serde_json::json!({
                    "log": { "loglevel": "warning" },
                    "inbounds": [{
                        "listen": listen.ip().to_string(),
                        "port": listen.port(),
                        "protocol": "shadowsocks",
                        "settings": {
                            "method": method.name(),
                            "password": password,
                            "network": "tcp",
                        },
                    }],
                    "outbounds": [{ "protocol": "freedom" }],
                }))?,
            ],
        };
        Ok(args)
    }
}

fn which(name: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not found in PATH"))
}

/// A peer binary: `$MARZNESHIN_PEERS_DIR/bin`, `~/.cache/marzneshin/peers/bin`, then PATH (the
/// same places the interop tests look).
fn peer(name: &str) -> Option<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("MARZNESHIN_PEERS_DIR") {
        dirs.push(PathBuf::from(d).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cache/marzneshin/peers/bin"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Open-file limit for the idle connections: each holds two sockets in this process (client
/// and target) and two in the server, which inherits the limit. Raises the limit when allowed
/// (the hard limit needs CAP_SYS_RESOURCE); otherwise returns how many idle connections fit.
fn fit_idle_connections(want: usize) -> Result<usize> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    const SPARE: u64 = 1024;
    let need = 2 * want as u64 + SPARE;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= need || setrlimit(Resource::RLIMIT_NOFILE, need, hard.max(need)).is_ok() {
        return Ok(want);
    }
    // Settle for the hard limit we have.
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    let fit = (hard.saturating_sub(SPARE) / 2) as usize;
    eprintln!(
        "WARNING: the open-file limit is {hard} and cannot be raised here; measuring {fit} idle \
         connections instead of {want}"
    );
    Ok(fit.min(want))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How the harness reaches a server.
enum Reach<'a> {
    /// Directly, over TCP: the server listens on this address.
    Tcp(SocketAddr),
    /// Through a proxy client: the server listens on this UDP address, and the client,
    /// started after the server, talks to it.
    Udp {
        listen: SocketAddr,
        client: &'a ProxyClient,
    },
}

impl Reach<'_> {
    /// Whether the server has bound its port yet.
    fn listening(&self) -> bool {
        match self {
            Reach::Tcp(addr) => {
                TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
            }
            // Binding the same UDP address fails while the server holds it.
            Reach::Udp { listen, .. } => UdpSocket::bind(listen).is_err(),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Reach::Tcp(addr) => *addr,
            Reach::Udp { listen, .. } => *listen,
        }
    }
}

/// A proxy client process (the Hysteria2 client) that the load generator connects to over
/// SOCKS5, pinned with the load generator to the client CPU.
struct ProxyClient {
    program: PathBuf,
    args: Vec<String>,
    /// Where it accepts SOCKS5.
    socks: SocketAddr,
    log: PathBuf,
}

/// A running [`ProxyClient`]; killed on drop.
struct RunningClient(Child);

impl ProxyClient {
    fn start(&self) -> Result<RunningClient> {
        let log =
            File::create(&self.log).with_context(|| format!("creating {}", self.log.display()))?;
        let child = Command::new("taskset")
            .arg("-c")
            .arg(CLIENT_CPU.to_string())
            .arg(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        let mut client = RunningClient(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = client.0.try_wait()? {
                let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!(
                    "client exited at start ({status}); log {}:\n{tail}",
                    self.log.display()
                );
            }
            if TcpStream::connect_timeout(&self.socks, Duration::from_millis(200)).is_ok() {
                return Ok(client);
            }
            if Instant::now() > deadline {
                bail!("the client does not listen on {} after 20 s", self.socks);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn command(&self) -> String {
        format!(
            "taskset -c {CLIENT_CPU} {} {}",
            self.program.display(),
            self.args.join(" ")
        )
    }
}

impl Drop for RunningClient {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server process pinned to the server CPU; killed on drop.
struct RunningServer {
    child: Child,
    probe: ProcessProbe,
}

impl RunningServer {
    fn start(program: &Path, args: &[String], reach: &Reach, log: &Path) -> Result<Self> {
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg(SERVER_CPU.to_string())
            .arg(program)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                bail!("exited at start ({status}); log {}:\n{tail}", log.display());
            }
            if reach.listening() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("nothing listens on {} after 20 s", reach.addr());
            }
            thread::sleep(Duration::from_millis(50));
        }
        let probe = match ProcessProbe::new(child.id()) {
            Ok(p) => p,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e.into());
            }
        };
        let server = RunningServer { child, probe };
        server.check_pinning()?;
        Ok(server)
    }

    /// Every thread of the server must be allowed on the server CPU only.
    fn check_pinning(&self) -> Result<()> {
        let want = SERVER_CPU.to_string();
        let tasks = format!("/proc/{}/task", self.child.id());
        for task in std::fs::read_dir(&tasks)? {
            let status = std::fs::read_to_string(task?.path().join("status"))?;
            let cpus = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(str::trim)
                .unwrap_or_default();
            if cpus != want {
                bail!("a server thread may run on CPUs {cpus}, not only {want}");
            }
        }
        Ok(())
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn throughput(m: Measured, runs: &[Measured], bytes: u64, streams: usize) -> Throughput {
    let per_gib = |m: &Measured| m.cpu.as_secs_f64() / (bytes as f64 / GIB);
    Throughput {
        bytes,
        streams,
        wall_s: m.wall.as_secs_f64(),
        server_cpu_s: m.cpu.as_secs_f64(),
        server_cpu_ticks: m.ticks,
        cpu_s_per_gib: per_gib(&m),
        runs_cpu_s_per_gib: runs.iter().map(per_gib).collect(),
        mb_per_s: bytes as f64 / 1e6 / m.wall.as_secs_f64(),
    }
}

/// Warns when the exact CPU clock and `/proc/PID/stat` disagree by more than rounding.
fn cross_check(name: &str, m: &Measured) {
    let hz = ticks_per_second() as f64;
    let ticks_s = m.ticks as f64 / hz;
    let exact = m.cpu.as_secs_f64();
    if (ticks_s - exact).abs() > 2.0 / hz + 0.05 * exact {
        eprintln!(
            "WARNING: {name}: CPU clock says {exact:.3} s, /proc/PID/stat says {ticks_s:.3} s"
        );
    }
}

/// Starts one server and runs every scenario against it.
fn run_server(
    name: &str,
    program: &Result<PathBuf, String>,
    args: &[String],
    reach: &Reach,
    endpoint: &Endpoint,
    plan: &Plan,
    log: &Path,
) -> ServerReport {
    let program = match program {
        Ok(p) => p,
        Err(why) => {
            return ServerReport::unavailable(name, "(not run)".into(), why.clone());
        }
    };
    let command = format!(
        "taskset -c {SERVER_CPU} {} {}",
        program.display(),
        args.join(" ")
    );
    eprintln!("[{name}] starting: {command}");
    let server = match RunningServer::start(program, args, reach, log) {
        Ok(s) => s,
        Err(e) => return ServerReport::unavailable(name, command, format!("{e:#}")),
    };
    // The client in front of the server, if any: started once the server listens, for the
    // server's whole run.
    let _client = match reach {
        Reach::Tcp(_) => None,
        Reach::Udp { client, .. } => {
            eprintln!("[{name}] client: {}", client.command());
            match client.start() {
                Ok(c) => Some(c),
                Err(e) => {
                    return ServerReport::unavailable(name, command, format!("client: {e:#}"))
                }
            }
        }
    };
    let probe = &server.probe;
    let say = |what: &str, figure: &str| eprintln!("[{name}] {what}: {figure}");

    let idle = if let Some(why) = &plan.idle_skipped {
        Outcome::skipped(why)
    } else if !plan.runs("idle") {
        Outcome::skipped("not in --only")
    } else {
        let idle = Outcome::from_result((|| {
            thread::sleep(Duration::from_millis(200));
            let before = probe.memory()?.rss_kib;
            let conns = workload::idle_connections(endpoint, plan.idle)?;
            thread::sleep(Duration::from_millis(300));
            let after = probe.memory()?.rss_kib;
            drop(conns);
            Ok(IdleMemory {
                connections: plan.idle,
                rss_before_kib: before,
                rss_after_kib: after,
                kib_per_connection: after.saturating_sub(before) as f64 / plan.idle as f64,
            })
        })());
        match &idle {
            Outcome::Measured(i) => say(
                "idle connections",
                &format!("{:.1} KiB each", i.kib_per_connection),
            ),
            _ => say("idle connections", "FAILED"),
        }
        // Let the idle connections close before measuring anything else.
        thread::sleep(Duration::from_millis(500));
        idle
    };

    let round_trip = if !plan.runs("rtt") {
        Outcome::skipped("not in --only")
    } else {
        let r = workload::round_trips(endpoint, plan.round_trips, 64).map(|mut times| {
            let p50 = workload::quantile(&mut times, 0.5);
            let p99 = workload::quantile(&mut times, 0.99);
            RoundTrip {
                messages: times.len(),
                size: 64,
                p50_us: p50.as_secs_f64() * 1e6,
                p99_us: p99.as_secs_f64() * 1e6,
            }
        });
        match &r {
            Ok(r) => say(
                "round trip",
                &format!("p50 {:.1} us, p99 {:.1} us", r.p50_us, r.p99_us),
            ),
            Err(e) => say("round trip", &format!("FAILED: {e:#}")),
        }
        Outcome::from_result(r)
    };

    // Runs a measured scenario `plan.repeat` times; the run with the median CPU is kept.
    let repeated = |scenario: &dyn Fn() -> Result<()>| -> Result<(Measured, Vec<Measured>)> {
        let mut runs = Vec::with_capacity(plan.repeat);
        for _ in 0..plan.repeat {
            let m = workload::measure(probe, scenario)?;
            cross_check(name, &m);
            runs.push(m);
        }
        let mut sorted = runs.clone();
        sorted.sort_by_key(|m| m.cpu);
        Ok((sorted[(sorted.len() - 1) / 2], runs))
    };

    let connections = if !plan.runs("connections") {
        Outcome::skipped("not in --only")
    } else {
        let n = plan.churn;
        let per = |m: &Measured| m.cpu.as_secs_f64() * 1e6 / n as f64;
        let r =
            repeated(&|| workload::connection_churn(endpoint, n)).map(|(m, runs)| ConnectionCost {
                connections: n,
                server_cpu_s: m.cpu.as_secs_f64(),
                server_cpu_ticks: m.ticks,
                us_per_connection: per(&m),
                runs_us_per_connection: runs.iter().map(per).collect(),
                connections_per_s: n as f64 / m.wall.as_secs_f64(),
            });
        match &r {
            Ok(c) => say(
                "new connections",
                &format!(
                    "{:.1} us CPU each {:.1?}",
                    c.us_per_connection, c.runs_us_per_connection
                ),
            ),
            Err(e) => say("new connections", &format!("FAILED: {e:#}")),
        }
        Outcome::from_result(r)
    };

    let transfer = |what: &str, streams: usize, f: &dyn Fn() -> Result<()>| {
        if !plan.runs(what) {
            return Outcome::skipped("not in --only");
        }
        let r = repeated(f).map(|(m, runs)| throughput(m, &runs, plan.bytes, streams));
        match &r {
            Ok(t) => say(
                what,
                &format!(
                    "{:.3} CPU-s/GiB {:.3?}, {:.0} MB/s",
                    t.cpu_s_per_gib, t.runs_cpu_s_per_gib, t.mb_per_s
                ),
            ),
            Err(e) => say(what, &format!("FAILED: {e:#}")),
        }
        Outcome::from_result(r)
    };
    let upload = transfer("upload", 1, &|| workload::upload(endpoint, plan.bytes));
    let download = transfer("download", 1, &|| workload::download(endpoint, plan.bytes));
    let parallel = transfer("parallel", plan.streams, &|| {
        workload::parallel(endpoint, plan.streams, plan.bytes)
    });
    let peak_rss_kib = Outcome::from_result(
        probe
            .memory()
            .map(|m| m.peak_kib)
            .map_err(anyhow::Error::from),
    );
    ServerReport {
        name: name.to_owned(),
        command,
        unavailable: None,
        idle,
        round_trip,
        connections,
        upload,
        download,
        parallel,
        peak_rss_kib,
    }
}

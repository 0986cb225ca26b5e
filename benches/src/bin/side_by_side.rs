//! Side-by-side benchmark: our engine against the peer Shadowsocks servers (shadowsocks-rust's
//! `ssserver`, shadowsocks-libev's `ss-server`, sing-box, v2ray) and a plain relay; against the
//! peer VLESS and VMess servers (sing-box, v2ray, shoes) and Trojan servers (the same and
//! trojan-gfw); and against the peer Hysteria2 servers (sing-box, shoes).
//!
//! ```text
//!   CPU 1                                     CPU 0                 CPU 1
//!   load generator (proto client codecs) ──► server under test ──► target (sink/source/echo)
//!   ◄─────────────────────────────────────── (one at a time)  ◄───
//!
//!   VLESS, VMess, Trojan, Hysteria2 ("proxied"): through one sing-box client per protocol
//!   load generator ─SOCKS5─► sing-box client ─TCP, TLS or QUIC─► server under test ─► target
//!   (CPU 1)                  (CPU 1, the same for every server)  (CPU 0)              (CPU 1)
//! ```
//!
//! A table's servers (the floor, the peers, ours) are all started first and measured one at a
//! time, in turns: each scenario runs once on every server before it runs again on any, so a
//! drift of the machine during the run touches them alike.
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
    check_peer_targets, check_targets, short_name, Binary, CipherCost, ConnectionCost, IdleMemory,
    Machine, MethodReport, Outcome, ProtocolReport, Report, RoundTrip, ServerReport, Throughput,
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
/// The plain relay's name in the tables.
const FLOOR: &str = "floor (plain relay)";

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
    /// Protocols to measure (comma-separated: shadowsocks, vless, vmess, trojan, hysteria2).
    #[arg(long, value_delimiter = ',', default_values_t = PROTOCOLS.map(str::to_owned))]
    protocols: Vec<String>,
    /// Servers to run (comma-separated: floor, marzneshin, ssserver, ss-server, sing-box,
    /// v2ray, shoes, trojan-gfw). The floor is needed for the floor + cipher ratios; each peer
    /// serves the protocols `Peer::serves` lists (sing-box all of them).
    #[arg(long, value_delimiter = ',', default_values_t = ["floor", "ssserver", "ss-server", "sing-box", "v2ray", "shoes", "trojan-gfw", "marzneshin"].map(str::to_owned))]
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

const PROTOCOLS: [&str; 6] = [
    "shadowsocks",
    "vless",
    "vless-tls",
    "vmess",
    "trojan",
    "hysteria2",
];

const SCENARIOS: [&str; 6] = [
    "idle",
    "rtt",
    "connections",
    "upload",
    "download",
    "parallel",
];

/// Sizes of each scenario, and which ones run.
#[derive(Clone)]
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
        if s != "floor" && s != "marzneshin" && Peer::from_name(s).is_none() {
            bail!(
                "unknown server {s:?}; expected floor, marzneshin or a peer: {}",
                Peer::ALL.map(Peer::name).join(", ")
            );
        }
    }
    let wanted = |server: &str| args.servers.iter().any(|s| s == server);
    let measures = |protocol: &str| args.protocols.iter().any(|p| p == protocol);
    let shadowsocks = measures("shadowsocks");
    let methods = if shadowsocks { methods } else { Vec::new() };
    // In the order of --protocols, each once.
    let mut proxied: Vec<Proxied> = Vec::new();
    for p in args.protocols.iter().filter_map(|p| Proxied::from_name(p)) {
        if !proxied.contains(&p) {
            proxied.push(p);
        }
    }
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
    // Every protocol but Hysteria2 runs the idle scenario (its connections are QUIC streams),
    // as many connections as the open-file limit allows (every server and client inherits it).
    let mut proxied_idle = plan.idle;
    if plan.runs("idle") {
        if proxied.iter().any(|p| !p.quic()) {
            proxied_idle = fit_idle_connections(plan.idle, PROXIED_FDS, "through a client")?;
        }
        if shadowsocks {
            plan.idle = fit_idle_connections(plan.idle, DIRECT_FDS, "Shadowsocks")?;
        }
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
    // Every peer that is wanted and serves a protocol being measured, looked up where the
    // interop tests look: $MARZNESHIN_PEERS_DIR/bin, ~/.cache/marzneshin/peers/bin, then PATH.
    let peers: Vec<(Peer, Result<PathBuf, String>)> = Peer::ALL
        .into_iter()
        .filter(|p| wanted(p.name()))
        .filter(|p| (shadowsocks && p.shadowsocks()) || proxied.iter().any(|&x| p.serves(x)))
        .map(|p| {
            let found = peer(p.binary())
                .ok_or_else(|| format!("{} missing: {}", p.binary(), p.install_hint()));
            (p, found)
        })
        .collect();
    // Every server of a proxied protocol is driven through this one client program, whatever
    // servers are chosen.
    let client = (!proxied.is_empty()).then(|| {
        peer("sing-box").ok_or_else(|| {
            "sing-box (the VLESS, VMess, Trojan and Hysteria2 client) missing: run \
             tests/install-sing-box.sh"
                .to_owned()
        })
    });
    let mut binaries = Vec::new();
    let ours_and_floor = [("marzneshin", &marzneshin), ("plain_relay", &relay)];
    let listed: Vec<(&str, &Result<PathBuf, String>)> = ours_and_floor
        .into_iter()
        // The floor relay serves the tables with floor columns only (not Hysteria2's).
        .filter(|(name, _)| {
            *name != "plain_relay" || shadowsocks || proxied.iter().any(|p| p.floor().is_some())
        })
        .chain(peers.iter().map(|(p, r)| (p.binary(), r)))
        .chain(client.iter().map(|r| ("sing-box", r)))
        .collect();
    for (i, &(name, r)) in listed.iter().enumerate() {
        // sing-box may serve and be the client too: list it once.
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

    // The floor, a plain relay in front of the target, is measured with the servers of every
    // table that has floor columns.
    let floor = |tag: &str| -> Result<Entry> {
        if !wanted("floor") {
            return Ok(Entry::Done(ServerReport::skipped(
                FLOOR,
                "not in --servers",
            )));
        }
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        Ok(Entry::Run(Contender {
            name: FLOOR.to_owned(),
            program: relay.clone(),
            args: vec![listen.to_string(), target.addr().to_string()],
            reach: Reach::direct(Listen::Tcp(listen)),
            endpoint: Endpoint::Plain { server: listen },
            log: args.out.join(format!("plain_relay-{tag}.log")),
            // Two threads per connection: thousands of idle connections would measure thread
            // stacks, and 2 x 10 000 threads can exhaust the machine's process ids.
            idle_skipped: Some("the floor relay is thread-per-connection".to_owned()),
        }))
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
            workload::cipher_cost(method, &password, plan.cipher_bytes, chunk)
                .map(|cpu| CipherCost::from_seal_open(plan.cipher_bytes, chunk, cpu)),
        );
        let key = Key::from_password(method, &password)?;
        let endpoint = |listen: SocketAddr| Endpoint::Shadowsocks {
            server: listen,
            method,
            key: key.clone(),
            target: target.addr(),
        };
        // The floor, the peers, then ours.
        let mut entries = vec![floor(method.name())?];
        for (p, program) in peers.iter().filter(|(p, _)| p.shadowsocks()) {
            let name = format!("{} {method}", p.name());
            if let Err(why) = p.supports(method) {
                unsupported.push(name.clone());
                entries.push(Entry::Done(ServerReport::unavailable(
                    &name,
                    "(not run)".into(),
                    why,
                )));
                continue;
            }
            let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            let dir = std::fs::canonicalize(&args.out)?;
            entries.push(Entry::Run(Contender {
                args: p.shadowsocks_args(listen, method, &password, &dir)?,
                name,
                program: program.clone(),
                reach: Reach::direct(Listen::Tcp(listen)),
                endpoint: endpoint(listen),
                log: args.out.join(format!("{}-{method}.log", p.name())),
                idle_skipped: None,
            }));
        }
        let ours_name = format!("marzneshin {method}");
        entries.push(if !wanted("marzneshin") {
            Entry::Done(ServerReport::skipped(&ours_name, "not in --servers"))
        } else {
            let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
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
            Entry::Run(Contender {
                name: ours_name,
                program: marzneshin.clone(),
                args: engine_args(&config, &config_path)?,
                reach: Reach::direct(Listen::Tcp(listen)),
                endpoint: endpoint(listen),
                log: args.out.join(format!("marzneshin-{method}.log")),
                idle_skipped: None,
            })
        });
        let mut measured = run_group(&plan, &entries);
        let ours_report = measured.pop().context("our report")?;
        let floor_report = measured.remove(0);
        let targets = check_targets(
            &floor_report,
            &cipher,
            &ours_report,
            &measured,
            plan.streams,
        );
        reports.push(MethodReport {
            method: method.name().to_owned(),
            cipher,
            floor: floor_report,
            marzneshin: ours_report,
            peers: measured,
            targets,
        });
    }

    let mut proxied_reports = Vec::new();
    if let Some(client) = &client {
        let dir = std::fs::canonicalize(&args.out)?;
        // One certificate for every TLS server, so that none pays for a different key type.
        let tls = if proxied.iter().any(|p| p.tls()) {
            Some(TlsFiles::generate(&dir)?)
        } else {
            None
        };
        let setup = ProxiedSetup {
            dir,
            plan: &plan,
            idle: proxied_idle,
            target: target.addr(),
            client,
            tls: tls.as_ref(),
        };
        for protocol in proxied {
            let peers: Vec<_> = peers.iter().filter(|(p, _)| p.serves(protocol)).collect();
            let floor = match protocol.floor() {
                Some(_) => Some(floor(protocol.name())?),
                None => None,
            };
            proxied_reports.push(setup.run(
                protocol,
                floor,
                &peers,
                wanted("marzneshin").then_some(&marzneshin),
                &mut unsupported,
            )?);
        }
    }

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
        methods: reports,
        proxied: proxied_reports,
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

/// The arguments that run our engine on `config`, written to `path`: one executor, and
/// `--allow-loopback` so that it may reach the target.
fn engine_args(config: &serde_json::Value, path: &Path) -> Result<Vec<String>> {
    std::fs::write(path, serde_json::to_vec_pretty(config)?)?;
    Ok(vec![
        "engine".to_owned(),
        "run".to_owned(),
        "--config".to_owned(),
        path.display().to_string(),
        "--allow-loopback".to_owned(),
    ])
}

/// The UUID of the one VLESS and VMess user every server has.
const USER_ID: &str = "5e7a2d1c-94b3-4f0e-8a6d-3c2b1f0e9d87";
/// The password of the one Trojan and Hysteria2 user every server has.
const USER_PASSWORD: &str = "side-by-side-password";

/// A protocol whose servers are all measured through the same sing-box client: a local SOCKS5
/// proxy, pinned with the load generator, that carries each connection to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proxied {
    /// VLESS over plain TCP, no flow.
    Vless,
    /// VLESS over TLS, no flow.
    VlessTls,
    /// VMess AEAD (alterId 0) over plain TCP, body security aes-128-gcm.
    Vmess,
    /// Trojan over TLS.
    Trojan,
    /// Hysteria2 (QUIC).
    Hysteria2,
}

impl Proxied {
    const ALL: [Proxied; 5] = [
        Proxied::Vless,
        Proxied::VlessTls,
        Proxied::Vmess,
        Proxied::Trojan,
        Proxied::Hysteria2,
    ];

    /// The name `--protocols`, file names and the report use.
    fn name(self) -> &'static str {
        match self {
            Proxied::Vless => "vless",
            Proxied::VlessTls => "vless-tls",
            Proxied::Vmess => "vmess",
            Proxied::Trojan => "trojan",
            Proxied::Hysteria2 => "hysteria2",
        }
    }

    fn from_name(name: &str) -> Option<Proxied> {
        Proxied::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The protocol's name in the engine's, sing-box's and v2ray's configurations.
    fn wire(self) -> &'static str {
        match self {
            Proxied::VlessTls => "vless",
            other => other.name(),
        }
    }

    /// What the floor's cipher column holds for it; `None` for Hysteria2, whose client, not a
    /// relay, sets the wire format, so it has no floor.
    fn floor(self) -> Option<FloorCipher> {
        match self {
            Proxied::Vless => Some(FloorCipher::Clear),
            // VMess chunks carry at most 16 KiB; TLS records at most 16 KiB of plaintext.
            Proxied::VlessTls | Proxied::Vmess | Proxied::Trojan => Some(FloorCipher::Aead {
                algorithm: &ring::aead::AES_128_GCM,
                chunk: 16 * 1024,
            }),
            Proxied::Hysteria2 => None,
        }
    }

    /// Whether it runs over QUIC (the server listens on UDP, and the load generator's
    /// connections are streams of one QUIC connection).
    fn quic(self) -> bool {
        self == Proxied::Hysteria2
    }

    /// Whether the servers need the certificate.
    fn tls(self) -> bool {
        matches!(
            self,
            Proxied::VlessTls | Proxied::Trojan | Proxied::Hysteria2
        )
    }

    /// How the servers are set up, for the table.
    fn setup(self) -> &'static str {
        match self {
            Proxied::Vless => "VLESS over plain TCP, no flow, one user",
            Proxied::VlessTls => {
                "VLESS over TLS (the same self-signed ECDSA P-256 certificate for every \
                 server), no flow, one user"
            }
            Proxied::Vmess => {
                "VMess AEAD (alterId 0) over plain TCP, body security aes-128-gcm, one user"
            }
            Proxied::Trojan => {
                "Trojan over TLS (the same self-signed ECDSA P-256 certificate for every \
                 server), one user"
            }
            Proxied::Hysteria2 => {
                "Hysteria2 over QUIC (ALPN h3, the same self-signed ECDSA P-256 certificate \
                 for every server), one user, no obfuscation, no declared bandwidth"
            }
        }
    }

    /// The sing-box client's outbound, but for the server's address.
    fn client_outbound(self) -> serde_json::Value {
        let tls = |alpn: Option<&str>| {
            let mut tls = serde_json::json!({
                "enabled": true,
                "server_name": "localhost",
                "insecure": true,
            });
            if let Some(alpn) = alpn {
                tls["alpn"] = serde_json::json!([alpn]);
            }
            tls
        };
        match self {
            Proxied::Vless => serde_json::json!({ "type": "vless", "uuid": USER_ID }),
            Proxied::VlessTls => serde_json::json!({
                "type": "vless",
                "uuid": USER_ID,
                "tls": tls(None),
            }),
            Proxied::Vmess => serde_json::json!({
                "type": "vmess",
                "uuid": USER_ID,
                "security": "aes-128-gcm",
                "alter_id": 0,
            }),
            Proxied::Trojan => serde_json::json!({
                "type": "trojan",
                "password": USER_PASSWORD,
                "tls": tls(None),
            }),
            // No up_mbps/down_mbps: no server uses Brutal.
            Proxied::Hysteria2 => serde_json::json!({
                "type": "hysteria2",
                "password": USER_PASSWORD,
                "tls": tls(Some("h3")),
            }),
        }
    }

    /// Our engine's inbound.
    fn our_inbound(self, listen: SocketAddr, tls: Option<&TlsFiles>) -> Result<serde_json::Value> {
        let settings = match self {
            Proxied::Vless | Proxied::VlessTls | Proxied::Vmess => {
                serde_json::json!({ "users": [{ "name": "bench", "id": USER_ID }] })
            }
            Proxied::Trojan | Proxied::Hysteria2 => {
                serde_json::json!({ "users": [{ "name": "bench", "password": USER_PASSWORD }] })
            }
        };
        let mut inbound = serde_json::json!({
            "tag": "bench",
            "listen": listen.to_string(),
            "network": [if self.quic() { "udp" } else { "tcp" }],
            "protocol": self.wire(),
            "settings": settings,
        });
        if self.tls() {
            let tls = tls.context("no certificate for a TLS inbound")?;
            inbound["tls"] = serde_json::json!({
                "certificate": tls.cert.display().to_string(),
                "key": tls.key.display().to_string(),
            });
        }
        Ok(inbound)
    }
}

/// The cipher part of a proxied protocol's floor.
#[derive(Clone, Copy)]
enum FloorCipher {
    /// The payload is carried in the clear (plain VLESS).
    Clear,
    /// The AEAD a server runs over the payload, in chunks of `chunk` bytes: VMess's body
    /// cipher, or the TLS record cipher the sing-box client negotiates (Go prefers
    /// AES-128-GCM on machines with AES instructions).
    Aead {
        algorithm: &'static ring::aead::Algorithm,
        chunk: usize,
    },
}

/// What every proxied protocol's run shares.
struct ProxiedSetup<'a> {
    /// The output directory (absolute): configs and logs.
    dir: PathBuf,
    plan: &'a Plan,
    /// Idle connections to open (over TCP), fitted to the open-file limit.
    idle: usize,
    target: SocketAddr,
    /// The sing-box binary every server is driven through, or why it is missing.
    client: &'a Result<PathBuf, String>,
    /// The certificate every TLS server is given.
    tls: Option<&'a TlsFiles>,
}

impl ProxiedSetup<'_> {
    /// Runs one protocol's servers side by side: the floor (if the protocol has one), the
    /// peers and ours, each peer and ours driven through its own instance of the same sing-box
    /// client (same binary, same configuration but for the server's port), pinned to the load
    /// generator's CPU.
    fn run(
        &self,
        protocol: Proxied,
        floor: Option<Entry>,
        peers: &[&(Peer, Result<PathBuf, String>)],
        marzneshin: Option<&Result<PathBuf, String>>,
        excused: &mut Vec<String>,
    ) -> Result<ProtocolReport> {
        let p = protocol.name();
        // A Hysteria2 stream is not a TCP connection to the server: opening ten thousand of
        // them measures the QUIC stream limits of one client connection, not memory per
        // connection.
        let plan = if protocol.quic() {
            self.plan
                .without_idle("Hysteria2 connections are streams of one QUIC connection")
        } else {
            Plan {
                idle: self.idle,
                ..self.plan.clone()
            }
        };
        let free = || -> Result<SocketAddr> {
            let port = if protocol.quic() {
                free_udp_port()?
            } else {
                free_port()?
            };
            Ok(([127, 0, 0, 1], port).into())
        };
        let has_floor = floor.is_some();
        let mut entries: Vec<Entry> = floor.into_iter().collect();
        for (peer, program) in peers {
            let name = format!("{} {p}", peer.name());
            if let (true, Err(_)) = (peer.optional(), program) {
                // Optional: named in the output, not a failure under --require-all.
                excused.push(name.clone());
            }
            let listen = free()?;
            let server_args = peer.proxied_args(protocol, listen, self.tls, &self.dir)?;
            entries.push(self.contender(protocol, name, program, server_args, listen)?);
        }
        let name = format!("marzneshin {p}");
        entries.push(match marzneshin {
            None => Entry::Done(ServerReport::skipped(&name, "not in --servers")),
            Some(program) => {
                let listen = free()?;
                let config = serde_json::json!({
                    "workers": 1,
                    "outbound": { "allow_loopback": true },
                    "inbounds": [protocol.our_inbound(listen, self.tls)?],
                });
                let our_args =
                    engine_args(&config, &self.dir.join(format!("marzneshin-{p}.json")))?;
                self.contender(protocol, name, program, our_args, listen)?
            }
        });
        let mut measured = run_group(&plan, &entries);
        let ours = measured.pop().context("our report")?;
        let floor = has_floor.then(|| measured.remove(0));
        let peer_reports = measured;
        let client = match self.client {
            Ok(program) => format!(
                "taskset -c {CLIENT_CPU} {} run -c {p}-client-SERVER.json (socks inbound, {} \
                 outbound{})",
                program.display(),
                protocol.wire(),
                if protocol.tls() { " over TLS" } else { "" }
            ),
            Err(why) => why.clone(),
        };
        let cipher = protocol.floor().map(|aead| {
            let bytes = self.plan.cipher_bytes;
            Outcome::from_result(match aead {
                FloorCipher::Clear => Ok(CipherCost::none()),
                FloorCipher::Aead { algorithm, chunk } => {
                    eprintln!("[{p}] cipher cost in process");
                    workload::aead_cost(algorithm, bytes, chunk)
                        .map(|cpu| CipherCost::from_seal_open(bytes, chunk, cpu))
                }
            })
        });
        // Issue 5's targets for VLESS, VMess and Trojan are Shadowsocks' (against the best
        // peer or the floor); issue 7's for Hysteria2 are against the best peer alone.
        let targets = Some(match (&cipher, &floor) {
            (Some(c), Some(f)) => check_targets(f, c, &ours, &peer_reports, plan.streams),
            _ => check_peer_targets(&ours, &peer_reports, plan.streams),
        });
        Ok(ProtocolReport {
            protocol: p.to_owned(),
            setup: protocol.setup().to_owned(),
            client,
            floor,
            cipher,
            targets,
            marzneshin: ours,
            peers: peer_reports,
        })
    }

    /// A server listening on `listen`, reached through its own client.
    fn contender(
        &self,
        protocol: Proxied,
        name: String,
        program: &Result<PathBuf, String>,
        server_args: Vec<String>,
        listen: SocketAddr,
    ) -> Result<Entry> {
        let short = short_name(&name).to_owned();
        let p = protocol.name();
        let client = match self.client {
            Ok(c) => c,
            Err(why) => {
                return Ok(Entry::Done(ServerReport::unavailable(
                    &name,
                    "(not run)".into(),
                    why.clone(),
                )))
            }
        };
        let proxy = sing_box_client(
            client,
            protocol.client_outbound(),
            listen,
            &self.dir,
            &format!("{p}-client-{short}"),
        )?;
        let endpoint = Endpoint::Socks5 {
            proxy: proxy.socks,
            target: self.target,
        };
        let listen = if protocol.quic() {
            Listen::Udp(listen)
        } else {
            Listen::Tcp(listen)
        };
        Ok(Entry::Run(Contender {
            name,
            program: program.clone(),
            args: server_args,
            reach: Reach {
                listen,
                client: Some(proxy),
            },
            endpoint,
            log: self.dir.join(format!("{short}-{p}.log")),
            idle_skipped: None,
        }))
    }
}

/// A sing-box client in front of the load generator: a `socks` inbound on a free loopback port
/// and `outbound` (any protocol sing-box has) to `server`. Its config is written to
/// `DIR/NAME.json` and its log to `DIR/NAME.log`.
fn sing_box_client(
    program: &Path,
    outbound: serde_json::Value,
    server: SocketAddr,
    dir: &Path,
    name: &str,
) -> Result<ProxyClient> {
    let socks: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let mut outbound = outbound;
    outbound["server"] = server.ip().to_string().into();
    outbound["server_port"] = server.port().into();
    let config = serde_json::json!({
        "log": { "level": "warn" },
        "inbounds": [{
            "type": "socks",
            "listen": socks.ip().to_string(),
            "listen_port": socks.port(),
        }],
        "outbounds": [outbound],
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(ProxyClient {
        program: program.to_owned(),
        args: vec!["run".into(), "-c".into(), path.display().to_string()],
        socks,
        log: dir.join(format!("{name}.log")),
    })
}

/// The certificate and key every TLS server (Trojan, Hysteria2) is given.
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl TlsFiles {
    /// A self-signed ECDSA P-256 certificate for `localhost`, written under `dir`.
    fn generate(dir: &Path) -> Result<TlsFiles> {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let cert = dir.join("server-cert.pem");
        let key = dir.join("server-key.pem");
        std::fs::write(&cert, generated.cert.pem())?;
        std::fs::write(&key, generated.key_pair.serialize_pem())?;
        Ok(TlsFiles { cert, key })
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
    let out = Command::new(program).arg(arg).output().ok()?;
    // trojan-gfw prints it to standard error.
    let text = if name == "trojan" {
        String::from_utf8_lossy(&out.stderr)
    } else {
        String::from_utf8_lossy(&out.stdout)
    };
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

/// A peer server the harness runs next to ours, each with its usual configuration and nothing
/// tuned beyond what its documentation recommends for a single core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    /// shadowsocks-rust.
    SsRust,
    /// shadowsocks-libev.
    SsLibev,
    /// sing-box.
    SingBox,
    /// v2ray 4.
    V2ray,
    /// shoes (optional: not every machine has it built).
    Shoes,
    /// trojan-gfw.
    TrojanGfw,
}

impl Peer {
    const ALL: [Peer; 6] = [
        Peer::SsRust,
        Peer::SsLibev,
        Peer::SingBox,
        Peer::V2ray,
        Peer::Shoes,
        Peer::TrojanGfw,
    ];

    /// The name `--servers` and the report use.
    fn name(self) -> &'static str {
        match self {
            Peer::SsRust => "ssserver",
            Peer::SsLibev => "ss-server",
            Peer::SingBox => "sing-box",
            Peer::V2ray => "v2ray",
            Peer::Shoes => "shoes",
            Peer::TrojanGfw => "trojan-gfw",
        }
    }

    fn from_name(name: &str) -> Option<Peer> {
        Peer::ALL.into_iter().find(|p| p.name() == name)
    }

    fn binary(self) -> &'static str {
        match self {
            Peer::TrojanGfw => "trojan",
            _ => self.name(),
        }
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
            Peer::Shoes => {
                "optional; `bash tests/run.sh` builds it (`cargo install shoes`) into \
                 ~/.cache/marzneshin/peers/bin, or put it on PATH"
            }
            Peer::TrojanGfw => "install Debian's trojan",
        }
    }

    /// Whether a missing binary is not a failure under `--require-all`.
    fn optional(self) -> bool {
        self == Peer::Shoes
    }

    /// Whether it is one of the Shadowsocks servers compared (shoes has a Shadowsocks server
    /// too, not measured here).
    fn shadowsocks(self) -> bool {
        matches!(
            self,
            Peer::SsRust | Peer::SsLibev | Peer::SingBox | Peer::V2ray
        )
    }

    /// Whether it serves the protocol.
    fn serves(self, protocol: Proxied) -> bool {
        match self {
            Peer::SsRust | Peer::SsLibev => false,
            Peer::SingBox => true,
            Peer::V2ray => protocol != Proxied::Hysteria2,
            Peer::Shoes => true,
            Peer::TrojanGfw => protocol == Proxied::Trojan,
        }
    }

    /// Whether this peer implements the Shadowsocks method.
    fn supports(self, method: Method) -> Result<(), String> {
        match self {
            Peer::SsLibev | Peer::V2ray if method.is_2022() => Err(format!(
                "{} does not implement Shadowsocks 2022 ({method})",
                self.name()
            )),
            _ => Ok(()),
        }
    }

    /// Writes `value` as this peer's config for `what` under `dir`; returns its path.
    fn config(
        self,
        dir: &Path,
        what: &str,
        ext: &str,
        value: &serde_json::Value,
    ) -> Result<String> {
        let path = dir.join(format!("{}-{what}.{ext}", self.name()));
        std::fs::write(&path, serde_json::to_vec_pretty(value)?)?;
        Ok(path.display().to_string())
    }

    /// Command-line arguments for a Shadowsocks server, writing a config file under `dir`
    /// where the peer needs one.
    fn shadowsocks_args(
        self,
        listen: SocketAddr,
        method: Method,
        password: &str,
        dir: &Path,
    ) -> Result<Vec<String>> {
        let what = method.name();
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
            Peer::SingBox => self.sing_box_args(
                dir,
                what,
                serde_json::json!({
                    "type": "shadowsocks",
                    "listen": listen.ip().to_string(),
                    "listen_port": listen.port(),
                    "method": method.name(),
                    "password": password,
                }),
            )?,
            Peer::V2ray => self.v2ray_args(
                dir,
                what,
                serde_json::json!({
                    "listen": listen.ip().to_string(),
                    "port": listen.port(),
                    "protocol": "shadowsocks",
                    "settings": {
                        "method": method.name(),
                        "password": password,
                        "network": "tcp",
                    },
                }),
            )?,
            Peer::Shoes | Peer::TrojanGfw => {
                bail!("{} is not measured for Shadowsocks", self.name())
            }
        };
        Ok(args)
    }

    /// Command-line arguments for a server of a proxied protocol, writing its config under
    /// `dir`. Every server gets the one user, and TLS servers the one certificate.
    fn proxied_args(
        self,
        protocol: Proxied,
        listen: SocketAddr,
        tls: Option<&TlsFiles>,
        dir: &Path,
    ) -> Result<Vec<String>> {
        let what = protocol.name();
        let wire = protocol.wire();
        let tls = if protocol.tls() {
            Some(tls.context("no certificate for a TLS server")?)
        } else {
            None
        };
        let (cert, key) = tls
            .map(|t| (t.cert.display().to_string(), t.key.display().to_string()))
            .unwrap_or_default();
        Ok(match self {
            Peer::SingBox => {
                let mut inbound = serde_json::json!({
                    "type": wire,
                    "listen": listen.ip().to_string(),
                    "listen_port": listen.port(),
                });
                inbound["users"] = match protocol {
                    Proxied::Vless | Proxied::VlessTls => {
                        serde_json::json!([{ "name": "bench", "uuid": USER_ID }])
                    }
                    Proxied::Vmess => serde_json::json!([
                        { "name": "bench", "uuid": USER_ID, "alterId": 0 }
                    ]),
                    Proxied::Trojan | Proxied::Hysteria2 => {
                        serde_json::json!([{ "name": "bench", "password": USER_PASSWORD }])
                    }
                };
                if tls.is_some() {
                    inbound["tls"] = serde_json::json!({
                        "enabled": true,
                        "certificate_path": cert,
                        "key_path": key,
                    });
                    if protocol == Proxied::Hysteria2 {
                        inbound["tls"]["alpn"] = serde_json::json!(["h3"]);
                    }
                }
                self.sing_box_args(dir, what, inbound)?
            }
            Peer::V2ray => {
                let settings = match protocol {
                    Proxied::Vless | Proxied::VlessTls => serde_json::json!({
                        "clients": [{ "id": USER_ID }],
                        "decryption": "none",
                    }),
                    Proxied::Vmess => serde_json::json!({
                        "clients": [{ "id": USER_ID, "alterId": 0 }],
                    }),
                    Proxied::Trojan => serde_json::json!({
                        "clients": [{ "password": USER_PASSWORD }],
                    }),
                    Proxied::Hysteria2 => bail!("v2ray has no Hysteria2"),
                };
                let mut inbound = serde_json::json!({
                    "listen": listen.ip().to_string(),
                    "port": listen.port(),
                    "protocol": wire,
                    "settings": settings,
                });
                if tls.is_some() {
                    inbound["streamSettings"] = serde_json::json!({
                        "network": "tcp",
                        "security": "tls",
                        "tlsSettings": {
                            "certificates": [{ "certificateFile": cert, "keyFile": key }],
                        },
                    });
                }
                self.v2ray_args(dir, what, inbound)?
            }
            Peer::Shoes => {
                let inner = match protocol {
                    Proxied::Vless | Proxied::VlessTls => {
                        serde_json::json!({ "type": "vless", "user_id": USER_ID })
                    }
                    Proxied::Vmess => serde_json::json!({
                        "type": "vmess",
                        "cipher": "aes-128-gcm",
                        "user_id": USER_ID,
                    }),
                    Proxied::Trojan => {
                        serde_json::json!({ "type": "trojan", "password": USER_PASSWORD })
                    }
                    Proxied::Hysteria2 => serde_json::json!({
                        "type": "hysteria2",
                        "password": USER_PASSWORD,
                        "udp_enabled": true,
                    }),
                };
                let server = match protocol {
                    Proxied::Vless | Proxied::Vmess => serde_json::json!({
                        "address": listen.to_string(),
                        "protocol": inner,
                    }),
                    // TLS for any server name.
                    Proxied::VlessTls | Proxied::Trojan => serde_json::json!({
                        "address": listen.to_string(),
                        "protocol": {
                            "type": "tls",
                            "default_target": { "cert": cert, "key": key, "protocol": inner },
                        },
                    }),
                    Proxied::Hysteria2 => serde_json::json!({
                        "address": listen.to_string(),
                        "transport": "quic",
                        "quic_settings": { "cert": cert, "key": key, "alpn_protocols": ["h3"] },
                        "protocol": inner,
                    }),
                };
                // shoes reads YAML, of which JSON is a subset. One tokio thread.
                vec![
                    "--threads".into(),
                    "1".into(),
                    "--no-reload".into(),
                    self.config(dir, what, "yaml", &serde_json::json!([server]))?,
                ]
            }
            Peer::TrojanGfw => {
                if protocol != Proxied::Trojan {
                    bail!("trojan-gfw serves Trojan only");
                }
                // `remote_*` is where a connection that is not Trojan would go: never used
                // here (the discard port, where nothing listens).
                let config = serde_json::json!({
                    "run_type": "server",
                    "local_addr": listen.ip().to_string(),
                    "local_port": listen.port(),
                    "remote_addr": "127.0.0.1",
                    "remote_port": 9,
                    "password": [USER_PASSWORD],
                    "log_level": 2,
                    "ssl": { "cert": cert, "key": key },
                    "tcp": { "no_delay": true },
                });
                vec!["-c".into(), self.config(dir, what, "json", &config)?]
            }
            Peer::SsRust | Peer::SsLibev => bail!("{} serves Shadowsocks only", self.name()),
        })
    }

    /// `sing-box run` with one inbound and a `direct` outbound.
    fn sing_box_args(
        self,
        dir: &Path,
        what: &str,
        inbound: serde_json::Value,
    ) -> Result<Vec<String>> {
        let config = serde_json::json!({
            "log": { "level": "warn" },
            "inbounds": [inbound],
            "outbounds": [{ "type": "direct" }],
        });
        Ok(vec![
            "run".into(),
            "-c".into(),
            self.config(dir, what, "json", &config)?,
        ])
    }

    /// `v2ray -config` with one inbound and a `freedom` outbound. No access log (v2ray writes
    /// one line per connection to stdout unless told `none`; the other servers log warnings
    /// only).
    fn v2ray_args(self, dir: &Path, what: &str, inbound: serde_json::Value) -> Result<Vec<String>> {
        let config = serde_json::json!({
            "log": { "loglevel": "warning", "access": "none" },
            "inbounds": [inbound],
            "outbounds": [{ "protocol": "freedom" }],
        });
        Ok(vec![
            "-config".into(),
            self.config(dir, what, "json", &config)?,
        ])
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

/// Open files one idle connection takes in the harness (client and target sockets) and in a
/// server (two sockets).
const DIRECT_FDS: u64 = 2;
/// Open files one idle connection may take in the client in front of a server and in the
/// server: the sing-box client relaying VLESS (plain TCP) ran out of files at 3 331
/// connections under a 20 000-file limit, about six each: two sockets and, we take it, a
/// splice pipe (two descriptors) per direction that Go keeps while the relay waits.
const PROXIED_FDS: u64 = 6;

/// Open-file limit for `want` idle connections of `per_connection` files each in the busiest
/// process; every process the harness starts inherits it. Raises the limit when allowed (the
/// hard limit needs CAP_SYS_RESOURCE); otherwise returns how many idle connections fit.
fn fit_idle_connections(want: usize, per_connection: u64, what: &str) -> Result<usize> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    const SPARE: u64 = 1024;
    let need = per_connection * want as u64 + SPARE;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= need || setrlimit(Resource::RLIMIT_NOFILE, need, hard.max(need)).is_ok() {
        return Ok(want);
    }
    // Settle for the hard limit we have.
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    let fit = (hard.saturating_sub(SPARE) / per_connection) as usize;
    eprintln!(
        "WARNING: the open-file limit is {hard} and cannot be raised here; measuring {fit} idle \
         connections ({what}, up to {per_connection} files each) instead of {want}"
    );
    Ok(fit.min(want))
}

/// A free loopback TCP port, never one this run handed out before: a table's servers all get
/// their ports before the first one starts.
fn free_port() -> Result<u16> {
    unique_port(|| Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()))
}

/// A free loopback UDP port, never one this run handed out before.
fn free_udp_port() -> Result<u16> {
    unique_port(|| Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port()))
}

fn unique_port(mut bind: impl FnMut() -> Result<u16>) -> Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let port = bind()?;
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    bail!("no loopback port free that this run has not handed out already")
}

/// Where a server listens.
enum Listen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A UDP address (QUIC).
    Udp(SocketAddr),
}

impl Listen {
    /// Whether the server has bound its port yet.
    fn listening(&self) -> bool {
        match self {
            Listen::Tcp(addr) => {
                TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
            }
            // Binding the same UDP address fails while the server holds it.
            Listen::Udp(addr) => UdpSocket::bind(addr).is_err(),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Listen::Tcp(addr) | Listen::Udp(addr) => *addr,
        }
    }
}

/// How the harness reaches a server: where it listens, and the proxy client in front of it
/// (started after the server, for the server's whole run), if any.
struct Reach {
    listen: Listen,
    client: Option<ProxyClient>,
}

impl Reach {
    /// Directly: the load generator connects to the server itself.
    fn direct(listen: Listen) -> Reach {
        Reach {
            listen,
            client: None,
        }
    }
}

/// A proxy client process (the sing-box client of VLESS, VMess, Trojan or Hysteria2) that the
/// load generator connects to over SOCKS5, pinned with the load generator to the client CPU.
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
    fn start(program: &Path, args: &[String], listen: &Listen, log: &Path) -> Result<Self> {
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
            if listen.listening() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("nothing listens on {} after 20 s", listen.addr());
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

/// One server of a table, ready to start.
struct Contender {
    name: String,
    program: Result<PathBuf, String>,
    args: Vec<String>,
    reach: Reach,
    endpoint: Endpoint,
    log: PathBuf,
    /// Why the idle scenario is left out for this server (beyond the plan's reason), if it is.
    idle_skipped: Option<String>,
}

/// A place in a table: a server to measure, or the report of one that will not run.
enum Entry {
    Run(Contender),
    Done(ServerReport),
}

/// A started [`Contender`]: its server, and the client in front of it, if any.
struct Live<'c> {
    contender: &'c Contender,
    command: String,
    server: RunningServer,
    _client: Option<RunningClient>,
}

/// What a contender's repeated runs of one scenario came to: every run, or the error that
/// stopped them.
type Runs = Result<Vec<Measured>>;

/// Measures one table's servers side by side in time: every server is started first and stays
/// up (idle, and pinned like the rest) while the others are measured; then each scenario runs
/// in turns, every server once per round, the order rotated each round so that none is always
/// first. A slow drift of the machine (other tenants, clock, temperature) then touches every
/// server alike instead of whichever ran last. Reports come back in the order of `entries`.
fn run_group(plan: &Plan, entries: &[Entry]) -> Vec<ServerReport> {
    let mut reports: Vec<Option<ServerReport>> = Vec::with_capacity(entries.len());
    let mut live: Vec<Live> = Vec::new();
    // For each live server, its place in `reports`.
    let mut place: Vec<usize> = Vec::new();
    for entry in entries {
        match entry {
            Entry::Done(r) => reports.push(Some(r.clone())),
            Entry::Run(c) => match start(c) {
                Ok(l) => {
                    place.push(reports.len());
                    reports.push(None);
                    live.push(l);
                }
                Err(r) => reports.push(Some(*r)),
            },
        }
    }
    let say =
        |l: &Live, what: &str, figure: &str| eprintln!("[{}] {what}: {figure}", l.contender.name);

    // Memory first, one server at a time: each holds its idle connections alone.
    let idle: Vec<Outcome<IdleMemory>> = live
        .iter()
        .map(|l| {
            let skipped = plan
                .idle_skipped
                .as_ref()
                .or(l.contender.idle_skipped.as_ref());
            let outcome = if let Some(why) = skipped {
                Outcome::skipped(why)
            } else if !plan.runs("idle") {
                Outcome::skipped("not in --only")
            } else {
                let outcome = Outcome::from_result(idle_memory(l, plan.idle));
                match &outcome {
                    Outcome::Measured(i) => say(
                        l,
                        "idle connections",
                        &format!("{:.1} KiB each", i.kib_per_connection),
                    ),
                    _ => say(l, "idle connections", "FAILED"),
                }
                // Let the idle connections close before measuring anything else.
                thread::sleep(Duration::from_millis(500));
                outcome
            };
            outcome
        })
        .collect();

    // Round trips: each round a share of them, on a new connection.
    let round_trips: Vec<Outcome<RoundTrip>> = if !plan.runs("rtt") {
        live.iter()
            .map(|_| Outcome::skipped("not in --only"))
            .collect()
    } else {
        let share = plan.round_trips.div_ceil(plan.repeat);
        let times = in_turns(&live, plan.repeat, |l, times: &mut Vec<Duration>| {
            times.extend(workload::round_trips(&l.contender.endpoint, share, 64)?);
            Ok(())
        });
        live.iter()
            .zip(times)
            .map(|(l, times)| {
                let r = times.map(|mut times| {
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
                        l,
                        "round trip",
                        &format!("p50 {:.1} us, p99 {:.1} us", r.p50_us, r.p99_us),
                    ),
                    Err(e) => say(l, "round trip", &format!("FAILED: {e:#}")),
                }
                Outcome::from_result(r)
            })
            .collect()
    };

    // The measured scenarios: `plan.repeat` runs each, in turns; the run with the median CPU
    // is reported.
    let measured = |what: &str, scenario: &dyn Fn(&Endpoint) -> Result<()>| -> Vec<Option<Runs>> {
        if !plan.runs(what) {
            return live.iter().map(|_| None).collect();
        }
        in_turns(&live, plan.repeat, |l, runs: &mut Vec<Measured>| {
            let m = workload::measure(&l.server.probe, || scenario(&l.contender.endpoint))?;
            cross_check(&l.contender.name, &m);
            runs.push(m);
            Ok(())
        })
        .into_iter()
        .map(Some)
        .collect()
    };
    let median = |runs: &[Measured]| {
        let mut sorted = runs.to_vec();
        sorted.sort_by_key(|m| m.cpu);
        sorted[(sorted.len() - 1) / 2]
    };

    let n = plan.churn;
    let connections: Vec<Outcome<ConnectionCost>> =
        measured("connections", &|e| workload::connection_churn(e, n))
            .into_iter()
            .zip(&live)
            .map(|(runs, l)| {
                let Some(runs) = runs else {
                    return Outcome::skipped("not in --only");
                };
                let per = |m: &Measured| m.cpu.as_secs_f64() * 1e6 / n as f64;
                let r = runs.map(|runs| {
                    let m = median(&runs);
                    ConnectionCost {
                        connections: n,
                        server_cpu_s: m.cpu.as_secs_f64(),
                        server_cpu_ticks: m.ticks,
                        us_per_connection: per(&m),
                        runs_us_per_connection: runs.iter().map(per).collect(),
                        connections_per_s: n as f64 / m.wall.as_secs_f64(),
                    }
                });
                match &r {
                    Ok(c) => say(
                        l,
                        "new connections",
                        &format!(
                            "{:.1} us CPU each {:.1?}",
                            c.us_per_connection, c.runs_us_per_connection
                        ),
                    ),
                    Err(e) => say(l, "new connections", &format!("FAILED: {e:#}")),
                }
                Outcome::from_result(r)
            })
            .collect();

    let transfer = |what: &str, streams: usize, f: &dyn Fn(&Endpoint) -> Result<()>| {
        measured(what, f)
            .into_iter()
            .zip(&live)
            .map(|(runs, l)| {
                let Some(runs) = runs else {
                    return Outcome::skipped("not in --only");
                };
                let r = runs.map(|runs| throughput(median(&runs), &runs, plan.bytes, streams));
                match &r {
                    Ok(t) => say(
                        l,
                        what,
                        &format!(
                            "{:.3} CPU-s/GiB {:.3?}, {:.0} MB/s",
                            t.cpu_s_per_gib, t.runs_cpu_s_per_gib, t.mb_per_s
                        ),
                    ),
                    Err(e) => say(l, what, &format!("FAILED: {e:#}")),
                }
                Outcome::from_result(r)
            })
            .collect::<Vec<_>>()
    };
    let upload = transfer("upload", 1, &|e| workload::upload(e, plan.bytes));
    let download = transfer("download", 1, &|e| workload::download(e, plan.bytes));
    let parallel = transfer("parallel", plan.streams, &|e| {
        workload::parallel(e, plan.streams, plan.bytes)
    });

    let figures = idle
        .into_iter()
        .zip(round_trips)
        .zip(connections)
        .zip(upload)
        .zip(download)
        .zip(parallel);
    for ((((((idle, round_trip), connections), upload), download), parallel), (l, &at)) in
        figures.zip(live.iter().zip(&place))
    {
        let peak_rss_kib = Outcome::from_result(
            l.server
                .probe
                .memory()
                .map(|m| m.peak_kib)
                .map_err(anyhow::Error::from),
        );
        reports[at] = Some(ServerReport {
            name: l.contender.name.clone(),
            command: l.command.clone(),
            unavailable: None,
            idle,
            round_trip,
            connections,
            upload,
            download,
            parallel,
            peak_rss_kib,
        });
    }
    reports.into_iter().flatten().collect()
}

/// Runs `step` on every live server, `rounds` times, in turns: round `r` starts at server
/// `r mod n`. A server whose step fails is left out of later rounds and gets the error.
fn in_turns<T: Default>(
    live: &[Live],
    rounds: usize,
    mut step: impl FnMut(&Live, &mut T) -> Result<()>,
) -> Vec<Result<T>> {
    let n = live.len();
    let mut out: Vec<Result<T>> = live.iter().map(|_| Ok(T::default())).collect();
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            if let Ok(acc) = &mut out[i] {
                if let Err(e) = step(&live[i], acc) {
                    out[i] = Err(e);
                }
            }
        }
    }
    out
}

/// Starts a contender's server, then its client (for the server's whole run), if any; the
/// report of why not otherwise.
fn start(c: &Contender) -> Result<Live<'_>, Box<ServerReport>> {
    let name = &c.name;
    let program = match &c.program {
        Ok(p) => p,
        Err(why) => {
            return Err(Box::new(ServerReport::unavailable(
                name,
                "(not run)".into(),
                why.clone(),
            )))
        }
    };
    let command = format!(
        "taskset -c {SERVER_CPU} {} {}",
        program.display(),
        c.args.join(" ")
    );
    eprintln!("[{name}] starting: {command}");
    let server = match RunningServer::start(program, &c.args, &c.reach.listen, &c.log) {
        Ok(s) => s,
        Err(e) => {
            return Err(Box::new(ServerReport::unavailable(
                name,
                command,
                format!("{e:#}"),
            )))
        }
    };
    let client = match &c.reach.client {
        None => None,
        Some(client) => {
            eprintln!("[{name}] client: {}", client.command());
            match client.start() {
                Ok(running) => Some(running),
                Err(e) => {
                    return Err(Box::new(ServerReport::unavailable(
                        name,
                        command,
                        format!("client: {e:#}"),
                    )))
                }
            }
        }
    };
    Ok(Live {
        contender: c,
        command,
        server,
        _client: client,
    })
}

/// Resident memory per idle connection: `n` connections opened and held.
fn idle_memory(l: &Live, n: usize) -> Result<IdleMemory> {
    let probe = &l.server.probe;
    thread::sleep(Duration::from_millis(200));
    let before = probe.memory()?.rss_kib;
    let conns = workload::idle_connections(&l.contender.endpoint, n)?;
    thread::sleep(Duration::from_millis(300));
    let after = probe.memory()?.rss_kib;
    drop(conns);
    Ok(IdleMemory {
        connections: n,
        rss_before_kib: before,
        rss_after_kib: after,
        kib_per_connection: after.saturating_sub(before) as f64 / n as f64,
    })
}

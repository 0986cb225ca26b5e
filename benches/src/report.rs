//! Results of a side-by-side run: the JSON document and its Markdown rendering.
//!
//! Figures are reported next to the peers' and as ratios, never as bare times: a ratio holds
//! across machines far better than a number of seconds does.

use std::fmt::Write as _;

use serde::Serialize;

/// A figure, or why there is none (a peer missing, a transfer that failed its check, ...).
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome<T> {
    /// Measured and verified.
    Measured(T),
    /// Not measured.
    NotMeasured {
        /// Why.
        error: String,
    },
    /// Left out on purpose (`--only`, `--servers`).
    Skipped {
        /// Why.
        skipped: String,
    },
}

impl<T> Outcome<T> {
    /// The figure, if measured.
    pub fn get(&self) -> Option<&T> {
        match self {
            Outcome::Measured(t) => Some(t),
            Outcome::NotMeasured { .. } | Outcome::Skipped { .. } => None,
        }
    }

    /// Left out on purpose.
    pub fn skipped(why: &str) -> Outcome<T> {
        Outcome::Skipped {
            skipped: why.to_owned(),
        }
    }

    /// An outcome from a result.
    pub fn from_result(r: anyhow::Result<T>) -> Outcome<T> {
        match r {
            Ok(t) => Outcome::Measured(t),
            Err(e) => Outcome::NotMeasured {
                error: format!("{e:#}"),
            },
        }
    }

    /// Left out on purpose.
    pub fn is_skipped(&self) -> bool {
        matches!(self, Outcome::Skipped { .. })
    }

    fn missing(why: &str) -> Outcome<T> {
        Outcome::NotMeasured {
            error: why.to_owned(),
        }
    }
}

/// A bulk transfer.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    /// Bytes moved (and verified) per run.
    pub bytes: u64,
    /// Concurrent streams.
    pub streams: usize,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Server CPU, seconds (process CPU clock).
    pub server_cpu_s: f64,
    /// Server CPU, clock ticks from `/proc/PID/stat`.
    pub server_cpu_ticks: u64,
    /// Server CPU-seconds per GiB moved (the median run's).
    pub cpu_s_per_gib: f64,
    /// CPU-seconds per GiB of every run, in order (the figure above is their median).
    pub runs_cpu_s_per_gib: Vec<f64>,
    /// Megabytes (10^6) per second of wall time.
    pub mb_per_s: f64,
}

/// New connections.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionCost {
    /// Connections opened (each with a handshake and one echo) and closed.
    pub connections: usize,
    /// Server CPU, seconds.
    pub server_cpu_s: f64,
    /// Server CPU, clock ticks.
    pub server_cpu_ticks: u64,
    /// Server CPU per connection, microseconds (the median run's).
    pub us_per_connection: f64,
    /// Microseconds per connection of every run, in order.
    pub runs_us_per_connection: Vec<f64>,
    /// Connections per second of wall time (one at a time).
    pub connections_per_s: f64,
}

/// Round trips of small messages on one connection.
#[derive(Clone, Debug, Serialize)]
pub struct RoundTrip {
    /// Messages timed.
    pub messages: usize,
    /// Message size, bytes.
    pub size: usize,
    /// Median, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
}

/// Memory held by open, idle connections.
#[derive(Clone, Debug, Serialize)]
pub struct IdleMemory {
    /// Connections held open.
    pub connections: usize,
    /// Server VmRSS before opening them, KiB.
    pub rss_before_kib: u64,
    /// Server VmRSS with all of them open, KiB.
    pub rss_after_kib: u64,
    /// Difference per connection, KiB.
    pub kib_per_connection: f64,
}

/// Everything measured for one server.
#[derive(Clone, Debug, Serialize)]
pub struct ServerReport {
    /// Display name.
    pub name: String,
    /// The command line it ran with (or why it did not run).
    pub command: String,
    /// Set when the server could not be run at all (binary missing, did not start).
    pub unavailable: Option<String>,
    /// Memory per idle connection.
    pub idle: Outcome<IdleMemory>,
    /// Small-message round trips.
    pub round_trip: Outcome<RoundTrip>,
    /// New-connection cost.
    pub connections: Outcome<ConnectionCost>,
    /// One stream, client to target.
    pub upload: Outcome<Throughput>,
    /// One stream, target to client.
    pub download: Outcome<Throughput>,
    /// Parallel streams, half each way.
    pub parallel: Outcome<Throughput>,
    /// Peak resident set (VmHWM) at the end of the run, KiB.
    pub peak_rss_kib: Outcome<u64>,
}

impl ServerReport {
    /// A server that could not be run; every figure says why.
    pub fn unavailable(name: &str, command: String, why: String) -> ServerReport {
        ServerReport {
            name: name.to_owned(),
            command,
            idle: Outcome::missing(&why),
            round_trip: Outcome::missing(&why),
            connections: Outcome::missing(&why),
            upload: Outcome::missing(&why),
            download: Outcome::missing(&why),
            parallel: Outcome::missing(&why),
            peak_rss_kib: Outcome::missing(&why),
            unavailable: Some(why),
        }
    }

    /// A server left out on purpose (`--servers`).
    pub fn skipped(name: &str, why: &str) -> ServerReport {
        ServerReport {
            name: name.to_owned(),
            command: "(not run)".into(),
            unavailable: None,
            idle: Outcome::skipped(why),
            round_trip: Outcome::skipped(why),
            connections: Outcome::skipped(why),
            upload: Outcome::skipped(why),
            download: Outcome::skipped(why),
            parallel: Outcome::skipped(why),
            peak_rss_kib: Outcome::skipped(why),
        }
    }

    /// The figure of a throughput scenario.
    pub fn throughput(&self, s: Scenario) -> &Outcome<Throughput> {
        match s {
            Scenario::Upload => &self.upload,
            Scenario::Download => &self.download,
            Scenario::Parallel => &self.parallel,
        }
    }

    /// Every failure, for the summary.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.unavailable.is_some() {
            return out;
        }
        let mut note = |what: &str, e: Option<&str>| {
            if let Some(e) = e {
                out.push(format!("{}: {what}: {e}", self.name));
            }
        };
        note("idle", err_of(&self.idle).as_deref());
        note("round trip", err_of(&self.round_trip).as_deref());
        note("connections", err_of(&self.connections).as_deref());
        note("upload", err_of(&self.upload).as_deref());
        note("download", err_of(&self.download).as_deref());
        note("parallel", err_of(&self.parallel).as_deref());
        note("peak RSS", err_of(&self.peak_rss_kib).as_deref());
        out
    }
}

fn err_of<T>(o: &Outcome<T>) -> Option<String> {
    match o {
        Outcome::NotMeasured { error } => Some(error.clone()),
        Outcome::Measured(_) | Outcome::Skipped { .. } => None,
    }
}

/// The cipher's own cost, measured in process during the same run.
#[derive(Clone, Debug, Serialize)]
pub struct CipherCost {
    /// Bytes sealed and then opened.
    pub bytes: u64,
    /// Chunk payload size, bytes.
    pub chunk: usize,
    /// CPU-seconds per GiB for seal + open (two AEAD passes).
    pub seal_open_cpu_s_per_gib: f64,
    /// CPU-seconds per GiB for one pass: what a server spends per GiB relayed (it opens what
    /// it receives from the client or seals what it sends to it, never both).
    pub one_pass_cpu_s_per_gib: f64,
}

impl CipherCost {
    /// The cost of sealing and then opening `bytes` in `chunk`-byte chunks, from the CPU time
    /// both took.
    pub fn from_seal_open(bytes: u64, chunk: usize, cpu: std::time::Duration) -> CipherCost {
        let per_gib = cpu.as_secs_f64() / (bytes as f64 / (1u64 << 30) as f64);
        CipherCost {
            bytes,
            chunk,
            seal_open_cpu_s_per_gib: per_gib,
            one_pass_cpu_s_per_gib: per_gib / 2.0,
        }
    }

    /// A payload carried in the clear: no cipher.
    pub fn none() -> CipherCost {
        CipherCost {
            bytes: 0,
            chunk: 0,
            seal_open_cpu_s_per_gib: 0.0,
            one_pass_cpu_s_per_gib: 0.0,
        }
    }
}

/// The scenarios a target applies to.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// One stream up.
    Upload,
    /// One stream down.
    Download,
    /// Parallel streams.
    Parallel,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 3] = [Scenario::Upload, Scenario::Download, Scenario::Parallel];

    /// How tables and plots name it.
    pub fn label(self, streams: usize) -> String {
        match self {
            Scenario::Upload => "upload, 1 stream".into(),
            Scenario::Download => "download, 1 stream".into(),
            Scenario::Parallel => format!("{streams} parallel streams"),
        }
    }
}

/// One target of the issue checked against the figures.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    /// What is compared.
    pub what: String,
    /// Our figure.
    pub ours: f64,
    /// The bound it must not exceed.
    pub bound: f64,
    /// How the bound is derived.
    pub rule: String,
    /// Whether ours is within the bound.
    pub met: bool,
}

/// Results for one Shadowsocks method.
#[derive(Clone, Debug, Serialize)]
pub struct MethodReport {
    /// Method name.
    pub method: String,
    /// Cipher cost, in process.
    pub cipher: Outcome<CipherCost>,
    /// The plain relay (no crypto), measured in turn with the servers below: the floor.
    pub floor: ServerReport,
    /// Our engine.
    pub marzneshin: ServerReport,
    /// The peer servers, in the order of `--servers`; each one that could not run says why.
    pub peers: Vec<ServerReport>,
    /// Targets checked (empty when a figure is missing).
    pub targets: Vec<TargetCheck>,
}

/// Results for one protocol whose servers are all driven through the same client process (a
/// local SOCKS5 proxy in front of the load generator): VLESS, VMess, Trojan and Hysteria2. The
/// load generator's bytes reach each server the same way, through the same client.
#[derive(Clone, Debug, Serialize)]
pub struct ProtocolReport {
    /// Protocol name, as `--protocols` spells it (`vless`, `vless-tls`, `vmess`, `trojan`,
    /// `hysteria2`).
    pub protocol: String,
    /// How it was carried (transport, cipher), for the table's heading.
    pub setup: String,
    /// The client every server was measured through: its command line, or why it could not run.
    pub client: String,
    /// The plain relay (no crypto, reached directly), measured in turn with the servers below:
    /// the floor. `None` for a protocol without a floor (Hysteria2).
    pub floor: Option<ServerReport>,
    /// Our engine.
    pub marzneshin: ServerReport,
    /// The peer servers; each one that could not run says why.
    pub peers: Vec<ServerReport>,
    /// The cipher's own cost (one pass, in process) for the floor columns: the floor is the
    /// plain relay plus this. `None` for a protocol without a floor (Hysteria2: its
    /// client, not a relay, sets the wire format).
    pub cipher: Option<Outcome<CipherCost>>,
    /// Targets checked, where an issue states them (issue 5 for VLESS, VMess and Trojan,
    /// issue 7 for Hysteria2); `None` where none is stated, so only ratios are reported.
    /// Empty when a figure is missing.
    pub targets: Option<Vec<TargetCheck>>,
}

impl ProtocolReport {
    /// How tables and the chart name the protocol.
    pub fn title(&self) -> &str {
        match self.protocol.as_str() {
            "vless" => "VLESS",
            "vless-tls" => "VLESS-TLS",
            "vmess" => "VMess",
            "trojan" => "Trojan",
            "hysteria2" => "Hysteria2",
            other => other,
        }
    }

    /// What one new connection of the load generator is to the server.
    fn new_connection(&self) -> &'static str {
        match self.protocol.as_str() {
            "hysteria2" => "new connection (QUIC stream)",
            _ => "new connection",
        }
    }
}

/// The machine the run happened on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model (from /proc/cpuinfo).
    pub cpu: String,
    /// CPUs online.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// Clock ticks per second.
    pub clock_ticks_per_s: u64,
}

impl Machine {
    /// Describes this machine.
    pub fn detect() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .and_then(|v| v.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cpu,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel,
            clock_ticks_per_s: crate::probe::ticks_per_second(),
        }
    }
}

/// A program the run used.
#[derive(Clone, Debug, Serialize)]
pub struct Binary {
    /// Name.
    pub name: String,
    /// Where it was found, or why it was not.
    pub path: Result<String, String>,
    /// What `--version` printed.
    pub version: Option<String>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Unix time the run started.
    pub started_at: u64,
    /// `quick` or `full`.
    pub mode: String,
    /// How the harness was invoked.
    pub command: String,
    /// Git revision of the workspace (`-dirty` when engine/, service/ or benches/ differ).
    pub revision: String,
    /// The machine.
    pub machine: Machine,
    /// The servers' binaries.
    pub binaries: Vec<Binary>,
    /// Bytes each throughput scenario moves.
    pub bytes_per_run: u64,
    /// Streams in the parallel scenario.
    pub parallel_streams: usize,
    /// Runs of each throughput and connection scenario (the median is reported), taken in
    /// turns: every server of a table runs once before any runs again.
    pub repeats: usize,
    /// Per Shadowsocks method.
    pub methods: Vec<MethodReport>,
    /// The protocols measured through a client process (VLESS, VMess, Trojan, Hysteria2), in
    /// the order of `--protocols`.
    pub proxied: Vec<ProtocolReport>,
    /// Wall time of the whole run, seconds.
    pub total_wall_s: f64,
}

/// Derives the targets stated by the issues from measured figures: CPU-s/GiB at most
/// max(0.8 x the best peer, 1.1 x (floor + cipher)) per scenario, and CPU per new connection at
/// most 0.5 x the best peer's. "Best" is the lowest figure among the peers measured in this run.
pub fn check_targets(
    floor: &ServerReport,
    cipher: &Outcome<CipherCost>,
    ours: &ServerReport,
    peers: &[ServerReport],
    streams: usize,
) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    for s in Scenario::ALL {
        let best = best_peer(peers, |r| r.throughput(s).get().map(|t| t.cpu_s_per_gib));
        let (Some(o), Some((peer, p)), Some(f), Some(c)) = (
            ours.throughput(s).get(),
            best,
            floor.throughput(s).get(),
            cipher.get(),
        ) else {
            continue;
        };
        let vs_peer = 0.8 * p;
        let vs_floor = 1.1 * (f.cpu_s_per_gib + c.one_pass_cpu_s_per_gib);
        let bound = vs_peer.max(vs_floor);
        out.push(TargetCheck {
            what: format!("CPU-s/GiB, {}", s.label(streams)),
            ours: o.cpu_s_per_gib,
            bound,
            rule: format!(
                "max(0.8 x {peer} = {vs_peer:.3}, 1.1 x (floor + cipher) = {vs_floor:.3})"
            ),
            met: o.cpu_s_per_gib <= bound,
        });
    }
    let best = best_peer(peers, |r| r.connections.get().map(|c| c.us_per_connection));
    if let (Some(o), Some((peer, p))) = (ours.connections.get(), best) {
        let bound = 0.5 * p;
        out.push(TargetCheck {
            what: "CPU per new connection, us".into(),
            ours: o.us_per_connection,
            bound,
            rule: format!("0.5 x {peer} ({p:.1} us)"),
            met: o.us_per_connection <= bound,
        });
    }
    out
}

/// Derives the Hysteria2 targets from measured figures: CPU-s/GiB at most 0.8 x the best
/// peer's, per throughput scenario, and the same for the round trip's p99. There is no floor
/// here: the client, not a relay, sets the wire format.
pub fn check_peer_targets(
    ours: &ServerReport,
    peers: &[ServerReport],
    streams: usize,
) -> Vec<TargetCheck> {
    // At most 0.8 x the best peer's `figure`, when ours and a peer's were measured.
    let within = |what: String,
                  figure: &dyn Fn(&ServerReport) -> Option<f64>,
                  (digits, unit): (usize, &str)| {
        let (o, (peer, p)) = (figure(ours)?, best_peer(peers, figure)?);
        let bound = 0.8 * p;
        Some(TargetCheck {
            what,
            ours: o,
            bound,
            rule: format!("0.8 x {peer} ({p:.digits$}{unit})"),
            met: o <= bound,
        })
    };
    let mut out: Vec<TargetCheck> = Scenario::ALL
        .into_iter()
        .filter_map(|s| {
            within(
                format!("CPU-s/GiB, {}", s.label(streams)),
                &|r| r.throughput(s).get().map(|t| t.cpu_s_per_gib),
                (3, ""),
            )
        })
        .collect();
    out.extend(within(
        "round trip p99, us".into(),
        &|r| r.round_trip.get().map(|t| t.p99_us),
        (1, " us"),
    ));
    out
}

/// The peer with the lowest measured figure, and that figure.
fn best_peer(
    peers: &[ServerReport],
    figure: impl Fn(&ServerReport) -> Option<f64>,
) -> Option<(&str, f64)> {
    peers
        .iter()
        .filter_map(|r| figure(r).map(|v| (short_name(&r.name), v)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".into(),
    }
}

impl Report {
    /// Every server report of the run: per method the floor, the peers and ours, then per
    /// proxied protocol the floor (if any), the peers and ours.
    pub fn servers(&self) -> impl Iterator<Item = &ServerReport> {
        self.methods
            .iter()
            .flat_map(|m| {
                std::iter::once(&m.floor)
                    .chain(m.peers.iter())
                    .chain(std::iter::once(&m.marzneshin))
            })
            .chain(self.proxied.iter().flat_map(|p| {
                p.floor
                    .iter()
                    .chain(p.peers.iter())
                    .chain(std::iter::once(&p.marzneshin))
            }))
    }

    /// The Markdown rendering: one table per Shadowsocks method and one per proxied protocol,
    /// each with its targets, then any failures.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "Machine: {} ({} CPUs), kernel {}. Mode: {}, {} MiB per throughput run, {} parallel \
             streams, median of {} runs. Run took {:.0} s.\n",
            m.cpu,
            m.cpus,
            m.kernel,
            self.mode,
            self.bytes_per_run >> 20,
            self.parallel_streams,
            self.repeats,
            self.total_wall_s,
        );
        let _ = writeln!(
            md,
            "Command: `{}` (workspace revision {})\n",
            self.command, self.revision
        );
        for b in &self.binaries {
            let _ = match &b.path {
                Ok(p) => writeln!(
                    md,
                    "- {}: `{p}`{}",
                    b.name,
                    b.version
                        .as_ref()
                        .map(|v| format!(" ({v})"))
                        .unwrap_or_default()
                ),
                Err(why) => writeln!(md, "- {}: **MISSING**: {why}", b.name),
            };
        }
        md.push('\n');
        for r in self.servers() {
            if let Some(why) = &r.unavailable {
                let _ = writeln!(md, "**{} NOT MEASURED: {why}**\n", r.name);
            }
        }
        for method in &self.methods {
            self.method_table(&mut md, method);
        }
        for p in &self.proxied {
            self.protocol_table(&mut md, p);
        }
        let failures: Vec<String> = self.servers().flat_map(|r| r.failures()).collect();
        if !failures.is_empty() {
            let _ = writeln!(md, "### Failures (no figure reported)\n");
            for f in failures {
                let _ = writeln!(md, "- {f}");
            }
            md.push('\n');
        }
        md
    }

    fn method_table(&self, md: &mut String, method: &MethodReport) {
        let _ = writeln!(md, "### {}\n", method.method);
        let floor = Floor {
            relay: &method.floor,
            cipher: method.cipher.get().map(|c| c.one_pass_cpu_s_per_gib),
        };
        let table = ServerTable {
            streams: self.parallel_streams,
            ours: &method.marzneshin,
            peers: &method.peers,
            floor: Some(floor),
            new_connection: "new connection",
        };
        table.write(md);
        write_targets(md, &method.method, Some(&method.targets));
    }

    fn protocol_table(&self, md: &mut String, p: &ProtocolReport) {
        let _ = writeln!(md, "### {}\n", p.protocol);
        let _ = writeln!(md, "{}.\n", p.setup);
        let _ = writeln!(md, "Client (the same for every server): `{}`\n", p.client);
        let floor = p
            .cipher
            .as_ref()
            .zip(p.floor.as_ref())
            .map(|(cipher, relay)| Floor {
                relay,
                cipher: cipher.get().map(|c| c.one_pass_cpu_s_per_gib),
            });
        let table = ServerTable {
            streams: self.parallel_streams,
            ours: &p.marzneshin,
            peers: &p.peers,
            floor,
            new_connection: p.new_connection(),
        };
        table.write(md);
        write_targets(md, &p.protocol, p.targets.as_ref());
    }
}

/// The floor columns of a table: the plain relay and the cipher's own cost.
struct Floor<'a> {
    relay: &'a ServerReport,
    /// CPU-s/GiB of one AEAD pass.
    cipher: Option<f64>,
}

/// One table of figures: a row per metric, a column per peer, then ours and the ratio to the
/// best peer; with the floor columns (and the ratio to floor + cipher) where there is a floor.
/// A metric left out on purpose for every server (say, idle connections of Hysteria2) gets no
/// row; a metric that failed reads "n/a".
struct ServerTable<'a> {
    streams: usize,
    ours: &'a ServerReport,
    peers: &'a [ServerReport],
    floor: Option<Floor<'a>>,
    new_connection: &'a str,
}

impl ServerTable<'_> {
    fn write(&self, md: &mut String) {
        let mut head = String::from("| metric |");
        let mut rule = String::from("|---|");
        if self.floor.is_some() {
            head.push_str(" floor (plain relay) | cipher (1 pass) | floor + cipher |");
            rule.push_str("---:|---:|---:|");
        }
        for p in self.peers {
            let _ = write!(head, " {} |", short_name(&p.name));
            rule.push_str("---:|");
        }
        head.push_str(" marzneshin | ours / best peer |");
        rule.push_str("---:|---:|");
        if self.floor.is_some() {
            head.push_str(" ours / (floor + cipher) |");
            rule.push_str("---:|");
        }
        let _ = writeln!(md, "{head}\n{rule}");
        for s in Scenario::ALL {
            let cpu = move |r: &ServerReport| r.throughput(s).get().map(|t| t.cpu_s_per_gib);
            let label = format!("CPU-s/GiB, {}", s.label(self.streams));
            self.row(md, &label, fmt3, true, true, &cpu);
        }
        for s in Scenario::ALL {
            let label = format!("MB/s, {}", s.label(self.streams));
            self.row(md, &label, fmt0, false, false, &|r| {
                r.throughput(s).get().map(|t| t.mb_per_s)
            });
        }
        if self.ran(|r| r.connections.is_skipped()) {
            let label = format!("server CPU per {}, us", self.new_connection);
            self.row(md, &label, fmt1, true, false, &|r| {
                r.connections.get().map(|c| c.us_per_connection)
            });
        }
        if self.ran(|r| r.round_trip.is_skipped()) {
            let size = self
                .first(|r| r.round_trip.get().map(|t| t.size))
                .unwrap_or(64);
            for (q, figure) in [
                ("p50", (|t: &RoundTrip| t.p50_us) as fn(&RoundTrip) -> f64),
                ("p99", |t: &RoundTrip| t.p99_us),
            ] {
                let label = format!("round trip {q}, {size}-byte echo, us");
                self.row(md, &label, fmt1, true, false, &|r| {
                    r.round_trip.get().map(figure)
                });
            }
        }
        if self.ran(|r| r.idle.is_skipped()) {
            let n = self
                .first(|r| r.idle.get().map(|i| i.connections))
                .unwrap_or(0);
            let label = format!("RSS per idle connection ({n} open), KiB");
            self.row(md, &label, fmt1, true, false, &|r| {
                r.idle.get().map(|i| i.kib_per_connection)
            });
        }
        self.row(md, "peak RSS (VmHWM), MiB", fmt1, true, false, &|r| {
            r.peak_rss_kib.get().map(|k| *k as f64 / 1024.0)
        });
        md.push('\n');
    }

    /// Ours, then the peers.
    fn servers(&self) -> impl Iterator<Item = &ServerReport> {
        std::iter::once(self.ours).chain(self.peers)
    }

    /// Whether any server ran the scenario (`skipped` says whether one left it out on purpose).
    fn ran(&self, skipped: impl Fn(&ServerReport) -> bool) -> bool {
        self.servers().any(|r| !skipped(r))
    }

    /// The first server's answer, ours first.
    fn first<T>(&self, figure: impl Fn(&ServerReport) -> Option<T>) -> Option<T> {
        self.servers().find_map(figure)
    }

    /// One row: the floor's columns (the floor's figure; with `cipher`, the cipher's and their
    /// sum, else blank), each peer, ours, and the ratios. `lower` says whether lower is better
    /// (CPU, time, memory) or higher (MB/s).
    fn row(
        &self,
        md: &mut String,
        label: &str,
        fmt: fn(Option<f64>) -> String,
        lower: bool,
        cipher: bool,
        figure: &dyn Fn(&ServerReport) -> Option<f64>,
    ) {
        let mut line = format!("| {label} |");
        let mut vs_floor = None;
        if let Some(floor) = &self.floor {
            let f = figure(floor.relay);
            let _ = write!(line, " {} |", fmt(f));
            if cipher {
                let fc = f.zip(floor.cipher).map(|(a, b)| a + b);
                let _ = write!(line, " {} | {} |", fmt3(floor.cipher), fmt3(fc));
                vs_floor = Some(fc);
            } else {
                line.push_str(" | |");
            }
        }
        for p in self.peers {
            let _ = write!(line, " {} |", fmt(figure(p)));
        }
        let measured = self.peers.iter().filter_map(figure);
        let best = if lower {
            measured.min_by(f64::total_cmp)
        } else {
            measured.max_by(f64::total_cmp)
        };
        let o = figure(self.ours);
        let _ = write!(line, " {} | {} |", fmt(o), ratio(o, best));
        if self.floor.is_some() {
            let _ = write!(
                line,
                " {} |",
                vs_floor.map(|fc| ratio(o, fc)).unwrap_or_default()
            );
        }
        let _ = writeln!(md, "{line}");
    }
}

/// The targets under a table: `None` where no issue states one (nothing is written).
fn write_targets(md: &mut String, what: &str, targets: Option<&Vec<TargetCheck>>) {
    let Some(targets) = targets else {
        return;
    };
    if targets.is_empty() {
        let _ = writeln!(md, "Targets: not checked (a figure is missing).\n");
        return;
    }
    let _ = writeln!(md, "Targets for {what}:\n");
    for t in targets {
        let _ = writeln!(
            md,
            "- {}: ours {:.3}, bound {:.3} [{}]: **{}**",
            t.what,
            t.ours,
            t.bound,
            t.rule,
            if t.met { "met" } else { "MISSED" }
        );
    }
    md.push('\n');
}

/// A server's name without the method it was run with (`"sing-box aes-256-gcm"` → `"sing-box"`).
pub fn short_name(name: &str) -> &str {
    name.split_once(' ').map_or(name, |(n, _)| n)
}

fn fmt0(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "n/a".into())
}

fn fmt3(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "n/a".into())
}

fn fmt1(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into())
}

#[cfg(test)]
impl Report {
    /// A quick run on a made-up machine (CPU "cpu <&>", to test escaping), 1 GiB per transfer,
    /// 8 parallel streams: the report tests' fixture.
    pub(crate) fn test_run(methods: Vec<MethodReport>, proxied: Vec<ProtocolReport>) -> Report {
        Report {
            started_at: 0,
            mode: "quick".into(),
            command: "test".into(),
            revision: "abc".into(),
            machine: Machine {
                cpu: "cpu <&>".into(),
                cpus: 2,
                kernel: "k".into(),
                clock_ticks_per_s: 100,
            },
            binaries: Vec::new(),
            bytes_per_run: 1 << 30,
            parallel_streams: 8,
            repeats: 1,
            methods,
            proxied,
            total_wall_s: 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(name: &str, cpu_s_per_gib: f64) -> ServerReport {
        let mut r = ServerReport::skipped(name, "test");
        r.upload = Outcome::Measured(Throughput {
            bytes: 1 << 30,
            streams: 1,
            wall_s: 1.0,
            server_cpu_s: cpu_s_per_gib,
            server_cpu_ticks: 0,
            cpu_s_per_gib,
            runs_cpu_s_per_gib: vec![cpu_s_per_gib],
            mb_per_s: 1000.0,
        });
        r
    }

    #[test]
    fn one_table_writer_serves_methods_and_proxied_protocols() {
        let mut floor = upload("floor (plain relay)", 0.5);
        floor.idle = Outcome::skipped("thread per connection");
        let method = MethodReport {
            method: "aes-256-gcm".into(),
            cipher: Outcome::skipped("test"),
            floor: floor.clone(),
            marzneshin: upload("marzneshin aes-256-gcm", 1.0),
            peers: vec![upload("ssserver aes-256-gcm", 2.0)],
            targets: Vec::new(),
        };
        let mut trojan_gfw = upload("trojan-gfw trojan", 4.0);
        trojan_gfw.idle = Outcome::NotMeasured {
            error: "short".into(),
        };
        let trojan = ProtocolReport {
            protocol: "trojan".into(),
            setup: "Trojan over TLS".into(),
            client: "sing-box".into(),
            floor: None,
            marzneshin: upload("marzneshin trojan", 1.0),
            peers: vec![upload("sing-box trojan", 2.0), trojan_gfw],
            cipher: None,
            targets: None,
        };
        let vmess = ProtocolReport {
            protocol: "vmess".into(),
            setup: "VMess".into(),
            client: "sing-box".into(),
            floor: Some(floor),
            marzneshin: upload("marzneshin vmess", 0.8),
            peers: vec![upload("shoes vmess", 1.0)],
            cipher: Some(Outcome::Measured(CipherCost::from_seal_open(
                1 << 30,
                16384,
                std::time::Duration::from_millis(200),
            ))),
            targets: None,
        };
        let md = Report::test_run(vec![method], vec![trojan, vmess]).markdown();
        // Shadowsocks: the floor columns and the ratio to the best peer.
        assert!(md.contains(
            "| CPU-s/GiB, upload, 1 stream | 0.500 | n/a | n/a | 2.000 | 1.000 | 0.50 | n/a |"
        ));
        // Trojan: no floor columns, trojan-gfw's column, no target section.
        assert!(md.contains("| metric | sing-box | trojan-gfw | marzneshin | ours / best peer |"));
        assert!(md.contains("| CPU-s/GiB, upload, 1 stream | 2.000 | 4.000 | 1.000 | 0.50 |"));
        assert!(!md.contains("Targets for trojan"));
        // A row is left out only when every server skipped it on purpose: trojan-gfw's idle
        // figure failed, so the row stays, with "n/a".
        assert!(md.contains("| RSS per idle connection (0 open), KiB | n/a | n/a | n/a | n/a |"));
        assert!(!md.contains("round trip"));
        // VMess: its floor, the AEAD's one pass (0.2 s per GiB for seal and open), their
        // sum, and our ratio to it.
        assert!(md.contains(
            "| metric | floor (plain relay) | cipher (1 pass) | floor + cipher | shoes | \
             marzneshin | ours / best peer | ours / (floor + cipher) |"
        ));
        assert!(md.contains(
            "| CPU-s/GiB, upload, 1 stream | 0.500 | 0.100 | 0.600 | 1.000 | 0.800 | 0.80 | 1.33 |"
        ));
    }

    #[test]
    fn hysteria2_target_is_measured_against_the_best_peer_only() {
        let ours = upload("marzneshin hysteria2", 1.0);
        let peers = [
            upload("sing-box hysteria2", 2.0),
            upload("shoes hysteria2", 1.5),
            ServerReport::unavailable("x hysteria2", "(not run)".into(), "missing".into()),
        ];
        let targets = check_peer_targets(&ours, &peers, 8);
        // Only upload was measured: one target, against shoes's 1.5 (the lower).
        assert_eq!(targets.len(), 1);
        assert!((targets[0].bound - 1.2).abs() < 1e-9);
        assert!(targets[0].met);
        assert!(targets[0].rule.contains("shoes"));
        // No peer figure, no target (rather than a bound of zero).
        assert!(check_peer_targets(&ours, &peers[2..], 8).is_empty());
    }

    #[test]
    fn hysteria2_round_trip_p99_is_a_target_too() {
        let with_rtt = |name: &str, p99_us: f64| {
            let mut r = upload(name, 1.0);
            r.round_trip = Outcome::Measured(RoundTrip {
                messages: 100,
                size: 64,
                p50_us: p99_us / 2.0,
                p99_us,
            });
            r
        };
        let ours = with_rtt("marzneshin hysteria2", 300.0);
        let peers = [
            with_rtt("sing-box hysteria2", 320.0),
            with_rtt("shoes hysteria2", 250.0),
        ];
        let targets = check_peer_targets(&ours, &peers, 8);
        let rtt = targets
            .iter()
            .find(|t| t.what == "round trip p99, us")
            .unwrap();
        assert!((rtt.bound - 200.0).abs() < 1e-9);
        assert!(!rtt.met);
        assert!(rtt.rule.contains("shoes"));
    }
}

//! Panel load benchmark: the real `marzneshin serve` (release build) on a fresh database,
//! filled with N users (10 000 by default) through its API, then timed on what admins and
//! clients do most: create a user, list a page of 100, get one user, fetch a subscription as
//! links and as sing-box JSON, read the system stats. Reports median, p99 and ops/s, and the
//! panel's peak RSS (VmHWM), for SQLite and PostgreSQL, against the targets of the panel's
//! issue.
//!
//! ```text
//!   this process (tokio + reqwest, keep-alive)  ──HTTP──►  marzneshin serve ──► SQLite file
//!   creation: --concurrency requests in flight                               or PostgreSQL
//!   reads: one request at a time (latency)
//! ```
//!
//! Run: `cargo run --release -p benches --bin panel_load -- [--db sqlite|postgres|both]
//! [--users 10000] [--quick] [--out DIR]`. PostgreSQL needs a server on which the URL's user
//! may `CREATE DATABASE` (`--postgres-url`, or `MARZNESHIN_TEST_POSTGRES_URL` /
//! `DATABASE_URL`; `bash tests/postgres.sh CMD` starts a throwaway one): a fresh database is
//! made for the run and dropped after it. Every reply is checked (status, and that the body
//! holds what was asked for); a failed check fails the run. See docs/benchmarks.md.
#![forbid(unsafe_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use benches::probe::ProcessProbe;
use benches::report::{Machine, Outcome, TargetCheck};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::Connection as _;

const ADMIN: &str = "bench";
const ADMIN_PASSWORD: &str = "bench-password-1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DbChoice {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Parser)]
#[command(
    name = "panel_load",
    about = "Panel load benchmark: marzneshin serve with N users on SQLite and PostgreSQL"
)]
struct Args {
    /// Databases to run on (`both`: PostgreSQL is reported as not measured when no server URL
    /// is given).
    #[arg(long, value_enum, default_value = "both")]
    db: DbChoice,
    /// Users created through the API before the reads are timed.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Smoke mode for CI: 100 timed requests per read operation instead of 1 000.
    #[arg(long)]
    quick: bool,
    /// Timed requests per read operation (default 1 000, or 100 with --quick).
    #[arg(long)]
    samples: Option<usize>,
    /// User creations in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// A PostgreSQL server URL whose user may CREATE DATABASE.
    #[arg(long, env = "MARZNESHIN_TEST_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Where to write panel_load.json and panel_load.md.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Do not run `cargo build --release -p service` first.
    #[arg(long)]
    no_build: bool,
    /// The marzneshin binary (default: next to this binary).
    #[arg(long)]
    marzneshin: Option<PathBuf>,
}

/// Latency of one operation.
#[derive(Clone, Debug, Serialize)]
struct Latency {
    /// Requests timed.
    samples: usize,
    /// Median, milliseconds.
    median_ms: f64,
    /// 99th percentile, milliseconds.
    p99_ms: f64,
    /// Requests per second: for creation, all requests over the wall time with
    /// `concurrency` in flight; for reads, one at a time (1 / mean latency).
    ops_per_s: f64,
}

/// One database's figures.
#[derive(Clone, Debug, Serialize)]
struct DbReport {
    /// Users in the panel when the reads were timed.
    users: usize,
    /// Creation requests in flight at once.
    concurrency: usize,
    create_user: Latency,
    list_page_100: Latency,
    get_user: Latency,
    subscription_links: Latency,
    subscription_sing_box: Latency,
    system_stats: Latency,
    /// Peak resident memory of the panel process over the whole run (VmHWM), MB (10^6 bytes).
    peak_rss_mb: f64,
    /// The issue's targets.
    targets: Vec<TargetCheck>,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    marzneshin: String,
    quick: bool,
    sqlite: Outcome<DbReport>,
    postgres: Outcome<DbReport>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("panel_load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<bool> {
    ensure!(
        args.users >= 100,
        "--users must be at least 100 (a page is 100)"
    );
    ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    if !args.no_build {
        build()?;
    }
    let binary = match &args.marzneshin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no folder for this binary")?
            .join("marzneshin"),
    };
    ensure!(
        binary.is_file(),
        "{} missing: build it with `cargo build --release -p service` (or drop --no-build)",
        binary.display()
    );
    let samples = args.samples.unwrap_or(if args.quick { 100 } else { 1000 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let sqlite = if args.db == DbChoice::Postgres {
        Outcome::skipped("--db postgres")
    } else {
        eprintln!("panel_load: SQLite, {} users", args.users);
        Outcome::from_result(runtime.block_on(bench_sqlite(&binary, args, samples)))
    };
    let postgres = match (args.db, &args.postgres_url) {
        (DbChoice::Sqlite, _) => Outcome::skipped("--db sqlite"),
        (_, None) => Outcome::from_result(Err(anyhow!(
            "no PostgreSQL server: give --postgres-url or MARZNESHIN_TEST_POSTGRES_URL \
             (bash tests/postgres.sh starts one)"
        ))),
        (_, Some(url)) => {
            eprintln!("panel_load: PostgreSQL, {} users", args.users);
            Outcome::from_result(runtime.block_on(bench_postgres(&binary, args, samples, url)))
        }
    };
    let report = Report {
        machine: Machine::detect(),
        marzneshin: binary.display().to_string(),
        quick: args.quick,
        sqlite,
        postgres,
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("panel_load.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    let md = markdown(&report);
    std::fs::write(args.out.join("panel_load.md"), &md)?;
    println!("{md}");
    eprintln!(
        "results written to {} (panel_load.json, panel_load.md)",
        args.out.display()
    );
    // A database that was asked for and not measured fails the run; missed targets do not
    // (this is a benchmark, not a test).
    let mut ok = true;
    for (name, outcome, wanted) in [
        ("SQLite", &report.sqlite, args.db != DbChoice::Postgres),
        ("PostgreSQL", &report.postgres, args.db != DbChoice::Sqlite),
    ] {
        if let Outcome::NotMeasured { error } = outcome {
            eprintln!("{name}: not measured: {error}");
            // `both` without a server: PostgreSQL is optional.
            let optional =
                name == "PostgreSQL" && args.db == DbChoice::Both && args.postgres_url.is_none();
            ok &= !wanted || optional;
        }
    }
    Ok(ok)
}

async fn bench_sqlite(binary: &Path, args: &Args, samples: usize) -> Result<DbReport> {
    let dir = temp_dir("sqlite")?;
    let url = format!("sqlite://{}?mode=rwc", dir.join("panel.db").display());
    let result = bench_on(binary, args, samples, &url, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn bench_postgres(
    binary: &Path,
    args: &Args,
    samples: usize,
    server_url: &str,
) -> Result<DbReport> {
    let name = format!(
        "mz_bench_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let mut admin = sqlx::PgConnection::connect(server_url)
        .await
        .context("connect to the PostgreSQL server")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .with_context(|| format!("CREATE DATABASE {name}"))?;
    let dir = temp_dir("postgres")?;
    let url = with_database(server_url, &name)?;
    let result = bench_on(binary, args, samples, &url, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    result
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> Result<String> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").context("not a URL")? + 3;
    let server = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    Ok(match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    })
}

fn temp_dir(kind: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "marzneshin-panel-load-{kind}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The panel process; killed on drop.
struct Panel {
    child: Child,
    base: String,
    probe: ProcessProbe,
}

impl Drop for Panel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_panel(
    binary: &Path,
    url: &str,
    dir: &Path,
    http: &reqwest::Client,
) -> Result<Panel> {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let log = std::fs::File::create(dir.join("panel.log"))?;
    let child = Command::new(binary)
        .arg("serve")
        .env("MARZNESHIN_LISTEN", addr.to_string())
        .env("DATABASE_URL", url)
        .env("MARZNESHIN_DATA_DIR", dir)
        .env("MARZNESHIN_ADMIN_USERNAME", ADMIN)
        .env("MARZNESHIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("MARZNESHIN_ENGINE_WORKERS", "1")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let probe = ProcessProbe::new(child.id())?;
    let mut panel = Panel {
        child,
        base: format!("http://{addr}"),
        probe,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = panel.child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("panel.log")).unwrap_or_default();
            bail!("the panel exited ({status}):\n{log}");
        }
        let up = http
            .get(format!("{}/openapi.json", panel.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            return Ok(panel);
        }
        ensure!(
            Instant::now() < deadline,
            "the panel did not answer within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The body of a reply whose status is 200, or an error naming the request.
async fn ok_text(what: &str, r: reqwest::Result<reqwest::Response>) -> Result<String> {
    let r = r.with_context(|| format!("{what}: no reply"))?;
    let status = r.status();
    let text = r.text().await.with_context(|| format!("{what}: body"))?;
    ensure!(status.is_success(), "{what}: {status}: {text}");
    Ok(text)
}

async fn ok_json(what: &str, r: reqwest::Result<reqwest::Response>) -> Result<Value> {
    let text = ok_text(what, r).await?;
    serde_json::from_str(&text).with_context(|| format!("{what}: not JSON: {text}"))
}

fn latency(mut ms: Vec<f64>, wall: Duration) -> Latency {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    Latency {
        samples: ms.len(),
        median_ms: at(0.5),
        p99_ms: at(0.99),
        ops_per_s: ms.len() as f64 / wall.as_secs_f64(),
    }
}

/// Times `samples` requests made one at a time; `request(i)` makes and checks the i-th.
async fn timed<F, Fut>(what: &str, samples: usize, mut request: F) -> Result<Latency>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    eprintln!("  {what}");
    // A few untimed requests first (connection set up, caches warm).
    for i in 0..samples.min(10) {
        request(i).await?;
    }
    let mut ms = Vec::with_capacity(samples);
    let started = Instant::now();
    for i in 0..samples {
        let t = Instant::now();
        request(i).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(latency(ms, started.elapsed()))
}

/// A reproducible spread of indexes in `0..n` (no RNG state shared between operations).
fn spread(i: usize, n: usize) -> usize {
    (i.wrapping_mul(7919) + 13) % n
}

async fn bench_on(
    binary: &Path,
    args: &Args,
    samples: usize,
    db_url: &str,
    dir: &Path,
) -> Result<DbReport> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let panel = start_panel(binary, db_url, dir, &http).await?;
    let base = panel.base.clone();

    let token = ok_json(
        "login",
        http.post(format!("{base}/api/admins/token"))
            .form(&[("username", ADMIN), ("password", ADMIN_PASSWORD)])
            .send()
            .await,
    )
    .await?["access_token"]
        .as_str()
        .context("no access_token")?
        .to_owned();
    let auth = format!("Bearer {token}");

    // One Shadowsocks inbound in one service: every user gets one link.
    let inbound = ok_json(
        "create inbound",
        http.post(format!("{base}/api/inbounds"))
            .header("authorization", &auth)
            .json(&json!({"config": {
                "tag": "bench",
                "listen": format!("127.0.0.1:{}", free_port()?),
                "protocol": "shadowsocks",
                "settings": {"method": "aes-256-gcm"},
            }}))
            .send()
            .await,
    )
    .await?;
    let service = ok_json(
        "create service",
        http.post(format!("{base}/api/services"))
            .header("authorization", &auth)
            .json(&json!({"name": "bench", "inbound_ids": [inbound["id"]]}))
            .send()
            .await,
    )
    .await?["id"]
        .clone();

    // Creation: `concurrency` workers taking the next index until all users exist.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (http, base, auth, next, service) = (
            http.clone(),
            base.clone(),
            auth.clone(),
            next.clone(),
            service.clone(),
        );
        let users = args.users;
        workers.push(tokio::spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= users {
                    return Ok::<_, anyhow::Error>(made);
                }
                let username = format!("user_{i:06}");
                let t = Instant::now();
                let user = ok_json(
                    "create user",
                    http.post(format!("{base}/api/users"))
                        .header("authorization", &auth)
                        .json(&json!({
                            "username": username,
                            "service_ids": [service],
                            "data_limit": 50_000_000_000i64,
                            "note": "panel_load",
                        }))
                        .send()
                        .await,
                )
                .await?;
                let elapsed = t.elapsed().as_secs_f64() * 1000.0;
                ensure!(
                    user["username"] == username,
                    "created {user}, not {username}"
                );
                let key = user["key"].as_str().context("no key")?.to_owned();
                made.push((i, key, elapsed));
            }
        }));
    }
    let mut keys = vec![String::new(); args.users];
    let mut create_ms = Vec::with_capacity(args.users);
    for w in workers {
        for (i, key, ms) in w.await?? {
            keys[i] = key;
            create_ms.push(ms);
        }
    }
    let create_user = latency(create_ms, started.elapsed());
    eprintln!(
        "  created {} users: {:.0}/s",
        args.users, create_user.ops_per_s
    );

    let pages = args.users / 100;
    let list_page_100 = timed("list a page of 100", samples, |i| {
        let (http, base, auth) = (&http, &base, &auth);
        async move {
            let page = spread(i, pages) + 1;
            let body = ok_json(
                "list users",
                http.get(format!("{base}/api/users?page={page}&size=100"))
                    .header("authorization", auth)
                    .send()
                    .await,
            )
            .await?;
            let n = body["items"].as_array().map_or(0, Vec::len);
            ensure!(n == 100, "page {page} has {n} users, not 100");
            ensure!(body["total"] == args.users, "total {} users", body["total"]);
            Ok(())
        }
    })
    .await?;

    let get_user = timed("get one user", samples, |i| {
        let (http, base, auth) = (&http, &base, &auth);
        async move {
            let name = format!("user_{:06}", spread(i, args.users));
            let body = ok_json(
                "get user",
                http.get(format!("{base}/api/users/{name}"))
                    .header("authorization", auth)
                    .send()
                    .await,
            )
            .await?;
            ensure!(body["username"] == name, "asked for {name}, got {body}");
            Ok(())
        }
    })
    .await?;

    let subscription_links = timed("subscription, links", samples, |i| {
        let (http, base, keys) = (&http, &base, &keys);
        async move {
            let n = spread(i, args.users);
            let text = ok_text(
                "links subscription",
                http.get(format!("{base}/sub/user_{n:06}/{}/links", keys[n]))
                    .send()
                    .await,
            )
            .await?;
            ensure!(
                text.lines().count() == 1 && text.starts_with("ss://"),
                "links subscription: {text}"
            );
            Ok(())
        }
    })
    .await?;

    let subscription_sing_box = timed("subscription, sing-box", samples, |i| {
        let (http, base, keys) = (&http, &base, &keys);
        async move {
            let n = spread(i, args.users);
            let body = ok_json(
                "sing-box subscription",
                http.get(format!("{base}/sub/user_{n:06}/{}/sing-box", keys[n]))
                    .send()
                    .await,
            )
            .await?;
            let shadowsocks = body["outbounds"].as_array().map_or(0, |o| {
                o.iter().filter(|o| o["type"] == "shadowsocks").count()
            });
            ensure!(shadowsocks == 1, "sing-box subscription: {body}");
            Ok(())
        }
    })
    .await?;

    let system_stats = timed("system stats", samples, |_| {
        let (http, base, auth) = (&http, &base, &auth);
        async move {
            let body = ok_json(
                "system stats",
                http.get(format!("{base}/api/system/stats"))
                    .header("authorization", auth)
                    .send()
                    .await,
            )
            .await?;
            ensure!(body["total_users"] == args.users, "stats: {body}");
            Ok(())
        }
    })
    .await?;

    let peak_rss_mb = panel.probe.memory()?.peak_kib as f64 * 1024.0 / 1e6;
    drop(panel);

    let check = |what: &str, ours: f64, bound: f64, rule: &str, met: bool| TargetCheck {
        what: what.into(),
        ours,
        bound,
        rule: rule.into(),
        met,
    };
    let targets = vec![
        check(
            "subscription (links) p99, ms",
            subscription_links.p99_ms,
            1.0,
            "at most",
            subscription_links.p99_ms <= 1.0,
        ),
        check(
            "subscription (sing-box) p99, ms",
            subscription_sing_box.p99_ms,
            1.0,
            "at most",
            subscription_sing_box.p99_ms <= 1.0,
        ),
        check(
            "list page of 100, median, ms",
            list_page_100.median_ms,
            3.6,
            "at most",
            list_page_100.median_ms <= 3.6,
        ),
        check(
            "user creations per second",
            create_user.ops_per_s,
            1000.0,
            "at least",
            create_user.ops_per_s >= 1000.0,
        ),
        check(
            "peak RSS, MB",
            peak_rss_mb,
            60.0,
            "at most",
            peak_rss_mb <= 60.0,
        ),
    ];
    Ok(DbReport {
        users: args.users,
        concurrency: args.concurrency,
        create_user,
        list_page_100,
        get_user,
        subscription_links,
        subscription_sing_box,
        system_stats,
        peak_rss_mb,
        targets,
    })
}

fn markdown(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Panel load: {} ({} CPUs){}\n",
        report.machine.cpu,
        report.machine.cpus,
        if report.quick {
            ", quick (smoke) run"
        } else {
            ""
        }
    );
    let dbs = [("SQLite", &report.sqlite), ("PostgreSQL", &report.postgres)];
    for (name, outcome) in dbs {
        let r = match outcome {
            Outcome::Measured(r) => r,
            Outcome::NotMeasured { error } => {
                let _ = writeln!(md, "**{name}**: not measured: {error}\n");
                continue;
            }
            Outcome::Skipped { skipped } => {
                let _ = writeln!(md, "**{name}**: skipped ({skipped})\n");
                continue;
            }
        };
        let _ = writeln!(
            md,
            "**{name}**, {} users (created {} at a time), peak RSS {:.1} MB\n",
            r.users, r.concurrency, r.peak_rss_mb
        );
        let _ = writeln!(md, "| operation | samples | median ms | p99 ms | ops/s |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        for (op, l) in [
            ("create user", &r.create_user),
            ("list a page of 100", &r.list_page_100),
            ("get one user", &r.get_user),
            ("subscription, links", &r.subscription_links),
            ("subscription, sing-box", &r.subscription_sing_box),
            ("system stats", &r.system_stats),
        ] {
            let _ = writeln!(
                md,
                "| {op} | {} | {:.3} | {:.3} | {:.0} |",
                l.samples, l.median_ms, l.p99_ms, l.ops_per_s
            );
        }
        let _ = writeln!(md, "\n| target | ours | bound | |\n|---|---:|---:|---|");
        for t in &r.targets {
            let _ = writeln!(
                md,
                "| {} | {:.3} | {} {} | {} |",
                t.what,
                t.ours,
                t.rule,
                t.bound,
                if t.met { "pass" } else { "FAIL" }
            );
        }
        md.push('\n');
    }
    md
}

/// Builds the panel binary in release (`cargo build --release -p service`).
fn build() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let args = ["build", "--release", "-p", "service", "--bin", "marzneshin"];
    eprintln!("running: cargo {}", args.join(" "));
    let mut cmd = Command::new(&cargo);
    // Leave out what `cargo run` told us about this package: build scripts rerun when it
    // changes (see side_by_side's build()).
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
    let status = cmd.args(args).current_dir(&root).status()?;
    ensure!(status.success(), "cargo {} failed", args.join(" "));
    Ok(())
}

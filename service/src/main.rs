//! `marzneshin`: the panel service and the engine's command line.
//!
//! A thin `main`: parse the command line, set up logging, hand over to the subcommand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use engine::{Config, Engine};

#[derive(Parser)]
#[command(
    name = "marzneshin",
    version,
    about = "Marzneshin: proxy panel and data-plane engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the panel (API, engine, usage accounting) until SIGINT or SIGTERM. Configured by
    /// environment variables (docs/configuration.md); SQLite under ./data by default.
    Serve,
    /// Write the OpenAPI document of the panel's API to stdout.
    Openapi {
        /// Write the dashboard's API client (service/dashboard/api.js) generated from it instead.
        #[arg(long)]
        client: bool,
    },
    /// Run or inspect the data-plane engine on its own.
    Engine {
        #[command(subcommand)]
        command: EngineCommand,
    },
}

#[derive(Subcommand)]
enum EngineCommand {
    /// Run the engine from a JSON config until SIGINT or SIGTERM.
    Run {
        /// Engine configuration (see docs/engine-config.md).
        #[arg(long)]
        config: PathBuf,
        /// Let users relay to 127.0.0.0/8 and ::1. For local testing only.
        #[arg(long)]
        allow_loopback: bool,
        /// Seconds live connections get to finish when stopping.
        #[arg(long, default_value_t = 10)]
        grace: u64,
        /// Print counters as JSON lines on stdout every this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        stats_interval: u64,
    },
    /// Print the JSON Schema of the engine configuration.
    Schema,
    /// Print a share link for every user on every inbound.
    Links {
        /// Engine configuration.
        #[arg(long)]
        config: PathBuf,
        /// Host name or address clients should connect to (default: each inbound's listen IP).
        #[arg(long)]
        address: Option<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve(),
        Command::Openapi { client: false } => {
            print!("{}", service::api::service().spec());
            println!();
            Ok(())
        }
        Command::Openapi { client: true } => print_client(),
        Command::Engine { command } => match command {
            EngineCommand::Run {
                config,
                allow_loopback,
                grace,
                stats_interval,
            } => run_engine(
                config,
                allow_loopback,
                Duration::from_secs(grace),
                stats_interval,
            ),
            EngineCommand::Links { config, address } => print_links(config, address),
            EngineCommand::Schema => {
                print!("{}", Config::json_schema());
                Ok(())
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> anyhow::Result<()> {
    // Before any thread starts: the panel's threads each got a malloc arena of their own.
    engine::runtime::limit_malloc_arenas(2);
    let config = service::config::PanelConfig::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(service::serve::run(config))
}

fn print_client() -> anyhow::Result<()> {
    let spec: serde_json::Value = serde_json::from_str(&service::api::service().spec())?;
    print!("{}", service::dashboard::client::generate(&spec));
    Ok(())
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
}

fn run_engine(
    path: PathBuf,
    allow_loopback: bool,
    grace: Duration,
    stats_interval: u64,
) -> anyhow::Result<()> {
    let mut config = load(&path)?;
    if allow_loopback {
        config.outbound.allow_loopback = true;
        tracing::warn!("--allow-loopback: users may relay to 127.0.0.0/8 and ::1");
    }
    // Register the handlers before any worker starts: whichever thread a signal lands on,
    // the iterator below receives it.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let handle = Engine::start(config)?;
    for ib in handle.inbound_stats() {
        if let Some(addr) = handle.local_addr(&ib.tag) {
            tracing::info!(inbound = %ib.tag, %addr, "listening");
        }
    }
    if stats_interval > 0 {
        let h = handle.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(stats_interval));
            let line =
                serde_json::json!({ "users": h.user_stats(), "inbounds": h.inbound_stats() });
            println!("{line}");
        });
    }
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "stopping");
    }
    handle.stop(grace);
    Ok(())
}

fn print_links(path: PathBuf, address: Option<String>) -> anyhow::Result<()> {
    let config = load(&path)?;
    for link in engine::links::share_links(&config, address.as_deref()) {
        println!("{}", link.url);
    }
    Ok(())
}

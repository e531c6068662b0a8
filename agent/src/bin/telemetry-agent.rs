//! `telemetry-agent`: the Horizon telemetry node agent.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use horizon_agent::Agent;
use horizon_agent::config::{Config, Overrides, Settings, TlsSource};
use tracing::{error, info};

/// Node agent: scrapes Prometheus exporters (node_exporter, dcgm-exporter)
/// and reads GPUs through NVML, keeps every batch in an on-disk spool until
/// the relay acks it, and streams to the relay over QUIC with mutual TLS.
///
/// With no arguments at all it sends to a development relay on this machine
/// (127.0.0.1:5001), issuing itself a node certificate from the relay's
/// development CA in .dev/certs; the spool goes to data/spool and its own
/// metrics to http://127.0.0.1:9102/metrics.
///
/// Examples:
///   telemetry-agent --scrape http://127.0.0.1:9100/metrics
///   telemetry-agent /etc/horizon/agent.yaml
///   telemetry-agent --check-config /etc/horizon/agent.yaml
///
/// Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad configuration.
/// Logs go to stderr; RUST_LOG overrides observability.log_level.
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Opt {
    /// YAML configuration file (every key: infra/agent.example.yaml). Flags override it.
    config: Option<PathBuf>,
    /// Validate the configuration, print what the agent would do, and exit (0 valid, 2 invalid).
    #[arg(long)]
    check_config: bool,
    /// Relay (or load balancer) address [default: 127.0.0.1:5001].
    #[arg(long, value_name = "HOST:PORT")]
    relay: Option<String>,
    /// Prometheus/OpenMetrics URL to scrape; repeat for several targets.
    #[arg(long, value_name = "URL")]
    scrape: Vec<String>,
    /// Directory of the durable spool [default: data/spool].
    #[arg(long, value_name = "DIR")]
    spool_dir: Option<PathBuf>,
    /// Scrape interval in seconds for targets without their own [default: 10].
    #[arg(long, value_name = "SECS")]
    interval: Option<f64>,
    /// Certificate directory: node.pem, node-key.pem and ca.pem if node.pem
    /// exists, otherwise a development CA (ca.pem, ca-key.pem) to issue a node
    /// certificate from [default: .dev/certs].
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// Node name for a development certificate [default: the host name].
    #[arg(long)]
    node: Option<String>,
    /// Address of the agent's own /metrics endpoint ("" disables it) [default: 127.0.0.1:9102].
    #[arg(long, value_name = "IP:PORT")]
    metrics_addr: Option<String>,
    /// Do not read GPUs through NVML.
    #[arg(long)]
    no_gpu: bool,
}

fn load(opt: &Opt) -> Result<Settings, horizon_agent::config::ConfigError> {
    let mut cfg = match &opt.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    cfg.apply(&Overrides {
        relay: opt.relay.clone(),
        scrape: opt.scrape.clone(),
        spool_dir: opt.spool_dir.clone(),
        interval_secs: opt.interval,
        certs: opt.certs.clone(),
        metrics_addr: opt.metrics_addr.clone(),
        node: opt.node.clone(),
        no_gpu: opt.no_gpu,
    });
    cfg.validate()
}

fn init_logs(s: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{},quinn=warn,quinn_proto=warn",
            s.observability.log_level
        ))
    });
    // Colours only for a person at a terminal: a log file or the journal
    // gets plain text (and NO_COLOR turns them off everywhere).
    let colours = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    if s.observability.log_json {
        b.json().flatten_event(true).init();
    } else {
        b.init();
    }
}

fn main() -> ExitCode {
    let opt = Opt::parse();
    let settings = match load(&opt) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("telemetry-agent: {e}");
            return ExitCode::from(2);
        }
    };
    if opt.check_config {
        let tls = match &settings.security.tls {
            TlsSource::Files { cert, .. } => format!("node certificate {}", cert.display()),
            TlsSource::Dev(dir) => {
                format!(
                    "development certificate for {:?} from the CA in {}",
                    settings.security.dev_node_name,
                    dir.display()
                )
            }
        };
        println!(
            "configuration is valid: relay {} (server name {}), {}",
            settings.relay.addr, settings.relay.server_name, tls
        );
        println!(
            "spool {} (cap {} MiB, sync {:?}), metrics on {}, NVML {}",
            settings.spool.dir.display(),
            settings.spool.options.max_bytes >> 20,
            settings.spool.options.sync,
            settings
                .observability
                .metrics_addr
                .map_or("(disabled)".to_owned(), |a| a.to_string()),
            if settings.gpu.enabled { "on" } else { "off" },
        );
        for l in &settings.lowered {
            println!("note: {l}");
        }
        for t in &settings.targets {
            println!(
                "scrape {} every {:?} (timeout {:?}){}",
                t.url,
                t.interval,
                t.timeout,
                if t.name == t.url {
                    String::new()
                } else {
                    format!(" as {:?}", t.name)
                }
            );
        }
        return ExitCode::SUCCESS;
    }
    init_logs(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("telemetry-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let tls =
        horizon_agent::tls::load_tls(&settings.security.tls, &settings.security.dev_node_name)?;
    let node = horizon_shared::tls::identity_from_cert(&tls.chain[0])
        .unwrap_or_else(|_| "(unreadable)".into());
    info!(node = %node, relay = %settings.relay.addr, targets = settings.targets.len(), "telemetry-agent starting");
    let agent = Agent::start(settings, tls, None).await?;
    if let Some(a) = agent.metrics_addr {
        info!(metrics = %format!("http://{a}/metrics"), "agent metrics");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("stopping: waiting up to 5 s for acks; the rest stays in the spool");
    agent.stop().await?;
    Ok(())
}

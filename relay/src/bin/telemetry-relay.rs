//! `telemetry-relay`: the Horizon telemetry relay.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use horizon_relay::Relay;
use horizon_relay::config::{Config, Settings, TlsSource};
use tracing::{error, info, warn};

/// QUIC + mutual-TLS relay for GPU node telemetry.
///
/// With no CONFIG it runs on embedded defaults: QUIC on 0.0.0.0:5001,
/// metrics on :9091, and a development CA with relay certificate created in
/// .dev/certs (never use those in production).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Opt {
    /// YAML configuration file (see infra/config.example.yaml).
    config: Option<PathBuf>,
    /// Validate the configuration, print a summary and exit (0: valid, 2: invalid).
    #[arg(long)]
    check_config: bool,
}

fn load(path: Option<&PathBuf>) -> Result<Settings, horizon_relay::config::ConfigError> {
    let cfg = match path {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    cfg.validate()
}

fn init_logs(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{},quinn=warn,quinn_proto=warn",
            settings.observability.log_level
        ))
    });
    // Colours only for a person at a terminal: a log file or the journal
    // gets plain text (and NO_COLOR turns them off everywhere).
    let colours = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    if settings.observability.log_json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let opt = Opt::parse();
    let settings = match load(opt.config.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("telemetry-relay: {e}");
            return ExitCode::from(2);
        }
    };
    if opt.check_config {
        let tls = match &settings.security.tls {
            TlsSource::Files { cert, .. } => format!("certificates from {}", cert.display()),
            TlsSource::Dev(dir) => format!("development certificates in {}", dir.display()),
        };
        println!(
            "configuration is valid: QUIC on {}, {}, metrics on {}, {} series per node, {} relay-wide",
            settings.server.listen_addr,
            tls,
            settings
                .observability
                .metrics_addr
                .map_or("(disabled)".to_owned(), |a| a.to_string()),
            settings.budgets.max_series_per_node,
            settings.budgets.max_series_total,
        );
        println!(
            "sinks: Parquet to {} (prefix {:?}), {} acks, InfluxDB {}",
            settings.parquet.location,
            settings.parquet.raw_prefix,
            if settings.durable_acks {
                "durable"
            } else {
                "received"
            },
            settings
                .influxdb
                .as_ref()
                .map_or("off".to_owned(), |i| i.url.clone()),
        );
        return ExitCode::SUCCESS;
    }
    init_logs(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("telemetry-relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings, opt.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let relay_id = settings.server.relay_id.clone();
    let crl = settings.security.crl.clone();
    let relay = Relay::bind(settings)
        .await
        .context("relay failed to start")?;
    info!(
        relay_id = %relay_id,
        quic = %relay.local_addr(),
        metrics = %relay.metrics_addr().map_or("disabled".to_owned(), |a| a.to_string()),
        "relay listening (ALPN horizon-telemetry/1, client certificates required)"
    );
    let budgets = relay.budgets();
    let tls = relay.tls_reloader();
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        let mut crl = crl;
        while hangup.recv().await.is_some() {
            let config = load(config_path.as_ref());
            // The CRL paths of the new configuration, or the current ones.
            if let Ok(new) = &config {
                crl = new.security.crl.clone();
            }
            match tls.reload_with(&crl) {
                Ok(r) => info!(
                    crls = r.crls,
                    crl_expired = r.crl_expired,
                    revoked_closed = r.revoked_closed,
                    "SIGHUP: reloaded the relay certificate, key, client CA and CRLs (new connections use them; open ones keep theirs unless revoked)"
                ),
                Err(e) => {
                    warn!(error = %e, "SIGHUP: certificates and CRLs not reloaded, keeping the current ones")
                }
            }
            match config {
                Ok(new) => {
                    info!(
                        max_series_per_node = new.budgets.max_series_per_node,
                        max_cardinality = new.budgets.max_series_total,
                        overrides = new.budgets.overrides.len(),
                        "SIGHUP: reloaded budgets and CRL paths (other settings, certificate paths included, apply on restart)"
                    );
                    budgets.reconfigure(new.budgets);
                }
                Err(e) => {
                    warn!(error = %e, "SIGHUP: configuration invalid, keeping the current one")
                }
            }
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => info!("interrupt received"),
        }
    };
    relay.run(shutdown).await?;
    Ok(())
}

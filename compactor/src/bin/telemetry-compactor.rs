//! `telemetry-compactor`: compacts the relays' raw micro-batches into
//! hourly Parquet files. Run it by hand or from cron, or as an AWS Lambda
//! function (`telemetry-compactor lambda`, or no arguments at all when
//! `AWS_LAMBDA_RUNTIME_API` is set, as in a Lambda image or zip).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use horizon_compactor::{
    Compactor, DayOutcome, DayResult, FoldKind, Outcome, Progress, RunOptions, Selection, Settings,
    Unit, UnitReport, UnitResult,
};
use horizon_shared::clock::unix_ms_now;
use horizon_shared::layout::Hour;
use indicatif::{ProgressBar, ProgressStyle};

/// Compacts the relays' raw Parquet micro-batches into hourly, sorted,
/// snappy-compressed files, each point once.
///
/// Without --hour or --from/--to it compacts every closed hour that has raw
/// objects (an hour closes once it ended --allowed-lateness-secs ago). Every
/// flag can also be set by its HORIZON_* environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "telemetry-compactor",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Compact this hour only (UTC, e.g. 2026-11-23T10), closed or not.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    hour: Option<String>,

    /// First hour of a range to compact (UTC, e.g. 2026-11-01T00).
    #[arg(long, requires = "to")]
    from: Option<String>,

    /// Last hour of the range (inclusive).
    #[arg(long, requires = "from")]
    to: Option<String>,

    /// Only this shard of each hour.
    #[arg(long)]
    shard: Option<u32>,

    /// Print what would be compacted; change nothing.
    #[arg(long)]
    dry_run: bool,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,

    /// Log format: text or json.
    #[arg(long, env = "HORIZON_LOG_FORMAT", default_value = "text")]
    log_format: String,

    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run as an AWS Lambda function (settings from HORIZON_* variables).
    Lambda,
    /// Add rollups to hours compacted before the compactor wrote them, and
    /// make the 1-hour rollups of their closed days. Safe to run again: a
    /// unit with rollups is left as it is.
    Rollup(Box<RollupArgs>),
}

#[derive(Debug, clap::Args)]
struct RollupArgs {
    /// First hour (UTC, e.g. 2026-11-01T00).
    #[arg(long)]
    from: String,

    /// Last hour (inclusive).
    #[arg(long)]
    to: String,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    settings: Settings,
}

fn init_logs(format: &str, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn planned(&self, units: &[Unit]) {
        self.0.set_length(units.len() as u64);
    }
    fn started(&self, unit: &Unit) {
        self.0.set_message(unit.to_string());
    }
    fn finished(&self, r: &UnitReport) {
        self.0.println(line(r));
        self.0.inc(1);
    }
}

fn line(r: &UnitReport) -> String {
    let unit = if r.shards > 1 {
        format!("{} shard {}/{}", r.hour, r.shard, r.shards)
    } else {
        r.hour.clone()
    };
    let what = match &r.result {
        UnitResult::Ok(Outcome::Compacted(c)) if c.kind == FoldKind::Rollups => format!(
            "generation {}: rollups added to {} rows ({} files, {:.1} MiB)",
            c.generation,
            c.rows_out,
            c.rollup_files,
            c.rollup_bytes as f64 / 1048576.0
        ),
        UnitResult::Ok(Outcome::Compacted(c)) => {
            let mut s = format!(
                "generation {}: {} raw objects ({:.1} MiB) -> {} rows in {} files ({:.1} MiB), {} duplicates dropped",
                c.generation,
                c.raw_objects,
                c.raw_bytes as f64 / 1048576.0,
                c.rows_out,
                c.files,
                c.bytes as f64 / 1048576.0,
                c.duplicates
            );
            if c.value_conflicts > 0 {
                s.push_str(&format!(
                    " ({} with another value than the copy kept)",
                    c.value_conflicts
                ));
            }
            if !c.quarantined.is_empty() {
                s.push_str(&format!(
                    "; {} unreadable objects quarantined",
                    c.quarantined.len()
                ));
            }
            s
        }
        UnitResult::Ok(Outcome::UpToDate {
            generation,
            quarantined,
            ..
        }) => {
            let mut s = format!("up to date (generation {generation})");
            if !quarantined.is_empty() {
                s.push_str(&format!(
                    "; {} unreadable objects quarantined",
                    quarantined.len()
                ));
            }
            s
        }
        UnitResult::Ok(Outcome::Busy {
            owner,
            expires_at_ms,
        }) => {
            format!(
                "skipped: held by {owner} for {} s more",
                (expires_at_ms - unix_ms_now()).max(0) / 1000
            )
        }
        UnitResult::Ok(Outcome::Planned(p)) => format!(
            "would fold {} raw objects ({:.1} MiB) into generation {} ({} rows now)",
            p.new_raw_objects,
            p.new_raw_bytes as f64 / 1048576.0,
            p.generation + u64::from(p.new_raw_objects > 0),
            p.rows
        ),
        UnitResult::Failed { error, .. } => format!("FAILED: {error}"),
    };
    format!("{unit}: {what} [{} ms]", r.elapsed_ms)
}

fn day_line(d: &DayResult) -> String {
    match d {
        DayResult::Ok(DayOutcome::Built {
            day,
            generation,
            rows,
            files,
            bytes,
        }) => format!(
            "{day} 1-hour rollups: generation {generation}, {rows} rows in {files} files ({:.1} MiB)",
            *bytes as f64 / 1048576.0
        ),
        DayResult::Ok(DayOutcome::UpToDate { day }) => format!("{day} 1-hour rollups: up to date"),
        DayResult::Ok(DayOutcome::Skipped { day, reason }) => {
            format!("{day} 1-hour rollups: not made now: {reason}")
        }
        DayResult::Failed { day, error, .. } => format!("{day} 1-hour rollups: FAILED: {error}"),
    }
}

fn hour(flag: &str, v: &str) -> anyhow::Result<Hour> {
    Hour::parse(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
}

/// The hours from `from` to `to`, inclusive.
fn range(from: &str, to: &str) -> anyhow::Result<Vec<Hour>> {
    let (from, to) = (hour("from", from)?, hour("to", to)?);
    if to < from {
        anyhow::bail!("--to {to} is before --from {from}");
    }
    let mut hours = vec![from];
    while let Some(last) = hours.last().copied()
        && last < to
    {
        hours.push(last.next());
    }
    Ok(hours)
}

async fn rollup(args: RollupArgs) -> anyhow::Result<ExitCode> {
    let hours = range(&args.from, &args.to)?;
    let compactor = Compactor::new(args.settings)?;
    let report = compactor.rollup(&hours, &()).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        for r in &report.units {
            println!("{}", line(r));
        }
        for d in &report.days {
            println!("{}", day_line(d));
        }
        if report.units.is_empty() {
            eprintln!(
                "nothing to do: no compacted hour from {} to {}",
                args.from, args.to
            );
        }
    }
    let failures = report.failures();
    if failures > 0 {
        eprintln!("{failures} unit(s) or day(s) failed; re-running is safe and resumes them");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let selection = match (&cli.hour, &cli.from, &cli.to) {
        (Some(h), _, _) => Selection::Hours(vec![hour("hour", h)?]),
        (None, Some(from), Some(to)) => Selection::Hours(range(from, to)?),
        _ => Selection::Closed {
            now_ms: unix_ms_now(),
        },
    };
    let compactor = Compactor::new(cli.settings)?;
    let opts = RunOptions {
        dry_run: cli.dry_run,
        shard: cli.shard,
        start_deadline_ms: None,
    };
    let report = if std::io::stderr().is_terminal() && !cli.json {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let report = compactor.run(&selection, &opts, &Bar(bar.clone())).await;
        bar.finish_and_clear();
        report
    } else {
        compactor.run(&selection, &opts, &()).await
    }?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else if !std::io::stderr().is_terminal() {
        for r in &report.units {
            println!("{}", line(r));
        }
    }
    if !cli.json {
        for d in &report.days {
            println!("{}", day_line(d));
        }
    }
    if report.units.is_empty() {
        eprintln!(
            "nothing to compact: no {} hour with raw objects",
            match selection {
                Selection::Closed { .. } => "closed",
                Selection::Hours(_) => "selected",
            }
        );
    }
    let failures = report.failures();
    if failures > 0 {
        eprintln!("{failures} unit(s) or day(s) failed; re-running is safe and resumes them");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let lambda_env = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let cli = Cli::parse();
    let as_lambda = matches!(cli.command, Some(Command::Lambda))
        || (lambda_env && std::env::args_os().len() == 1);
    // Decoding and sorting run on blocking threads; glibc gives each thread
    // its own malloc arena and keeps what is freed there, so many blocking
    // threads multiply resident memory (docs/benchmarks.md, "Compactor").
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(cores)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if as_lambda {
        init_logs("json", "info");
        let compactor = match Compactor::new(cli.settings) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        return match rt.block_on(horizon_compactor::lambda::serve(compactor)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        };
    }
    init_logs(&cli.log_format, "warn");
    let done = match cli.command {
        Some(Command::Rollup(args)) => rt.block_on(rollup(*args)),
        _ => rt.block_on(run(cli)),
    };
    match done {
        Ok(code) => code,
        Err(e) => {
            // The top-level message only: library errors already name their cause.
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

//! `strait`: the standalone proxy, also started by Istio's `pilot-agent` in
//! Envoy's place. Parses the command line (`strait_app::cli`: `run`, `check`,
//! and Envoy's flags), installs logging, runs the app until a signal.
//! Everything else lives in `strait-app`.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use strait_app::{
    ConfigSource, Options, Proxy,
    cli::{CommandLine, Mode, USAGE},
};

const DEFAULT_CONFIG: &str = include_str!("../default.yaml");

/// How long listeners drain on a signal when `--drain-time-s` is not given.
const DEFAULT_DRAIN: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strait: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args = CommandLine::parse(std::env::args().skip(1))?;
    match args.mode {
        Mode::Help => {
            println!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        Mode::Check => return check(&args),
        Mode::Run => {}
    }
    let source = match &args.config {
        Some(path) => ConfigSource::File(path.clone()),
        None => ConfigSource::Inline(DEFAULT_CONFIG.into()),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log_level).context("-l")?)
        .with_writer(std::io::stderr)
        .init();
    let mut opts = Options::new(source);
    opts.overrides = args.overrides.clone();
    if let Some(n) = args.concurrency {
        opts.concurrency = n;
    }
    let mut proxy = Proxy::start(opts)?;
    proxy.run_until_signal()?;
    tracing::info!("shutting down");
    proxy.shutdown(args.drain_time.unwrap_or(DEFAULT_DRAIN));
    Ok(ExitCode::SUCCESS)
}

fn check(args: &CommandLine) -> anyhow::Result<ExitCode> {
    let Some(path) = &args.config else {
        bail!("check needs -c FILE")
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(match strait_app::check_with(&text, &args.overrides) {
        Ok(_) => {
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{}: {e}", path.display());
            }
            ExitCode::FAILURE
        }
    })
}

//! `strait`: the standalone proxy. Parses flags, installs logging, runs the
//! app until a signal. Everything else lives in `strait-app`.
//!
//! Usage:
//!   strait                          run the embedded default config
//!   strait run [-c FILE] [--concurrency N] [-l LEVEL]
//!   strait check -c FILE            validate; print every problem; exit 1 on any
//!   strait -c FILE ...              as `run` (Envoy's command line shape)

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, bail};
use strait_app::{ConfigSource, Options, Proxy};

const DEFAULT_CONFIG: &str = include_str!("../default.yaml");

struct Args {
    check: bool,
    config: Option<PathBuf>,
    concurrency: Option<usize>,
    level: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        check: false,
        config: None,
        concurrency: None,
        level: "info".into(),
    };
    let mut it = std::env::args().skip(1).peekable();
    match it.peek().map(String::as_str) {
        Some("run") => {
            it.next();
        }
        Some("check") => {
            args.check = true;
            it.next();
        }
        _ => {}
    }
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-c" | "--config-path" | "--config" => args.config = Some(value()?.into()),
            "--concurrency" => args.concurrency = Some(value()?.parse().context("--concurrency")?),
            "-l" | "--log-level" => args.level = value()?,
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("main.rs")
                        .lines()
                        .skip(3)
                        .take(5)
                        .map(|l| &l[3.min(l.len())..])
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

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
    let args = parse_args()?;
    let source = match &args.config {
        Some(path) => ConfigSource::File(path.clone()),
        None => ConfigSource::Inline(DEFAULT_CONFIG.into()),
    };
    if args.check {
        let Some(path) = &args.config else {
            bail!("check needs -c FILE")
        };
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(match strait_app::check(&text) {
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
        });
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.level).context("-l")?)
        .with_writer(std::io::stderr)
        .init();
    let mut opts = Options::new(source);
    if let Some(n) = args.concurrency {
        opts.concurrency = n;
    }
    let mut proxy = Proxy::start(opts)?;
    proxy.run_until_signal()?;
    tracing::info!("shutting down");
    proxy.shutdown(Duration::from_millis(500));
    Ok(ExitCode::SUCCESS)
}

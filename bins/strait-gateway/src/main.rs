//! `strait-gateway`: Strait in the ingress role, the edge proxy in front of
//! a mesh or a set of services. It runs an Envoy v3 bootstrap from a file
//! (`-c FILE`, also spelled `--config`), watched and hot-reloaded, or one
//! rendered by `pilot-agent proxy router` for an Istio ingress gateway
//! (the same Envoy command line as `strait-sidecar` takes). `check -c FILE`
//! validates a bootstrap and prints every problem.
//!
//! Gateway defaults, where they differ from `strait`'s:
//!
//! - `-c` is required: a gateway serves the routes it is given, so there is
//!   no embedded demo config to answer in their place.
//! - `--drain-time-s` defaults to 45: on SIGTERM/SIGINT, requests from
//!   clients outside the mesh get as long to finish as an Istio ingress
//!   gateway gives them (ProxyConfig `drainDuration`, 45 s unless set)
//!   instead of `strait`'s half second.
//!
//! Everything else is as in `strait`: `-l info`, one worker per core, and
//! every Envoy flag with the same meaning.

use std::{process::ExitCode, time::Duration};

use strait_cli::{Mode, Profile};

const PROFILE: Profile = Profile {
    synopsis: "  strait-gateway [run] -c FILE [FLAGS]    run FILE (watched; SIGHUP re-reads it)
  strait-gateway check -c FILE [FLAGS]    validate; print every problem; exit 1 on any

defaults: --drain-time-s 45; -c is required",
    embedded_config: None,
    log_level: "info",
    drain_time: Duration::from_secs(45),
};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strait-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args = PROFILE.parse(std::env::args().skip(1))?;
    match args.mode {
        Mode::Help => println!("{}", PROFILE.usage()),
        Mode::Check => return Ok(strait_cli::check(&args)?),
        Mode::Run => PROFILE.run(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

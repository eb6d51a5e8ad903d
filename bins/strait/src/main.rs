//! `strait`: the standalone proxy. `strait` runs the embedded default config
//! (a page on 127.0.0.1:10000, admin on 127.0.0.1:9901), `strait run -c
//! FILE` runs an Envoy v3 bootstrap (watched, hot-reloaded), `strait check
//! -c FILE` validates one. It also takes Envoy's command line as Istio's
//! `pilot-agent` gives it, so it can be started in Envoy's place. The
//! command line and start-up are `strait-cli`'s, the proxy `strait-app`'s;
//! this file holds only what differs from the other binaries.

use std::{process::ExitCode, time::Duration};

use strait_cli::{Mode, Profile};

const PROFILE: Profile = Profile {
    synopsis: "  strait                          run the embedded default config
  strait [run] -c FILE [FLAGS]    run FILE (Envoy's command line shape)
  strait check -c FILE [FLAGS]    validate; print every problem; exit 1 on any",
    embedded_config: Some(include_str!("../default.yaml")),
    log_level: "info",
    // Short, for a proxy run by hand; pilot-agent always passes its own.
    drain_time: Duration::from_millis(500),
};

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
    let args = PROFILE.parse(std::env::args().skip(1))?;
    match args.mode {
        Mode::Help => println!("{}", PROFILE.usage()),
        Mode::Check => return Ok(strait_cli::check(&args)?),
        Mode::Run => PROFILE.run(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

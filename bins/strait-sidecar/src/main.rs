//! `strait-sidecar`: Strait as an Istio sidecar. An Istio install points
//! `meshConfig.defaultConfig.binaryPath` (or a pod's `proxy.istio.io/config`)
//! at this binary, and `pilot-agent proxy sidecar` starts it exactly as it
//! starts Envoy (`pkg/envoy/proxy.go`):
//!
//! ```text
//! strait-sidecar -c ./etc/istio/proxy/envoy-rev.json --drain-time-s 45 \
//!   --drain-strategy immediate --local-address-ip-version v4 \
//!   --file-flush-interval-msec 1000 --disable-hot-restart \
//!   --allow-unknown-static-fields -l warning --skip-deprecated-logs \
//!   [--component-log-level ...] [--config-yaml ...] [--concurrency N]
//! ```
//!
//! Every flag of that line is accepted, with the meaning `strait-cli`'s
//! parser and docs/CONFIG.md give it. Where Istio's defaults differ from
//! Envoy's, this binary takes Istio's, so run by hand it behaves as under
//! pilot-agent:
//!
//! - `-c` is required: a sidecar runs the bootstrap pilot-agent renders,
//!   so there is no embedded config to fall back on.
//! - `--drain-time-s` defaults to 45: pilot-agent passes ProxyConfig
//!   `drainDuration`, 45 s unless set (Envoy's own default is 600 s).
//! - `-l` defaults to `warning`: pilot-agent passes its `--proxyLogLevel`,
//!   `warning` unless set (Envoy's is `info`).
//!
//! Left at Envoy's defaults: `--allow-unknown-static-fields`, although
//! pilot-agent always passes it, because Envoy's flag has no negative form
//! and defaulting it on would leave no way to validate strictly; and
//! `--concurrency`, which pilot-agent omits only for ProxyConfig
//! `concurrency: 0`, meaning every core, Envoy's default already.
//! `check -c FILE` validates a bootstrap as `strait check` does.

use std::{process::ExitCode, time::Duration};

use strait_cli::{Mode, Profile};

const PROFILE: Profile = Profile {
    synopsis:
        "  strait-sidecar [run] -c FILE [FLAGS]    run FILE, started by pilot-agent in Envoy's place
  strait-sidecar check -c FILE [FLAGS]    validate; print every problem; exit 1 on any

defaults (Istio's): -l warning, --drain-time-s 45; -c is required",
    embedded_config: None,
    log_level: "warn",
    drain_time: Duration::from_secs(45),
};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strait-sidecar: {e:#}");
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

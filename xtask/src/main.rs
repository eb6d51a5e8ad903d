//! Project automation, run as `cargo xtask <command>`.
//!
//! Owns developer tooling only: nothing in the workspace depends on it. It
//! drives the built binaries from the outside; its one Strait dependency is
//! `strait-test-support`, for the test ADS control plane that `bench xds`
//! pushes through.
//!
//! Commands:
//! - `bench`: Strait against Envoy and nginx as reverse proxies (see `bench.rs`);
//!   `bench --tls`: Strait against Envoy terminating TLS (see `tls_bench.rs`);
//!   `bench --callgrind [--baseline OLD]`: instructions per request, an A/B
//!   that noise does not move (see `callgrind.rs`); `bench --telemetry`:
//!   what Istio's stats, access log and 1% tracing add per request (see
//!   `telemetry_bench.rs`).
//! - `bench xds`: one large xDS push to Strait and Envoy: apply time and
//!   memory (see `xds_bench.rs`).
//! - `layers`: the layering guard: tiers declared in every manifest, no
//!   dependency on a higher tier, no import circle inside a library crate
//!   (see `layers.rs` and docs/decisions/0009-tiers-and-layering-guard.md).
//! - `istio-bookinfo`: the real istiod and pilot-agent drive Strait through
//!   BookInfo in network namespaces (see `istio_box/`); `bookinfo-app` is
//!   internal, the stand-in app it runs in each pod.
//! - `loadgen`: internal; the open-loop fixed-rate load generator that `bench`
//!   runs pinned to its own core (see `loadgen.rs`).

mod bench;
mod callgrind;
mod configs;
mod istio_box;
mod layers;
mod loadgen;
mod procs;
mod telemetry_bench;
mod tls_bench;
mod xds_bench;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  bench     compare Strait, Envoy and nginx as reverse proxies
            (`cargo xtask bench --help` for options)
  bench xds a large xDS push to Strait and Envoy: apply time and RSS
            (`cargo xtask bench xds --help` for options)
  istio-bookinfo  Istio's istiod and pilot-agent drive Strait sidecars and
            a gateway through BookInfo in network namespaces (root)
  layers    the layering guard: tiers, protobuf below the front end,
            import circles (`cargo xtask layers --help`)
";

fn main() {
    if let Err(err) = run() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    match command.as_deref() {
        Some("bench") if rest.first().is_some_and(|a| a == "xds") => {
            let Some(options) = xds_bench::Options::parse(&rest[1..])? else {
                print!("{}", xds_bench::USAGE);
                return Ok(());
            };
            xds_bench::run(&options)
        }
        Some("bench") => {
            let Some(options) = bench::Options::parse(&rest)? else {
                print!("{}", bench::USAGE);
                return Ok(());
            };
            bench::run(&options)
        }
        Some("layers") => layers::run(&rest),
        Some("istio-bookinfo") => {
            let Some(options) = istio_box::Options::parse(&rest)? else {
                print!("{}", istio_box::USAGE);
                return Ok(());
            };
            istio_box::run(&options)
        }
        Some("bookinfo-app") => istio_box::run_app(istio_box::AppArgs::parse(&rest)?),
        Some("loadgen") => loadgen::run(&loadgen::Args::parse(&rest)?),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

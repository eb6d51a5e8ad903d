//! `cargo xtask bench --telemetry`: what Istio-style telemetry costs per
//! request. Strait runs the bench's plain bootstrap and the same bootstrap
//! with an Istio sidecar's telemetry (`istio.stats`, the peer metadata
//! exchange, Istio's default access log to a file, Zipkin tracing at 1%),
//! alternating A, B, A, B… in one run against the same upstream, so the
//! box's noise falls on both sides alike. The figure is the difference of
//! the medians of CPU time per request; with valgrind present, the same
//! difference in user-space instructions (callgrind), which noise does not
//! move. Issue 12's budget is 3 µs.
//!
//! Before it measures, each telemetry run proves the telemetry is live:
//! `istio_requests_total` on the Prometheus page and lines in the access
//! log. A bench that priced a config doing nothing would be worthless.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::bench::{self, Options};
use crate::configs;
use crate::procs::{self, Guard};

/// Rounds of A and B per protocol; the median of each side is compared.
const ROUNDS: usize = 3;
const BUDGET_US: f64 = 3.0;

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Plain,
    Telemetry,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Telemetry => "telemetry",
        }
    }
}

/// Everything a run needs.
struct Setup {
    strait: PathBuf,
    run_dir: PathBuf,
    upstream_port: u16,
    clock_ticks: u64,
    duration: Duration,
    warmup: Duration,
}

pub fn run(options: &Options) -> Result<()> {
    let (_, nginx) = bench::check_tools(false, options.install)?;
    let root = bench::workspace_root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let strait = match &options.strait {
        Some(p) => p.clone(),
        None => bench::build_strait(&root, &target).map_err(anyhow::Error::msg)?,
    };
    let run_dir = target.join("bench").join("telemetry");
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    std::fs::create_dir_all(&run_dir)?;
    procs::clean_up_on_signal()?;
    let (mut upstream, upstream_port) = bench::start_upstream(&nginx, &run_dir)?;
    let setup = Setup {
        strait,
        run_dir,
        upstream_port,
        clock_ticks: procs::clock_ticks_per_second(),
        duration: options.duration,
        warmup: options.warmup,
    };

    let mut report = Vec::new();
    println!("telemetry cost: CPU µs per request, median of {ROUNDS} alternating runs");
    // `--callgrind`: only the instruction counts.
    let cpu_runs = if options.callgrind { 0 } else { ROUNDS };
    for http2 in [false, true].into_iter().filter(|_| cpu_runs > 0) {
        let protocol = if http2 { "h2c" } else { "HTTP/1.1" };
        let (mut plain, mut telemetry) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            for variant in [Variant::Plain, Variant::Telemetry] {
                let name = format!("{}-{}-{round}", variant.name(), u8::from(http2));
                let us = setup
                    .cpu_us_per_request(variant, http2, &name)
                    .with_context(|| format!("{protocol} {}", variant.name()))?;
                eprintln!(
                    "bench: {protocol} {} round {round}: {us:.2} µs",
                    variant.name()
                );
                match variant {
                    Variant::Plain => plain.push(us),
                    Variant::Telemetry => telemetry.push(us),
                }
            }
        }
        let (p, t) = (median(&mut plain), median(&mut telemetry));
        let verdict = if t - p <= BUDGET_US { "within" } else { "OVER" };
        println!(
            "  {protocol:<9} plain {p:>6.2}  telemetry {t:>6.2}  cost {:>+6.2} µs ({verdict} the {BUDGET_US} µs budget)",
            t - p
        );
        report.push(
            json!({"protocol": protocol, "plain_us": plain, "telemetry_us": telemetry,
            "plain_median_us": p, "telemetry_median_us": t, "cost_us": t - p}),
        );
    }
    upstream
        .ensure_alive()
        .context("the upstream died during the run")?;

    let mut instructions = serde_json::Value::Null;
    match procs::find_program("valgrind") {
        Some(valgrind) => {
            println!("telemetry cost: instructions per request (callgrind)");
            let mut rows = Vec::new();
            for http2 in [false, true] {
                let protocol = if http2 { "h2c" } else { "HTTP/1.1" };
                let plain = setup.instructions(&valgrind, Variant::Plain, http2)?;
                let telemetry = setup.instructions(&valgrind, Variant::Telemetry, http2)?;
                println!(
                    "  {protocol:<9} plain {plain:>8.0}  telemetry {telemetry:>8.0}  cost {:>+8.0} ({:+.1}%)",
                    telemetry - plain,
                    (telemetry / plain - 1.0) * 100.0
                );
                rows.push(json!({"protocol": protocol, "plain": plain, "telemetry": telemetry}));
            }
            instructions = json!(rows);
        }
        None => {
            println!("(valgrind not installed: no instruction counts; apt-get install valgrind)")
        }
    }
    drop(upstream);
    let path = target.join("bench").join("telemetry-results.json");
    let json = json!({"budget_us": BUDGET_US, "cpu": report, "instructions": instructions});
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")?;
    println!("\nwrote {}", path.display());
    Ok(())
}

impl Setup {
    /// Writes `variant`'s bootstrap for fresh ports; returns it with the
    /// listener and admin ports and the access log's path.
    fn config(&self, variant: Variant, name: &str) -> Result<(PathBuf, u16, u16, PathBuf)> {
        let (port, admin) = (procs::free_port()?, procs::free_port()?);
        let log = self.run_dir.join(format!("{name}.access.log"));
        let text = match variant {
            Variant::Plain => configs::envoy_bootstrap(port, admin, self.upstream_port),
            // Spans go to the upstream nginx, which answers them (with a
            // 404): a live collector, never a connect failure.
            Variant::Telemetry => configs::telemetry_bootstrap(
                port,
                admin,
                self.upstream_port,
                self.upstream_port,
                &log,
            ),
        };
        let path = self.run_dir.join(format!("{name}.yaml"));
        std::fs::write(&path, text)?;
        Ok((path, port, admin, log))
    }

    /// One fresh Strait pinned to the proxy core: warm-up, proof that the
    /// telemetry is live, then CPU time over a saturation run.
    fn cpu_us_per_request(&self, variant: Variant, http2: bool, name: &str) -> Result<f64> {
        let (config, port, admin, log) = self.config(variant, name)?;
        let args: Vec<String> = vec![
            "run".into(),
            "-c".into(),
            config.display().to_string(),
            "--concurrency".into(),
            "1".into(),
            "-l".into(),
            "error".into(),
        ];
        let out = self.run_dir.join(format!("{name}.log"));
        let mut guard = Guard::spawn_pinned(name, bench::PROXY_CORE, &self.strait, &args, out)?;
        let ready = Duration::from_secs(30);
        guard.wait_until("GET / answers through the proxy", ready, || {
            procs::serves(port, "/", Some(configs::UPSTREAM_BODY))
        })?;
        let flags: &[&str] = if http2 {
            &["-c", "8", "-m", "16"]
        } else {
            &["--h1", "-c", "32", "-m", "1"]
        };
        let url = format!("http://127.0.0.1:{port}/");
        let warm = bench::h2load_run(flags, &url, self.warmup)?;
        if warm.ok == 0 {
            bail!("no 2xx responses in the warm-up run:\n{}", warm.output);
        }
        if variant == Variant::Telemetry {
            prove_live(&mut guard, admin, &log)?;
        }
        let before = procs::cpu_ticks(guard.pid())?;
        let run = bench::h2load_run(flags, &url, self.duration)?;
        let after = procs::cpu_ticks(guard.pid())?;
        guard.ensure_alive()?;
        if run.ok == 0 || run.non_2xx > 0 {
            bail!(
                "{} non-2xx of {} in the saturation run",
                run.non_2xx,
                run.ok
            );
        }
        let seconds = (after - before) as f64 / self.clock_ticks as f64;
        Ok(seconds * 1e6 / run.ok as f64)
    }

    /// Marginal instructions per request under callgrind.
    fn instructions(&self, valgrind: &Path, variant: Variant, http2: bool) -> Result<f64> {
        let name = format!("callgrind-{}-{}", variant.name(), u8::from(http2));
        // Each variant's callgrind files in their own directory, to read
        // with callgrind_annotate afterwards.
        let dir = self.run_dir.join(variant.name());
        std::fs::create_dir_all(&dir)?;
        crate::callgrind::per_request(valgrind, &self.strait, &dir, http2, &|| {
            let (config, port, _, _) = self.config(variant, &name)?;
            Ok((config, port))
        })
    }
}

/// Fails unless the telemetry under test really runs: Istio's request
/// counter on the Prometheus page and the access log written (the writer
/// flushes off the hot path, so give it a moment).
fn prove_live(guard: &mut Guard, admin: u16, log: &Path) -> Result<()> {
    guard.wait_until(
        "istio_requests_total on /stats/prometheus and access log lines",
        Duration::from_secs(10),
        || {
            let stats = procs::http_get(admin, "/stats/prometheus")
                .map(|(_, body)| body.contains("istio_requests_total{"))
                .unwrap_or(false);
            let logged = std::fs::metadata(log).is_ok_and(|m| m.len() > 0);
            stats && logged
        },
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

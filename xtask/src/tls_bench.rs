//! `cargo xtask bench --tls`: Strait and Envoy terminating TLS with the same
//! certificate (ECDSA P-256, made by `openssl req`) in front of the same
//! nginx upstream, pinned as `bench` pins them (proxy alone on core 0; the
//! upstream and the clients on core 1).
//!
//! Figures per proxy:
//! - full handshakes per second: `openssl s_time -new` (a new connection
//!   and a full handshake each time, no resumption, nothing sent), two
//!   clients in parallel; and the proxy's CPU time per handshake, which
//!   stays meaningful when the client core is the bottleneck;
//! - keep-alive HTTPS requests per second, HTTP/1.1 and h2 (h2load, ALPN);
//! - a large body's MB/s over HTTPS/1.1 (h2load, 4 connections).
//!
//! A benchmark, not a test: it fails only when something does not run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench::{self, LOAD_CORE, Options, PROXY_CORE};
use crate::configs;
use crate::procs::{self, Guard};

/// Parallel `openssl s_time` clients: one saturates a core with its own
/// half of each handshake, two keep the proxy's queue non-empty.
const S_TIME_CLIENTS: usize = 2;
const H1: &[&str] = &["--h1", "-c", "32", "-m", "1"];
const H2: &[&str] = &["-c", "8", "-m", "16"];
const LARGE: &[&str] = &["--h1", "-c", "4", "-m", "1"];

#[derive(Default)]
struct Figures {
    handshakes_per_s: f64,
    cpu_us_per_handshake: f64,
    handshake_core_busy_percent: f64,
    h1_rps: f64,
    h1_cpu_us_per_request: f64,
    h2_rps: f64,
    h2_cpu_us_per_request: f64,
    large_mb_per_s: f64,
    large_cpu_us_per_mb: f64,
    non_2xx: u64,
}

/// Table rows: label and the figure.
type Row = (&'static str, fn(&Figures) -> f64, usize);
const ROWS: [Row; 9] = [
    ("full handshakes/s", |f| f.handshakes_per_s, 0),
    ("CPU µs/handshake", |f| f.cpu_us_per_handshake, 1),
    (
        "proxy core busy % (hs)",
        |f| f.handshake_core_busy_percent,
        0,
    ),
    ("HTTPS/1.1 keep-alive req/s", |f| f.h1_rps, 0),
    ("  CPU µs/req", |f| f.h1_cpu_us_per_request, 1),
    ("HTTPS h2 req/s", |f| f.h2_rps, 0),
    ("  CPU µs/req", |f| f.h2_cpu_us_per_request, 1),
    ("4 MiB body MB/s", |f| f.large_mb_per_s, 0),
    ("  CPU µs/MB", |f| f.large_cpu_us_per_mb, 0),
];

pub fn run(options: &Options, want_envoy: bool) -> Result<()> {
    let root = bench::workspace_root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out_dir = target.join("bench");
    let run_dir = out_dir.join("tls-run");
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    std::fs::create_dir_all(&run_dir)?;
    let (envoy, nginx) = bench::check_tools(want_envoy, options.install)?;
    for tool in ["openssl", "curl"] {
        if procs::find_program(tool).is_none() {
            bail!("{tool} is needed: apt-get install -y {tool}");
        }
    }
    let strait = match &options.strait {
        Some(path) => path.clone(),
        None => bench::build_strait(&root, &target).map_err(anyhow::Error::msg)?,
    };
    let (cert, key) = certificate(&run_dir)?;
    procs::clean_up_on_signal()?;
    let (mut upstream, upstream_port) = bench::start_upstream(&nginx, &run_dir)?;

    let mut results = Vec::new();
    let proxies = [("strait", Some(strait)), ("envoy", envoy)];
    for (name, binary) in proxies {
        let Some(binary) = binary else { continue };
        eprintln!("bench --tls: {name}");
        let config = run_dir.join(format!("{name}.yaml"));
        let (port, admin) = (procs::free_port()?, procs::free_port()?);
        std::fs::write(
            &config,
            configs::envoy_tls_bootstrap(port, admin, upstream_port, &cert, &key),
        )?;
        let mut args = vec!["-c".to_owned(), config.display().to_string()];
        args.extend(["--concurrency".to_owned(), "1".into()]);
        if name == "strait" {
            args.insert(0, "run".into());
        } else {
            args.extend([
                "--disable-hot-restart".to_owned(),
                "-l".into(),
                "error".into(),
            ]);
        }
        let log = run_dir.join(format!("{name}.log"));
        let mut guard = Guard::spawn_pinned(name, PROXY_CORE, &binary, &args, log)?;
        guard.wait_until("HTTPS GET / answers 200", Duration::from_secs(30), || {
            https_status(port, "/") == Some(200)
        })?;
        let figures = measure(options, &mut guard, port)?;
        results.push((name, figures));
    }
    upstream.ensure_alive()?;
    drop(upstream);

    let mut out = format!(
        "\nTLS termination (TLS 1.3, ECDSA P-256, one worker on core {PROXY_CORE}; clients on core {LOAD_CORE})\n{:<30}",
        ""
    );
    for (name, _) in &results {
        let _ = write!(out, "{name:>12}");
    }
    out.push_str("  strait/envoy\n");
    for (label, figure, decimals) in ROWS {
        let _ = write!(out, "  {label:<28}");
        for (_, f) in &results {
            let _ = write!(out, "{:>12.decimals$}", figure(f));
        }
        if let [(_, s), (_, e)] = results.as_slice()
            && figure(e) > 0.0
        {
            let _ = write!(out, "{:>13.2}x", figure(s) / figure(e));
        }
        out.push('\n');
    }
    for (name, f) in &results {
        if f.non_2xx > 0 {
            let _ = writeln!(out, "  ({name}: {} non-2xx responses)", f.non_2xx);
        }
    }
    print!("{out}");
    let json: serde_json::Map<String, Value> = results
        .iter()
        .map(|(name, f)| ((*name).to_owned(), to_json(f)))
        .collect();
    let path = out_dir.join("tls-results.json");
    let doc = json!({
        "settings": {
            "duration_s": options.duration.as_secs_f64(),
            "s_time_clients": S_TIME_CLIENTS,
            "h2load_http1": H1.join(" "),
            "h2load_http2": H2.join(" "),
            "h2load_large": LARGE.join(" "),
            "large_bytes": configs::LARGE_BYTES,
        },
        "results": json,
    });
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    println!("\nwrote {}", path.display());
    Ok(())
}

fn measure(options: &Options, guard: &mut Guard, port: u16) -> Result<Figures> {
    let pid = guard.pid();
    let ticks = procs::clock_ticks_per_second() as f64;
    let cpu_us =
        |before: u64| -> Result<f64> { Ok((procs::cpu_ticks(pid)? - before) as f64 * 1e6 / ticks) };
    let mut f = Figures::default();

    // Warm-up: both paths once, briefly.
    s_time(port, options.warmup)?;
    let base = format!("https://127.0.0.1:{port}");
    bench::h2load_run(H1, &format!("{base}/"), options.warmup)?;

    let before = procs::cpu_ticks(pid)?;
    let started = Instant::now();
    let handshakes = s_time(port, options.duration)?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_us(before)?;
    if handshakes == 0 {
        bail!("no handshakes completed");
    }
    f.handshakes_per_s = handshakes as f64 / wall;
    f.cpu_us_per_handshake = cpu / handshakes as f64;
    f.handshake_core_busy_percent = cpu / 1e4 / wall;

    for (flags, path) in [(H1, "/"), (H2, "/"), (LARGE, configs::LARGE_PATH)] {
        let before = procs::cpu_ticks(pid)?;
        let run = bench::h2load_run(flags, &format!("{base}{path}"), options.duration)?;
        let cpu = cpu_us(before)?;
        guard.ensure_alive()?;
        if run.ok == 0 {
            bail!("no 2xx responses over HTTPS:\n{}", run.output);
        }
        f.non_2xx += run.non_2xx;
        let per_request = cpu / run.ok as f64;
        if path == configs::LARGE_PATH {
            f.large_mb_per_s = run.mb_per_s;
            let mb = run.ok as f64 * configs::LARGE_BYTES as f64 / 1e6;
            f.large_cpu_us_per_mb = cpu / mb;
        } else if flags == H1 {
            (f.h1_rps, f.h1_cpu_us_per_request) = (run.rps, per_request);
        } else {
            (f.h2_rps, f.h2_cpu_us_per_request) = (run.rps, per_request);
        }
    }
    Ok(f)
}

/// Runs [`S_TIME_CLIENTS`] `openssl s_time -new` clients on the load core
/// for `duration`; the number of full handshakes they completed.
fn s_time(port: u16, duration: Duration) -> Result<u64> {
    let secs = duration.as_secs().max(1).to_string();
    let children: Vec<Child> = (0..S_TIME_CLIENTS)
        .map(|_| {
            Command::new("taskset")
                .args(["-c", &LOAD_CORE.to_string(), "openssl", "s_time"])
                .args(["-connect", &format!("127.0.0.1:{port}"), "-new"])
                .args(["-time", &secs])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("running openssl s_time")
        })
        .collect::<Result<_>>()?;
    let mut total = 0;
    for child in children {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "1234 connections in 5.01s; 246.31 connections/user sec, ..."
        let n: u64 = text
            .lines()
            .find(|l| l.contains(" connections in ") && l.contains("connections/user sec"))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse().ok())
            .with_context(|| {
                format!(
                    "no connection count in s_time output:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        total += n;
    }
    Ok(total)
}

/// A self-signed ECDSA P-256 certificate for `bench.test` and its key.
fn certificate(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-subj",
            "/CN=bench.test",
            "-addext",
            "subjectAltName=DNS:bench.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running openssl req")?;
    if !status.success() {
        bail!("openssl req failed ({status})");
    }
    // rustls reads PKCS#8, SEC1 and PKCS#1 keys; openssl 3 writes PKCS#8.
    Ok((cert, key))
}

/// The status of `GET path` over HTTPS (certificate not verified), if any.
fn https_status(port: u16, path: &str) -> Option<u16> {
    let out = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "--max-time",
            "2",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn to_json(f: &Figures) -> Value {
    json!({
        "handshakes_per_s": f.handshakes_per_s,
        "cpu_us_per_handshake": f.cpu_us_per_handshake,
        "handshake_core_busy_percent": f.handshake_core_busy_percent,
        "https1_keepalive_rps": f.h1_rps,
        "https1_cpu_us_per_request": f.h1_cpu_us_per_request,
        "https2_rps": f.h2_rps,
        "https2_cpu_us_per_request": f.h2_cpu_us_per_request,
        "large_body_mb_per_s": f.large_mb_per_s,
        "large_body_cpu_us_per_mb": f.large_cpu_us_per_mb,
        "non_2xx": f.non_2xx,
    })
}

//! `cargo xtask bench --callgrind`: user-space instructions per proxied
//! request, counted by valgrind's callgrind. Unlike CPU time, the count does
//! not move with other processes on the box, so it is the A/B to trust on
//! a noisy machine (`--baseline OLD_BINARY` measures both in one run).
//!
//! Each measurement runs Strait under callgrind (one worker) twice against
//! the bench's nginx upstream, with `SMALL` and then `LARGE` requests from
//! h2load, and reports the difference divided by `LARGE - SMALL`: the
//! marginal cost of a request, without start-up and shutdown.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{bench, configs, procs};

const SMALL: u32 = 1000;
const LARGE: u32 = 4000;

/// Runs the callgrind A/B: `strait` (and `baseline`, when given).
pub fn run(strait: Option<PathBuf>, baseline: Option<PathBuf>, install: bool) -> Result<()> {
    let valgrind = match procs::find_program("valgrind") {
        Some(v) => v,
        None if install => {
            procs::run_to_completion("apt-get", &["install", "-y", "-qq", "valgrind"])?;
            procs::find_program("valgrind").context("valgrind did not install")?
        }
        None => bail!("valgrind is missing: apt-get install -y valgrind (or --install)"),
    };
    let (_, nginx) = bench::check_tools(false, install)?;
    let root = bench::workspace_root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let strait = match strait {
        Some(p) => p,
        None => bench::build_strait(&root, &target).map_err(anyhow::Error::msg)?,
    };
    let run_dir = target.join("bench").join("callgrind");
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir)?;
    }
    std::fs::create_dir_all(&run_dir)?;
    procs::clean_up_on_signal()?;
    let (_upstream, upstream_port) = bench::start_upstream(&nginx, &run_dir)?;
    let mut binaries = Vec::new();
    if let Some(b) = baseline {
        binaries.push(("baseline", b));
    }
    binaries.push(("strait", strait));
    println!("instructions per request (callgrind, marginal over {SMALL}..{LARGE} requests)");
    for http2 in [false, true] {
        let protocol = if http2 { "h2c" } else { "HTTP/1.1" };
        let mut counts = Vec::new();
        for (name, binary) in &binaries {
            let plain = || {
                let (port, admin) = (procs::free_port()?, procs::free_port()?);
                let config = run_dir.join("strait.yaml");
                std::fs::write(
                    &config,
                    configs::envoy_bootstrap(port, admin, upstream_port),
                )?;
                Ok((config, port))
            };
            let per = per_request(&valgrind, binary, &run_dir, http2, &plain)
                .with_context(|| format!("{name} {protocol}"))?;
            println!("  {protocol:<9} {name:<9} {per:>10.0}");
            counts.push(per);
        }
        if let [old, new] = counts[..] {
            println!(
                "  {protocol:<9} change    {:>+9.1}%",
                (new / old - 1.0) * 100.0
            );
        }
    }
    Ok(())
}

/// Writes a config for a fresh run; returns its path and listener port.
pub(crate) type ConfigFor<'a> = dyn Fn() -> Result<(PathBuf, u16)> + 'a;

/// The marginal instructions of one request through `binary`, each run
/// with a config from `config`.
pub(crate) fn per_request(
    valgrind: &Path,
    binary: &Path,
    dir: &Path,
    http2: bool,
    config: &ConfigFor<'_>,
) -> Result<f64> {
    let small = instructions(valgrind, binary, dir, http2, SMALL, config)?;
    let large = instructions(valgrind, binary, dir, http2, LARGE, config)?;
    Ok(large.saturating_sub(small) as f64 / f64::from(LARGE - SMALL))
}

/// Total instructions of one run of `binary` serving `requests` requests.
fn instructions(
    valgrind: &Path,
    binary: &Path,
    dir: &Path,
    http2: bool,
    requests: u32,
    config: &ConfigFor<'_>,
) -> Result<u64> {
    let (config, port) = config()?;
    let out = dir.join(format!("callgrind.{requests}.{}.out", u8::from(http2)));
    let mut child = Command::new(valgrind)
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(binary)
        .args(["run", "-c"])
        .arg(&config)
        .args(["--concurrency", "1", "-l", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting valgrind")?;
    let started = Instant::now();
    while !procs::serves(port, "/", None) {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            bail!("strait under callgrind did not serve within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let n = requests.to_string();
    let mut load = vec!["-n", n.as_str(), "-c", "4"];
    load.extend(if http2 { ["-m", "8"] } else { ["-m", "1"] });
    if !http2 {
        load.push("--h1");
    }
    let url = format!("http://127.0.0.1:{port}/");
    load.push(&url);
    let status = Command::new("h2load")
        .args(&load)
        .stdout(Stdio::null())
        .status()
        .context("running h2load")?;
    if !status.success() {
        bail!("h2load failed: {status}");
    }
    // SIGTERM: Strait drains and exits, and callgrind writes its counts.
    procs::run_to_completion("kill", &["-TERM", &child.id().to_string()])?;
    child.wait()?;
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no instruction total in the callgrind output")
}

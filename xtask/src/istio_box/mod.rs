//! `cargo xtask istio-bookinfo`: Istio's own istiod and pilot-agent drive
//! Strait sidecars and an ingress gateway through BookInfo, without
//! Kubernetes, in network namespaces (see docs/istio.md and decision 0021).
//!
//! Outside the namespaces it builds what it needs (Istio's binaries from
//! the Go module, Strait's release binaries); inside them it starts istiod
//! with a config directory, one pod per workload (app, interception,
//! pilot-agent starting `strait-sidecar`), the gateway pod (pilot-agent
//! starting `strait-gateway`), then runs the scenarios and prints a table.

mod app;
mod istio;
mod mesh;
mod net;
mod pods;
mod scenarios;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub use app::{Args as AppArgs, run as run_app};

pub const USAGE: &str = "\
usage: cargo xtask istio-bookinfo [--only N,M,...] [--sotw] [--keep]

Runs Istio's istiod and pilot-agent (built from the istio.io/istio Go
module) with Strait as every sidecar and the ingress gateway, BookInfo's
call graph, in network namespaces (needs root), and prints a table of
scenarios with pass/fail.

  --only N,M   run only these scenarios (numbers as in the table)
  --sotw       sidecars use state-of-the-world xDS (default: delta, Istio's)
  --keep       on failure, leave the run directory's logs (always kept
               under target/istio-box/run)
";

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub only: Option<Vec<u32>>,
    pub sotw: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Option<Self>> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "-h" | "--help" => return Ok(None),
                "--only" => {
                    let list = it.next().context("--only needs a list")?;
                    o.only = Some(
                        list.split(',')
                            .map(|n| n.trim().parse().context("--only: numbers"))
                            .collect::<Result<_>>()?,
                    );
                }
                "--sotw" => o.sotw = true,
                "--keep" => {}
                other => bail!("unknown option {other}\n\n{USAGE}"),
            }
        }
        Ok(Some(o))
    }
}

/// What the run needs, found or built outside the namespaces.
pub struct Binaries {
    pub istiod: PathBuf,
    pub agent: PathBuf,
    pub sidecar: PathBuf,
    pub gateway: PathBuf,
    pub xtask: PathBuf,
    pub template: PathBuf,
}

pub fn run(options: &Options) -> Result<()> {
    if !nix_root() {
        bail!("istio-bookinfo needs root (network namespaces, iptables)");
    }
    let target = target_dir()?;
    let binaries = if std::env::var_os("STRAIT_ISTIO_BOX_INSIDE").is_none() {
        tools()?;
        istio::build(&target)?;
        build_strait()?;
        istio::bootstrap_template()?;
        // The build happened outside; the namespaces have no network.
        if !net::enter()? {
            return Ok(());
        }
        unreachable!("enter() returns true only inside");
    } else {
        net::enter()?;
        let dir = istio::bin_dir(&target);
        let release = target.join(PROFILE);
        Binaries {
            istiod: dir.join("istiod-box"),
            agent: dir.join("pilot-agent"),
            sidecar: release.join("strait-sidecar"),
            gateway: release.join("strait-gateway"),
            xtask: std::env::current_exe()?,
            template: istio::bootstrap_template()?,
        }
    };
    let started = std::time::Instant::now();
    let run_dir = target.join("istio-box").join("run");
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir)?;
    let mut mesh = pods::Mesh::start(&binaries, &run_dir, options)?;
    let results = scenarios::run_all(&mut mesh, options);
    let alive = mesh.ensure_alive();
    let mut failed = usize::from(alive.is_err());
    if let Err(e) = &alive {
        println!("\n{e:#}");
    }
    println!("\n{:<4} {:<58} result", "#", "scenario");
    for r in &results {
        let verdict = match &r.outcome {
            Ok(detail) => format!("pass  {detail}"),
            Err(e) => {
                failed += 1;
                format!("FAIL  {e:#}")
            }
        };
        println!("{:<4} {:<58} {verdict}", r.number, r.title);
    }
    println!(
        "\nIstio {} (istio.io/istio master of 2026-04-23), {} xDS, {:.0} s; logs in {}",
        istio::VERSION,
        if options.sotw {
            "state-of-the-world"
        } else {
            "delta"
        },
        started.elapsed().as_secs_f64(),
        run_dir.display()
    );
    println!(
        "{} passed, {} failed",
        results.len() + usize::from(alive.is_err()) - failed,
        failed
    );
    if failed > 0 {
        bail!("{failed} scenario(s) failed");
    }
    Ok(())
}

/// The programs the harness and pilot-agent run, checked up front so a
/// missing one is named rather than found half-way through the set-up.
fn tools() -> Result<()> {
    let mut missing: Vec<&str> = [
        ("go", "go (https://go.dev/dl)"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("iptables-save", "iptables"),
        ("iptables-restore", "iptables"),
    ]
    .into_iter()
    .filter(|(tool, _)| crate::procs::find_program(tool).is_none())
    .map(|(_, package)| package)
    .collect();
    missing.dedup();
    if !missing.is_empty() {
        bail!("istio-bookinfo needs: {}", missing.join(", "));
    }
    Ok(())
}

fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The workspace's `target/` (xtask runs from target/release/xtask).
fn target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
        .context("cannot find target/ from the xtask binary's path")
}

/// The profile Strait's binaries are built with: the harness's own, so
/// `cargo xtask istio-bookinfo` (release) measures what users run, and
/// `.ci/run`'s `cargo run -p xtask -- istio-bookinfo` reuses the test
/// build instead of compiling everything again.
const PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// `strait-sidecar` and `strait-gateway`, in [`PROFILE`].
fn build_strait() -> Result<()> {
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "-q",
        "-p",
        "strait-sidecar",
        "-p",
        "strait-gateway",
    ]);
    if PROFILE == "release" {
        cmd.arg("--release");
    }
    let status = cmd.status().context("cargo build")?;
    if !status.success() {
        bail!("building strait-sidecar and strait-gateway failed");
    }
    Ok(())
}

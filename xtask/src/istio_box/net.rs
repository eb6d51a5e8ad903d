//! The network: one namespace per workload behind a bridge, no uplink.
//!
//! The harness first moves itself into a fresh network and mount namespace
//! (`unshare`), so the bridge lives there (the "hub", where the test
//! client runs) and the named namespaces it adds (`ip netns add`, which
//! records them under `/run/netns`) are on a private tmpfs: everything
//! disappears with the harness, however it ends (a PID namespace takes
//! its processes with it). Nothing reaches the machine's own network.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Set in the re-run harness, inside its namespaces.
const INSIDE: &str = "STRAIT_ISTIO_BOX_INSIDE";

/// The hub's address on the bridge.
pub const HUB_IP: &str = "10.10.0.1";

/// True inside the harness's own namespaces (after setting up the bridge);
/// outside, re-runs this command there, waits for it and returns false.
pub fn enter() -> Result<bool> {
    if std::env::var_os(INSIDE).is_some() {
        // The harness is PID 1 of its namespace, which ignores signals it
        // has no handler for: exit on SIGINT/SIGTERM (the kernel then ends
        // every process of the namespace).
        crate::procs::clean_up_on_signal()?;
        // A private /run/netns: `ip netns add` bind-mounts there.
        sh("mkdir -p /run/netns && mount -t tmpfs strait-netns /run/netns")?;
        sh("ip link set lo up")?;
        sh("ip link add br0 type bridge && ip link set br0 up")?;
        sh(&format!("ip addr add {HUB_IP}/16 dev br0"))?;
        return Ok(true);
    }
    let exe = std::env::current_exe().context("own executable")?;
    let status = Command::new("unshare")
        // A PID namespace too: the harness is its init, so every process it
        // starts (pilot-agent's proxies included) dies with it, however it
        // ends.
        .args([
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
        ])
        .arg(exe)
        .args(std::env::args().skip(1))
        .env(INSIDE, "1")
        .status()
        .context("running unshare (needs root and util-linux)")?;
    if !status.success() {
        bail!("the harness failed ({status})");
    }
    Ok(false)
}

/// A workload's network namespace: `eth0` on the bridge with `ip`, a
/// default route through it (Istio's interception needs a route before NAT
/// can redirect), loopback up.
pub fn add_workload(name: &str, ip: &str, index: usize) -> Result<()> {
    let host_end = format!("veth{index}");
    sh(&format!("ip netns add {name}"))?;
    sh(&format!(
        "ip link add {host_end} type veth peer name eth0 netns {name} && \
         ip link set {host_end} master br0 && ip link set {host_end} up"
    ))?;
    in_ns(
        name,
        &format!(
            "ip link set lo up && ip addr add {ip}/16 dev eth0 && ip link set eth0 up && \
             ip route add default dev eth0"
        ),
    )
}

/// Runs `cmd` with `sh -c` in namespace `ns`.
pub fn in_ns(ns: &str, cmd: &str) -> Result<()> {
    sh(&format!(
        "ip netns exec {ns} sh -c '{}'",
        cmd.replace('\'', "'\\''")
    ))
}

/// A command that runs `program` in namespace `ns`, as `uid` when given
/// (pilot-agent runs as 1337, the uid Istio's iptables rules let out
/// uncaptured).
pub fn command(ns: &str, uid: Option<u32>, program: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}"));
    if let Some(uid) = uid {
        c.args(["-S", &uid.to_string(), "-G", &uid.to_string()]);
    }
    c.arg("--").arg(program);
    c
}

/// Runs a shell command, failing with its output.
pub fn sh(cmd: &str) -> Result<()> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "`{cmd}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

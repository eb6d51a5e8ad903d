//! Istio's own binaries, built from the `istio.io/istio` Go module, and
//! the process handles the harness keeps.
//!
//! The version: the Go module proxy serves Istio's master only as
//! pseudo-versions, and of those only a few are available here (see
//! docs/decisions/0021-istio-in-a-box.md for which and why this one).

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// The `istio.io/istio` module version built.
pub const VERSION: &str = "v0.0.0-20260423205519-b01690e6db7d";

/// Where the Go build puts the binaries: under `target/`, so `cargo clean`
/// clears it and a second run reuses it.
pub fn bin_dir(target: &Path) -> PathBuf {
    target.join("istio-box").join(VERSION)
}

/// `pilot-agent` at [`VERSION`] and `istiod-box` (Istio's discovery
/// server, see `xtask/istiod-box/main.go` for why not `pilot-discovery`),
/// built once: about ten minutes on two cores, then cached (the binaries
/// under `target/`, the packages in Go's build cache).
pub fn build(target: &Path) -> Result<(PathBuf, PathBuf)> {
    let dir = bin_dir(target);
    let istiod = dir.join("istiod-box");
    let agent = dir.join("pilot-agent");
    if !istiod.is_file() || !agent.is_file() {
        eprintln!(
            "building istiod-box and pilot-agent from istio.io/istio@{VERSION} (once; minutes)"
        );
        // One build, one set of tags (`tool` in istiod-box's go.mod):
        // Istio is compiled once for both. Istio's test server validates
        // with protoc-gen-validate, so no `disable_pgv`.
        std::fs::create_dir_all(&dir)?;
        let mut out = dir.into_os_string();
        out.push("/");
        go(Command::new("go")
            .args(["build", "-tags=vtprotobuf", "-o"])
            .arg(out)
            .args([".", "istio.io/istio/pilot/cmd/pilot-agent"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/istiod-box")))?;
    }
    Ok((istiod, agent))
}

fn go(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .env("CGO_ENABLED", "0")
        .status()
        .context("running go (Go builds Istio's binaries)")?;
    if !status.success() {
        bail!("the Go build failed ({status})");
    }
    Ok(())
}

/// The bootstrap template pilot-agent renders: not built into the binary;
/// the module ships it.
pub fn bootstrap_template() -> Result<PathBuf> {
    let out = Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .context("go env")?;
    let cache = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let path = Path::new(&cache)
        .join(format!("istio.io/istio@{VERSION}"))
        .join("tools/packaging/common/envoy_bootstrap.json");
    if !path.is_file() {
        bail!("{} is missing (the Go build fetches it)", path.display());
    }
    Ok(path)
}

/// A process of the harness, in its own process group: dropping it kills
/// the whole group (pilot-agent's proxy child included).
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Fails, quoting the end of the log, if the process has exited.
    pub fn ensure_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}):\n{}", self.name, self.tail());
        }
        Ok(())
    }

    /// Polls `ready` every 100 ms until it holds, the process dies, or
    /// `timeout` passes.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_alive()?;
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: {what} not true after {timeout:?}:\n{}",
                    self.name,
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` to the process (not its group): pilot-agent's own
    /// shutdown path then drains its proxy.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.name);
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(None)
    }

    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }
}

impl Drop for Proc {
    /// Kills the process group (what the process started dies too), then
    /// reaps the process. Never waits for long: a teardown that hangs hides
    /// the table it follows.
    fn drop(&mut self) {
        // `--`: procps-ng's kill reads a bare `-PGID` as an option, does
        // nothing and exits 0.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        if matches!(self.wait_exit(Duration::from_secs(5)), Ok(None) | Err(_)) {
            let _ = self.child.kill();
            let _ = self.wait_exit(Duration::from_secs(5));
        }
    }
}

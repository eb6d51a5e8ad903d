//! Tests that need addresses or packet rules of their own (a public client
//! address, iptables interception) run in a network namespace the test
//! makes: the test binary re-runs the one test under `unshare --net`, where
//! it sets the namespace up and runs its body. Needs root and util-linux
//! (`.ci/run` installs `unshare`, `ip` and `iptables`). Nothing leaves the
//! namespace: it has only its own loopback device.

use std::process::Command;

/// Set in the re-run child, inside the namespace.
const INSIDE: &str = "STRAIT_TEST_NETNS";

/// Returns true inside the namespace, after running each of `setup` (shell
/// commands, e.g. `ip addr add 203.0.113.7/32 dev lo`; loopback is brought
/// up first): the caller then runs the test body. Outside, re-runs `test`
/// of this binary in a new namespace, asserts it passed there and returns
/// false.
pub fn in_netns(test: &str, setup: &[String]) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        for cmd in std::iter::once("ip link set lo up").chain(setup.iter().map(String::as_str)) {
            let ok = Command::new("sh")
                .args(["-c", cmd])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "netns set-up failed: {cmd}");
        }
        return true;
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("test binary: {e}"));
    let status = Command::new("unshare")
        .args(["--net", "--"])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .status()
        .unwrap_or_else(|e| panic!("running unshare (needs root and util-linux): {e}"));
    assert!(status.success(), "{test} failed in its network namespace");
    false
}

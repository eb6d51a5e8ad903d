//! Strait's binaries as real processes, for the end-to-end tests in
//! `bins/*/tests`: a child that cannot outlive its test, and plain-socket
//! HTTP/1.1 requests (no client library between the test and the proxy).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, ExitStatus},
    time::Duration,
};

use crate::eventually_blocking;

/// A running binary, killed on drop so a failing test leaves no proxy
/// behind.
#[derive(Debug)]
pub struct Running(pub Child);

impl Running {
    /// Starts `command`. Panics if it cannot be started.
    pub fn spawn(command: &mut Command) -> Running {
        Running(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("starting {command:?}: {e}")),
        )
    }

    /// Waits up to `deadline` for the process to exit on its own.
    pub fn exited_within(&mut self, deadline: Duration) -> ExitStatus {
        eventually_blocking("the process to exit", deadline, || {
            self.0.try_wait().ok().flatten()
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago, for a config that must name
/// its port before the process starts (the admin address). Prefer port 0
/// wherever the port can be read back.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// One HTTP/1.1 request with an empty body on a fresh connection; the whole
/// response (head and body) as text, or `None` if anything failed (not
/// listening yet, reset, timed out).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The address listener `name` is bound to, read from the admin server's
/// `/listeners` (`name::ip:port` lines), so configs can bind port 0.
pub fn listener_addr(admin: SocketAddr, name: &str) -> Option<SocketAddr> {
    let reply = http(admin, "GET", "/listeners")?;
    let prefix = format!("{name}::");
    reply
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))?
        .trim()
        .parse()
        .ok()
}

/// A static bootstrap for a binary under test: listener `web` on
/// 127.0.0.1 port 0 routing every request to cluster `app` (`upstream`), and
/// the admin server on `admin_port` (the test must know where to ask).
pub fn static_bootstrap(upstream: SocketAddr, admin_port: u16) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: web
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: web
          route_config:
            virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, route: {{cluster: app}}}}]}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: app
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: app
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}}}]}}]
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}
"#,
        ip = upstream.ip(),
        port = upstream.port(),
    )
}

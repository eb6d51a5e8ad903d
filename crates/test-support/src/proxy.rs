//! Strait in-process, driven the way a user drives it: a config file on disk
//! that is watched and may be rewritten.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use strait_app::{ConfigSource, Options, Proxy};

use crate::TempDir;

/// A running proxy plus its config file. Dropping it shuts the proxy down
/// (on a plain thread, so it is safe to drop inside an async test).
pub struct TestProxy {
    proxy: Option<Proxy>,
    config: PathBuf,
    _dir: TempDir,
}

impl TestProxy {
    /// Writes `yaml` to a temp file and starts Strait on it with `workers`
    /// worker threads. Panics (with the error) if it does not start.
    pub fn start(yaml: &str, workers: usize) -> TestProxy {
        Self::try_start(yaml, workers).unwrap_or_else(|e| panic!("strait did not start: {e}"))
    }

    /// Like [`TestProxy::start`], returning the start-up error.
    pub fn try_start(yaml: &str, workers: usize) -> Result<TestProxy, String> {
        Self::try_start_with(yaml, workers, |_| {})
    }

    /// Like [`TestProxy::start`], with `configure` changing the options
    /// last (e.g. [`Options::stats`]).
    pub fn start_with(
        yaml: &str,
        workers: usize,
        configure: impl FnOnce(&mut Options),
    ) -> TestProxy {
        Self::try_start_with(yaml, workers, configure)
            .unwrap_or_else(|e| panic!("strait did not start: {e}"))
    }

    /// Like [`TestProxy::start_with`], returning the start-up error.
    pub fn try_start_with(
        yaml: &str,
        workers: usize,
        configure: impl FnOnce(&mut Options),
    ) -> Result<TestProxy, String> {
        let dir = TempDir::new("proxy");
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, yaml).map_err(|e| e.to_string())?;
        let mut opts = Options::new(ConfigSource::File(config.clone()));
        opts.concurrency = workers;
        opts.watch_interval = Duration::from_millis(50);
        configure(&mut opts);
        // Proxy::start blocks on its own runtime; keep that off any test runtime.
        let proxy = std::thread::spawn(move || Proxy::start(opts))
            .join()
            .map_err(|_| "start panicked".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(TestProxy {
            proxy: Some(proxy),
            config,
            _dir: dir,
        })
    }

    fn proxy(&self) -> &Proxy {
        // Invariant: only Drop takes the proxy out.
        self.proxy
            .as_ref()
            .unwrap_or_else(|| unreachable!("proxy present until drop"))
    }

    /// The bound address of listener `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.proxy()
            .listener_addr(name)
            .unwrap_or_else(|| panic!("no listener {name}"))
    }

    /// The bound address of listener `name`, if it exists (yet).
    pub fn try_listener(&self, name: &str) -> Option<SocketAddr> {
        self.proxy().listener_addr(name)
    }

    pub fn admin(&self) -> SocketAddr {
        self.proxy()
            .admin_addr()
            .unwrap_or_else(|| panic!("no admin address"))
    }

    pub fn version(&self) -> u64 {
        self.proxy().version()
    }

    /// Config updates refused since start (see [`Proxy::reload_failures`]).
    pub fn reload_failures(&self) -> u64 {
        self.proxy().reload_failures()
    }

    /// Why the last refused config update was refused.
    pub fn last_reload_error(&self) -> Option<String> {
        self.proxy().last_reload_error()
    }

    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// Replaces the config file atomically (write then rename), as editors
    /// and config managers do; the watcher picks it up.
    pub fn rewrite(&self, yaml: &str) {
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, yaml).unwrap_or_else(|e| panic!("writing config: {e}"));
        std::fs::rename(&tmp, &self.config).unwrap_or_else(|e| panic!("renaming config: {e}"));
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(p) = self.proxy.take() {
            let _ = std::thread::spawn(move || p.shutdown(Duration::ZERO)).join();
        }
    }
}

/// A minimal Envoy bootstrap: one HTTP listener on 127.0.0.1:0 named
/// `listener` routing everything to cluster `backend` at `upstream`, admin on
/// 127.0.0.1:0. `extra_hcm` is spliced into the connection manager's
/// typed_config (indented by 10 spaces), `cluster_extra` into the cluster.
pub fn http_config(upstream: SocketAddr, extra_hcm: &str, cluster_extra: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: listener
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
{extra_hcm}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: backend}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
{cluster_extra}
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
"#,
        ip = upstream.ip(),
        port = upstream.port(),
    )
}

/// The `typed_extension_protocol_options` block that makes a cluster speak
/// HTTP/2 (prior knowledge) upstream, for [`http_config`]'s `cluster_extra`.
pub const UPSTREAM_H2: &str = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}"#;

//! Start-up, the shared state every connection sees, and shutdown.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use strait_envoy::BootstrapOverrides;
use strait_envoy::dump::{DumpCell, XdsDump};
use strait_net::Drain;
use tokio::{runtime::Runtime, sync::watch};

use strait_listener::{ListenerFilterRegistry, NetworkFilterRegistry};

use crate::{
    AppError, Store,
    extensions::Extensions,
    reload::{ConfigSource, Reloader},
    shared::Shared,
    stats::StatsRecorder,
    workers::{RuntimeModel, Workers},
};

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: ConfigSource,
    /// Command-line changes to the bootstrap (`--config-yaml`,
    /// `--service-node`, ...), applied on every load.
    pub overrides: BootstrapOverrides,
    /// Worker threads; each runs its own event loop.
    pub concurrency: usize,
    /// How often the config file is checked for changes.
    pub watch_interval: Duration,
    /// Thread model; see docs/decisions/0001-workers.md. Per core unless
    /// the caller chooses otherwise (the binaries read `STRAIT_RUNTIME`).
    pub runtime: RuntimeModel,
    /// Where the proxy's stats go. `None` (the default): a recorder of its
    /// own, so proxies in one process count apart.
    pub stats: Option<StatsRecorder>,
    /// The HTTP filters the proxy can build, by type URL: the built-in ones
    /// ([`crate::http_filters`]) unless the caller registers its own
    /// ([`strait_http::HttpFilterRegistry::register`]); configs name them
    /// like any Envoy filter.
    pub http_filters: strait_http::HttpFilterRegistry,
    /// Terminal network filters registered by type URL (none built in: the
    /// HTTP connection manager and TCP proxy are served directly).
    pub network_filters: NetworkFilterRegistry,
    /// Listener filters registered by type URL (they run after the built-in
    /// TLS and HTTP inspectors).
    pub listener_filters: ListenerFilterRegistry,
    /// How often access-log files are flushed (Envoy's
    /// `--file-flush-interval-msec`, 1 s by default).
    pub file_flush_interval: Duration,
}

impl Options {
    pub fn new(config: ConfigSource) -> Self {
        Options {
            config,
            overrides: BootstrapOverrides::default(),
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            watch_interval: Duration::from_millis(200),
            runtime: RuntimeModel::PerCore,
            stats: None,
            http_filters: crate::extensions::http_filters(),
            network_filters: NetworkFilterRegistry::default(),
            listener_filters: ListenerFilterRegistry::default(),
            file_flush_interval: strait_access_log::FLUSH_INTERVAL,
        }
    }
}

/// The single writer as the xDS client's publisher.
struct XdsWriter {
    reloader: Arc<Reloader>,
    dump: Arc<DumpCell>,
}

impl strait_xds::Publish for XdsWriter {
    async fn publish(&self, config: strait_model::Config) -> Result<u64, Vec<strait_xds::Refusal>> {
        self.reloader.publish(config).await
    }

    fn record(&self, dump: Arc<XdsDump>) {
        self.dump.store(dump);
    }

    fn parsers(&self) -> strait_envoy::Parsers {
        self.reloader.parsers()
    }
}

/// The names of the listeners whose `traffic_direction` is INBOUND, the
/// bootstrap's and the control plane's alike.
fn inbound_listeners(store: &Store) -> HashSet<String> {
    store
        .load()
        .config()
        .listeners
        .iter()
        .filter(|l| l.direction == strait_model::TrafficDirection::Inbound)
        .map(|l| l.name.clone())
        .collect()
}

/// A running proxy. Dropping it without [`Proxy::shutdown`] also stops it.
pub struct Proxy {
    control: Option<Runtime>,
    workers: Option<Workers>,
    shared: Arc<Shared>,
    reloader: Arc<Reloader>,
    admin: Option<SocketAddr>,
    quit: watch::Receiver<bool>,
    admin_drain: Drain,
}

impl Proxy {
    /// Loads the config, binds every listener and the admin server, and
    /// starts serving. Fails (binding nothing) if the first config is bad.
    pub fn start(opts: Options) -> Result<Proxy, AppError> {
        let control = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("strait-control")
            .enable_all()
            .build()?;
        let workers = Workers::start(opts.concurrency, opts.runtime)?;
        let stats = opts.stats.clone().unwrap_or_default();
        let extensions = Extensions::new(
            &opts.http_filters,
            &opts.network_filters,
            &opts.listener_filters,
        );
        let shared = Arc::new(Shared::new(stats.clone(), extensions));
        shared
            .conn
            .http
            .access_logs
            .set_flush_interval(opts.file_flush_interval);
        // Remote access loggers (OpenTelemetry) export from the control
        // runtime; the bootstrap node names the proxy in their resource.
        let node_store = Arc::clone(shared.store());
        shared
            .conn
            .http
            .access_logs
            .set_remote(Arc::new(strait_remote_log::RemoteLoggers::new(
                Arc::clone(shared.registry()),
                control.handle().clone(),
                Box::new(move || {
                    strait_remote_log::LocalInfo::from_node(
                        node_store.load().config().node.as_ref(),
                    )
                }),
                Arc::clone(&stats.recorder),
            )));
        // OpenTelemetry tracers export OTLP spans from the control runtime.
        shared
            .conn
            .http
            .tracers
            .set_otel(Arc::new(strait_remote_log::OtelTracers::new(
                Arc::clone(shared.registry()),
                control.handle().clone(),
                Arc::clone(&stats.recorder),
            )));
        let reloader = Arc::new(Reloader::new(
            opts.config.clone(),
            opts.overrides.clone(),
            Arc::clone(&shared),
            workers.handles().to_vec(),
        ));
        let first = control.block_on(reloader.reload());
        if let Err(e) = first {
            workers.stop();
            return Err(e);
        }
        let (quit_tx, quit) = watch::channel(false);
        let (admin_drain, admin_watch) = Drain::new();
        let xds_dump = Arc::new(DumpCell::default());
        let (drain_tx, mut drain_rx) = watch::channel(None);
        let mut admin = None;
        let ctx = strait_admin::AdminContext {
            store: Arc::clone(shared.store()),
            registry: Arc::clone(shared.registry()),
            listeners: Arc::clone(&shared.bound),
            recorder: Arc::clone(&stats.recorder),
            prometheus: stats.prometheus.clone(),
            quit: quit_tx,
            started: Instant::now(),
            xds_dump: Arc::clone(&xds_dump),
            drain_listeners: drain_tx,
            draining: Arc::default(),
            access_logs: Arc::clone(&shared.conn.http.access_logs),
        };
        // Stats sinks read the stats as the admin server does, with or
        // without one. Started once: Envoy reads `stats_sinks` from the
        // bootstrap only, so a reload leaves them as they are.
        let first = shared.store().load();
        if let Some(sinks) = first.config().stats_sinks.clone() {
            let node = first.config().node.as_ref().map(strait_envoy::node_proto);
            control.spawn(strait_admin::sinks::run(ctx.clone(), sinks, node));
        }
        if let Some(a) = first.config().admin.clone() {
            let socket = strait_net::bind(a.address)?;
            admin = socket.local_addr().ok();
            control.spawn(async move {
                match tokio::net::TcpListener::from_std(socket) {
                    Ok(l) => strait_admin::serve(l, ctx, admin_watch).await,
                    Err(e) => tracing::error!(error = %e, "admin listener"),
                }
            });
            if let Some(addr) = admin {
                tracing::info!(address = %addr, "admin listening");
            }
        }
        let (stopper, store) = (Arc::clone(&reloader), Arc::clone(shared.store()));
        control.spawn(async move {
            // Every connection drains gracefully (HTTP/1.1 closes after its
            // response, HTTP/2 gets GOAWAY), so `?graceful` changes nothing.
            while drain_rx.changed().await.is_ok() {
                let req: Option<strait_admin::DrainListeners> = *drain_rx.borrow_and_update();
                if let Some(req) = req {
                    let only = req.inbound_only.then(|| inbound_listeners(&store));
                    stopper.stop_listeners(only).await;
                }
            }
        });
        let prometheus = stats.prometheus.clone();
        control.spawn(async move {
            // Histograms are drained into their buckets here, not per request.
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                prometheus.run_upkeep();
            }
        });
        if let Some((base, _)) = reloader.xds_base() {
            control.spawn(strait_xds::run(
                base,
                XdsWriter {
                    reloader: Arc::clone(&reloader),
                    dump: xds_dump,
                },
                stats.recorder,
            ));
        } else if matches!(opts.config, ConfigSource::File(_)) {
            control.spawn(Arc::clone(&reloader).watch(opts.watch_interval));
        }
        Ok(Proxy {
            control: Some(control),
            workers: Some(workers),
            shared,
            reloader,
            admin,
            quit,
            admin_drain,
        })
    }

    /// The admin server's bound address, if the config has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The address listener `name` is bound to (port 0 resolved).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.shared.bound.get(name)
    }

    /// The live config version (1 after start, +1 per applied reload).
    pub fn version(&self) -> u64 {
        self.shared.store().load().version()
    }

    /// How many config updates (file changes, reloads) were refused since
    /// start. Each refusal leaves the running config in place.
    pub fn reload_failures(&self) -> u64 {
        self.reloader.refused()
    }

    /// Why the most recently refused config update was refused (every
    /// problem found, each naming its field), if any was.
    pub fn last_reload_error(&self) -> Option<String> {
        self.reloader.last_error()
    }

    /// Re-reads the config file now (SIGHUP). On error the running config
    /// stays and the error names the field.
    pub fn reload(&self) -> Result<u64, AppError> {
        match &self.control {
            Some(rt) => rt.block_on(self.reloader.reload()),
            None => Ok(self.version()),
        }
    }

    /// Blocks until SIGINT, SIGTERM or `POST /quitquitquit`; SIGHUP reloads.
    pub fn run_until_signal(&mut self) -> Result<(), AppError> {
        let Some(rt) = &self.control else {
            return Ok(());
        };
        let reloader = Arc::clone(&self.reloader);
        let logs = Arc::clone(&self.shared.conn.http.access_logs);
        let mut quit = self.quit.clone();
        rt.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hup = signal(SignalKind::hangup())?;
            // Envoy reopens its access-log files on SIGUSR1 (log rotation).
            let mut usr1 = signal(SignalKind::user_defined1())?;
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        if let Err(e) = reloader.reload().await {
                            tracing::error!("reload refused, keeping the running config: {e}");
                        }
                    }
                    _ = usr1.recv() => logs.reopen(),
                    _ = term.recv() => return Ok(()),
                    _ = int.recv() => return Ok(()),
                    _ = quit.wait_for(|q| *q) => return Ok(()),
                }
            }
        })
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`,
    /// then stops every runtime.
    pub fn shutdown(mut self, grace: Duration) {
        self.stop(grace);
    }

    fn stop(&mut self, grace: Duration) {
        self.admin_drain.signal();
        if let Some(rt) = self.control.take() {
            rt.block_on(async {
                self.reloader.drain_all().await;
                tokio::time::sleep(grace).await;
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        }
        if let Some(w) = self.workers.take() {
            w.stop();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

//! Config loading and hot reload: file → Envoy protos → model → snapshot →
//! publish. One writer at a time; a config that fails at any step leaves the
//! running one untouched.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use prost_reflect::SerializeOptions;
use strait_envoy::{BootstrapOverrides, model::Config};
use strait_snapshot::Snapshot;
use tokio::{runtime::Handle, sync::Mutex};

use strait_envoy::{Parsers, model::extension::ExtensionParsers};
use strait_http::HttpFilterRegistry;
use strait_listener::{ListenerFilterRegistry, NetworkFilterRegistry};

use crate::{AppError, extensions::Extensions, listeners::ListenerSet, shared::Shared};

/// Where the config comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file, watched for changes (and re-read on [`Proxy::reload`]).
    File(PathBuf),
    /// Text compiled into the binary or built by the caller; never reloaded.
    Inline(String),
}

/// Parses and validates `text` as Strait would load it, without binding
/// anything: `strait check`. Returns every problem found, each naming its
/// field path.
pub fn check(text: &str) -> Result<Config, Vec<String>> {
    check_with(text, &BootstrapOverrides::default())
}

/// [`check`] with the command line's changes to the bootstrap applied.
pub fn check_with(text: &str, overrides: &BootstrapOverrides) -> Result<Config, Vec<String>> {
    check_with_filters(
        text,
        overrides,
        &crate::extensions::http_filters(),
        &NetworkFilterRegistry::default(),
        &ListenerFilterRegistry::default(),
    )
}

/// [`check_with`] knowing the HTTP, network and listener filters
/// registered in `http`, `network` and `listener` (an embedding program's
/// as well as the built-in ones).
pub fn check_with_filters(
    text: &str,
    overrides: &BootstrapOverrides,
    http: &HttpFilterRegistry,
    network: &NetworkFilterRegistry,
    listener: &ListenerFilterRegistry,
) -> Result<Config, Vec<String>> {
    let filters = &Arc::new(Extensions {
        http: http.clone(),
        network: network.clone(),
        listener: listener.clone(),
    });
    let (config, _) = parse(text, overrides, filters)?;
    Snapshot::compile_with(
        1,
        static_part(&config, filters),
        serde_json::Value::Null,
        &Snapshot::empty(),
        &**filters,
    )
    .map_err(|e| vec![e.to_string()])?;
    Ok(config)
}

/// The front end's view of the extension registries.
fn parsers(filters: &Arc<Extensions>) -> Parsers {
    Parsers(Arc::clone(filters) as Arc<dyn ExtensionParsers>)
}

/// What of `config` can be live before any xDS response: with
/// `dynamic_resources` or SDS sources, static listeners that wait for RDS or
/// SDS secrets and static EDS clusters are held back until the control
/// plane (or SDS file) delivers what they need.
fn static_part(config: &Config, filters: &Arc<Extensions>) -> Config {
    if config.needs_xds() {
        strait_xds::Cache::with_parsers(config.clone(), parsers(filters)).build()
    } else {
        config.clone()
    }
}

/// Text → (model, source document for `/config_dump`).
fn parse(
    text: &str,
    overrides: &BootstrapOverrides,
    filters: &Arc<Extensions>,
) -> Result<(Config, serde_json::Value), Vec<String>> {
    let parsed = overrides.apply(text).map_err(|e| vec![e.to_string()])?;
    for w in &parsed.warnings {
        tracing::warn!("{w}");
    }
    let msg = parsed.message;
    let bootstrap: Bootstrap = msg.transcode_to().map_err(|e| vec![e.to_string()])?;
    let config = strait_envoy::translate_bootstrap_with(&bootstrap, &parsers(filters))
        .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    // Envoy's config_dump uses proto field names (snake_case).
    let opts = SerializeOptions::new().use_proto_field_name(true);
    let mut source = msg
        .serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| vec![e.to_string()])?;
    // The document is only ever shown (`/config_dump`): inline private keys
    // must not be.
    strait_envoy::redact::redact_sensitive(&mut source);
    Ok((config, source))
}

/// The single config writer.
#[derive(Debug)]
pub(crate) struct Reloader {
    source: ConfigSource,
    overrides: BootstrapOverrides,
    shared: Arc<Shared>,
    workers: Vec<Handle>,
    listeners: Mutex<ListenerSet>,
    version: AtomicU64,
    /// Configs refused so far, and why the last one was.
    refused: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
    /// Hash of the file text last read by [`Reloader::reload`]; the watcher
    /// reloads when the file's text differs from it. Kept here rather than
    /// in the watcher so a change made between start-up and the watcher's
    /// first look is not missed.
    last_read: AtomicU64,
    /// The bootstrap's config when it has `dynamic_resources` or SDS
    /// sources: the base the xDS client adds to, and the source document every xDS-built snapshot
    /// carries. Set by the first load; a bootstrap with xDS is not reloaded
    /// from the file afterwards (Envoy never re-reads its bootstrap).
    xds_base: std::sync::Mutex<Option<(Config, serde_json::Value)>>,
}

impl Reloader {
    pub(crate) fn new(
        source: ConfigSource,
        overrides: BootstrapOverrides,
        shared: Arc<Shared>,
        workers: Vec<Handle>,
    ) -> Self {
        Reloader {
            source,
            overrides,
            shared,
            workers,
            listeners: Mutex::new(ListenerSet::default()),
            version: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
            last_read: AtomicU64::new(0),
            xds_base: std::sync::Mutex::new(None),
        }
    }

    /// The front end's view of the proxy's filter registry, for xDS.
    pub(crate) fn parsers(&self) -> Parsers {
        parsers(&self.shared.filters)
    }

    /// The bootstrap config and its source document, when it has
    /// `dynamic_resources`.
    pub(crate) fn xds_base(&self) -> Option<(Config, serde_json::Value)> {
        self.xds_base
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many configs were refused since start.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Why the most recently refused config was refused.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the source and applies it. Returns the new live version.
    pub(crate) async fn reload(&self) -> Result<u64, AppError> {
        if self.xds_base().is_some() {
            return self.refuse(AppError::Config(vec![
                "dynamic_resources: a bootstrap with xDS is read once; restart to change it".into(),
            ]));
        }
        let text = match &self.source {
            ConfigSource::Inline(t) => t.clone(),
            ConfigSource::File(path) => {
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| AppError::Read {
                        path: path.display().to_string(),
                        source,
                    })?
            }
        };
        self.last_read
            .store(hash(text.as_bytes()), Ordering::Release);
        let result = match parse(&text, &self.overrides, &self.shared.filters) {
            Ok((config, source)) => {
                if config.needs_xds() {
                    *self
                        .xds_base
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some((config.clone(), source.clone()));
                }
                self.apply(static_part(&config, &self.shared.filters), source)
                    .await
            }
            Err(e) => Err(AppError::Config(e)),
        };
        self.report(result)
    }

    /// Applies a whole config from the xDS client, with the bootstrap's
    /// source document. Counted and reported like a file reload.
    pub(crate) async fn publish(&self, config: Config) -> Result<u64, AppError> {
        let source = self
            .xds_base()
            .map_or(serde_json::Value::Null, |(_, source)| source);
        let result = self.apply(config, source).await;
        self.report(result)
    }

    fn refuse(&self, e: AppError) -> Result<u64, AppError> {
        self.report(Err(e))
    }

    /// Logs the outcome and, for a refusal, records why.
    fn report(&self, result: Result<u64, AppError>) -> Result<u64, AppError> {
        match &result {
            Ok(v) => tracing::info!(version = v, "config applied"),
            Err(e) => {
                tracing::error!(
                    "config refused, keeping version {}: {e}",
                    self.shared.store().load().version()
                );
                // The message first, then the count: whoever sees the count
                // move finds this error (or a later one).
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.to_string());
                self.refused.fetch_add(1, Ordering::SeqCst);
            }
        }
        result
    }

    /// Compiles and publishes `config`: the one path every source (file or
    /// xDS) takes to a live snapshot.
    async fn apply(&self, config: Config, source: serde_json::Value) -> Result<u64, AppError> {
        let mut listeners = self.listeners.lock().await;
        let previous = self.shared.store().load();
        if previous.version() > 0 && previous.config().admin != config.admin {
            // The admin server is bound once at start (as Envoy's is); a
            // changed address would silently not take effect.
            return Err(AppError::Config(vec![
                "admin.address: changing the admin server needs a restart".into(),
            ]));
        }
        let version = self.version.load(Ordering::Relaxed) + 1;
        let snapshot = Snapshot::compile_with(
            version,
            config.clone(),
            source,
            &previous,
            &*self.shared.filters,
        )
        .map_err(|e| AppError::Config(vec![e.to_string()]))?;
        let plan = listeners.plan(&config)?;
        // Clusters first, so a request on the new snapshot finds them; the
        // ones the new config drops go only after it is live.
        let tls = |name: &str| snapshot.cluster_transports(name);
        self.shared
            .registry()
            .reconcile(&config.clusters, &tls)
            .await;
        self.shared.store().publish(snapshot);
        self.version.store(version, Ordering::Relaxed);
        listeners.commit(plan, &self.shared, &self.workers);
        self.shared.registry().retain(&config.clusters);
        Ok(version)
    }

    pub(crate) async fn drain_all(&self) {
        self.listeners.lock().await.drain_all();
    }

    /// `/drain_listeners`: see `ListenerSet::stop_listeners`.
    pub(crate) async fn stop_listeners(&self, only: Option<std::collections::HashSet<String>>) {
        self.listeners
            .lock()
            .await
            .stop_listeners(only, &self.shared);
    }

    /// Polls the config file and reloads when it changes. Polling (rather
    /// than inotify) also sees Kubernetes ConfigMap updates, which swap a
    /// symlink, and editors that write by rename.
    pub(crate) async fn watch(self: Arc<Self>, every: Duration) {
        let ConfigSource::File(path) = &self.source else {
            return;
        };
        loop {
            tokio::time::sleep(every).await;
            // Reading the (small) file each tick, rather than trusting mtime,
            // also sees a rewrite within one mtime tick.
            let Ok(bytes) = tokio::fs::read(path).await else {
                continue;
            };
            if hash(&bytes) != self.last_read.load(Ordering::Acquire) {
                let _ = self.reload().await;
            }
        }
    }
}

fn hash(bytes: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(bytes)
}

//! The HTTP path for programs that accept connections themselves: a
//! [`tower::Service`] over hyper's requests, and the one call that makes a
//! config live without the rest of the proxy.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use hyper::body::Incoming;
use strait_model::{Config, NetworkFilter};
use strait_snapshot::{Snapshot, SnapshotError};

use crate::{
    HttpFilterRegistry,
    body::Tracked,
    conn::{ConnCtx, Connection},
    request::handle_counted,
    shared::Shared,
};

impl Shared {
    /// Compiles `config` (its HTTP filters built by `filters`), brings its
    /// clusters up and makes it the live snapshot: what the proxy's config
    /// writer does, without listeners. For an embedding program that serves
    /// connections itself; call it again with a new config to reload
    /// (clusters kept by name keep their pools). One caller at a time.
    pub async fn apply(
        &self,
        config: Config,
        filters: &HttpFilterRegistry,
    ) -> Result<u64, SnapshotError> {
        let previous = self.store.load();
        let version = previous.version() + 1;
        let clusters = config.clusters.clone();
        let snapshot =
            Snapshot::compile_with(version, config, serde_json::Value::Null, &previous, filters)?;
        let tls = |name: &str| snapshot.cluster_transports(name);
        self.registry.reconcile(&clusters, &tls).await;
        self.store.publish(snapshot);
        self.registry.retain(&clusters);
        Ok(version)
    }
}

/// One downstream connection's requests as a [`tower::Service`]: each
/// request goes through the connection manager of `conn`'s listener and
/// filter chain in the live snapshot, exactly as on a listener of the
/// proxy. Clone it per connection (it carries the connection's peer and
/// TLS state).
#[derive(Clone, Debug)]
pub struct HttpService {
    conn: Arc<ConnCtx>,
}

impl HttpService {
    /// A service for requests of `conn`. `None` when the live snapshot has
    /// no HTTP connection manager at `conn`'s listener and chain.
    pub fn new(shared: Arc<Shared>, conn: Connection) -> Option<HttpService> {
        let prefix = match &conn.chain.get().0.terminal {
            NetworkFilter::Http(hcm) => hcm.stat_prefix.clone(),
            NetworkFilter::Tcp(_) | NetworkFilter::Extension(_) => return None,
        };
        let stats = shared.http_stats(&prefix);
        Some(HttpService {
            conn: Arc::new(ConnCtx::new(shared, conn, stats)),
        })
    }
}

/// A response of the proxy: its body streams from the upstream (or is a
/// local reply).
pub type ProxyResponse = Response<Tracked>;

impl tower::Service<Request<Incoming>> for HttpService {
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let conn = Arc::clone(&self.conn);
        Box::pin(async move { Ok(handle_counted(req, conn).await) })
    }
}

//! gRPC channels to a bootstrap cluster: HTTP/2 over TCP to its first
//! endpoint, or over the unix socket its `pipe` address names (Istio's
//! `xds-grpc` and `sds-grpc`, served by pilot-agent on the same host).

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use hyper_util::rt::TokioIo;
use strait_config::model;
use tokio::net::UnixStream;
use tonic::{
    codegen::{Service, http::Uri},
    transport::{Channel, Endpoint},
};

use crate::XdsError;

/// Connects a gRPC channel to `cluster` (its unix socket, else its first
/// endpoint), bounded by the cluster's `connect_timeout`. Cancel-safe.
pub async fn grpc_channel(cluster: &model::Cluster) -> Result<Channel, XdsError> {
    let bad = |message: String| XdsError::BadEndpoint {
        cluster: cluster.name.clone(),
        message,
    };
    if let Some(path) = &cluster.pipe {
        // The URI only fills the `:authority` header; the connector ignores
        // it and dials the socket.
        let endpoint =
            Endpoint::from_static("http://localhost").connect_timeout(cluster.connect_timeout);
        let connector = UnixConnector(Arc::from(path.as_str()));
        return Ok(endpoint.connect_with_connector(connector).await?);
    }
    let e = cluster
        .endpoints
        .first()
        .ok_or_else(|| XdsError::NoAdsEndpoint(cluster.name.clone()))?;
    let host = if e.host.contains(':') {
        format!("[{}]", e.host)
    } else {
        e.host.clone()
    };
    let endpoint = Endpoint::from_shared(format!("http://{host}:{}", e.port))
        .map_err(|e| bad(e.to_string()))?;
    Ok(endpoint
        .connect_timeout(cluster.connect_timeout)
        .connect()
        .await?)
}

/// Dials one unix socket path for tonic.
#[derive(Debug, Clone)]
struct UnixConnector(Arc<str>);

impl Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = Arc::clone(&self.0);
        Box::pin(async move { Ok(TokioIo::new(UnixStream::connect(&*path).await?)) })
    }
}

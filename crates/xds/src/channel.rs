//! gRPC channels to a bootstrap cluster: HTTP/2 over TCP to its first
//! endpoint (over TLS when the cluster has an `UpstreamTlsContext`, as a
//! control plane reached across the network is), or over the unix socket
//! its `pipe` address names (Istio's `xds-grpc` and `sds-grpc`, served by
//! pilot-agent on the same host).

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use hyper_util::rt::TokioIo;
use strait_model::{self as model, secret::Secrets};
use strait_tls::{ClientTls, ClientTlsStream, DefaultAlpn};
use tokio::net::{TcpStream, UnixStream};
use tonic::{
    codegen::{Service, http::Uri},
    transport::{Channel, Endpoint},
};

use crate::XdsError;

/// Connects a gRPC channel to `cluster` (its unix socket, else its first
/// endpoint), bounded by the cluster's `connect_timeout`. A TLS cluster's
/// secrets are looked up in `secrets` (the bootstrap's static ones: the
/// channel that would deliver dynamic ones is this one). Cancel-safe.
pub async fn grpc_channel(
    cluster: &model::Cluster,
    secrets: &Secrets,
) -> Result<Channel, XdsError> {
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
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(cluster.connect_timeout);
    let Some(tls) = &cluster.tls else {
        return Ok(endpoint.connect().await?);
    };
    let mut tls = tls.clone();
    tls.common.secrets = tls
        .common
        .resolve(secrets)
        .map_err(|e| bad(format!("TLS: {e}")))?;
    // Reads certificate files: off the runtime's worker.
    let compiled = tokio::task::spawn_blocking(move || ClientTls::compile(&tls))
        .await
        .map_err(|e| bad(format!("TLS: {e}")))?
        .map_err(|e| bad(format!("TLS: {e}")))?;
    let connector = TlsConnector {
        tls: Arc::new(compiled),
        host: Arc::from(e.host.as_str()),
        port: e.port,
    };
    // tonic speaks HTTP/2 over whatever the connector returns; the `http`
    // scheme only keeps it from adding TLS of its own.
    Ok(endpoint.connect_with_connector(connector).await?)
}

/// Dials a TCP endpoint and runs the cluster's TLS handshake on it,
/// offering `h2` unless the context names its own ALPN.
#[derive(Clone)]
struct TlsConnector {
    tls: Arc<ClientTls>,
    host: Arc<str>,
    port: u16,
}

impl Service<Uri> for TlsConnector {
    type Response = TokioIo<ClientTlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect((&*this.host, this.port)).await?;
            let peer = tcp.peer_addr()?.ip();
            let stream = this.tls.connect(tcp, peer, DefaultAlpn::Http2).await?;
            Ok(TokioIo::new(stream))
        })
    }
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

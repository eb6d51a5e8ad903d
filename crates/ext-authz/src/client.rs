//! One request to a service through a cluster: pick a host by the
//! cluster's balancer, lease a pooled connection under its circuit
//! breakers, send, and read the whole answer, all within a deadline.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Uri, Version, header, response};
use http_body_util::BodyExt;
use strait_codec::Body;
use strait_model::UpstreamProtocol;
use strait_upstream::{ClusterRegistry, RoutingPriority};

/// Why a call got no answer.
#[derive(Debug)]
pub(crate) enum CallError {
    NoCluster,
    NoHealthyHost,
    Upstream(strait_upstream::UpstreamError),
    Body,
    Timeout,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NoCluster => f.write_str("no such cluster"),
            CallError::NoHealthyHost => f.write_str("no healthy upstream"),
            CallError::Upstream(e) => write!(f, "{e}"),
            CallError::Body => f.write_str("answer cut off"),
            CallError::Timeout => f.write_str("timeout"),
        }
    }
}

/// A whole answer: its head, body and trailers.
pub(crate) struct Answer {
    pub(crate) head: response::Parts,
    pub(crate) body: Bytes,
    pub(crate) trailers: Option<HeaderMap>,
}

/// Sends `req` (origin-form path in its URI, `authority` for Host or
/// `:authority`) to `cluster`; `grpc` calls need HTTP/2 whatever the
/// cluster's downstream-protocol setting.
pub(crate) async fn call(
    upstreams: &ClusterRegistry,
    cluster: &str,
    authority: &str,
    mut req: Request<Body>,
    timeout: Duration,
    grpc: bool,
) -> Result<Answer, CallError> {
    let cluster = upstreams.get(cluster).ok_or(CallError::NoCluster)?;
    let h2 = match cluster.spec().protocol {
        UpstreamProtocol::Http1 => false,
        UpstreamProtocol::Http2 => true,
        UpstreamProtocol::Downstream => grpc,
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if h2 {
        *req.version_mut() = Version::HTTP_2;
        *req.uri_mut() = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|_| CallError::Body)?;
        req.headers_mut().remove(header::HOST);
    } else {
        *req.version_mut() = Version::HTTP_11;
        let host = HeaderValue::from_str(authority).map_err(|_| CallError::Body)?;
        req.headers_mut().insert(header::HOST, host);
    }
    let attempt = async {
        let host = cluster.pick().ok_or(CallError::NoHealthyHost)?;
        let lease = cluster
            .lease_for(host, RoutingPriority::Default, h2)
            .await
            .map_err(CallError::Upstream)?;
        let resp = lease.send(req).await.map_err(CallError::Upstream)?;
        let (head, body) = resp.into_parts();
        let collected = body.collect().await.map_err(|_| CallError::Body)?;
        let trailers = collected.trailers().cloned();
        Ok(Answer {
            head,
            body: collected.to_bytes(),
            trailers,
        })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| CallError::Timeout)?
}

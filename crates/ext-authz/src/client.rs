//! One request to a service through a cluster: pick a host by the
//! cluster's balancer, lease a pooled connection under its circuit
//! breakers, send, and read the whole answer, all within a deadline.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri, Version, header, response};
use http_body_util::BodyExt;
use strait_codec::Body;
use strait_model::UpstreamProtocol;
use strait_upstream::{ClusterRegistry, RoutingPriority};

use crate::check::{CHECK_PATH, Verdict, grpc_verdict};

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
pub(crate) async fn call_cluster(
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

/// A `Check` call over gRPC, as both filters make it.
pub(crate) struct GrpcCall<'a> {
    pub(crate) cluster: &'a str,
    /// `:authority` (the cluster name when empty).
    pub(crate) authority: &'a str,
    pub(crate) initial_metadata: &'a [(String, String)],
    pub(crate) timeout: Duration,
}

impl GrpcCall<'_> {
    /// Sends the framed `CheckRequest` `body`; the answer read into a verdict.
    pub(crate) async fn check(&self, upstreams: &ClusterRegistry, body: Bytes) -> Verdict {
        let mut call = Request::post(CHECK_PATH)
            .body(Body::full(body))
            .unwrap_or_default();
        let h = call.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        let ms = self.timeout.as_millis();
        if let Ok(v) = HeaderValue::from_str(&format!("{ms}m")) {
            h.insert("grpc-timeout", v);
        }
        for (k, v) in self.initial_metadata {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                h.append(k, v);
            }
        }
        let authority = if self.authority.is_empty() {
            self.cluster
        } else {
            self.authority
        };
        match call_cluster(upstreams, self.cluster, authority, call, self.timeout, true).await {
            Ok(a) => grpc_verdict(a.head.status, &a.head.headers, a.trailers.as_ref(), &a.body),
            Err(e) => failed(self.cluster, &e),
        }
    }
}

/// A call that got no answer: a verdict of error.
pub(crate) fn failed(cluster: &str, e: &CallError) -> Verdict {
    tracing::debug!(cluster, error = %e, "ext_authz call failed");
    Verdict::Error
}

//! Remote JWKS: fetched with a GET through the named cluster (its balancer,
//! pools, TLS and stats: the data path's, as Envoy's async client goes
//! through the cluster manager), bounded by `http_uri.timeout`, retried as
//! `retry_policy` says.

use std::time::Duration;

use http::{Request, StatusCode, Uri, Version, header};
use http_body_util::{BodyExt, Limited};
use strait_codec::Body;
use strait_model::{UpstreamProtocol, jwt::RemoteJwks};
use strait_upstream::ClusterRegistry;

use crate::jwks::Jwks;

/// A JWKS document larger than this is a failed fetch.
const MAX_JWKS: usize = 1 << 20;

/// Why a fetch failed (all of them answer `Jwks remote fetch is failed`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error("no cluster {0}")]
    NoCluster(String),
    #[error("no healthy host in cluster {0}")]
    NoHost(String),
    #[error("bad JWKS uri {0}")]
    Uri(String),
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("status {0}")]
    Status(StatusCode),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("invalid JWKS: {0}")]
    Invalid(crate::status::Status),
}

impl FetchError {
    /// Envoy's default `retry_on` for a JWKS fetch: 5xx, gateway errors,
    /// connect failures and resets.
    fn retriable(&self) -> bool {
        matches!(self, FetchError::Upstream(_) | FetchError::NoHost(_))
            || matches!(self, FetchError::Status(s) if s.is_server_error())
    }
}

/// Fetches and parses the key set `remote` names.
pub async fn fetch(clusters: &ClusterRegistry, remote: &RemoteJwks) -> Result<Jwks, FetchError> {
    let attempts = async {
        let retries = remote.retry.as_ref().map_or(0, |r| r.num_retries);
        let mut attempt = 0u32;
        loop {
            match once(clusters, remote).await {
                Err(e) if e.retriable() && attempt < retries => {
                    tracing::debug!(error = %e, uri = %remote.uri, "JWKS fetch retried");
                    tokio::time::sleep(backoff(remote, attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    };
    match tokio::time::timeout(remote.timeout, attempts).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(remote.timeout)),
    }
}

/// Envoy's jittered exponential back-off: a random wait below
/// `base × 2^attempt`, at most `max_interval`.
fn backoff(remote: &RemoteJwks, attempt: u32) -> Duration {
    let Some(r) = &remote.retry else {
        return Duration::ZERO;
    };
    let ceiling = r
        .base_interval
        .saturating_mul(1u32 << attempt.min(16))
        .min(r.max_interval);
    let millis = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(rand::random::<u64>() % millis)
}

async fn once(clusters: &ClusterRegistry, remote: &RemoteJwks) -> Result<Jwks, FetchError> {
    let uri: Uri = remote
        .uri
        .parse()
        .map_err(|_| FetchError::Uri(remote.uri.clone()))?;
    let authority = uri
        .authority()
        .ok_or_else(|| FetchError::Uri(remote.uri.clone()))?
        .clone();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let cluster = clusters
        .get(&remote.cluster)
        .ok_or_else(|| FetchError::NoCluster(remote.cluster.clone()))?;
    let h2 = cluster.spec().protocol == UpstreamProtocol::Http2;
    let mut req = Request::new(Body::Empty);
    if h2 {
        *req.version_mut() = Version::HTTP_2;
        *req.uri_mut() = Uri::builder()
            .scheme(uri.scheme_str().unwrap_or("http"))
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|_| FetchError::Uri(remote.uri.clone()))?;
    } else {
        *req.uri_mut() = path
            .parse()
            .map_err(|_| FetchError::Uri(remote.uri.clone()))?;
        if let Ok(v) = header::HeaderValue::from_str(authority.as_str()) {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    let host = cluster
        .pick()
        .ok_or_else(|| FetchError::NoHost(remote.cluster.clone()))?;
    let lease = cluster
        .lease(host)
        .await
        .map_err(|e| FetchError::Upstream(e.to_string()))?;
    let resp = lease
        .send(req)
        .await
        .map_err(|e| FetchError::Upstream(e.to_string()))?;
    if resp.status() != StatusCode::OK {
        // Read to the end so the connection goes back to its pool.
        let status = resp.status();
        let _ = Limited::new(resp.into_body(), MAX_JWKS).collect().await;
        return Err(FetchError::Status(status));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS)
        .collect()
        .await
        .map_err(|e| FetchError::Upstream(e.to_string()))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    Jwks::parse(&text).map_err(FetchError::Invalid)
}

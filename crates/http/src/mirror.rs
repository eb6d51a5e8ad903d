//! `request_mirror_policies`: a fire-and-forget copy of the request to
//! another cluster, with `-shadow` appended to its host. The copy never
//! delays the request it shadows and its response is discarded.

use http::{HeaderValue, Request, Uri, Version, header, uri::Authority};
use http_body_util::BodyExt;
use strait_codec::{Body, RecordingWatch};
use strait_model::{UpstreamProtocol, policy::MirrorPolicy};
use strait_upstream::ClusterRegistry;

/// Starts one shadow request per policy whose fraction hits. `req` is the
/// prepared upstream request (its body is not used); `recording` is its
/// body's copy, `None` for a request without a body. A body that turns out
/// too large to keep is not shadowed. Allocates the copies' heads.
pub(crate) fn spawn<B>(
    registry: &ClusterRegistry,
    policies: &[MirrorPolicy],
    req: &Request<B>,
    recording: Option<&RecordingWatch>,
) {
    let authority = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    });
    let Some(shadow) = authority.and_then(shadow_authority) else {
        return;
    };
    for p in policies {
        if !p.fraction.hits(rand::random::<u32>() % 1_000_000) {
            continue;
        }
        let Some(cluster) = registry.get(&p.cluster) else {
            continue;
        };
        let h2 = cluster.spec().protocol == UpstreamProtocol::Http2;
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut headers = req.headers().clone();
        let uri = if h2 {
            headers.remove(header::HOST);
            Uri::builder()
                .scheme("http")
                .authority(shadow.clone())
                .path_and_query(path)
                .build()
        } else {
            if let Ok(v) = HeaderValue::from_str(shadow.as_str()) {
                headers.insert(header::HOST, v);
            }
            Uri::builder().path_and_query(path).build()
        };
        let Ok(uri) = uri else { continue };
        let method = req.method().clone();
        let recording = recording.cloned();
        tokio::spawn(async move {
            let body = match recording {
                None => Body::Empty,
                Some(mut w) => match w.wait_for(Option::is_some).await {
                    Ok(kept) => match kept.clone().flatten() {
                        Some(frames) => Body::replay(frames),
                        None => return,
                    },
                    Err(_) => return,
                },
            };
            let mut copy = Request::new(body);
            *copy.method_mut() = method;
            *copy.uri_mut() = uri;
            *copy.version_mut() = if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            *copy.headers_mut() = headers;
            let Some(host) = cluster.pick() else { return };
            let Ok(lease) = cluster.lease(host).await else {
                return;
            };
            if let Ok(resp) = lease.send(copy).await {
                // Read to the end so the connection goes back to its pool.
                let _ = resp.into_body().collect().await;
            }
        });
    }
}

/// `host-shadow`, keeping a port: `a.b:8080` becomes `a.b-shadow:8080`.
fn shadow_authority(authority: &str) -> Option<Authority> {
    let (host, port) = match authority.rsplit_once(':') {
        // A bare IPv6 literal: its colons are not a port separator.
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (authority, None),
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (authority, None),
    };
    let text = match port {
        Some(p) => format!("{host}-shadow:{p}"),
        None => format!("{host}-shadow"),
    };
    Authority::try_from(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_host_keeps_port() {
        let s = |a: &str| shadow_authority(a).map(|a| a.to_string());
        assert_eq!(s("example.com").as_deref(), Some("example.com-shadow"));
        assert_eq!(
            s("example.com:8080").as_deref(),
            Some("example.com-shadow:8080")
        );
    }
}

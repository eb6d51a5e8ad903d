//! `istio.metadata_exchange` over HTTP (`io.istio.http.peer_metadata.Config`,
//! or the null-VM Wasm `envoy.wasm.metadata_exchange`), as Istio's
//! `peer_metadata` filter runs it with `istio_headers`:
//!
//! - downstream discovery: the request's `x-envoy-peer-metadata(-id)`
//!   name the downstream peer (kept in the filter state for the stats
//!   filter); both headers are removed, so the application never sees
//!   them;
//! - upstream propagation: the upstream request carries the local
//!   workload's headers (not to `PassthroughCluster` with
//!   `skip_external_clusters`);
//! - upstream discovery: the response's headers name the upstream peer,
//!   and are removed;
//! - downstream propagation: the response carries the local headers, each
//!   only when the request carried the peer's (so a client outside the
//!   mesh learns nothing).

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use strait_http::{
    Decision, FilterState, HttpFilter, HttpFilterFactory, RequestHead, ResponseHead,
};
use strait_model::{
    extension::Extension,
    istio::{PeerMetadata, type_url},
};

use crate::peer::{DownstreamPeer, PeerCache, UpstreamPeer};

pub static PEER_METADATA: HeaderName = HeaderName::from_static("x-envoy-peer-metadata");
pub static PEER_METADATA_ID: HeaderName = HeaderName::from_static("x-envoy-peer-metadata-id");

/// The factory of the HTTP exchange.
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerMetadataFactory;

impl HttpFilterFactory for PeerMetadataFactory {
    fn type_url(&self) -> &str {
        type_url::PEER_METADATA
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        let config = config
            .get::<PeerMetadata>()
            .ok_or("peer metadata config of the wrong type")?;
        let header = |v: &str| {
            HeaderValue::from_str(v).map_err(|_| format!("peer metadata header value {v:?}"))
        };
        Ok(Arc::new(PeerMetadataFilter {
            id: header(&config.id)?,
            value: header(&config.value)?,
            config: config.clone(),
            peers: PeerCache::default(),
        }))
    }
}

/// The filter of one config version.
#[derive(Debug)]
pub struct PeerMetadataFilter {
    config: PeerMetadata,
    /// The local headers, made once.
    id: HeaderValue,
    value: HeaderValue,
    peers: PeerCache,
}

/// Which of the exchange headers the request carried (filter state, only
/// stored when one did).
#[derive(Debug, Clone, Copy)]
struct Received {
    id: bool,
    value: bool,
}

impl PeerMetadataFilter {
    /// The peer the headers of `headers` describe; removes them.
    fn discover(&self, headers: &mut HeaderMap) -> Option<Arc<crate::peer::Workload>> {
        let id = headers.remove(&PEER_METADATA_ID);
        let value = headers.remove(&PEER_METADATA)?;
        let id = id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
        self.peers
            .lookup(id, value.as_bytes(), &self.config.additional_labels)
    }
}

impl HttpFilter for PeerMetadataFilter {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        let headers = &mut req.head.headers;
        if self.config.downstream_discovery {
            let received = Received {
                id: headers.contains_key(&PEER_METADATA_ID),
                value: headers.contains_key(&PEER_METADATA),
            };
            if received.id || received.value {
                req.state.insert(received);
            }
            if let Some(peer) = self.discover(headers) {
                req.state.insert(DownstreamPeer(peer));
            }
        }
        if self.config.upstream_propagation {
            let external = req.info.cluster == Some("PassthroughCluster");
            if !(self.config.skip_external_clusters && external) {
                headers.insert(PEER_METADATA_ID.clone(), self.id.clone());
                headers.insert(PEER_METADATA.clone(), self.value.clone());
            }
        }
        Decision::Continue
    }

    fn on_response(&self, resp: &mut ResponseHead<'_>) {
        if self.config.upstream_discovery
            && let Some(peer) = self.discover(resp.headers)
        {
            resp.state.insert(UpstreamPeer(peer));
        }
        if self.config.downstream_propagation
            && let Some(received) = resp.state.get::<Received>().copied()
        {
            if received.id {
                resp.headers
                    .insert(PEER_METADATA_ID.clone(), self.id.clone());
            }
            if received.value {
                resp.headers
                    .insert(PEER_METADATA.clone(), self.value.clone());
            }
        }
    }
}

/// The downstream peer the exchange found for a request, if any.
pub fn downstream_peer(state: &FilterState) -> Option<&Arc<crate::peer::Workload>> {
    state.get::<DownstreamPeer>().map(|p| &p.0)
}

/// The upstream peer the exchange found for a request, if any.
pub fn upstream_peer(state: &FilterState) -> Option<&Arc<crate::peer::Workload>> {
    state.get::<UpstreamPeer>().map(|p| &p.0)
}

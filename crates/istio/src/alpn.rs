//! `istio.alpn` (`istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig`):
//! for a request routed to a cluster, the ALPN list configured for the
//! protocol the cluster will speak upstream becomes the request's
//! [`ApplicationProtocols`] (Envoy's filter state
//! `envoy.network.application_protocols`), which the router hands to the
//! pool: the upstream TLS connection offers it instead of the cluster's
//! list, and only connections that offered it serve the request.
//!
//! istiod renders `istio-http/1.1, istio, http/1.1` and `istio-h2, istio,
//! h2`: a peer sidecar's inbound listener matches its HTTP filter chains on
//! `istio-http/1.0`, `istio-http/1.1` and `istio-h2` (and the TLS handshake
//! still negotiates `http/1.1` or `h2`). Without it the peer serves the
//! connection on its TCP chain, losing its L7 policy and metrics.
//!
//! As Istio's filter does: no route, no cluster (not yet known to this
//! proxy) or an empty list leaves the request alone. The protocol is the
//! cluster's upstream one (its `HttpProtocolOptions`, or the downstream's
//! with `use_downstream_protocol_config`); Envoy never sends HTTP/1.0
//! upstream, so the `HTTP10` list never applies.

use std::sync::Arc;

use strait_http::{Decision, HttpFilter, HttpFilterFactory, RequestHead};
use strait_model::{
    extension::Extension,
    istio::{IstioAlpn, type_url},
};
use strait_tls::ApplicationProtocols;

/// The factory of `istio.alpn`.
#[derive(Debug, Default, Clone, Copy)]
pub struct IstioAlpnFactory;

impl HttpFilterFactory for IstioAlpnFactory {
    fn type_url(&self) -> &str {
        type_url::ALPN
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        let config = config
            .get::<IstioAlpn>()
            .ok_or("istio.alpn config of the wrong type")?;
        Ok(Arc::new(IstioAlpnFilter::new(config)))
    }
}

/// The filter of one config version: its lists, made once and shared by
/// every request (a request clones one `Arc`).
#[derive(Debug)]
pub struct IstioAlpnFilter {
    http11: Option<ApplicationProtocols>,
    http2: Option<ApplicationProtocols>,
}

impl IstioAlpnFilter {
    pub fn new(config: &IstioAlpn) -> Self {
        let list = |l: &[String]| {
            (!l.is_empty()).then(|| ApplicationProtocols::new(l.iter().map(String::as_str)))
        };
        IstioAlpnFilter {
            http11: list(&config.http11),
            http2: list(&config.http2),
        }
    }

    /// The override for a request to a cluster that speaks HTTP/2 upstream
    /// (`h2`) or HTTP/1.1.
    pub fn for_upstream(&self, h2: bool) -> Option<&ApplicationProtocols> {
        if h2 {
            self.http2.as_ref()
        } else {
            self.http11.as_ref()
        }
    }
}

impl HttpFilter for IstioAlpnFilter {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        let Some(name) = req.info.cluster else {
            return Decision::Continue;
        };
        let Some(cluster) = req.info.upstreams.get(name) else {
            return Decision::Continue;
        };
        let h2 = cluster.upstream_http2(req.info.version == http::Version::HTTP_2);
        if let Some(list) = self.for_upstream(h2) {
            req.state.insert(list.clone());
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(l: &[&str]) -> Vec<String> {
        l.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn the_list_follows_the_upstream_protocol_and_empty_is_none() {
        let f = IstioAlpnFilter::new(&IstioAlpn {
            http10: v(&["istio-http/1.0", "istio", "http/1.0"]),
            http11: v(&["istio-http/1.1", "istio", "http/1.1"]),
            http2: Vec::new(),
        });
        assert_eq!(
            f.for_upstream(false).map(|l| l.iter().collect::<Vec<_>>()),
            Some(vec!["istio-http/1.1", "istio", "http/1.1"])
        );
        assert!(
            f.for_upstream(true).is_none(),
            "an empty list is no override"
        );
        let h2 = IstioAlpnFilter::new(&IstioAlpn {
            http2: v(&["istio-h2", "istio", "h2"]),
            ..IstioAlpn::default()
        });
        assert_eq!(
            h2.for_upstream(true).map(|l| l.iter().collect::<Vec<_>>()),
            Some(vec!["istio-h2", "istio", "h2"])
        );
        assert!(h2.for_upstream(false).is_none());
    }

    #[test]
    fn the_factory_takes_only_its_config() {
        assert!(
            IstioAlpnFactory
                .create(&Extension::new(type_url::ALPN, IstioAlpn::default()))
                .is_ok()
        );
        assert!(
            IstioAlpnFactory
                .create(&Extension::new(type_url::ALPN, 7u8))
                .is_err()
        );
    }
}

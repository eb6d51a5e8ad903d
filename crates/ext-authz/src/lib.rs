//! `envoy.filters.http.ext_authz`: before a request goes on, ask an
//! authorization service, over gRPC (`envoy.service.auth.v3.Authorization/
//! Check`) or plain HTTP, through one of the proxy's clusters. The answer
//! allows the request (possibly changing its headers and the response's),
//! denies it with the service's own answer, or fails: then the request is
//! denied with `status_on_error` unless `failure_mode_allow` lets it
//! through. Istio's AuthorizationPolicy CUSTOM action renders this filter.
//!
//! The front end translates the config into [`strait_model::ext_authz`];
//! [`ExtAuthzFactory`] builds the filter for the HTTP filter registry. The
//! call pauses the request, never the worker; with `with_request_body` the
//! chain first reads the start of the body for it.
//!
//! Depends on the model, the HTTP filter chain and the upstream clusters
//! it calls through; Envoy's protobufs only for the service's messages.

mod check;
mod client;
mod filter;
mod network;
mod stats;

pub use network::NetworkExtAuthzFactory;

use std::sync::Arc;

use strait_http::{FilterScope, HttpFilter, HttpFilterFactory};
use strait_model::{ext_authz::ExtAuthz, extension::Extension, filter::type_url};

/// Makes ext_authz filters from their translated configs.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExtAuthzFactory;

impl HttpFilterFactory for ExtAuthzFactory {
    fn type_url(&self) -> &str {
        type_url::EXT_AUTHZ
    }

    fn per_route_type_url(&self) -> Option<&str> {
        Some(type_url::EXT_AUTHZ_PER_ROUTE)
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        self.create_in(config, &FilterScope::default())
    }

    fn create_in(
        &self,
        config: &Extension,
        scope: &FilterScope<'_>,
    ) -> Result<Arc<dyn HttpFilter>, String> {
        let config = config
            .get::<ExtAuthz>()
            .ok_or_else(|| format!("{} config of the wrong type", type_url::EXT_AUTHZ))?;
        Ok(Arc::new(filter::ExtAuthzFilter::new(
            config.clone(),
            scope.hcm_stat_prefix,
        )))
    }
}

//! The extensions a proxy can build, by type URL: HTTP filters
//! (`strait-http`'s registry), terminal network filters and listener
//! filters (`strait-listener`'s).
//!
//! One [`Extensions`] value is both faces the lower crates need: the
//! [`ExtensionParsers`] the Envoy front end consults for type URLs it does
//! not build in, and the [`ChainCompiler`] the snapshot builds filter chains
//! with.

use strait_http::HttpFilterRegistry;
use strait_listener::{ListenerFilterRegistry, NetworkFilterRegistry};
use strait_model::{
    HttpConnectionManager,
    extension::{Extension, ExtensionParsers, TypedValue},
};
use strait_snapshot::{ChainCompiler, CompiledFilters};

/// The HTTP filters a proxy builds unless told otherwise: `strait-http`'s
/// built-ins (fault, CORS, header mutation, router) and those of the
/// filter crates above it (external authorization, JWT authentication,
/// Istio's `istio_authn`), registered like any embedding program's. RBAC
/// and the rate limits (local and global HTTP, local network), and
/// Istio's telemetry filters (`strait-istio`), are added by
/// [`Extensions::new`] unless the caller registered its own.
pub fn http_filters() -> HttpFilterRegistry {
    let mut r = HttpFilterRegistry::default();
    r.register(strait_ext_authz::ExtAuthzFactory)
        .register(strait_jwt::JwtFactory)
        .register(strait_jwt::IstioAuthnFactory);
    r
}

/// Every extension registry of a proxy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extensions {
    pub(crate) http: HttpFilterRegistry,
    pub(crate) network: NetworkFilterRegistry,
    pub(crate) listener: ListenerFilterRegistry,
}

impl Extensions {
    /// The registries as given, with Strait's own policy filters (RBAC,
    /// network ext_authz) added where the caller did not register a
    /// factory of its own.
    pub(crate) fn new(
        http: &HttpFilterRegistry,
        network: &NetworkFilterRegistry,
        listener: &ListenerFilterRegistry,
    ) -> Self {
        let (mut http, mut network) = (http.clone(), network.clone());
        strait_rbac::register(&mut http, &mut network);
        if !network.has_read(strait_model::filter::type_url::NETWORK_EXT_AUTHZ) {
            network.register_read(strait_ext_authz::NetworkExtAuthzFactory);
        }
        strait_ratelimit::register(&mut http, &mut network);
        strait_istio::register(&mut http, &mut network);
        Extensions {
            http,
            network,
            listener: listener.clone(),
        }
    }
}

impl ExtensionParsers for Extensions {
    fn http_filter(
        &self,
        type_url: &str,
        value: TypedValue<'_>,
    ) -> Option<Result<Extension, String>> {
        self.http.http_filter(type_url, value)
    }

    fn http_filter_per_route(
        &self,
        type_url: &str,
        value: TypedValue<'_>,
    ) -> Option<Result<Extension, String>> {
        self.http.http_filter_per_route(type_url, value)
    }

    fn network_filter(
        &self,
        type_url: &str,
        value: TypedValue<'_>,
    ) -> Option<Result<Extension, String>> {
        self.network.parse(type_url, value)
    }

    fn listener_filter(
        &self,
        type_url: &str,
        value: TypedValue<'_>,
    ) -> Option<Result<Extension, String>> {
        self.listener.parse(type_url, value)
    }
}

impl ChainCompiler for Extensions {
    fn http_filters(&self, hcm: &HttpConnectionManager) -> Result<CompiledFilters, String> {
        self.http.http_filters(hcm)
    }

    fn network_filter(&self, config: &Extension) -> Result<CompiledFilters, String> {
        self.network.compile(config)
    }

    fn read_filter(&self, config: &Extension) -> Result<CompiledFilters, String> {
        self.network.compile_read(config)
    }

    fn listener_filter(&self, config: &Extension) -> Result<CompiledFilters, String> {
        self.listener.compile(config)
    }
}

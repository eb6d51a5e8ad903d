//! HTTP filter factories by type URL: the extension point of the HTTP path.
//!
//! Every HTTP filter, built-in or an embedding program's, is made by the
//! [`HttpFilterFactory`] registered for its config's type URL. The built-in
//! filters' configs are translated from Envoy's protos by the front end;
//! a registered filter of another type URL gets its config through its
//! factory's [`HttpFilterFactory::parse`] (from the `Any`'s bytes, or from a
//! `TypedStruct`'s value in YAML or JSON), which the front end consults
//! through [`ExtensionParsers`]. The snapshot builds each connection
//! manager's [`FilterChain`] through the registry's [`ChainCompiler`].

use std::sync::Arc;

use strait_model::{
    HttpConnectionManager,
    extension::{ByTypeUrl, Extension, ExtensionParsers, TypedValue},
};
use strait_snapshot::{ChainCompiler, CompiledFilters};

use crate::{
    builtin,
    chain::{FilterChain, FilterScope, HttpFilter, HttpFilterFactory},
};

/// The HTTP filter factories a proxy knows, by type URL. [`Default`] holds
/// the built-in filters (fault, CORS, header mutation); an embedding program
/// adds its own with [`HttpFilterRegistry::register`].
#[derive(Clone, Debug)]
pub struct HttpFilterRegistry {
    by_type: ByTypeUrl<dyn HttpFilterFactory>,
    by_per_route_type: ByTypeUrl<dyn HttpFilterFactory>,
    /// Type URLs the front end translates itself: never parsed here.
    builtin: Vec<String>,
    /// Handed to every factory that builds a filter.
    /// The proxy's live clusters, handed to factories (see
    /// [`HttpFilterRegistry::set_clusters`]).
    clusters: Option<Arc<strait_upstream::ClusterRegistry>>,
}

impl Default for HttpFilterRegistry {
    fn default() -> Self {
        let mut r = HttpFilterRegistry {
            by_type: ByTypeUrl::default(),
            by_per_route_type: ByTypeUrl::default(),
            builtin: Vec::new(),
            clusters: None,
        };
        for f in builtin::factories() {
            r.builtin.push(f.type_url().to_owned());
            r.insert(f);
        }
        r
    }
}

impl HttpFilterRegistry {
    /// The built-in filters.
    pub fn new() -> Self {
        HttpFilterRegistry::default()
    }

    /// Adds `factory` for its type URL, replacing one registered before
    /// (a built-in filter can be replaced by an embedding program's).
    pub fn register(&mut self, factory: impl HttpFilterFactory) -> &mut Self {
        let url = factory.type_url().to_owned();
        self.builtin.retain(|b| *b != url);
        self.insert(Arc::new(factory));
        self
    }

    /// Gives the factories the proxy's live clusters (the composition
    /// crate does, once it has made them).
    pub fn set_clusters(&mut self, clusters: Arc<strait_upstream::ClusterRegistry>) -> &mut Self {
        self.clusters = Some(clusters);
        self
    }

    /// Whether a factory is registered for `type_url`.
    pub fn has(&self, type_url: &str) -> bool {
        self.by_type.get(type_url).is_some()
    }

    fn insert(&mut self, factory: Arc<dyn HttpFilterFactory>) {
        if let Some(per_route) = factory.per_route_type_url() {
            self.by_per_route_type
                .insert(per_route, Arc::clone(&factory));
        }
        let url = factory.type_url().to_owned();
        self.by_type.insert(&url, factory);
    }

    /// Whether `type_url` is still served by a built-in factory (the front
    /// end translates its configs; the built-in router forwards).
    fn is_builtin(&self, type_url: &str) -> bool {
        self.builtin.iter().any(|b| b == type_url)
    }

    /// The filter `config` configures, built by its factory; an `Err`
    /// names the filter (`name`) and why.
    fn build(
        &self,
        name: &str,
        config: &Extension,
        scope: &FilterScope<'_>,
    ) -> Result<Arc<dyn HttpFilter>, String> {
        self.by_type
            .require(config.type_url(), "filter")
            .and_then(|factory| factory.create_in(config, scope))
            .map_err(|why| format!("{name}: {why}"))
    }

    /// Builds the filter chain of `hcm`; `Err` names the filter that could
    /// not be built and why.
    pub fn chain(&self, hcm: &HttpConnectionManager) -> Result<FilterChain, String> {
        let mut filters = Vec::with_capacity(hcm.http_filters.len());
        let prefix = format!("http.{}.", hcm.stat_prefix);
        let scope = FilterScope::of(hcm, &prefix, self.clusters.as_ref());
        for f in &hcm.http_filters {
            let filter = self.build(&f.name, &f.config, &scope)?;
            filters.push((f.name.clone(), f.disabled, filter));
        }
        // The terminal: the built-in router forwards through the request
        // path itself; a filter registered in its place answers instead.
        let terminal = if self.is_builtin(hcm.router.type_url()) {
            None
        } else {
            Some(self.build("router", &hcm.router, &scope)?)
        };
        Ok(FilterChain::new(filters, terminal))
    }
}

impl ChainCompiler for HttpFilterRegistry {
    fn http_filters(&self, hcm: &HttpConnectionManager) -> Result<CompiledFilters, String> {
        self.chain(hcm).map(|c| Arc::new(c) as CompiledFilters)
    }
}

impl ExtensionParsers for HttpFilterRegistry {
    fn http_filter(
        &self,
        type_url: &str,
        value: TypedValue<'_>,
    ) -> Option<Result<Extension, String>> {
        if self.is_builtin(type_url) {
            return None;
        }
        self.by_type.get(type_url).map(|f| f.parse(value))
    }

    fn http_filter_per_route(
        &self,
        type_url: &str,
        value: TypedValue<'_>,
    ) -> Option<Result<Extension, String>> {
        let factory = self.by_per_route_type.get(type_url)?;
        if self.is_builtin(factory.type_url()) {
            return None;
        }
        Some(factory.parse_per_route(value))
    }
}

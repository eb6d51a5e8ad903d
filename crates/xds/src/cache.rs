//! Per-type caches of translated resources, and the whole config they make
//! together with the bootstrap's static resources.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::SystemTime,
};

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::{
    envoy::config::{
        cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
        route::v3::RouteConfiguration,
    },
    google::protobuf::Any,
};
use prost::Message;
use strait_envoy::{
    ConfigError, Parsers,
    dump::{RawResource, TypeDump, XdsDump},
    model,
    model::{
        Discovery,
        secret::{SdsRef, SecretEntry, SecretSource, Secrets},
    },
    parse::TypedStructs,
    translate_cluster, translate_cluster_load_assignment, translate_listener_with,
    translate_route_config_with, translate_secret,
};

use crate::type_url;

/// Every resource accepted so far, by type and name, translated. Cloned and
/// changed into a candidate for each response, and kept only if the config
/// it makes is published, so a refused response leaves no trace.
#[derive(Debug, Clone)]
pub struct Cache {
    /// The bootstrap's own config (static resources, admin, node).
    base: model::Config,
    /// Parsers for extension type URLs the front end does not build in.
    parsers: Parsers,
    listeners: BTreeMap<String, model::Listener>,
    routes: BTreeMap<String, model::RouteConfig>,
    clusters: BTreeMap<String, model::Cluster>,
    /// EDS assignments by service name.
    endpoints: BTreeMap<String, Vec<model::Endpoint>>,
    /// Secrets from every SDS source (ADS, gRPC streams, files), by name.
    secrets: Secrets,
    /// The same resources as received, for `/config_dump` (warming lists
    /// are filled in by [`Cache::dump`]).
    raw: XdsDump,
    /// Secrets named but not delivered, and since when (kept by
    /// [`Cache::prune`] for the dump's warming secrets).
    awaited_secrets: BTreeMap<String, SystemTime>,
}

impl Cache {
    /// An empty cache over the bootstrap's config.
    pub fn new(base: model::Config) -> Cache {
        Cache::with_parsers(base, Parsers::default())
    }

    /// An empty cache whose translations consult `parsers`.
    pub fn with_parsers(base: model::Config, parsers: Parsers) -> Cache {
        Cache {
            base,
            parsers,
            listeners: BTreeMap::new(),
            routes: BTreeMap::new(),
            clusters: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            secrets: Secrets::new(),
            raw: XdsDump::default(),
            awaited_secrets: BTreeMap::new(),
        }
    }

    pub fn base(&self) -> &model::Config {
        &self.base
    }

    /// Applies one state-of-the-world response of `type_url` at `version`:
    /// listeners and clusters are replaced wholesale (the response is the
    /// full set), route configs and assignments merged by name (the
    /// response holds what changed among those subscribed). Every resource
    /// is translated; any problem refuses the whole response, with each
    /// problem prefixed by the resource's name.
    pub fn apply(
        &mut self,
        type_url: &str,
        version: &str,
        resources: &[Any],
    ) -> Result<(), Vec<String>> {
        let previous = match type_url {
            type_url::LISTENER => {
                self.listeners.clear();
                std::mem::take(&mut self.raw.listeners.resources)
            }
            type_url::CLUSTER => {
                self.clusters.clear();
                std::mem::take(&mut self.raw.clusters.resources)
            }
            _ => BTreeMap::new(),
        };
        let mut problems = Vec::new();
        let now = SystemTime::now();
        let mut typed = TypedStructs::default();
        for any in resources {
            if let Some(name) = self.insert(type_url, any, version, &mut problems, &mut typed) {
                let prev = previous.get(&name).cloned();
                self.record(type_url, name, version, any, now, prev.as_ref());
            }
        }
        self.finish(type_url, version, problems)
    }

    /// Applies one delta response at `system_version`: `resources` (each
    /// with its own version) are added or replaced by name, `removed`
    /// dropped. Every resource is translated; any problem refuses the whole
    /// response.
    pub fn apply_delta(
        &mut self,
        type_url: &str,
        system_version: &str,
        resources: &[(&str, &Any)],
        removed: &[String],
    ) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let now = SystemTime::now();
        let mut typed = TypedStructs::default();
        for (version, any) in resources {
            if let Some(name) = self.insert(type_url, any, version, &mut problems, &mut typed) {
                self.record(type_url, name, version, any, now, None);
            }
        }
        for name in removed {
            match type_url {
                type_url::LISTENER => drop(self.listeners.remove(name)),
                type_url::CLUSTER => drop(self.clusters.remove(name)),
                type_url::ROUTE => drop(self.routes.remove(name)),
                type_url::ENDPOINT => drop(self.endpoints.remove(name)),
                type_url::SECRET => drop(self.secrets.remove(name)),
                _ => {}
            }
            if let Some(t) = self.raw_mut(type_url) {
                t.resources.remove(name);
            }
        }
        self.finish(type_url, system_version, problems)
    }

    fn finish(
        &mut self,
        type_url: &str,
        version: &str,
        problems: Vec<String>,
    ) -> Result<(), Vec<String>> {
        if !problems.is_empty() {
            return Err(problems);
        }
        if let Some(t) = self.raw_mut(type_url) {
            version.clone_into(&mut t.version_info);
        }
        Ok(())
    }

    fn raw_mut(&mut self, type_url: &str) -> Option<&mut TypeDump> {
        match type_url {
            type_url::LISTENER => Some(&mut self.raw.listeners),
            type_url::CLUSTER => Some(&mut self.raw.clusters),
            type_url::ROUTE => Some(&mut self.raw.routes),
            type_url::ENDPOINT => Some(&mut self.raw.endpoints),
            type_url::SECRET => Some(&mut self.raw.secrets),
            _ => None,
        }
    }

    /// Keeps `any` as received. A resource resent unchanged keeps its
    /// version and time, as in Envoy's dump (`previous` is the entry a
    /// wholesale replacement took out; merged types look in place).
    fn record(
        &mut self,
        type_url: &str,
        name: String,
        version: &str,
        any: &Any,
        now: SystemTime,
        previous: Option<&Arc<RawResource>>,
    ) {
        let Some(t) = self.raw_mut(type_url) else {
            return;
        };
        let kept = previous
            .or_else(|| t.resources.get(&name))
            .filter(|r| r.resource == *any)
            .cloned();
        let entry = kept.unwrap_or_else(|| {
            Arc::new(RawResource {
                name: name.clone(),
                version_info: version.to_owned(),
                last_updated: now,
                resource: any.clone(),
            })
        });
        t.resources.insert(name, entry);
    }

    /// The resources as received, with which listeners and clusters are
    /// still warming.
    pub fn dump(&self) -> XdsDump {
        let mut d = self.raw.clone();
        d.warming_listeners = self
            .listeners
            .values()
            .filter(|l| !self.listener_is_warm(l))
            .map(|l| l.name.clone())
            .collect();
        d.warming_clusters = self
            .clusters
            .values()
            .filter(|c| self.warm_cluster(c).is_none())
            .map(|c| c.name.clone())
            .collect();
        d.warming_secrets = self
            .awaited_secrets
            .iter()
            .map(|(name, since)| (name.clone(), *since))
            .collect();
        d
    }

    /// Translates one resource of `type_url` into its map, or records why
    /// it cannot be. Returns the resource's name when it was taken. `version`
    /// is kept with secrets (their `/config_dump` entry).
    fn insert(
        &mut self,
        type_url: &str,
        any: &Any,
        version: &str,
        problems: &mut Vec<String>,
        typed: &mut TypedStructs,
    ) -> Option<String> {
        // Extensions wrapped in a `TypedStruct` are read as the type they
        // name, as Envoy does and as the static file's parser does.
        let unwrapped = match typed.unwrap(any) {
            Ok(u) => u,
            Err(e) => {
                problems.push(format!("{}: {e}", any.type_url));
                return None;
            }
        };
        let any = unwrapped.as_ref().unwrap_or(any);
        match type_url {
            type_url::LISTENER => {
                let l = decode::<Listener>(any, problems)?;
                if self.base.listeners.iter().any(|s| s.name == l.name) {
                    problems.push(format!(
                        "listener '{}': name: a static listener has this name",
                        l.name
                    ));
                    return None;
                }
                match translate_listener_with(&l, &l.name, &self.parsers) {
                    Ok(m) => {
                        self.listeners.insert(l.name.clone(), m);
                        Some(l.name)
                    }
                    Err(e) => {
                        note(problems, "listener", &l.name, e);
                        None
                    }
                }
            }
            type_url::CLUSTER => {
                let c = decode::<Cluster>(any, problems)?;
                if self.base.clusters.iter().any(|s| s.name == c.name) {
                    problems.push(format!(
                        "cluster '{}': name: a static cluster has this name",
                        c.name
                    ));
                    return None;
                }
                match translate_cluster(&c, &c.name) {
                    Ok(m) => {
                        self.clusters.insert(c.name.clone(), m);
                        Some(c.name)
                    }
                    Err(e) => {
                        note(problems, "cluster", &c.name, e);
                        None
                    }
                }
            }
            type_url::ROUTE => {
                let rc = decode::<RouteConfiguration>(any, problems)?;
                match translate_route_config_with(&rc, &rc.name, &self.parsers) {
                    Ok(m) => {
                        self.routes.insert(rc.name.clone(), m);
                        Some(rc.name)
                    }
                    Err(e) => {
                        note(problems, "route config", &rc.name, e);
                        None
                    }
                }
            }
            type_url::ENDPOINT => {
                let cla = decode::<ClusterLoadAssignment>(any, problems)?;
                match translate_cluster_load_assignment(&cla, &cla.cluster_name) {
                    Ok(eps) => {
                        self.endpoints.insert(cla.cluster_name.clone(), eps);
                        Some(cla.cluster_name)
                    }
                    Err(e) => {
                        note(problems, "cluster load assignment", &cla.cluster_name, e);
                        None
                    }
                }
            }
            type_url::SECRET => {
                let s = decode::<Secret>(any, problems)?;
                if self.base.secrets.contains_key(&s.name) {
                    problems.push(format!(
                        "secret '{}': name: a static secret has this name",
                        s.name
                    ));
                    return None;
                }
                match translate_secret(&s, &s.name) {
                    // A resend of the same content keeps its entry (and its
                    // `last_updated`), so it changes nothing live.
                    Ok((name, secret)) => {
                        match self.secrets.get(&name) {
                            Some(old) if old.secret == secret => {}
                            _ => drop(
                                self.secrets
                                    .insert(name.clone(), SecretEntry::dynamic(secret, version)),
                            ),
                        }
                        Some(name)
                    }
                    Err(e) => {
                        note(problems, "secret", &s.name, e);
                        None
                    }
                }
            }
            other => {
                problems.push(format!("unexpected type {other}"));
                None
            }
        }
    }

    /// The route config names the listeners (static and dynamic) need: the
    /// RDS subscription.
    pub fn route_names(&self) -> BTreeSet<String> {
        self.base
            .listeners
            .iter()
            .chain(self.listeners.values())
            .flat_map(|l| l.rds_names().map(str::to_owned))
            .collect()
    }

    /// The assignment names the EDS clusters need: the EDS subscription.
    pub fn endpoint_names(&self) -> BTreeSet<String> {
        self.base
            .clusters
            .iter()
            .chain(self.clusters.values())
            .filter_map(|c| match &c.discovery {
                Discovery::Eds { service_name } => Some(service_name.clone()),
                _ => None,
            })
            .collect()
    }

    /// The secret names every dynamic SDS source must deliver, by source:
    /// the ADS `Secret` subscription, each gRPC SDS stream's and each
    /// file's.
    pub fn secret_sources(&self) -> BTreeMap<SecretSource, BTreeSet<String>> {
        let mut out: BTreeMap<SecretSource, BTreeSet<String>> = BTreeMap::new();
        let listeners = self.base.listeners.iter().chain(self.listeners.values());
        let clusters = self.base.clusters.iter().chain(self.clusters.values());
        let refs = listeners
            .flat_map(model::Listener::secret_refs)
            .chain(clusters.flat_map(model::Cluster::secret_refs));
        for r in refs.filter(|r| r.source != SecretSource::Static) {
            out.entry(r.source.clone())
                .or_default()
                .insert(r.name.clone());
        }
        out
    }

    /// The files each SDS secret names (secrets with none left out).
    pub fn secret_files(&self) -> BTreeMap<String, Vec<std::path::PathBuf>> {
        self.secrets
            .iter()
            .map(|(name, e)| {
                let files = e.secret.files().into_iter().map(Into::into).collect();
                (name.clone(), files)
            })
            .filter(|(_, files): &(String, Vec<_>)| !files.is_empty())
            .collect()
    }

    /// Marks `names`' files as changed on disk, so the next config compiles
    /// them afresh.
    pub fn secret_files_changed(&mut self, names: &[String]) {
        for name in names {
            if let Some(e) = self.secrets.get_mut(name) {
                e.files_revision += 1;
            }
        }
    }

    /// The secret names the ADS stream subscribes to.
    pub fn ads_secret_names(&self) -> BTreeSet<String> {
        self.secret_sources()
            .remove(&SecretSource::Ads)
            .unwrap_or_default()
    }

    /// Forgets route configs, assignments and secrets no longer named, as
    /// Envoy does when the listener or cluster that named them goes.
    pub fn prune(&mut self) {
        let wanted: BTreeSet<String> = self.secret_sources().into_values().flatten().collect();
        self.secrets.retain(|name, _| wanted.contains(name));
        self.raw
            .secrets
            .resources
            .retain(|name, _| wanted.contains(name));
        self.awaited_secrets
            .retain(|name, _| wanted.contains(name) && !self.secrets.contains_key(name));
        let now = SystemTime::now();
        for name in wanted {
            if !self.secrets.contains_key(&name) {
                self.awaited_secrets.entry(name).or_insert(now);
            }
        }
        let routes = self.route_names();
        self.routes.retain(|name, _| routes.contains(name));
        self.raw
            .routes
            .resources
            .retain(|name, _| routes.contains(name));
        let endpoints = self.endpoint_names();
        self.endpoints.retain(|name, _| endpoints.contains(name));
        self.raw
            .endpoints
            .resources
            .retain(|name, _| endpoints.contains(name));
    }

    /// The whole config: static resources first, then the dynamic ones that
    /// are warm. An EDS cluster whose endpoints have not arrived, and an RDS
    /// listener whose route config has not, are left out until they do.
    pub fn build(&self) -> model::Config {
        let mut config = self.base.clone();
        config.clusters = self
            .base
            .clusters
            .iter()
            .chain(self.clusters.values())
            .filter(|c| self.secrets_arrived(c.secret_refs()))
            .filter_map(|c| self.warm_cluster(c))
            .collect();
        config.listeners = self
            .base
            .listeners
            .iter()
            .chain(self.listeners.values())
            .filter(|l| self.listener_is_warm(l))
            .cloned()
            .collect();
        config.route_configs = self.routes.values().cloned().collect();
        config.secrets.extend(
            self.secrets
                .iter()
                .map(|(name, entry)| (name.clone(), entry.clone())),
        );
        config
    }

    fn warm_cluster(&self, c: &model::Cluster) -> Option<model::Cluster> {
        match &c.discovery {
            Discovery::Eds { service_name } => {
                let endpoints = self.endpoints.get(service_name)?;
                let mut c = c.clone();
                c.endpoints = endpoints.clone();
                Some(c)
            }
            _ => Some(c.clone()),
        }
    }

    fn listener_is_warm(&self, l: &model::Listener) -> bool {
        l.rds_names().all(|name| self.routes.contains_key(name))
            && self.secrets_arrived(l.secret_refs())
    }

    /// Whether every dynamic secret named has arrived: a listener or
    /// cluster waits (warms) for its SDS secrets, as in Envoy. Static ones
    /// are the bootstrap's, checked when it was translated.
    fn secrets_arrived<'a>(&self, mut refs: impl Iterator<Item = &'a SdsRef>) -> bool {
        refs.all(|r| r.source == SecretSource::Static || self.secrets.contains_key(&r.name))
    }
}

/// Records `errs` about resource `name` of `kind`, each prefixed by it.
fn note(problems: &mut Vec<String>, kind: &str, name: &str, errs: Vec<ConfigError>) {
    problems.extend(errs.iter().map(|e| format!("{kind} '{name}': {e}")));
}

/// Decodes `any` as `M`, recording a problem when its type or bytes are
/// wrong.
fn decode<M: Message + prost::Name + Default>(any: &Any, problems: &mut Vec<String>) -> Option<M> {
    if any.type_url != M::type_url() {
        problems.push(format!(
            "resource of type {} in a {} response",
            any.type_url,
            M::type_url()
        ));
        return None;
    }
    match M::decode(any.value.as_slice()) {
        Ok(m) => Some(m),
        Err(e) => {
            problems.push(format!("cannot decode {}: {e}", any.type_url));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use strait_test_support::xds_server::{resource, typed_struct};

    use super::*;

    fn listener(rds: &str) -> Any {
        resource(
            "envoy.config.listener.v3.Listener",
            &format!(
                r#"{{name: l, address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}},
                filter_chains: [{{filters: [{{name: hcm, typed_config: {{
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager,
                  stat_prefix: s,
                  rds: {{route_config_name: {rds}, config_source: {{ads: {{}}}}}},
                  http_filters: [{{name: r, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]}}}}]}}]}}"#
            ),
        )
        .1
    }

    fn route(name: &str, regex: &str) -> Any {
        resource(
            "envoy.config.route.v3.RouteConfiguration",
            &format!(
                r#"{{name: {name}, virtual_hosts: [{{name: v, domains: ["*"],
                routes: [{{match: {{safe_regex: {{regex: "{regex}"}}}}, route: {{cluster: c}}}}]}}]}}"#
            ),
        )
        .1
    }

    fn eds_cluster(name: &str) -> Any {
        resource(
            "envoy.config.cluster.v3.Cluster",
            &format!(
                "{{name: {name}, type: EDS, eds_cluster_config: {{eds_config: {{ads: {{}}}}}}}}"
            ),
        )
        .1
    }

    fn cla(name: &str) -> Any {
        resource(
            "envoy.config.endpoint.v3.ClusterLoadAssignment",
            &format!(
                "{{cluster_name: {name}, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 10.0.0.1, port_value: 80}}}}}}}}]}}]}}"
            ),
        )
        .1
    }

    #[test]
    fn a_listener_waits_for_its_route_config() {
        let mut c = Cache::new(model::Config::default());
        c.apply(type_url::LISTENER, "1", &[listener("r1")])
            .expect("accepted");
        assert_eq!(c.route_names().into_iter().collect::<Vec<_>>(), ["r1"]);
        assert!(c.build().listeners.is_empty(), "warming");
        c.apply(type_url::ROUTE, "1", &[route("r1", "/a.*")])
            .expect("accepted");
        let built = c.build();
        assert_eq!(built.listeners.len(), 1);
        assert_eq!(built.route_configs.len(), 1);
    }

    #[test]
    fn an_eds_cluster_waits_for_its_endpoints_and_follows_them() {
        let mut c = Cache::new(model::Config::default());
        c.apply(
            type_url::CLUSTER,
            "1",
            &[eds_cluster("a"), eds_cluster("b")],
        )
        .expect("accepted");
        assert_eq!(
            c.endpoint_names().into_iter().collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(c.build().clusters.is_empty(), "warming");
        c.apply(type_url::ENDPOINT, "1", &[cla("a")])
            .expect("accepted");
        let built = c.build();
        assert_eq!(built.clusters.len(), 1);
        assert_eq!(built.clusters[0].endpoints[0].host, "10.0.0.1");
        // Cluster b goes: its endpoints are no longer wanted.
        c.apply(type_url::CLUSTER, "1", &[eds_cluster("a")])
            .expect("accepted");
        c.apply(type_url::ENDPOINT, "1", &[cla("b")])
            .expect("accepted");
        c.prune();
        assert_eq!(c.endpoint_names().into_iter().collect::<Vec<_>>(), ["a"]);
        assert!(!c.endpoints.contains_key("b"));
    }

    #[test]
    fn a_bad_resource_is_named_with_its_field() {
        let mut c = Cache::new(model::Config::default());
        let errs = c
            .apply(type_url::ROUTE, "1", &[route("r1", "(")])
            .expect_err("refused");
        assert!(
            errs[0].starts_with("route config 'r1': r1.virtual_hosts[0]"),
            "{errs:?}"
        );
        assert!(errs[0].contains("regex"), "{errs:?}");
    }

    #[test]
    fn delta_removes_by_name() {
        let mut c = Cache::new(model::Config::default());
        let (a, b) = (eds_cluster("a"), eds_cluster("b"));
        c.apply_delta(type_url::CLUSTER, "s1", &[("1", &a), ("2", &b)], &[])
            .expect("accepted");
        c.apply_delta(type_url::CLUSTER, "s2", &[], &["a".into()])
            .expect("accepted");
        assert_eq!(c.endpoint_names().into_iter().collect::<Vec<_>>(), ["b"]);
        let dump = c.dump();
        assert_eq!(dump.clusters.version_info, "s2");
        let names: Vec<_> = dump.clusters.resources.keys().collect();
        assert_eq!(names, ["b"]);
        assert_eq!(dump.clusters.resources["b"].version_info, "2");
        assert_eq!(dump.warming_clusters, ["b"], "no endpoints yet");
    }

    #[test]
    fn the_dump_keeps_resources_as_received_and_unchanged_ones_keep_their_version() {
        let mut c = Cache::new(model::Config::default());
        let (a, b) = (eds_cluster("a"), eds_cluster("b"));
        c.apply(type_url::CLUSTER, "v1", std::slice::from_ref(&a))
            .expect("accepted");
        c.apply(type_url::CLUSTER, "v2", &[a.clone(), b.clone()])
            .expect("accepted");
        c.apply(type_url::ENDPOINT, "e1", &[cla("a")])
            .expect("accepted");
        let dump = c.dump();
        assert_eq!(dump.clusters.version_info, "v2");
        assert_eq!(dump.clusters.resources["a"].version_info, "v1");
        assert_eq!(dump.clusters.resources["a"].resource, a);
        assert_eq!(dump.clusters.resources["b"].version_info, "v2");
        assert_eq!(dump.warming_clusters, ["b"]);
        assert_eq!(dump.endpoints.resources["a"].version_info, "e1");
        // A refused response leaves the candidate, not the cache: the
        // caller drops it. Here the cache itself refused: nothing recorded
        // for the bad resource.
        assert!(c.apply(type_url::ROUTE, "r1", &[route("r", "(")]).is_err());
        assert!(c.dump().routes.resources.is_empty());
    }

    fn sds_cluster(name: &str, source: &str) -> Any {
        resource(
            "envoy.config.cluster.v3.Cluster",
            &format!(
                r#"{{name: {name}, type: STATIC, load_assignment: {{cluster_name: {name}}},
                transport_socket: {{name: tls, typed_config: {{
                  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext,
                  common_tls_context: {{
                    tls_certificate_sds_secret_configs: [{{name: default, sds_config: {source}}}],
                    validation_context_sds_secret_config: {{name: ROOTCA, sds_config: {source}}}}}}}}}}}"#
            ),
        )
        .1
    }

    fn secret(name: &str, body: &str) -> Any {
        resource(
            "envoy.extensions.transport_sockets.tls.v3.Secret",
            &format!("{{name: {name}, {body}}}"),
        )
        .1
    }

    const CA: &str = "validation_context: {trusted_ca: {inline_string: CA}}";
    const CERT: &str =
        "tls_certificate: {certificate_chain: {inline_string: C}, private_key: {inline_string: K}}";

    #[test]
    fn a_cluster_waits_for_its_secrets_by_source() {
        let mut c = Cache::new(model::Config::default());
        let grpc = "{api_config_source: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: sds-grpc}}]}}";
        c.apply(
            type_url::CLUSTER,
            "1",
            &[sds_cluster("a", "{ads: {}}"), sds_cluster("b", grpc)],
        )
        .expect("accepted");
        assert_eq!(
            c.ads_secret_names().into_iter().collect::<Vec<_>>(),
            ["ROOTCA", "default"]
        );
        let sources = c.secret_sources();
        assert_eq!(sources.len(), 2, "{sources:?}");
        assert!(sources.contains_key(&SecretSource::Grpc {
            cluster: "sds-grpc".into()
        }));
        assert!(c.build().clusters.is_empty(), "warming");
        c.apply(type_url::SECRET, "s1", &[secret("default", CERT)])
            .expect("accepted");
        assert!(c.build().clusters.is_empty(), "ROOTCA still missing");
        // The dump shows the delivered secret as received and the awaited
        // one warming.
        c.prune();
        let dump = c.dump();
        assert_eq!(dump.secrets.resources["default"].version_info, "s1");
        let warming: Vec<&str> = dump
            .warming_secrets
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(warming, ["ROOTCA"]);
        c.apply(type_url::SECRET, "s2", &[secret("ROOTCA", CA)])
            .expect("accepted");
        let built = c.build();
        // Both clusters name the same secret names: one name, one secret.
        assert_eq!(built.clusters.len(), 2);
        assert_eq!(built.secrets["ROOTCA"].version, "s2");
        assert!(built.secrets["ROOTCA"].dynamic);
        assert_eq!(built.secrets["default"].version, "s1");
        // The same content again keeps the entry (no new config).
        c.apply(type_url::SECRET, "s3", &[secret("default", CERT)])
            .expect("accepted");
        assert_eq!(c.build(), built);
        // Clusters gone: their secrets are forgotten.
        c.apply(type_url::CLUSTER, "2", &[]).expect("accepted");
        c.prune();
        assert!(c.build().secrets.is_empty());
        assert!(c.dump().secrets.resources.is_empty());
    }

    /// A route config whose virtual host carries a fault override written
    /// as a `TypedStruct` with `abort`.
    fn route_with_typed_struct(abort: serde_json::Value) -> Any {
        let any = route("r", "/.*");
        let mut rc = RouteConfiguration::decode(any.value.as_slice()).expect("decodes");
        rc.virtual_hosts[0].typed_per_filter_config.insert(
            "envoy.filters.http.fault".into(),
            typed_struct(
                "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                serde_json::json!({ "abort": abort }),
            ),
        );
        Any {
            type_url: any.type_url,
            value: rc.encode_to_vec(),
        }
    }

    #[test]
    fn typed_structs_in_binary_resources_are_read_as_their_type() {
        let mut c = Cache::new(model::Config::default());
        let ok = route_with_typed_struct(
            serde_json::json!({"http_status": 418, "percentage": {"numerator": 100}}),
        );
        c.apply(type_url::ROUTE, "1", &[ok]).expect("accepted");
        let overrides = format!("{:?}", c.routes["r"]);
        assert!(overrides.contains("418"), "{overrides}");

        // A bad field inside the struct is named, as in a typed `Any`.
        let bad = route_with_typed_struct(serde_json::json!({"http_stauts": 418}));
        let errs = c.apply(type_url::ROUTE, "2", &[bad]).expect_err("refused");
        assert!(errs[0].contains("http_stauts"), "{errs:?}");
    }

    #[test]
    fn a_bad_secret_is_named() {
        let mut c = Cache::new(model::Config::default());
        let errs = c
            .apply(
                type_url::SECRET,
                "1",
                &[secret("s", "generic_secret: {secret: {inline_string: x}}")],
            )
            .expect_err("refused");
        assert_eq!(
            errs,
            [
                "secret 's': s.generic_secret: not supported: generic_secret (no Strait extension consumes one)"
            ]
        );
    }
}

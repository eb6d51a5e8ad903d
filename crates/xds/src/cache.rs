//! Per-type caches of translated resources, and the whole config they make
//! together with the bootstrap's static resources.
//!
//! Resources are judged one by one, as Envoy judges them: in a response,
//! each listener, cluster, route configuration, assignment and secret is
//! translated on its own; the good ones are taken, a bad one is rejected
//! with every problem found (naming it and the field) and keeps its last
//! good version, or stays absent if it never had one. Only a response whose
//! resources cannot even be decoded is refused whole. What the writer then
//! refuses when it compiles the config is put back the same way
//! ([`Cache::culprits`], [`Cache::reject`], in `revert`).

mod revert;
#[cfg(test)]
mod tests;

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
    dump::{RawResource, TypeDump, UpdateFailure, XdsDump},
    model,
    model::{
        Discovery, NetworkFilter, RouteSource,
        secret::{SdsRef, SecretEntry, SecretSource, Secrets},
    },
    parse::TypedStructs,
    translate_cluster, translate_cluster_load_assignment, translate_listener_in,
    translate_route_config_with, translate_secret,
};

use crate::type_url;

/// The resource types the cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Listener,
    Cluster,
    Route,
    Endpoint,
    Secret,
}

impl Kind {
    /// The kind of a response's `type_url`, if the cache holds it.
    pub fn of(type_url: &str) -> Option<Kind> {
        Some(match type_url {
            type_url::LISTENER => Kind::Listener,
            type_url::CLUSTER => Kind::Cluster,
            type_url::ROUTE => Kind::Route,
            type_url::ENDPOINT => Kind::Endpoint,
            type_url::SECRET => Kind::Secret,
            _ => return None,
        })
    }

    pub fn type_url(self) -> &'static str {
        match self {
            Kind::Listener => type_url::LISTENER,
            Kind::Cluster => type_url::CLUSTER,
            Kind::Route => type_url::ROUTE,
            Kind::Endpoint => type_url::ENDPOINT,
            Kind::Secret => type_url::SECRET,
        }
    }

    /// How a problem names a resource of this kind.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Listener => "listener",
            Kind::Cluster => "cluster",
            Kind::Route => "route config",
            Kind::Endpoint => "cluster load assignment",
            Kind::Secret => "secret",
        }
    }
}

/// One resource of a response that was not taken, and every reason, each
/// naming the resource and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub kind: Kind,
    pub name: String,
    pub problems: Vec<String>,
}

/// What one response did, resource by resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The response's type.
    pub kind: Kind,
    /// Resources taken (new, changed, or resent unchanged), in order.
    pub accepted: Vec<String>,
    /// Resources rejected; each keeps its last good version (or stays
    /// absent).
    pub rejected: Vec<Rejected>,
    /// Resources removed: by name (delta), or absent from a
    /// state-of-the-world listener or cluster response.
    pub removed: Vec<String>,
}

impl Outcome {
    pub fn new(kind: Kind) -> Outcome {
        Outcome {
            kind,
            accepted: Vec::new(),
            rejected: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// Every problem of every rejected resource: the NACK's `error_detail`
    /// when not empty.
    pub fn problems(&self) -> Vec<String> {
        self.rejected
            .iter()
            .flat_map(|r| r.problems.iter().cloned())
            .collect()
    }

    /// Whether something of the response was taken, or nothing was
    /// rejected: the type's dump version then follows the response.
    fn changed_anything(&self) -> bool {
        self.rejected.is_empty() || !self.accepted.is_empty() || !self.removed.is_empty()
    }
}

/// Every resource accepted so far, by type and name, translated. Cloned and
/// changed into a candidate for each response, and kept once the config it
/// makes is published.
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
    /// The same resources as received, and the rejected ones, for
    /// `/config_dump` (warming lists are filled in by [`Cache::dump`]).
    raw: XdsDump,
    /// Secrets named but not delivered, and since when (kept by
    /// [`Cache::prune`] for the dump's warming secrets).
    awaited_secrets: BTreeMap<String, SystemTime>,
}

/// A resource decoded from its `Any`, before translation.
enum Decoded {
    // Boxed: by far the largest protos.
    Listener(Box<Listener>),
    Cluster(Box<Cluster>),
    Route(RouteConfiguration),
    Endpoint(ClusterLoadAssignment),
    Secret(Secret),
}

impl Decoded {
    /// `any` as a resource of `kind`; the problem when its type or bytes
    /// are wrong.
    fn decode(kind: Kind, any: &Any) -> Result<Decoded, String> {
        Ok(match kind {
            Kind::Listener => Decoded::Listener(Box::new(decode(any)?)),
            Kind::Cluster => Decoded::Cluster(Box::new(decode(any)?)),
            Kind::Route => Decoded::Route(decode(any)?),
            Kind::Endpoint => Decoded::Endpoint(decode(any)?),
            Kind::Secret => Decoded::Secret(decode(any)?),
        })
    }

    fn name(&self) -> &str {
        match self {
            Decoded::Listener(l) => &l.name,
            Decoded::Cluster(c) => &c.name,
            Decoded::Route(r) => &r.name,
            Decoded::Endpoint(e) => &e.cluster_name,
            Decoded::Secret(s) => &s.name,
        }
    }
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

    /// Applies one state-of-the-world response of `type_url` at `version`,
    /// resource by resource. Listeners and clusters the response does not
    /// hold are removed (it is the full set); one it holds but rejects
    /// keeps its last good version. Route configs, assignments and secrets
    /// are merged by name (the response holds those subscribed). `Err`
    /// (nothing applied) only when a resource cannot be decoded at all, or
    /// the type is not one the cache holds.
    pub fn apply(
        &mut self,
        type_url: &str,
        version: &str,
        resources: &[Any],
    ) -> Result<Outcome, Vec<String>> {
        let kind = kind_of(type_url)?;
        let decoded = decode_all(kind, resources.iter())?;
        let mut outcome = Outcome::new(kind);
        if matches!(kind, Kind::Listener | Kind::Cluster) {
            let present: BTreeSet<&str> = decoded.iter().map(Decoded::name).collect();
            let gone: Vec<String> = self
                .names(kind)
                .filter(|n| !present.contains(n.as_str()))
                .collect();
            for name in gone {
                self.remove(kind, &name);
                outcome.removed.push(name);
            }
        }
        let now = SystemTime::now();
        let mut typed = TypedStructs::default();
        let mut seen = BTreeSet::new();
        for (msg, any) in decoded.into_iter().zip(resources) {
            self.take(
                kind,
                msg,
                any,
                version,
                now,
                &mut typed,
                &mut seen,
                &mut outcome,
            );
        }
        self.finish(kind, version, &outcome);
        Ok(outcome)
    }

    /// Applies one delta response at `system_version`: `removed` are
    /// dropped by name, then `resources` (each with its own version) are
    /// added or replaced one by one, a rejected one keeping its last good
    /// version. `Err` (nothing applied) only when a resource cannot be
    /// decoded at all.
    pub fn apply_delta(
        &mut self,
        type_url: &str,
        system_version: &str,
        resources: &[(&str, &Any)],
        removed: &[String],
    ) -> Result<Outcome, Vec<String>> {
        let kind = kind_of(type_url)?;
        let decoded = decode_all(kind, resources.iter().map(|(_, any)| *any))?;
        let mut outcome = Outcome::new(kind);
        // Removals first, as Envoy does: a new listener may take the
        // address of one removed in the same response.
        for name in removed {
            if self.remove(kind, name) {
                outcome.removed.push(name.clone());
            }
        }
        let now = SystemTime::now();
        let mut typed = TypedStructs::default();
        let mut seen = BTreeSet::new();
        for (msg, (version, any)) in decoded.into_iter().zip(resources) {
            self.take(
                kind,
                msg,
                any,
                version,
                now,
                &mut typed,
                &mut seen,
                &mut outcome,
            );
        }
        self.finish(kind, system_version, &outcome);
        Ok(outcome)
    }

    /// Translates one resource and takes it, or records why not (keeping
    /// what it replaces).
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        kind: Kind,
        msg: Decoded,
        any: &Any,
        version: &str,
        now: SystemTime,
        typed: &mut TypedStructs,
        seen: &mut BTreeSet<String>,
        outcome: &mut Outcome,
    ) {
        let name = msg.name().to_owned();
        let result = if seen.insert(name.clone()) {
            self.translate(kind, msg, any, version, typed)
        } else {
            // Envoy applies the first of two same-named resources and
            // rejects the second.
            Err(vec![format!(
                "{} '{name}': duplicate {} {name} found",
                kind.label(),
                kind.label()
            )])
        };
        match result {
            Ok(()) => {
                self.record(kind, &name, version, any, now);
                self.raw_mut(kind).failed.remove(&name);
                outcome.accepted.push(name);
            }
            Err(problems) => {
                self.raw_mut(kind).failed.insert(
                    name.clone(),
                    Arc::new(UpdateFailure {
                        failed_configuration: any.clone(),
                        last_update_attempt: now,
                        details: problems.join("; "),
                        version_info: version.to_owned(),
                    }),
                );
                outcome.rejected.push(Rejected {
                    kind,
                    name,
                    problems,
                });
            }
        }
    }

    /// Removes resource `name` of `kind` (and any rejection recorded for
    /// it). Whether there was anything to remove.
    fn remove(&mut self, kind: Kind, name: &str) -> bool {
        let typed = match kind {
            Kind::Listener => self.listeners.remove(name).is_some(),
            Kind::Cluster => self.clusters.remove(name).is_some(),
            Kind::Route => self.routes.remove(name).is_some(),
            Kind::Endpoint => self.endpoints.remove(name).is_some(),
            Kind::Secret => self.secrets.remove(name).is_some(),
        };
        let raw = self.raw_mut(kind);
        let raw_present = raw.resources.remove(name).is_some();
        let failed = raw.failed.remove(name).is_some();
        typed || raw_present || failed
    }

    /// The names of `kind` held or rejected (listeners and clusters only:
    /// the types a state-of-the-world response replaces).
    fn names(&self, kind: Kind) -> impl Iterator<Item = String> + '_ {
        let held: Vec<&String> = match kind {
            Kind::Listener => self.listeners.keys().collect(),
            Kind::Cluster => self.clusters.keys().collect(),
            _ => Vec::new(),
        };
        let failed = self.raw(kind).failed.keys();
        let all: BTreeSet<&String> = held.into_iter().chain(failed).collect();
        all.into_iter().cloned()
    }

    fn finish(&mut self, kind: Kind, version: &str, outcome: &Outcome) {
        if outcome.changed_anything() {
            version.clone_into(&mut self.raw_mut(kind).version_info);
        }
    }

    fn raw(&self, kind: Kind) -> &TypeDump {
        match kind {
            Kind::Listener => &self.raw.listeners,
            Kind::Cluster => &self.raw.clusters,
            Kind::Route => &self.raw.routes,
            Kind::Endpoint => &self.raw.endpoints,
            Kind::Secret => &self.raw.secrets,
        }
    }

    fn raw_mut(&mut self, kind: Kind) -> &mut TypeDump {
        match kind {
            Kind::Listener => &mut self.raw.listeners,
            Kind::Cluster => &mut self.raw.clusters,
            Kind::Route => &mut self.raw.routes,
            Kind::Endpoint => &mut self.raw.endpoints,
            Kind::Secret => &mut self.raw.secrets,
        }
    }

    /// Keeps `any` as received. A resource resent unchanged keeps its
    /// version and time, as in Envoy's dump.
    fn record(&mut self, kind: Kind, name: &str, version: &str, any: &Any, now: SystemTime) {
        let t = self.raw_mut(kind);
        if t.resources.get(name).is_some_and(|r| r.resource == *any) {
            return;
        }
        t.resources.insert(
            name.to_owned(),
            Arc::new(RawResource {
                name: name.to_owned(),
                version_info: version.to_owned(),
                last_updated: now,
                resource: any.clone(),
            }),
        );
    }

    /// The resources as received (with the rejected ones), with which
    /// listeners and clusters are still warming.
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

    /// Translates one decoded resource of `kind` into its map; every
    /// problem otherwise, each prefixed by the resource's kind and name.
    /// `version` is kept with secrets (their `/config_dump` entry).
    fn translate(
        &mut self,
        kind: Kind,
        msg: Decoded,
        any: &Any,
        version: &str,
        typed: &mut TypedStructs,
    ) -> Result<(), Vec<String>> {
        let name = msg.name().to_owned();
        let prefixed = |errs: Vec<ConfigError>| -> Vec<String> {
            errs.iter()
                .map(|e| format!("{} '{name}': {e}", kind.label()))
                .collect()
        };
        // Extensions wrapped in a `TypedStruct` are read as the type they
        // name, as Envoy does and as the static file's parser does.
        let msg = match typed.unwrap(any) {
            Ok(None) => msg,
            Ok(Some(unwrapped)) => Decoded::decode(kind, &unwrapped)
                .map_err(|e| vec![format!("{} '{name}': {e}", kind.label())])?,
            Err(e) => return Err(vec![format!("{} '{name}': {e}", kind.label())]),
        };
        let statically = |taken: bool| {
            if taken {
                Err(vec![format!(
                    "{} '{name}': name: a static {} has this name",
                    kind.label(),
                    kind.label()
                )])
            } else {
                Ok(())
            }
        };
        match msg {
            Decoded::Listener(l) => {
                statically(self.base.listeners.iter().any(|s| s.name == l.name))?;
                let node = self.base.node.as_ref();
                let tracer = self.base.tracer.as_ref();
                let m = translate_listener_in(&l, &l.name, &self.parsers, node, tracer)
                    .map_err(prefixed)?;
                self.listeners.insert(name.clone(), m);
            }
            Decoded::Cluster(c) => {
                statically(self.base.clusters.iter().any(|s| s.name == c.name))?;
                let m = translate_cluster(&c, &c.name).map_err(prefixed)?;
                self.clusters.insert(name.clone(), m);
            }
            Decoded::Route(rc) => {
                let m =
                    translate_route_config_with(&rc, &rc.name, &self.parsers).map_err(prefixed)?;
                self.routes.insert(rc.name, m);
            }
            Decoded::Endpoint(cla) => {
                let eps =
                    translate_cluster_load_assignment(&cla, &cla.cluster_name).map_err(prefixed)?;
                self.endpoints.insert(cla.cluster_name, eps);
            }
            Decoded::Secret(s) => {
                statically(self.base.secrets.contains_key(&s.name))?;
                let (name, secret) = translate_secret(&s, &s.name).map_err(prefixed)?;
                // A resend of the same content keeps its entry (and its
                // `last_updated`), so it changes nothing live.
                match self.secrets.get(&name) {
                    Some(old) if old.secret == secret => {}
                    _ => drop(
                        self.secrets
                            .insert(name, SecretEntry::dynamic(secret, version)),
                    ),
                }
            }
        }
        Ok(())
    }

    /// The stat prefix of the first connection manager that takes route
    /// config `name` from RDS: Envoy counts an RDS subscription's updates
    /// under `http.<prefix>.rds.<name>.`.
    pub fn rds_stat_prefix(&self, name: &str) -> Option<&str> {
        self.base
            .listeners
            .iter()
            .chain(self.listeners.values())
            .flat_map(model::Listener::chains)
            .find_map(|c| match &c.terminal {
                NetworkFilter::Http(hcm)
                    if matches!(&hcm.route_config, RouteSource::Rds(n) if n == name) =>
                {
                    Some(hcm.stat_prefix.as_str())
                }
                _ => None,
            })
    }

    /// The clusters whose EDS service name is `service`: Envoy counts an
    /// EDS subscription's updates under `cluster.<name>.`.
    pub fn eds_clusters<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.base
            .clusters
            .iter()
            .chain(self.clusters.values())
            .filter(move |c| matches!(&c.discovery, Discovery::Eds { service_name } if service_name == service))
            .map(|c| c.name.as_str())
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
        retain(&mut self.raw.secrets, &wanted);
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
        retain(&mut self.raw.routes, &routes);
        let endpoints = self.endpoint_names();
        self.endpoints.retain(|name, _| endpoints.contains(name));
        retain(&mut self.raw.endpoints, &endpoints);
    }

    /// The whole config: static resources first, then the dynamic ones that
    /// are warm. An EDS cluster whose endpoints have not arrived, and an RDS
    /// listener whose route config has not (nor been rejected), are left out
    /// until they do.
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
        // A route configuration rejected before any version of it was
        // taken: Envoy lets its listeners go live on an empty one (every
        // request 404, `NR`) rather than warm forever.
        let never_good = self
            .raw
            .routes
            .failed
            .keys()
            .filter(|name| !self.routes.contains_key(*name))
            .map(|name| model::RouteConfig {
                name: name.clone(),
                ..Default::default()
            });
        config.route_configs = self.routes.values().cloned().chain(never_good).collect();
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
        l.rds_names()
            .all(|name| self.routes.contains_key(name) || self.raw.routes.failed.contains_key(name))
            && self.secrets_arrived(l.secret_refs())
    }

    /// Whether every dynamic secret named has arrived: a listener or
    /// cluster waits (warms) for its SDS secrets, as in Envoy. Static ones
    /// are the bootstrap's, checked when it was translated.
    fn secrets_arrived<'a>(&self, mut refs: impl Iterator<Item = &'a SdsRef>) -> bool {
        refs.all(|r| r.source == SecretSource::Static || self.secrets.contains_key(&r.name))
    }
}

/// Keeps only the resources (and rejections) of `t` named in `wanted`.
fn retain(t: &mut TypeDump, wanted: &BTreeSet<String>) {
    t.resources.retain(|name, _| wanted.contains(name));
    t.failed.retain(|name, _| wanted.contains(name));
}

fn kind_of(type_url: &str) -> Result<Kind, Vec<String>> {
    Kind::of(type_url).ok_or_else(|| vec![format!("unexpected type {type_url}")])
}

/// Decodes every resource of a response; a response with any resource
/// that does not decode as its type is refused whole (nothing names what
/// it holds), as Envoy refuses it.
fn decode_all<'a>(
    kind: Kind,
    resources: impl Iterator<Item = &'a Any>,
) -> Result<Vec<Decoded>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for any in resources {
        match Decoded::decode(kind, any) {
            Ok(d) => out.push(d),
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Decodes `any` as `M`; the problem when its type or bytes are wrong.
fn decode<M: Message + prost::Name + Default>(any: &Any) -> Result<M, String> {
    if any.type_url != M::type_url() {
        return Err(format!(
            "resource of type {} in a {} response",
            any.type_url,
            M::type_url()
        ));
    }
    M::decode(any.value.as_slice()).map_err(|e| format!("cannot decode {}: {e}", any.type_url))
}

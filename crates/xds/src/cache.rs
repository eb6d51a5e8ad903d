//! Per-type caches of translated resources, and the whole config they make
//! together with the bootstrap's static resources.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::{
    envoy::config::{
        cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
        route::v3::RouteConfiguration,
    },
    google::protobuf::Any,
};
use prost::Message;
use strait_config::{
    ConfigError, model,
    model::{Discovery, NetworkFilter},
    translate_cluster, translate_cluster_load_assignment, translate_listener,
    translate_route_config,
};

use crate::type_url;

/// Every resource accepted so far, by type and name, translated. Cloned and
/// changed into a candidate for each response, and kept only if the config
/// it makes is published, so a refused response leaves no trace.
#[derive(Debug, Clone)]
pub struct Cache {
    /// The bootstrap's own config (static resources, admin, node).
    base: model::Config,
    listeners: BTreeMap<String, model::Listener>,
    routes: BTreeMap<String, model::RouteConfig>,
    clusters: BTreeMap<String, model::Cluster>,
    /// EDS assignments by service name.
    endpoints: BTreeMap<String, Vec<model::Endpoint>>,
}

impl Cache {
    /// An empty cache over the bootstrap's config.
    pub fn new(base: model::Config) -> Cache {
        Cache {
            base,
            listeners: BTreeMap::new(),
            routes: BTreeMap::new(),
            clusters: BTreeMap::new(),
            endpoints: BTreeMap::new(),
        }
    }

    pub fn base(&self) -> &model::Config {
        &self.base
    }

    /// Applies one state-of-the-world response of `type_url`: listeners and
    /// clusters are replaced wholesale (the response is the full set), route
    /// configs and assignments merged by name (the response holds what
    /// changed among those subscribed). Every resource is translated; any
    /// problem refuses the whole response, with each problem prefixed by
    /// the resource's name.
    pub fn apply(&mut self, type_url: &str, resources: &[Any]) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        match type_url {
            type_url::LISTENER => {
                let mut next = BTreeMap::new();
                for any in resources {
                    let Some(l) = decode::<Listener>(any, &mut problems) else {
                        continue;
                    };
                    if self.base.listeners.iter().any(|s| s.name == l.name) {
                        note(
                            &mut problems,
                            "listener",
                            &l.name,
                            vec![ConfigError::Invalid {
                                path: "name".into(),
                                message: "a static listener has this name".into(),
                            }],
                        );
                        continue;
                    }
                    match translate_listener(&l, &l.name) {
                        Ok(m) => {
                            next.insert(l.name.clone(), m);
                        }
                        Err(e) => note(&mut problems, "listener", &l.name, e),
                    }
                }
                self.listeners = next;
            }
            type_url::CLUSTER => {
                let mut next = BTreeMap::new();
                for any in resources {
                    let Some(c) = decode::<Cluster>(any, &mut problems) else {
                        continue;
                    };
                    if self.base.clusters.iter().any(|s| s.name == c.name) {
                        note(
                            &mut problems,
                            "cluster",
                            &c.name,
                            vec![ConfigError::Invalid {
                                path: "name".into(),
                                message: "a static cluster has this name".into(),
                            }],
                        );
                        continue;
                    }
                    match translate_cluster(&c, &c.name) {
                        Ok(m) => {
                            next.insert(c.name.clone(), m);
                        }
                        Err(e) => note(&mut problems, "cluster", &c.name, e),
                    }
                }
                self.clusters = next;
            }
            type_url::ROUTE => {
                for any in resources {
                    let Some(rc) = decode::<RouteConfiguration>(any, &mut problems) else {
                        continue;
                    };
                    match translate_route_config(&rc, &rc.name) {
                        Ok(m) => {
                            self.routes.insert(rc.name.clone(), m);
                        }
                        Err(e) => note(&mut problems, "route config", &rc.name, e),
                    }
                }
            }
            type_url::ENDPOINT => {
                for any in resources {
                    let Some(cla) = decode::<ClusterLoadAssignment>(any, &mut problems) else {
                        continue;
                    };
                    match translate_cluster_load_assignment(&cla, &cla.cluster_name) {
                        Ok(eps) => {
                            self.endpoints.insert(cla.cluster_name.clone(), eps);
                        }
                        Err(e) => note(
                            &mut problems,
                            "cluster load assignment",
                            &cla.cluster_name,
                            e,
                        ),
                    }
                }
            }
            other => problems.push(format!("unexpected type {other}")),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The route config names the listeners (static and dynamic) need: the
    /// RDS subscription.
    pub fn route_names(&self) -> BTreeSet<String> {
        self.base
            .listeners
            .iter()
            .chain(self.listeners.values())
            .filter_map(|l| match &l.filter_chain.terminal {
                NetworkFilter::Http(hcm) => hcm.route_config.rds_name().map(str::to_owned),
                NetworkFilter::Tcp(_) => None,
            })
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

    /// Forgets route configs and assignments no longer subscribed to, as
    /// Envoy does when the listener or cluster that named them goes.
    pub fn prune(&mut self) {
        let routes = self.route_names();
        self.routes.retain(|name, _| routes.contains(name));
        let endpoints = self.endpoint_names();
        self.endpoints.retain(|name, _| endpoints.contains(name));
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
        match &l.filter_chain.terminal {
            NetworkFilter::Http(hcm) => hcm
                .route_config
                .rds_name()
                .is_none_or(|name| self.routes.contains_key(name)),
            NetworkFilter::Tcp(_) => true,
        }
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

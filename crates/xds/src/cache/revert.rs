//! Putting back what the writer refused: a config the cache built may still
//! fail when it is compiled (a filter chain the registries cannot build, a
//! TLS context whose certificate does not load, an address that cannot be
//! bound). The writer names the listener or cluster that failed; these find
//! which resource of the update is to blame and put it back as the live
//! cache has it, so the rest of the update goes live without it.

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use strait_envoy::{
    dump::UpdateFailure,
    model::{Discovery, secret::SdsRef},
};

use super::{Cache, Kind, Outcome, Rejected};
use crate::Subject;

impl Cache {
    /// The resources this candidate changed (relative to `live`, the cache
    /// whose config is serving) that a refusal about `subject` is to blame
    /// on: the listener or cluster itself when it changed, else the route
    /// configs and secrets it uses that changed. Empty when none did (the
    /// refusal is not about anything this update brought).
    pub(crate) fn culprits(&self, live: &Cache, subject: &Subject) -> Vec<(Kind, String)> {
        let mut out = Vec::new();
        match subject {
            Subject::Listener(name) => {
                if self.listeners.contains_key(name)
                    && self.listeners.get(name) != live.listeners.get(name)
                {
                    return vec![(Kind::Listener, name.clone())];
                }
                let spec = self
                    .listeners
                    .get(name)
                    .or_else(|| self.base.listeners.iter().find(|l| l.name == *name));
                let Some(spec) = spec else {
                    return out;
                };
                for route in spec.rds_names() {
                    if self.routes.get(route) != live.routes.get(route) {
                        out.push((Kind::Route, route.to_owned()));
                    }
                }
                self.changed_secrets(live, spec.secret_refs(), &mut out);
            }
            Subject::Cluster(name) => {
                if self.clusters.contains_key(name)
                    && self.clusters.get(name) != live.clusters.get(name)
                {
                    return vec![(Kind::Cluster, name.clone())];
                }
                let spec = self
                    .clusters
                    .get(name)
                    .or_else(|| self.base.clusters.iter().find(|c| c.name == *name));
                let Some(spec) = spec else {
                    return out;
                };
                self.changed_secrets(live, spec.secret_refs(), &mut out);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn changed_secrets<'a>(
        &self,
        live: &Cache,
        refs: impl Iterator<Item = &'a SdsRef>,
        out: &mut Vec<(Kind, String)>,
    ) {
        for r in refs {
            if self.secrets.get(&r.name) != live.secrets.get(&r.name) {
                out.push((Kind::Secret, r.name.clone()));
            }
        }
    }

    /// Puts resource `name` of `kind` back as `live` has it (or removes it
    /// when `live` never took it), records `problems` as why its update was
    /// rejected, and moves it from accepted to rejected in `outcome`. The
    /// route configs, assignments and secrets the restored version names
    /// that this candidate no longer holds (pruned after the new version
    /// stopped naming them) come back from `live` too.
    pub(crate) fn reject(
        &mut self,
        live: &Cache,
        kind: Kind,
        name: &str,
        problems: Vec<String>,
        outcome: &mut Outcome,
    ) {
        let raw = self.raw_mut(kind);
        let brought = raw.resources.get(name).cloned();
        match live.raw(kind).resources.get(name) {
            Some(r) => drop(raw.resources.insert(name.to_owned(), Arc::clone(r))),
            None => drop(raw.resources.remove(name)),
        }
        if let Some(b) = brought {
            raw.failed.insert(
                name.to_owned(),
                Arc::new(UpdateFailure {
                    failed_configuration: b.resource.clone(),
                    last_update_attempt: SystemTime::now(),
                    details: problems.join("; "),
                    version_info: b.version_info.clone(),
                }),
            );
        }
        match kind {
            Kind::Listener => {
                restore(&mut self.listeners, &live.listeners, name);
                if let Some(l) = self.listeners.get(name).cloned() {
                    self.restore_needs(live, l.rds_names(), l.secret_refs());
                }
            }
            Kind::Cluster => {
                restore(&mut self.clusters, &live.clusters, name);
                if let Some(c) = self.clusters.get(name).cloned() {
                    if let Discovery::Eds { service_name } = &c.discovery
                        && !self.endpoints.contains_key(service_name)
                    {
                        restore(&mut self.endpoints, &live.endpoints, service_name);
                        self.restore_raw(live, Kind::Endpoint, service_name);
                    }
                    self.restore_needs(live, std::iter::empty(), c.secret_refs());
                }
            }
            Kind::Route => restore(&mut self.routes, &live.routes, name),
            Kind::Endpoint => restore(&mut self.endpoints, &live.endpoints, name),
            Kind::Secret => restore(&mut self.secrets, &live.secrets, name),
        }
        if kind == outcome.kind {
            outcome.accepted.retain(|n| n != name);
        }
        match outcome
            .rejected
            .iter_mut()
            .find(|r| r.kind == kind && r.name == name)
        {
            Some(r) => r.problems.extend(problems),
            None => outcome.rejected.push(Rejected {
                kind,
                name: name.to_owned(),
                problems,
            }),
        }
    }

    /// Brings back from `live` the route configs and secrets a restored
    /// listener or cluster names that this candidate pruned.
    fn restore_needs<'a>(
        &mut self,
        live: &Cache,
        routes: impl Iterator<Item = &'a str>,
        secrets: impl Iterator<Item = &'a SdsRef>,
    ) {
        for route in routes {
            if !self.routes.contains_key(route) {
                restore(&mut self.routes, &live.routes, route);
                self.restore_raw(live, Kind::Route, route);
            }
        }
        for r in secrets {
            if !self.secrets.contains_key(&r.name) {
                restore(&mut self.secrets, &live.secrets, &r.name);
                self.restore_raw(live, Kind::Secret, &r.name);
            }
        }
    }

    fn restore_raw(&mut self, live: &Cache, kind: Kind, name: &str) {
        if let Some(r) = live.raw(kind).resources.get(name) {
            self.raw_mut(kind)
                .resources
                .insert(name.to_owned(), Arc::clone(r));
        }
    }

    /// After rejections: when nothing of the response was taken, the
    /// type's dump version stays `live`'s (Envoy moves it only when a
    /// resource was applied).
    pub(crate) fn settle_version(&mut self, live: &Cache, outcome: &Outcome) {
        if !outcome.changed_anything() {
            let version = live.raw(outcome.kind).version_info.clone();
            self.raw_mut(outcome.kind).version_info = version;
        }
    }
}

/// `map[name]` as `live` has it, or absent.
fn restore<T: Clone>(map: &mut BTreeMap<String, T>, live: &BTreeMap<String, T>, name: &str) {
    match live.get(name) {
        Some(v) => drop(map.insert(name.to_owned(), v.clone())),
        None => drop(map.remove(name)),
    }
}

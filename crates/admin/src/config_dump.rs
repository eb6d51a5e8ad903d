//! `/config_dump` in Envoy's `envoy.admin.v3.ConfigDump` JSON: the
//! bootstrap as loaded, then clusters, (endpoints with `?include_eds`),
//! listeners, scoped routes, routes and secrets, each static resource from
//! the bootstrap and each dynamic one as the control plane sent it, with
//! its version and time. `?resource=`, `?mask=` and `?name_regex=` as
//! Envoy documents them. Sensitive fields are redacted as Envoy does.

use std::time::{SystemTime, UNIX_EPOCH};

use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use regex::Regex;
use serde_json::{Map, Value, json};
use strait_envoy::dump::{TypeDump, UpdateFailure, XdsDump};
use strait_snapshot::Snapshot;

const ADMIN: &str = "type.googleapis.com/envoy.admin.v3.";
const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// What Envoy replaces a sensitive string with.
const REDACTED: &str = "[redacted]";
/// Fields Envoy marks `udpa.annotations.sensitive` that Strait's configs
/// can carry: everything under them is redacted.
const SENSITIVE: &[&str] = &[
    "private_key",
    "password",
    "generic_secret",
    "session_ticket_keys",
    "hmac_secret",
    "token_secret",
];

/// The query of a `/config_dump` request.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pub(crate) resource: Option<String>,
    pub(crate) mask: Vec<String>,
    pub(crate) name_regex: Option<Regex>,
    pub(crate) include_eds: bool,
}

impl Params {
    /// From decoded query pairs; a bad `name_regex` is the caller's error.
    pub(crate) fn from_query(query: &[(String, String)]) -> Result<Params, String> {
        let mut p = Params::default();
        for (k, v) in query {
            match k.as_str() {
                "resource" => p.resource = Some(v.clone()),
                "mask" => {
                    p.mask = v
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "name_regex" => {
                    p.name_regex =
                        Some(Regex::new(v).map_err(|e| format!("name_regex: invalid regex: {e}"))?);
                }
                "include_eds" => p.include_eds = true,
                _ => {}
            }
        }
        Ok(p)
    }
}

/// The dump, or (404, why) for a `resource` no config has.
pub(crate) fn render(snap: &Snapshot, xds: Option<&XdsDump>, p: &Params) -> Result<Value, String> {
    let wants_eds = p.include_eds
        || p.resource
            .as_deref()
            .is_some_and(|r| r.contains("endpoint_configs"));
    let mut r = Renderer {
        pool: xds.map(|_| strait_envoy::descriptor_pool()),
        loaded: timestamp_secs(snap.last_updated()),
    };
    let source = snap.source();
    let statics = |key: &str| -> Vec<Value> {
        source
            .pointer(&format!("/static_resources/{key}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut configs = vec![json!({
        "@type": format!("{ADMIN}BootstrapConfigDump"),
        "bootstrap": source,
        "last_updated": r.loaded,
    })];

    // Clusters.
    let static_clusters = statics("clusters");
    let mut c = Map::new();
    put_version(&mut c, xds.map(|x| &x.clusters.version_info));
    let sc: Vec<Value> = static_clusters
        .iter()
        .map(|v| json!({"cluster": typed(v, CLUSTER), "last_updated": r.loaded}))
        .collect();
    put(&mut c, "static_clusters", sc);
    if let Some(x) = xds {
        let (mut active, mut warming) = (Vec::new(), Vec::new());
        for res in x.clusters.resources.values() {
            let mut item = json!({
                "version_info": res.version_info,
                "cluster": r.any(&res.resource),
                "last_updated": timestamp(res.last_updated),
            });
            if let Some(f) = x.clusters.failed.get(&res.name) {
                item["error_state"] = r.failure(f);
            }
            if x.warming_clusters.contains(&res.name) {
                warming.push(item);
            } else {
                active.push(item);
            }
        }
        // A cluster rejected before any version of it was accepted: only
        // its error state (the proto's `error_state` without a `cluster`).
        for (name, f) in &x.clusters.failed {
            if !x.clusters.resources.contains_key(name) {
                active.push(json!({"error_state": r.failure(f)}));
            }
        }
        put(&mut c, "dynamic_active_clusters", active);
        put(&mut c, "dynamic_warming_clusters", warming);
    }
    configs.push(config("ClustersConfigDump", c));

    // Endpoints (Envoy shows them only when asked).
    if wants_eds {
        let mut e = Map::new();
        let se: Vec<Value> = static_clusters
            .iter()
            .filter_map(|c| c.get("load_assignment"))
            // Envoy gives static endpoints no `last_updated`.
            .map(|la| json!({"endpoint_config": typed(la, ENDPOINT)}))
            .collect();
        put(&mut e, "static_endpoint_configs", se);
        if let Some(x) = xds {
            // Envoy keeps no version or time for EDS resources; neither
            // does its dump.
            let mut de: Vec<Value> = x
                .endpoints
                .resources
                .values()
                .map(|res| {
                    let mut item = json!({"endpoint_config": r.any(&res.resource)});
                    if let Some(f) = x.endpoints.failed.get(&res.name) {
                        item["error_state"] = r.failure(f);
                    }
                    item
                })
                .collect();
            for (name, f) in &x.endpoints.failed {
                if !x.endpoints.resources.contains_key(name) {
                    de.push(json!({"error_state": r.failure(f)}));
                }
            }
            put(&mut e, "dynamic_endpoint_configs", de);
        }
        configs.push(config("EndpointsConfigDump", e));
    }

    // Listeners; their inline route configs are Envoy's static routes.
    let mut inline_routes = Vec::new();
    let mut l = Map::new();
    put_version(&mut l, xds.map(|x| &x.listeners.version_info));
    let sl: Vec<Value> = statics("listeners")
        .iter()
        .map(|v| {
            inline_route_configs(v, &mut inline_routes);
            json!({"listener": typed(v, LISTENER), "last_updated": r.loaded})
        })
        .collect();
    put(&mut l, "static_listeners", sl);
    if let Some(x) = xds {
        // Every listener held or rejected, by name: a rejected update
        // shows as `error_state` beside the version still serving (or
        // alone when none ever was), as Envoy's `DynamicListener`.
        let names: std::collections::BTreeSet<&String> = x
            .listeners
            .resources
            .keys()
            .chain(x.listeners.failed.keys())
            .collect();
        let dl: Vec<Value> = names
            .into_iter()
            .map(|name| {
                let mut item = json!({"name": name});
                if let Some(res) = x.listeners.resources.get(name) {
                    let listener = r.any(&res.resource);
                    inline_route_configs(&listener, &mut inline_routes);
                    let state = if x.warming_listeners.contains(&res.name) {
                        "warming_state"
                    } else {
                        "active_state"
                    };
                    item[state] = json!({
                        "version_info": res.version_info,
                        "listener": listener,
                        "last_updated": timestamp(res.last_updated),
                    });
                }
                if let Some(f) = x.listeners.failed.get(name) {
                    item["error_state"] = r.failure(f);
                }
                item
            })
            .collect();
        put(&mut l, "dynamic_listeners", dl);
    }
    configs.push(config("ListenersConfigDump", l));
    configs.push(config("ScopedRoutesConfigDump", Map::new()));

    // Routes.
    let mut rt = Map::new();
    let sr: Vec<Value> = inline_routes
        .into_iter()
        .map(|rc| json!({"route_config": typed(&rc, ROUTE), "last_updated": r.loaded}))
        .collect();
    put(&mut rt, "static_route_configs", sr);
    if let Some(x) = xds {
        let dr = dynamic(&mut r, &x.routes, "route_config");
        put(&mut rt, "dynamic_route_configs", dr);
    }
    configs.push(config("RoutesConfigDump", rt));

    // Secrets: the bootstrap's, then those SDS delivered (from any source)
    // and those still awaited, as Envoy lists them.
    let mut s = Map::new();
    let ss: Vec<Value> = statics("secrets")
        .iter()
        .map(|v| {
            json!({
                "name": v.get("name").cloned().unwrap_or(Value::Null),
                "last_updated": r.loaded,
                "secret": typed(v, SECRET),
            })
        })
        .collect();
    put(&mut s, "static_secrets", ss);
    if let Some(x) = xds {
        let mut active: Vec<Value> = x
            .secrets
            .resources
            .values()
            .map(|res| {
                let mut item = json!({
                    "name": res.name,
                    "version_info": res.version_info,
                    "last_updated": timestamp(res.last_updated),
                    "secret": r.any(&res.resource),
                });
                if let Some(f) = x.secrets.failed.get(&res.name) {
                    item["error_state"] = r.failure(f);
                }
                item
            })
            .collect();
        for (name, f) in &x.secrets.failed {
            if !x.secrets.resources.contains_key(name) {
                active.push(json!({"name": name, "error_state": r.failure(f)}));
            }
        }
        put(&mut s, "dynamic_active_secrets", active);
        let warming = x
            .warming_secrets
            .iter()
            .map(|(name, since)| {
                // As Envoy shows a secret it has asked for and not had.
                json!({
                    "name": name,
                    "version_info": "uninitialized",
                    "last_updated": timestamp(*since),
                    "secret": {"@type": SECRET, "name": name},
                })
            })
            .collect();
        put(&mut s, "dynamic_warming_secrets", warming);
    }
    configs.push(config("SecretsConfigDump", s));

    for c in &mut configs {
        redact(c, false);
    }
    select(configs, p)
}

/// Applies `resource`, `name_regex` and `mask` to the full list of configs.
fn select(mut configs: Vec<Value>, p: &Params) -> Result<Value, String> {
    if let Some(re) = &p.name_regex {
        for c in &mut configs {
            if let Some(obj) = c.as_object_mut() {
                for (_, v) in obj.iter_mut() {
                    if let Some(items) = v.as_array_mut() {
                        items.retain(|i| resource_name(i).is_none_or(|n| re.is_match(n)));
                    }
                }
                obj.retain(|_, v| v.as_array().is_none_or(|a| !a.is_empty()));
            }
        }
    }
    let configs = match &p.resource {
        Some(field) => {
            let Some(item_type) = item_type(field) else {
                return Err(format!(
                    "{field} is not a repeated field in any config dump"
                ));
            };
            configs
                .iter()
                .filter_map(|c| c.get(field.as_str()).and_then(Value::as_array))
                .flatten()
                .map(|item| {
                    let mut item = item.clone();
                    if let Some(o) = item.as_object_mut() {
                        o.insert("@type".into(), format!("{ADMIN}{item_type}").into());
                    }
                    item
                })
                .collect()
        }
        None => configs,
    };
    let configs: Vec<Value> = if p.mask.is_empty() {
        configs
    } else {
        configs.iter().map(|c| mask(c, &p.mask)).collect()
    };
    Ok(json!({ "configs": configs }))
}

/// The admin message type of one element of a repeated config dump field.
fn item_type(field: &str) -> Option<&'static str> {
    Some(match field {
        "static_clusters" => "ClustersConfigDump.StaticCluster",
        "dynamic_active_clusters" | "dynamic_warming_clusters" => {
            "ClustersConfigDump.DynamicCluster"
        }
        "static_listeners" => "ListenersConfigDump.StaticListener",
        "dynamic_listeners" => "ListenersConfigDump.DynamicListener",
        "static_route_configs" => "RoutesConfigDump.StaticRouteConfig",
        "dynamic_route_configs" => "RoutesConfigDump.DynamicRouteConfig",
        "static_endpoint_configs" => "EndpointsConfigDump.StaticEndpointConfig",
        "dynamic_endpoint_configs" => "EndpointsConfigDump.DynamicEndpointConfig",
        "static_secrets" => "SecretsConfigDump.StaticSecret",
        "dynamic_active_secrets" | "dynamic_warming_secrets" => "SecretsConfigDump.DynamicSecret",
        _ => return None,
    })
}

/// The name `name_regex` is matched against.
fn resource_name(item: &Value) -> Option<&str> {
    let direct = item.get("name").and_then(Value::as_str);
    direct.or_else(|| {
        [
            ("listener", "name"),
            ("cluster", "name"),
            ("route_config", "name"),
            ("endpoint_config", "cluster_name"),
            ("secret", "name"),
        ]
        .iter()
        .find_map(|(k, n)| item.get(*k)?.get(*n)?.as_str())
        .or_else(|| {
            // Rejected and never accepted: the name is the failed one's.
            let failed = item.get("error_state")?.get("failed_configuration")?;
            ["name", "cluster_name"]
                .iter()
                .find_map(|n| failed.get(*n)?.as_str())
        })
    })
}

/// Keeps only the `paths` (a `FieldMask`, dotted) of `v`, and its `@type`.
fn mask(v: &Value, paths: &[String]) -> Value {
    let mut out = Map::new();
    if let Some(t) = v.get("@type") {
        out.insert("@type".into(), t.clone());
    }
    for path in paths {
        let parts: Vec<&str> = path.split('.').collect();
        copy_path(v, &parts, &mut out);
    }
    Value::Object(out)
}

fn copy_path(from: &Value, parts: &[&str], into: &mut Map<String, Value>) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    let Some(child) = from.get(*first) else {
        return;
    };
    if rest.is_empty() {
        into.insert((*first).to_owned(), child.clone());
        return;
    }
    // An `Any` keeps its `@type` (Envoy unpacks, trims and repacks it).
    let slot = into.entry((*first).to_owned()).or_insert_with(|| {
        let mut m = Map::new();
        if let Some(t) = child.get("@type") {
            m.insert("@type".into(), t.clone());
        }
        Value::Object(m)
    });
    if let Some(slot) = slot.as_object_mut() {
        copy_path(child, rest, slot);
    }
}

struct Renderer {
    /// Loaded only when there are dynamic resources to decode: it is big.
    pool: Option<DescriptorPool>,
    loaded: String,
}

impl Renderer {
    /// `any` as proto3 JSON with its `@type`, field names as in the proto
    /// (Envoy's dump does the same).
    fn any(&mut self, any: &Any) -> Value {
        let pool = self.pool.get_or_insert_with(strait_envoy::descriptor_pool);
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        let opts = SerializeOptions::new().use_proto_field_name(true);
        let body = pool
            .get_message_by_name(name)
            .ok_or_else(|| format!("unknown type {name}"))
            .and_then(|desc| {
                DynamicMessage::decode(desc, any.value.as_slice()).map_err(|e| e.to_string())
            })
            .and_then(|m| {
                m.serialize_with_options(serde_json::value::Serializer, &opts)
                    .map_err(|e| e.to_string())
            });
        match body {
            Ok(v) => typed(&v, &any.type_url),
            // Every resource here was decoded once when it was accepted;
            // this is a broken descriptor set, shown rather than hidden.
            Err(e) => json!({"@type": any.type_url, "strait_error": e}),
        }
    }

    /// Envoy's `UpdateFailureState`: the rejected resource as received,
    /// when, why, and the version it came with.
    fn failure(&mut self, f: &UpdateFailure) -> Value {
        json!({
            "failed_configuration": self.any(&f.failed_configuration),
            "last_update_attempt": timestamp(f.last_update_attempt),
            "details": f.details,
            "version_info": f.version_info,
        })
    }
}

/// The dynamic resources of `t` under `key`, each with its `error_state`
/// when its last update was rejected (alone when no version of it was
/// ever accepted).
fn dynamic(r: &mut Renderer, t: &TypeDump, key: &str) -> Vec<Value> {
    let mut out: Vec<Value> = t
        .resources
        .values()
        .map(|res| {
            let mut item = json!({
                "version_info": res.version_info,
                key: r.any(&res.resource),
                "last_updated": timestamp(res.last_updated),
            });
            if let Some(f) = t.failed.get(&res.name) {
                item["error_state"] = r.failure(f);
            }
            item
        })
        .collect();
    for (name, f) in &t.failed {
        if !t.resources.contains_key(name) {
            out.push(json!({"error_state": r.failure(f)}));
        }
    }
    out
}

/// The HCM inline `route_config`s of a listener (as JSON).
fn inline_route_configs(listener: &Value, out: &mut Vec<Value>) {
    let chains = listener
        .get("filter_chains")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(listener.get("default_filter_chain"));
    for chain in chains {
        for f in chain
            .get("filters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(tc) = f.get("typed_config") else {
                continue;
            };
            if tc.get("@type").and_then(Value::as_str) == Some(HCM)
                && let Some(rc) = tc.get("route_config")
            {
                out.push(rc.clone());
            }
        }
    }
}

/// `v` (a message as JSON) with `@type` set, as an `Any` renders.
fn typed(v: &Value, type_url: &str) -> Value {
    let mut out = Map::new();
    out.insert("@type".into(), type_url.into());
    if let Some(o) = v.as_object() {
        for (k, v) in o {
            if k != "@type" {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn config(kind: &str, mut body: Map<String, Value>) -> Value {
    body.insert("@type".into(), format!("{ADMIN}{kind}").into());
    Value::Object(body)
}

/// Proto3 JSON leaves empty repeated fields out; so does Envoy's dump.
fn put(m: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    if !items.is_empty() {
        m.insert(key.to_owned(), Value::Array(items));
    }
}

fn put_version(m: &mut Map<String, Value>, version: Option<&String>) {
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        m.insert("version_info".into(), v.clone().into());
    }
}

/// Replaces every string under a sensitive field with `[redacted]`
/// (`inline_bytes` with those bytes, base64 as proto3 JSON wants).
fn redact(v: &mut Value, inside: bool) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                if inside && k == "inline_bytes" {
                    *child = "W3JlZGFjdGVkXQ==".into();
                } else {
                    redact(child, inside || SENSITIVE.contains(&k.as_str()));
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| redact(c, inside)),
        Value::String(s) if inside => REDACTED.clone_into(s),
        _ => {}
    }
}

fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = crate::rfc3339(d.as_secs());
    // Envoy prints milliseconds: "…T12:00:00.123Z".
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), d.subsec_millis())
}

fn timestamp_secs(secs: u64) -> String {
    crate::rfc3339(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump() -> Vec<Value> {
        vec![
            json!({"@type": format!("{ADMIN}BootstrapConfigDump"), "bootstrap": {}}),
            json!({
                "@type": format!("{ADMIN}ClustersConfigDump"),
                "version_info": "7",
                "dynamic_active_clusters": [
                    {"version_info": "7", "cluster": {"@type": CLUSTER, "name": "a", "type": "EDS"}},
                    {"version_info": "6", "cluster": {"@type": CLUSTER, "name": "b", "type": "EDS"}},
                ],
            }),
        ]
    }

    #[test]
    fn resource_lists_one_field_typed() {
        let p = Params {
            resource: Some("dynamic_active_clusters".into()),
            ..Params::default()
        };
        let v = select(dump(), &p).expect("known field");
        let items = v["configs"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0]["@type"],
            format!("{ADMIN}ClustersConfigDump.DynamicCluster")
        );
        let p = Params {
            resource: Some("nope".into()),
            ..Params::default()
        };
        assert!(select(dump(), &p).is_err());
    }

    #[test]
    fn name_regex_and_mask() {
        let p = Params::from_query(&[
            ("resource".into(), "dynamic_active_clusters".into()),
            ("name_regex".into(), "^b$".into()),
            ("mask".into(), "cluster.name,version_info".into()),
        ])
        .expect("valid");
        let v = select(dump(), &p).expect("known field");
        assert_eq!(
            v,
            json!({"configs": [{
                "@type": format!("{ADMIN}ClustersConfigDump.DynamicCluster"),
                "version_info": "6",
                "cluster": {"@type": CLUSTER, "name": "b"},
            }]})
        );
        // Without `resource`, the mask applies to each config.
        let p = Params::from_query(&[("mask".into(), "version_info".into())]).expect("valid");
        let v = select(dump(), &p).expect("no resource");
        assert_eq!(
            v["configs"][1],
            json!({"@type": format!("{ADMIN}ClustersConfigDump"), "version_info": "7"})
        );
        let err = Params::from_query(&[("name_regex".into(), "(".into())]).expect_err("bad");
        assert!(err.starts_with("name_regex"), "{err}");
    }

    #[test]
    fn sensitive_fields_are_redacted_like_envoy() {
        let mut v = json!({
            "tls_certificates": [{
                "certificate_chain": {"inline_string": "CERT"},
                "private_key": {"inline_string": "KEY"},
            }],
            "generic_secret": {"secret": {"inline_bytes": "S0VZ"}},
            "name": "keep",
        });
        redact(&mut v, false);
        assert_eq!(
            v,
            json!({
                "tls_certificates": [{
                    "certificate_chain": {"inline_string": "CERT"},
                    "private_key": {"inline_string": "[redacted]"},
                }],
                "generic_secret": {"secret": {"inline_bytes": "W3JlZGFjdGVkXQ=="}},
                "name": "keep",
            })
        );
    }

    #[test]
    fn timestamps_have_milliseconds() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.123Z");
    }
}

//! Envoy `/config_dump` files (as `istioctl proxy-config` and Envoy's admin
//! write them, snake_case or camelCase) turned into the dynamic resources a
//! control plane would have sent, ready for [`XdsServer::set`].
//!
//! What is taken: `dynamic_listeners` (the active state, else the warming
//! one), `dynamic_route_configs`, `dynamic_active_clusters` and
//! `dynamic_warming_clusters`, `dynamic_endpoint_configs`,
//! `dynamic_active_secrets` and `dynamic_warming_secrets`, `ecds_filters`;
//! a bare JSON array is read as a list of listeners (nameless ones skipped:
//! they are the bootstrap's). Static resources are
//! left out: they came from the dumped proxy's bootstrap, and a test brings
//! its own.
//!
//! Istio's own extension types (`istio.stats`, metadata exchange, ALPN
//! filters, ...) are not in Envoy's descriptor set, so their JSON cannot be
//! encoded. Such an `Any` is served with its type URL and an empty value:
//! neither the test nor Strait has the schema, and Strait decides on the
//! type URL alone. [`ConfigDump::opaque_types`] lists them. The TCP
//! metadata exchange and `istio.alpn`, whose fields Strait translates, are
//! served as `TypedStruct`s instead, their fields intact.

use std::{collections::BTreeSet, path::Path};

/// Istio's types whose fields Strait reads (it translates the message
/// itself): kept, as a `TypedStruct`, instead of emptied.
const KEPT_AS_TYPED_STRUCT: &[&str] = &[
    "envoy.tcp.metadataexchange.config.MetadataExchange",
    "istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig",
];

use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, Value,
    prost_types::{DescriptorProto, FileDescriptorProto},
};
use serde_json::{Map, Value as Json};

use crate::xds_server::{CLUSTER, ENDPOINT, LISTENER, ROUTE, XdsServer};

pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
pub const EXTENSION_CONFIG: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// The dynamic resources of one dump, as (name, resource) per type.
#[derive(Debug, Default, Clone)]
pub struct ConfigDump {
    pub listeners: Vec<(String, Any)>,
    pub routes: Vec<(String, Any)>,
    pub clusters: Vec<(String, Any)>,
    pub endpoints: Vec<(String, Any)>,
    pub secrets: Vec<(String, Any)>,
    /// ECDS: `TypedExtensionConfig`s.
    pub extension_configs: Vec<(String, Any)>,
    /// Type URLs outside Envoy's descriptor set, served with empty values.
    pub opaque_types: BTreeSet<String>,
}

impl ConfigDump {
    /// Reads and converts the dump at `path`; panics (it is test data) on
    /// anything that does not parse, naming the resource.
    pub fn load(path: &Path) -> ConfigDump {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        ConfigDump::from_json(&text)
            .unwrap_or_else(|e| panic!("config dump {}: {e}", path.display()))
    }

    /// Converts a dump given as JSON text.
    pub fn from_json(text: &str) -> Result<ConfigDump, String> {
        let json: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut loader = Loader {
            pool: strait_envoy::parse::descriptor_pool(),
            dump: ConfigDump::default(),
            opaque: BTreeSet::new(),
        };
        match &json {
            Json::Array(listeners) => {
                // Nameless entries are the dumped proxy's bootstrap listeners
                // (15021, 15090): static resources, left out like the others.
                for l in listeners.iter().filter(|l| l.get("name").is_some()) {
                    let l = loader.resource(l, "envoy.config.listener.v3.Listener")?;
                    loader.dump.listeners.push(l);
                }
            }
            Json::Object(top) => {
                for config in array(top, "configs") {
                    loader.config(config)?;
                }
            }
            _ => return Err("neither a config dump object nor a listener array".into()),
        }
        Ok(loader.dump)
    }

    /// Serves every non-empty resource type of the dump on `xds`.
    pub fn serve(&self, xds: &XdsServer) {
        for (type_url, resources) in [
            (CLUSTER, &self.clusters),
            (ENDPOINT, &self.endpoints),
            (LISTENER, &self.listeners),
            (ROUTE, &self.routes),
            (SECRET, &self.secrets),
            (EXTENSION_CONFIG, &self.extension_configs),
        ] {
            if !resources.is_empty() {
                xds.set(type_url, resources.clone());
            }
        }
    }

    /// The names of resources of one kind, for assertions.
    pub fn names(resources: &[(String, Any)]) -> Vec<&str> {
        resources.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// One problem Strait's translator finds in one resource of a dump: what an
/// xDS NACK would carry for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub type_url: &'static str,
    pub name: String,
    /// The field path inside the resource.
    pub path: String,
    /// The message without the path: `not supported: ...` or why invalid.
    pub reason: String,
}

impl ConfigDump {
    /// Translates every listener, route config, cluster and assignment as
    /// the xDS client would, and lists every problem.
    pub fn refusals(&self) -> Vec<Refusal> {
        use envoy_types::pb::envoy::config::{
            cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
            route::v3::RouteConfiguration,
        };
        use prost::Message;
        use strait_envoy::ConfigError;
        let mut out = Vec::new();
        let mut note = |type_url: &'static str, name: &str, errs: Vec<ConfigError>| {
            for e in errs {
                let (path, reason) = match &e {
                    ConfigError::Invalid { path, message } => (path.clone(), message.clone()),
                    ConfigError::Unsupported { path, what } => {
                        (path.clone(), format!("not supported: {what}"))
                    }
                    other => (other.path().to_owned(), other.to_string()),
                };
                out.push(Refusal {
                    type_url,
                    name: name.to_owned(),
                    path,
                    reason,
                });
            }
        };
        let decode_err = |e: prost::DecodeError| {
            vec![ConfigError::Invalid {
                path: String::new(),
                message: e.to_string(),
            }]
        };
        for (name, any) in &self.listeners {
            let r = Listener::decode(any.value.as_slice())
                .map_err(decode_err)
                .and_then(|l| strait_envoy::translate_listener(&l, ""));
            if let Err(e) = r {
                note(LISTENER, name, e);
            }
        }
        for (name, any) in &self.routes {
            let r = RouteConfiguration::decode(any.value.as_slice())
                .map_err(decode_err)
                .and_then(|rc| strait_envoy::translate_route_config(&rc, ""));
            if let Err(e) = r {
                note(ROUTE, name, e);
            }
        }
        for (name, any) in &self.clusters {
            let r = Cluster::decode(any.value.as_slice())
                .map_err(decode_err)
                .and_then(|c| strait_envoy::translate_cluster(&c, ""));
            if let Err(e) = r {
                note(CLUSTER, name, e);
            }
        }
        for (name, any) in &self.endpoints {
            let r = ClusterLoadAssignment::decode(any.value.as_slice())
                .map_err(decode_err)
                .and_then(|c| strait_envoy::translate_cluster_load_assignment(&c, ""));
            if let Err(e) = r {
                note(ENDPOINT, name, e);
            }
        }
        out
    }

    /// The `ClusterLoadAssignment` names the dump's EDS clusters need
    /// (`eds_cluster_config.service_name`, else the cluster's name).
    pub fn eds_names(&self) -> Vec<String> {
        use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster::ClusterDiscoveryType};
        use prost::Message;
        let eds = envoy_types::pb::envoy::config::cluster::v3::cluster::DiscoveryType::Eds as i32;
        self.clusters
            .iter()
            .filter_map(|(_, any)| Cluster::decode(any.value.as_slice()).ok())
            .filter(|c| c.cluster_discovery_type == Some(ClusterDiscoveryType::Type(eds)))
            .map(|c| {
                c.eds_cluster_config
                    .as_ref()
                    .map(|e| e.service_name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or(c.name)
            })
            .collect()
    }

    /// The RDS route config names the dump's listeners need.
    pub fn rds_names(&self) -> BTreeSet<String> {
        use envoy_types::pb::envoy::config::listener::v3::Listener;
        use prost::Message;
        self.listeners
            .iter()
            .filter_map(|(_, any)| Listener::decode(any.value.as_slice()).ok())
            .filter_map(|l| strait_envoy::translate_listener(&l, "").ok())
            .flat_map(|l| l.rds_names().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    }

    /// Removes every HTTP filter that comes from ECDS (`config_discovery`)
    /// from the listeners' connection managers: what istiod sends once the
    /// WasmPlugin behind them is deleted.
    pub fn drop_ecds_http_filters(&mut self) {
        use envoy_types::pb::envoy::{
            config::listener::v3::{Listener, filter},
            extensions::filters::network::http_connection_manager::v3::{
                HttpConnectionManager, http_filter,
            },
        };
        use prost::{Message, Name};
        for (_, any) in &mut self.listeners {
            let mut l = Listener::decode(any.value.as_slice())
                .unwrap_or_else(|e| panic!("listener in dump: {e}"));
            let chains = l
                .filter_chains
                .iter_mut()
                .chain(l.default_filter_chain.as_mut());
            for chain in chains {
                for f in &mut chain.filters {
                    let Some(filter::ConfigType::TypedConfig(tc)) = &mut f.config_type else {
                        continue;
                    };
                    if tc.type_url != HttpConnectionManager::type_url() {
                        continue;
                    }
                    let mut hcm = HttpConnectionManager::decode(tc.value.as_slice())
                        .unwrap_or_else(|e| panic!("HCM in dump: {e}"));
                    hcm.http_filters.retain(|h| {
                        !matches!(
                            h.config_type,
                            Some(http_filter::ConfigType::ConfigDiscovery(_))
                        )
                    });
                    tc.value = hcm.encode_to_vec();
                }
            }
            any.value = l.encode_to_vec();
        }
    }

    /// Changes every cluster with `f` (decoded, then re-encoded).
    pub fn edit_clusters(
        &mut self,
        mut f: impl FnMut(&mut envoy_types::pb::envoy::config::cluster::v3::Cluster),
    ) {
        use prost::Message;
        for (_, any) in &mut self.clusters {
            let mut c =
                envoy_types::pb::envoy::config::cluster::v3::Cluster::decode(any.value.as_slice())
                    .unwrap_or_else(|e| panic!("cluster in dump: {e}"));
            f(&mut c);
            any.value = c.encode_to_vec();
        }
    }
}

struct Loader {
    pool: DescriptorPool,
    dump: ConfigDump,
    /// Message names added to the pool as empty stand-ins.
    opaque: BTreeSet<String>,
}

impl Loader {
    /// One element of `configs`: a `*ConfigDump` with an `@type`.
    fn config(&mut self, config: &Json) -> Result<(), String> {
        let Some(obj) = config.as_object() else {
            return Err("configs[]: not an object".into());
        };
        let kind = obj
            .get("@type")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "ListenersConfigDump" => {
                for l in array(obj, "dynamic_listeners") {
                    let Some(l) = l.as_object() else { continue };
                    let state = field(l, "active_state").or_else(|| field(l, "warming_state"));
                    if let Some(listener) = state.and_then(|s| s.as_object())
                        && let Some(r) = field(listener, "listener")
                    {
                        let r = self.any(r)?;
                        self.dump.listeners.push(r);
                    }
                }
            }
            "RoutesConfigDump" => {
                for r in array(obj, "dynamic_route_configs") {
                    if let Some(rc) = r.as_object().and_then(|o| field(o, "route_config")) {
                        let r = self.any(rc)?;
                        self.dump.routes.push(r);
                    }
                }
            }
            "ClustersConfigDump" => {
                for key in ["dynamic_active_clusters", "dynamic_warming_clusters"] {
                    for c in array(obj, key) {
                        if let Some(c) = c.as_object().and_then(|o| field(o, "cluster")) {
                            let c = self.any(c)?;
                            self.dump.clusters.push(c);
                        }
                    }
                }
            }
            "EndpointsConfigDump" => {
                for e in array(obj, "dynamic_endpoint_configs") {
                    if let Some(e) = e.as_object().and_then(|o| field(o, "endpoint_config")) {
                        let e = self.any(e)?;
                        self.dump.endpoints.push(e);
                    }
                }
            }
            "SecretsConfigDump" => {
                for key in ["dynamic_active_secrets", "dynamic_warming_secrets"] {
                    for s in array(obj, key) {
                        if let Some(s) = s.as_object().and_then(|o| field(o, "secret")) {
                            let s = self.any(s)?;
                            // A warming secret may repeat an active one's name.
                            if !self.dump.secrets.iter().any(|(n, _)| *n == s.0) {
                                self.dump.secrets.push(s);
                            }
                        }
                    }
                }
            }
            "EcdsConfigDump" => {
                for f in array(obj, "ecds_filters") {
                    if let Some(f) = f.as_object().and_then(|o| field(o, "ecds_filter")) {
                        let f = self.any(f)?;
                        // istioctl repeats the same filters once per config.
                        if !self.dump.extension_configs.iter().any(|(n, _)| *n == f.0) {
                            self.dump.extension_configs.push(f);
                        }
                    }
                }
            }
            // The bootstrap and scoped routes: not dynamic resources this
            // control plane serves.
            _ => {}
        }
        Ok(())
    }

    /// A resource written as an `Any` (with `@type`).
    fn any(&mut self, value: &Json) -> Result<(String, Any), String> {
        let full_name = value
            .get("@type")
            .and_then(Json::as_str)
            .and_then(|t| t.rsplit('/').next())
            .ok_or("resource without @type")?
            .to_owned();
        self.resource(value, &full_name)
    }

    /// A resource of message type `full_name`, with or without `@type`.
    fn resource(&mut self, value: &Json, full_name: &str) -> Result<(String, Any), String> {
        let mut value = value.clone();
        if let Some(obj) = value.as_object_mut() {
            obj.remove("@type");
        }
        self.make_opaque(&mut value)?;
        let desc = self
            .pool
            .get_message_by_name(full_name)
            .ok_or_else(|| format!("unknown resource type {full_name}"))?;
        let opts = DeserializeOptions::new().deny_unknown_fields(true);
        let msg = DynamicMessage::deserialize_with_options(desc, value, &opts)
            .map_err(|e| format!("{full_name}: {e}"))?;
        let name = ["name", "cluster_name"]
            .iter()
            .find_map(|f| match msg.get_field_by_name(f).as_deref() {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            })
            .ok_or_else(|| format!("{full_name} without a name"))?;
        let any = Any {
            type_url: format!("type.googleapis.com/{full_name}"),
            value: prost::Message::encode_to_vec(&msg),
        };
        Ok((name, any))
    }

    /// Empties every `Any` whose type is not in the pool (keeping only its
    /// `@type`) and adds an empty message of that name to the pool, so the
    /// rest of the resource still parses strictly.
    fn make_opaque(&mut self, value: &mut Json) -> Result<(), String> {
        match value {
            Json::Object(obj) => {
                let unknown = obj
                    .get("@type")
                    .and_then(Json::as_str)
                    .and_then(|t| t.rsplit('/').next())
                    .filter(|name| {
                        self.opaque.contains(*name) || self.pool.get_message_by_name(name).is_none()
                    })
                    .map(str::to_owned);
                if let Some(name) = unknown.as_deref()
                    && KEPT_AS_TYPED_STRUCT.contains(&name)
                {
                    // Its fields are the config Strait runs: served as the
                    // `TypedStruct` istiod could have sent, fields intact.
                    let type_url = obj.remove("@type").unwrap_or_default();
                    let fields = std::mem::take(obj);
                    obj.insert(
                        "@type".into(),
                        Json::String("type.googleapis.com/udpa.type.v1.TypedStruct".into()),
                    );
                    obj.insert("type_url".into(), type_url);
                    obj.insert("value".into(), Json::Object(fields));
                    return Ok(());
                }
                if let Some(name) = unknown {
                    let type_url = obj.get("@type").cloned().unwrap_or_default();
                    obj.clear();
                    obj.insert("@type".into(), type_url.clone());
                    self.dump
                        .opaque_types
                        .insert(type_url.as_str().unwrap_or_default().to_owned());
                    if self.opaque.insert(name.clone()) {
                        self.add_empty_message(&name)?;
                    }
                    return Ok(());
                }
                // Envoy prints an empty `Any` (such as a Wasm plugin's
                // `configuration`) as `{}`, which the JSON mapping cannot
                // read back without an `@type`; unset is the same message.
                obj.retain(|k, v| {
                    !(matches!(k.as_str(), "configuration" | "typed_config" | "typedConfig")
                        && v.as_object().is_some_and(Map::is_empty))
                });
                for v in obj.values_mut() {
                    self.make_opaque(v)?;
                }
            }
            Json::Array(items) => {
                for v in items {
                    self.make_opaque(v)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn add_empty_message(&mut self, full_name: &str) -> Result<(), String> {
        let (package, name) = full_name.rsplit_once('.').unwrap_or(("", full_name));
        let file = FileDescriptorProto {
            name: Some(format!("strait-test-opaque/{full_name}.proto")),
            package: (!package.is_empty()).then(|| package.to_owned()),
            message_type: vec![DescriptorProto {
                name: Some(name.to_owned()),
                ..Default::default()
            }],
            syntax: Some("proto3".into()),
            ..Default::default()
        };
        self.pool
            .add_file_descriptor_proto(file)
            .map_err(|e| format!("opaque type {full_name}: {e}"))
    }
}

/// `obj[key]` under its snake_case or camelCase name.
fn field<'a>(obj: &'a Map<String, Json>, key: &str) -> Option<&'a Json> {
    obj.get(key).or_else(|| obj.get(&camel(key)))
}

fn array<'a>(obj: &'a Map<String, Json>, key: &str) -> &'a [Json] {
    field(obj, key)
        .and_then(Json::as_array)
        .map_or(&[], Vec::as_slice)
}

fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_keys() {
        assert_eq!(camel("dynamic_active_clusters"), "dynamicActiveClusters");
    }

    #[test]
    fn reads_both_spellings_and_keeps_unknown_types_opaque() {
        let dump = r#"{"configs": [
          {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
           "dynamicActiveClusters": [{"cluster": {
             "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
             "name": "c1", "type": "STATIC", "connectTimeout": "1s",
             "filters": [{"name": "istio.metadata_exchange", "typed_config": {
               "@type": "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange",
               "protocol": "istio-peer-exchange"}},
              {"name": "opaque", "typed_config": {
               "@type": "type.googleapis.com/io.istio.example.Opaque", "x": 1}}]}}]},
          {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
           "dynamic_route_configs": [{"route_config": {
             "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
             "name": "80"}}]}]}"#;
        let d = ConfigDump::from_json(dump).expect("loads");
        assert_eq!(ConfigDump::names(&d.clusters), ["c1"]);
        assert_eq!(ConfigDump::names(&d.routes), ["80"]);
        assert_eq!(
            d.opaque_types.iter().collect::<Vec<_>>(),
            ["type.googleapis.com/io.istio.example.Opaque"]
        );
        // The exchange's fields are kept, in a `TypedStruct`.
        let cluster: envoy_types::pb::envoy::config::cluster::v3::Cluster =
            prost::Message::decode(d.clusters[0].1.value.as_slice()).expect("cluster");
        let mx = cluster.filters[0]
            .typed_config
            .as_ref()
            .expect("typed_config");
        assert_eq!(mx.type_url, "type.googleapis.com/udpa.type.v1.TypedStruct");
        let text = String::from_utf8_lossy(&mx.value);
        assert!(text.contains("MetadataExchange") && text.contains("istio-peer-exchange"));
    }

    #[test]
    fn a_typo_in_a_known_type_is_refused() {
        let dump = r#"[{"name": "l", "bindToPortt": false}]"#;
        assert!(ConfigDump::from_json(dump).is_err());
    }
}

//! Istio's telemetry extensions: the stats plugin (`stats.PluginConfig`,
//! or the null-VM Wasm plugin `envoy.wasm.stats`), the HTTP peer
//! metadata exchange (`io.istio.http.peer_metadata.Config`, or the null-VM
//! Wasm plugin `envoy.wasm.metadata_exchange`), the TCP one, and
//! `istio.alpn` (`alpn`).
//!
//! Neither message is in the descriptor set `envoy-types` ships. A config
//! arrives as a `TypedStruct` (its `value` in the proto3 JSON form), as the
//! protobuf bytes of an `Any` (xDS), or as a Wasm plugin's `configuration`
//! string (JSON). The bytes are decoded with messages declared here, every
//! field of Istio's protos, and turned into the JSON form, so one reader
//! judges every config, field by field: supported, accepted without
//! effect (with the reason), or refused by name.

use std::{sync::Arc, time::Duration};

use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use prost::Message;
use serde_json::{Map, Value as Json};

use super::{Context, at, inert, item, type_name};

mod alpn;

use crate::model::{
    TrafficDirection,
    extension::Extension,
    istio::{
        Dimension, IstioMetric, IstioStats, MetricOverride, PeerField, PeerMetadata, Reporter,
        TcpMetadataExchange, Workload, type_url,
    },
};
pub(super) use alpn::{ALPN, alpn};

/// The stats plugin's message and null-VM plugin name.
pub(super) const STATS: &str = "stats.PluginConfig";
pub(super) const WASM_STATS: &str = "envoy.wasm.stats";
/// The HTTP exchange's message and null-VM plugin name.
pub(super) const PEER_METADATA: &str = "io.istio.http.peer_metadata.Config";
pub(super) const WASM_MX: &str = "envoy.wasm.metadata_exchange";
/// The TCP exchange's message.
pub(super) const TCP_MX: &str = "envoy.tcp.metadataexchange.config.MetadataExchange";

/// Istio's filter default for `tcp_reporting_duration`.
const TCP_REPORTING_DEFAULT: Duration = Duration::from_secs(5);

/// Which Istio telemetry extension `any` configures, if any: its name
/// (one of the constants above) and its config as JSON.
pub(super) fn recognise(any: &Any) -> Option<(&'static str, Json)> {
    if let Some((url, value)) = inert::typed_struct(any) {
        return match type_name(&url) {
            STATS => Some((STATS, value)),
            PEER_METADATA => Some((PEER_METADATA, value)),
            TCP_MX => Some((TCP_MX, value)),
            ALPN => Some((ALPN, value)),
            _ => wasm(any),
        };
    }
    match type_name(&any.type_url) {
        STATS => Some((
            STATS,
            proto::PluginConfig::decode(any.value.as_slice())
                .map_or_else(|_| Json::Null, |c| c.to_json()),
        )),
        PEER_METADATA => Some((
            PEER_METADATA,
            proto::PeerConfig::decode(any.value.as_slice())
                .map_or_else(|_| Json::Null, |c| c.to_json()),
        )),
        TCP_MX => Some((
            TCP_MX,
            proto::MetadataExchange::decode(any.value.as_slice())
                .map_or_else(|_| Json::Null, |c| c.to_json()),
        )),
        ALPN => Some((
            ALPN,
            alpn::FilterConfig::decode(any.value.as_slice())
                .map_or_else(|_| Json::Null, |c| c.to_json()),
        )),
        _ => wasm(any),
    }
}

/// A null-VM Wasm plugin this module runs, with its `configuration`.
fn wasm(any: &Any) -> Option<(&'static str, Json)> {
    let (plugin, configuration) = inert::null_vm_plugin(any)?;
    let name = match plugin.as_str() {
        WASM_STATS => WASM_STATS,
        WASM_MX => WASM_MX,
        _ => return None,
    };
    // The plugins read their `configuration` as JSON text; an absent or
    // empty one (or one of another type) is the empty config.
    let config = configuration
        .filter(|s| !s.trim().is_empty())
        .map(|s| serde_json::from_str(&s).unwrap_or(Json::Null))
        .unwrap_or_else(|| Json::Object(Map::new()));
    Some((name, config))
}

/// The stats plugin as an HTTP filter or network read filter.
pub(super) fn stats(cx: &mut Context, name: &str, config: &Json, path: &str) -> Option<Extension> {
    let Some(obj) = config.as_object() else {
        cx.invalid(path, format!("{name}: not a valid stats.PluginConfig"));
        return None;
    };
    let before = cx.problems.len();
    let mut out = IstioStats {
        reporter: match cx.direction {
            TrafficDirection::Inbound => Reporter::Destination,
            // Istio's default: the client sidecar.
            TrafficDirection::Outbound | TrafficDirection::Unspecified => Reporter::Source,
        },
        local: Arc::new(cx.local_workload(&[])),
        disable_host_header_fallback: false,
        tcp_reporting: TCP_REPORTING_DEFAULT,
        overrides: Vec::new(),
    };
    for (key, value) in obj {
        let fpath = at(path, key);
        match snake(key).as_str() {
            "disable_host_header_fallback" => match value {
                Json::Bool(b) => out.disable_host_header_fallback = *b,
                _ => cx.invalid(fpath, "must be a boolean"),
            },
            "tcp_reporting_duration" => {
                if let Some(d) = json_duration(cx, value, &fpath) {
                    out.tcp_reporting = d;
                }
            }
            "metrics" => {
                for (i, m) in value
                    .as_array()
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .enumerate()
                {
                    if let Some(o) = metric_override(cx, m, &item(path, key, i)) {
                        out.overrides.push(o);
                    }
                }
            }
            "definitions" if value.as_array().is_some_and(|a| !a.is_empty()) => {
                cx.unsupported(fpath, "custom metric definitions (CEL metric values)");
            }
            "definitions" => {}
            "reporter" => match value {
                Json::String(s) if s == "UNSPECIFIED" => {}
                Json::Number(n) if n.as_u64() == Some(0) => {}
                _ => cx.unsupported(fpath, format!("reporter {value} (waypoint gateways)")),
            },
            // Istio rotates its stats scope to bound cardinality; Strait
            // bounds the label sets a filter makes instead (see
            // docs/decisions/0017-istio-telemetry.md).
            "rescoping_duration"
            | "scope_grace_period_duration"
            | "rotation_interval"
            | "graceful_deletion_interval" => {}
            // The Wasm plugin's: logging, and its peer cache size.
            "debug" | "max_peer_cache_size" => {}
            // The Wasm plugin's stat name parts: Istio renders the defaults
            // (prefix `istio`), which are the names produced here.
            "stat_prefix" if value.as_str().is_none_or(|s| s.is_empty() || s == "istio") => {}
            "field_separator" | "value_separator" if value.as_str().is_some() => {}
            other => cx.unsupported(fpath, format!("{name} field {other}")),
        }
    }
    (cx.problems.len() == before).then(|| Extension::new(type_url::STATS, out))
}

fn metric_override(cx: &mut Context, m: &Json, path: &str) -> Option<MetricOverride> {
    let Some(obj) = m.as_object() else {
        cx.invalid(path, "must be an object");
        return None;
    };
    let mut out = MetricOverride {
        metric: None,
        drop: false,
        tags_to_remove: Vec::new(),
        dimensions: Vec::new(),
    };
    let before = cx.problems.len();
    for (key, value) in obj {
        let fpath = at(path, key);
        match snake(key).as_str() {
            "name" => match value.as_str() {
                Some("") => {}
                Some(n) => match IstioMetric::from_config_name(n) {
                    Some(metric) => out.metric = Some(metric),
                    None => cx.unsupported(fpath, format!("metric {n} (custom metrics)")),
                },
                None => cx.invalid(fpath, "must be a string"),
            },
            "drop" => out.drop = value.as_bool().unwrap_or(false),
            "tags_to_remove" => {
                for tag in value.as_array().map_or(&[][..], Vec::as_slice) {
                    match tag.as_str() {
                        Some(t) => out.tags_to_remove.push(t.to_owned()),
                        None => cx.invalid(fpath.clone(), "must be strings"),
                    }
                }
            }
            "dimensions" => {
                let Some(dims) = value.as_object() else {
                    cx.invalid(fpath, "must be a map");
                    continue;
                };
                for (tag, expr) in dims {
                    let dpath = format!("{fpath}[{tag}]");
                    let Some(expr) = expr.as_str() else {
                        cx.invalid(dpath, "must be a string");
                        continue;
                    };
                    match dimension(cx, expr) {
                        Some(d) => out.dimensions.push((tag.clone(), d)),
                        None => cx.unsupported(dpath, format!("dimension expression `{expr}`")),
                    }
                }
                out.dimensions.sort_by(|a, b| a.0.cmp(&b.0));
            }
            // "NOT IMPLEMENTED" in Istio's filter too: it is ignored there.
            "match" => {}
            other => cx.unsupported(fpath, format!("metrics field {other}")),
        }
    }
    (cx.problems.len() == before).then_some(out)
}

/// The subset of CEL Strait evaluates for `dimensions`.
fn dimension(cx: &Context, expr: &str) -> Option<Dimension> {
    let e = expr.trim();
    if let Some(lit) = quoted(e) {
        return Some(Dimension::Constant(lit.to_owned()));
    }
    if let Some(key) = e.strip_prefix("node.metadata").and_then(indexed) {
        let value = cx
            .node
            .as_ref()
            .and_then(|n| n.metadata.as_ref())
            .and_then(|m| struct_text(m, key))
            .unwrap_or("unknown");
        return Some(Dimension::Constant(value.to_owned()));
    }
    for (prefix, downstream) in [("downstream_peer.", true), ("upstream_peer.", false)] {
        if let Some(field) = e.strip_prefix(prefix) {
            let field = match field {
                "name" => PeerField::Name,
                "namespace" => PeerField::Namespace,
                "workload_name" => PeerField::WorkloadName,
                "cluster_id" => PeerField::ClusterId,
                f => PeerField::Label(f.strip_prefix("labels").and_then(indexed)?.to_owned()),
            };
            return Some(Dimension::Peer { downstream, field });
        }
    }
    Some(match e {
        "request.host" => Dimension::RequestHost,
        "request.method" => Dimension::RequestMethod,
        "request.path" => Dimension::RequestPath,
        "request.url_path" => Dimension::RequestUrlPath,
        "response.code" => Dimension::ResponseCode,
        _ => {
            let name = e.strip_prefix("request.headers").and_then(indexed)?;
            Dimension::RequestHeader(name.to_ascii_lowercase())
        }
    })
}

/// `'text'` or `"text"` without escapes.
fn quoted(e: &str) -> Option<&str> {
    let inner = e
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| e.strip_prefix('"').and_then(|s| s.strip_suffix('"')))?;
    (!inner.contains(['\'', '"', '\\'])).then_some(inner)
}

/// `['key']` (or `["key"]`): the key.
fn indexed(e: &str) -> Option<&str> {
    quoted(e.strip_prefix('[')?.strip_suffix(']')?)
}

/// The HTTP peer metadata exchange.
pub(super) fn peer_metadata(
    cx: &mut Context,
    name: &str,
    config: &Json,
    path: &str,
) -> Option<Extension> {
    let Some(obj) = config.as_object() else {
        cx.invalid(path, format!("{name}: not a valid peer metadata config"));
        return None;
    };
    let before = cx.problems.len();
    let legacy = name == WASM_MX;
    let mut out = PeerMetadata {
        // The Wasm plugin exchanges both ways on every request.
        downstream_discovery: legacy,
        upstream_discovery: legacy,
        downstream_propagation: legacy,
        upstream_propagation: legacy,
        skip_external_clusters: false,
        additional_labels: Vec::new(),
        id: String::new(),
        value: String::new(),
    };
    for (key, value) in obj {
        let fpath = at(path, key);
        let list = value.as_array().map_or(&[][..], Vec::as_slice);
        match (legacy, snake(key).as_str()) {
            (false, k @ ("downstream_discovery" | "upstream_discovery")) => {
                for (i, m) in list.iter().enumerate() {
                    let mpath = item(path, k, i);
                    match single_key(m) {
                        Some(("istio_headers" | "istioHeaders", _)) => {
                            if k == "downstream_discovery" {
                                out.downstream_discovery = true;
                            } else {
                                out.upstream_discovery = true;
                            }
                        }
                        // A lookup in the workload metadata xDS, which
                        // Strait does not subscribe to: it finds nothing,
                        // and the next method (or none) decides.
                        Some(("workload_discovery" | "workloadDiscovery", _)) => {}
                        Some((other, _)) => {
                            cx.unsupported(at(&mpath, other), format!("discovery method {other}"))
                        }
                        None => cx.invalid(mpath, "needs exactly one discovery method"),
                    }
                }
            }
            (false, k @ ("downstream_propagation" | "upstream_propagation")) => {
                for (i, m) in list.iter().enumerate() {
                    let mpath = item(path, k, i);
                    match single_key(m) {
                        Some(("istio_headers" | "istioHeaders", h)) => {
                            let skip = h
                                .get("skip_external_clusters")
                                .or_else(|| h.get("skipExternalClusters"))
                                .and_then(Json::as_bool)
                                .unwrap_or(false);
                            if k == "downstream_propagation" {
                                out.downstream_propagation = true;
                            } else {
                                out.upstream_propagation = true;
                                out.skip_external_clusters |= skip;
                            }
                        }
                        Some((other, _)) => {
                            cx.unsupported(at(&mpath, other), format!("propagation method {other}"))
                        }
                        None => cx.invalid(mpath, "needs exactly one propagation method"),
                    }
                }
            }
            // Shares the discovered peer with upstream filters (internal
            // listeners), which Strait does not have.
            (false, "shared_with_upstream") => {}
            (false, "additional_labels") => {
                out.additional_labels = list
                    .iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect();
            }
            // The Wasm plugin's peer cache size: Strait bounds its own.
            (true, "max_peer_cache_size") => {}
            (_, other) => cx.unsupported(fpath, format!("{name} field {other}")),
        }
    }
    let labels: Vec<&str> = out.additional_labels.iter().map(String::as_str).collect();
    let local = cx.local_workload(&labels);
    out.id = cx.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
    out.value = encode_peer(&local);
    (cx.problems.len() == before).then(|| Extension::new(type_url::PEER_METADATA, out))
}

/// The TCP metadata exchange (`envoy.tcp.metadataexchange.config.MetadataExchange`),
/// as a listener's network filter or a cluster's filter: the local
/// workload it sends is resolved here, from the node's metadata.
pub(super) fn tcp_metadata_exchange(
    cx: &mut Context,
    config: &Json,
    path: &str,
) -> Option<Extension> {
    let Some(obj) = config.as_object() else {
        cx.invalid(path, format!("{TCP_MX}: not a valid config"));
        return None;
    };
    let before = cx.problems.len();
    let mut out = TcpMetadataExchange {
        protocol: String::new(),
        additional_labels: Vec::new(),
        id: String::new(),
        metadata: Vec::new(),
    };
    for (key, value) in obj {
        let fpath = at(path, key);
        match snake(key).as_str() {
            "protocol" => match value.as_str() {
                Some(p) => out.protocol = p.to_owned(),
                None => cx.invalid(fpath, "must be a string"),
            },
            // A lookup of the peer in the workload metadata xDS when the
            // exchange brings nothing: Strait does not subscribe to it, so
            // the lookup finds nothing and the peer stays unknown, which is
            // what the exchange alone gives such a peer.
            "enable_discovery" => {
                if !value.is_boolean() {
                    cx.invalid(fpath, "must be a boolean");
                }
            }
            "additional_labels" => match value.as_array() {
                Some(list) => {
                    for (i, l) in list.iter().enumerate() {
                        match l.as_str() {
                            Some(l) => out.additional_labels.push(l.to_owned()),
                            None => cx.invalid(item(path, key, i), "must be a string"),
                        }
                    }
                }
                None => cx.invalid(fpath, "must be a list of strings"),
            },
            other => cx.unsupported(fpath, format!("{TCP_MX} field {other}")),
        }
    }
    // Istio's filter never matches an empty ALPN protocol: the exchange
    // would never run, which a config surely did not mean.
    if out.protocol.is_empty() {
        cx.invalid(at(path, "protocol"), "is required");
    }
    let labels: Vec<&str> = out.additional_labels.iter().map(String::as_str).collect();
    let local = cx.local_workload(&labels);
    out.id = cx.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
    out.metadata = encode_peer_bytes(&local);
    (cx.problems.len() == before).then(|| Extension::new(type_url::TCP_METADATA_EXCHANGE, out))
}

/// A one-key object: its key and value.
fn single_key(v: &Json) -> Option<(&str, &Map<String, Json>)> {
    let obj = v.as_object()?;
    let mut it = obj.iter();
    let (k, inner) = it.next()?;
    static EMPTY: std::sync::OnceLock<Map<String, Json>> = std::sync::OnceLock::new();
    let inner = inner
        .as_object()
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new));
    it.next().is_none().then_some((k.as_str(), inner))
}

/// A proto3 JSON duration (`"5s"`, `"0.5s"`).
fn json_duration(cx: &mut Context, v: &Json, path: &str) -> Option<Duration> {
    let secs = v
        .as_str()
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0);
    match secs {
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => {
            cx.invalid(path, "must be a duration such as \"5s\"");
            None
        }
    }
}

/// `camelCase` to `snake_case`, for the two JSON spellings.
fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A string field of a `Struct`.
fn struct_text<'a>(s: &'a Struct, key: &str) -> Option<&'a str> {
    match s.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(v) => Some(v),
        _ => None,
    }
}

fn struct_field<'a>(s: &'a Struct, key: &str) -> Option<&'a Struct> {
    match s.fields.get(key)?.kind.as_ref()? {
        Kind::StructValue(v) => Some(v),
        _ => None,
    }
}

/// Label keys Istio's workload metadata reads itself.
pub(crate) const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
pub(crate) const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";

/// The workload facts of a node's metadata, as Istio reads them
/// (`convertStructToWorkloadMetadata`). `keep` names the labels kept
/// besides Istio's own four; `None` keeps them all.
pub(crate) fn workload_of(metadata: Option<&Struct>, keep: Option<&[&str]>) -> Workload {
    let Some(m) = metadata else {
        return Workload::default();
    };
    let text = |k: &str| struct_text(m, k).unwrap_or_default().to_owned();
    let mut w = Workload {
        name: text("NAME"),
        namespace: text("NAMESPACE"),
        workload_name: text("WORKLOAD_NAME"),
        cluster_id: text("CLUSTER_ID"),
        owner: text("OWNER"),
        ..Workload::default()
    };
    if let Some(labels) = struct_field(m, "LABELS") {
        let mut keys: Vec<&String> = labels.fields.keys().collect();
        keys.sort();
        for k in keys {
            let Some(v) = struct_text(labels, k) else {
                continue;
            };
            match k.as_str() {
                CANONICAL_NAME => w.canonical_name = v.to_owned(),
                CANONICAL_REVISION => w.canonical_revision = v.to_owned(),
                "app" => w.app = v.to_owned(),
                "version" => w.version = v.to_owned(),
                _ => {}
            }
            if keep.is_none_or(|keep| keep.contains(&k.as_str())) {
                w.labels.push((k.clone(), v.to_owned()));
            }
        }
    }
    w
}

/// The exchange header's value for `w`: the `Struct` Istio sends
/// (`convertWorkloadMetadataToStruct`), protobuf-encoded with its keys in
/// order, base64 (standard alphabet, padded).
pub(crate) fn encode_peer(w: &Workload) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(encode_peer_bytes(w))
}

/// The `Struct` [`encode_peer`] sends, before base64: what the TCP
/// exchange sends as is.
pub(crate) fn encode_peer_bytes(w: &Workload) -> Vec<u8> {
    let mut labels: Vec<(&str, &str)> = Vec::new();
    for (k, v) in [
        (CANONICAL_NAME, &w.canonical_name),
        (CANONICAL_REVISION, &w.canonical_revision),
        ("app", &w.app),
        ("version", &w.version),
    ] {
        if !v.is_empty() {
            labels.push((k, v));
        }
    }
    for (k, v) in &w.labels {
        if !labels.iter().any(|(l, _)| l == k) {
            labels.push((k, v));
        }
    }
    labels.sort();
    let mut fields: Vec<(&str, Value)> = Vec::new();
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    };
    for (k, v) in [
        ("CLUSTER_ID", &w.cluster_id),
        ("NAME", &w.name),
        ("NAMESPACE", &w.namespace),
        ("OWNER", &w.owner),
        ("WORKLOAD_NAME", &w.workload_name),
    ] {
        if !v.is_empty() {
            fields.push((k, text(v)));
        }
    }
    fields.push((
        "LABELS",
        Value {
            kind: Some(Kind::StructValue(Struct {
                fields: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), text(v)))
                    .collect(),
            })),
        },
    ));
    fields.sort_by(|a, b| a.0.cmp(b.0));
    // One map entry per encoded `Struct` keeps the order: concatenated
    // messages merge, and a map's entries are repeated fields.
    let mut bytes = Vec::new();
    for (k, v) in fields {
        let v = match v.kind {
            Some(Kind::StructValue(s)) => sorted_struct_value(&s),
            other => Value { kind: other }.encode_to_vec(),
        };
        let mut entry = Vec::new();
        prost::encoding::string::encode(1, &k.to_owned(), &mut entry);
        prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, &mut entry);
        prost::encoding::encode_varint(v.len() as u64, &mut entry);
        entry.extend_from_slice(&v);
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut bytes);
        prost::encoding::encode_varint(entry.len() as u64, &mut bytes);
        bytes.extend_from_slice(&entry);
    }
    bytes
}

/// A `Value` holding `s`, its entries in key order.
fn sorted_struct_value(s: &Struct) -> Vec<u8> {
    let mut keys: Vec<&String> = s.fields.keys().collect();
    keys.sort();
    let mut inner = Vec::new();
    for k in keys {
        let one = Struct {
            fields: [(k.clone(), s.fields[k].clone())].into_iter().collect(),
        };
        inner.extend(one.encode_to_vec());
    }
    let mut out = Vec::new();
    prost::encoding::encode_key(5, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(inner.len() as u64, &mut out);
    out.extend(inner);
    out
}

/// Istio's messages, every field, for configs that arrive as bytes.
mod proto {
    use std::collections::BTreeMap;

    use envoy_types::pb::google::protobuf::Duration;
    use serde_json::{Map, Value as Json, json};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PluginConfig {
        #[prost(bool, tag = "6")]
        pub disable_host_header_fallback: bool,
        #[prost(message, optional, tag = "7")]
        pub tcp_reporting_duration: Option<Duration>,
        #[prost(message, repeated, tag = "8")]
        pub metrics: Vec<MetricConfig>,
        #[prost(message, repeated, tag = "9")]
        pub definitions: Vec<MetricDefinition>,
        #[prost(int32, tag = "10")]
        pub reporter: i32,
        #[prost(message, optional, tag = "11")]
        pub rescoping_duration: Option<Duration>,
        #[prost(message, optional, tag = "12")]
        pub scope_grace_period_duration: Option<Duration>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricConfig {
        #[prost(btree_map = "string, string", tag = "1")]
        pub dimensions: BTreeMap<String, String>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(string, repeated, tag = "3")]
        pub tags_to_remove: Vec<String>,
        #[prost(string, tag = "4")]
        pub r#match: String,
        #[prost(bool, tag = "5")]
        pub drop: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricDefinition {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
        #[prost(int32, tag = "3")]
        pub r#type: i32,
    }

    fn duration(d: &Duration) -> Json {
        Json::String(format!(
            "{}s",
            d.seconds as f64 + f64::from(d.nanos) / 1_000_000_000.0
        ))
    }

    impl PluginConfig {
        /// The proto3 JSON form, default fields left out.
        pub fn to_json(&self) -> Json {
            let mut m = Map::new();
            if self.disable_host_header_fallback {
                m.insert("disable_host_header_fallback".into(), Json::Bool(true));
            }
            if let Some(d) = &self.tcp_reporting_duration {
                m.insert("tcp_reporting_duration".into(), duration(d));
            }
            if !self.metrics.is_empty() {
                let metrics = self
                    .metrics
                    .iter()
                    .map(|c| {
                        let mut o = Map::new();
                        if !c.dimensions.is_empty() {
                            o.insert("dimensions".into(), json!(c.dimensions));
                        }
                        if !c.name.is_empty() {
                            o.insert("name".into(), json!(c.name));
                        }
                        if !c.tags_to_remove.is_empty() {
                            o.insert("tags_to_remove".into(), json!(c.tags_to_remove));
                        }
                        if !c.r#match.is_empty() {
                            o.insert("match".into(), json!(c.r#match));
                        }
                        if c.drop {
                            o.insert("drop".into(), Json::Bool(true));
                        }
                        Json::Object(o)
                    })
                    .collect();
                m.insert("metrics".into(), Json::Array(metrics));
            }
            if !self.definitions.is_empty() {
                let defs = self
                    .definitions
                    .iter()
                    .map(|d| json!({"name": d.name, "value": d.value, "type": d.r#type}))
                    .collect();
                m.insert("definitions".into(), Json::Array(defs));
            }
            if self.reporter != 0 {
                m.insert("reporter".into(), json!(self.reporter));
            }
            if let Some(d) = &self.rescoping_duration {
                m.insert("rescoping_duration".into(), duration(d));
            }
            if let Some(d) = &self.scope_grace_period_duration {
                m.insert("scope_grace_period_duration".into(), duration(d));
            }
            Json::Object(m)
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PeerConfig {
        #[prost(message, repeated, tag = "1")]
        pub downstream_discovery: Vec<DiscoveryMethod>,
        #[prost(message, repeated, tag = "2")]
        pub upstream_discovery: Vec<DiscoveryMethod>,
        #[prost(message, repeated, tag = "3")]
        pub downstream_propagation: Vec<PropagationMethod>,
        #[prost(message, repeated, tag = "4")]
        pub upstream_propagation: Vec<PropagationMethod>,
        #[prost(bool, tag = "5")]
        pub shared_with_upstream: bool,
        #[prost(string, repeated, tag = "6")]
        pub additional_labels: Vec<String>,
    }

    /// `envoy.tcp.metadataexchange.config.MetadataExchange` (Istio's
    /// proxy, `metadata_exchange.proto`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetadataExchange {
        #[prost(string, tag = "1")]
        pub protocol: String,
        #[prost(bool, tag = "2")]
        pub enable_discovery: bool,
        #[prost(string, repeated, tag = "3")]
        pub additional_labels: Vec<String>,
    }

    impl MetadataExchange {
        pub fn to_json(&self) -> Json {
            json!({
                "protocol": self.protocol,
                "enable_discovery": self.enable_discovery,
                "additional_labels": self.additional_labels,
            })
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Empty {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IstioHeaders {
        #[prost(bool, tag = "1")]
        pub skip_external_clusters: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DiscoveryMethod {
        #[prost(message, optional, tag = "1")]
        pub baggage: Option<Empty>,
        #[prost(message, optional, tag = "2")]
        pub workload_discovery: Option<Empty>,
        #[prost(message, optional, tag = "3")]
        pub istio_headers: Option<IstioHeaders>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PropagationMethod {
        #[prost(message, optional, tag = "1")]
        pub istio_headers: Option<IstioHeaders>,
    }

    fn headers(h: &IstioHeaders) -> Json {
        json!({"istio_headers": {"skip_external_clusters": h.skip_external_clusters}})
    }

    impl PeerConfig {
        pub fn to_json(&self) -> Json {
            let discovery = |ms: &[DiscoveryMethod]| -> Json {
                ms.iter()
                    .map(|m| match m {
                        DiscoveryMethod {
                            istio_headers: Some(h),
                            ..
                        } => headers(h),
                        DiscoveryMethod {
                            workload_discovery: Some(_),
                            ..
                        } => json!({"workload_discovery": {}}),
                        DiscoveryMethod {
                            baggage: Some(_), ..
                        } => json!({"baggage": {}}),
                        _ => json!({}),
                    })
                    .collect()
            };
            let propagation = |ms: &[PropagationMethod]| -> Json {
                ms.iter()
                    .map(|m| m.istio_headers.as_ref().map_or_else(|| json!({}), headers))
                    .collect()
            };
            let mut m = Map::new();
            m.insert(
                "downstream_discovery".into(),
                discovery(&self.downstream_discovery),
            );
            m.insert(
                "upstream_discovery".into(),
                discovery(&self.upstream_discovery),
            );
            m.insert(
                "downstream_propagation".into(),
                propagation(&self.downstream_propagation),
            );
            m.insert(
                "upstream_propagation".into(),
                propagation(&self.upstream_propagation),
            );
            if self.shared_with_upstream {
                m.insert("shared_with_upstream".into(), Json::Bool(true));
            }
            m.insert("additional_labels".into(), json!(self.additional_labels));
            Json::Object(m)
        }
    }
}

impl Context {
    /// The local workload from the node's metadata (empty without a
    /// node), keeping the labels named in `keep` besides Istio's own.
    fn local_workload(&self, keep: &[&str]) -> Workload {
        let metadata = self.node.as_ref().and_then(|n| n.metadata.as_ref());
        workload_of(metadata, Some(keep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> envoy_types::pb::envoy::config::core::v3::Node {
        let json = serde_json::json!({
            "NAME": "productpage-v1-abc",
            "NAMESPACE": "default",
            "WORKLOAD_NAME": "productpage-v1",
            "CLUSTER_ID": "Kubernetes",
            "LABELS": {"app": "productpage", "version": "v1",
                       "service.istio.io/canonical-name": "productpage",
                       "pod-template-hash": "abc"}
        });
        envoy_types::pb::envoy::config::core::v3::Node {
            id: "sidecar~10.0.0.1~productpage-v1-abc.default~default.svc.cluster.local".into(),
            metadata: Some(crate::pbjson::json_to_struct(
                json.as_object().expect("object"),
            )),
            ..Default::default()
        }
    }

    fn cx() -> Context {
        Context {
            node: Some(node()),
            ..Context::default()
        }
    }

    #[test]
    fn stats_from_json_and_bytes_agree() {
        let mut c = cx();
        c.direction = TrafficDirection::Inbound;
        let json = serde_json::json!({"disable_host_header_fallback": true,
            "metrics": [{"name": "requests_total", "tags_to_remove": ["source_principal"],
                         "dimensions": {"method": "request.method", "source_cluster": "downstream_peer.cluster_id"}}]});
        let a = stats(&mut c, STATS, &json, "f").expect("json");
        let bytes = proto::PluginConfig {
            disable_host_header_fallback: true,
            metrics: vec![proto::MetricConfig {
                name: "requests_total".into(),
                tags_to_remove: vec!["source_principal".into()],
                dimensions: [
                    ("method".to_owned(), "request.method".to_owned()),
                    (
                        "source_cluster".to_owned(),
                        "downstream_peer.cluster_id".to_owned(),
                    ),
                ]
                .into_iter()
                .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let b = stats(&mut c, STATS, &bytes.to_json(), "f").expect("bytes");
        assert_eq!(a, b);
        let s = a.get::<IstioStats>().expect("type");
        assert_eq!(s.reporter, Reporter::Destination);
        assert_eq!(s.local.workload_name, "productpage-v1");
        assert_eq!(s.local.app, "productpage");
        assert_eq!(s.local.canonical_name, "productpage");
        assert_eq!(s.overrides[0].metric, Some(IstioMetric::RequestsTotal));
        assert_eq!(s.overrides[0].dimensions[0].1, Dimension::RequestMethod);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
    }

    #[test]
    fn unsupported_stats_fields_are_refused_by_name() {
        let mut c = cx();
        let json = serde_json::json!({"definitions": [{"name": "x", "value": "1"}],
            "reporter": "SERVER_GATEWAY", "bogus": 1,
            "metrics": [{"dimensions": {"x": "request.size + 1"}}]});
        assert!(stats(&mut c, STATS, &json, "f").is_none());
        let text = format!("{:?}", c.problems);
        for needle in ["definitions", "reporter", "bogus", "request.size + 1"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }

    #[test]
    fn dimensions_cover_istios_rendered_expressions() {
        let c = cx();
        assert_eq!(
            dimension(&c, "node.metadata['CLUSTER_ID']"),
            Some(Dimension::Constant("Kubernetes".into()))
        );
        assert_eq!(
            dimension(&c, "upstream_peer.labels['app']"),
            Some(Dimension::Peer {
                downstream: false,
                field: PeerField::Label("app".into())
            })
        );
        assert_eq!(
            dimension(&c, "request.headers['X-Foo']"),
            Some(Dimension::RequestHeader("x-foo".into()))
        );
        assert_eq!(
            dimension(&c, "'lit'"),
            Some(Dimension::Constant("lit".into()))
        );
        assert_eq!(dimension(&c, "request.size"), None);
    }

    #[test]
    fn peer_metadata_encodes_the_local_workload() {
        let mut c = cx();
        let json = serde_json::json!({"downstream_discovery": [{"istio_headers": {}}, {"workload_discovery": {}}],
            "downstream_propagation": [{"istio_headers": {}}]});
        let e = peer_metadata(&mut c, PEER_METADATA, &json, "f").expect("config");
        let p = e.get::<PeerMetadata>().expect("type");
        assert!(p.downstream_discovery && p.downstream_propagation);
        assert!(!p.upstream_discovery && !p.upstream_propagation);
        assert!(p.id.starts_with("sidecar~"));
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&p.value)
            .expect("base64");
        let s = Struct::decode(bytes.as_slice()).expect("struct");
        let w = workload_of(Some(&s), None);
        assert_eq!(w.workload_name, "productpage-v1");
        assert_eq!(w.namespace, "default");
        assert_eq!(w.app, "productpage");
        assert_eq!(w.version, "v1");
        // Only Istio's own labels are sent without `additional_labels`.
        assert!(w.labels.iter().all(|(k, _)| k != "pod-template-hash"));
        // Deterministic.
        let again = peer_metadata(&mut c, PEER_METADATA, &json, "f").expect("config");
        assert_eq!(again, e);
    }

    #[test]
    fn baggage_discovery_is_refused() {
        let mut c = cx();
        let json = serde_json::json!({"downstream_discovery": [{"baggage": {}}]});
        assert!(peer_metadata(&mut c, PEER_METADATA, &json, "f").is_none());
        assert!(format!("{:?}", c.problems).contains("baggage"));
    }
}

//! YAML/JSON text into Envoy protos, through reflection over the descriptor set
//! that `envoy-types` ships, so the proto3 JSON mapping (including `Any` with
//! `@type`, durations as strings, enums by name) is the real one.

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_types.bin"));

/// The descriptor pool of Envoy's whole v3 API (plus xds, udpa, google types).
///
/// Decoded afresh on each call (about 40 ms) and freed with the last message
/// that uses it, rather than cached: alive it holds about 50 MB, which a
/// running proxy would otherwise keep for the rare config parse.
pub fn descriptor_pool() -> DescriptorPool {
    // The bytes are produced by envoy-types' own build and checked by its CI; a
    // failure here is a broken dependency, not bad input.
    #[allow(clippy::expect_used)]
    let mut pool = DescriptorPool::decode(DESCRIPTORS).expect("envoy-types descriptor set decodes");
    for package in TYPED_STRUCT_PACKAGES {
        // Two fields over a well-known type the set has: cannot fail.
        #[allow(clippy::expect_used)]
        pool.add_file_descriptor_proto(typed_struct_file(package))
            .expect("TypedStruct descriptor");
    }
    pool
}

/// The packages of Envoy's two `TypedStruct`s (same shape, two names).
const TYPED_STRUCT_PACKAGES: [&str; 2] = ["udpa.type.v1", "xds.type.v3"];

/// `message TypedStruct { string type_url = 1; google.protobuf.Struct value
/// = 2; }` in `package`. The descriptor set `envoy-types` ships leaves the
/// udpa and xds type packages out; without this a binary resource holding
/// a `TypedStruct` could not be read (or shown in `/config_dump`).
fn typed_struct_file(package: &str) -> prost_reflect::prost_types::FileDescriptorProto {
    use prost_reflect::prost_types::{
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto,
        field_descriptor_proto::{Label, Type},
    };
    let field = |name: &str, number: i32, ty: Type, type_name: Option<&str>| FieldDescriptorProto {
        name: Some(name.to_owned()),
        number: Some(number),
        label: Some(Label::Optional as i32),
        r#type: Some(ty as i32),
        type_name: type_name.map(str::to_owned),
        json_name: Some(if name == "type_url" { "typeUrl" } else { name }.to_owned()),
        ..Default::default()
    };
    FileDescriptorProto {
        name: Some(format!("{}/typed_struct.proto", package.replace('.', "/"))),
        package: Some(package.to_owned()),
        dependency: vec!["google/protobuf/struct.proto".to_owned()],
        message_type: vec![DescriptorProto {
            name: Some("TypedStruct".to_owned()),
            field: vec![
                field("type_url", 1, Type::String, None),
                field("value", 2, Type::Message, Some(".google.protobuf.Struct")),
            ],
            ..Default::default()
        }],
        syntax: Some("proto3".to_owned()),
        ..Default::default()
    }
}

/// Reads binary resources' `TypedStruct`s as the typed `Any`s they stand
/// for, as [`parse_message`] does for text. Keeps the descriptor pool it
/// needs for as long as it lives: one per xDS response, so a response of
/// many resources decodes the pool once, and only if one of them holds a
/// `TypedStruct`.
#[derive(Default)]
pub struct TypedStructs {
    pool: Option<DescriptorPool>,
}

impl std::fmt::Debug for TypedStructs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedStructs")
            .field("pool", &self.pool.is_some())
            .finish()
    }
}

impl TypedStructs {
    /// `any` with every `TypedStruct` inside it (at any depth) whose type
    /// the pool knows replaced by the typed `Any` it stands for; `None`
    /// when it holds none (the common case, found without decoding: a
    /// nested `Any`'s type URL is in the bytes as written).
    pub fn unwrap(
        &mut self,
        any: &envoy_types::pb::google::protobuf::Any,
    ) -> Result<Option<envoy_types::pb::google::protobuf::Any>, ParseError> {
        let needle = b"TypedStruct";
        if !any.value.windows(needle.len()).any(|w| w == needle) {
            return Ok(None);
        }
        let pool = self.pool.get_or_insert_with(descriptor_pool);
        unwrap_in(pool, any)
    }
}

fn unwrap_in(
    pool: &DescriptorPool,
    any: &envoy_types::pb::google::protobuf::Any,
) -> Result<Option<envoy_types::pb::google::protobuf::Any>, ParseError> {
    let full_name = any.type_url.rsplit('/').next().unwrap_or_default();
    let problem = |message: String| ParseError {
        path: String::new(),
        message,
    };
    let desc = pool
        .get_message_by_name(full_name)
        .ok_or_else(|| problem(format!("unknown message type {full_name}")))?;
    let msg = DynamicMessage::decode(desc, any.value.as_slice())
        .map_err(|e| problem(format!("cannot decode {full_name}: {e}")))?;
    let opts = prost_reflect::SerializeOptions::new().use_proto_field_name(true);
    // A nested `Any` of a type the pool lacks (Istio's own extensions)
    // cannot be rendered; the resource is then judged as it came, where the
    // translator names the wrapped type it does not take.
    let Ok(value) = msg.serialize_with_options(serde_json::value::Serializer, &opts) else {
        return Ok(None);
    };
    let unwrapped = parse_value_in(pool, value, full_name, true)?;
    Ok(Some(envoy_types::pb::google::protobuf::Any {
        type_url: any.type_url.clone(),
        value: prost::Message::encode_to_vec(&unwrapped),
    }))
}

/// Parses `text` (YAML or JSON; JSON is YAML) as a message of `full_name`.
///
/// Unknown fields are refused: a typo in a config must not silently become a
/// default. Errors carry the path of the offending field, e.g.
/// `static_resources.listeners[0].address.socket_address.port_value`.
pub fn parse_message(text: &str, full_name: &str) -> Result<DynamicMessage, ParseError> {
    let value: serde_json::Value = serde_yaml::from_str(text).map_err(|e| ParseError {
        path: String::new(),
        message: e.to_string(),
    })?;
    parse_value(value, full_name)
}

/// Like [`parse_message`], but fields the proto does not know are skipped
/// (Envoy's `--allow-unknown-static-fields`).
pub fn parse_message_lenient(text: &str, full_name: &str) -> Result<DynamicMessage, ParseError> {
    let value: serde_json::Value = serde_yaml::from_str(text).map_err(|e| ParseError {
        path: String::new(),
        message: e.to_string(),
    })?;
    parse_value_with(value, full_name, false)
}

/// Like [`parse_message`], from an already parsed JSON value.
pub fn parse_value(
    value: serde_json::Value,
    full_name: &str,
) -> Result<DynamicMessage, ParseError> {
    parse_value_with(value, full_name, true)
}

fn parse_value_with(
    value: serde_json::Value,
    full_name: &str,
    deny_unknown: bool,
) -> Result<DynamicMessage, ParseError> {
    parse_value_in(&descriptor_pool(), value, full_name, deny_unknown)
}

fn parse_value_in(
    pool: &DescriptorPool,
    mut value: serde_json::Value,
    full_name: &str,
    deny_unknown: bool,
) -> Result<DynamicMessage, ParseError> {
    unwrap_typed_structs(pool, &mut value, &mut String::new())?;
    let desc: MessageDescriptor =
        pool.get_message_by_name(full_name)
            .ok_or_else(|| ParseError {
                path: String::new(),
                message: format!("unknown message type {full_name}"),
            })?;
    let opts = DeserializeOptions::new().deny_unknown_fields(deny_unknown);
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    DynamicMessage::deserialize_with_options(desc, de, &opts).map_err(|e| ParseError {
        path: track.path().to_string(),
        message: e.to_string(),
    })
}

/// The two names of Envoy's `TypedStruct`: an `Any` whose payload is a
/// message named by `type_url` and written as a JSON-like `Struct` in
/// `value`. Istio renders `envoy.bootstrap.internal_listener` this way.
const TYPED_STRUCTS: [&str; 2] = ["udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"];

/// Rewrites every `TypedStruct` in `value` into the `Any` it stands for:
/// `{"@type": T, "type_url": U, "value": {...}}` becomes `{"@type": U, ...}`.
///
/// Envoy does the same when it loads an extension (the struct is converted
/// to the named message with the proto3 JSON mapping), so the named message
/// is then parsed, and its fields checked, exactly like a typed `Any`. A
/// generic rewrite keeps every extension's translation unaware of the
/// wrapping.
fn unwrap_typed_structs(
    pool: &DescriptorPool,
    value: &mut serde_json::Value,
    path: &mut String,
) -> Result<(), ParseError> {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let is_typed_struct = map
                .get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| TYPED_STRUCTS.contains(&t.rsplit('/').next().unwrap_or(t)));
            // A type the pool lacks (one of Istio's own extensions) stays
            // wrapped: it cannot be parsed as a message, and the
            // translator judges it by the inner type URL.
            let inner_known = map
                .get("type_url")
                .or_else(|| map.get("typeUrl"))
                .and_then(Value::as_str)
                .is_none_or(|u| {
                    pool.get_message_by_name(u.rsplit('/').next().unwrap_or(u))
                        .is_some()
                });
            // An `Any` written directly (`{"@type": U, fields...}`) of a type
            // the pool lacks: Istio's config dumps show `stats.PluginConfig`
            // and its other extensions this way, since istio-proxy knows
            // them. Read as the `TypedStruct` it is equivalent to, so the
            // translator judges it by `U` (taking it, or refusing it by
            // name) instead of the whole file failing to parse.
            let bare_unknown = !is_typed_struct
                && map.get("@type").and_then(Value::as_str).is_some_and(|t| {
                    pool.get_message_by_name(t.rsplit('/').next().unwrap_or(t))
                        .is_none()
                });
            if bare_unknown {
                let type_url = map.remove("@type").unwrap_or_default();
                let fields = std::mem::take(map);
                map.insert(
                    "@type".to_owned(),
                    Value::String(format!("type.googleapis.com/{}", TYPED_STRUCTS[1])),
                );
                map.insert("type_url".to_owned(), type_url);
                map.insert("value".to_owned(), Value::Object(fields));
            }
            if is_typed_struct && inner_known {
                let invalid = |message: &str| ParseError {
                    path: path.clone(),
                    message: message.to_owned(),
                };
                let type_url = match map.remove("type_url").or_else(|| map.remove("typeUrl")) {
                    Some(Value::String(u)) if !u.is_empty() => u,
                    _ => return Err(invalid("TypedStruct needs a type_url")),
                };
                let inner = match map.remove("value") {
                    Some(Value::Object(inner)) => inner,
                    None | Some(Value::Null) => serde_json::Map::new(),
                    Some(_) => return Err(invalid("TypedStruct value must be an object")),
                };
                map.remove("@type");
                if let Some(extra) = map.keys().next() {
                    return Err(invalid(&format!("TypedStruct has unknown field '{extra}'")));
                }
                if inner.contains_key("@type") {
                    return Err(invalid("TypedStruct value must not have an @type"));
                }
                map.insert("@type".to_owned(), Value::String(type_url));
                map.extend(inner);
            }
            for (key, v) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                unwrap_typed_structs(pool, v, path)?;
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                unwrap_typed_structs(pool, v, path)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Parses an Envoy v3 bootstrap (YAML or JSON) into the `envoy-types` proto.
pub fn parse_bootstrap(text: &str) -> Result<Bootstrap, ParseError> {
    let msg = parse_message(text, "envoy.config.bootstrap.v3.Bootstrap")?;
    msg.transcode_to::<Bootstrap>().map_err(|e| ParseError {
        path: String::new(),
        message: e.to_string(),
    })
}

/// A syntax or schema error: the text is not a valid instance of the proto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Dotted path of the field where parsing failed; empty for the document.
    pub path: String,
    /// What was wrong there.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() || self.path == "." {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_any_typed_config_and_durations() {
        let yaml = r#"
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: t
          cluster: c
  clusters:
  - name: c
    connect_timeout: 0.25s
    type: STATIC
"#;
        let b = parse_bootstrap(yaml).expect("parses");
        let sr = b.static_resources.expect("static");
        assert_eq!(sr.listeners[0].name, "l");
        let any = sr.listeners[0].filter_chains[0].filters[0]
            .config_type
            .clone();
        assert!(format!("{any:?}").contains("tcp_proxy.v3.TcpProxy"));
        let ct = sr.clusters[0].connect_timeout.expect("timeout");
        assert_eq!((ct.seconds, ct.nanos), (0, 250_000_000));
    }

    #[test]
    fn typed_struct_becomes_the_message_it_names() {
        for wrapper in TYPED_STRUCTS {
            let json = format!(
                r#"{{"bootstrap_extensions": [{{"name": "envoy.bootstrap.internal_listener",
                  "typed_config": {{"@type": "type.googleapis.com/{wrapper}",
                    "type_url": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener",
                    "value": {{"buffer_size_kb": 64}}}}}}]}}"#
            );
            let b = parse_bootstrap(&json).expect("parses");
            let any = b.bootstrap_extensions[0].typed_config.clone().expect("any");
            assert_eq!(
                any.type_url,
                "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"
            );
            // Field 1 (buffer_size_kb, a UInt32Value) holding 64.
            assert_eq!(any.value, vec![0x0a, 0x02, 0x08, 64]);
        }
    }

    #[test]
    fn typed_struct_fields_are_checked_by_the_named_message() {
        let json = r#"{"bootstrap_extensions": [{"name": "x", "typed_config": {
            "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
            "type_url": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener",
            "value": {"buffer_size": 64}}}]}"#;
        let err = parse_bootstrap(json).expect_err("unknown field refused");
        assert!(err.to_string().contains("buffer_size"), "{err}");
        let json = r#"{"bootstrap_extensions": [{"name": "x", "typed_config": {
            "@type": "type.googleapis.com/xds.type.v3.TypedStruct", "value": {}}}]}"#;
        let err = parse_bootstrap(json).expect_err("no type_url");
        assert_eq!(err.path, "bootstrap_extensions[0].typed_config", "{err}");
    }

    #[test]
    fn any_of_a_type_the_pool_lacks_reads_as_its_typed_struct() {
        let direct = r#"{"bootstrap_extensions": [{"name": "x", "typed_config": {
            "@type": "type.googleapis.com/stats.PluginConfig",
            "disable_host_header_fallback": true}}]}"#;
        let wrapped = r#"{"bootstrap_extensions": [{"name": "x", "typed_config": {
            "@type": "type.googleapis.com/xds.type.v3.TypedStruct",
            "type_url": "type.googleapis.com/stats.PluginConfig",
            "value": {"disable_host_header_fallback": true}}}]}"#;
        let a = parse_bootstrap(direct).expect("direct form parses");
        let b = parse_bootstrap(wrapped).expect("wrapped form parses");
        let any = a.bootstrap_extensions[0].typed_config.clone().expect("any");
        assert!(any.type_url.ends_with("xds.type.v3.TypedStruct"), "{any:?}");
        assert_eq!(a, b, "the two spellings are one config");
        // A known type keeps strict parsing: a typo is still refused.
        let typo = r#"{"bootstrap_extensions": [{"name": "x", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener",
            "buffer_size": 64}}]}"#;
        let err = parse_bootstrap(typo).expect_err("unknown field refused");
        assert!(err.to_string().contains("buffer_size"), "{err}");
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let yaml = "static_resources:\n  listeners:\n  - name: l\n    adress: {}\n";
        let err = parse_bootstrap(yaml).expect_err("typo refused");
        assert!(err.path.contains("listeners"), "{err}");
        assert!(err.to_string().contains("adress"), "{err}");
    }
}

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
    DescriptorPool::decode(DESCRIPTORS).expect("envoy-types descriptor set decodes")
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

/// Like [`parse_message`], from an already parsed JSON value.
pub fn parse_value(
    value: serde_json::Value,
    full_name: &str,
) -> Result<DynamicMessage, ParseError> {
    let desc: MessageDescriptor = descriptor_pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| ParseError {
            path: String::new(),
            message: format!("unknown message type {full_name}"),
        })?;
    let opts = DeserializeOptions::new().deny_unknown_fields(true);
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    DynamicMessage::deserialize_with_options(desc, de, &opts).map_err(|e| ParseError {
        path: track.path().to_string(),
        message: e.to_string(),
    })
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
    fn unknown_field_is_named_with_its_path() {
        let yaml = "static_resources:\n  listeners:\n  - name: l\n    adress: {}\n";
        let err = parse_bootstrap(yaml).expect_err("typo refused");
        assert!(err.path.contains("listeners"), "{err}");
        assert!(err.to_string().contains("adress"), "{err}");
    }
}

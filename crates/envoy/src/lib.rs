//! Strait's Envoy v3 front end.
//!
//! Owns: parsing Envoy bootstrap YAML/JSON into the real `envoy-types` protos
//! (proto3 JSON mapping, `Any` by `@type`), and translating those protos (and
//! xDS resources) into `strait-model` types that the rest of Strait compiles.
//! Every proto field is destructured: a field that would change behaviour and
//! is not supported is an error naming its path. Depends on `strait-model`
//! only among Strait's crates, and does no I/O beyond the bytes handed to it.

pub mod dump;
pub mod overrides;
pub mod parse;
pub mod pbjson;
pub mod redact;
pub mod translate;

pub use overrides::BootstrapOverrides;
pub use parse::{ParseError, descriptor_pool, parse_bootstrap};
/// The model this front end translates into, re-exported so front-end code
/// and its callers can name both with one import.
pub use strait_model as model;
pub use translate::{
    Parsers, translate_bootstrap, translate_bootstrap_with, translate_cluster,
    translate_cluster_load_assignment, translate_listener, translate_listener_for,
    translate_listener_in, translate_listener_with, translate_route_config,
    translate_route_config_with, translate_secret,
};

/// Everything that can be wrong with a config. `strait check` prints all of
/// them, so each one names the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not YAML/JSON, or not an instance of the proto (unknown
    /// field, wrong type, bad enum name).
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// A well-formed proto that Envoy itself would refuse (duplicate names, a
    /// STATIC cluster with a host name, a status code out of range, ...).
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// A field Envoy understands but Strait does not implement (yet). Refused
    /// rather than ignored: silently dropping it would change behaviour.
    #[error("{path}: not supported: {what}")]
    Unsupported { path: String, what: String },
}

impl From<model::ModelError> for ConfigError {
    fn from(e: model::ModelError) -> Self {
        match e {
            model::ModelError::Invalid { path, message } => ConfigError::Invalid { path, message },
            other => ConfigError::Invalid {
                path: String::new(),
                message: other.to_string(),
            },
        }
    }
}

impl ConfigError {
    /// The dotted field path the error is about; empty for the whole document.
    pub fn path(&self) -> &str {
        match self {
            Self::Parse(e) => &e.path,
            Self::Invalid { path, .. } | Self::Unsupported { path, .. } => path,
        }
    }
}

/// Parses a bootstrap (YAML or JSON) and translates it into the model.
///
/// Collects every translation problem rather than stopping at the first, so a
/// user fixes a file in one round. A parse error is necessarily alone: nothing
/// after it can be read.
pub fn load(text: &str) -> Result<model::Config, Vec<ConfigError>> {
    let bootstrap = parse_bootstrap(text).map_err(|e| vec![ConfigError::Parse(e)])?;
    translate_bootstrap(&bootstrap)
}

/// The node's protobuf as the front end encoded it (see [`model::Node`]),
/// for the clients that send it to a control plane or a metrics service.
pub fn node_proto(node: &model::Node) -> envoy_types::pb::envoy::config::core::v3::Node {
    use prost::Message as _;
    // Invariant: `encoded` was made by `encode_to_vec` of this message type;
    // a node built in code without it is sent with its id and cluster only.
    envoy_types::pb::envoy::config::core::v3::Node::decode(node.encoded.as_slice()).unwrap_or_else(
        |_| envoy_types::pb::envoy::config::core::v3::Node {
            id: node.id.clone(),
            cluster: node.cluster.clone(),
            ..Default::default()
        },
    )
}

//! Strait's validated config model and its translation from Envoy's v3 API.
//!
//! Owns: parsing Envoy bootstrap YAML/JSON into the real `envoy-types` protos
//! (proto3 JSON mapping, `Any` by `@type`), and translating those protos into
//! [`model`] types that the rest of Strait compiles. Every proto field is
//! destructured: a field that would change behaviour and is not supported is an
//! error naming its path. Must not depend on any other Strait crate, and does no
//! I/O beyond the bytes handed to it.

pub mod model;
pub mod parse;

pub use parse::{descriptor_pool, parse_bootstrap};

//! Envoy's dynamic metadata in the request's [`FilterState`]: the type is
//! the access log's ([`DynamicMetadata`]), which reads it at the end of the
//! stream.

pub use strait_access_log::DynamicMetadata;

use crate::chain::FilterState;

/// The request's dynamic metadata, if any filter published some.
pub fn dynamic_metadata(state: &FilterState) -> Option<&DynamicMetadata> {
    state.get::<DynamicMetadata>()
}

//! Envoy's dynamic metadata in the request's [`FilterState`]: the type is
//! the access log's ([`DynamicMetadata`]), which reads it at the end of the
//! stream.

pub use strait_access_log::DynamicMetadata;

use crate::chain::FilterState;

/// The request's dynamic metadata, if any filter published some.
pub fn dynamic_metadata(state: &FilterState) -> Option<&DynamicMetadata> {
    state.get::<DynamicMetadata>()
}

/// The request's dynamic metadata for writing, created on first use.
pub fn dynamic_metadata_mut(state: &mut FilterState) -> &mut DynamicMetadata {
    state.get_or_insert_default::<DynamicMetadata>()
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;

    #[test]
    fn nested_paths_and_namespaces() {
        let mut state = FilterState::new();
        assert!(dynamic_metadata(&state).is_none());
        let md = dynamic_metadata_mut(&mut state);
        md.set(
            "envoy.filters.http.jwt_authn",
            "payload",
            json!({"iss": "https://issuer", "groups": ["a"], "nested": {"k": "v"}}),
        );
        md.set("envoy.filters.http.jwt_authn", "other", json!(1));
        let md = dynamic_metadata(&state).expect("written");
        let ns = "envoy.filters.http.jwt_authn";
        assert_eq!(
            md.get(ns, &["payload", "iss"]),
            Some(&json!("https://issuer"))
        );
        assert_eq!(md.get(ns, &["payload", "nested", "k"]), Some(&json!("v")));
        assert_eq!(md.get(ns, &["payload", "missing"]), None);
        assert_eq!(md.get(ns, &["other", "deeper"]), None);
        assert_eq!(md.get(ns, &[]), None);
        assert_eq!(md.get("absent", &["payload"]), None);
        assert_eq!(md.namespace(ns).map(Map::len), Some(2));
        assert_eq!(md.iter().count(), 1);
    }
}

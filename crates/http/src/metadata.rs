//! Envoy's dynamic metadata: values a filter publishes for the filters after
//! it, the router and (later) access logs, by namespace (usually the
//! publishing filter's name). JWT authentication writes the verified
//! payload here and RBAC's `metadata` matchers read it; RBAC's shadow rules
//! write their verdict here.
//!
//! Kept in the request's [`FilterState`], allocated on the first write, so
//! a request whose filters publish nothing pays nothing.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::chain::FilterState;

/// One request's dynamic metadata: a struct per namespace, as Envoy's
/// `map<string, google.protobuf.Struct>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DynamicMetadata(BTreeMap<String, Map<String, Value>>);

impl DynamicMetadata {
    /// The struct published under `namespace`.
    pub fn namespace(&self, namespace: &str) -> Option<&Map<String, Value>> {
        self.0.get(namespace)
    }

    /// The value at `path` (keys into nested structs) under `namespace`,
    /// as Envoy's `MetadataMatcher` walks it. An empty path names nothing.
    pub fn get(&self, namespace: &str, path: &[&str]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut value = self.namespace(namespace)?.get(*first)?;
        for key in rest {
            value = value.as_object()?.get(*key)?;
        }
        Some(value)
    }

    /// Sets `key` under `namespace`, replacing what was there (Envoy merges
    /// a filter's `setDynamicMetadata` into the namespace key by key).
    pub fn set(&mut self, namespace: &str, key: impl Into<String>, value: Value) {
        self.0
            .entry(namespace.to_owned())
            .or_default()
            .insert(key.into(), value);
    }

    /// Every namespace and its struct, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Map<String, Value>)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

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
    use serde_json::json;

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

//! Envoy's dynamic metadata: values a filter publishes for the filters after
//! it, the router and (later) access logs, by namespace (usually the
//! publishing filter's name). JWT authentication writes the verified
//! payload here and RBAC's `metadata` matchers read it; RBAC's shadow rules
//! write their verdict here.
//!
//! `strait-http` keeps it in the request's filter state, allocated on the
//! first write, so a request whose filters publish nothing pays nothing;
//! access logs read it (`%DYNAMIC_METADATA(...)%`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

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

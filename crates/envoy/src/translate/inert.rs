//! The short, explicit list of extensions Strait accepts without running
//! them, each with the reason that is safe. Everything else Strait does not
//! implement is refused with its type URL (Envoy, too, refuses a typed
//! config it has no factory for), unless the config marks it optional.
//!
//! Istio wraps many of its extensions in a `TypedStruct` (`udpa.type.v1` or
//! `xds.type.v3`): the inner `type_url` names the extension and `value`
//! holds its config as a `Struct`. Both are unwrapped here.

use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use prost::Message;

use super::type_name;

/// Where an extension may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// An entry of an HCM's `http_filters`.
    HttpFilter,
    /// A non-terminal network filter of a filter chain.
    NetworkFilter,
    /// A cluster's upstream network `filters`.
    ClusterFilter,
    /// An `access_log` entry (listener, HCM, TCP proxy).
    AccessLog,
}

/// One extension accepted without effect.
#[derive(Debug, Clone, Copy)]
pub struct Inert {
    /// The message type (`@type` without `type.googleapis.com/`), or, for
    /// Istio's built-in Wasm plugins, the null-VM plugin name.
    pub type_name: &'static str,
    pub slots: &'static [Slot],
    /// Why accepting it without running it cannot change traffic.
    pub why: &'static str,
}

use Slot::{HttpFilter, NetworkFilter};

/// The list. `docs/CONFIG.md` repeats it for users.
pub const INERT_EXTENSIONS: &[Inert] = &[
    Inert {
        type_name: "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
        slots: &[HttpFilter],
        why: "counts gRPC messages and statuses into stats; requests pass unchanged",
    },
    Inert {
        type_name: "io.istio.network.authn.Config",
        slots: &[NetworkFilter],
        why: "istio_authn (network, Istio >= 1.18): records the mTLS peer identity in filter \
              state; Strait's RBAC (`authenticated`) reads the connection's peer certificate \
              itself, so nothing depends on the record; it never closes a connection",
    },
];

const TYPED_STRUCTS: [&str; 2] = ["udpa.type.v1.TypedStruct", "xds.type.v3.TypedStruct"];
const WASM_FILTERS: [&str; 2] = [
    "envoy.extensions.filters.http.wasm.v3.Wasm",
    "envoy.extensions.filters.network.wasm.v3.Wasm",
];

/// `udpa.type.v1.TypedStruct` / `xds.type.v3.TypedStruct`: not in the
/// descriptor set `envoy-types` ships, so declared here (two fields).
#[derive(Clone, PartialEq, Message)]
struct TypedStruct {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Struct>,
}

/// The extension `any` configures as `slot`, if it is on the list.
pub(super) fn inert(any: &Any, slot: Slot) -> Option<&'static Inert> {
    let name = effective_name(any)?;
    INERT_EXTENSIONS
        .iter()
        .find(|i| i.type_name == name && i.slots.contains(&slot))
}

/// The type URL an `Any` stands for, seen through a `TypedStruct`; for use
/// in error messages.
pub(super) fn effective_type_url(any: &Any) -> String {
    if TYPED_STRUCTS.contains(&type_name(&any.type_url))
        && let Ok(ts) = TypedStruct::decode(any.value.as_slice())
    {
        return ts.type_url;
    }
    any.type_url.clone()
}

/// A `TypedStruct`'s inner type URL and its `value` as JSON (the proto3
/// JSON form of the `Struct`); `None` for any other `Any`.
pub(super) fn typed_struct(any: &Any) -> Option<(String, serde_json::Value)> {
    if !TYPED_STRUCTS.contains(&type_name(&any.type_url)) {
        return None;
    }
    let ts = TypedStruct::decode(any.value.as_slice()).ok()?;
    let value = ts
        .value
        .map_or(serde_json::Value::Object(Default::default()), |s| {
            serde_json::Value::Object(crate::pbjson::struct_to_json(&s))
        });
    Some((ts.type_url, value))
}

/// The name to look up: the type's name, the `TypedStruct`'s inner type,
/// or for a Wasm filter on Istio's null VM, its built-in plugin.
fn effective_name(any: &Any) -> Option<String> {
    let outer = type_name(&any.type_url);
    let (inner, config) = if TYPED_STRUCTS.contains(&outer) {
        let ts = TypedStruct::decode(any.value.as_slice()).ok()?;
        (type_name(&ts.type_url).to_owned(), ts.value)
    } else {
        (outer.to_owned(), None)
    };
    if !WASM_FILTERS.contains(&inner.as_str()) {
        return Some(inner);
    }
    // A Wasm filter is inert only when it runs one of Istio's compiled-in
    // plugins on the null VM; any other module could do anything.
    let config = match config {
        Some(s) => s,
        None => wasm_as_struct(any)?,
    };
    null_vm(&config).map(|(name, _)| name)
}

/// A Wasm filter (typed, or in a `TypedStruct`) running one of Istio's
/// compiled-in plugins on the null VM: the plugin's name and its
/// `configuration` when that is a `google.protobuf.StringValue` (the JSON
/// text Istio's plugins read).
pub(super) fn null_vm_plugin(any: &Any) -> Option<(String, Option<String>)> {
    let outer = type_name(&any.type_url);
    let config = if TYPED_STRUCTS.contains(&outer) {
        let ts = TypedStruct::decode(any.value.as_slice()).ok()?;
        if !WASM_FILTERS.contains(&type_name(&ts.type_url)) {
            return None;
        }
        ts.value?
    } else if WASM_FILTERS.contains(&outer) {
        wasm_as_struct(any)?
    } else {
        return None;
    };
    null_vm(&config)
}

/// The null-VM plugin a Wasm config's `Struct` runs, and its string
/// `configuration`.
fn null_vm(config: &Struct) -> Option<(String, Option<String>)> {
    let plugin = field(config, &["config"])?;
    let vm = field(plugin, &["vm_config", "vmConfig"])?;
    let runtime = text(vm, &["runtime"])?;
    let local = field(field(vm, &["code"])?, &["local"])?;
    let plugin_name = text(local, &["inline_string", "inlineString"])?;
    let configuration = field(plugin, &["configuration"])
        .filter(|c| {
            text(c, &["@type"]).is_some_and(|t| type_name(t) == "google.protobuf.StringValue")
        })
        .and_then(|c| text(c, &["value"]))
        .map(str::to_owned);
    (runtime == "envoy.wasm.runtime.null").then(|| (plugin_name.to_owned(), configuration))
}

/// A directly typed Wasm config, rendered as the same `Struct` shape a
/// `TypedStruct` carries (only the fields read above).
fn wasm_as_struct(any: &Any) -> Option<Struct> {
    use envoy_types::pb::envoy::config::core::v3::{
        AsyncDataSource, DataSource, async_data_source::Specifier, data_source,
    };
    use envoy_types::pb::envoy::extensions::{
        filters::http::wasm::v3::Wasm as HttpWasm, filters::network::wasm::v3::Wasm as NetWasm,
        wasm::v3::PluginConfig,
    };
    let config: PluginConfig = if type_name(&any.type_url) == WASM_FILTERS[0] {
        HttpWasm::decode(any.value.as_slice()).ok()?.config?
    } else {
        NetWasm::decode(any.value.as_slice()).ok()?.config?
    };
    let configuration = config
        .configuration
        .as_ref()
        .filter(|c| type_name(&c.type_url) == "google.protobuf.StringValue")
        .and_then(|c| {
            envoy_types::pb::google::protobuf::StringValue::decode(c.value.as_slice()).ok()
        })
        .map(|v| v.value);
    let vm = match config.vm {
        Some(envoy_types::pb::envoy::extensions::wasm::v3::plugin_config::Vm::VmConfig(vm)) => vm,
        _ => return None,
    };
    let inline = match vm.code {
        Some(AsyncDataSource {
            specifier:
                Some(Specifier::Local(DataSource {
                    specifier: Some(data_source::Specifier::InlineString(s)),
                    ..
                })),
            ..
        }) => s,
        _ => return None,
    };
    let s = |v: String| Value {
        kind: Some(Kind::StringValue(v)),
    };
    let obj = |pairs: Vec<(&str, Value)>| Value {
        kind: Some(Kind::StructValue(Struct {
            fields: pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })),
    };
    let vm_config = obj(vec![
        ("runtime", s(vm.runtime)),
        (
            "code",
            obj(vec![("local", obj(vec![("inline_string", s(inline))]))]),
        ),
    ]);
    let mut plugin = vec![("vm_config", vm_config)];
    if let Some(c) = configuration {
        plugin.push((
            "configuration",
            obj(vec![
                (
                    "@type",
                    s("type.googleapis.com/google.protobuf.StringValue".into()),
                ),
                ("value", s(c)),
            ]),
        ));
    }
    Some(Struct {
        fields: [("config".to_owned(), obj(plugin))].into_iter().collect(),
    })
}

/// The struct under the first of `keys` present in `s`.
fn field<'a>(s: &'a Struct, keys: &[&str]) -> Option<&'a Struct> {
    match keys.iter().find_map(|k| s.fields.get(*k))?.kind.as_ref()? {
        Kind::StructValue(inner) => Some(inner),
        _ => None,
    }
}

/// The string under the first of `keys` present in `s`.
fn text<'a>(s: &'a Struct, keys: &[&str]) -> Option<&'a str> {
    match keys.iter().find_map(|k| s.fields.get(*k))?.kind.as_ref()? {
        Kind::StringValue(v) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed_struct(inner: &str, value: Option<Struct>) -> Any {
        Any {
            type_url: "type.googleapis.com/udpa.type.v1.TypedStruct".into(),
            value: TypedStruct {
                type_url: format!("type.googleapis.com/{inner}"),
                value,
            }
            .encode_to_vec(),
        }
    }

    fn null_vm(plugin: &str, runtime: &str) -> Struct {
        let s = |v: &str| Value {
            kind: Some(Kind::StringValue(v.into())),
        };
        let obj = |pairs: Vec<(&str, Value)>| Value {
            kind: Some(Kind::StructValue(Struct {
                fields: pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            })),
        };
        let vm = obj(vec![
            ("runtime", s(runtime)),
            (
                "code",
                obj(vec![("local", obj(vec![("inline_string", s(plugin))]))]),
            ),
        ]);
        Struct {
            fields: [("config".to_owned(), obj(vec![("vm_config", vm)]))]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn typed_structs_are_judged_by_their_inner_type() {
        let authn = typed_struct("io.istio.network.authn.Config", None);
        assert!(inert(&authn, Slot::NetworkFilter).is_some());
        assert!(inert(&authn, Slot::HttpFilter).is_none(), "wrong slot");
        assert_eq!(
            effective_type_url(&authn),
            "type.googleapis.com/io.istio.network.authn.Config"
        );
        // `istio.alpn` runs now (`translate::istio::alpn`): no longer inert.
        let alpn = typed_struct(
            "istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig",
            None,
        );
        assert!(inert(&alpn, Slot::HttpFilter).is_none());
    }

    #[test]
    fn only_istio_builtin_wasm_plugins_on_the_null_vm_are_recognised() {
        // `envoy.wasm.stats` is run now (`translate::istio`), no longer
        // inert; what is checked is the null-VM recognition both use.
        let wasm = "envoy.extensions.filters.http.wasm.v3.Wasm";
        let stats = typed_struct(
            wasm,
            Some(null_vm("envoy.wasm.stats", "envoy.wasm.runtime.null")),
        );
        assert_eq!(
            null_vm_plugin(&stats).map(|(n, _)| n).as_deref(),
            Some("envoy.wasm.stats")
        );
        assert!(inert(&stats, Slot::HttpFilter).is_none(), "run, not inert");
        let v8 = typed_struct(
            wasm,
            Some(null_vm("envoy.wasm.stats", "envoy.wasm.runtime.v8")),
        );
        assert!(null_vm_plugin(&v8).is_none());
        assert!(inert(&v8, Slot::HttpFilter).is_none());
        let other = typed_struct(wasm, Some(null_vm("my.plugin", "envoy.wasm.runtime.null")));
        assert!(inert(&other, Slot::HttpFilter).is_none());
    }

    #[test]
    fn policy_filters_are_not_on_the_list() {
        for t in [
            "envoy.extensions.filters.http.rbac.v3.RBAC",
            "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "envoy.extensions.filters.network.rbac.v3.RBAC",
        ] {
            assert!(INERT_EXTENSIONS.iter().all(|i| i.type_name != t), "{t}");
        }
    }
}

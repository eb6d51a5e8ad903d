//! Envoy v3 protos into [`crate::model`].
//!
//! Every proto struct is destructured without `..`, so a field added by a new
//! `envoy-types` release breaks the build here instead of being silently
//! ignored. Each field is either translated, refused (`Unsupported` with its
//! path) when set, or ignored with a comment saying why ignoring it cannot
//! change behaviour. Translation never stops at the first problem: it records
//! it in a [`Context`] and carries on, so `strait check` shows them all.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use envoy_types::pb::{
    envoy::config::{
        bootstrap::v3::Bootstrap,
        cluster::v3::Cluster,
        core::v3::{
            Address, SocketAddress, address,
            socket_address::{PortSpecifier, Protocol},
        },
        listener::v3::Listener,
        route::v3::RouteConfiguration,
    },
    google::protobuf::{Any, BoolValue, Duration as ProtoDuration, UInt32Value},
};

pub use dynamic::translate_cluster_load_assignment;
pub use secret::translate_secret;

use crate::{
    ConfigError, model,
    model::extension::{ExtensionParsers, NoParsers},
};

// Declared before the submodules: `macro_rules!` scope is textual.
/// `reject_set!(cx, path; field_a, field_b)`: each named local (bound by an
/// exhaustive destructuring) that is set to a non-default value is reported as
/// `Unsupported` at `path.field`.
macro_rules! reject_set {
    ($cx:expr, $path:expr; $($field:ident),+ $(,)?) => {
        $( $cx.reject_set($path, stringify!($field), &$field); )+
    };
}

// The file logger's deprecated format shortcuts are translated too.
#[allow(deprecated)]
mod access_log;

// Deprecated proto fields still change behaviour when set, so they are
// destructured and judged like any other.
#[allow(deprecated)]
mod bootstrap;
#[allow(deprecated)]
mod cluster;
#[allow(deprecated)]
mod compressor;
#[allow(deprecated)]
mod dynamic;
#[allow(deprecated)]
mod ext_authz;
#[allow(deprecated)]
mod filter;
#[allow(deprecated)]
mod format;
// `common_config` is deprecated in favour of top-level twins; both are read.
#[allow(deprecated)]
mod http;
pub mod inert;
mod istio;
#[allow(deprecated)]
mod jwt;
#[allow(deprecated)]
mod listener;
mod local_reply;
#[allow(deprecated)]
mod policy;
#[allow(deprecated)]
mod ratelimit;
mod rbac;
#[allow(deprecated)]
mod remote_log;
#[allow(deprecated)]
mod route;
#[allow(deprecated)]
mod secret;
mod telemetry;
#[cfg(test)]
pub(crate) mod tests;
#[allow(deprecated)]
mod tls;

/// Problems found so far, and the cluster names that must exist once every
/// cluster is known (checked by [`translate_bootstrap`]).
pub(crate) struct Context {
    /// Parsers registered for extension type URLs this front end has no
    /// schema of (an embedding program's filters).
    parsers: Arc<dyn ExtensionParsers>,
    problems: Vec<ConfigError>,
    required_clusters: Vec<ClusterRef>,
    /// Static secrets (`SdsSecretConfig` without `sds_config`) named so far.
    required_secrets: Vec<ClusterRef>,
    /// The bootstrap's `node.cluster` (after `--service-cluster`), for the
    /// `source_cluster` rate limit action; empty for resources translated
    /// without a bootstrap.
    node_cluster: String,
    /// The bootstrap's `node`, for the filters that read its metadata
    /// (Istio's stats and metadata exchange); `None` for resources
    /// translated without one.
    node: Option<envoy_types::pb::envoy::config::core::v3::Node>,
    /// The `traffic_direction` of the listener being translated.
    direction: model::TrafficDirection,
    /// The bootstrap's tracer, for connection managers with `tracing` and
    /// no provider of their own.
    bootstrap_tracer: Option<model::tracing::Provider>,
}

/// The extension parsers a translation consults: those of the registries
/// that run extensions (see [`ExtensionParsers`]). The default knows only
/// Strait's built-in extensions.
#[derive(Clone)]
pub struct Parsers(pub Arc<dyn ExtensionParsers>);

impl Default for Parsers {
    fn default() -> Self {
        Parsers(Arc::new(NoParsers))
    }
}

impl std::fmt::Debug for Parsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parsers")
    }
}

impl Default for Context {
    fn default() -> Self {
        Context::with(&Parsers::default())
    }
}

impl Context {
    fn with(parsers: &Parsers) -> Self {
        Context {
            parsers: Arc::clone(&parsers.0),
            problems: Vec::new(),
            required_clusters: Vec::new(),
            required_secrets: Vec::new(),
            node_cluster: String::new(),
            node: None,
            direction: model::TrafficDirection::Unspecified,
            bootstrap_tracer: None,
        }
    }
}

/// A reference to a cluster (or static secret) by name that Envoy resolves
/// at load time.
#[derive(Debug)]
struct ClusterRef {
    path: String,
    name: String,
    /// Named by a gRPC client (ADS), which may dial a `pipe` cluster; the
    /// data path cannot.
    grpc: bool,
}

/// Whether a proto field holds something other than its default. Proto3 has
/// no presence for scalars, so "set" means "not the zero value".
pub(crate) trait IsSet {
    fn is_set(&self) -> bool;
}

impl Context {
    fn invalid(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ConfigError::Invalid {
            path: path.into(),
            message: message.into(),
        });
    }

    fn unsupported(&mut self, path: impl Into<String>, what: impl Into<String>) {
        self.problems.push(ConfigError::Unsupported {
            path: path.into(),
            what: what.into(),
        });
    }

    /// Refuses `field` under `path` when it is set.
    fn reject_set<T: IsSet + ?Sized>(&mut self, path: &str, field: &str, value: &T) {
        if value.is_set() {
            let field = field.trim_start_matches("r#");
            self.unsupported(at(path, field), field);
        }
    }

    /// Refuses a `BoolValue` that is explicitly set to anything but `default`:
    /// writing the default out is common and means the same as leaving it out.
    fn reject_unless_bool(
        &mut self,
        path: &str,
        field: &str,
        value: &Option<BoolValue>,
        default: bool,
    ) {
        if let Some(v) = value
            && v.value != default
        {
            self.unsupported(at(path, field), format!("{field}: {}", v.value));
        }
    }

    /// Requires a cluster named `name` among the static clusters.
    fn require_cluster(&mut self, path: String, name: &str) {
        self.required_clusters.push(ClusterRef {
            path,
            name: name.to_owned(),
            grpc: false,
        });
    }

    /// Like [`Self::require_cluster`], for a gRPC client's cluster.
    fn require_grpc_cluster(&mut self, path: String, name: &str) {
        self.required_clusters.push(ClusterRef {
            path,
            name: name.to_owned(),
            grpc: true,
        });
    }

    /// Checks the recorded cluster references against the names of the
    /// clusters in the file (translated or not: a cluster that failed has its
    /// own error, and a second "unknown cluster" one would mislead).
    ///
    /// `pipes` are the clusters whose endpoint is a unix socket: only gRPC
    /// clients may name them (the data path connects over TCP). `tls` are
    /// those whose TLS the xDS client's channel cannot do: over a pipe, or
    /// chosen per endpoint by `transport_socket_matches`.
    fn check_cluster_refs(
        &mut self,
        known: &HashSet<&str>,
        pipes: &HashSet<&str>,
        tls: &HashSet<&str>,
    ) {
        let refs = std::mem::take(&mut self.required_clusters);
        for r in refs {
            if !known.contains(r.name.as_str()) {
                self.invalid(r.path, format!("unknown cluster '{}'", r.name));
            } else if r.grpc && tls.contains(r.name.as_str()) {
                self.unsupported(
                    r.path,
                    format!(
                        "TLS to xDS cluster '{}' over a pipe or by transport_socket_matches (the xDS client does TLS only with the cluster's own transport_socket over TCP)",
                        r.name
                    ),
                );
            } else if !r.grpc && pipes.contains(r.name.as_str()) {
                self.unsupported(
                    r.path,
                    format!(
                        "traffic to cluster '{}', whose endpoint is a pipe (unix socket); only the xDS client dials pipes",
                        r.name
                    ),
                );
            }
        }
    }

    /// Requires a static secret named `name` (`static_resources.secrets`).
    fn require_secret(&mut self, path: String, name: &str) {
        self.required_secrets.push(ClusterRef {
            path,
            name: name.to_owned(),
            grpc: false,
        });
    }

    /// Checks the recorded static secret references against the names of
    /// `static_resources.secrets`.
    fn check_secret_refs(&mut self, known: &HashSet<&str>) {
        for r in std::mem::take(&mut self.required_secrets) {
            if !known.contains(r.name.as_str()) {
                self.invalid(
                    r.path,
                    format!(
                        "unknown static secret '{}' (no sds_config, and static_resources.secrets has none by that name)",
                        r.name
                    ),
                );
            }
        }
    }

    /// The translated value when nothing went wrong, else every problem.
    fn finish<T>(mut self, value: Option<T>) -> Result<T, Vec<ConfigError>> {
        match value {
            Some(v) if self.problems.is_empty() => Ok(v),
            // A translator returns `None` only after recording why; this arm
            // keeps an omission from turning into an empty error list.
            None if self.problems.is_empty() => {
                self.invalid("", "config could not be translated");
                Err(self.problems)
            }
            _ => Err(self.problems),
        }
    }
}

/// Destructuring a borrowed proto binds references; they delegate.
impl<T: IsSet + ?Sized> IsSet for &T {
    fn is_set(&self) -> bool {
        (**self).is_set()
    }
}

impl IsSet for bool {
    fn is_set(&self) -> bool {
        *self
    }
}

impl IsSet for u32 {
    fn is_set(&self) -> bool {
        *self != 0
    }
}

impl IsSet for i64 {
    fn is_set(&self) -> bool {
        *self != 0
    }
}

/// Enums are `i32` in prost; 0 is every Envoy enum's default.
impl IsSet for i32 {
    fn is_set(&self) -> bool {
        *self != 0
    }
}

impl IsSet for String {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}

impl<T> IsSet for Vec<T> {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}

impl<K, V> IsSet for HashMap<K, V> {
    fn is_set(&self) -> bool {
        !self.is_empty()
    }
}

/// A present message counts as set even when empty: for many Envoy messages
/// (`tracing: {}`, `health_checks`) presence alone turns a feature on.
impl<T> IsSet for Option<T> {
    fn is_set(&self) -> bool {
        self.is_some()
    }
}

/// Translates one listener. `path` prefixes every error (e.g.
/// `static_resources.listeners[0]`, or the resource name for LDS).
///
/// Cluster references are not checked: that needs the whole cluster set, which
/// [`translate_bootstrap`] has and a single LDS resource does not.
pub fn translate_listener(l: &Listener, path: &str) -> Result<model::Listener, Vec<ConfigError>> {
    translate_listener_with(l, path, &Parsers::default())
}

/// [`translate_listener`] consulting `parsers` for extension type URLs
/// Strait does not build in.
pub fn translate_listener_with(
    l: &Listener,
    path: &str,
    parsers: &Parsers,
) -> Result<model::Listener, Vec<ConfigError>> {
    translate_listener_for(l, path, parsers, None)
}

/// [`translate_listener_with`] for the proxy whose bootstrap `node` is
/// `node` (Istio's telemetry filters read its metadata).
pub fn translate_listener_for(
    l: &Listener,
    path: &str,
    parsers: &Parsers,
    node: Option<&model::Node>,
) -> Result<model::Listener, Vec<ConfigError>> {
    translate_listener_in(l, path, parsers, node, None)
}

/// [`translate_listener_for`] with the bootstrap's tracer (`tracer`, see
/// [`model::Config::tracer`]), as the xDS client translates listeners.
pub fn translate_listener_in(
    l: &Listener,
    path: &str,
    parsers: &Parsers,
    node: Option<&model::Node>,
    tracer: Option<&model::tracing::Provider>,
) -> Result<model::Listener, Vec<ConfigError>> {
    let mut cx = Context::with(parsers);
    if let Some(n) = node {
        cx.node_cluster = n.cluster.clone();
        cx.node = Some(crate::node_proto(n));
    }
    cx.bootstrap_tracer = tracer.cloned();
    let out = listener::listener(&mut cx, l, path);
    cx.required_clusters.clear();
    cx.finish(out)
}

/// Translates one cluster.
pub fn translate_cluster(c: &Cluster, path: &str) -> Result<model::Cluster, Vec<ConfigError>> {
    let mut cx = Context::default();
    let out = cluster::cluster(&mut cx, c, path);
    cx.finish(out)
}

/// Translates one route configuration as RDS delivers it: `validate_clusters`
/// defaults to false there, and cluster references are not checked.
pub fn translate_route_config(
    rc: &RouteConfiguration,
    path: &str,
) -> Result<model::RouteConfig, Vec<ConfigError>> {
    translate_route_config_with(rc, path, &Parsers::default())
}

/// [`translate_route_config`] consulting `parsers` for extension type URLs
/// Strait does not build in.
pub fn translate_route_config_with(
    rc: &RouteConfiguration,
    path: &str,
    parsers: &Parsers,
) -> Result<model::RouteConfig, Vec<ConfigError>> {
    let mut cx = Context::with(parsers);
    let out = route::route_config(&mut cx, rc, path, false);
    cx.required_clusters.clear();
    cx.finish(out)
}

/// Translates a whole bootstrap: static listeners and clusters, admin, and the
/// checks that span resources (unique names and addresses, cluster references).
pub fn translate_bootstrap(b: &Bootstrap) -> Result<model::Config, Vec<ConfigError>> {
    translate_bootstrap_with(b, &Parsers::default())
}

/// [`translate_bootstrap`] consulting `parsers` for extension type URLs
/// Strait does not build in.
pub fn translate_bootstrap_with(
    b: &Bootstrap,
    parsers: &Parsers,
) -> Result<model::Config, Vec<ConfigError>> {
    let mut cx = Context::with(parsers);
    let out = bootstrap::bootstrap(&mut cx, b);
    cx.finish(Some(out))
}

/// `path.field`, or `field` at the root.
fn at(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// `path.field[i]`.
fn item(path: &str, field: &str, i: usize) -> String {
    format!("{}[{i}]", at(path, field))
}

/// A proto duration as a std one; negative or malformed ones are invalid.
fn duration(cx: &mut Context, path: &str, d: &ProtoDuration) -> Option<Duration> {
    match (u64::try_from(d.seconds), u32::try_from(d.nanos)) {
        (Ok(secs), Ok(nanos)) if nanos < 1_000_000_000 => Some(Duration::new(secs, nanos)),
        _ => {
            cx.invalid(path, "must be a non-negative duration");
            None
        }
    }
}

/// A timeout where Envoy reads 0 as "disabled": unset gives `default`, 0 gives
/// `None`, anything else the value.
fn timeout(
    cx: &mut Context,
    path: &str,
    d: &Option<ProtoDuration>,
    default: Option<Duration>,
) -> Option<Duration> {
    match d {
        None => default,
        Some(d) => match duration(cx, path, d) {
            Some(v) if v.is_zero() => None,
            Some(v) => Some(v),
            None => default,
        },
    }
}

/// A duration Envoy requires to be strictly positive, with its default.
fn positive_duration(
    cx: &mut Context,
    path: &str,
    d: &Option<ProtoDuration>,
    default: Duration,
) -> Duration {
    match d {
        None => default,
        Some(d) => match duration(cx, path, d) {
            Some(v) if v.is_zero() => {
                cx.invalid(path, "must be greater than 0s");
                default
            }
            Some(v) => v,
            None => default,
        },
    }
}

fn bool_value(v: &Option<BoolValue>, default: bool) -> bool {
    v.as_ref().map_or(default, |v| v.value)
}

fn u32_value(v: &Option<UInt32Value>, default: u32) -> u32 {
    v.as_ref().map_or(default, |v| v.value)
}

/// The fully qualified message name of an `Any`'s type URL: Envoy, like the
/// protobuf spec, only looks at what follows the last `/`.
fn type_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Decodes `any` as `M`, which the caller chose by its type URL.
fn decode_any<M: prost::Message + prost::Name + Default>(
    cx: &mut Context,
    path: &str,
    any: &Any,
) -> Option<M> {
    if type_name(&any.type_url) != M::full_name() {
        cx.invalid(
            at(path, "@type"),
            format!("expected {}, got {}", M::type_url(), any.type_url),
        );
        return None;
    }
    match M::decode(any.value.as_slice()) {
        Ok(m) => Some(m),
        Err(e) => {
            cx.invalid(path, format!("cannot decode {}: {e}", any.type_url));
            None
        }
    }
}

/// The host and port of a TCP `socket_address`; `path` is the `Address`
/// field's own path. The host is not checked to be an IP literal.
fn socket_address<'a>(
    cx: &mut Context,
    path: &str,
    a: &'a Option<Address>,
) -> Option<(&'a str, u16)> {
    let Some(Address { address }) = a else {
        cx.invalid(path, "is required");
        return None;
    };
    let sa = match address {
        Some(address::Address::SocketAddress(sa)) => sa,
        Some(address::Address::Pipe(_)) => {
            cx.unsupported(at(path, "pipe"), "pipe (unix domain socket) addresses");
            return None;
        }
        Some(address::Address::EnvoyInternalAddress(_)) => {
            cx.unsupported(at(path, "envoy_internal_address"), "internal addresses");
            return None;
        }
        None => {
            cx.invalid(at(path, "socket_address"), "is required");
            return None;
        }
    };
    let path = at(path, "socket_address");
    let SocketAddress {
        protocol,
        address,
        resolver_name,
        ipv4_compat,
        network_namespace_filepath,
        port_specifier,
    } = sa;
    let before = cx.problems.len();
    if *protocol != Protocol::Tcp as i32 {
        cx.unsupported(at(&path, "protocol"), "protocol UDP");
    }
    reject_set!(cx, &path; resolver_name, ipv4_compat, network_namespace_filepath);
    if address.is_empty() {
        cx.invalid(at(&path, "address"), "is required");
    }
    let port = match port_specifier {
        Some(PortSpecifier::PortValue(p)) => match u16::try_from(*p) {
            Ok(p) => Some(p),
            Err(_) => {
                cx.invalid(
                    at(&path, "port_value"),
                    format!("{p} is not a port (0..=65535)"),
                );
                None
            }
        },
        Some(PortSpecifier::NamedPort(_)) => {
            cx.unsupported(at(&path, "named_port"), "named_port");
            None
        }
        // proto3 cannot tell an omitted port from port 0; Envoy reads it as 0.
        None => Some(0),
    };
    match port {
        Some(port) if cx.problems.len() == before => Some((address.as_str(), port)),
        _ => None,
    }
}

/// A socket address whose host must be an IP literal (listeners, admin,
/// STATIC endpoints).
fn ip_socket_address(cx: &mut Context, path: &str, a: &Option<Address>) -> Option<SocketAddr> {
    let (host, port) = socket_address(cx, path, a)?;
    match host.parse::<IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, port)),
        Err(_) => {
            cx.invalid(
                at(&at(path, "socket_address"), "address"),
                format!("'{host}' is not an IP address"),
            );
            None
        }
    }
}

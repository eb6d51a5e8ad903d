//! Bootstrap fields about the proxy process rather than traffic: stats
//! naming, tracing providers, Envoy's own logs, the cluster manager, the
//! overload manager, bootstrap extensions and the node Strait announces.
//! Most have no effect on what Strait does with a request; each is either
//! accepted with the reason, or refused by path.

use std::time::Duration;

use envoy_types::pb::envoy::{
    config::{
        accesslog::v3::{AccessLog, access_log},
        bootstrap::v3::{
            ClusterManager, bootstrap::ApplicationLogConfig, bootstrap::StatsEviction,
            cluster_manager,
        },
        core::v3::{BuildVersion, Node, TypedExtensionConfig, node},
        metrics::v3::StatsConfig,
        overload::v3::{OverloadManager, ResourceMonitor, resource_monitor},
        trace::v3::Tracing,
    },
    extensions::{
        access_loggers::file::v3::FileAccessLog,
        resource_monitors::downstream_connections::v3::DownstreamConnectionsConfig,
    },
    r#type::v3::SemanticVersion,
};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;

use super::super::{Context, at, decode_any, duration, item, type_name};

/// What Istio renders for "no limit" (`i32::MAX`).
const UNLIMITED_CONNECTIONS: i64 = i32::MAX as i64;

/// `stats_config`. Tag extraction (`stats_tags`, `use_all_default_tags`),
/// inclusion (`stats_matcher`) and histogram buckets shape Envoy's stat
/// names and memory; Strait exports a fixed set of Envoy-named stats and
/// no request depends on them.
pub(super) fn stats_config(s: &StatsConfig) {
    let StatsConfig {
        stats_tags: _,
        use_all_default_tags: _,
        stats_matcher: _,
        histogram_bucket_settings: _,
        allow_default_tag_overrides: _,
    } = s;
}

/// `stats_flush_interval` and `stats_eviction`: the first paces the stats
/// sinks (returned, Envoy's 5 s by default; `None` if malformed), the
/// second evicting unused stats from caches, which Strait does not keep.
/// Envoy refuses an eviction interval that is not a multiple of the flush
/// interval, and so does Strait.
pub(super) fn stats_intervals(
    cx: &mut Context,
    flush: &Option<ProtoDuration>,
    eviction: &Option<StatsEviction>,
) -> Option<Duration> {
    let flush_every = match flush {
        Some(d) => duration(cx, "stats_flush_interval", d),
        None => Some(crate::model::stats::DEFAULT_FLUSH_INTERVAL),
    };
    if let Some(StatsEviction::StatsEvictionInterval(d)) = eviction
        && let (Some(evict), Some(flush)) =
            (duration(cx, "stats_eviction_interval", d), flush_every)
        && (flush.is_zero() || evict.as_nanos() % flush.as_nanos() != 0)
    {
        cx.invalid(
            "stats_eviction_interval",
            format!("{evict:?} is not a multiple of stats_flush_interval {flush:?}"),
        );
    }
    flush_every
}

/// `tracing` (deprecated in Envoy, still honoured by 1.40): the tracer of
/// connection managers whose `tracing` names no provider.
pub(super) fn tracing(cx: &mut Context, t: &Tracing) {
    let Tracing { http } = t;
    if let Some(h) = http {
        cx.bootstrap_tracer =
            super::super::telemetry::provider(cx, super::super::telemetry::BOOTSTRAP_PATH, h);
    }
}

/// `application_log_config`: the format of Envoy's own log lines (spdlog or
/// JSON). Strait's logs are `tracing`'s; nothing else reads the format.
pub(super) fn application_log(a: &ApplicationLogConfig) {
    let ApplicationLogConfig { log_format: _ } = a;
}

/// `cluster_manager`.
pub(super) fn cluster_manager(cx: &mut Context, path: &str, c: &ClusterManager) {
    let ClusterManager {
        local_cluster_name,
        outlier_detection,
        upstream_bind_config,
        load_stats_config,
        // Envoy builds a cluster's internals on first use to save memory;
        // the behaviour is the same either way.
        enable_deferred_cluster_creation: _,
    } = c;
    reject_set!(cx, path; local_cluster_name, upstream_bind_config, load_stats_config);
    if let Some(od) = outlier_detection {
        let cluster_manager::OutlierDetection {
            // A log of ejection events for people to read; ejection itself
            // is each cluster's `outlier_detection`.
            event_log_path: _,
            event_service,
        } = od;
        reject_set!(cx, &at(path, "outlier_detection"); event_service);
    }
}

/// `overload_manager`: only the global downstream connection limit that
/// Istio always renders. `Some(None)` for a monitor at Istio's "unlimited"
/// value, `Some(Some(n))` for a limit, `None` without the monitor.
pub(super) fn overload_manager(
    cx: &mut Context,
    path: &str,
    o: &OverloadManager,
) -> Option<Option<u64>> {
    let OverloadManager {
        // How often resource monitors are sampled; the one accepted below
        // is not sampled.
        refresh_interval: _,
        resource_monitors,
        actions,
        loadshed_points,
        buffer_factory_config,
    } = o;
    reject_set!(cx, path; actions, loadshed_points, buffer_factory_config);
    let mut limit = None;
    for (i, m) in resource_monitors.iter().enumerate() {
        let mpath = item(path, "resource_monitors", i);
        let ResourceMonitor { name, config_type } = m;
        let Some(resource_monitor::ConfigType::TypedConfig(any)) = config_type else {
            cx.unsupported(mpath, format!("resource monitor '{name}'"));
            continue;
        };
        if type_name(&any.type_url)
            != "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
        {
            cx.unsupported(
                at(&mpath, "typed_config"),
                format!("resource monitor '{name}' ({})", any.type_url),
            );
            continue;
        }
        let tpath = at(&mpath, "typed_config");
        let Some(DownstreamConnectionsConfig {
            max_active_downstream_connections: max,
        }) = decode_any(cx, &tpath, any)
        else {
            continue;
        };
        limit = Some(connection_limit(
            cx,
            &at(&tpath, "max_active_downstream_connections"),
            max,
        ));
    }
    limit
}

/// A configured connection limit: `None` at Istio's "unlimited" or above.
fn connection_limit(cx: &mut Context, path: &str, max: i64) -> Option<u64> {
    match u64::try_from(max) {
        Ok(_) if max >= UNLIMITED_CONNECTIONS => None,
        Ok(n) if n > 0 => Some(n),
        _ => {
            cx.invalid(path, format!("{max} must be greater than 0"));
            None
        }
    }
}

/// The deprecated runtime key `overload.global_downstream_max_connections`
/// in a static layer (the last layer setting it wins): `Some(None)` at
/// "unlimited", `Some(Some(n))` for a limit, `None` when absent (or
/// unreadable, which the runtime translation refuses).
pub(super) fn runtime_connection_limit(
    lr: &envoy_types::pb::envoy::config::bootstrap::v3::LayeredRuntime,
) -> Option<Option<u64>> {
    use envoy_types::pb::envoy::config::bootstrap::v3::runtime_layer::LayerSpecifier;
    lr.layers
        .iter()
        .rev()
        .find_map(|l| match &l.layer_specifier {
            Some(LayerSpecifier::StaticLayer(s)) => s
                .fields
                .get(RUNTIME_CONNECTION_LIMIT)
                .and_then(runtime_number)
                .map(|n| (n < UNLIMITED_CONNECTIONS).then_some(n.unsigned_abs())),
            _ => None,
        })
}

const RUNTIME_CONNECTION_LIMIT: &str = "overload.global_downstream_max_connections";

const RUNTIME_EXPLICIT_INTERNAL: &str =
    "envoy.reloadable_features.explicit_internal_address_config";

/// A boolean runtime value: a bool, or the string "true" or "false" (as
/// Envoy's runtime snapshot reads feature flags).
fn runtime_bool(v: &envoy_types::pb::google::protobuf::Value) -> Option<bool> {
    use envoy_types::pb::google::protobuf::value::Kind;
    match &v.kind {
        Some(Kind::BoolValue(b)) => Some(*b),
        Some(Kind::StringValue(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(Kind::StringValue(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A positive integer runtime value, written as a number or a string.
fn runtime_number(v: &envoy_types::pb::google::protobuf::Value) -> Option<i64> {
    use envoy_types::pb::google::protobuf::value::Kind;
    let n = match &v.kind {
        // Whole numbers well inside f64's exact range.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && *n >= 1.0 && *n <= 9.0e15 => *n as i64,
        Some(Kind::StringValue(s)) => s.parse::<i64>().ok()?,
        _ => return None,
    };
    (n > 0).then_some(n)
}

/// `bootstrap_extensions`. `envoy.bootstrap.internal_listener` only makes
/// listeners with `envoy_internal_address` possible, which Strait refuses
/// where they appear; with none, the extension does nothing.
pub(super) fn bootstrap_extensions(cx: &mut Context, path: &str, exts: &[TypedExtensionConfig]) {
    for (i, e) in exts.iter().enumerate() {
        let epath = item(path, "bootstrap_extensions", i);
        let TypedExtensionConfig { name, typed_config } = e;
        // Through a `TypedStruct` the wrapped type is what is unsupported.
        let url = typed_config
            .as_ref()
            .map_or_else(String::new, super::super::inert::effective_type_url);
        if type_name(&url) != "envoy.extensions.bootstrap.internal_listener.v3.InternalListener" {
            cx.unsupported(
                at(&epath, "typed_config"),
                format!("bootstrap extension '{name}' ({})", type_name(&url)),
            );
        }
    }
}

/// `admin.access_log`: only a file logger writing to `/dev/null` (what
/// Istio renders), which logs nothing.
pub(super) fn admin_access_log(cx: &mut Context, path: &str, logs: &[AccessLog]) {
    for (i, log) in logs.iter().enumerate() {
        let lpath = item(path, "access_log", i);
        let AccessLog {
            name: _,
            filter,
            config_type,
        } = log;
        reject_set!(cx, &lpath; filter);
        let Some(access_log::ConfigType::TypedConfig(any)) = config_type else {
            cx.invalid(at(&lpath, "typed_config"), "is required");
            continue;
        };
        let tpath = at(&lpath, "typed_config");
        if type_name(&any.type_url) != "envoy.extensions.access_loggers.file.v3.FileAccessLog" {
            cx.unsupported(tpath, format!("admin access logger {}", any.type_url));
            continue;
        }
        let Some(FileAccessLog {
            path,
            // The format of lines that are never written.
            access_log_format: _,
        }) = decode_any(cx, &tpath, any)
        else {
            continue;
        };
        if path != "/dev/null" {
            cx.unsupported(
                at(&tpath, "path"),
                "admin access log (only /dev/null is accepted)",
            );
        }
    }
}

/// The node as Strait announces it: the bootstrap's (after the command
/// line's overrides), with Envoy's `user_agent_*` fields naming Strait, as
/// Envoy fills them with its own name and version whatever the file says.
pub(super) fn node(n: Option<&Node>) -> Node {
    let mut node = n.cloned().unwrap_or_default();
    node.user_agent_name = "strait".to_owned();
    let mut version = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    node.user_agent_version_type = Some(node::UserAgentVersionType::UserAgentBuildVersion(
        BuildVersion {
            version: Some(SemanticVersion {
                major_number: version.next().unwrap_or(0),
                minor_number: version.next().unwrap_or(0),
                patch: version.next().unwrap_or(0),
            }),
            metadata: None,
        },
    ));
    node
}

/// Whether a runtime override is one Strait can ignore, and why.
pub(super) fn runtime_key_without_effect(
    key: &str,
    value: &envoy_types::pb::google::protobuf::Value,
) -> bool {
    match key {
        // Lets a deprecated field be used without Envoy refusing it; Strait
        // judges deprecated fields like any other.
        k if k.starts_with("envoy.deprecated_features:") => true,
        // Internal to Envoy's load balancer rebuilds and heap accounting.
        "envoy.reloadable_features.coalesce_lb_rebuilds_on_batch_update"
        | "envoy.reloadable_features.fixed_heap_use_allocated" => true,
        // `false` makes Envoy strip a `#fragment` from request paths instead
        // of answering 400, which is what Strait does anyway: the `http`
        // crate's URI parser drops the fragment of a request target.
        "envoy.reloadable_features.http_reject_path_with_fragment" => true,
        // Only Envoy's Google gRPC client reads it; Strait refuses
        // `google_grpc` services.
        "envoy.reloadable_features.google_grpc_disable_tls_13" => true,
        // RE2's program size limits; Strait's regex engine has its own
        // (larger) compiled size limit and refuses a regex above it.
        "re2.max_program_size.error_level" | "re2.max_program_size.warn_level" => true,
        // The deprecated runtime form of the global connection limit, read
        // by `runtime_connection_limit`.
        RUNTIME_CONNECTION_LIMIT => runtime_number(value).is_some(),
        // Envoy 1.36 made this feature's `true` the only behaviour (no
        // address is internal unless `internal_address_config` says so) and
        // removed the key; Strait, like Envoy 1.40, behaves so either way.
        // Istio still renders it.
        RUNTIME_EXPLICIT_INTERNAL => runtime_bool(value).is_some(),
        _ => false,
    }
}

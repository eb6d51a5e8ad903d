//! The bootstrap itself: admin, runtime, static resources, and the checks that
//! span resources (unique names and addresses, cluster references).

use std::collections::{HashMap, HashSet};

use envoy_types::pb::envoy::config::bootstrap::v3::{
    Admin, Bootstrap, LayeredRuntime, RuntimeLayer, bootstrap::StaticResources,
    runtime_layer::LayerSpecifier,
};

use super::{Context, at, cluster, dynamic, ip_socket_address, item, listener};
use crate::model;

mod process;
mod sinks;

pub(super) fn bootstrap(cx: &mut Context, b: &Bootstrap) -> model::Config {
    let Bootstrap {
        node,
        // Which node fields go into xdstp:// resource names; Strait uses no
        // xdstp names.
        node_context_params: _,
        static_resources,
        dynamic_resources,
        cluster_manager,
        hds_config,
        flags_path,
        stats_sinks,
        deferred_stat_options,
        stats_config,
        stats_flush_interval,
        stats_flush,
        watchdog,
        watchdogs,
        tracing,
        layered_runtime,
        admin,
        overload_manager,
        enable_dispatcher_stats,
        header_prefix,
        stats_server_version_override,
        use_tcp_for_dns_lookups,
        dns_resolution_config,
        typed_dns_resolver_config,
        bootstrap_extensions,
        fatal_actions,
        config_sources,
        default_config_source,
        default_socket_interface,
        certificate_provider_instances,
        // Registers headers for faster lookup in Envoy's header map; no
        // behaviour depends on it.
        inline_headers: _,
        perf_tracing_file_path,
        default_regex_engine,
        xds_delegate_extension,
        xds_config_tracker_extension,
        listener_manager,
        application_log_config,
        grpc_async_client_manager_config,
        memory_allocator_manager,
        enable_worker_cpu_affinity,
        stats_eviction,
    } = b;
    cx.node_cluster = node.as_ref().map(|n| n.cluster.clone()).unwrap_or_default();
    cx.node = node.clone();
    let dynamic = dynamic_resources
        .as_ref()
        .and_then(|d| dynamic::dynamic_resources(cx, "dynamic_resources", d));
    reject_set!(cx, "";
        hds_config, flags_path,
        watchdog, watchdogs, enable_dispatcher_stats, header_prefix,
        stats_server_version_override, use_tcp_for_dns_lookups, dns_resolution_config,
        typed_dns_resolver_config, fatal_actions, config_sources,
        default_config_source, default_socket_interface, certificate_provider_instances,
        perf_tracing_file_path, default_regex_engine, xds_delegate_extension,
        xds_config_tracker_extension, listener_manager,
        grpc_async_client_manager_config, memory_allocator_manager, enable_worker_cpu_affinity,
    );
    if let Some(d) = deferred_stat_options {
        // Envoy creates some stats on first use to save memory; the values
        // read are the same.
        let envoy_types::pb::envoy::config::bootstrap::v3::bootstrap::DeferredStatOptions {
            enable_deferred_creation_stats: _,
        } = d;
    }
    if let Some(s) = stats_config {
        process::stats_config(s);
    }
    let flush_interval = process::stats_intervals(cx, stats_flush_interval, stats_eviction);
    // `stats_flush_on_admin` flushes the sinks on admin requests instead of
    // the timer; without sinks nothing is flushed either way.
    if !stats_sinks.is_empty() {
        reject_set!(cx, ""; stats_flush);
    }
    let stats_sinks = sinks::stats_sinks(cx, stats_sinks, flush_interval);
    if let Some(t) = tracing {
        process::tracing(cx, t);
    }
    if let Some(a) = application_log_config {
        process::application_log(a);
    }
    if let Some(c) = cluster_manager {
        process::cluster_manager(cx, "cluster_manager", c);
    }
    // The monitor's limit wins over the deprecated runtime key, as in Envoy.
    let monitor_limit = overload_manager
        .as_ref()
        .and_then(|o| process::overload_manager(cx, "overload_manager", o));
    let runtime_limit = layered_runtime
        .as_ref()
        .and_then(process::runtime_connection_limit);
    let max_downstream_connections = monitor_limit.or(runtime_limit).flatten();
    process::bootstrap_extensions(cx, "", bootstrap_extensions);
    if let Some(lr) = layered_runtime {
        runtime(cx, "layered_runtime", lr);
    }
    let admin = admin.as_ref().and_then(|a| self::admin(cx, "admin", a));
    let (listeners, clusters, secrets) = match static_resources {
        Some(sr) => resources(cx, "static_resources", sr, dynamic_resources.is_some()),
        None => {
            cx.check_cluster_refs(&HashSet::new(), &HashSet::new(), &HashSet::new());
            cx.check_secret_refs(&HashSet::new());
            (Vec::new(), Vec::new(), model::secret::Secrets::new())
        }
    };
    if let Some(d) = &dynamic
        && clusters
            .iter()
            .any(|c| c.name == d.ads_cluster && !matches!(c.discovery, model::Discovery::Static))
    {
        cx.unsupported(
            "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name",
            format!("ADS cluster '{}' must be STATIC", d.ads_cluster),
        );
    }
    model::Config {
        admin,
        listeners,
        clusters,
        route_configs: Vec::new(),
        dynamic,
        node: Some(model_node(process::node(node.as_ref()))),
        max_downstream_connections,
        secrets,
        stats_sinks,
        tracer: cx.bootstrap_tracer.clone(),
    }
}

/// The node as plain data, with its protobuf encoding for the control plane.
fn model_node(node: envoy_types::pb::envoy::config::core::v3::Node) -> model::Node {
    use prost::Message as _;
    model::Node {
        encoded: node.encode_to_vec(),
        id: node.id,
        cluster: node.cluster,
    }
}

fn admin(cx: &mut Context, path: &str, a: &Admin) -> Option<model::Admin> {
    let Admin {
        access_log,
        access_log_path,
        // Where the CPU profiler would write; Strait has no profiler endpoint.
        profile_path: _,
        address,
        socket_options,
        // Strait has no global connection limit (the overload manager is
        // refused), so there is nothing to be exempt from.
        ignore_global_conn_limit: _,
        allow_paths,
    } = a;
    reject_set!(cx, path; socket_options, allow_paths);
    process::admin_access_log(cx, path, access_log);
    // Envoy's own examples write `/dev/null`, which is the same as no log.
    if !access_log_path.is_empty() && access_log_path != "/dev/null" {
        cx.unsupported(
            at(path, "access_log_path"),
            "admin access log (only /dev/null is accepted)",
        );
    }
    // Envoy starts no admin server when the address is left out.
    address.as_ref()?;
    let address = ip_socket_address(cx, &at(path, "address"), address)?;
    Some(model::Admin { address })
}

/// Accepts a runtime that overrides nothing Strait implements: static
/// layers holding only keys without effect on Strait (the ones Istio
/// renders, see `process::runtime_key_without_effect`) and admin layers
/// (which only let `/runtime_modify` add overrides, an endpoint Strait does
/// not have).
fn runtime(cx: &mut Context, path: &str, lr: &LayeredRuntime) {
    let LayeredRuntime { layers } = lr;
    for (i, layer) in layers.iter().enumerate() {
        let path = item(path, "layers", i);
        // The name only labels the layer in `/runtime` output.
        let RuntimeLayer {
            name: _,
            layer_specifier,
        } = layer;
        match layer_specifier {
            Some(LayerSpecifier::StaticLayer(s)) => {
                let mut keys: Vec<&str> = s
                    .fields
                    .iter()
                    .filter(|(k, v)| !process::runtime_key_without_effect(k, v))
                    .map(|(k, _)| k.as_str())
                    .collect();
                keys.sort_unstable();
                if !keys.is_empty() {
                    cx.unsupported(
                        at(&path, "static_layer"),
                        format!("runtime overrides ({})", keys.join(", ")),
                    );
                }
            }
            Some(LayerSpecifier::AdminLayer(_)) => {}
            Some(LayerSpecifier::DiskLayer(_)) => {
                cx.unsupported(at(&path, "disk_layer"), "disk_layer")
            }
            Some(LayerSpecifier::RtdsLayer(_)) => {
                cx.unsupported(at(&path, "rtds_layer"), "rtds_layer")
            }
            None => cx.invalid(
                path,
                "needs one of static_layer, disk_layer, admin_layer, rtds_layer",
            ),
        }
    }
}

/// `xds`: whether the bootstrap has `dynamic_resources`, without which
/// nothing would ever deliver an RDS route config or EDS endpoints.
fn resources(
    cx: &mut Context,
    path: &str,
    sr: &StaticResources,
    xds: bool,
) -> (
    Vec<model::Listener>,
    Vec<model::Cluster>,
    model::secret::Secrets,
) {
    let StaticResources {
        listeners,
        clusters,
        secrets,
    } = sr;
    let mut out_secrets = model::secret::Secrets::new();
    let mut secret_names: HashMap<&str, usize> = HashMap::new();
    for (i, s) in secrets.iter().enumerate() {
        let spath = item(path, "secrets", i);
        if !s.name.is_empty()
            && let Some(first) = secret_names.insert(&s.name, i)
        {
            cx.invalid(
                at(&spath, "name"),
                format!(
                    "duplicate secret name '{}' (also {})",
                    s.name,
                    item(path, "secrets", first)
                ),
            );
        }
        if let Some((name, secret)) = super::secret::secret(cx, s, &spath) {
            out_secrets.insert(name, model::secret::SecretEntry::new(secret, ""));
        }
    }

    let mut out_clusters = Vec::with_capacity(clusters.len());
    let mut cluster_names: HashMap<&str, usize> = HashMap::new();
    for (i, c) in clusters.iter().enumerate() {
        let cpath = item(path, "clusters", i);
        if !c.name.is_empty()
            && let Some(first) = cluster_names.insert(&c.name, i)
        {
            cx.invalid(
                at(&cpath, "name"),
                format!(
                    "duplicate cluster name '{}' (also {})",
                    c.name,
                    item(path, "clusters", first)
                ),
            );
        }
        if let Some(c) = cluster::cluster(cx, c, &cpath) {
            if !xds {
                ads_secrets_need_xds(cx, &cpath, c.secret_refs());
            }
            if !xds && matches!(c.discovery, model::Discovery::Eds { .. }) {
                cx.invalid(
                    at(&cpath, "type"),
                    "an EDS cluster needs dynamic_resources (xDS)",
                );
            }
            out_clusters.push(c);
        }
    }

    // Explicit names first, so a generated name can avoid all of them.
    let mut used_names: HashSet<String> = HashSet::new();
    let mut explicit: HashMap<&str, usize> = HashMap::new();
    for (i, l) in listeners.iter().enumerate() {
        if l.name.is_empty() {
            continue;
        }
        used_names.insert(l.name.clone());
        if let Some(first) = explicit.insert(&l.name, i) {
            cx.invalid(
                at(&item(path, "listeners", i), "name"),
                format!(
                    "duplicate listener name '{}' (also {})",
                    l.name,
                    item(path, "listeners", first)
                ),
            );
        }
    }
    let mut out_listeners = Vec::with_capacity(listeners.len());
    let mut addresses = HashMap::new();
    for (i, l) in listeners.iter().enumerate() {
        let lpath = item(path, "listeners", i);
        let Some(mut ml) = listener::listener(cx, l, &lpath) else {
            continue;
        };
        if !xds {
            for name in ml.rds_names() {
                cx.invalid(
                    lpath.clone(),
                    format!("rds route config '{name}' needs dynamic_resources (xDS)"),
                );
            }
            ads_secrets_need_xds(cx, &lpath, ml.secret_refs());
        }
        if l.name.is_empty() && !used_names.insert(ml.name.clone()) {
            // Port-0 listeners share an address text; the index keeps the
            // generated name unique and stable across reloads of one file.
            ml.name = format!("{}_{i}", ml.name);
            used_names.insert(ml.name.clone());
        }
        // Port 0 asks the kernel for a fresh port each time, so such
        // listeners never collide.
        if ml.address.port() != 0
            && let Some(first) = addresses.insert(ml.address, i)
        {
            cx.invalid(
                at(&lpath, "address"),
                format!(
                    "{} is already used by {}",
                    ml.address,
                    item(path, "listeners", first)
                ),
            );
        }
        out_listeners.push(ml);
    }

    let known: HashSet<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    let pipes: HashSet<&str> = out_clusters
        .iter()
        .filter(|c| c.pipe.is_some())
        .map(|c| c.name.as_str())
        .collect();
    // The xDS channel does TLS to a TCP endpoint with the cluster's own
    // context; not over a pipe, nor chosen per endpoint.
    let tls: HashSet<&str> = out_clusters
        .iter()
        .filter(|c| {
            (c.tls.is_some() && c.pipe.is_some())
                || c.transport_socket_matches.iter().any(|m| m.tls.is_some())
        })
        .map(|c| c.name.as_str())
        .collect();
    cx.check_cluster_refs(&known, &pipes, &tls);
    // Secrets that failed to translate have their own error; naming them
    // unknown as well would mislead.
    let known: HashSet<&str> = secrets.iter().map(|s| s.name.as_str()).collect();
    cx.check_secret_refs(&known);
    (out_listeners, out_clusters, out_secrets)
}

/// Without `dynamic_resources` nothing would ever deliver a secret whose
/// `sds_config` is `ads`.
fn ads_secrets_need_xds<'a>(
    cx: &mut Context,
    path: &str,
    refs: impl Iterator<Item = &'a model::secret::SdsRef>,
) {
    for r in refs.filter(|r| r.source == model::secret::SecretSource::Ads) {
        cx.invalid(
            path,
            format!(
                "secret '{}' from sds_config ads needs dynamic_resources (xDS)",
                r.name
            ),
        );
    }
}

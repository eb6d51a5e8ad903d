//! Listeners, their single filter chain, and the TCP proxy network filter.

use std::time::Duration;

use envoy_types::pb::envoy::{
    config::listener::v3::{
        Filter, FilterChain, FilterChainMatch, Listener, filter, listener::DeprecatedV1,
    },
    extensions::filters::network::{
        http_connection_manager::v3::HttpConnectionManager,
        tcp_proxy::v3::{
            TcpProxy,
            tcp_proxy::{ClusterSpecifier, WeightedCluster, weighted_cluster::ClusterWeight},
        },
    },
};
use prost::Name;

use super::{
    Context, at, decode_any, http, ip_socket_address, item, timeout, type_name, u32_value,
};
use crate::model;

/// Envoy's default `per_connection_buffer_limit_bytes`.
const DEFAULT_BUFFER_LIMIT: u32 = 1024 * 1024;
/// Envoy's default TCP proxy `idle_timeout`.
const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

pub(super) fn listener(cx: &mut Context, l: &Listener, path: &str) -> Option<model::Listener> {
    let Listener {
        name,
        address,
        additional_addresses,
        // Names stats only.
        stat_prefix: _,
        stats_matcher,
        filter_chains,
        fcds_config,
        filter_chain_matcher,
        use_original_dst,
        default_filter_chain,
        per_connection_buffer_limit_bytes,
        per_connection_buffer_high_watermark_timeout,
        // Read only by filters and extensions, none of which Strait runs.
        metadata: _,
        deprecated_v1,
        drain_type,
        listener_filters,
        // Both only apply to listener filters, which are refused.
        listener_filters_timeout: _,
        continue_on_listener_filters_timeout: _,
        transparent,
        freebind,
        socket_options,
        tcp_fast_open_queue_length,
        // Informational: Envoy uses it for stats and extensions, not routing.
        traffic_direction: _,
        udp_listener_config,
        api_listener,
        connection_balance_config,
        // SO_REUSEPORT only decides how workers share the listening socket;
        // Strait picks its own accept strategy, and either way exactly one
        // listener serves the address.
        reuse_port: _,
        enable_reuse_port: _,
        access_log,
        tcp_backlog_size,
        // Only batches accepts per wake-up: a throughput knob, no semantics.
        max_connections_to_accept_per_socket_event: _,
        bind_to_port,
        enable_mptcp,
        // Strait has no global connection limit or overload manager (both
        // refused in the bootstrap), so there is nothing to bypass.
        ignore_global_conn_limit: _,
        bypass_overload_manager: _,
        tcp_keepalive,
        listener_specifier,
    } = l;
    reject_set!(cx, path;
        additional_addresses, stats_matcher, fcds_config, filter_chain_matcher, default_filter_chain,
        drain_type, listener_filters, socket_options, udp_listener_config, api_listener,
        connection_balance_config, access_log, tcp_backlog_size, enable_mptcp, tcp_keepalive,
        listener_specifier,
    );
    cx.reject_unless_bool(path, "use_original_dst", use_original_dst, false);
    cx.reject_unless_bool(path, "transparent", transparent, false);
    cx.reject_unless_bool(path, "freebind", freebind, false);
    cx.reject_unless_bool(path, "bind_to_port", bind_to_port, true);
    if let Some(DeprecatedV1 { bind_to_port }) = deprecated_v1 {
        cx.reject_unless_bool(
            &at(path, "deprecated_v1"),
            "bind_to_port",
            bind_to_port,
            true,
        );
    }
    if u32_value(tcp_fast_open_queue_length, 0) != 0 {
        cx.unsupported(
            at(path, "tcp_fast_open_queue_length"),
            "tcp_fast_open_queue_length",
        );
    }
    let watermark_path = at(path, "per_connection_buffer_high_watermark_timeout");
    if timeout(
        cx,
        &watermark_path,
        per_connection_buffer_high_watermark_timeout,
        None,
    )
    .is_some()
    {
        cx.unsupported(
            watermark_path,
            "per_connection_buffer_high_watermark_timeout",
        );
    }

    let address = ip_socket_address(cx, &at(path, "address"), address);
    let chain = match filter_chains.as_slice() {
        [] => {
            cx.invalid(at(path, "filter_chains"), "a listener needs a filter chain");
            None
        }
        [one] => filter_chain(cx, one, &item(path, "filter_chains", 0)),
        _ => {
            cx.unsupported(
                at(path, "filter_chains"),
                "several filter chains need filter_chain_match (not yet supported)",
            );
            None
        }
    };
    let address = address?;
    let name = if name.is_empty() {
        // Envoy invents a UUID; an address-based name is as unique within a
        // file and stays the same across reloads, so the listener is kept.
        format!("{}_{}", address.ip(), address.port())
    } else {
        name.clone()
    };
    Some(model::Listener {
        name,
        address,
        buffer_limit: u32_value(per_connection_buffer_limit_bytes, DEFAULT_BUFFER_LIMIT),
        filter_chain: chain?,
    })
}

fn filter_chain(cx: &mut Context, fc: &FilterChain, path: &str) -> Option<model::FilterChain> {
    let FilterChain {
        filter_chain_match,
        filters,
        use_proxy_proto,
        // Read only by extensions Strait does not run.
        metadata: _,
        transport_socket,
        // Bounds transport socket negotiation; without a transport socket
        // (refused below) there is none.
        transport_socket_connect_timeout: _,
        // Used by FCDS and stats only.
        name: _,
    } = fc;
    // An empty match matches every connection, as if it were absent.
    if filter_chain_match
        .as_ref()
        .is_some_and(|m| *m != FilterChainMatch::default())
    {
        cx.unsupported(at(path, "filter_chain_match"), "filter_chain_match");
    }
    cx.reject_unless_bool(path, "use_proxy_proto", use_proxy_proto, false);
    reject_set!(cx, path; transport_socket);

    if filters.is_empty() {
        cx.invalid(
            at(path, "filters"),
            "needs a terminal filter (http_connection_manager or tcp_proxy)",
        );
        return None;
    }
    let mut terminal = None;
    for (i, f) in filters.iter().enumerate() {
        let fpath = item(path, "filters", i);
        let Some(nf) = network_filter(cx, f, &fpath) else {
            continue;
        };
        if i + 1 == filters.len() {
            terminal = Some(nf);
        } else {
            cx.invalid(
                fpath,
                format!(
                    "{} is a terminal filter and must be last in the chain",
                    f.name
                ),
            );
        }
    }
    Some(model::FilterChain {
        terminal: terminal?,
    })
}

/// One network filter. Every filter Strait knows is terminal.
fn network_filter(cx: &mut Context, f: &Filter, path: &str) -> Option<model::NetworkFilter> {
    // Envoy picks the implementation by the config's type URL; the name is a
    // label (and the ECDS resource name, which is refused).
    let Filter {
        name: _,
        config_type,
    } = f;
    let any = match config_type {
        Some(filter::ConfigType::TypedConfig(any)) => any,
        Some(filter::ConfigType::ConfigDiscovery(_)) => {
            cx.unsupported(at(path, "config_discovery"), "config_discovery (ECDS)");
            return None;
        }
        None => {
            cx.invalid(at(path, "typed_config"), "is required");
            return None;
        }
    };
    let path = at(path, "typed_config");
    let ty = type_name(&any.type_url);
    if ty == HttpConnectionManager::full_name() {
        let hcm: HttpConnectionManager = decode_any(cx, &path, any)?;
        http::connection_manager(cx, &hcm, &path).map(model::NetworkFilter::Http)
    } else if ty == TcpProxy::full_name() {
        let tp: TcpProxy = decode_any(cx, &path, any)?;
        tcp_proxy(cx, &tp, &path).map(model::NetworkFilter::Tcp)
    } else {
        cx.unsupported(
            at(&path, "@type"),
            format!("network filter {}", any.type_url),
        );
        None
    }
}

fn tcp_proxy(cx: &mut Context, tp: &TcpProxy, path: &str) -> Option<model::TcpProxy> {
    let TcpProxy {
        stat_prefix,
        on_demand,
        metadata_match,
        idle_timeout,
        downstream_idle_timeout,
        upstream_idle_timeout,
        access_log,
        max_connect_attempts,
        backoff_options,
        hash_policy,
        tunneling_config,
        max_downstream_connection_duration,
        max_downstream_connection_duration_jitter_percentage,
        access_log_flush_interval,
        flush_access_log_on_connected,
        access_log_options,
        proxy_protocol_tlvs,
        proxy_protocol_tlv_merge_policy,
        upstream_connect_mode,
        max_early_data_bytes,
        check_drain_close,
        cluster_specifier,
    } = tp;
    reject_set!(cx, path;
        on_demand, metadata_match, downstream_idle_timeout, upstream_idle_timeout, access_log,
        backoff_options, hash_policy, tunneling_config, max_downstream_connection_duration,
        max_downstream_connection_duration_jitter_percentage, access_log_flush_interval,
        flush_access_log_on_connected, access_log_options, proxy_protocol_tlvs,
        proxy_protocol_tlv_merge_policy, upstream_connect_mode, max_early_data_bytes,
    );
    // Envoy's default is one attempt; writing it out changes nothing.
    if u32_value(max_connect_attempts, 1) != 1 {
        cx.unsupported(
            at(path, "max_connect_attempts"),
            "max_connect_attempts other than 1",
        );
    }
    cx.reject_unless_bool(path, "check_drain_close", check_drain_close, false);
    if stat_prefix.is_empty() {
        cx.invalid(at(path, "stat_prefix"), "must not be empty");
    }
    let idle_timeout = timeout(
        cx,
        &at(path, "idle_timeout"),
        idle_timeout,
        Some(DEFAULT_TCP_IDLE_TIMEOUT),
    );

    let cluster = match cluster_specifier {
        Some(ClusterSpecifier::Cluster(name)) => {
            let cpath = at(path, "cluster");
            if name.is_empty() {
                cx.invalid(cpath, "must not be empty");
                return None;
            }
            cx.require_cluster(cpath, name);
            model::TcpCluster::Single(name.clone())
        }
        Some(ClusterSpecifier::WeightedClusters(WeightedCluster { clusters })) => {
            let wpath = at(path, "weighted_clusters");
            if clusters.is_empty() {
                cx.invalid(at(&wpath, "clusters"), "needs at least one cluster");
                return None;
            }
            let mut out = Vec::with_capacity(clusters.len());
            for (i, cw) in clusters.iter().enumerate() {
                let cpath = item(&wpath, "clusters", i);
                let ClusterWeight {
                    name,
                    weight,
                    metadata_match,
                } = cw;
                reject_set!(cx, &cpath; metadata_match);
                if name.is_empty() {
                    cx.invalid(at(&cpath, "name"), "must not be empty");
                    continue;
                }
                if *weight == 0 {
                    cx.invalid(at(&cpath, "weight"), "must be at least 1");
                }
                cx.require_cluster(at(&cpath, "name"), name);
                out.push(model::WeightedCluster {
                    name: name.clone(),
                    weight: *weight,
                });
            }
            model::TcpCluster::Weighted(out)
        }
        None => {
            cx.invalid(
                at(path, "cluster"),
                "one of cluster or weighted_clusters is required",
            );
            return None;
        }
    };
    Some(model::TcpProxy {
        stat_prefix: stat_prefix.clone(),
        cluster,
        idle_timeout,
    })
}

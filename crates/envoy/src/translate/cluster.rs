//! Clusters: discovery type, endpoints, load balancing and upstream protocol.

mod lb;
mod resilience;
mod transport;

use std::{net::IpAddr, time::Duration};

use envoy_types::pb::envoy::{
    config::{
        cluster::v3::{
            Cluster,
            cluster::{
                ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbConfig, LbPolicy,
                OriginalDstLbConfig,
            },
        },
        core::v3::{
            BindConfig, HealthStatus, Http1ProtocolOptions, Http2ProtocolOptions,
            HttpProtocolOptions, Locality, SocketAddress, socket_address::PortSpecifier,
        },
        endpoint::v3::{
            ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
            endpoint::HealthCheckConfig, lb_endpoint,
        },
    },
    extensions::upstreams::http::v3::{
        HttpProtocolOptions as UpstreamHttpOptions,
        http_protocol_options::{
            ExplicitHttpConfig, UpstreamProtocolOptions, UseDownstreamHttpConfig,
            explicit_http_config::ProtocolConfig,
        },
    },
};

use super::{
    Context, at, decode_any,
    inert::{Slot, effective_type_url, inert},
    item, positive_duration, socket_address, u32_value,
};
use crate::model;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(5);
/// Envoy's default `per_connection_buffer_limit_bytes`.
const DEFAULT_BUFFER_LIMIT: u32 = 1024 * 1024;
/// Envoy's default `original_dst_lb_config.http_header_name`.
const DEFAULT_ORIGINAL_DST_HEADER: &str = "x-envoy-original-dst-host";
/// The keys Envoy accepts for the upstream HTTP protocol options: the type's
/// name and the extension's name.
const HTTP_OPTIONS_KEYS: [&str; 2] = [
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "envoy.upstreams.http.http_protocol_options",
];

pub(super) fn cluster(cx: &mut Context, c: &Cluster, path: &str) -> Option<model::Cluster> {
    let Cluster {
        transport_socket_matches,
        transport_socket_matcher,
        name,
        // Names stats only.
        alt_stat_name: _,
        stats_matcher,
        eds_cluster_config,
        connect_timeout,
        per_connection_buffer_limit_bytes,
        per_connection_buffer_high_watermark_timeout,
        lb_policy,
        load_assignment,
        health_checks,
        max_requests_per_connection,
        circuit_breakers,
        upstream_http_protocol_options,
        common_http_protocol_options,
        http_protocol_options,
        http2_protocol_options,
        typed_extension_protocol_options,
        dns_refresh_rate,
        dns_jitter,
        dns_failure_refresh_rate,
        respect_dns_ttl,
        dns_lookup_family,
        dns_resolvers,
        use_tcp_for_dns_lookups,
        dns_resolution_config,
        typed_dns_resolver_config,
        wait_for_warm_on_init,
        outlier_detection,
        cleanup_interval,
        upstream_bind_config,
        lb_subset_config,
        common_lb_config,
        transport_socket,
        // Read only by filters and extensions Strait does not run.
        metadata: _,
        protocol_selection,
        upstream_connection_options,
        close_connections_on_host_health_failure,
        ignore_health_on_host_removal,
        filters,
        load_balancing_policy,
        lrs_server,
        lrs_report_endpoint_metrics,
        track_timeout_budgets,
        upstream_config,
        track_cluster_stats,
        preconnect_policy,
        connection_pool_per_downstream_connection,
        queuing_policies,
        cluster_discovery_type,
        lb_config,
    } = c;
    reject_set!(cx, path;
        transport_socket_matcher, stats_matcher,
        per_connection_buffer_high_watermark_timeout,
        upstream_http_protocol_options, dns_jitter,
        dns_failure_refresh_rate, dns_resolvers, use_tcp_for_dns_lookups,
        dns_resolution_config, typed_dns_resolver_config,
        lb_subset_config,
        close_connections_on_host_health_failure,
        ignore_health_on_host_removal, load_balancing_policy, lrs_server,
        lrs_report_endpoint_metrics, track_timeout_budgets, upstream_config, track_cluster_stats,
        preconnect_policy,
        connection_pool_per_downstream_connection, queuing_policies,
    );
    // Re-resolving on the answer's TTL instead of `dns_refresh_rate`:
    // Strait resolves through the system resolver, which reports no TTL, so
    // names are re-resolved every `dns_refresh_rate`, as Envoy does when a
    // TTL is unknown. Only the timing of refreshes differs.
    let _ = respect_dns_ttl;
    let mut cluster_filters = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let fpath = item(path, "filters", i);
        match &f.typed_config {
            Some(any) if inert(any, Slot::ClusterFilter).is_some() => {}
            Some(any)
                if super::istio::recognise(any)
                    .is_some_and(|(kind, _)| kind == super::istio::TCP_MX) =>
            {
                // The upstream side of Istio's TCP metadata exchange, run
                // by the TCP proxy on this cluster's connections.
                let config = super::istio::recognise(any)
                    .map(|(_, c)| c)
                    .unwrap_or_default();
                let cpath = at(&fpath, "typed_config");
                if let Some(e) = super::istio::tcp_metadata_exchange(cx, &config, &cpath) {
                    cluster_filters.push(e);
                }
            }
            Some(any) => cx.unsupported(
                at(&fpath, "typed_config.@type"),
                format!("cluster filter {}", effective_type_url(any)),
            ),
            None => cx.invalid(at(&fpath, "typed_config"), "is required"),
        }
    }
    // Warming waits for the first DNS answer, which Strait always does.
    cx.reject_unless_bool(path, "wait_for_warm_on_init", wait_for_warm_on_init, true);
    let before = cx.problems.len();
    if name.is_empty() {
        cx.invalid(at(path, "name"), "must not be empty");
    }
    let original_dst = matches!(
        cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(t)) if *t == DiscoveryType::OriginalDst as i32
    );
    let (lb_policy, original_dst, slow_start) = if original_dst {
        // The cluster picks the host itself; no balancer is ever consulted.
        let od = original_dst_config(cx, path, *lb_policy, lb_config);
        (model::LbPolicy::RoundRobin, od, None)
    } else {
        let (policy, slow_start) = lb::policy(cx, path, *lb_policy, lb_config);
        (policy, None, slow_start)
    };
    // How often Envoy forgets unused ORIGINAL_DST hosts: memory upkeep only
    // (Strait bounds those hosts instead); meaningless for other types.
    if cleanup_interval.is_some() && original_dst.is_none() {
        cx.invalid(
            at(path, "cleanup_interval"),
            "is only for ORIGINAL_DST clusters",
        );
    }
    let source_address = upstream_bind_config
        .as_ref()
        .and_then(|b| bind_config(cx, &at(path, "upstream_bind_config"), b));
    let circuit_breakers =
        resilience::circuit_breakers(cx, &at(path, "circuit_breakers"), circuit_breakers);
    let outlier_detection = outlier_detection
        .as_ref()
        .map(|od| resilience::outlier_detection(cx, &at(path, "outlier_detection"), od));
    // Envoy runs each checker on its own schedule and thresholds, all
    // moving the same host flag; Strait runs one.
    if health_checks.len() > 1 {
        cx.unsupported(
            item(path, "health_checks", 1),
            "more than one health check per cluster",
        );
    }
    let health_checks = health_checks
        .iter()
        .enumerate()
        .filter_map(|(i, hc)| resilience::health_check(cx, &item(path, "health_checks", i), hc))
        .collect();

    let discovery = match cluster_discovery_type {
        // proto3 cannot tell an omitted `type` from STATIC, its zero value.
        None => Some(model::Discovery::Static),
        Some(ClusterDiscoveryType::Type(t)) => match DiscoveryType::try_from(*t) {
            // STATIC ignores the DNS fields, as Envoy does.
            Ok(DiscoveryType::Static) => Some(model::Discovery::Static),
            Ok(t @ (DiscoveryType::StrictDns | DiscoveryType::LogicalDns)) => {
                let refresh_rate = positive_duration(
                    cx,
                    &at(path, "dns_refresh_rate"),
                    dns_refresh_rate,
                    DEFAULT_DNS_REFRESH_RATE,
                );
                let lookup_family =
                    lookup_family(cx, &at(path, "dns_lookup_family"), *dns_lookup_family);
                Some(if t == DiscoveryType::StrictDns {
                    model::Discovery::StrictDns {
                        refresh_rate,
                        lookup_family,
                    }
                } else {
                    model::Discovery::LogicalDns {
                        refresh_rate,
                        lookup_family,
                    }
                })
            }
            Ok(DiscoveryType::OriginalDst) => {
                if load_assignment.is_some() {
                    cx.invalid(
                        at(path, "load_assignment"),
                        "an ORIGINAL_DST cluster has no configured endpoints",
                    );
                }
                original_dst
            }
            Ok(DiscoveryType::Eds) => super::dynamic::eds(
                cx,
                &at(path, "eds_cluster_config"),
                name,
                eds_cluster_config.as_ref(),
            ),
            Err(_) => {
                cx.invalid(at(path, "type"), format!("unknown cluster type {t}"));
                None
            }
        },
        Some(ClusterDiscoveryType::ClusterType(_)) => {
            cx.unsupported(at(path, "cluster_type"), "custom cluster_type");
            None
        }
    };
    let is_static = matches!(discovery, Some(model::Discovery::Static));
    let la_path = at(path, "load_assignment");
    if !matches!(discovery, Some(model::Discovery::Eds { .. })) && eds_cluster_config.is_some() {
        cx.invalid(
            at(path, "eds_cluster_config"),
            "is only for clusters of type EDS",
        );
    }
    if matches!(discovery, Some(model::Discovery::Eds { .. })) && load_assignment.is_some() {
        // Envoy ignores it for EDS; refusing keeps a file from suggesting
        // endpoints that are never used.
        cx.invalid(
            &la_path,
            "is not used by EDS clusters (endpoints come from EDS)",
        );
    }
    let pipe = load_assignment
        .as_ref()
        .and_then(|la| pipe_endpoint(cx, la, &la_path, is_static));
    let endpoints = match load_assignment {
        Some(_) if pipe.is_some() => Vec::new(),
        Some(la) => self::load_assignment(cx, la, &la_path, is_static),
        // A cluster without hosts is valid; every request to it fails.
        None => Vec::new(),
    };
    if matches!(discovery, Some(model::Discovery::LogicalDns { .. })) && endpoints.len() != 1 {
        // As Envoy: a logical DNS cluster is one name.
        cx.invalid(
            &la_path,
            format!(
                "LOGICAL_DNS clusters need exactly one endpoint, not {}",
                endpoints.len()
            ),
        );
    }
    let tcp_keepalive = match upstream_connection_options {
        None => None,
        Some(o) if !is_keepalive_only(o) => {
            cx.unsupported(
                at(path, "upstream_connection_options"),
                "upstream_connection_options other than tcp_keepalive",
            );
            None
        }
        // TCP keep-alive is a TCP option: a unix socket has none, and the
        // control plane's own gRPC keep-alive notices a dead peer.
        Some(_) if pipe.is_some() => None,
        Some(o) => o.tcp_keepalive.as_ref().map(|k| model::TcpKeepalive {
            probes: k.keepalive_probes.as_ref().map(|v| v.value),
            time: k
                .keepalive_time
                .as_ref()
                .map(|v| Duration::from_secs(u64::from(v.value))),
            interval: k
                .keepalive_interval
                .as_ref()
                .map(|v| Duration::from_secs(u64::from(v.value))),
        }),
    };
    let policy_path = at(&la_path, "policy");
    let mut lb_common = lb::common(
        cx,
        path,
        common_lb_config,
        load_assignment
            .as_ref()
            .and_then(|la| la.policy.as_ref())
            .map(|p| (p, policy_path.as_str())),
    );
    lb_common.slow_start = slow_start;
    let mut max_streams = None;
    let (mut protocol, typed_common) = protocol(
        cx,
        path,
        http_protocol_options,
        http2_protocol_options,
        typed_extension_protocol_options,
        &mut max_streams,
    );
    // The deprecated `protocol_selection` (Istio up to about 1.10 sets
    // USE_DOWNSTREAM_PROTOCOL on its passthrough clusters): the legacy
    // spelling of `use_downstream_protocol_config`.
    match *protocol_selection {
        0 => {}
        1 if typed_extension_protocol_options
            .keys()
            .any(|k| HTTP_OPTIONS_KEYS.contains(&k.as_str())) =>
        {
            cx.invalid(
                at(path, "protocol_selection"),
                "cannot be combined with typed_extension_protocol_options",
            );
        }
        1 => protocol = model::UpstreamProtocol::Downstream,
        other => cx.invalid(
            at(path, "protocol_selection"),
            format!("unknown value {other}"),
        ),
    }
    let connect_timeout = positive_duration(
        cx,
        &at(path, "connect_timeout"),
        connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    );
    if common_http_protocol_options.is_some() && typed_common.is_some() {
        cx.invalid(
            at(path, "common_http_protocol_options"),
            "cannot be combined with typed_extension_protocol_options",
        );
    }
    let (common_path, common) = match (&typed_common, common_http_protocol_options) {
        (Some((p, o)), _) => (p.clone(), Some(o)),
        (None, Some(o)) => (at(path, "common_http_protocol_options"), Some(o)),
        (None, None) => (String::new(), None),
    };
    let mut pool = resilience::pool_options(
        cx,
        &common_path,
        common,
        max_requests_per_connection.as_ref().map(|v| v.value),
    );
    pool.max_concurrent_streams = max_streams;
    let tls = match transport_socket {
        Some(ts) => super::tls::upstream(cx, ts, &at(path, "transport_socket")).flatten(),
        None => None,
    };
    let mut tls = tls;
    let mut transport_socket_matches = transport::matches(cx, path, transport_socket_matches);
    if cluster_filters.is_empty() {
        // Without the exchange on the cluster, its connections must not
        // offer the protocol that starts it.
        let all = tls.iter_mut().chain(
            transport_socket_matches
                .iter_mut()
                .filter_map(|m| m.tls.as_mut()),
        );
        for t in all {
            super::tls::without_peer_exchange(&mut t.common.alpn);
        }
    }
    if cx.problems.len() != before {
        return None;
    }
    Some(model::Cluster {
        name: name.clone(),
        discovery: discovery?,
        connect_timeout,
        lb_policy,
        endpoints,
        protocol,
        buffer_limit: u32_value(per_connection_buffer_limit_bytes, DEFAULT_BUFFER_LIMIT),
        lb_common,
        circuit_breakers,
        outlier_detection,
        health_checks,
        pool,
        tls,
        pipe,
        transport_socket_matches,
        source_address,
        tcp_keepalive,
        filters: cluster_filters,
    })
}

fn is_keepalive_only(
    o: &envoy_types::pb::envoy::config::cluster::v3::UpstreamConnectionOptions,
) -> bool {
    let envoy_types::pb::envoy::config::cluster::v3::UpstreamConnectionOptions {
        tcp_keepalive: _,
        set_local_interface_name_on_upstream_connections,
        happy_eyeballs_config,
    } = o;
    !set_local_interface_name_on_upstream_connections && happy_eyeballs_config.is_none()
}

/// The unix socket path when the assignment's endpoint is a `pipe`
/// address. Such a cluster must be STATIC with exactly that one endpoint:
/// it is how Istio names the local control plane (`xds-grpc`) and secret
/// server (`sds-grpc`), which only Strait's gRPC clients dial. `None` (and
/// nothing recorded) when no endpoint is a pipe.
fn pipe_endpoint(
    cx: &mut Context,
    la: &ClusterLoadAssignment,
    path: &str,
    is_static: bool,
) -> Option<String> {
    let all: Vec<(String, &LbEndpoint)> =
        la.endpoints
            .iter()
            .enumerate()
            .flat_map(|(i, lle)| {
                lle.lb_endpoints.iter().enumerate().map(move |(j, lbe)| {
                    (item(&item(path, "endpoints", i), "lb_endpoints", j), lbe)
                })
            })
            .collect();
    fn pipe_of(lbe: &LbEndpoint) -> Option<&envoy_types::pb::envoy::config::core::v3::Pipe> {
        match &lbe.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address:
                    Some(envoy_types::pb::envoy::config::core::v3::Address {
                        address:
                            Some(envoy_types::pb::envoy::config::core::v3::address::Address::Pipe(p)),
                    }),
                ..
            })) => Some(p),
            _ => None,
        }
    }
    let (epath, pipe) = all
        .iter()
        .find_map(|(p, lbe)| pipe_of(lbe).map(|pipe| (p.clone(), pipe)))?;
    let ppath = at(&epath, "endpoint.address.pipe");
    if !is_static {
        cx.unsupported(ppath, "pipe addresses outside STATIC clusters");
        return None;
    }
    if all.len() != 1 {
        cx.unsupported(ppath, "a pipe address must be its cluster's only endpoint");
        return None;
    }
    let envoy_types::pb::envoy::config::core::v3::Pipe {
        path: socket,
        // File permissions for a listening socket Envoy creates; a client
        // connecting to the socket has none to set.
        mode: _,
    } = pipe;
    if socket.is_empty() {
        cx.invalid(at(&ppath, "path"), "must not be empty");
        return None;
    }
    if socket.starts_with('@') {
        cx.unsupported(at(&ppath, "path"), "abstract unix socket names");
        return None;
    }
    Some(socket.clone())
}

/// `lb_policy` and `original_dst_lb_config` of an ORIGINAL_DST cluster,
/// which Envoy requires to be CLUSTER_PROVIDED.
fn original_dst_config(
    cx: &mut Context,
    path: &str,
    lb_policy: i32,
    lb_config: &Option<LbConfig>,
) -> Option<model::Discovery> {
    if lb_policy != LbPolicy::ClusterProvided as i32 {
        cx.invalid(
            at(path, "lb_policy"),
            "an ORIGINAL_DST cluster needs lb_policy CLUSTER_PROVIDED",
        );
        return None;
    }
    let mut out = model::Discovery::OriginalDst {
        use_http_header: false,
        http_header_name: DEFAULT_ORIGINAL_DST_HEADER.to_owned(),
    };
    match lb_config {
        None => {}
        Some(LbConfig::OriginalDstLbConfig(OriginalDstLbConfig {
            use_http_header,
            http_header_name,
            upstream_port_override,
            metadata_key,
        })) => {
            let cpath = at(path, "original_dst_lb_config");
            reject_set!(cx, &cpath; upstream_port_override, metadata_key);
            out = model::Discovery::OriginalDst {
                use_http_header: *use_http_header,
                http_header_name: if http_header_name.is_empty() {
                    DEFAULT_ORIGINAL_DST_HEADER.to_owned()
                } else {
                    http_header_name.to_ascii_lowercase()
                },
            };
        }
        Some(_) => {
            cx.invalid(
                path,
                "an ORIGINAL_DST cluster takes only original_dst_lb_config",
            );
        }
    }
    Some(out)
}

/// `upstream_bind_config`: only a source IP (port 0) is supported.
fn bind_config(cx: &mut Context, path: &str, b: &BindConfig) -> Option<IpAddr> {
    let BindConfig {
        source_address,
        freebind,
        socket_options,
        extra_source_addresses,
        additional_source_addresses,
        local_address_selector,
        // Only checks namespaces of source addresses, which Strait refuses.
        validate_network_namespaces: _,
    } = b;
    reject_set!(cx, path; socket_options, extra_source_addresses,
        additional_source_addresses, local_address_selector);
    cx.reject_unless_bool(path, "freebind", freebind, false);
    let spath = at(path, "source_address");
    let Some(SocketAddress {
        protocol,
        address,
        // Only for a custom resolver, which `resolver_name` below refuses.
        ipv4_compat: _,
        resolver_name,
        network_namespace_filepath,
        port_specifier,
    }) = source_address
    else {
        cx.invalid(spath, "is required");
        return None;
    };
    reject_set!(cx, &spath; resolver_name, network_namespace_filepath);
    if *protocol != 0 {
        cx.unsupported(at(&spath, "protocol"), "a UDP source address");
    }
    match port_specifier {
        None | Some(PortSpecifier::PortValue(0)) => {}
        Some(_) => cx.unsupported(at(&spath, "port_value"), "a fixed source port"),
    }
    match address.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            cx.invalid(at(&spath, "address"), "must be an IP address");
            None
        }
    }
}

fn lookup_family(cx: &mut Context, path: &str, family: i32) -> model::DnsLookupFamily {
    match DnsLookupFamily::try_from(family) {
        Ok(DnsLookupFamily::Auto) => model::DnsLookupFamily::Auto,
        Ok(DnsLookupFamily::V4Only) => model::DnsLookupFamily::V4Only,
        Ok(DnsLookupFamily::V6Only) => model::DnsLookupFamily::V6Only,
        Ok(DnsLookupFamily::V4Preferred) => model::DnsLookupFamily::V4Preferred,
        Ok(DnsLookupFamily::All) => model::DnsLookupFamily::All,
        Err(_) => {
            cx.invalid(path, format!("unknown dns_lookup_family {family}"));
            model::DnsLookupFamily::Auto
        }
    }
}

/// HTTP/2 upstream options: `max_concurrent_streams` is honoured (Envoy's
/// default, 2^31 - 1, means unlimited); any other non-default option would
/// change behaviour and is refused.
fn http2_options(cx: &mut Context, path: &str, o: &Http2ProtocolOptions) -> Option<u32> {
    let mut rest = o.clone();
    let streams = rest.max_concurrent_streams.take().map(|v| v.value);
    if rest != Http2ProtocolOptions::default() {
        cx.unsupported(
            path,
            "http2_protocol_options other than max_concurrent_streams",
        );
    }
    if streams == Some(0) {
        cx.invalid(at(path, "max_concurrent_streams"), "must be at least 1");
    }
    streams.filter(|&n| n > 0 && n < i32::MAX as u32)
}

/// The upstream protocol: HTTP/1.1 unless `typed_extension_protocol_options`
/// or the deprecated cluster-level `http2_protocol_options` say HTTP/2.
fn protocol(
    cx: &mut Context,
    path: &str,
    http1: &Option<Http1ProtocolOptions>,
    http2: &Option<Http2ProtocolOptions>,
    typed: &std::collections::HashMap<String, envoy_types::pb::google::protobuf::Any>,
    max_streams: &mut Option<u32>,
) -> (
    model::UpstreamProtocol,
    Option<(String, HttpProtocolOptions)>,
) {
    if http1
        .as_ref()
        .is_some_and(|o| *o != Http1ProtocolOptions::default())
    {
        cx.unsupported(at(path, "http_protocol_options"), "http_protocol_options");
    }
    let mut protocol = None;
    let mut common = None;
    if let Some(o) = http2 {
        *max_streams = http2_options(cx, &at(path, "http2_protocol_options"), o);
        protocol = Some(model::UpstreamProtocol::Http2);
    }
    // Sorted so errors come out in the same order on every run.
    let mut keys: Vec<&String> = typed.keys().collect();
    keys.sort_unstable();
    for key in keys {
        let kpath = at(
            path,
            &format!("typed_extension_protocol_options[\"{key}\"]"),
        );
        let Some(any) = typed.get(key) else { continue };
        if !HTTP_OPTIONS_KEYS.contains(&key.as_str()) {
            cx.unsupported(kpath, format!("protocol options {key}"));
            continue;
        }
        if http1.is_some() || http2.is_some() {
            cx.invalid(
                kpath.clone(),
                "cannot be combined with the deprecated http_protocol_options/http2_protocol_options",
            );
        }
        if let Some(o) = decode_any::<UpstreamHttpOptions>(cx, &kpath, any) {
            if let Some(p) = upstream_http_options(cx, &kpath, &o, max_streams) {
                protocol = Some(p);
            }
            if let Some(c) = o.common_http_protocol_options {
                common = Some((at(&kpath, "common_http_protocol_options"), c));
            }
        }
    }
    (protocol.unwrap_or(model::UpstreamProtocol::Http1), common)
}

fn upstream_http_options(
    cx: &mut Context,
    path: &str,
    o: &UpstreamHttpOptions,
    max_streams: &mut Option<u32>,
) -> Option<model::UpstreamProtocol> {
    let UpstreamHttpOptions {
        common_http_protocol_options,
        upstream_http_protocol_options,
        http_filters,
        header_validation_config,
        outlier_detection,
        request_mirror_policies,
        hash_policy,
        retry_policy,
        upstream_protocol_options,
    } = o;
    // Read by the caller, which owns the pool options.
    let _ = common_http_protocol_options;
    reject_set!(cx, path;
        upstream_http_protocol_options, http_filters,
        header_validation_config, outlier_detection, request_mirror_policies, hash_policy,
        retry_policy,
    );
    let epath = at(path, "explicit_http_config");
    match upstream_protocol_options {
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
            protocol_config,
        })) => match protocol_config {
            Some(ProtocolConfig::HttpProtocolOptions(o)) => {
                if *o != Http1ProtocolOptions::default() {
                    let field = "http_protocol_options";
                    cx.unsupported(at(&epath, field), field);
                }
                Some(model::UpstreamProtocol::Http1)
            }
            Some(ProtocolConfig::Http2ProtocolOptions(o)) => {
                *max_streams = http2_options(cx, &at(&epath, "http2_protocol_options"), o);
                Some(model::UpstreamProtocol::Http2)
            }
            Some(ProtocolConfig::Http3ProtocolOptions(_)) => {
                cx.unsupported(at(&epath, "http3_protocol_options"), "HTTP/3 upstreams");
                None
            }
            None => {
                cx.invalid(
                    epath,
                    "needs http_protocol_options or http2_protocol_options",
                );
                None
            }
        },
        Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(UseDownstreamHttpConfig {
            http_protocol_options,
            http2_protocol_options,
            http3_protocol_options,
        })) => {
            let dpath = at(path, "use_downstream_protocol_config");
            reject_set!(cx, &dpath; http3_protocol_options);
            if http_protocol_options
                .as_ref()
                .is_some_and(|o| *o != Http1ProtocolOptions::default())
            {
                cx.unsupported(at(&dpath, "http_protocol_options"), "http_protocol_options");
            }
            if let Some(o) = http2_protocol_options {
                *max_streams = http2_options(cx, &at(&dpath, "http2_protocol_options"), o);
            }
            Some(model::UpstreamProtocol::Downstream)
        }
        Some(UpstreamProtocolOptions::AutoConfig(_)) => {
            cx.unsupported(at(path, "auto_config"), "auto_config");
            None
        }
        None => {
            cx.invalid(
                path,
                "needs one of explicit_http_config, use_downstream_protocol_config, auto_config",
            );
            None
        }
    }
}

pub(super) fn load_assignment(
    cx: &mut Context,
    la: &ClusterLoadAssignment,
    path: &str,
    is_static: bool,
) -> Vec<model::Endpoint> {
    let ClusterLoadAssignment {
        cluster_name,
        endpoints,
        named_endpoints,
        policy,
    } = la;
    // `policy` is read by the caller with `common_lb_config`.
    let _ = policy;
    reject_set!(cx, path; named_endpoints);
    if cluster_name.is_empty() {
        cx.invalid(at(path, "cluster_name"), "must not be empty");
    }
    let mut out = Vec::new();
    for (i, lle) in endpoints.iter().enumerate() {
        let lpath = item(path, "endpoints", i);
        let LocalityLbEndpoints {
            locality,
            metadata,
            lb_endpoints,
            load_balancing_weight,
            priority,
            proximity,
            lb_config,
        } = lle;
        reject_set!(cx, &lpath; proximity, lb_config);
        // Otherwise read only by extensions Strait does not run.
        transport::check_locality_metadata(cx, &lpath, metadata);
        let locality = locality
            .as_ref()
            .map_or_else(model::Locality::default, |l| {
                let Locality {
                    region,
                    zone,
                    sub_zone,
                } = l;
                model::Locality {
                    region: region.clone(),
                    zone: zone.clone(),
                    sub_zone: sub_zone.clone(),
                }
            });
        // Envoy requires priorities to be contiguous from 0; a gap would
        // leave a level with no hosts, which the priority maths treats as
        // fully unhealthy anyway.
        if *priority > 127 {
            cx.invalid(at(&lpath, "priority"), "must be at most 127");
        }
        let locality_weight = u32_value(load_balancing_weight, 0);
        for (j, lbe) in lb_endpoints.iter().enumerate() {
            if let Some(mut e) = lb_endpoint(cx, lbe, &item(&lpath, "lb_endpoints", j), is_static) {
                e.priority = *priority;
                e.locality = locality.clone();
                e.locality_weight = locality_weight;
                out.push(e);
            }
        }
    }
    out
}

fn lb_endpoint(
    cx: &mut Context,
    lbe: &LbEndpoint,
    path: &str,
    is_static: bool,
) -> Option<model::Endpoint> {
    let LbEndpoint {
        health_status,
        metadata,
        load_balancing_weight,
        host_identifier,
    } = lbe;
    let health = match HealthStatus::try_from(*health_status) {
        Ok(HealthStatus::Unknown) => model::EndpointHealth::Unknown,
        Ok(HealthStatus::Healthy) => model::EndpointHealth::Healthy,
        Ok(HealthStatus::Unhealthy) => model::EndpointHealth::Unhealthy,
        Ok(HealthStatus::Draining) => model::EndpointHealth::Draining,
        Ok(HealthStatus::Timeout) => model::EndpointHealth::Timeout,
        Ok(HealthStatus::Degraded) => model::EndpointHealth::Degraded,
        Err(_) => {
            cx.invalid(
                at(path, "health_status"),
                format!("unknown health_status {health_status}"),
            );
            model::EndpointHealth::Unknown
        }
    };
    let weight = u32_value(load_balancing_weight, 1);
    if weight == 0 {
        cx.invalid(at(path, "load_balancing_weight"), "must be at least 1");
    }
    let e = match host_identifier {
        Some(lb_endpoint::HostIdentifier::Endpoint(e)) => e,
        Some(lb_endpoint::HostIdentifier::EndpointName(_)) => {
            cx.unsupported(at(path, "endpoint_name"), "endpoint_name");
            return None;
        }
        None => {
            cx.invalid(at(path, "endpoint"), "is required");
            return None;
        }
    };
    let transport_metadata = transport::endpoint_metadata(cx, &at(path, "metadata"), metadata);
    let path = at(path, "endpoint");
    let Endpoint {
        address,
        health_check_config,
        // Used by auto host rewrite (refused) and admin output only.
        hostname: _,
        additional_addresses,
        // Names the host in stats only.
        observability_name: _,
    } = e;
    // A health check port or address other than the endpoint's own is not
    // supported: checks go to the endpoint's address.
    reject_set!(cx, &path; additional_addresses);
    // Istio writes an empty `health_check_config: {}`, which changes
    // nothing; a port or address of its own is not supported (checks go to
    // the endpoint's address).
    if health_check_config
        .as_ref()
        .is_some_and(|h| *h != HealthCheckConfig::default())
    {
        cx.unsupported(at(&path, "health_check_config"), "health_check_config");
    }
    let apath = at(&path, "address");
    let (host, port) = socket_address(cx, &apath, address)?;
    let host_path = at(&apath, "socket_address.address");
    if is_static && host.parse::<IpAddr>().is_err() {
        cx.invalid(
            host_path,
            format!("'{host}' is not an IP address; STATIC clusters need IP addresses (use STRICT_DNS for names)"),
        );
        return None;
    }
    if port == 0 {
        cx.invalid(
            at(&apath, "socket_address.port_value"),
            "an upstream port must not be 0",
        );
        return None;
    }
    let mut ep = model::Endpoint::new(host, port, weight);
    ep.health = health;
    ep.transport_metadata = transport_metadata;
    Some(ep)
}

//! Listeners, their filter chains and `filter_chain_match`, listener
//! filters (TLS and HTTP inspectors, original destination), and the TCP
//! proxy network filter.

use std::time::Duration;

use envoy_types::pb::envoy::{
    config::listener::v3::{
        Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
        ListenerFilterChainMatchPredicate, filter,
        filter_chain_match::ConnectionSourceType,
        listener::DeprecatedV1,
        listener_filter,
        listener_filter_chain_match_predicate::{MatchSet, Rule},
    },
    extensions::filters::listener::{
        http_inspector::v3::HttpInspector, original_dst::v3::OriginalDst,
        tls_inspector::v3::TlsInspector,
    },
    extensions::filters::network::{
        http_connection_manager::v3::HttpConnectionManager,
        local_ratelimit::v3::LocalRateLimit as NetworkLocalRateLimit,
        rbac::v3::Rbac as NetworkRbac,
        tcp_proxy::v3::{
            TcpProxy,
            tcp_proxy::{ClusterSpecifier, WeightedCluster, weighted_cluster::ClusterWeight},
        },
    },
};
use prost::Name;

use super::{
    Context, access_log, at, decode_any, http,
    inert::{Slot, effective_type_url, inert},
    ip_socket_address, item, timeout, type_name, u32_value,
};
use crate::model;
use crate::model::{extension::Extension, predicate::ListenerFilterPredicate, tls::CidrRange};

/// Envoy's default `per_connection_buffer_limit_bytes`.
const DEFAULT_BUFFER_LIMIT: u32 = 1024 * 1024;
/// Envoy's default TCP proxy `idle_timeout`.
const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's default `listener_filters_timeout`.
const DEFAULT_LISTENER_FILTERS_TIMEOUT: Duration = Duration::from_secs(15);

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
        listener_filters_timeout,
        continue_on_listener_filters_timeout,
        transparent,
        freebind,
        socket_options,
        tcp_fast_open_queue_length,
        // Informational: Envoy uses it for stats and extensions, not
        // routing; kept for `/drain_listeners?inboundonly`.
        traffic_direction,
        udp_listener_config,
        api_listener,
        // Only decides which worker accepts a connection (Istio sets exact
        // balance on its virtual listeners); no effect on what is served.
        connection_balance_config: _,
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
        ignore_global_conn_limit,
        bypass_overload_manager: _,
        tcp_keepalive,
        listener_specifier,
    } = l;
    reject_set!(cx, path;
        additional_addresses, stats_matcher, fcds_config, filter_chain_matcher,
        drain_type, socket_options, udp_listener_config, api_listener,
        tcp_backlog_size, enable_mptcp, tcp_keepalive,
        listener_specifier,
    );
    let access_logs = access_log::access_logs(cx, path, access_log, access_log::Tracing::None);
    cx.reject_unless_bool(path, "transparent", transparent, false);
    cx.reject_unless_bool(path, "freebind", freebind, false);
    // Istio before 1.11 wrote `deprecated_v1.bind_to_port`; Envoy binds
    // only when neither field says false.
    let bind = bind_to_port.as_ref().is_none_or(|b| b.value)
        && deprecated_v1
            .as_ref()
            .and_then(|DeprecatedV1 { bind_to_port }| bind_to_port.as_ref())
            .is_none_or(|b| b.value);
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
    if filter_chains.is_empty() && default_filter_chain.is_none() {
        cx.invalid(at(path, "filter_chains"), "a listener needs a filter chain");
    }
    cx.direction = direction(*traffic_direction);
    let before = cx.problems.len();
    let chains: Vec<_> = filter_chains
        .iter()
        .enumerate()
        .filter_map(|(i, fc)| filter_chain(cx, fc, &item(path, "filter_chains", i)))
        .collect();
    let default_chain = default_filter_chain
        .as_ref()
        .map(|fc| filter_chain(cx, fc, &at(path, "default_filter_chain")));
    // Envoy refuses two chains with the same match: one could never win.
    for (i, a) in chains.iter().enumerate() {
        if chains[..i].iter().any(|b| b.matcher == a.matcher) {
            cx.invalid(
                item(path, "filter_chains", i),
                "another filter chain has the same filter_chain_match",
            );
        }
    }
    let mut filters = model::ListenerFilters {
        timeout: timeout(
            cx,
            &at(path, "listener_filters_timeout"),
            listener_filters_timeout,
            Some(DEFAULT_LISTENER_FILTERS_TIMEOUT),
        ),
        continue_on_timeout: *continue_on_listener_filters_timeout,
        ..model::ListenerFilters::default()
    };
    for (i, f) in listener_filters.iter().enumerate() {
        listener_filter(cx, f, &item(path, "listener_filters", i), &mut filters);
    }
    let chains_ok = cx.problems.len() == before;
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
        filter_chains: if chains_ok { chains } else { return None },
        default_filter_chain: default_chain.flatten(),
        listener_filters: filters,
        ignore_global_conn_limit: *ignore_global_conn_limit,
        bind_to_port: bind,
        use_original_dst: use_original_dst.as_ref().is_some_and(|b| b.value),
        direction: direction(*traffic_direction),
        access_logs,
    })
}

fn direction(d: i32) -> model::TrafficDirection {
    use envoy_types::pb::envoy::config::core::v3::TrafficDirection as D;
    match D::try_from(d) {
        Ok(D::Inbound) => model::TrafficDirection::Inbound,
        Ok(D::Outbound) => model::TrafficDirection::Outbound,
        Ok(D::Unspecified) | Err(_) => model::TrafficDirection::Unspecified,
    }
}

/// One `listener_filters` entry: the TLS and HTTP inspectors (each with
/// its `filter_disabled`) and the original destination filter are known.
/// A name-only listener filter's config, as Envoy once looked it up: the
/// built-in inspectors, under their current and older names.
fn by_name_default(name: &str) -> Option<envoy_types::pb::google::protobuf::Any> {
    let ty = match name
        .strip_prefix("envoy.filters.listener.")
        .or_else(|| name.strip_prefix("envoy.listener."))
    {
        Some("original_dst") => OriginalDst::full_name(),
        Some("tls_inspector") => TlsInspector::full_name(),
        Some("http_inspector") => HttpInspector::full_name(),
        _ => return None,
    };
    Some(envoy_types::pb::google::protobuf::Any {
        type_url: format!("type.googleapis.com/{ty}"),
        value: Vec::new(),
    })
}

fn listener_filter(
    cx: &mut Context,
    f: &ListenerFilter,
    path: &str,
    out: &mut model::ListenerFilters,
) {
    let ListenerFilter {
        // A label; the type URL picks the implementation.
        name,
        filter_disabled,
        config_type,
    } = f;
    let disabled = filter_disabled
        .as_ref()
        .and_then(|p| predicate(cx, p, &at(path, "filter_disabled")));
    let by_name;
    let any = match config_type {
        Some(listener_filter::ConfigType::TypedConfig(any)) => any,
        Some(listener_filter::ConfigType::ConfigDiscovery(_)) => {
            cx.unsupported(at(path, "config_discovery"), "config_discovery (ECDS)");
            return;
        }
        None => match by_name_default(name) {
            // Envoy before 1.22 found a filter without a config by its
            // name, with the default config; OSM still renders the three
            // built-in inspectors that way. Envoy 1.40 refuses them; Strait
            // keeps the old meaning, which is unambiguous for these.
            Some(any) => {
                by_name = any;
                &by_name
            }
            None => {
                cx.invalid(at(path, "typed_config"), "is required");
                return;
            }
        },
    };
    let filter_path = path;
    let path = at(path, "typed_config");
    let ty = type_name(&any.type_url);
    if ty == TlsInspector::full_name() {
        let Some(t): Option<TlsInspector> = decode_any(cx, &path, any) else {
            return;
        };
        let TlsInspector {
            enable_ja3_fingerprinting,
            enable_ja4_fingerprinting,
            // A read-size hint; the inspector reads what arrives either way.
            initial_read_buffer_size: _,
            max_client_hello_size,
            close_connection_on_client_hello_parsing_errors,
        } = &t;
        cx.reject_unless_bool(
            &path,
            "enable_ja3_fingerprinting",
            enable_ja3_fingerprinting,
            false,
        );
        cx.reject_unless_bool(
            &path,
            "enable_ja4_fingerprinting",
            enable_ja4_fingerprinting,
            false,
        );
        reject_set!(cx, &path; max_client_hello_size, close_connection_on_client_hello_parsing_errors);
        out.tls_inspector = true;
        out.tls_inspector_disabled = disabled;
    } else if ty == HttpInspector::full_name() {
        let Some(HttpInspector {}) = decode_any(cx, &path, any) else {
            return;
        };
        out.http_inspector = true;
        out.http_inspector_disabled = disabled;
    } else if ty == OriginalDst::full_name() {
        let Some(OriginalDst {}) = decode_any(cx, &path, any) else {
            return;
        };
        // The destination port a predicate reads is the one this filter
        // recovers; skipping it per port would be circular, and Strait
        // restores the destination before any filter runs.
        reject_set!(cx, filter_path; filter_disabled);
        out.original_dst = true;
    } else {
        let before = cx.problems.len();
        let found =
            super::filter::registered(cx, any, &path, |p, url, v| p.listener_filter(url, v));
        if let Some(config) = found {
            out.registered.push(model::RegisteredListenerFilter {
                name: f.name.clone(),
                config,
                disabled,
            });
        } else if cx.problems.len() == before {
            cx.unsupported(
                at(&path, "@type"),
                format!("listener filter {}", effective_type_url(any)),
            );
        }
    }
}

/// A `ListenerFilterChainMatchPredicate`, with Envoy's validation (a set
/// has at least two rules, `any_match` is true, the port range is within
/// 1-65536 and not empty). `None` after a problem.
fn predicate(
    cx: &mut Context,
    p: &ListenerFilterChainMatchPredicate,
    path: &str,
) -> Option<ListenerFilterPredicate> {
    let ListenerFilterChainMatchPredicate { rule } = p;
    let set = |cx: &mut Context, set: &MatchSet, field: &str| {
        let MatchSet { rules } = set;
        if rules.len() < 2 {
            cx.invalid(at(path, field), "needs at least two rules");
        }
        let before = cx.problems.len();
        let out: Vec<_> = rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| predicate(cx, r, &item(&at(path, field), "rules", i)))
            .collect();
        (cx.problems.len() == before).then_some(out)
    };
    match rule {
        Some(Rule::OrMatch(s)) => set(cx, s, "or_match").map(ListenerFilterPredicate::Or),
        Some(Rule::AndMatch(s)) => set(cx, s, "and_match").map(ListenerFilterPredicate::And),
        Some(Rule::NotMatch(inner)) => predicate(cx, inner, &at(path, "not_match"))
            .map(|p| ListenerFilterPredicate::Not(Box::new(p))),
        Some(Rule::AnyMatch(true)) => Some(ListenerFilterPredicate::Any),
        Some(Rule::AnyMatch(false)) => {
            cx.invalid(at(path, "any_match"), "must be true");
            None
        }
        Some(Rule::DestinationPortRange(range)) => {
            let envoy_types::pb::envoy::r#type::v3::Int32Range { start, end } = range;
            let valid = (0..=65536).contains(start) && (0..=65536).contains(end) && start < end;
            if !valid {
                cx.invalid(
                    at(path, "destination_port_range"),
                    format!("[{start}, {end}) is not a range of ports"),
                );
                return None;
            }
            let (Ok(start), Ok(end)) = (u32::try_from(*start), u32::try_from(*end)) else {
                return None;
            };
            Some(ListenerFilterPredicate::DestinationPorts(start..end))
        }
        None => {
            cx.invalid(path.to_owned(), "a rule is required");
            None
        }
    }
}

fn chain_match(cx: &mut Context, m: &FilterChainMatch, path: &str) -> model::FilterChainMatch {
    let FilterChainMatch {
        destination_port,
        prefix_ranges,
        address_suffix,
        suffix_len,
        direct_source_prefix_ranges,
        source_type,
        source_prefix_ranges,
        source_ports,
        server_names,
        transport_protocol,
        application_protocols,
    } = m;
    reject_set!(cx, path; address_suffix, suffix_len, direct_source_prefix_ranges);
    let destination_port = destination_port.as_ref().and_then(|p| {
        let port = u16::try_from(p.value).ok().filter(|p| *p != 0);
        if port.is_none() {
            cx.invalid(at(path, "destination_port"), "must be 1-65535");
        }
        port
    });
    let source_type = match ConnectionSourceType::try_from(*source_type) {
        Ok(ConnectionSourceType::Any) => model::SourceType::Any,
        Ok(ConnectionSourceType::SameIpOrLoopback) => model::SourceType::SameIpOrLoopback,
        Ok(ConnectionSourceType::External) => model::SourceType::External,
        Err(_) => {
            cx.invalid(
                at(path, "source_type"),
                format!("unknown source type {source_type}"),
            );
            model::SourceType::Any
        }
    };
    let mut ports = Vec::with_capacity(source_ports.len());
    for (i, p) in source_ports.iter().enumerate() {
        match u16::try_from(*p) {
            Ok(p) if p != 0 => ports.push(p),
            _ => cx.invalid(item(path, "source_ports", i), "must be 1-65535"),
        }
    }
    let mut names = Vec::with_capacity(server_names.len());
    for (i, n) in server_names.iter().enumerate() {
        // Envoy accepts exact names and a leading "*." only.
        let bare = n.strip_prefix("*.").unwrap_or(n);
        if bare.is_empty() || bare.contains('*') {
            cx.invalid(
                item(path, "server_names", i),
                format!("{n:?}: only exact names and a leading \"*.\" wildcard are supported"),
            );
            continue;
        }
        names.push(n.to_ascii_lowercase());
    }
    model::FilterChainMatch {
        destination_port,
        prefix_ranges: cidr_ranges(cx, prefix_ranges, &at(path, "prefix_ranges")),
        server_names: names,
        transport_protocol: transport_protocol.clone(),
        application_protocols: application_protocols.clone(),
        source_type,
        source_prefix_ranges: cidr_ranges(
            cx,
            source_prefix_ranges,
            &at(path, "source_prefix_ranges"),
        ),
        source_ports: ports,
    }
}

pub(super) fn cidr_ranges(
    cx: &mut Context,
    ranges: &[envoy_types::pb::envoy::config::core::v3::CidrRange],
    path: &str,
) -> Vec<CidrRange> {
    let mut out = Vec::with_capacity(ranges.len());
    for (i, r) in ranges.iter().enumerate() {
        let rpath = format!("{path}[{i}]");
        let envoy_types::pb::envoy::config::core::v3::CidrRange {
            address_prefix,
            prefix_len,
        } = r;
        let Ok(address) = address_prefix.parse::<std::net::IpAddr>() else {
            cx.invalid(
                at(&rpath, "address_prefix"),
                format!("{address_prefix:?} is not an IP address"),
            );
            continue;
        };
        let max = if address.is_ipv4() { 32 } else { 128 };
        let len = prefix_len.as_ref().map_or(0, |l| l.value);
        let Some(prefix_len) = u8::try_from(len).ok().filter(|l| u32::from(*l) <= max) else {
            cx.invalid(at(&rpath, "prefix_len"), format!("must be at most {max}"));
            continue;
        };
        out.push(CidrRange {
            address,
            prefix_len,
        });
    }
    out
}

fn filter_chain(cx: &mut Context, fc: &FilterChain, path: &str) -> Option<model::FilterChain> {
    let FilterChain {
        filter_chain_match,
        filters,
        use_proxy_proto,
        // Read only by extensions Strait does not run.
        metadata: _,
        transport_socket,
        transport_socket_connect_timeout,
        name,
    } = fc;
    let matcher = filter_chain_match
        .as_ref()
        .map(|m| chain_match(cx, m, &at(path, "filter_chain_match")))
        .unwrap_or_default();
    cx.reject_unless_bool(path, "use_proxy_proto", use_proxy_proto, false);
    let tls = match transport_socket {
        Some(ts) => super::tls::downstream(cx, ts, &at(path, "transport_socket")).flatten(),
        None => None,
    };
    let handshake_timeout = timeout(
        cx,
        &at(path, "transport_socket_connect_timeout"),
        transport_socket_connect_timeout,
        None,
    );

    if filters.is_empty() {
        cx.invalid(
            at(path, "filters"),
            "needs a terminal filter (http_connection_manager or tcp_proxy)",
        );
        return None;
    }
    let mut terminal = None;
    let mut read_filters = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let fpath = item(path, "filters", i);
        if i + 1 < filters.len() {
            if let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type
                && inert(any, Slot::NetworkFilter).is_some()
            {
                // On the list of extensions safe to accept without effect.
                continue;
            }
            if let Some(config) = read_filter(cx, f, &fpath) {
                read_filters.push(model::ReadFilter {
                    name: f.name.clone(),
                    config,
                });
            }
            continue;
        }
        terminal = network_filter(cx, f, &fpath);
    }
    // Istio's TCP metadata exchange runs on the TCP proxy's chains only.
    // istiod also renders it before the HTTP connection manager, on chains
    // whose ALPN never names its protocol; Strait's HTTP path would not
    // take a preamble off the bytes, so there it is dropped, with its
    // protocol, and the exchange never starts (the HTTP peer metadata
    // exchange labels those requests).
    let is_exchange = |f: &model::ReadFilter| {
        f.config.type_url() == crate::model::istio::type_url::TCP_METADATA_EXCHANGE
    };
    if !matches!(terminal, Some(model::NetworkFilter::Tcp(_))) {
        read_filters.retain(|f| !is_exchange(f));
    }
    let mut tls = tls;
    if !read_filters.iter().any(is_exchange)
        && let Some(t) = tls.as_mut()
    {
        super::tls::without_peer_exchange(&mut t.common.alpn);
    }
    Some(model::FilterChain {
        name: name.clone(),
        matcher,
        tls,
        handshake_timeout,
        read_filters,
        terminal: terminal?,
    })
}

/// A network filter before the terminal one: network RBAC, or a filter
/// registered by type URL (its factory must make a read filter, which the
/// snapshot checks when it compiles the chain). A terminal filter here is
/// refused.
fn read_filter(cx: &mut Context, f: &Filter, path: &str) -> Option<Extension> {
    let Filter { name, config_type } = f;
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
    let ty = type_name(&any.type_url);
    if ty == HttpConnectionManager::full_name() || ty == TcpProxy::full_name() {
        cx.invalid(
            path,
            format!("{name} is a terminal filter and must be last in the chain"),
        );
        return None;
    }
    let path = at(path, "typed_config");
    if ty == NetworkRbac::full_name() {
        return super::rbac::network_filter(cx, any, &path);
    }
    if ty == "envoy.extensions.filters.network.ext_authz.v3.ExtAuthz" {
        return super::ext_authz::network_filter(cx, any, &path);
    }
    if ty == NetworkLocalRateLimit::full_name() {
        return super::ratelimit::network_local(cx, any, &path);
    }
    if let Some((kind, config)) = super::istio::recognise(any) {
        use super::istio::{STATS, TCP_MX, WASM_STATS};
        if matches!(kind, STATS | WASM_STATS) {
            // `istio.stats` as a network filter: Istio's TCP metrics.
            return super::istio::stats(cx, kind, &config, &path);
        }
        if kind == TCP_MX {
            // The downstream side of Istio's TCP metadata exchange.
            return super::istio::tcp_metadata_exchange(cx, &config, &path);
        }
    }
    let before = cx.problems.len();
    let found = super::filter::registered(cx, any, &path, |p, url, v| p.network_filter(url, v));
    if found.is_some() || cx.problems.len() > before {
        return found;
    }
    cx.unsupported(
        at(&path, "@type"),
        format!("network filter {}", effective_type_url(any)),
    );
    None
}

/// The terminal network filter, last in the chain.
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
        let before = cx.problems.len();
        let found = super::filter::registered(cx, any, &path, |p, url, v| p.network_filter(url, v));
        if found.is_some() || cx.problems.len() > before {
            return found.map(model::NetworkFilter::Extension);
        }
        cx.unsupported(
            at(&path, "@type"),
            format!("network filter {}", effective_type_url(any)),
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
        on_demand, metadata_match, downstream_idle_timeout, upstream_idle_timeout,
        backoff_options, hash_policy, tunneling_config, max_downstream_connection_duration,
        max_downstream_connection_duration_jitter_percentage, proxy_protocol_tlvs,
        proxy_protocol_tlv_merge_policy, upstream_connect_mode, max_early_data_bytes,
    );
    // Periodic and on-connect entries would add lines Strait does not
    // write: refused. Strait logs once, when the connection closes.
    reject_set!(cx, path;
        access_log_flush_interval, flush_access_log_on_connected, access_log_options,
    );
    let access_logs = access_log::access_logs(cx, path, access_log, access_log::Tracing::None);
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
        access_logs,
    })
}

//! What comes from a control plane: bootstrap `dynamic_resources`, the
//! `ConfigSource`s that point at ADS (RDS from a connection manager, EDS from
//! a cluster), and EDS's `ClusterLoadAssignment`.
//!
//! Only ADS is supported: every config source must be `{ads: {}}`, which is
//! what Istio renders. Anything else is refused by path.

use std::time::Duration;

use envoy_types::pb::envoy::{
    config::{
        bootstrap::v3::bootstrap::DynamicResources,
        cluster::v3::cluster::EdsClusterConfig,
        core::v3::{
            ApiConfigSource, ApiVersion, ConfigSource, GrpcService,
            api_config_source::ApiType,
            config_source::ConfigSourceSpecifier,
            grpc_service::{EnvoyGrpc, TargetSpecifier},
        },
        endpoint::v3::ClusterLoadAssignment,
    },
    extensions::filters::network::http_connection_manager::v3::Rds,
};

use super::{Context, at, cluster, item, timeout};
use crate::model;

/// Envoy's default `initial_fetch_timeout`.
const DEFAULT_INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// `rds` of a connection manager: the route config's name, from ADS.
pub(super) fn rds(cx: &mut Context, path: &str, rds: &Rds) -> Option<model::RouteSource> {
    let Rds {
        config_source,
        route_config_name,
    } = rds;
    let before = cx.problems.len();
    ads_source(cx, &at(path, "config_source"), config_source.as_ref());
    if route_config_name.is_empty() {
        cx.invalid(at(path, "route_config_name"), "must not be empty");
    }
    (cx.problems.len() == before).then(|| model::RouteSource::Rds(route_config_name.clone()))
}

/// `eds_cluster_config` of an EDS cluster: the assignment's name (the
/// cluster's own name when `service_name` is empty, as in Envoy).
pub(super) fn eds(
    cx: &mut Context,
    path: &str,
    cluster_name: &str,
    config: Option<&EdsClusterConfig>,
) -> Option<model::Discovery> {
    let Some(EdsClusterConfig {
        eds_config,
        service_name,
    }) = config
    else {
        cx.invalid(path, "is required for an EDS cluster");
        return None;
    };
    let before = cx.problems.len();
    ads_source(cx, &at(path, "eds_config"), eds_config.as_ref());
    let service_name = if service_name.is_empty() {
        cluster_name.to_owned()
    } else {
        service_name.clone()
    };
    (cx.problems.len() == before).then_some(model::Discovery::Eds { service_name })
}

/// A `ConfigSource` that must be `{ads: {}}`. Returns its
/// `initial_fetch_timeout` (`None` for 0, which waits forever).
fn ads_source(cx: &mut Context, path: &str, cs: Option<&ConfigSource>) -> Option<Duration> {
    let Some(ConfigSource {
        authorities,
        initial_fetch_timeout,
        resource_api_version,
        config_source_specifier,
    }) = cs
    else {
        cx.invalid(path, "is required");
        return None;
    };
    reject_set!(cx, path; authorities);
    if *resource_api_version != ApiVersion::V3 as i32 && *resource_api_version != 0 {
        // AUTO (0) means V3 since Envoy dropped V2.
        cx.unsupported(at(path, "resource_api_version"), "only V3 resources");
    }
    match config_source_specifier {
        Some(ConfigSourceSpecifier::Ads(_)) => {}
        Some(ConfigSourceSpecifier::Path(_) | ConfigSourceSpecifier::PathConfigSource(_)) => cx
            .unsupported(
                at(path, "path_config_source"),
                "file config sources (use ads)",
            ),
        Some(ConfigSourceSpecifier::ApiConfigSource(_)) => cx.unsupported(
            at(path, "api_config_source"),
            "non-aggregated xDS (use ads)",
        ),
        Some(_) => cx.unsupported(path, "config sources other than ads"),
        None => cx.invalid(path, "needs ads"),
    }
    timeout(
        cx,
        &at(path, "initial_fetch_timeout"),
        initial_fetch_timeout,
        Some(DEFAULT_INITIAL_FETCH_TIMEOUT),
    )
}

/// Bootstrap `dynamic_resources`: LDS and CDS over ADS, ADS over gRPC to a
/// static cluster. Which cluster is checked by the bootstrap translation,
/// which knows them all.
pub(super) fn dynamic_resources(
    cx: &mut Context,
    path: &str,
    d: &DynamicResources,
) -> Option<model::DynamicResources> {
    let DynamicResources {
        lds_config,
        lds_resources_locator,
        cds_config,
        cds_resources_locator,
        ads_config,
    } = d;
    reject_set!(cx, path; lds_resources_locator, cds_resources_locator);
    let before = cx.problems.len();
    let lds_timeout = ads_source(cx, &at(path, "lds_config"), lds_config.as_ref());
    let cds_timeout = ads_source(cx, &at(path, "cds_config"), cds_config.as_ref());
    let Some(ads) = ads_config else {
        cx.invalid(
            at(path, "ads_config"),
            "is required with ads config sources",
        );
        return None;
    };
    let apath = at(path, "ads_config");
    let ApiConfigSource {
        api_type,
        transport_api_version,
        cluster_names,
        grpc_services,
        refresh_delay,
        request_timeout,
        rate_limit_settings,
        set_node_on_first_message_only,
        config_validators,
    } = ads;
    // `refresh_delay` and `request_timeout` pace REST polling only.
    let _ = (refresh_delay, request_timeout);
    reject_set!(cx, &apath; cluster_names, rate_limit_settings, config_validators);
    if *transport_api_version != ApiVersion::V3 as i32 && *transport_api_version != 0 {
        cx.unsupported(at(&apath, "transport_api_version"), "only V3 transport");
    }
    let api = match ApiType::try_from(*api_type) {
        Ok(ApiType::Grpc | ApiType::AggregatedGrpc) => Some(model::AdsApi::StateOfTheWorld),
        Ok(ApiType::DeltaGrpc | ApiType::AggregatedDeltaGrpc) => Some(model::AdsApi::Delta),
        Ok(other) => {
            cx.unsupported(
                at(&apath, "api_type"),
                format!("api_type {}", other.as_str_name()),
            );
            None
        }
        Err(_) => {
            cx.invalid(
                at(&apath, "api_type"),
                format!("unknown api_type {api_type}"),
            );
            None
        }
    };
    let ads_cluster = match grpc_services.as_slice() {
        [one] => grpc_service(cx, &item(&apath, "grpc_services", 0), one, true),
        _ => {
            cx.invalid(
                at(&apath, "grpc_services"),
                "needs exactly one gRPC service",
            );
            None
        }
    };
    if cx.problems.len() != before {
        return None;
    }
    // Envoy applies each source's own timeout; both are the same in every
    // bootstrap we know of, so the shorter governs the first fetch.
    let initial_fetch_timeout = match (lds_timeout, cds_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Some(model::DynamicResources {
        ads_cluster: ads_cluster?,
        api: api?,
        node_on_first_message_only: *set_node_on_first_message_only,
        initial_fetch_timeout,
    })
}

/// An `envoy_grpc` service's cluster name. `dials_pipes`: whether the
/// client may reach a `pipe` cluster (the xDS client can; a client going
/// through the data path's cluster, like the metrics service sink, cannot).
pub(super) fn grpc_service(
    cx: &mut Context,
    path: &str,
    g: &GrpcService,
    dials_pipes: bool,
) -> Option<String> {
    let GrpcService {
        timeout,
        initial_metadata,
        retry_policy,
        target_specifier,
    } = g;
    // `timeout` bounds unary calls; the streams Strait opens are not.
    let _ = timeout;
    reject_set!(cx, path; initial_metadata, retry_policy);
    match target_specifier {
        Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
            cluster_name,
            authority,
            retry_policy,
            // Bounds a single message; Strait takes whatever tonic's default
            // (4 MiB) allows, raised on the client.
            max_receive_message_length: _,
            skip_envoy_headers: _,
        })) => {
            let epath = at(path, "envoy_grpc");
            reject_set!(cx, &epath; authority, retry_policy);
            if cluster_name.is_empty() {
                cx.invalid(at(&epath, "cluster_name"), "must not be empty");
                return None;
            }
            if dials_pipes {
                cx.require_grpc_cluster(at(&epath, "cluster_name"), cluster_name);
            } else {
                cx.require_cluster(at(&epath, "cluster_name"), cluster_name);
            }
            Some(cluster_name.clone())
        }
        Some(TargetSpecifier::GoogleGrpc(_)) => {
            cx.unsupported(at(path, "google_grpc"), "google_grpc (use envoy_grpc)");
            None
        }
        None => {
            cx.invalid(path, "needs envoy_grpc");
            None
        }
    }
}

/// Translates an EDS `ClusterLoadAssignment` into endpoints. `path` prefixes
/// every error (the resource name for EDS). `policy` is refused unless its
/// overprovisioning factor is the default: another would have to override
/// the cluster's, which the model cannot yet express per assignment.
pub fn translate_cluster_load_assignment(
    cla: &ClusterLoadAssignment,
    path: &str,
) -> Result<Vec<model::Endpoint>, Vec<super::ConfigError>> {
    let mut cx = Context::default();
    if let Some(policy) = &cla.policy {
        let envoy_types::pb::envoy::config::endpoint::v3::cluster_load_assignment::Policy {
            drop_overloads,
            overprovisioning_factor,
            endpoint_stale_after,
            weighted_priority_health,
        } = policy;
        let ppath = at(path, "policy");
        reject_set!(cx, &ppath; drop_overloads, weighted_priority_health);
        // Istio always writes Envoy's default, 140, which the cluster's
        // balancer uses anyway; another value would have to override it.
        if overprovisioning_factor
            .as_ref()
            .is_some_and(|f| f.value != 140)
        {
            cx.unsupported(
                at(&ppath, "overprovisioning_factor"),
                "overprovisioning_factor other than 140 in an EDS assignment",
            );
        }
        // Only meaningful with LEDS-style staleness, which Strait does not
        // track: the last assignment stays until replaced.
        let _ = endpoint_stale_after;
    }
    // EDS endpoints are addresses, as for STATIC clusters: Envoy resolves
    // no names from EDS.
    let out = cluster::load_assignment(&mut cx, cla, path, true);
    cx.finish(Some(out))
}

//! Load-balancing settings: `lb_policy` with its `lb_config`, `common_lb_config`
//! and the load assignment's `policy`.

use envoy_types::pb::envoy::config::{
    cluster::v3::cluster::{
        CommonLbConfig, LbConfig, LbPolicy, LeastRequestLbConfig, MaglevLbConfig, RingHashLbConfig,
        RoundRobinLbConfig, SlowStartConfig, common_lb_config::LocalityConfigSpecifier,
        ring_hash_lb_config::HashFunction,
    },
    endpoint::v3::cluster_load_assignment::Policy,
};

use super::super::{Context, at};
use crate::model;

/// Envoy's `RingHashLbConfig` bounds: the ring never has fewer than
/// `minimum_ring_size` nor more than `maximum_ring_size` entries.
const DEFAULT_MIN_RING: u64 = 1024;
const DEFAULT_MAX_RING: u64 = 8 * 1024 * 1024;
const DEFAULT_MAGLEV_TABLE: u64 = 65_537;

/// `lb_policy` plus the matching `lb_config`; a config for another policy is
/// refused, as Envoy ignores it silently and that hides mistakes.
pub(super) fn policy(
    cx: &mut Context,
    path: &str,
    lb_policy: i32,
    lb_config: &Option<LbConfig>,
) -> (model::LbPolicy, Option<model::SlowStart>) {
    let mut slow = None;
    let policy = policy_and_slow_start(cx, path, lb_policy, lb_config, &mut slow);
    (policy, slow)
}

fn policy_and_slow_start(
    cx: &mut Context,
    path: &str,
    lb_policy: i32,
    lb_config: &Option<LbConfig>,
    slow: &mut Option<model::SlowStart>,
) -> model::LbPolicy {
    let policy = LbPolicy::try_from(lb_policy);
    let mut out = match policy {
        Ok(LbPolicy::RoundRobin) => model::LbPolicy::RoundRobin,
        Ok(LbPolicy::LeastRequest) => model::LbPolicy::LeastRequest {
            choice_count: 2,
            active_request_bias: 1.0,
        },
        Ok(LbPolicy::Random) => model::LbPolicy::Random,
        Ok(LbPolicy::RingHash) => model::LbPolicy::RingHash {
            minimum_ring_size: DEFAULT_MIN_RING,
            maximum_ring_size: DEFAULT_MAX_RING,
        },
        Ok(LbPolicy::Maglev) => model::LbPolicy::Maglev {
            table_size: DEFAULT_MAGLEV_TABLE,
        },
        Ok(other) => {
            cx.unsupported(
                at(path, "lb_policy"),
                format!("lb_policy {}", other.as_str_name()),
            );
            model::LbPolicy::RoundRobin
        }
        Err(_) => {
            cx.invalid(
                at(path, "lb_policy"),
                format!("unknown lb_policy {lb_policy}"),
            );
            model::LbPolicy::RoundRobin
        }
    };
    let Some(config) = lb_config else { return out };
    let (field, matches) = match config {
        LbConfig::RoundRobinLbConfig(_) => {
            ("round_robin_lb_config", policy == Ok(LbPolicy::RoundRobin))
        }
        LbConfig::LeastRequestLbConfig(_) => (
            "least_request_lb_config",
            policy == Ok(LbPolicy::LeastRequest),
        ),
        LbConfig::RingHashLbConfig(_) => ("ring_hash_lb_config", policy == Ok(LbPolicy::RingHash)),
        LbConfig::MaglevLbConfig(_) => ("maglev_lb_config", policy == Ok(LbPolicy::Maglev)),
        LbConfig::OriginalDstLbConfig(_) => ("original_dst_lb_config", false),
    };
    let cpath = at(path, field);
    if !matches {
        cx.invalid(cpath, "does not match lb_policy");
        return out;
    }
    match config {
        LbConfig::RoundRobinLbConfig(RoundRobinLbConfig { slow_start_config }) => {
            *slow = slow_start_config
                .as_ref()
                .and_then(|s| slow_start(cx, &at(&cpath, "slow_start_config"), s));
        }
        LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
            choice_count,
            active_request_bias,
            slow_start_config,
        }) => {
            *slow = slow_start_config
                .as_ref()
                .and_then(|s| slow_start(cx, &at(&cpath, "slow_start_config"), s));
            let choices = choice_count.as_ref().map_or(2, |v| v.value);
            if choices < 2 {
                cx.invalid(at(&cpath, "choice_count"), "must be at least 2");
            }
            let bias: f64 = active_request_bias
                .as_ref()
                .map_or(1.0, |b| b.default_value);
            // A `runtime_key` only names an override Strait has no runtime
            // for; the default value applies, as in Envoy without the key.
            if !(bias.is_finite() && bias >= 0.0) {
                cx.invalid(
                    at(&cpath, "active_request_bias"),
                    "must be a non-negative number",
                );
            }
            out = model::LbPolicy::LeastRequest {
                choice_count: choices,
                active_request_bias: bias,
            };
        }
        LbConfig::RingHashLbConfig(RingHashLbConfig {
            minimum_ring_size,
            hash_function,
            maximum_ring_size,
        }) => {
            // Strait hashes hosts onto the ring with its own xxHash64; both of
            // Envoy's choices give a uniform ring, so either is accepted.
            if HashFunction::try_from(*hash_function).is_err() {
                cx.invalid(at(&cpath, "hash_function"), "unknown hash_function");
            }
            let min = minimum_ring_size
                .as_ref()
                .map_or(DEFAULT_MIN_RING, |v| v.value);
            let max = maximum_ring_size
                .as_ref()
                .map_or(DEFAULT_MAX_RING, |v| v.value);
            if max > DEFAULT_MAX_RING {
                cx.invalid(at(&cpath, "maximum_ring_size"), "must be at most 8388608");
            }
            if min == 0 || min > max {
                cx.invalid(
                    at(&cpath, "minimum_ring_size"),
                    "must be between 1 and maximum_ring_size",
                );
            }
            out = model::LbPolicy::RingHash {
                minimum_ring_size: min,
                maximum_ring_size: max,
            };
        }
        LbConfig::MaglevLbConfig(MaglevLbConfig { table_size }) => {
            let size = table_size
                .as_ref()
                .map_or(DEFAULT_MAGLEV_TABLE, |v| v.value);
            if !is_prime(size) || size > 5_000_011 {
                cx.invalid(
                    at(&cpath, "table_size"),
                    "must be a prime number no larger than 5000011",
                );
            }
            out = model::LbPolicy::Maglev { table_size: size };
        }
        LbConfig::OriginalDstLbConfig(_) => {}
    }
    out
}

/// `common_lb_config` and the load assignment's `policy`.
pub(super) fn common(
    cx: &mut Context,
    path: &str,
    common: &Option<CommonLbConfig>,
    policy: Option<(&Policy, &str)>,
) -> model::LbCommon {
    let mut out = model::LbCommon::default();
    if let Some(c) = common {
        let path = at(path, "common_lb_config");
        let CommonLbConfig {
            healthy_panic_threshold,
            update_merge_window,
            ignore_new_hosts_until_first_hc,
            close_connections_on_host_set_change,
            consistent_hashing_lb_config,
            override_host_status,
            locality_config_specifier,
        } = c;
        // Host set changes are applied at once; a merge window only batches
        // them, so its value does not change what is routed where.
        let _ = update_merge_window;
        reject_set!(cx, &path;
            ignore_new_hosts_until_first_hc, close_connections_on_host_set_change,
            consistent_hashing_lb_config, override_host_status,
        );
        if let Some(p) = healthy_panic_threshold {
            if !(0.0..=100.0).contains(&p.value) {
                cx.invalid(at(&path, "healthy_panic_threshold"), "must be 0-100");
            }
            out.healthy_panic_threshold = p.value;
        }
        match locality_config_specifier {
            None => {}
            Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(_)) => {
                out.locality_weighted = true;
            }
            Some(LocalityConfigSpecifier::ZoneAwareLbConfig(_)) => {
                cx.unsupported(at(&path, "zone_aware_lb_config"), "zone_aware_lb_config");
            }
        }
    }
    if let Some((p, ppath)) = policy {
        let Policy {
            drop_overloads,
            overprovisioning_factor,
            endpoint_stale_after,
            weighted_priority_health,
        } = p;
        reject_set!(cx, ppath; drop_overloads, endpoint_stale_after, weighted_priority_health);
        if let Some(f) = overprovisioning_factor {
            if f.value == 0 {
                cx.invalid(
                    at(ppath, "overprovisioning_factor"),
                    "must be greater than 0",
                );
            }
            out.overprovisioning_factor = f.value.max(1);
        }
    }
    out
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// `slow_start_config`: the window is required (Envoy treats an unset one as
/// no slow start); `aggression` must be positive; `min_weight_percent`
/// defaults to 10%. A `runtime_key` names an override Strait has no runtime
/// for, so the default value applies, as in Envoy without the key.
fn slow_start(cx: &mut Context, path: &str, s: &SlowStartConfig) -> Option<model::SlowStart> {
    let SlowStartConfig {
        slow_start_window,
        aggression,
        min_weight_percent,
    } = s;
    let window = super::super::duration(
        cx,
        &at(path, "slow_start_window"),
        slow_start_window.as_ref()?,
    )?;
    let aggression = aggression.as_ref().map_or(1.0, |a| a.default_value);
    if !(aggression.is_finite() && aggression > 0.0) {
        cx.invalid(at(path, "aggression"), "must be greater than 0");
        return None;
    }
    let min = min_weight_percent.as_ref().map_or(10.0, |p| p.value);
    if !(0.0..=100.0).contains(&min) {
        cx.invalid(at(path, "min_weight_percent"), "must be between 0 and 100");
        return None;
    }
    (!window.is_zero()).then_some(model::SlowStart {
        window,
        aggression,
        min_weight: min / 100.0,
    })
}

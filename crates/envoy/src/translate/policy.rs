//! Route forwarding policies (`retry_policy`, `hash_policy`,
//! `request_mirror_policies`) and the matchers they and the HTTP filters
//! share (`StringMatcher`, `HeaderMatcher`, `FractionalPercent`).

use std::time::Duration;

use envoy_types::pb::envoy::{
    config::{
        core::v3::RuntimeFractionalPercent,
        route::v3::{
            HeaderMatcher, RetryPolicy,
            header_matcher::HeaderMatchSpecifier,
            retry_policy::{RetryBackOff, RetryHostPredicate},
            route_action::{
                HashPolicy, RequestMirrorPolicy,
                hash_policy::{self, PolicySpecifier},
            },
        },
    },
    r#type::{
        matcher::v3::{RegexMatcher, StringMatcher, string_matcher::MatchPattern},
        v3::{FractionalPercent, fractional_percent::DenominatorType},
    },
};

use super::{Context, at, item, positive_duration, u32_value};
use crate::model::filter::{FilterOverride, FilterOverrideConfig};
use crate::model::policy::{
    Fraction, HashPolicy as ModelHash, HashSource, HeaderCondition, HeaderConditionKind,
    MirrorPolicy, Pattern, RetryOn, RetryPolicy as ModelRetry, ValueMatch, ValueMatcher,
};

const DEFAULT_BASE_INTERVAL: Duration = Duration::from_millis(25);
const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";

/// `retry_policy` of a route or virtual host.
pub(super) fn retry_policy(cx: &mut Context, p: &RetryPolicy, path: &str) -> Option<ModelRetry> {
    let RetryPolicy {
        retry_on,
        num_retries,
        per_try_timeout,
        per_try_idle_timeout,
        retry_priority,
        retry_host_predicate,
        retry_options_predicates,
        host_selection_retry_max_attempts,
        retriable_status_codes,
        retry_back_off,
        rate_limited_retry_back_off,
        retriable_headers,
        retriable_request_headers,
        refresh_cluster_on_retry,
    } = p;
    reject_set!(cx, path;
        per_try_idle_timeout, retry_priority, retry_options_predicates,
        rate_limited_retry_back_off, retriable_request_headers, refresh_cluster_on_retry,
    );
    let before = cx.problems.len();
    let mut on = RetryOn::default();
    for token in retry_on.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match RetryOn::token(token) {
            Some(t) => on = on.union(t),
            None => cx.unsupported(at(path, "retry_on"), format!("retry_on '{token}'")),
        }
    }
    let per_try_timeout = match per_try_timeout {
        Some(d) => super::duration(cx, &at(path, "per_try_timeout"), d).filter(|d| !d.is_zero()),
        None => None,
    };
    let (base_interval, max_interval) = match retry_back_off {
        Some(b) => back_off(cx, b, &at(path, "retry_back_off")),
        None => (DEFAULT_BASE_INTERVAL, DEFAULT_BASE_INTERVAL * 10),
    };
    let mut codes = Vec::with_capacity(retriable_status_codes.len());
    for (i, c) in retriable_status_codes.iter().enumerate() {
        match u16::try_from(*c) {
            Ok(c) if (100..=599).contains(&c) => codes.push(c),
            _ => cx.invalid(
                item(path, "retriable_status_codes", i),
                format!("{c} is not an HTTP status"),
            ),
        }
    }
    let headers = retriable_headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| header_condition(cx, h, &item(path, "retriable_headers", i)))
        .collect();
    let mut avoid_previous_hosts = false;
    for (i, pred) in retry_host_predicate.iter().enumerate() {
        let RetryHostPredicate { name, config_type } = pred;
        let type_ok = match config_type {
            Some(envoy_types::pb::envoy::config::route::v3::retry_policy::retry_host_predicate::ConfigType::TypedConfig(a)) => {
                super::type_name(&a.type_url).ends_with("PreviousHostsPredicate")
            }
            None => name == PREVIOUS_HOSTS,
        };
        if type_ok {
            avoid_previous_hosts = true;
        } else {
            cx.unsupported(
                item(path, "retry_host_predicate", i),
                format!("retry host predicate {name}"),
            );
        }
    }
    let host_selection_max_attempts = match u32::try_from(*host_selection_retry_max_attempts) {
        Ok(0) => 1,
        Ok(n) => n,
        Err(_) => {
            cx.invalid(
                at(path, "host_selection_retry_max_attempts"),
                "must be a non-negative 32-bit number",
            );
            1
        }
    };
    (cx.problems.len() == before).then(|| ModelRetry {
        retry_on: on,
        num_retries: u32_value(num_retries, 1),
        per_try_timeout,
        base_interval,
        max_interval,
        retriable_status_codes: codes,
        retriable_headers: headers,
        avoid_previous_hosts,
        host_selection_max_attempts,
    })
}

fn back_off(cx: &mut Context, b: &RetryBackOff, path: &str) -> (Duration, Duration) {
    let RetryBackOff {
        base_interval,
        max_interval,
    } = b;
    let base = positive_duration(
        cx,
        &at(path, "base_interval"),
        base_interval,
        DEFAULT_BASE_INTERVAL,
    );
    let max = positive_duration(cx, &at(path, "max_interval"), max_interval, base * 10);
    if max < base {
        cx.invalid(
            at(path, "max_interval"),
            "must not be less than base_interval",
        );
    }
    (base, max)
}

/// `hash_policy` entries.
pub(super) fn hash_policies(cx: &mut Context, list: &[HashPolicy], path: &str) -> Vec<ModelHash> {
    let mut out = Vec::with_capacity(list.len());
    for (i, h) in list.iter().enumerate() {
        let hpath = item(path, "hash_policy", i);
        let HashPolicy {
            terminal,
            policy_specifier,
        } = h;
        let source = match policy_specifier {
            Some(PolicySpecifier::Header(hash_policy::Header {
                header_name,
                regex_rewrite,
            })) => {
                reject_set!(cx, &at(&hpath, "header"); regex_rewrite);
                Some(HashSource::Header(header_name.to_ascii_lowercase()))
            }
            Some(PolicySpecifier::Cookie(hash_policy::Cookie {
                name,
                ttl,
                path: cookie_path,
                attributes,
            })) => {
                // A ttl makes Envoy generate the cookie when absent, which
                // needs a response-side hook Strait does not have yet.
                let cpath = at(&hpath, "cookie");
                reject_set!(cx, &cpath; ttl, attributes);
                // `path` only shapes a generated cookie.
                let _ = cookie_path;
                Some(HashSource::Cookie(name.clone()))
            }
            Some(PolicySpecifier::ConnectionProperties(hash_policy::ConnectionProperties {
                source_ip,
            })) => source_ip.then_some(HashSource::SourceIp),
            Some(PolicySpecifier::QueryParameter(hash_policy::QueryParameter { name })) => {
                Some(HashSource::QueryParameter(name.clone()))
            }
            Some(PolicySpecifier::FilterState(_)) => {
                cx.unsupported(at(&hpath, "filter_state"), "filter_state");
                None
            }
            None => {
                cx.invalid(hpath, "needs a policy specifier");
                None
            }
        };
        if let Some(source) = source {
            out.push(ModelHash {
                source,
                terminal: *terminal,
            });
        }
    }
    out
}

/// `request_mirror_policies` entries.
pub(super) fn mirror_policies(
    cx: &mut Context,
    list: &[RequestMirrorPolicy],
    path: &str,
    validate_clusters: bool,
) -> Vec<MirrorPolicy> {
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let mpath = item(path, "request_mirror_policies", i);
        let RequestMirrorPolicy {
            cluster,
            cluster_header,
            runtime_fraction,
            // Tracing is refused at the connection manager, so no request is
            // trace-sampled and the field cannot change what is mirrored.
            trace_sampled: _,
            disable_shadow_host_suffix_append,
            request_headers_mutations,
            host_rewrite_literal,
        } = m;
        reject_set!(cx, &mpath;
            cluster_header, disable_shadow_host_suffix_append, request_headers_mutations,
            host_rewrite_literal,
        );
        if cluster.is_empty() {
            cx.invalid(at(&mpath, "cluster"), "must not be empty");
            continue;
        }
        if validate_clusters {
            cx.require_cluster(at(&mpath, "cluster"), cluster);
        }
        let fraction = match runtime_fraction {
            Some(r) => runtime_fraction_default(cx, r, &at(&mpath, "runtime_fraction")),
            None => Fraction::ALL,
        };
        out.push(MirrorPolicy {
            cluster: cluster.clone(),
            fraction,
        });
    }
    out
}

/// A `RuntimeFractionalPercent` read as its default (no runtime layer).
pub(super) fn runtime_fraction_default(
    cx: &mut Context,
    r: &RuntimeFractionalPercent,
    path: &str,
) -> Fraction {
    let RuntimeFractionalPercent {
        default_value,
        // Strait has no runtime layer: the key can never override the default.
        runtime_key: _,
    } = r;
    match default_value {
        Some(f) => fraction(cx, f, &at(path, "default_value")),
        None => Fraction { per_million: 0 },
    }
}

/// A `FractionalPercent` as parts per million (capped at 100%, as Envoy does).
pub(super) fn fraction(cx: &mut Context, f: &FractionalPercent, path: &str) -> Fraction {
    fraction_and_scale(cx, f, path).0
}

/// The fraction, and how many millionths one unit of its denominator is
/// (for values given later in the same units, such as Envoy's fault
/// percentage headers).
pub(super) fn fraction_and_scale(
    cx: &mut Context,
    f: &FractionalPercent,
    path: &str,
) -> (Fraction, u32) {
    let FractionalPercent {
        numerator,
        denominator,
    } = f;
    let scale = match DenominatorType::try_from(*denominator) {
        Ok(DenominatorType::Hundred) => 10_000,
        Ok(DenominatorType::TenThousand) => 100,
        Ok(DenominatorType::Million) => 1,
        Err(_) => {
            cx.invalid(
                at(path, "denominator"),
                format!("unknown value {denominator}"),
            );
            1
        }
    };
    let fraction = Fraction {
        per_million: numerator.saturating_mul(scale).min(1_000_000),
    };
    (fraction, scale)
}

/// A `type.matcher.v3.StringMatcher`.
pub(super) fn string_matcher(
    cx: &mut Context,
    m: &StringMatcher,
    path: &str,
) -> Option<ValueMatcher> {
    let StringMatcher {
        ignore_case,
        match_pattern,
    } = m;
    let kind = match match_pattern {
        Some(MatchPattern::Exact(s)) => ValueMatch::Exact(s.clone()),
        Some(MatchPattern::Prefix(s)) => ValueMatch::Prefix(s.clone()),
        Some(MatchPattern::Suffix(s)) => ValueMatch::Suffix(s.clone()),
        Some(MatchPattern::Contains(s)) => ValueMatch::Contains(s.clone()),
        Some(MatchPattern::SafeRegex(r)) => {
            ValueMatch::Regex(regex(cx, r, &at(path, "safe_regex"))?)
        }
        Some(MatchPattern::Custom(_)) => {
            cx.unsupported(at(path, "custom"), "custom string matchers");
            return None;
        }
        None => {
            cx.invalid(path, "needs a match pattern");
            return None;
        }
    };
    Some(ValueMatcher {
        kind,
        ignore_case: *ignore_case,
    })
}

fn regex(cx: &mut Context, r: &RegexMatcher, path: &str) -> Option<Pattern> {
    // `engine_type` only names RE2, the one engine; it cannot change matching.
    let RegexMatcher {
        regex,
        engine_type: _,
    } = r;
    match Pattern::new(regex) {
        Ok(p) => Some(p),
        Err(e) => {
            cx.invalid(at(path, "regex"), format!("invalid regex: {e}"));
            None
        }
    }
}

/// A `config.route.v3.HeaderMatcher`.
pub(super) fn header_condition(
    cx: &mut Context,
    h: &HeaderMatcher,
    path: &str,
) -> Option<HeaderCondition> {
    let HeaderMatcher {
        name,
        invert_match,
        treat_missing_header_as_empty,
        header_match_specifier,
    } = h;
    if name.is_empty() {
        cx.invalid(at(path, "name"), "must not be empty");
        return None;
    }
    let plain = |k: fn(String) -> ValueMatch, s: &String| {
        HeaderConditionKind::String(ValueMatcher {
            kind: k(s.clone()),
            ignore_case: false,
        })
    };
    let kind = match header_match_specifier {
        None | Some(HeaderMatchSpecifier::PresentMatch(true)) => HeaderConditionKind::Present,
        Some(HeaderMatchSpecifier::PresentMatch(false)) => {
            cx.unsupported(at(path, "present_match"), "present_match: false");
            return None;
        }
        Some(HeaderMatchSpecifier::ExactMatch(s)) => plain(ValueMatch::Exact, s),
        Some(HeaderMatchSpecifier::PrefixMatch(s)) => plain(ValueMatch::Prefix, s),
        Some(HeaderMatchSpecifier::SuffixMatch(s)) => plain(ValueMatch::Suffix, s),
        Some(HeaderMatchSpecifier::ContainsMatch(s)) => plain(ValueMatch::Contains, s),
        Some(HeaderMatchSpecifier::SafeRegexMatch(r)) => {
            HeaderConditionKind::String(ValueMatcher {
                kind: ValueMatch::Regex(regex(cx, r, &at(path, "safe_regex_match"))?),
                ignore_case: false,
            })
        }
        Some(HeaderMatchSpecifier::RangeMatch(r)) => HeaderConditionKind::Range {
            start: r.start,
            end: r.end,
        },
        Some(HeaderMatchSpecifier::StringMatch(m)) => {
            HeaderConditionKind::String(string_matcher(cx, m, &at(path, "string_match"))?)
        }
    };
    Some(HeaderCondition {
        name: name.to_ascii_lowercase(),
        kind,
        invert: *invert_match,
        missing_as_empty: *treat_missing_header_as_empty,
    })
}

/// The virtual-host fields that routes inherit.
pub(super) struct VhostFields<'a> {
    pub(super) retry_policy: &'a Option<RetryPolicy>,
    pub(super) cors: &'a Option<envoy_types::pb::envoy::config::route::v3::CorsPolicy>,
    pub(super) typed_per_filter_config:
        &'a std::collections::HashMap<String, envoy_types::pb::google::protobuf::Any>,
    pub(super) include_request_attempt_count: bool,
    pub(super) request_mirror_policies: &'a [RequestMirrorPolicy],
}

/// A virtual host's policies, translated once and copied onto each of its
/// routes that does not set its own (Envoy: the route's policy replaces the
/// virtual host's, it is not merged).
pub(super) struct VhostDefaults {
    retry: Option<ModelRetry>,
    mirrors: Vec<MirrorPolicy>,
    attempt_count: bool,
    overrides: Vec<FilterOverride>,
}

impl VhostDefaults {
    pub(super) fn new(
        cx: &mut Context,
        path: &str,
        f: VhostFields<'_>,
        validate_clusters: bool,
    ) -> VhostDefaults {
        let mut overrides = Vec::new();
        if let Some(c) = f.cors
            && let Some(c) = super::filter::route_cors(cx, c, &at(path, "cors"))
        {
            super::filter::set_override(
                &mut overrides,
                String::new(),
                FilterOverrideConfig::Config(crate::model::extension::Extension::new(
                    crate::model::filter::type_url::CORS_POLICY,
                    c,
                )),
            );
        }
        super::filter::per_filter_configs(cx, f.typed_per_filter_config, path, &mut overrides);
        VhostDefaults {
            retry: f
                .retry_policy
                .as_ref()
                .and_then(|p| retry_policy(cx, p, &at(path, "retry_policy"))),
            mirrors: mirror_policies(cx, f.request_mirror_policies, path, validate_clusters),
            attempt_count: f.include_request_attempt_count,
            overrides,
        }
    }

    pub(super) fn apply(&self, routes: &mut [crate::model::Route]) {
        for r in routes.iter_mut() {
            if let crate::model::RouteAction::Forward(f) = &mut r.action {
                if f.retry_policy.is_none() {
                    f.retry_policy.clone_from(&self.retry);
                }
                if f.request_mirror_policies.is_empty() {
                    f.request_mirror_policies.clone_from(&self.mirrors);
                }
                f.include_attempt_count = self.attempt_count;
            }
        }
        inherit_overrides(&self.overrides, routes);
    }
}

/// Adds `outer` (a less specific level's per-filter configs) after each
/// route's own: the route's list holds every level, most specific first.
/// A filter that reads only the most specific config finds the route's
/// entry first; one that evaluates every level (header mutation, as Envoy
/// does) reads them all.
pub(super) fn inherit_overrides(outer: &[FilterOverride], routes: &mut [crate::model::Route]) {
    if outer.is_empty() {
        return;
    }
    for r in routes.iter_mut() {
        r.per_filter_config.extend(outer.iter().cloned());
    }
}

/// A `type.matcher.v3.MetadataMatcher`.
pub(super) fn metadata_matcher(
    cx: &mut Context,
    m: &envoy_types::pb::envoy::r#type::matcher::v3::MetadataMatcher,
    path: &str,
) -> Option<crate::model::policy::MetadataMatcher> {
    use envoy_types::pb::envoy::r#type::matcher::v3::{
        MetadataMatcher,
        metadata_matcher::{PathSegment, path_segment::Segment},
    };
    let MetadataMatcher {
        filter,
        path: segments,
        value,
        invert,
    } = m;
    if filter.is_empty() {
        cx.invalid(at(path, "filter"), "must not be empty");
    }
    if segments.is_empty() {
        cx.invalid(at(path, "path"), "needs at least one key");
    }
    let keys: Vec<String> = segments
        .iter()
        .filter_map(|PathSegment { segment }| segment.as_ref().map(|Segment::Key(k)| k.clone()))
        .collect();
    let Some(value) = value else {
        cx.invalid(at(path, "value"), "is required");
        return None;
    };
    let value = metadata_value(cx, value, &at(path, "value"))?;
    (!filter.is_empty() && !keys.is_empty()).then(|| crate::model::policy::MetadataMatcher {
        filter: filter.clone(),
        path: keys,
        value,
        invert: *invert,
    })
}

fn metadata_value(
    cx: &mut Context,
    v: &envoy_types::pb::envoy::r#type::matcher::v3::ValueMatcher,
    path: &str,
) -> Option<crate::model::policy::MetadataValue> {
    use crate::model::policy::MetadataValue as M;
    use envoy_types::pb::envoy::r#type::{
        matcher::v3::{
            DoubleMatcher, ListMatcher, OrMatcher, ValueMatcher, double_matcher, list_matcher,
            value_matcher::MatchPattern as P,
        },
        v3::DoubleRange,
    };
    let ValueMatcher { match_pattern } = v;
    match match_pattern {
        Some(P::NullMatch(_)) => Some(M::Null),
        Some(P::DoubleMatch(DoubleMatcher { match_pattern })) => match match_pattern {
            Some(double_matcher::MatchPattern::Exact(n)) => Some(M::Number(*n)),
            Some(double_matcher::MatchPattern::Range(DoubleRange { start, end })) => {
                Some(M::Range {
                    start: *start,
                    end: *end,
                })
            }
            None => {
                cx.invalid(at(path, "double_match"), "needs exact or range");
                None
            }
        },
        Some(P::StringMatch(s)) => string_matcher(cx, s, &at(path, "string_match")).map(M::String),
        Some(P::BoolMatch(b)) => Some(M::Bool(*b)),
        Some(P::PresentMatch(b)) => Some(M::Present(*b)),
        Some(P::ListMatch(l)) => {
            let ListMatcher { match_pattern } = l.as_ref();
            match match_pattern {
                Some(list_matcher::MatchPattern::OneOf(inner)) => {
                    metadata_value(cx, inner, &at(path, "list_match.one_of"))
                        .map(|m| M::ListOneOf(Box::new(m)))
                }
                None => {
                    cx.invalid(at(path, "list_match"), "needs one_of");
                    None
                }
            }
        }
        Some(P::OrMatch(OrMatcher { value_matchers })) => {
            let before = cx.problems.len();
            let all: Vec<_> = value_matchers
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    metadata_value(cx, m, &item(path, "or_match.value_matchers", i))
                })
                .collect();
            (cx.problems.len() == before).then_some(M::Or(all))
        }
        None => {
            cx.invalid(path, "needs a match pattern");
            None
        }
    }
}

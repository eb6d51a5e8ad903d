//! The HTTP filters Strait runs before the router (fault, CORS, header
//! mutation) and their per-route overrides (`typed_per_filter_config`).

use std::collections::HashMap;

use envoy_types::pb::{
    envoy::{
        config::{
            common::mutation_rules::v3::{HeaderMutation as MutationRule, header_mutation},
            core::v3::{HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction},
            route::v3::{CorsPolicy as RouteCors, FilterConfig, cors_policy::EnabledSpecifier},
        },
        extensions::filters::{
            common::fault::v3::{FaultDelay, fault_delay::FaultDelaySecifier},
            http::{
                cors::v3::{Cors, CorsPolicy as FilterCors},
                ext_authz::v3::{ExtAuthz, ExtAuthzPerRoute},
                fault::v3::{FaultAbort, HttpFault, fault_abort::ErrorType},
                header_mutation::v3::{HeaderMutation, HeaderMutationPerRoute, Mutations},
                jwt_authn::v3::{JwtAuthentication, PerRouteConfig},
                local_ratelimit::v3::LocalRateLimit as HttpLocalRateLimit,
                ratelimit::v3::RateLimit as HttpRateLimit,
                rbac::v3::{Rbac as RbacFilter, RbacPerRoute},
            },
        },
    },
    google::protobuf::{Any, BoolValue},
};
use prost::Name;

use super::{
    Context, at, bool_value, decode_any, item,
    policy::{header_condition, runtime_fraction_default, string_matcher},
    type_name,
};
use crate::model::{
    AppendAction,
    extension::{Extension, TypedValue},
    filter::{
        CorsFilter, CorsPolicy, FaultAbort as ModelAbort, FaultAbortKind, FaultConfig,
        FaultDelay as ModelDelay, FaultDelayKind, FilterOverride, FilterOverrideConfig,
        HeaderMutationConfig, HeaderMutationFilter, HeaderOp, type_url,
    },
    policy::Fraction,
};

/// A non-router HTTP filter's `typed_config`; `None` (after recording why)
/// when it is not one Strait runs. Built-in filters are translated here
/// field by field; any other type URL goes to the parser registered for it
/// (an embedding program's filter), if any.
pub(super) fn http_filter_config(cx: &mut Context, any: &Any, path: &str) -> Option<Extension> {
    let name = type_name(&any.type_url);
    if name == HttpFault::full_name() {
        let f = decode_any::<HttpFault>(cx, path, any)?;
        fault(cx, &f, path).map(|c| Extension::new(type_url::FAULT, c))
    } else if name == Cors::full_name() {
        // `Cors` has no fields: policies live on routes and virtual hosts.
        decode_any::<Cors>(cx, path, any).map(|Cors {}| Extension::new(type_url::CORS, CorsFilter))
    } else if name == HeaderMutation::full_name() {
        let m = decode_any::<HeaderMutation>(cx, path, any)?;
        let HeaderMutation {
            mutations,
            most_specific_header_mutations_wins,
        } = &m;
        let config = HeaderMutationFilter {
            mutations: mutations_of(cx, mutations.as_ref(), &at(path, "mutations")),
            most_specific_wins: *most_specific_header_mutations_wins,
        };
        Some(Extension::new(type_url::HEADER_MUTATION, config))
    } else if name == ExtAuthz::full_name() {
        let c = decode_any::<ExtAuthz>(cx, path, any)?;
        super::ext_authz::ext_authz(cx, &c, path).map(|c| Extension::new(type_url::EXT_AUTHZ, c))
    } else if name == RbacFilter::full_name() {
        super::rbac::http_filter(cx, any, path)
    } else if name == HttpLocalRateLimit::full_name() {
        super::ratelimit::http_local(cx, any, path, false)
    } else if name == HttpRateLimit::full_name() {
        super::ratelimit::http_global(cx, any, path)
    } else if name == JwtAuthentication::full_name() {
        super::jwt::jwt_authentication(cx, any, path)
    } else if name == super::jwt::ISTIO_AUTHN {
        super::jwt::istio_authn(cx, any, path)
    } else if let Some((kind, config)) = super::istio::recognise(any) {
        use super::istio::{ALPN, PEER_METADATA, STATS, WASM_MX, WASM_STATS};
        match kind {
            STATS | WASM_STATS => super::istio::stats(cx, kind, &config, path),
            PEER_METADATA | WASM_MX => super::istio::peer_metadata(cx, kind, &config, path),
            ALPN => super::istio::alpn(cx, &config, path),
            _ => None,
        }
    } else {
        registered(cx, any, path, |p, url, v| p.http_filter(url, v))
    }
}

/// Asks the parser registered for `any`'s type URL (unwrapping a
/// `TypedStruct` first, as Envoy configures extensions it has no proto of).
/// `None` without recording a problem when nothing is registered (the
/// caller decides whether that is an error); a parser's refusal is
/// recorded as invalid at `path`.
pub(super) fn registered(
    cx: &mut Context,
    any: &Any,
    path: &str,
    ask: impl Fn(
        &std::sync::Arc<dyn crate::model::extension::ExtensionParsers>,
        &str,
        TypedValue<'_>,
    ) -> Option<Result<Extension, String>>,
) -> Option<Extension> {
    let parsers = std::sync::Arc::clone(&cx.parsers);
    let verdict = match super::inert::typed_struct(any) {
        Some((url, value)) => ask(&parsers, &url, TypedValue::Struct(&value)),
        None => ask(&parsers, &any.type_url, TypedValue::Proto(&any.value)),
    };
    match verdict? {
        Ok(e) => Some(e),
        Err(why) => {
            cx.invalid(path, why);
            None
        }
    }
}

/// `typed_per_filter_config` of one level, merged into `into` (later levels
/// are more specific and replace earlier entries of the same name).
pub(super) fn per_filter_configs(
    cx: &mut Context,
    map: &HashMap<String, Any>,
    path: &str,
    into: &mut Vec<FilterOverride>,
) {
    // Sorted so that errors come out in a stable order.
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    for name in names {
        let Some(any) = map.get(name) else { continue };
        let fpath = format!("{}[{name}]", at(path, "typed_per_filter_config"));
        if let Some(config) = per_filter_override(cx, any, &fpath) {
            set_override(into, name.clone(), config);
        }
    }
}

/// Replaces or adds the override for `name`.
pub(super) fn set_override(
    into: &mut Vec<FilterOverride>,
    name: String,
    config: FilterOverrideConfig,
) {
    match into.iter_mut().find(|o| o.name == name) {
        Some(o) => o.config = config,
        None => into.push(FilterOverride { name, config }),
    }
}

fn per_filter_override(cx: &mut Context, any: &Any, path: &str) -> Option<FilterOverrideConfig> {
    let name = type_name(&any.type_url);
    if name == FilterConfig::full_name() {
        let FilterConfig {
            config,
            is_optional,
            disabled,
        } = decode_any::<FilterConfig>(cx, path, any)?;
        if disabled {
            // Envoy ignores `config` when the filter is disabled.
            return Some(FilterOverrideConfig::Disabled);
        }
        return match config {
            None => Some(FilterOverrideConfig::Enabled),
            Some(inner) => {
                let before = cx.problems.len();
                let out = typed_override(cx, &inner, &at(path, "config"));
                if out.is_none() && is_optional {
                    // Envoy skips an optional override it does not know.
                    cx.problems.truncate(before);
                }
                out
            }
        };
    }
    typed_override(cx, any, path)
}

fn typed_override(cx: &mut Context, any: &Any, path: &str) -> Option<FilterOverrideConfig> {
    let name = type_name(&any.type_url);
    let config = if name == HttpFault::full_name() {
        let f = decode_any::<HttpFault>(cx, path, any)?;
        fault(cx, &f, path).map(|c| Extension::new(type_url::FAULT, c))
    } else if name == FilterCors::full_name() {
        let c = decode_any::<FilterCors>(cx, path, any)?;
        filter_cors(cx, &c, path).map(|c| Extension::new(type_url::CORS_POLICY, c))
    } else if name == HeaderMutationPerRoute::full_name() {
        let HeaderMutationPerRoute { mutations } =
            decode_any::<HeaderMutationPerRoute>(cx, path, any)?;
        let m = mutations_of(cx, mutations.as_ref(), &at(path, "mutations"));
        Some(Extension::new(type_url::HEADER_MUTATION_PER_ROUTE, m))
    } else if name == ExtAuthzPerRoute::full_name() {
        let c = decode_any::<ExtAuthzPerRoute>(cx, path, any)?;
        super::ext_authz::per_route(cx, &c, path)
            .map(|c| Extension::new(type_url::EXT_AUTHZ_PER_ROUTE, c))
    } else if name == RbacPerRoute::full_name() {
        super::rbac::http_per_route(cx, any, path)
    } else if name == HttpLocalRateLimit::full_name() {
        super::ratelimit::http_local(cx, any, path, true)
    } else if name == PerRouteConfig::full_name() {
        super::jwt::per_route(cx, any, path)
    } else {
        let before = cx.problems.len();
        let found = registered(cx, any, path, |p, url, v| p.http_filter_per_route(url, v));
        if found.is_some() || cx.problems.len() > before {
            return found.map(FilterOverrideConfig::Config);
        }
        cx.unsupported(
            at(path, "@type"),
            format!("per-route config {}", super::inert::effective_type_url(any)),
        );
        return None;
    };
    config.map(FilterOverrideConfig::Config)
}

fn fault(cx: &mut Context, f: &HttpFault, path: &str) -> Option<FaultConfig> {
    let HttpFault {
        delay,
        abort,
        upstream_cluster,
        headers,
        downstream_nodes,
        max_active_faults,
        response_rate_limit,
        // Runtime keys: Strait has no runtime layer, so the configured
        // values are always the ones in force, as they are in Envoy when
        // the keys are not set.
        delay_percent_runtime: _,
        abort_percent_runtime: _,
        delay_duration_runtime: _,
        abort_http_status_runtime: _,
        max_active_faults_runtime: _,
        response_rate_limit_percent_runtime: _,
        abort_grpc_status_runtime: _,
        // Stats naming only.
        disable_downstream_cluster_stats: _,
        filter_metadata,
    } = f;
    reject_set!(cx, path; downstream_nodes, response_rate_limit, filter_metadata);
    let before = cx.problems.len();
    let delay = delay
        .as_ref()
        .and_then(|d| fault_delay(cx, d, &at(path, "delay")));
    let abort = abort
        .as_ref()
        .and_then(|a| fault_abort(cx, a, &at(path, "abort")));
    let headers = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| header_condition(cx, h, &item(path, "headers", i)))
        .collect();
    (cx.problems.len() == before).then(|| FaultConfig {
        delay,
        abort,
        max_active_faults: max_active_faults.as_ref().map(|v| v.value),
        upstream_cluster: (!upstream_cluster.is_empty()).then(|| upstream_cluster.clone()),
        headers,
    })
}

fn fault_delay(cx: &mut Context, d: &FaultDelay, path: &str) -> Option<ModelDelay> {
    let FaultDelay {
        percentage,
        fault_delay_secifier,
    } = d;
    let kind = match fault_delay_secifier {
        Some(FaultDelaySecifier::FixedDelay(d)) => {
            FaultDelayKind::Fixed(super::duration(cx, &at(path, "fixed_delay"), d)?)
        }
        Some(FaultDelaySecifier::HeaderDelay(_)) => FaultDelayKind::Header,
        None => {
            cx.invalid(path, "needs fixed_delay or header_delay");
            return None;
        }
    };
    let (percentage, percentage_scale) =
        percentage_or_all(cx, percentage.as_ref(), &at(path, "percentage"));
    Some(ModelDelay {
        kind,
        percentage,
        percentage_scale,
    })
}

fn fault_abort(cx: &mut Context, a: &FaultAbort, path: &str) -> Option<ModelAbort> {
    let FaultAbort {
        percentage,
        response_body,
        error_type,
    } = a;
    reject_set!(cx, path; response_body);
    let kind = match error_type {
        Some(ErrorType::HttpStatus(s)) => match u16::try_from(*s) {
            Ok(s) if (200..600).contains(&s) => FaultAbortKind::Http(s),
            _ => {
                cx.invalid(at(path, "http_status"), format!("{s} is not in 200..=599"));
                return None;
            }
        },
        Some(ErrorType::GrpcStatus(s)) => FaultAbortKind::Grpc(*s),
        Some(ErrorType::HeaderAbort(_)) => FaultAbortKind::Header,
        None => {
            cx.invalid(path, "needs http_status, grpc_status or header_abort");
            return None;
        }
    };
    let (percentage, percentage_scale) =
        percentage_or_all(cx, percentage.as_ref(), &at(path, "percentage"));
    Some(ModelAbort {
        kind,
        percentage,
        percentage_scale,
    })
}

/// A fault's `percentage` and its scale: absent means the fault always
/// applies (Envoy's default is 100%, unlike an empty `FractionalPercent`
/// message's 0), in hundredths.
fn percentage_or_all(
    cx: &mut Context,
    p: Option<&envoy_types::pb::envoy::r#type::v3::FractionalPercent>,
    path: &str,
) -> (Fraction, u32) {
    match p {
        Some(p) => super::policy::fraction_and_scale(cx, p, path),
        None => (Fraction::ALL, 10_000),
    }
}

fn filter_cors(cx: &mut Context, c: &FilterCors, path: &str) -> Option<CorsPolicy> {
    let FilterCors {
        allow_origin_string_match,
        allow_methods,
        allow_headers,
        expose_headers,
        max_age,
        allow_credentials,
        filter_enabled,
        shadow_enabled,
        allow_private_network_access,
        forward_not_matching_preflights,
    } = c;
    reject_set!(cx, path; shadow_enabled);
    let enabled = match filter_enabled {
        Some(r) => runtime_fraction_default(cx, r, &at(path, "filter_enabled")),
        None => Fraction::ALL,
    };
    cors_common(
        cx,
        path,
        CorsFields {
            origins: allow_origin_string_match,
            allow_methods,
            allow_headers,
            expose_headers,
            max_age,
            allow_credentials,
            allow_private_network_access,
            forward_not_matching_preflights,
        },
        enabled,
    )
}

/// The deprecated `cors` of a virtual host or route action.
pub(super) fn route_cors(cx: &mut Context, c: &RouteCors, path: &str) -> Option<CorsPolicy> {
    let RouteCors {
        allow_origin_string_match,
        allow_methods,
        allow_headers,
        expose_headers,
        max_age,
        allow_credentials,
        shadow_enabled,
        allow_private_network_access,
        forward_not_matching_preflights,
        enabled_specifier,
    } = c;
    reject_set!(cx, path; shadow_enabled);
    let enabled = match enabled_specifier {
        Some(EnabledSpecifier::FilterEnabled(r)) => {
            runtime_fraction_default(cx, r, &at(path, "filter_enabled"))
        }
        None => Fraction::ALL,
    };
    cors_common(
        cx,
        path,
        CorsFields {
            origins: allow_origin_string_match,
            allow_methods,
            allow_headers,
            expose_headers,
            max_age,
            allow_credentials,
            allow_private_network_access,
            forward_not_matching_preflights,
        },
        enabled,
    )
}

/// The fields both CORS policy messages share.
struct CorsFields<'a> {
    origins: &'a [envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher],
    allow_methods: &'a str,
    allow_headers: &'a str,
    expose_headers: &'a str,
    max_age: &'a str,
    allow_credentials: &'a Option<BoolValue>,
    allow_private_network_access: &'a Option<BoolValue>,
    forward_not_matching_preflights: &'a Option<BoolValue>,
}

fn cors_common(
    cx: &mut Context,
    path: &str,
    f: CorsFields<'_>,
    enabled: Fraction,
) -> Option<CorsPolicy> {
    let before = cx.problems.len();
    let allow_origins = f
        .origins
        .iter()
        .enumerate()
        .filter_map(|(i, m)| string_matcher(cx, m, &item(path, "allow_origin_string_match", i)))
        .collect();
    let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    (cx.problems.len() == before).then(|| CorsPolicy {
        allow_origins,
        allow_methods: text(f.allow_methods),
        allow_headers: text(f.allow_headers),
        expose_headers: text(f.expose_headers),
        max_age: text(f.max_age),
        allow_credentials: bool_value(f.allow_credentials, false),
        allow_private_network_access: bool_value(f.allow_private_network_access, false),
        enabled,
        forward_not_matching_preflights: bool_value(f.forward_not_matching_preflights, true),
    })
}

fn mutations_of(cx: &mut Context, m: Option<&Mutations>, path: &str) -> HeaderMutationConfig {
    let Some(Mutations {
        request_mutations,
        query_parameter_mutations,
        response_mutations,
        response_trailers_mutations,
        request_trailers_mutations,
    }) = m
    else {
        return HeaderMutationConfig::default();
    };
    reject_set!(cx, path;
        query_parameter_mutations, response_trailers_mutations, request_trailers_mutations,
    );
    HeaderMutationConfig {
        request: rules(cx, request_mutations, &at(path, "request_mutations")),
        response: rules(cx, response_mutations, &at(path, "response_mutations")),
    }
}

fn rules(cx: &mut Context, list: &[MutationRule], path: &str) -> Vec<HeaderOp> {
    let mut out = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let rpath = format!("{path}[{i}]");
        let MutationRule { action } = r;
        match action {
            Some(header_mutation::Action::Remove(name)) => {
                if let Some(name) = header_name(cx, name, &at(&rpath, "remove")) {
                    out.push(HeaderOp::Remove(name));
                }
            }
            Some(header_mutation::Action::Append(opt)) => {
                if let Some(op) = header_value_option(cx, opt, &at(&rpath, "append")) {
                    out.push(op);
                }
            }
            Some(header_mutation::Action::RemoveOnMatch(_)) => {
                cx.unsupported(at(&rpath, "remove_on_match"), "remove_on_match");
            }
            None => cx.invalid(rpath, "needs remove or append"),
        }
    }
    out
}

fn header_name(cx: &mut Context, name: &str, path: &str) -> Option<http::HeaderName> {
    let lower = name.to_ascii_lowercase();
    if lower.is_empty() || lower.starts_with(':') || lower == "host" {
        cx.invalid(path, format!("'{name}' cannot be mutated"));
        return None;
    }
    match http::HeaderName::from_bytes(lower.as_bytes()) {
        Ok(n) => Some(n),
        Err(_) => {
            cx.invalid(path, format!("'{name}' is not a header name"));
            None
        }
    }
}

fn header_value_option(cx: &mut Context, o: &HeaderValueOption, path: &str) -> Option<HeaderOp> {
    let HeaderValueOption {
        header,
        append,
        append_action,
        keep_empty_value,
    } = o;
    let Some(HeaderValue {
        key,
        value,
        raw_value,
    }) = header
    else {
        cx.invalid(at(path, "header"), "is required");
        return None;
    };
    let hpath = at(path, "header");
    let name = header_name(cx, key, &at(&hpath, "key"))?;
    let value = if raw_value.is_empty() {
        value.clone()
    } else {
        match String::from_utf8(raw_value.clone()) {
            Ok(v) => v,
            Err(_) => {
                cx.unsupported(at(&hpath, "raw_value"), "raw_value that is not UTF-8");
                return None;
            }
        }
    };
    // Envoy reads `%...%` as a substitution formatter; only the `%%` escape
    // is supported.
    if value.replace("%%", "").contains('%') {
        cx.unsupported(at(&hpath, "value"), "header value formatters (%...%)");
        return None;
    }
    let value = value.replace("%%", "%");
    let Ok(parsed) = http::HeaderValue::from_str(&value) else {
        cx.invalid(at(&hpath, "value"), "is not a valid header value");
        return None;
    };
    if value.is_empty() && !keep_empty_value {
        // Envoy skips an empty value unless told to keep it.
        return None;
    }
    let action = match (append, HeaderAppendAction::try_from(*append_action)) {
        (Some(a), _) if a.value => AppendAction::AppendIfExistsOrAdd,
        (Some(_), _) => AppendAction::OverwriteIfExistsOrAdd,
        (None, Ok(HeaderAppendAction::AppendIfExistsOrAdd)) => AppendAction::AppendIfExistsOrAdd,
        (None, Ok(HeaderAppendAction::AddIfAbsent)) => AppendAction::AddIfAbsent,
        (None, Ok(HeaderAppendAction::OverwriteIfExistsOrAdd)) => {
            AppendAction::OverwriteIfExistsOrAdd
        }
        (None, Ok(HeaderAppendAction::OverwriteIfExists)) => AppendAction::OverwriteIfExists,
        (None, Err(_)) => {
            cx.invalid(
                at(path, "append_action"),
                format!("unknown value {append_action}"),
            );
            return None;
        }
    };
    Some(HeaderOp::Set {
        name,
        value: parsed,
        action,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{
        ConfigError, load,
        model::{
            HttpConnectionManager, NetworkFilter, RouteAction,
            filter::{
                CorsPolicy, FaultAbortKind, FaultConfig, FaultDelayKind, FilterOverrideConfig,
            },
            policy::RetryOn,
        },
    };

    /// A bootstrap with `filters` (list items at 10 spaces), `vhost` (vhost
    /// fields at 14 spaces) and `route` (route action fields at 18 spaces).
    fn yaml(filters: &str, vhost: &str, route: &str) -> String {
        format!(
            r#"
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 10000}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
{vhost}
              routes:
              - match: {{prefix: "/"}}
                route:
                  cluster: backend
{route}
          http_filters:
{filters}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: backend
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 1}}}}}}
"#
        )
    }

    fn hcm(y: &str) -> HttpConnectionManager {
        let cfg = load(y).unwrap_or_else(|e| panic!("{e:?}"));
        match &cfg.listeners[0].filter_chains[0].terminal {
            NetworkFilter::Http(h) => h.clone(),
            NetworkFilter::Tcp(_) | NetworkFilter::Extension(_) => panic!("not http"),
        }
    }

    #[test]
    fn retry_policy_with_defaults_and_vhost_inheritance() {
        let h = hcm(&yaml(
            "",
            "              include_request_attempt_count: true\n              retry_policy: {retry_on: \"5xx,unavailable\", num_retries: 3, per_try_timeout: 0.5s, retry_back_off: {base_interval: 0.1s}}",
            "",
        ));
        let RouteAction::Forward(f) =
            &h.route_config.inline().expect("inline").virtual_hosts[0].routes[0].action
        else {
            panic!("not forward");
        };
        let p = f
            .retry_policy
            .as_ref()
            .expect("inherited from the virtual host");
        assert!(p.retry_on.contains(RetryOn::FIVE_XX));
        assert!(p.retry_on.contains(RetryOn::GRPC_UNAVAILABLE));
        assert_eq!(p.num_retries, 3);
        assert_eq!(p.per_try_timeout, Some(Duration::from_millis(500)));
        assert_eq!(p.max_interval, Duration::from_secs(1));
        assert!(f.include_attempt_count);

        // The route's own policy replaces the virtual host's.
        let h = hcm(&yaml(
            "",
            "              retry_policy: {retry_on: 5xx, num_retries: 3}",
            "                  retry_policy: {retry_on: reset}",
        ));
        let RouteAction::Forward(f) =
            &h.route_config.inline().expect("inline").virtual_hosts[0].routes[0].action
        else {
            panic!("not forward");
        };
        let p = f.retry_policy.as_ref().expect("route policy");
        assert_eq!(p.retry_on, RetryOn::RESET);
        assert_eq!(p.num_retries, 1);
        assert_eq!(p.base_interval, Duration::from_millis(25));
    }

    #[test]
    fn filters_and_overrides() {
        let filters = r#"          - name: fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              delay: {header_delay: {}, percentage: {numerator: 5, denominator: TEN_THOUSAND}}
              abort: {grpc_status: 14}
          - name: cors
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}"#;
        let vhost = r#"              cors: {allow_origin_string_match: [{exact: "https://a"}]}
              typed_per_filter_config:
                fault: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}"#;
        let h = hcm(&yaml(filters, vhost, ""));
        let Some(f) = h.http_filters[0].config.get::<FaultConfig>() else {
            panic!("fault");
        };
        let d = f.delay.as_ref().expect("delay");
        assert_eq!(d.kind, FaultDelayKind::Header);
        assert_eq!(d.percentage.per_million, 500);
        assert_eq!(
            f.abort.as_ref().map(|a| a.kind),
            Some(FaultAbortKind::Grpc(14))
        );
        let route = &h.route_config.inline().expect("inline").virtual_hosts[0].routes[0];
        assert!(
            route
                .per_filter_config
                .iter()
                .any(|o| o.name == "fault" && o.config == FilterOverrideConfig::Disabled)
        );
        assert!(
            route
                .per_filter_config
                .iter()
                .any(|o| o.name.is_empty() && o.config.get::<CorsPolicy>().is_some())
        );
    }

    #[test]
    fn refused_with_their_path() {
        let route0 = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route";
        let cases: &[(&str, &str, &str, String)] = &[
            ("", "", "                  retry_policy: {retry_on: \"5xx,bogus\"}", format!("{route0}.retry_policy.retry_on")),
            ("", "", "                  hash_policy: [{cookie: {name: s, ttl: 1s}}]", format!("{route0}.hash_policy[0].cookie.ttl")),
            ("", "", "                  request_mirror_policies: [{cluster: nope}]", format!("{route0}.request_mirror_policies[0].cluster")),
            ("", "", "                  retry_policy: {retry_on: 5xx, retriable_headers: [{name: x, safe_regex_match: {regex: \"(\"}}]}", format!("{route0}.retry_policy.retriable_headers[0].safe_regex_match.regex")),
            (
                "          - name: f\n            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, downstream_nodes: [a]}",
                "",
                "",
                "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.downstream_nodes".to_owned(),
            ),
        ];
        for (filters, vhost, route, path) in cases {
            let errs = load(&yaml(filters, vhost, route)).expect_err("must be refused");
            assert!(
                errs.iter().any(|e: &ConfigError| e.path() == path),
                "{path}: {errs:?}"
            );
        }
    }
}

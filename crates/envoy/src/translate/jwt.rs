//! `envoy.filters.http.jwt_authn` (`JwtAuthentication`, `PerRouteConfig`)
//! and Istio's legacy `istio_authn` HTTP filter, field by field.

use std::collections::HashMap;

use envoy_types::pb::{
    envoy::{
        config::core::v3::{
            DataSource, HttpUri, RetryPolicy, data_source, http_uri::HttpUpstreamType,
        },
        extensions::filters::http::jwt_authn::v3::{
            JwksAsyncFetch, JwtAuthentication, JwtCacheConfig, JwtClaimToHeader, JwtHeader,
            JwtProvider, JwtRequirement, JwtRequirementAndList, JwtRequirementOrList,
            PerRouteConfig, ProviderWithAudiences, RemoteJwks, RequirementRule,
            jwt_provider::JwksSourceSpecifier, jwt_requirement::RequiresType,
            per_route_config::RequirementSpecifier, requirement_rule::RequirementType,
        },
    },
    google::protobuf::Any,
};
use prost::Message;

use super::{Context, at, decode_any, duration, item, route::matcher::route_match};
use crate::model::{
    self,
    extension::Extension,
    jwt::{
        ClaimToHeader, IstioAuthn, JwksRetry, JwksSource, JwtPerRoute, RuleRequirement, type_url,
    },
};

/// Envoy's `cache_duration` default for a remote JWKS.
const DEFAULT_CACHE: std::time::Duration = std::time::Duration::from_secs(600);

/// `JwtAuthentication` as the filter's config.
pub(super) fn jwt_authentication(cx: &mut Context, any: &Any, path: &str) -> Option<Extension> {
    let JwtAuthentication {
        providers,
        rules,
        filter_state_rules,
        bypass_cors_preflight,
        requirement_map,
        strip_failure_response,
        // Names the filter's stats only.
        stat_prefix: _,
    } = decode_any::<JwtAuthentication>(cx, path, any)?;
    reject_set!(cx, path; filter_state_rules);
    let before = cx.problems.len();
    let mut names: Vec<&String> = providers.keys().collect();
    names.sort();
    let providers: Vec<(String, model::jwt::JwtProvider)> = names
        .into_iter()
        .filter_map(|name| {
            let p = providers.get(name)?;
            let ppath = format!("{}[{name}]", at(path, "providers"));
            provider(cx, p, &ppath).map(|p| (name.clone(), p))
        })
        .collect();
    let known = |name: &str| providers.iter().any(|(n, _)| n == name);
    let mut req_names: Vec<&String> = requirement_map.keys().collect();
    req_names.sort();
    let requirement_map: Vec<(String, model::jwt::JwtRequirement)> = req_names
        .into_iter()
        .filter_map(|name| {
            let r = requirement_map.get(name)?;
            let rpath = format!("{}[{name}]", at(path, "requirement_map"));
            requirement(cx, r, &rpath, &known).map(|r| (name.clone(), r))
        })
        .collect();
    let rules = rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| rule(cx, r, &item(path, "rules", i), &known, &requirement_map))
        .collect();
    (cx.problems.len() == before).then(|| {
        Extension::new(
            type_url::JWT_AUTHN,
            model::jwt::JwtAuthentication {
                providers,
                rules,
                requirement_map,
                bypass_cors_preflight,
                strip_failure_response,
            },
        )
    })
}

/// `PerRouteConfig`.
pub(super) fn per_route(cx: &mut Context, any: &Any, path: &str) -> Option<Extension> {
    let PerRouteConfig {
        requirement_specifier,
    } = decode_any::<PerRouteConfig>(cx, path, any)?;
    let config = match requirement_specifier {
        Some(RequirementSpecifier::Disabled(true)) => JwtPerRoute::Disabled,
        Some(RequirementSpecifier::RequirementName(name)) if !name.is_empty() => {
            JwtPerRoute::RequirementName(name)
        }
        _ => {
            cx.invalid(path, "needs disabled: true or a requirement_name");
            return None;
        }
    };
    Some(Extension::new(type_url::JWT_PER_ROUTE, config))
}

fn provider(cx: &mut Context, p: &JwtProvider, path: &str) -> Option<model::jwt::JwtProvider> {
    let JwtProvider {
        issuer,
        audiences,
        subjects,
        require_expiration,
        max_lifetime,
        forward,
        from_headers,
        from_params,
        from_cookies,
        forward_payload_header,
        pad_forward_payload_header,
        payload_in_metadata,
        normalize_payload_in_metadata,
        header_in_metadata,
        failed_status_in_metadata,
        clock_skew_seconds,
        jwt_cache_config,
        claim_to_headers,
        clear_route_cache,
        jwks_source_specifier,
    } = p;
    reject_set!(cx, path; subjects, require_expiration, max_lifetime,
        failed_status_in_metadata, clear_route_cache);
    // Istio sets it (`scope` and `permission`) on every provider.
    let space_delimited_claims = normalize_payload_in_metadata
        .as_ref()
        .map(|n| n.space_delimited_claims.clone())
        .unwrap_or_default();
    let before = cx.problems.len();
    let jwks = match jwks_source_specifier {
        Some(JwksSourceSpecifier::LocalJwks(ds)) => local_jwks(cx, ds, &at(path, "local_jwks")),
        Some(JwksSourceSpecifier::RemoteJwks(r)) => {
            remote_jwks(cx, r, &at(path, "remote_jwks")).map(JwksSource::Remote)
        }
        None => {
            cx.invalid(path, "needs local_jwks or remote_jwks");
            None
        }
    };
    let from_headers = from_headers
        .iter()
        .enumerate()
        .filter_map(|(i, JwtHeader { name, value_prefix })| {
            let Ok(n) = http::HeaderName::from_bytes(name.as_bytes()) else {
                cx.invalid(item(path, "from_headers", i), "not a header name");
                return None;
            };
            Some(model::jwt::JwtHeader {
                name: n.as_str().to_owned(),
                value_prefix: value_prefix.clone(),
            })
        })
        .collect();
    let claim_to_headers = claim_to_headers
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let JwtClaimToHeader {
                header_name,
                claim_name,
                claim_path,
            } = c;
            let cpath = item(path, "claim_to_headers", i);
            reject_set!(cx, &cpath; claim_path);
            let Ok(h) = http::HeaderName::from_bytes(header_name.as_bytes()) else {
                cx.invalid(at(&cpath, "header_name"), "not a header name");
                return None;
            };
            if claim_name.is_empty() {
                cx.invalid(at(&cpath, "claim_name"), "is required");
                return None;
            }
            Some(ClaimToHeader {
                header_name: h.as_str().to_owned(),
                claim_name: claim_name.clone(),
            })
        })
        .collect();
    for (field, name) in [
        ("forward_payload_header", forward_payload_header),
        ("header_in_metadata", header_in_metadata),
        ("payload_in_metadata", payload_in_metadata),
    ] {
        if field == "forward_payload_header"
            && !name.is_empty()
            && http::HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            cx.invalid(at(path, field), "not a header name");
        }
    }
    let jwt_cache_size = jwt_cache_config.as_ref().map(
        |JwtCacheConfig {
             jwt_cache_size,
             // Tokens longer than this are not cached: a cache is invisible
             // to traffic (exp, nbf and aud are checked on every hit).
             jwt_max_token_size: _,
         }| {
            if *jwt_cache_size == 0 {
                100
            } else {
                *jwt_cache_size
            }
        },
    );
    let jwks = jwks?;
    (cx.problems.len() == before).then(|| model::jwt::JwtProvider {
        issuer: issuer.clone(),
        audiences: audiences.clone(),
        jwks,
        forward: *forward,
        from_headers,
        from_params: from_params.clone(),
        from_cookies: from_cookies.clone(),
        forward_payload_header: forward_payload_header.to_ascii_lowercase(),
        pad_forward_payload_header: *pad_forward_payload_header,
        payload_in_metadata: payload_in_metadata.clone(),
        space_delimited_claims,
        header_in_metadata: header_in_metadata.clone(),
        clock_skew_seconds: u64::from(*clock_skew_seconds),
        claim_to_headers,
        jwt_cache_size,
    })
}

fn local_jwks(cx: &mut Context, ds: &DataSource, path: &str) -> Option<JwksSource> {
    let DataSource {
        watched_directory,
        specifier,
    } = ds;
    reject_set!(cx, path; watched_directory);
    match specifier {
        Some(data_source::Specifier::InlineString(s)) => Some(JwksSource::Inline(s.clone())),
        Some(data_source::Specifier::InlineBytes(b)) => match String::from_utf8(b.clone()) {
            Ok(s) => Some(JwksSource::Inline(s)),
            Err(_) => {
                cx.invalid(at(path, "inline_bytes"), "not UTF-8");
                None
            }
        },
        Some(data_source::Specifier::Filename(f)) if !f.is_empty() => {
            Some(JwksSource::File(f.into()))
        }
        Some(data_source::Specifier::EnvironmentVariable(_)) => {
            cx.unsupported(at(path, "environment_variable"), "environment_variable");
            None
        }
        _ => {
            cx.invalid(path, "needs inline_string, inline_bytes or filename");
            None
        }
    }
}

fn remote_jwks(cx: &mut Context, r: &RemoteJwks, path: &str) -> Option<model::jwt::RemoteJwks> {
    let RemoteJwks {
        http_uri,
        cache_duration,
        async_fetch,
        retry_policy,
    } = r;
    let Some(HttpUri {
        uri,
        timeout,
        http_upstream_type,
    }) = http_uri
    else {
        cx.invalid(at(path, "http_uri"), "is required");
        return None;
    };
    let upath = at(path, "http_uri");
    let cluster = match http_upstream_type {
        Some(HttpUpstreamType::Cluster(c)) if !c.is_empty() => c.clone(),
        _ => {
            cx.invalid(at(&upath, "cluster"), "is required");
            return None;
        }
    };
    if http::Uri::try_from(uri.as_str()).map_or(true, |u| u.authority().is_none()) {
        cx.invalid(at(&upath, "uri"), "must be an absolute http(s) URI");
        return None;
    }
    let timeout = match timeout {
        Some(t) => duration(cx, &at(&upath, "timeout"), t)?,
        None => {
            cx.invalid(at(&upath, "timeout"), "is required");
            return None;
        }
    };
    let cache_duration = match cache_duration {
        Some(d) => duration(cx, &at(path, "cache_duration"), d)?,
        None => DEFAULT_CACHE,
    };
    let async_fetch = match async_fetch {
        Some(JwksAsyncFetch {
            fast_listener,
            failed_refetch_duration,
        }) => Some(model::jwt::JwksAsyncFetch {
            fast_listener: *fast_listener,
            failed_refetch: match failed_refetch_duration {
                Some(d) => duration(cx, &at(path, "async_fetch.failed_refetch_duration"), d)?,
                None => std::time::Duration::from_secs(1),
            },
        }),
        None => None,
    };
    let retry = match retry_policy {
        Some(p) => Some(retry(cx, p, &at(path, "retry_policy"))?),
        None => None,
    };
    Some(model::jwt::RemoteJwks {
        uri: uri.clone(),
        cluster,
        timeout,
        cache_duration,
        async_fetch,
        retry,
    })
}

fn retry(cx: &mut Context, p: &RetryPolicy, path: &str) -> Option<JwksRetry> {
    let RetryPolicy {
        retry_back_off,
        num_retries,
        retry_on,
        retry_priority,
        retry_host_predicate,
        host_selection_retry_max_attempts,
    } = p;
    // Envoy's JWKS fetcher retries on `5xx,gateway-error,connect-failure,
    // reset` unless `retry_on` says otherwise; only that default is run.
    reject_set!(cx, path; retry_on, retry_priority, retry_host_predicate,
        host_selection_retry_max_attempts);
    // Without a back-off, the router's default (25 ms, at most 250 ms).
    let (base, max) = match retry_back_off {
        None => (
            std::time::Duration::from_millis(25),
            std::time::Duration::from_millis(250),
        ),
        Some(b) => {
            let bpath = at(path, "retry_back_off");
            let base = match &b.base_interval {
                Some(d) => duration(cx, &at(&bpath, "base_interval"), d)?,
                None => {
                    cx.invalid(at(&bpath, "base_interval"), "is required");
                    return None;
                }
            };
            let max = match &b.max_interval {
                Some(d) => duration(cx, &at(&bpath, "max_interval"), d)?,
                None => base * 10,
            };
            (base, max)
        }
    };
    Some(JwksRetry {
        num_retries: num_retries.as_ref().map_or(1, |v| v.value),
        base_interval: base,
        max_interval: max.max(base),
    })
}

fn rule(
    cx: &mut Context,
    r: &RequirementRule,
    path: &str,
    known: &dyn Fn(&str) -> bool,
    map: &[(String, model::jwt::JwtRequirement)],
) -> Option<model::jwt::RequirementRule> {
    let RequirementRule {
        r#match,
        requirement_type,
    } = r;
    let Some(m) = r#match else {
        cx.invalid(at(path, "match"), "is required");
        return None;
    };
    let route_match = route_match(cx, m, &at(path, "match"))?;
    let requirement = match requirement_type {
        None => None,
        Some(RequirementType::Requires(req)) => Some(RuleRequirement::Inline(requirement(
            cx,
            req,
            &at(path, "requires"),
            known,
        )?)),
        Some(RequirementType::RequirementName(name)) => {
            if !map.iter().any(|(n, _)| n == name) {
                cx.invalid(
                    at(path, "requirement_name"),
                    format!(
                        "Wrong requirement_name: {name}. It should be one of [requirement_map]"
                    ),
                );
                return None;
            }
            Some(RuleRequirement::Named(name.clone()))
        }
    };
    Some(model::jwt::RequirementRule {
        route_match,
        requirement,
    })
}

fn requirement(
    cx: &mut Context,
    r: &JwtRequirement,
    path: &str,
    known: &dyn Fn(&str) -> bool,
) -> Option<model::jwt::JwtRequirement> {
    use model::jwt::JwtRequirement as M;
    let JwtRequirement { requires_type } = r;
    let provider = |cx: &mut Context, name: &str, field: &str| {
        if known(name) {
            true
        } else {
            cx.invalid(
                at(path, field),
                format!("Required provider ['{name}'] is not configured."),
            );
            false
        }
    };
    Some(match requires_type {
        None => M::AllowAll,
        Some(RequiresType::ProviderName(name)) => {
            if !provider(cx, name, "provider_name") {
                return None;
            }
            M::Provider {
                name: name.clone(),
                audiences: None,
            }
        }
        Some(RequiresType::ProviderAndAudiences(ProviderWithAudiences {
            provider_name,
            audiences,
        })) => {
            if !provider(cx, provider_name, "provider_and_audiences.provider_name") {
                return None;
            }
            M::Provider {
                name: provider_name.clone(),
                // Envoy checks the provider's own audiences when the list
                // is empty.
                audiences: (!audiences.is_empty()).then(|| audiences.clone()),
            }
        }
        Some(RequiresType::RequiresAny(JwtRequirementOrList { requirements })) => {
            let list = list(cx, requirements, &at(path, "requires_any"), known)?;
            M::RequiresAny(list)
        }
        Some(RequiresType::RequiresAll(JwtRequirementAndList { requirements })) => {
            let list = list(cx, requirements, &at(path, "requires_all"), known)?;
            M::RequiresAll(list)
        }
        Some(RequiresType::AllowMissingOrFailed(_)) => M::AllowMissingOrFailed,
        Some(RequiresType::AllowMissing(_)) => M::AllowMissing,
        Some(RequiresType::ExtractOnlyWithoutValidation(_)) => {
            cx.unsupported(
                at(path, "extract_only_without_validation"),
                "extract_only_without_validation",
            );
            return None;
        }
    })
}

fn list(
    cx: &mut Context,
    requirements: &[JwtRequirement],
    path: &str,
    known: &dyn Fn(&str) -> bool,
) -> Option<Vec<model::jwt::JwtRequirement>> {
    if requirements.len() < 2 {
        cx.invalid(at(path, "requirements"), "needs at least 2 requirements");
        return None;
    }
    let before = cx.problems.len();
    let out: Vec<_> = requirements
        .iter()
        .enumerate()
        .filter_map(|(i, r)| requirement(cx, r, &item(path, "requirements", i), known))
        .collect();
    (cx.problems.len() == before).then_some(out)
}

/// Istio's `istio.envoy.config.filter.http.authn.v2alpha1.FilterConfig`:
/// not among `envoy-types`' protos, so its fields are declared here.
pub(super) const ISTIO_AUTHN: &str = "istio.envoy.config.filter.http.authn.v2alpha1.FilterConfig";

#[derive(Clone, PartialEq, Message)]
struct AuthnFilterConfig {
    #[prost(message, optional, tag = "1")]
    policy: Option<AuthnPolicy>,
    #[prost(map = "string, string", tag = "2")]
    jwt_output_payload_locations: HashMap<String, String>,
    #[prost(bool, tag = "3")]
    skip_validate_trust_domain: bool,
    #[prost(bool, tag = "4")]
    disable_clear_route_cache: bool,
}

#[derive(Clone, PartialEq, Message)]
struct AuthnPolicy {
    #[prost(bytes = "vec", repeated, tag = "1")]
    targets: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "2")]
    peers: Vec<PeerMethod>,
    #[prost(bool, tag = "3")]
    peer_is_optional: bool,
    #[prost(message, repeated, tag = "4")]
    origins: Vec<OriginMethod>,
    #[prost(bool, tag = "5")]
    origin_is_optional: bool,
    /// USE_PEER = 0, USE_ORIGIN = 1.
    #[prost(int32, tag = "6")]
    principal_binding: i32,
}

#[derive(Clone, PartialEq, Message)]
struct PeerMethod {
    #[prost(message, optional, tag = "1")]
    mtls: Option<MutualTls>,
    #[prost(bytes = "vec", optional, tag = "2")]
    jwt: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct MutualTls {
    #[prost(bool, tag = "1")]
    allow_tls: bool,
    /// STRICT = 0, PERMISSIVE = 1.
    #[prost(int32, tag = "2")]
    mode: i32,
}

#[derive(Clone, PartialEq, Message)]
struct OriginMethod {
    #[prost(message, optional, tag = "1")]
    jwt: Option<IstioJwt>,
}

#[derive(Clone, PartialEq, Message)]
struct IstioJwt {
    #[prost(string, tag = "1")]
    issuer: String,
    #[prost(string, repeated, tag = "2")]
    audiences: Vec<String>,
    #[prost(string, tag = "3")]
    jwks_uri: String,
    #[prost(string, tag = "10")]
    jwks: String,
    #[prost(string, repeated, tag = "6")]
    jwt_headers: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    jwt_params: Vec<String>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    trigger_rules: Vec<Vec<u8>>,
}

/// `istio_authn` (HTTP, Istio <= 1.10) from its protobuf bytes.
pub(super) fn istio_authn(cx: &mut Context, any: &Any, path: &str) -> Option<Extension> {
    let config = match AuthnFilterConfig::decode(any.value.as_slice()) {
        Ok(c) => c,
        Err(e) => {
            cx.invalid(path, format!("cannot decode {ISTIO_AUTHN}: {e}"));
            return None;
        }
    };
    let AuthnFilterConfig {
        policy,
        // Where Istio's own (pre-1.1) JWT filter put payloads; Strait reads
        // the Envoy JWT filter's metadata, as Istio >= 1.1 does.
        jwt_output_payload_locations: _,
        skip_validate_trust_domain,
        // Strait routes once, before the filters: there is no route cache
        // to clear (and nothing in istio_authn's metadata is routed on).
        disable_clear_route_cache: _,
    } = config;
    let AuthnPolicy {
        targets,
        peers,
        peer_is_optional,
        origins,
        origin_is_optional,
        principal_binding,
    } = policy.unwrap_or_default();
    let ppath = at(path, "policy");
    // `targets` selected workloads before Istio 1.6 rendered per workload;
    // the filter itself never reads them.
    let _ = targets;
    let before = cx.problems.len();
    let mut peer_mtls = false;
    for (i, p) in peers.iter().enumerate() {
        let mpath = item(&ppath, "peers", i);
        let PeerMethod { mtls, jwt } = p;
        reject_set!(cx, &mpath; jwt);
        if let Some(MutualTls { allow_tls, mode }) = mtls {
            // STRICT refuses requests without a client certificate, and a
            // certificate from another trust domain fails validation unless
            // it is skipped: neither is implemented.
            if *mode == 0 && !*allow_tls && !peer_is_optional {
                cx.unsupported(at(&mpath, "mtls.mode"), "mtls mode STRICT");
            }
            peer_mtls = true;
        }
    }
    if peer_mtls && !skip_validate_trust_domain && !peer_is_optional {
        cx.unsupported(
            at(path, "skip_validate_trust_domain"),
            "trust domain validation (skip_validate_trust_domain: false)",
        );
    }
    let origins = origins
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let opath = item(&ppath, "origins", i);
            let Some(jwt) = &o.jwt else {
                cx.invalid(at(&opath, "jwt"), "is required");
                return None;
            };
            let IstioJwt {
                issuer,
                // Verification is the JWT filter's; these configured it.
                audiences: _,
                jwks_uri: _,
                jwks: _,
                jwt_headers,
                jwt_params: _,
                trigger_rules,
            } = jwt;
            let jpath = at(&opath, "jwt");
            reject_set!(cx, &jpath; trigger_rules);
            // An exchanged token's original claims would replace the payload.
            if jwt_headers.len() == 1
                && jwt_headers[0].eq_ignore_ascii_case("ingress-authorization")
            {
                cx.unsupported(at(&jpath, "jwt_headers"), "exchanged tokens");
            }
            Some(issuer.clone())
        })
        .collect();
    (cx.problems.len() == before).then(|| {
        Extension::new(
            type_url::ISTIO_AUTHN,
            IstioAuthn {
                origins,
                origin_is_optional,
                principal_from_origin: principal_binding == 1,
                peer_mtls,
            },
        )
    })
}

#[cfg(test)]
#[path = "jwt/tests.rs"]
mod tests;

//! Envoy's RBAC filters (`envoy.filters.http.rbac`, its `RBACPerRoute`, and
//! `envoy.filters.network.rbac`) into the model's `rbac` types.
//!
//! Every permission and principal Istio and OSM render is translated; the
//! rest (CEL conditions, the xDS matcher API, `filter_state`, matcher and
//! URI template extensions, audit loggers, route metadata) is refused by
//! name, so a policy is never weakened silently.

use envoy_types::pb::{
    envoy::{
        config::rbac::v3::{
            Permission, Policy, Principal, Rbac as Rules, SourcedMetadata, permission, principal,
            rbac::Action as ProtoAction,
        },
        extensions::filters::{
            http::rbac::v3::{Rbac as HttpRbac, RbacPerRoute},
            network::rbac::v3::{Rbac as NetworkRbac, rbac::EnforcementType},
        },
        r#type::{
            matcher::v3::{
                DoubleMatcher, FilterStateMatcher, ListMatcher, MetadataMatcher, PathMatcher,
                ValueMatcher, double_matcher, filter_state_matcher, list_matcher,
                metadata_matcher::path_segment::Segment, path_matcher, value_matcher,
            },
            v3::{DoubleRange, Int32Range},
        },
    },
    google::protobuf::Any,
};

use super::{
    Context, at, decode_any, item,
    listener::cidr_ranges,
    policy::{header_condition, string_matcher},
};
use crate::model::{
    extension::Extension,
    rbac::{
        self as m, Action, HttpRbacPerRoute, MetadataValue, NetworkRbac as ModelNetworkRbac,
        type_url,
    },
    tls::CidrRange,
};

/// `envoy.filters.http.rbac`'s config.
pub(super) fn http_filter(cx: &mut Context, any: &Any, path: &str) -> Option<Extension> {
    let f = decode_any::<HttpRbac>(cx, path, any)?;
    http_rbac(cx, &f, path).map(|c| Extension::new(type_url::HTTP, c))
}

/// `RBACPerRoute`: the route's own rules, or none (RBAC off for the route).
pub(super) fn http_per_route(cx: &mut Context, any: &Any, path: &str) -> Option<Extension> {
    let RbacPerRoute { rbac } = decode_any::<RbacPerRoute>(cx, path, any)?;
    let rbac = match &rbac {
        None => None,
        Some(r) => Some(http_rbac(cx, r, &at(path, "rbac"))?),
    };
    Some(Extension::new(
        type_url::HTTP_PER_ROUTE,
        HttpRbacPerRoute { rbac },
    ))
}

fn http_rbac(cx: &mut Context, f: &HttpRbac, path: &str) -> Option<m::HttpRbac> {
    let HttpRbac {
        rules,
        rules_stat_prefix,
        matcher,
        shadow_rules,
        shadow_matcher,
        shadow_rules_stat_prefix,
        track_per_rule_stats,
    } = f;
    // The xDS matcher API replaces the rules wholesale; not built. Per-rule
    // stats would add counters Strait does not keep.
    reject_set!(cx, path; matcher, shadow_matcher);
    if *track_per_rule_stats {
        cx.unsupported(
            at(path, "track_per_rule_stats"),
            "track_per_rule_stats: true",
        );
    }
    let before = cx.problems.len();
    let rules = rules
        .as_ref()
        .map(|r| self::rules(cx, r, &at(path, "rules")));
    let shadow_rules = shadow_rules
        .as_ref()
        .map(|r| self::rules(cx, r, &at(path, "shadow_rules")));
    (cx.problems.len() == before).then(|| m::HttpRbac {
        rules,
        shadow_rules,
        rules_stat_prefix: rules_stat_prefix.clone(),
        shadow_rules_stat_prefix: shadow_rules_stat_prefix.clone(),
    })
}

/// `envoy.filters.network.rbac`'s config.
pub(super) fn network_filter(cx: &mut Context, any: &Any, path: &str) -> Option<Extension> {
    let NetworkRbac {
        rules,
        matcher,
        shadow_rules,
        shadow_matcher,
        shadow_rules_stat_prefix,
        stat_prefix,
        enforcement_type,
        delay_deny,
    } = decode_any::<NetworkRbac>(cx, path, any)?;
    reject_set!(cx, path; matcher, shadow_matcher);
    if stat_prefix.is_empty() {
        cx.invalid(at(path, "stat_prefix"), "must not be empty");
    }
    // CONTINUOUS re-checks on every read for protocol filters that publish
    // metadata per message; Strait checks a connection once.
    if enforcement_type != EnforcementType::OneTimeOnFirstByte as i32 {
        cx.unsupported(
            at(path, "enforcement_type"),
            "enforcement_type other than ONE_TIME_ON_FIRST_BYTE",
        );
    }
    let before = cx.problems.len();
    let delay_deny = match &delay_deny {
        Some(d) => super::duration(cx, &at(path, "delay_deny"), d).filter(|d| !d.is_zero()),
        None => None,
    };
    let rules = rules
        .as_ref()
        .map(|r| self::rules(cx, r, &at(path, "rules")));
    let shadow_rules = shadow_rules
        .as_ref()
        .map(|r| self::rules(cx, r, &at(path, "shadow_rules")));
    (cx.problems.len() == before).then(|| {
        Extension::new(
            type_url::NETWORK,
            ModelNetworkRbac {
                rules,
                shadow_rules,
                stat_prefix,
                shadow_rules_stat_prefix,
                delay_deny,
            },
        )
    })
}

/// `config.rbac.v3.RBAC`, policies sorted by name (Envoy's order).
fn rules(cx: &mut Context, r: &Rules, path: &str) -> m::Rules {
    let Rules {
        action,
        policies,
        audit_logging_options,
    } = r;
    // Audit loggers write logs Strait does not produce.
    reject_set!(cx, path; audit_logging_options);
    let action = match ProtoAction::try_from(*action) {
        Ok(ProtoAction::Allow) => Action::Allow,
        Ok(ProtoAction::Deny) => Action::Deny,
        Ok(ProtoAction::Log) => Action::Log,
        Err(_) => {
            cx.invalid(at(path, "action"), format!("unknown action {action}"));
            Action::Allow
        }
    };
    let mut names: Vec<&String> = policies.keys().collect();
    names.sort();
    let policies = names
        .into_iter()
        .filter_map(|name| {
            let p = policies.get(name)?;
            policy(cx, name, p, &format!("{}[{name}]", at(path, "policies")))
        })
        .collect();
    m::Rules { action, policies }
}

fn policy(cx: &mut Context, name: &str, p: &Policy, path: &str) -> Option<m::Policy> {
    let Policy {
        permissions,
        principals,
        condition,
        checked_condition,
        cel_config,
    } = p;
    // CEL is not evaluated: a condition would be dropped, widening ALLOW.
    reject_set!(cx, path; condition, checked_condition, cel_config);
    if permissions.is_empty() {
        cx.invalid(at(path, "permissions"), "must not be empty");
    }
    if principals.is_empty() {
        cx.invalid(at(path, "principals"), "must not be empty");
    }
    let permissions = permissions
        .iter()
        .enumerate()
        .filter_map(|(i, x)| permission(cx, x, &item(path, "permissions", i)))
        .collect();
    let principals = principals
        .iter()
        .enumerate()
        .filter_map(|(i, x)| principal(cx, x, &item(path, "principals", i)))
        .collect();
    Some(m::Policy {
        name: name.to_owned(),
        permissions,
        principals,
    })
}

fn permission(cx: &mut Context, p: &Permission, path: &str) -> Option<m::Permission> {
    use permission::Rule;
    let Permission { rule } = p;
    let Some(rule) = rule else {
        cx.invalid(path, "needs a rule");
        return None;
    };
    Some(match rule {
        Rule::AndRules(permission::Set { rules }) => m::Permission::And(permissions(
            cx,
            rules,
            &at(&at(path, "and_rules"), "rules"),
        )?),
        Rule::OrRules(permission::Set { rules }) => {
            m::Permission::Or(permissions(cx, rules, &at(&at(path, "or_rules"), "rules"))?)
        }
        Rule::NotRule(inner) => {
            m::Permission::Not(Box::new(permission(cx, inner, &at(path, "not_rule"))?))
        }
        Rule::Any(true) => m::Permission::Any,
        Rule::Any(false) => {
            cx.invalid(at(path, "any"), "must be true");
            return None;
        }
        Rule::Header(h) => m::Permission::Header(header_condition(cx, h, &at(path, "header"))?),
        Rule::UrlPath(pm) => m::Permission::UrlPath(path_matcher(cx, pm, &at(path, "url_path"))?),
        Rule::DestinationIp(r) => {
            m::Permission::DestinationIp(cidr(cx, r, path, "destination_ip")?)
        }
        Rule::DestinationPort(port) => match u16::try_from(*port) {
            Ok(port) => m::Permission::DestinationPort(port),
            Err(_) => {
                cx.invalid(at(path, "destination_port"), "must be at most 65535");
                return None;
            }
        },
        Rule::DestinationPortRange(r) => {
            let (start, end) = port_range(cx, r, &at(path, "destination_port_range"))?;
            m::Permission::DestinationPortRange { start, end }
        }
        Rule::RequestedServerName(s) => m::Permission::RequestedServerName(string_matcher(
            cx,
            s,
            &at(path, "requested_server_name"),
        )?),
        #[allow(deprecated)]
        Rule::Metadata(md) => m::Permission::Metadata(metadata(cx, md, &at(path, "metadata"))?),
        Rule::SourcedMetadata(s) => {
            m::Permission::Metadata(sourced(cx, s, &at(path, "sourced_metadata"))?)
        }
        Rule::Matcher(_) => {
            cx.unsupported(at(path, "matcher"), "RBAC matcher extensions");
            return None;
        }
        Rule::UriTemplate(_) => {
            cx.unsupported(at(path, "uri_template"), "RBAC uri_template");
            return None;
        }
    })
}

fn permissions(cx: &mut Context, list: &[Permission], path: &str) -> Option<Vec<m::Permission>> {
    let before = cx.problems.len();
    let out: Vec<_> = list
        .iter()
        .enumerate()
        .filter_map(|(i, p)| permission(cx, p, &format!("{path}[{i}]")))
        .collect();
    (cx.problems.len() == before).then_some(out)
}

fn principal(cx: &mut Context, p: &Principal, path: &str) -> Option<m::Principal> {
    use principal::Identifier;
    let Principal { identifier } = p;
    let Some(id) = identifier else {
        cx.invalid(path, "needs an identifier");
        return None;
    };
    Some(match id {
        Identifier::AndIds(principal::Set { ids }) => {
            m::Principal::And(principals(cx, ids, &at(&at(path, "and_ids"), "ids"))?)
        }
        Identifier::OrIds(principal::Set { ids }) => {
            m::Principal::Or(principals(cx, ids, &at(&at(path, "or_ids"), "ids"))?)
        }
        Identifier::NotId(inner) => {
            m::Principal::Not(Box::new(principal(cx, inner, &at(path, "not_id"))?))
        }
        Identifier::Any(true) => m::Principal::Any,
        Identifier::Any(false) => {
            cx.invalid(at(path, "any"), "must be true");
            return None;
        }
        Identifier::Authenticated(principal::Authenticated { principal_name }) => {
            let name = match principal_name {
                None => None,
                Some(s) => Some(string_matcher(
                    cx,
                    s,
                    &at(&at(path, "authenticated"), "principal_name"),
                )?),
            };
            m::Principal::Authenticated(name)
        }
        #[allow(deprecated)]
        Identifier::SourceIp(r) => m::Principal::SourceIp(cidr(cx, r, path, "source_ip")?),
        Identifier::DirectRemoteIp(r) => {
            m::Principal::DirectRemoteIp(cidr(cx, r, path, "direct_remote_ip")?)
        }
        Identifier::RemoteIp(r) => m::Principal::RemoteIp(cidr(cx, r, path, "remote_ip")?),
        Identifier::Header(h) => {
            m::Principal::Header(header_condition(cx, h, &at(path, "header"))?)
        }
        Identifier::UrlPath(pm) => {
            m::Principal::UrlPath(path_matcher(cx, pm, &at(path, "url_path"))?)
        }
        #[allow(deprecated)]
        Identifier::Metadata(md) => {
            m::Principal::Metadata(metadata(cx, md, &at(path, "metadata"))?)
        }
        Identifier::SourcedMetadata(s) => {
            m::Principal::Metadata(sourced(cx, s, &at(path, "sourced_metadata"))?)
        }
        Identifier::FilterState(fs) => {
            m::Principal::IstioPeerPrincipal(filter_state(cx, fs, &at(path, "filter_state"))?)
        }
        Identifier::Custom(_) => {
            cx.unsupported(at(path, "custom"), "RBAC custom principal extensions");
            return None;
        }
    })
}

/// `filter_state`: only the key Istio's network authn filter writes (the
/// peer's SPIFFE identity) is known; Strait keeps no other named filter
/// state objects, so any other key is refused.
fn filter_state(
    cx: &mut Context,
    fs: &FilterStateMatcher,
    path: &str,
) -> Option<crate::model::policy::ValueMatcher> {
    let FilterStateMatcher { key, matcher } = fs;
    if key != ISTIO_PEER_PRINCIPAL {
        cx.unsupported(at(path, "key"), format!("RBAC filter_state key {key:?}"));
        return None;
    }
    match matcher {
        Some(filter_state_matcher::Matcher::StringMatch(s)) => {
            string_matcher(cx, s, &at(path, "string_match"))
        }
        Some(filter_state_matcher::Matcher::AddressMatch(_)) => {
            cx.unsupported(at(path, "address_match"), "RBAC filter_state address_match");
            None
        }
        None => {
            cx.invalid(path, "needs a matcher");
            None
        }
    }
}

/// The filter state key of Istio's peer principal.
const ISTIO_PEER_PRINCIPAL: &str = "io.istio.peer_principal";

fn principals(cx: &mut Context, list: &[Principal], path: &str) -> Option<Vec<m::Principal>> {
    let before = cx.problems.len();
    let out: Vec<_> = list
        .iter()
        .enumerate()
        .filter_map(|(i, p)| principal(cx, p, &format!("{path}[{i}]")))
        .collect();
    (cx.problems.len() == before).then_some(out)
}

fn cidr(
    cx: &mut Context,
    r: &envoy_types::pb::envoy::config::core::v3::CidrRange,
    path: &str,
    field: &str,
) -> Option<CidrRange> {
    let before = cx.problems.len();
    let out = cidr_ranges(cx, std::slice::from_ref(r), &at(path, field));
    if cx.problems.len() > before {
        return None;
    }
    out.into_iter().next()
}

/// `Int32Range` of ports, `[start, end)`, validated as Envoy does.
fn port_range(cx: &mut Context, r: &Int32Range, path: &str) -> Option<(u32, u32)> {
    let Int32Range { start, end } = *r;
    let ok = |v: i32| (0..=65536).contains(&v);
    if !ok(start) || !ok(end) || start >= end {
        cx.invalid(
            path,
            format!("[{start}, {end}) is not a port range (0..=65536, start < end)"),
        );
        return None;
    }
    Some((start.unsigned_abs(), end.unsigned_abs()))
}

fn path_matcher(
    cx: &mut Context,
    p: &PathMatcher,
    path: &str,
) -> Option<crate::model::policy::ValueMatcher> {
    let PathMatcher { rule } = p;
    match rule {
        Some(path_matcher::Rule::Path(s)) => string_matcher(cx, s, &at(path, "path")),
        None => {
            cx.invalid(at(path, "path"), "is required");
            None
        }
    }
}

fn sourced(cx: &mut Context, s: &SourcedMetadata, path: &str) -> Option<m::MetadataMatcher> {
    let SourcedMetadata {
        metadata_matcher,
        metadata_source,
    } = s;
    // ROUTE reads the route's metadata, which the model does not keep.
    if *metadata_source != 0 {
        cx.unsupported(at(path, "metadata_source"), "metadata_source ROUTE");
        return None;
    }
    match metadata_matcher {
        Some(md) => metadata(cx, md, &at(path, "metadata_matcher")),
        None => {
            cx.invalid(at(path, "metadata_matcher"), "is required");
            None
        }
    }
}

fn metadata(cx: &mut Context, md: &MetadataMatcher, path: &str) -> Option<m::MetadataMatcher> {
    let MetadataMatcher {
        filter,
        path: segments,
        value,
        invert,
    } = md;
    if filter.is_empty() {
        cx.invalid(at(path, "filter"), "must not be empty");
        return None;
    }
    if segments.is_empty() {
        cx.invalid(at(path, "path"), "must not be empty");
        return None;
    }
    let mut keys = Vec::with_capacity(segments.len());
    for (i, s) in segments.iter().enumerate() {
        match &s.segment {
            Some(Segment::Key(k)) if !k.is_empty() => keys.push(k.clone()),
            _ => {
                cx.invalid(item(path, "path", i), "needs a non-empty key");
                return None;
            }
        }
    }
    let Some(value) = value else {
        cx.invalid(at(path, "value"), "is required");
        return None;
    };
    Some(m::MetadataMatcher {
        filter: filter.clone(),
        path: keys,
        value: value_matcher(cx, value, &at(path, "value"))?,
        invert: *invert,
    })
}

fn value_matcher(cx: &mut Context, v: &ValueMatcher, path: &str) -> Option<MetadataValue> {
    use value_matcher::MatchPattern;
    let ValueMatcher { match_pattern } = v;
    Some(match match_pattern {
        Some(MatchPattern::NullMatch(_)) => MetadataValue::Null,
        Some(MatchPattern::DoubleMatch(DoubleMatcher { match_pattern })) => match match_pattern {
            Some(double_matcher::MatchPattern::Exact(x)) => MetadataValue::DoubleExact(*x),
            Some(double_matcher::MatchPattern::Range(DoubleRange { start, end })) => {
                MetadataValue::DoubleRange {
                    start: *start,
                    end: *end,
                }
            }
            None => {
                cx.invalid(at(path, "double_match"), "needs exact or range");
                return None;
            }
        },
        Some(MatchPattern::StringMatch(s)) => {
            MetadataValue::String(string_matcher(cx, s, &at(path, "string_match"))?)
        }
        Some(MatchPattern::BoolMatch(b)) => MetadataValue::Bool(*b),
        Some(MatchPattern::PresentMatch(b)) => MetadataValue::Present(*b),
        Some(MatchPattern::ListMatch(l)) => {
            let ListMatcher { match_pattern } = &**l;
            match match_pattern {
                Some(list_matcher::MatchPattern::OneOf(one)) => MetadataValue::ListOneOf(Box::new(
                    value_matcher(cx, one, &at(&at(path, "list_match"), "one_of"))?,
                )),
                None => {
                    cx.invalid(at(path, "list_match"), "needs one_of");
                    return None;
                }
            }
        }
        Some(MatchPattern::OrMatch(or)) => {
            let mut out = Vec::with_capacity(or.value_matchers.len());
            for (i, v) in or.value_matchers.iter().enumerate() {
                out.push(value_matcher(
                    cx,
                    v,
                    &item(&at(path, "or_match"), "value_matchers", i),
                )?);
            }
            MetadataValue::Or(out)
        }
        None => {
            cx.invalid(path, "needs a match pattern");
            return None;
        }
    })
}

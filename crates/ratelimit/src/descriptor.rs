//! A request's rate-limit descriptors, from its route's `rate_limits`, as
//! Envoy's `RateLimitPolicyEntry::populateDescriptors` makes them: each
//! policy of the filter's stage gives one descriptor, its actions one entry
//! each in order; an action that finds nothing drops the whole descriptor
//! (a `request_headers` action with `skip_if_absent` only skips itself).
//!
//! Entries borrow the config and the request head; only a remote address
//! is formatted. Nothing is built for a route without policies.

use std::{borrow::Cow, net::IpAddr};

use http::HeaderMap;
use strait_model::ratelimit::{RateLimitAction, RateLimitPolicy, RouteRateLimits, VhRateLimits};

/// One descriptor: (key, value) entries in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor<'a> {
    pub entries: Vec<(&'a str, Cow<'a, str>)>,
}

impl Descriptor<'_> {
    /// Whether the entries are exactly `config`'s.
    pub fn is(&self, config: &[(String, String)]) -> bool {
        self.entries.len() == config.len()
            && self
                .entries
                .iter()
                .zip(config)
                .all(|((k, v), (ck, cv))| k == ck && v == cv)
    }
}

/// What the actions read of a request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub headers: &'a HeaderMap,
    /// The trusted client address (after `x-forwarded-for`).
    pub remote: IpAddr,
    /// The cluster the route chose.
    pub cluster: Option<&'a str>,
}

/// Which policies a filter reads.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    pub stage: u32,
    pub vh_rate_limits: VhRateLimits,
    /// The local filter skips every policy with a `disable_key`; the
    /// global filter keeps them (their runtime key is never set here).
    pub skip_disable_keys: bool,
}

/// The descriptors of the route's policies, then the virtual host's as
/// `vh_rate_limits` (or the route's `include_vh_rate_limits`) says.
pub fn for_route<'a>(
    limits: &'a RouteRateLimits,
    select: Selection,
    facts: &Facts<'a>,
) -> Vec<Descriptor<'a>> {
    let mut out = Vec::new();
    if limits.is_empty() {
        return out;
    }
    populate(&limits.route, select, facts, &mut out);
    let vh = if limits.include_vh_rate_limits {
        VhRateLimits::Include
    } else {
        select.vh_rate_limits
    };
    let with_vh = match vh {
        VhRateLimits::Include => true,
        VhRateLimits::Override => limits.route.is_empty(),
        VhRateLimits::Ignore => false,
    };
    if with_vh {
        populate(&limits.virtual_host, select, facts, &mut out);
    }
    out
}

fn populate<'a>(
    policies: &'a [RateLimitPolicy],
    select: Selection,
    facts: &Facts<'a>,
    out: &mut Vec<Descriptor<'a>>,
) {
    for p in policies {
        if p.stage != select.stage || (select.skip_disable_keys && !p.disable_key.is_empty()) {
            continue;
        }
        let mut entries = Vec::with_capacity(p.actions.len());
        if p.actions.iter().all(|a| entry(a, facts, &mut entries)) {
            out.push(Descriptor { entries });
        }
    }
}

/// Adds `action`'s entry; `false` when the descriptor must be dropped.
fn entry<'a>(
    action: &'a RateLimitAction,
    facts: &Facts<'a>,
    entries: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> bool {
    match action {
        RateLimitAction::SourceCluster(cluster) => {
            entries.push(("source_cluster", Cow::Borrowed(cluster)));
        }
        RateLimitAction::DestinationCluster => match facts.cluster {
            Some(c) => entries.push(("destination_cluster", Cow::Borrowed(c))),
            None => return false,
        },
        RateLimitAction::RequestHeaders {
            header_name,
            descriptor_key,
            skip_if_absent,
        } => match facts.headers.get(header_name.as_str()) {
            // The first value, as Envoy takes it.
            Some(v) => entries.push((descriptor_key, String::from_utf8_lossy(v.as_bytes()))),
            None => return *skip_if_absent,
        },
        RateLimitAction::RemoteAddress => {
            entries.push(("remote_address", Cow::Owned(facts.remote.to_string())));
        }
        RateLimitAction::GenericKey {
            descriptor_key,
            descriptor_value,
        } => entries.push((descriptor_key, Cow::Borrowed(descriptor_value))),
        RateLimitAction::HeaderValueMatch {
            descriptor_key,
            descriptor_value,
            default_value,
            expect_match,
            headers,
        } => {
            let matched = headers.iter().all(|h| h.matches(facts.headers));
            if matched == *expect_match {
                entries.push((descriptor_key, Cow::Borrowed(descriptor_value)));
            } else if !default_value.is_empty() {
                entries.push((descriptor_key, Cow::Borrowed(default_value)));
            } else {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use http::HeaderValue;
    use strait_model::policy::{HeaderCondition, HeaderConditionKind};

    use super::*;

    fn policy(stage: u32, disable_key: &str, actions: Vec<RateLimitAction>) -> RateLimitPolicy {
        RateLimitPolicy {
            stage,
            disable_key: disable_key.to_owned(),
            actions,
        }
    }

    fn generic(v: &str) -> RateLimitAction {
        RateLimitAction::GenericKey {
            descriptor_key: "generic_key".to_owned(),
            descriptor_value: v.to_owned(),
        }
    }

    fn user(skip_if_absent: bool) -> RateLimitAction {
        RateLimitAction::RequestHeaders {
            header_name: "x-user".to_owned(),
            descriptor_key: "user".to_owned(),
            skip_if_absent,
        }
    }

    const LOCAL: Selection = Selection {
        stage: 0,
        vh_rate_limits: VhRateLimits::Override,
        skip_disable_keys: true,
    };

    fn render(d: &[Descriptor<'_>]) -> Vec<String> {
        d.iter()
            .map(|d| {
                d.entries
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    }

    #[test]
    fn actions_make_entries_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", HeaderValue::from_static("alice"));
        headers.insert("x-tier", HeaderValue::from_static("gold"));
        let facts = Facts {
            headers: &headers,
            remote: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            cluster: Some("backend"),
        };
        let gold = RateLimitAction::HeaderValueMatch {
            descriptor_key: "header_match".to_owned(),
            descriptor_value: "gold".to_owned(),
            default_value: String::new(),
            expect_match: true,
            headers: vec![HeaderCondition {
                name: "x-tier".to_owned(),
                kind: HeaderConditionKind::Present,
                invert: false,
                missing_as_empty: false,
            }],
        };
        let limits = RouteRateLimits {
            route: vec![
                policy(
                    0,
                    "",
                    vec![
                        RateLimitAction::SourceCluster("front".to_owned()),
                        RateLimitAction::DestinationCluster,
                        user(false),
                        RateLimitAction::RemoteAddress,
                        generic("g"),
                        gold,
                    ],
                ),
                // Other stage, disabled, and a missing header: none of them.
                policy(1, "", vec![generic("stage1")]),
                policy(0, "off", vec![generic("disabled")]),
                policy(
                    0,
                    "",
                    vec![RateLimitAction::RequestHeaders {
                        header_name: "x-none".to_owned(),
                        descriptor_key: "none".to_owned(),
                        skip_if_absent: false,
                    }],
                ),
                // A skipped action keeps the rest.
                policy(
                    0,
                    "",
                    vec![
                        RateLimitAction::RequestHeaders {
                            header_name: "x-none".to_owned(),
                            descriptor_key: "none".to_owned(),
                            skip_if_absent: true,
                        },
                        generic("kept"),
                    ],
                ),
            ],
            virtual_host: vec![policy(0, "", vec![generic("vh")])],
            include_vh_rate_limits: false,
        };
        assert_eq!(
            render(&for_route(&limits, LOCAL, &facts)),
            [
                "source_cluster=front,destination_cluster=backend,user=alice,\
                 remote_address=10.0.0.1,generic_key=g,header_match=gold",
                "generic_key=kept",
            ]
        );
    }

    #[test]
    fn virtual_host_policies_by_option() {
        let headers = HeaderMap::new();
        let facts = Facts {
            headers: &headers,
            remote: IpAddr::V4(Ipv4Addr::LOCALHOST),
            cluster: None,
        };
        let mut limits = RouteRateLimits {
            route: vec![policy(0, "", vec![generic("r")])],
            virtual_host: vec![policy(0, "", vec![generic("vh")])],
            include_vh_rate_limits: false,
        };
        let with = |vh| Selection {
            vh_rate_limits: vh,
            ..LOCAL
        };
        assert_eq!(
            render(&for_route(&limits, LOCAL, &facts)),
            ["generic_key=r"]
        );
        assert_eq!(
            render(&for_route(&limits, with(VhRateLimits::Include), &facts)),
            ["generic_key=r", "generic_key=vh"]
        );
        limits.include_vh_rate_limits = true;
        assert_eq!(render(&for_route(&limits, LOCAL, &facts)).len(), 2);
        limits.include_vh_rate_limits = false;
        limits.route.clear();
        assert_eq!(
            render(&for_route(&limits, LOCAL, &facts)),
            ["generic_key=vh"]
        );
        assert!(for_route(&limits, with(VhRateLimits::Ignore), &facts).is_empty());
        // The destination cluster of a route without one drops the descriptor.
        limits.virtual_host = vec![policy(0, "", vec![RateLimitAction::DestinationCluster])];
        assert!(for_route(&limits, LOCAL, &facts).is_empty());
    }
}

//! Rules made ready for the hot path: beside each policy, a cheap
//! necessary condition on the request path (its "guard"), derived once
//! when the filter is built, so a request skips the policies it cannot
//! match without walking their permission trees.
//!
//! Istio renders an AuthorizationPolicy rule's `paths` as `url_path`
//! matchers inside `and_rules`/`or_rules`; with tens of policies, nearly
//! every one fails on its path, and walking each tree (methods first) was
//! most of the cost. A guard is a list of exact paths and prefixes, one of
//! which the path must match for any permission of the policy to match;
//! a policy whose permissions imply no such condition has none and is
//! always evaluated. Guards only skip: the verdict is exactly
//! [`engine::evaluate`]'s (the tests check both on the same inputs).

use strait_model::{
    policy::{ValueMatch, ValueMatcher},
    rbac::{Action, Permission, Policy, Rules},
};

use crate::engine::{self, Input, Verdict};

/// A path condition: equal to, or starting with, `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Guard {
    prefix: bool,
    text: Box<str>,
}

impl Guard {
    fn matches(&self, path: &str) -> bool {
        if self.prefix {
            path.starts_with(&*self.text)
        } else {
            path == &*self.text
        }
    }
}

/// [`Rules`] with each policy's path guard.
#[derive(Debug, Clone)]
pub struct CompiledRules {
    rules: Rules,
    guards: Box<[Option<Box<[Guard]>>]>,
}

impl CompiledRules {
    pub fn new(rules: Rules) -> Self {
        let guards = rules.policies.iter().map(policy_guard).collect();
        CompiledRules { rules, guards }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The same verdict as [`engine::evaluate`] on the same rules.
    pub fn evaluate(&self, input: &Input<'_>) -> Verdict<'_> {
        // `url_path` sees the path without the query; a connection has none
        // (every guarded policy then fails, as its url_path matchers would).
        let path = input.request.map(|r| r.uri.path());
        let policy = self
            .rules
            .policies
            .iter()
            .zip(self.guards.iter())
            .find(|(p, guard)| {
                let possible = match (guard, path) {
                    (None, _) => true,
                    (Some(g), Some(path)) => g.iter().any(|g| g.matches(path)),
                    (Some(_), None) => false,
                };
                possible && engine::policy_matches(p, input)
            })
            .map(|(p, _)| p.name.as_str());
        let matched = policy.is_some();
        let (allowed, log) = match self.rules.action {
            Action::Allow => (matched, None),
            Action::Deny => (!matched, None),
            Action::Log => (true, Some(matched)),
        };
        Verdict {
            allowed,
            policy,
            log,
        }
    }
}

/// A policy matches only if one of its permissions does: the union of
/// their guards, or none if one has none.
fn policy_guard(p: &Policy) -> Option<Box<[Guard]>> {
    let mut all = Vec::new();
    for perm in &p.permissions {
        all.extend(guard(perm)?);
    }
    (!all.is_empty()).then(|| all.into_boxed_slice())
}

fn guard(p: &Permission) -> Option<Vec<Guard>> {
    match p {
        Permission::UrlPath(m) => leaf(m).map(|g| vec![g]),
        // All must match: any one member's condition holds (the narrowest
        // is as good as any; the first found is taken).
        Permission::And(all) => all.iter().find_map(guard),
        // One must match: the union, if every member has a condition.
        Permission::Or(any) => {
            let mut out = Vec::new();
            for x in any {
                out.extend(guard(x)?);
            }
            (!out.is_empty()).then_some(out)
        }
        _ => None,
    }
}

fn leaf(m: &ValueMatcher) -> Option<Guard> {
    if m.ignore_case {
        return None;
    }
    match &m.kind {
        ValueMatch::Exact(s) => Some(Guard {
            prefix: false,
            text: s.as_str().into(),
        }),
        ValueMatch::Prefix(s) => Some(Guard {
            prefix: true,
            text: s.as_str().into(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use strait_model::policy::{HeaderCondition, HeaderConditionKind};

    fn m(kind: ValueMatch) -> ValueMatcher {
        ValueMatcher {
            kind,
            ignore_case: false,
        }
    }

    fn policy(name: &str, permissions: Vec<Permission>) -> Policy {
        Policy {
            name: name.into(),
            permissions,
            principals: vec![strait_model::rbac::Principal::Any],
        }
    }

    fn method(v: &str) -> Permission {
        Permission::Header(HeaderCondition {
            name: ":method".into(),
            kind: HeaderConditionKind::String(m(ValueMatch::Exact(v.into()))),
            invert: false,
            missing_as_empty: false,
        })
    }

    /// Guarded and unguarded evaluation agree on every path, for ALLOW and
    /// DENY, on policies with and without path conditions.
    #[test]
    fn guards_never_change_a_verdict() {
        let prefix = |p: &str| Permission::UrlPath(m(ValueMatch::Prefix(p.into())));
        let exact = |p: &str| Permission::UrlPath(m(ValueMatch::Exact(p.into())));
        let policies = vec![
            policy(
                "a",
                vec![Permission::And(vec![
                    Permission::Or(vec![method("GET"), method("HEAD")]),
                    Permission::Or(vec![prefix("/api/"), exact("/status")]),
                ])],
            ),
            policy("b", vec![exact("/x"), prefix("/y/")]),
            policy("c", vec![Permission::Not(Box::new(prefix("/private")))]),
            policy(
                "d",
                vec![Permission::Or(vec![prefix("/d"), method("POST")])],
            ),
            policy(
                "e",
                vec![Permission::UrlPath(ValueMatcher {
                    kind: ValueMatch::Prefix("/E".into()),
                    ignore_case: true,
                })],
            ),
        ];
        let compiled = CompiledRules::new(Rules {
            action: Action::Allow,
            policies: policies.clone(),
        });
        assert!(compiled.guards[0].is_some() && compiled.guards[1].is_some());
        assert!(compiled.guards[2..].iter().all(Option::is_none));
        for action in [Action::Allow, Action::Deny, Action::Log] {
            let rules = Rules {
                action,
                policies: policies.clone(),
            };
            let compiled = CompiledRules::new(rules.clone());
            for (meth, uri) in [
                ("GET", "/api/1?q=/x"),
                ("POST", "/api/1"),
                ("GET", "/status"),
                ("GET", "/status/1"),
                ("GET", "/x"),
                ("GET", "/x?y"),
                ("GET", "/y/1"),
                ("GET", "/private/1"),
                ("POST", "/private/1"),
                ("GET", "/e/1"),
                ("GET", "/d"),
            ] {
                let head = http::Request::builder()
                    .method(meth)
                    .uri(uri)
                    .body(())
                    .expect("request")
                    .into_parts()
                    .0;
                let input = Input {
                    request: Some(&head),
                    peer: SocketAddr::from(([10, 0, 0, 1], 1000)),
                    local: SocketAddr::from(([10, 0, 0, 2], 80)),
                    remote: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                    tls: false,
                    server_name: None,
                    peer_cert: None,
                    metadata: None,
                };
                assert_eq!(
                    compiled.evaluate(&input),
                    engine::evaluate(&rules, &input),
                    "{action:?} {meth} {uri}"
                );
            }
        }
    }
}

//! `envoy.filters.http.rbac`: the request's verdict before the router.
//!
//! As Envoy 1.40: shadow rules and rules are evaluated on the request as
//! it came (neither sees the other's verdict); the shadow verdict is
//! counted and written to dynamic metadata, never enforced; the rules'
//! verdict is counted and written too ( a denial answers 403 `RBAC: access denied` with
//! details `rbac_access_denied_matched_policy[<policy>|none]` and no
//! response flag)). A route's `RBACPerRoute` replaces both rule sets, or
//! turns the filter off for the route; the counters stay the filter's.

use std::sync::Arc;

use http::StatusCode;
use serde_json::Value;
use strait_http::{
    Decision, FilterScope, HttpFilter, HttpFilterFactory, Reply, RequestHead,
    metadata::{dynamic_metadata, dynamic_metadata_mut},
};
use strait_model::{
    extension::Extension,
    rbac::{HttpRbac, HttpRbacPerRoute, type_url},
};

use crate::{
    compiled::CompiledRules,
    engine::{self, Input, Verdict},
    stats::RbacStats,
};

/// The dynamic metadata namespace the filter writes.
pub const NAMESPACE: &str = "envoy.filters.http.rbac";

/// The factory of `envoy.filters.http.rbac`.
#[derive(Debug, Default, Clone, Copy)]
pub struct HttpRbacFactory;

impl HttpFilterFactory for HttpRbacFactory {
    fn type_url(&self) -> &str {
        type_url::HTTP
    }

    fn per_route_type_url(&self) -> Option<&str> {
        Some(type_url::HTTP_PER_ROUTE)
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn HttpFilter>, String> {
        self.create_in(config, &FilterScope::default())
    }

    fn create_in(
        &self,
        config: &Extension,
        scope: &FilterScope<'_>,
    ) -> Result<Arc<dyn HttpFilter>, String> {
        let config = config
            .get::<HttpRbac>()
            .ok_or("RBAC config of the wrong type")?
            .clone();
        let stats = RbacStats::http(
            scope.hcm_stat_prefix,
            &config.rules_stat_prefix,
            &config.shadow_rules_stat_prefix,
        );
        let keys = Keys::new(&config);
        let compiled = Compiled {
            rules: config.rules.clone().map(CompiledRules::new),
            shadow: config.shadow_rules.clone().map(CompiledRules::new),
        };
        Ok(Arc::new(HttpRbacFilter {
            compiled,
            stats,
            keys,
        }))
    }
}

/// The metadata keys, with their stat prefixes, made once.
struct Keys {
    shadow_policy: String,
    shadow_result: String,
    enforced_policy: String,
    enforced_result: String,
}

impl Keys {
    fn new(c: &HttpRbac) -> Self {
        let (s, r) = (&c.shadow_rules_stat_prefix, &c.rules_stat_prefix);
        Keys {
            shadow_policy: format!("{s}shadow_effective_policy_id"),
            shadow_result: format!("{s}shadow_engine_result"),
            enforced_policy: format!("{r}enforced_effective_policy_id"),
            enforced_result: format!("{r}enforced_engine_result"),
        }
    }
}

/// The filter's own rules, compiled (per-route rules are walked as they are).
struct Compiled {
    rules: Option<CompiledRules>,
    shadow: Option<CompiledRules>,
}

struct HttpRbacFilter {
    compiled: Compiled,
    stats: RbacStats,
    keys: Keys,
}

fn input<'a>(req: &'a RequestHead<'_>) -> Input<'a> {
    let info = req.info;
    Input {
        request: Some(&*req.head),
        peer: info.peer,
        local: info.local,
        remote: info.remote,
        tls: info.tls,
        server_name: info.server_name,
        peer_cert: info.peer_cert,
        metadata: dynamic_metadata(req.state),
    }
}

fn result(allowed: bool) -> Value {
    Value::String(if allowed { "allowed" } else { "denied" }.to_owned())
}

/// Publishes a verdict under the filter's namespace.
fn publish(req: &mut RequestHead<'_>, verdict: &Verdict<'_>, policy_key: &str, result_key: &str) {
    let md = dynamic_metadata_mut(req.state);
    if let Some(p) = verdict.policy {
        md.set(NAMESPACE, policy_key, Value::String(p.to_owned()));
    }
    md.set(NAMESPACE, result_key, result(verdict.allowed));
}

impl HttpFilter for HttpRbacFilter {
    fn on_request<'a>(&'a self, req: &'a mut RequestHead<'_>) -> Decision<'a> {
        // Both verdicts first, on the metadata as it came: Envoy 1.40's
        // rules do not see the shadow verdict of the same request.
        let (shadow, enforced) = {
            let input = input(req);
            match req.route_config::<HttpRbacPerRoute>() {
                Some(per_route) => match per_route.rbac.as_ref() {
                    None => return Decision::Continue,
                    Some(rbac) => (
                        rbac.shadow_rules
                            .as_ref()
                            .map(|r| engine::evaluate(r, &input)),
                        rbac.rules.as_ref().map(|r| engine::evaluate(r, &input)),
                    ),
                },
                None => (
                    self.compiled.shadow.as_ref().map(|r| r.evaluate(&input)),
                    self.compiled.rules.as_ref().map(|r| r.evaluate(&input)),
                ),
            }
        };
        let k = &self.keys;
        if let Some(v) = &shadow {
            if v.allowed {
                self.stats.shadow_allowed.increment(1);
            } else {
                self.stats.shadow_denied.increment(1);
            }
            publish(req, v, &k.shadow_policy, &k.shadow_result);
        }
        let Some(v) = enforced else {
            return Decision::Continue;
        };
        publish(req, &v, &k.enforced_policy, &k.enforced_result);
        if let Some(log) = v.log {
            // LOG rules: the hint access loggers read.
            dynamic_metadata_mut(req.state).set(
                "envoy.common",
                "access_log_hint",
                Value::Bool(log),
            );
        }
        if v.allowed {
            self.stats.allowed.increment(1);
            return Decision::Continue;
        }
        self.stats.denied.increment(1);
        Decision::Respond(
            Reply::new(StatusCode::FORBIDDEN)
                .body("RBAC: access denied")
                .details(details(v.policy)),
        )
    }
}

/// Envoy's response code details for a denial: the policy that matched
/// (a DENY policy) or `none` (no ALLOW policy did), blanks made `_`.
pub fn details(policy: Option<&str>) -> String {
    let name: String = policy
        .unwrap_or("none")
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    format!("rbac_access_denied_matched_policy[{name}]")
}

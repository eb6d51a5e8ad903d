//! `envoy.filters.network.rbac`: a connection's verdict before its
//! terminal filter (TCP proxy, HTTP connection manager), as a read filter.
//!
//! Shadow rules are counted and their verdict written to the connection's
//! dynamic metadata (for later read filters); the rules are counted and a denied
//! connection is closed, after `delay_deny` when set. Header, path and
//! metadata matchers see an empty request, as in Envoy.

use std::sync::Arc;

use serde_json::Value;
use strait_http::DynamicMetadata;
use strait_listener::{ConnectionView, ReadDecision, ReadFilter, ReadFilterFactory};
use strait_model::{
    extension::Extension,
    rbac::{NetworkRbac, type_url},
};

use crate::{compiled::CompiledRules, engine::Input, stats::RbacStats};

/// The dynamic metadata namespace the filter writes.
const NAMESPACE: &str = "envoy.filters.network.rbac";

/// The factory of `envoy.filters.network.rbac`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetworkRbacFactory;

impl ReadFilterFactory for NetworkRbacFactory {
    fn type_url(&self) -> &str {
        type_url::NETWORK
    }

    fn create(&self, config: &Extension) -> Result<Arc<dyn ReadFilter>, String> {
        let config = config
            .get::<NetworkRbac>()
            .ok_or("network RBAC config of the wrong type")?
            .clone();
        let stats = RbacStats::network(&config.stat_prefix, &config.shadow_rules_stat_prefix);
        Ok(Arc::new(NetworkRbacFilter {
            rules: config.rules.clone().map(CompiledRules::new),
            shadow: config.shadow_rules.clone().map(CompiledRules::new),
            config,
            stats,
        }))
    }
}

struct NetworkRbacFilter {
    config: NetworkRbac,
    rules: Option<CompiledRules>,
    shadow: Option<CompiledRules>,
    stats: RbacStats,
}

impl ReadFilter for NetworkRbacFilter {
    fn on_connection<'a>(
        &'a self,
        conn: &'a ConnectionView<'a>,
        metadata: &'a mut DynamicMetadata,
    ) -> ReadDecision<'a> {
        // Both verdicts on the metadata as earlier filters left it.
        let (shadow, enforced) = {
            let input = Input {
                request: None,
                peer: conn.peer,
                local: conn.local,
                remote: conn.peer.ip(),
                tls: conn.tls,
                server_name: conn.server_name,
                peer_cert: conn.peer_cert,
                metadata: Some(&*metadata),
            };
            (
                self.shadow.as_ref().map(|r| r.evaluate(&input)),
                self.rules.as_ref().map(|r| r.evaluate(&input)),
            )
        };
        if let Some(verdict) = shadow {
            if verdict.allowed {
                self.stats.shadow_allowed.increment(1);
            } else {
                self.stats.shadow_denied.increment(1);
            }
            // As Envoy's network RBAC: the shadow verdict in the
            // connection's metadata, where Istio's CUSTOM action (network
            // ext_authz's `filter_enabled_metadata`) looks for it.
            let prefix = &self.config.shadow_rules_stat_prefix;
            if let Some(p) = verdict.policy {
                metadata.set(
                    NAMESPACE,
                    format!("{prefix}shadow_effective_policy_id"),
                    Value::String(p.to_owned()),
                );
            }
            let result = if verdict.allowed { "allowed" } else { "denied" };
            metadata.set(
                NAMESPACE,
                format!("{prefix}shadow_engine_result"),
                Value::String(result.to_owned()),
            );
        }
        let Some(verdict) = enforced else {
            return ReadDecision::Continue;
        };
        if verdict.allowed {
            self.stats.allowed.increment(1);
            return ReadDecision::Continue;
        }
        self.stats.denied.increment(1);
        ReadDecision::Close {
            delay: self.config.delay_deny,
        }
    }
}

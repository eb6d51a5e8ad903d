//! `envoy.filters.network.rbac`: a connection's verdict before its
//! terminal filter (TCP proxy, HTTP connection manager), as a read filter.
//!
//! Shadow rules are counted (the connection has no dynamic metadata
//! anything in Strait reads); the rules are counted and a denied
//! connection is closed, after `delay_deny` when set. Header, path and
//! metadata matchers see an empty request, as in Envoy.

use std::sync::Arc;

use strait_listener::{ConnectionView, ReadDecision, ReadFilter, ReadFilterFactory};
use strait_model::{
    extension::Extension,
    rbac::{NetworkRbac, type_url},
};

use crate::{
    engine::{self, Input},
    stats::RbacStats,
};

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
        Ok(Arc::new(NetworkRbacFilter { config, stats }))
    }
}

struct NetworkRbacFilter {
    config: NetworkRbac,
    stats: RbacStats,
}

impl ReadFilter for NetworkRbacFilter {
    fn on_connection<'a>(&'a self, conn: &'a ConnectionView<'a>) -> ReadDecision<'a> {
        let input = Input {
            request: None,
            peer: conn.peer,
            local: conn.local,
            remote: conn.peer.ip(),
            tls: conn.tls,
            server_name: conn.server_name,
            peer_cert: conn.peer_cert,
            metadata: None,
        };
        if let Some(shadow) = &self.config.shadow_rules {
            if engine::evaluate(shadow, &input).allowed {
                self.stats.shadow_allowed.increment(1);
            } else {
                self.stats.shadow_denied.increment(1);
            }
        }
        let Some(rules) = &self.config.rules else {
            return ReadDecision::Continue;
        };
        let verdict = engine::evaluate(rules, &input);
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

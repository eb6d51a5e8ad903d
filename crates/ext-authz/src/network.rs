//! `envoy.filters.network.ext_authz`: a connection's check before its
//! terminal filter, as a read filter. The `CheckRequest` carries the
//! connection's addresses and the client's principal (no HTTP request); a
//! denial, or a failed call without `failure_mode_allow`, closes the
//! connection. Istio's CUSTOM action on a TCP port renders this filter,
//! keyed on network RBAC's shadow verdict (`filter_enabled_metadata`).
//!
//! Envoy calls the service on the first bytes the client sends, and its TCP
//! proxy may already be connecting upstream; Strait checks right after the
//! handshake and connects upstream only once allowed (see `strait_listener`'s
//! read filters). A client that waits for the server to speak first is
//! checked all the same.

use std::{collections::HashMap, sync::Arc};

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::{
    config::core::v3::Metadata,
    service::auth::v3::{AttributeContext, CheckRequest, attribute_context::Peer},
};
use metrics::{Counter, Gauge};
use prost::Message;
use strait_envoy::pbjson;
use strait_http::DynamicMetadata;
use strait_listener::{ConnectionView, ReadDecision, ReadFilter, ReadFilterFactory, ReadScope};
use strait_model::{ext_authz::NetworkExtAuthz, extension::Extension, filter::type_url};
use strait_upstream::ClusterRegistry;

use crate::{
    check::{self, Verdict},
    client::GrpcCall,
};

/// Makes network ext_authz filters; they call through the registry's
/// live clusters.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetworkExtAuthzFactory;

impl ReadFilterFactory for NetworkExtAuthzFactory {
    fn type_url(&self) -> &str {
        type_url::NETWORK_EXT_AUTHZ
    }

    fn create(&self, _config: &Extension) -> Result<Arc<dyn ReadFilter>, String> {
        // Fail closed: without clusters no check could ever be made.
        Err("network ext_authz needs the proxy's clusters".into())
    }

    fn create_in(
        &self,
        config: &Extension,
        scope: &ReadScope<'_>,
    ) -> Result<Arc<dyn ReadFilter>, String> {
        let config = config
            .get::<NetworkExtAuthz>()
            .ok_or("network ext_authz config of the wrong type")?
            .clone();
        let clusters = scope
            .clusters
            .ok_or("network ext_authz needs the proxy's clusters")?;
        let stats = Stats::new(&config.stat_prefix);
        Ok(Arc::new(NetworkExtAuthzFilter {
            config,
            clusters: Arc::clone(clusters),
            stats,
        }))
    }
}

/// `ext_authz.<stat_prefix>.*`, Envoy's names for the network filter
/// (Envoy 1.40 verified). Envoy counts `disabled` on the connection and on
/// every read; Strait once per connection.
struct Stats {
    total: Counter,
    ok: Counter,
    denied: Counter,
    error: Counter,
    failure_mode_allowed: Counter,
    disabled: Counter,
    cx_closed: Counter,
    active: Gauge,
}

impl Stats {
    fn new(stat_prefix: &str) -> Self {
        // Envoy has no tag extractor for this scope: the prefix stays in
        // the Prometheus name, its dots made underscores
        // (`ext_authz.tcp..ok` is `envoy_ext_authz_tcp__ok`).
        let stem: String = format!("envoy_ext_authz.{stat_prefix}.")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let c = |name: &str| metrics::counter!(format!("{stem}{name}"));
        Stats {
            total: c("total"),
            ok: c("ok"),
            denied: c("denied"),
            error: c("error"),
            failure_mode_allowed: c("failure_mode_allowed"),
            disabled: c("disabled"),
            cx_closed: c("cx_closed"),
            active: metrics::gauge!(format!("{stem}active")),
        }
    }
}

struct NetworkExtAuthzFilter {
    config: NetworkExtAuthz,
    clusters: Arc<ClusterRegistry>,
    stats: Stats,
}

impl NetworkExtAuthzFilter {
    /// The framed `CheckRequest` for a connection.
    fn request(&self, conn: &ConnectionView<'_>, metadata: &DynamicMetadata) -> Bytes {
        let filter_metadata: HashMap<_, _> = self
            .config
            .metadata_context_namespaces
            .iter()
            .filter_map(|ns| Some((ns.clone(), pbjson::json_to_struct(metadata.namespace(ns)?))))
            .collect();
        let check = CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: Some(check::socket(conn.peer)),
                    principal: check::principal(conn.peer_cert),
                    ..Default::default()
                }),
                destination: Some(Peer {
                    address: Some(check::socket(conn.local)),
                    ..Default::default()
                }),
                metadata_context: (!filter_metadata.is_empty()).then(|| Metadata {
                    filter_metadata,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let msg = check.encode_to_vec();
        let mut out = BytesMut::with_capacity(msg.len() + 5);
        out.put_u8(0);
        out.put_u32(u32::try_from(msg.len()).unwrap_or(u32::MAX));
        out.extend_from_slice(&msg);
        out.freeze()
    }

    /// A verdict as Envoy acts on it: allowed connections go on.
    fn settle<'x>(&self, verdict: &Verdict) -> ReadDecision<'x> {
        let s = &self.stats;
        s.total.increment(1);
        let allowed = match verdict {
            Verdict::Allow(_) => {
                s.ok.increment(1);
                true
            }
            Verdict::Deny { .. } => {
                s.denied.increment(1);
                false
            }
            Verdict::Error => {
                s.error.increment(1);
                if self.config.failure_mode_allow {
                    s.failure_mode_allowed.increment(1);
                }
                self.config.failure_mode_allow
            }
        };
        if allowed {
            ReadDecision::Continue
        } else {
            s.cx_closed.increment(1);
            ReadDecision::Close { delay: None }
        }
    }
}

impl ReadFilter for NetworkExtAuthzFilter {
    fn on_connection<'a>(
        &'a self,
        conn: &'a ConnectionView<'a>,
        metadata: &'a mut DynamicMetadata,
    ) -> ReadDecision<'a> {
        if let Some(m) = &self.config.filter_enabled_metadata {
            let path: Vec<&str> = m.path.iter().map(String::as_str).collect();
            if !m.matches(metadata.get(&m.filter, &path)) {
                self.stats.disabled.increment(1);
                return ReadDecision::Continue;
            }
        }
        let body = self.request(conn, metadata);
        ReadDecision::Pause(Box::pin(async move {
            self.stats.active.increment(1.0);
            let call = GrpcCall {
                cluster: &self.config.cluster,
                authority: &self.config.authority,
                initial_metadata: &self.config.initial_metadata,
                timeout: self.config.timeout,
            };
            let verdict = call.check(&self.clusters, body).await;
            self.stats.active.decrement(1.0);
            self.settle(&verdict)
        }))
    }
}

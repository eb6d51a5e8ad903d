//! The ADS stream in its incremental (delta) form: subscriptions sent as
//! changes, resources added or removed by name, ACKs that carry only the
//! nonce, and `initial_resource_versions` on reconnect so the control plane
//! resends only what changed while the stream was down.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::{
    envoy::{
        config::core::v3::Node,
        service::discovery::v3::{
            DeltaDiscoveryRequest, DeltaDiscoveryResponse,
            aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
        },
    },
    google::rpc::Status as RpcStatus,
};
use strait_model as model;
use tokio::sync::mpsc;

use crate::{
    Kind, Publish, XdsError,
    shared::Shared,
    type_url,
    wire::{INVALID_ARGUMENT, MAX_MESSAGE, TYPES, UnboundedStream, connect, nack_message},
};

/// Delta protocol state of one type: the names subscribed to (named types
/// only; listeners and clusters are wildcard) and the version of every
/// resource accepted, kept across reconnects.
#[derive(Debug, Default)]
pub(crate) struct DeltaState {
    names: BTreeSet<String>,
    versions: BTreeMap<String, String>,
}

/// One delta stream, from connect to failure.
pub(crate) async fn session<P: Publish>(
    dynamic: &model::DynamicResources,
    shared: &Shared<P>,
    types: &mut BTreeMap<&'static str, DeltaState>,
    progressed: &mut bool,
) -> Result<(), XdsError> {
    let channel = connect(&shared.base, &dynamic.ads_cluster).await?;
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut sender = Sender {
        tx,
        node: shared.base.node.as_ref().map(strait_envoy::node_proto),
        node_once: dynamic.node_on_first_message_only,
    };
    for t in TYPES {
        let wildcard = t == type_url::CLUSTER || t == type_url::LISTENER;
        let state = types.entry(t).or_default();
        if wildcard || !state.names.is_empty() {
            sender.send(DeltaDiscoveryRequest {
                type_url: t.to_owned(),
                resource_names_subscribe: state.names.iter().cloned().collect(),
                initial_resource_versions: state
                    .versions
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                ..Default::default()
            });
        }
    }
    let mut inbound = client
        .delta_aggregated_resources(UnboundedStream::new(rx))
        .await?
        .into_inner();
    while let Some(resp) = inbound.message().await? {
        if !*progressed {
            shared.stats.connected(true);
        }
        *progressed = true;
        handle(resp, shared, types, &mut sender).await;
    }
    Err(XdsError::Closed)
}

/// Applies one delta response and ACKs or NACKs it, then follows the
/// subscription changes it implies.
async fn handle<P: Publish>(
    resp: DeltaDiscoveryResponse,
    shared: &Shared<P>,
    types: &mut BTreeMap<&'static str, DeltaState>,
    sender: &mut Sender,
) {
    let Some(type_url) = TYPES.into_iter().find(|t| *t == resp.type_url) else {
        tracing::warn!(type_url = %resp.type_url, "ignoring a delta response of a type never requested");
        return;
    };
    let anys: Vec<_> = resp
        .resources
        .iter()
        .filter_map(|r| Some((r.version.as_str(), r.resource.as_ref()?)))
        .collect();
    let (result, cache) = shared
        .update(|c| {
            if anys.len() != resp.resources.len() {
                return Err(vec![
                    "a resource without a body (TTL heartbeats are not supported)".into(),
                ]);
            }
            c.apply_delta(
                type_url,
                &resp.system_version_info,
                &anys,
                &resp.removed_resources,
            )
        })
        .await;
    if let Some(kind) = Kind::of(type_url) {
        shared.stats.update(kind, &result, &cache);
    }
    let state = types.entry(type_url).or_default();
    // The versions the next stream resumes from: those of the resources
    // taken; a rejected one resumes from its last good version, so the
    // control plane sends it again.
    if let Ok(outcome) = &result {
        for r in &resp.resources {
            if outcome.accepted.contains(&r.name) {
                state.versions.insert(r.name.clone(), r.version.clone());
            }
        }
        for name in &outcome.removed {
            state.versions.remove(name);
        }
    }
    let error_detail = match nack_message(&result) {
        None => {
            tracing::info!(type_url, nonce = %resp.nonce, "xDS delta update accepted");
            None
        }
        Some(message) => {
            tracing::warn!(type_url, nonce = %resp.nonce, %message, "xDS delta update rejected");
            Some(RpcStatus {
                code: INVALID_ARGUMENT,
                message,
                details: Vec::new(),
            })
        }
    };
    sender.send(DeltaDiscoveryRequest {
        type_url: type_url.to_owned(),
        response_nonce: resp.nonce,
        error_detail,
        ..Default::default()
    });
    for (t, names) in [
        (type_url::ENDPOINT, cache.endpoint_names()),
        (type_url::ROUTE, cache.route_names()),
        (type_url::SECRET, cache.ads_secret_names()),
    ] {
        let state = types.entry(t).or_default();
        if state.names == names {
            continue;
        }
        let subscribe: Vec<String> = names.difference(&state.names).cloned().collect();
        let unsubscribe: Vec<String> = state.names.difference(&names).cloned().collect();
        for name in &unsubscribe {
            state.versions.remove(name);
        }
        state.names = names;
        sender.send(DeltaDiscoveryRequest {
            type_url: t.to_owned(),
            resource_names_subscribe: subscribe,
            resource_names_unsubscribe: unsubscribe,
            ..Default::default()
        });
    }
}

/// The request half of a delta stream.
struct Sender {
    tx: mpsc::UnboundedSender<DeltaDiscoveryRequest>,
    node: Option<Node>,
    node_once: bool,
}

impl Sender {
    fn send(&mut self, mut req: DeltaDiscoveryRequest) {
        req.node = if self.node_once {
            self.node.take()
        } else {
            self.node.clone()
        };
        // A send after the stream ended is moot: the next session
        // re-subscribes with every accepted version.
        let _ = self.tx.send(req);
    }
}

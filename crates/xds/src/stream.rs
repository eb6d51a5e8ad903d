//! The ADS stream (state of the world): requests, responses, ACK/NACK, and
//! reconnecting.

use std::{collections::BTreeMap, sync::Arc};

use envoy_types::pb::envoy::service::discovery::v3::{
    DiscoveryResponse, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use strait_model as model;
use tokio::sync::mpsc;

use crate::{
    Cache, Kind, Publish, XdsError,
    shared::Shared,
    stats::Stats,
    type_url,
    wire::{MAX_MESSAGE, Sender, TYPES, TypeState, UnboundedStream, connect, nack_message},
};

/// Runs the xDS client for a bootstrap config, forever: the ADS stream when
/// it has `dynamic_resources` (connects, subscribes, applies every accepted
/// response through `publisher`, reconnects with jittered back-off when the
/// stream fails) and every SDS source its TLS contexts name (gRPC streams,
/// files). The cache (and so the live config) survives reconnects. Returns
/// at once when there is nothing to run. Cancel-safe between publishes:
/// drop the future to stop (SDS tasks stop with it). The control-plane stats
/// (`listener_manager.lds.*`, `cluster_manager.cds.*`,
/// `control_plane.connected_state`) are registered with `recorder`, the
/// proxy's.
pub async fn run<P: Publish>(
    base: model::Config,
    publisher: P,
    recorder: Arc<dyn metrics::Recorder + Send + Sync>,
) {
    let dynamic = base.dynamic.clone();
    let shared = Arc::new(Shared::new(base, publisher, Stats::new(recorder)));
    let sources = crate::sds::supervise(Arc::clone(&shared));
    match dynamic {
        Some(dynamic) => {
            tokio::join!(ads(&dynamic, &shared), sources);
        }
        // Without ADS the sources never change: run them if there are any.
        None if crate::sds::has_sources(&shared) => sources.await,
        None => {}
    }
}

/// The ADS stream, reconnected forever.
async fn ads<P: Publish>(dynamic: &model::DynamicResources, shared: &Shared<P>) {
    let mut types: BTreeMap<&'static str, TypeState> = BTreeMap::new();
    let mut delta_types = BTreeMap::new();
    let mut failures = 0u32;
    shared.stats.started();
    loop {
        let mut progressed = false;
        let result = match dynamic.api {
            model::AdsApi::StateOfTheWorld => {
                session(dynamic, shared, &mut types, &mut progressed).await
            }
            model::AdsApi::Delta => {
                crate::delta::session(dynamic, shared, &mut delta_types, &mut progressed).await
            }
        };
        if progressed {
            failures = 0;
            shared.stats.connected(false);
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "xDS stream ended; keeping the last good config");
        }
        let wait = strait_net::reconnect_backoff(failures);
        failures = failures.saturating_add(1);
        tokio::time::sleep(wait).await;
    }
}

/// One stream, from connect to failure.
async fn session<P: Publish>(
    dynamic: &model::DynamicResources,
    shared: &Shared<P>,
    types: &mut BTreeMap<&'static str, TypeState>,
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
    // Nonces belong to the stream that carried them.
    for t in types.values_mut() {
        t.nonce.clear();
    }
    // Clusters before listeners, as Envoy orders its initial requests, so
    // the clusters routes name are there first. Named types are re-requested
    // with what was subscribed before the reconnect.
    for t in TYPES {
        let wildcard = t == type_url::CLUSTER || t == type_url::LISTENER;
        let state = types.entry(t).or_default();
        if wildcard || !state.names.is_empty() {
            sender.request(t, state, None);
        }
    }
    let mut inbound = client
        .stream_aggregated_resources(UnboundedStream::new(rx))
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

/// Applies one response and answers it: ACK when every resource in it was
/// taken (and the config is live or unchanged); otherwise NACK with every
/// rejected resource's reasons, at the previous version, while the
/// resources that were taken are live (as Envoy does). Then follows
/// subscription changes the accepted resources imply.
async fn handle<P: Publish>(
    resp: DiscoveryResponse,
    shared: &Shared<P>,
    types: &mut BTreeMap<&'static str, TypeState>,
    sender: &mut Sender,
) {
    let Some(type_url) = TYPES.into_iter().find(|t| *t == resp.type_url) else {
        tracing::warn!(type_url = %resp.type_url, "ignoring a response of a type never requested");
        return;
    };
    let (result, cache) = shared
        .update(|c| c.apply(type_url, &resp.version_info, &resp.resources))
        .await;
    if let Some(kind) = Kind::of(type_url) {
        shared.stats.update(kind, &result, &cache);
    }
    let state = types.entry(type_url).or_default();
    state.nonce = resp.nonce.clone();
    match nack_message(&result) {
        None => {
            state.version = resp.version_info.clone();
            tracing::info!(type_url, version = %resp.version_info, "xDS update accepted");
            sender.request(type_url, state, None);
        }
        Some(message) => {
            tracing::warn!(type_url, version = %resp.version_info, %message, "xDS update rejected");
            sender.request(type_url, state, Some(message));
        }
    }
    resubscribe(&cache, types, sender);
}

/// Sends a new request for RDS, EDS or SDS when the names the listeners or
/// clusters need changed.
fn resubscribe(cache: &Cache, types: &mut BTreeMap<&'static str, TypeState>, sender: &mut Sender) {
    for (t, names) in [
        (type_url::ENDPOINT, cache.endpoint_names()),
        (type_url::ROUTE, cache.route_names()),
        (type_url::SECRET, cache.ads_secret_names()),
    ] {
        let state = types.entry(t).or_default();
        if state.names != names {
            state.names = names;
            sender.request(t, state, None);
        }
    }
}

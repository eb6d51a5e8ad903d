//! SDS sources besides ADS: a state-of-the-world `SecretDiscoveryService`
//! stream per gRPC cluster (Istio's `sds-grpc`), and SDS files (a
//! `DiscoveryResponse` of `Secret`s, polled like the config file). Both feed
//! the same cache as ADS ([`Shared::update`]), so a secret is judged and
//! published like any other resource: a bad one is rejected alone (NACKed
//! on a stream, logged for a file) and its previous version keeps serving.

use std::{
    collections::{BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use envoy_types::pb::envoy::service::{
    discovery::v3::DiscoveryResponse,
    secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient,
};
use strait_model::secret::SecretSource;
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};

use crate::{
    Publish, XdsError,
    shared::Shared,
    type_url::SECRET,
    wire::{MAX_MESSAGE, Sender, TypeState, UnboundedStream, connect, nack_message},
};

/// How often an SDS file is re-read; the same pace as the config file.
const FILE_POLL: Duration = Duration::from_millis(200);

/// True when `shared`'s config names a source only this module serves.
pub(crate) fn has_sources<P>(shared: &Shared<P>) -> bool {
    shared
        .sources
        .borrow()
        .keys()
        .any(|s| matches!(s, SecretSource::Grpc { .. } | SecretSource::File { .. }))
}

/// Starts a task per gRPC cluster and per file the config names, and keeps
/// each stream's subscription equal to the names its source must deliver.
/// A source no longer named keeps running (its secrets are pruned from the
/// cache, so it changes nothing live) until the client stops. Never
/// returns; dropping it aborts every task.
pub(crate) async fn supervise<P: Publish>(shared: Arc<Shared<P>>) {
    let mut wanted = shared.sources.subscribe();
    let mut running: HashMap<SecretSource, watch::Sender<BTreeSet<String>>> = HashMap::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(crate::secret_files::watch(Arc::clone(&shared), FILE_POLL));
    loop {
        let now = wanted.borrow_and_update().clone();
        for (source, names) in now {
            if let Some(tx) = running.get(&source) {
                tx.send_if_modified(|old| {
                    let changed = *old != names;
                    *old = names;
                    changed
                });
                continue;
            }
            let (tx, rx) = watch::channel(names);
            match &source {
                SecretSource::Static | SecretSource::Ads => continue,
                SecretSource::Grpc { cluster } => {
                    tasks.spawn(grpc(Arc::clone(&shared), cluster.clone(), rx));
                }
                SecretSource::File { path } => {
                    tasks.spawn(file(Arc::clone(&shared), path.clone()));
                }
            }
            running.insert(source, tx);
        }
        // The sender lives in `shared`, which this future holds.
        if wanted.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// One gRPC SDS source, reconnected forever with jittered back-off.
async fn grpc<P: Publish>(
    shared: Arc<Shared<P>>,
    cluster: String,
    mut names: watch::Receiver<BTreeSet<String>>,
) {
    let mut state = TypeState::default();
    let mut failures = 0u32;
    loop {
        let mut progressed = false;
        let result = grpc_session(&shared, &cluster, &mut names, &mut state, &mut progressed).await;
        if progressed {
            failures = 0;
        }
        match result {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                cluster,
                error = %e,
                "SDS stream ended; keeping the last good secrets"
            ),
        }
        let wait = strait_net::reconnect_backoff(failures);
        failures = failures.saturating_add(1);
        tokio::time::sleep(wait).await;
    }
}

/// One `StreamSecrets` stream: subscribes to the names wanted, applies each
/// response through the shared cache, ACKs or NACKs it, and follows name
/// changes. `Ok` only when the supervisor is gone.
async fn grpc_session<P: Publish>(
    shared: &Shared<P>,
    cluster: &str,
    names: &mut watch::Receiver<BTreeSet<String>>,
    state: &mut TypeState,
    progressed: &mut bool,
) -> Result<(), XdsError> {
    let channel = connect(&shared.base, cluster).await?;
    let mut client =
        SecretDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::unbounded_channel();
    // Envoy sends the node on every SDS request; the SDS server (Istio's
    // agent) may be another process than the ADS one.
    let mut sender = Sender {
        tx,
        node: shared.base.node.as_ref().map(strait_envoy::node_proto),
        node_once: false,
    };
    state.nonce.clear();
    state.names = names.borrow_and_update().clone();
    // An empty SotW request would be a wildcard; with nothing named there
    // is nothing to ask for.
    if !state.names.is_empty() {
        sender.request(SECRET, state, None);
    }
    let mut inbound = client
        .stream_secrets(UnboundedStream::new(rx))
        .await?
        .into_inner();
    loop {
        tokio::select! {
            msg = inbound.message() => {
                let Some(resp) = msg? else {
                    return Err(XdsError::Closed);
                };
                *progressed = true;
                respond(shared, resp, state, &mut sender).await;
            }
            changed = names.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let now = names.borrow_and_update().clone();
                if now != state.names && !now.is_empty() {
                    state.names = now;
                    sender.request(SECRET, state, None);
                }
            }
        }
    }
}

async fn respond<P: Publish>(
    shared: &Shared<P>,
    resp: DiscoveryResponse,
    state: &mut TypeState,
    sender: &mut Sender,
) {
    state.nonce = resp.nonce.clone();
    let result = if resp.type_url == SECRET {
        shared
            .update(|c| c.apply(SECRET, &resp.version_info, &resp.resources))
            .await
            .0
    } else {
        Err(vec![format!(
            "type {} on an SDS stream (expected {SECRET})",
            resp.type_url
        )])
    };
    match nack_message(&result) {
        None => {
            state.version = resp.version_info.clone();
            tracing::info!(version = %resp.version_info, "SDS update accepted");
            sender.request(SECRET, state, None);
        }
        Some(message) => {
            tracing::warn!(version = %resp.version_info, %message, "SDS update rejected");
            sender.request(SECRET, state, Some(message));
        }
    }
}

/// One SDS file, re-read every [`FILE_POLL`]: whenever its bytes change,
/// its secrets are applied (merged by name). A missing or bad file is
/// logged once per distinct problem and changes nothing.
async fn file<P: Publish>(shared: Arc<Shared<P>>, path: PathBuf) {
    let mut last: Option<Vec<u8>> = None;
    let mut last_error = String::new();
    loop {
        match tokio::fs::read(&path).await {
            Ok(bytes) if last.as_ref() != Some(&bytes) => {
                let outcome = match parse_file(&bytes, &path) {
                    Ok(resp) => {
                        shared
                            .update(|c| c.apply(SECRET, &resp.version_info, &resp.resources))
                            .await
                            .0
                    }
                    Err(e) => Err(vec![e]),
                };
                match nack_message(&outcome) {
                    None => {
                        tracing::info!(path = %path.display(), "SDS file applied");
                        last_error.clear();
                    }
                    Some(message) => {
                        tracing::warn!(path = %path.display(), %message,
                            "SDS file: secrets rejected; they keep their last good version");
                    }
                }
                last = Some(bytes);
            }
            Ok(_) => {}
            Err(e) => {
                let message = e.to_string();
                if message != last_error {
                    tracing::warn!(path = %path.display(), error = %message, "cannot read SDS file");
                    last_error = message;
                }
            }
        }
        tokio::time::sleep(FILE_POLL).await;
    }
}

/// An SDS file's text (YAML or JSON) as a `DiscoveryResponse`.
fn parse_file(bytes: &[u8], path: &Path) -> Result<DiscoveryResponse, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let msg =
        strait_envoy::parse::parse_message(text, "envoy.service.discovery.v3.DiscoveryResponse")
            .map_err(|e| format!("{}: {e}", path.display()))?;
    prost::Message::decode(prost::Message::encode_to_vec(&msg).as_slice())
        .map_err(|e| format!("{}: {e}", path.display()))
}

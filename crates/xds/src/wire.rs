//! What the ADS stream (`stream`, `delta`) and the SDS streams (`sds`)
//! share: protocol constants, per-type state, the channel to a control-plane
//! cluster, and the request sender.

use std::collections::BTreeSet;

use envoy_types::pb::{
    envoy::service::discovery::v3::DiscoveryRequest, google::rpc::Status as RpcStatus,
};
use strait_model as model;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::{Outcome, XdsError, type_url};

/// gRPC `INVALID_ARGUMENT`, the code Envoy puts in a NACK's `error_detail`.
pub(crate) const INVALID_ARGUMENT: i32 = 3;
/// Istio pushes can be large (thousands of clusters); tonic's 4 MiB default
/// would cut the stream.
pub(crate) const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Protocol state of one resource type: what was last accepted (sent back as
/// `version_info`), the nonce of the last response (reset per stream), and
/// the names subscribed to (named types only).
#[derive(Debug, Default)]
pub(crate) struct TypeState {
    pub(crate) version: String,
    pub(crate) nonce: String,
    pub(crate) names: BTreeSet<String>,
}

/// The types, in the order a new stream requests them.
pub(crate) const TYPES: [&str; 5] = [
    type_url::CLUSTER,
    type_url::LISTENER,
    type_url::ENDPOINT,
    type_url::ROUTE,
    type_url::SECRET,
];

/// A gRPC channel to a control-plane cluster (the ADS cluster or an SDS
/// one): HTTP/2 over TCP, or the unix socket of its `pipe` address.
pub(crate) async fn connect(base: &model::Config, cluster: &str) -> Result<Channel, XdsError> {
    let spec = base
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .ok_or_else(|| XdsError::NoAdsEndpoint(cluster.to_owned()))?;
    crate::channel::grpc_channel(spec, &base.secrets).await
}

/// The request half of a SotW stream (ADS or SDS).
pub(crate) struct Sender {
    pub(crate) tx: mpsc::UnboundedSender<DiscoveryRequest>,
    /// Taken by the first request when `node_once`.
    pub(crate) node: Option<envoy_types::pb::envoy::config::core::v3::Node>,
    pub(crate) node_once: bool,
}

impl Sender {
    /// A request for `type_url` carrying the last accepted version, the last
    /// nonce, the subscribed names, and `nack` as the error detail.
    pub(crate) fn request(&mut self, type_url: &str, state: &TypeState, nack: Option<String>) {
        let node = if self.node_once {
            self.node.take()
        } else {
            self.node.clone()
        };
        let req = DiscoveryRequest {
            version_info: state.version.clone(),
            node,
            resource_names: state.names.iter().cloned().collect(),
            type_url: type_url.to_owned(),
            response_nonce: state.nonce.clone(),
            error_detail: nack.map(|message| RpcStatus {
                code: INVALID_ARGUMENT,
                message,
                details: Vec::new(),
            }),
            ..Default::default()
        };
        // The receiver lives as long as the stream; a send after it ended is
        // moot, the next session re-requests everything.
        let _ = self.tx.send(req);
    }
}

/// An unbounded receiver as a stream: requests are few and small, and the
/// writer must never wait on the network while holding the cache.
pub(crate) struct UnboundedStream<T>(mpsc::UnboundedReceiver<T>);

impl<T> UnboundedStream<T> {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<T>) -> Self {
        UnboundedStream(rx)
    }
}

impl<T> tonic::codegen::tokio_stream::Stream for UnboundedStream<T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// The NACK's `error_detail` for an update: every problem of every
/// rejected resource; `None` when all were taken.
pub(crate) fn nack_message(result: &Result<Outcome, Vec<String>>) -> Option<String> {
    let problems = match result {
        Ok(outcome) => outcome.problems(),
        Err(problems) => problems.clone(),
    };
    (!problems.is_empty()).then(|| problems.join("; "))
}

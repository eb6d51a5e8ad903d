//! Strait's xDS client.
//!
//! Also the SDS client: secrets arrive over ADS, over their own gRPC
//! streams, or from files (`sds`), all through the same cache (`shared`).
//!
//! Owns the ADS stream to the control plane named by the bootstrap's
//! `dynamic_resources` (state of the world over gRPC), the per-type caches of
//! LDS, RDS, CDS and EDS resources translated into the config model, the
//! protocol's version/nonce bookkeeping with ACK and NACK, subscriptions
//! (wildcard for listeners and clusters, by name for route configs and
//! endpoints, following what the listeners and clusters name), warming (an
//! EDS cluster is left out until its endpoints arrive, an RDS listener until
//! its route config does), and reconnecting with jittered back-off while the
//! last good config keeps serving.
//!
//! Resources are accepted one by one, as Envoy accepts them: the good ones
//! of a response go live together, each bad one is NACKed by name (with
//! its field) and keeps its last good version. It produces whole
//! [`model::Config`]s (the static bootstrap resources plus the dynamic
//! ones) and hands each to a [`Publish`] implementation, the proxy's single
//! config writer; what the writer refuses about one listener or cluster
//! ([`Refusal`]) is put back and NACKed like a resource that did not
//! translate. Depends on the
//! model, the Envoy front end, `tls` and `net` among Strait's crates: it
//! never touches snapshots, sockets of the data plane, or the cluster
//! registry.

mod cache;
mod channel;
mod delta;
mod sds;
mod secret_files;
mod shared;
mod stats;
mod stream;
mod wire;

use std::{future::Future, sync::Arc};

use strait_envoy::{dump::XdsDump, model};

pub use cache::{Cache, Kind, Outcome, Rejected};
pub use channel::grpc_channel;
pub use stream::run;

/// Type URLs of the resources this client subscribes to.
pub mod type_url {
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
}

/// The proxy's config writer, as the xDS client sees it.
pub trait Publish: Send + Sync + 'static {
    /// Makes `config` live as one new snapshot, or refuses it (keeping the
    /// running one) with every reason found, each naming its field and,
    /// when it is about one, the listener or cluster ([`Refusal`]). The
    /// client then puts back the resource to blame and publishes the rest;
    /// the reasons become the NACK's `error_detail`. May wait (for the
    /// writer's lock, or for cluster hosts to be built); must not be
    /// cancelled half-way by the caller, which awaits it to the end.
    fn publish(
        &self,
        config: model::Config,
    ) -> impl Future<Output = Result<u64, Vec<Refusal>>> + Send;

    /// Called after every accepted response with the resources as received
    /// (for `/config_dump`). The default keeps nothing.
    fn record(&self, dump: Arc<XdsDump>) {
        let _ = dump;
    }

    /// The parsers the translation of resources consults for extension
    /// type URLs the front end does not build in (the proxy's filter
    /// registry). The default knows only the built-in extensions.
    fn parsers(&self) -> strait_envoy::Parsers {
        strait_envoy::Parsers::default()
    }
}

/// One reason the writer refused a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The listener or cluster that could not be compiled or bound; `None`
    /// for a problem with the config as a whole, which refuses the update.
    pub subject: Option<Subject>,
    /// What went wrong, naming the field.
    pub message: String,
}

impl Refusal {
    pub fn whole(message: impl Into<String>) -> Refusal {
        Refusal {
            subject: None,
            message: message.into(),
        }
    }
}

/// What a [`Refusal`] is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    Listener(String),
    Cluster(String),
}

/// What can go wrong talking to the control plane. Every one of them ends
/// the current stream; [`run`] reconnects after a back-off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XdsError {
    /// The bootstrap names an ADS (or SDS) cluster that has no usable
    /// endpoint.
    #[error("xDS cluster '{0}': no endpoint to connect to")]
    NoAdsEndpoint(String),
    /// The ADS (or SDS) cluster's endpoint does not make a URI.
    #[error("xDS cluster '{cluster}': bad endpoint: {message}")]
    BadEndpoint { cluster: String, message: String },
    #[error("connecting to the control plane: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("xDS stream: {0}")]
    Stream(#[from] tonic::Status),
    /// The stream ended cleanly: the control plane closed it.
    #[error("xDS stream closed by the control plane")]
    Closed,
}

//! The control plane's `SecretDiscoveryService`: the same state-of-the-world
//! machinery as ADS on the same port, so a test can point a bootstrap's
//! `sds-grpc` cluster at it and serve `Secret`s set with
//! [`super::XdsServer::set`] (type [`super::SECRET`]) over their own
//! `StreamSecrets` stream.

use envoy_types::pb::envoy::service::{
    discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse},
    secret::v3::secret_discovery_service_server::{
        SecretDiscoveryService, SecretDiscoveryServiceServer,
    },
};
use tonic::{Request, Response, Status, Streaming};

use super::{Ads, DeltaStream, SotwStream};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;

/// The gRPC path prefix of the service, for routing on the shared port.
pub(super) const PATH: &str = "/envoy.service.secret.v3.SecretDiscoveryService/";

pub(super) fn server(ads: Ads) -> SecretDiscoveryServiceServer<Ads> {
    SecretDiscoveryServiceServer::new(ads)
}

#[tonic::async_trait]
impl SecretDiscoveryService for Ads {
    type StreamSecretsStream = SotwStream;
    type DeltaSecretsStream = DeltaStream;

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwStream>, Status> {
        self.stream_aggregated_resources(request).await
    }

    async fn delta_secrets(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        self.delta_aggregated_resources(request).await
    }

    async fn fetch_secrets(
        &self,
        _request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        Err(Status::unimplemented("REST SDS is not served"))
    }
}

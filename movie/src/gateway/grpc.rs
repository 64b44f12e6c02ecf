//! Gateways over gRPC: each call goes to a healthy instance of the service
//! through the shared upstream pool (reused channels, one deadline).
use contract::{
    api::{
        GetAggregatedRatingRequest, GetMetadataRequest, metadata_service_client::MetadataServiceClient,
        rating_service_client::RatingServiceClient,
    },
    id::MOVIE_RECORD_TYPE,
};
use contract::{id::MovieId, metadata::Metadata};
use platform::{metrics::timed_client_call, trace_context::inject_into_request, upstream::Upstream};

use super::{GatewayError, MetadataGateway, RatingGateway};

/// A dependency reached over gRPC through its upstream pool: the metadata
/// service as a [`MetadataGateway`], the rating service as a [`RatingGateway`].
pub struct GrpcGateway {
    upstream: Upstream,
}

impl GrpcGateway {
    pub fn new(upstream: Upstream) -> Self {
        Self { upstream }
    }
}

impl MetadataGateway for GrpcGateway {
    async fn get(&self, id: &MovieId) -> Result<Metadata, GatewayError> {
        let call = self.upstream.call(|channel, _| {
            let mut request = tonic::Request::new(GetMetadataRequest { movie_id: id.as_str().to_string() });
            inject_into_request(&mut request);
            async move { MetadataServiceClient::new(channel).get_metadata(request).await }
        });
        let response = timed_client_call("MetadataService", "GetMetadata", call).await?;
        Metadata::parse(response.into_inner().metadata).map_err(|error| GatewayError::Failed {
            service: self.upstream.service().clone(),
            reason: format!("malformed answer: {error}"),
        })
    }
}

impl RatingGateway for GrpcGateway {
    async fn aggregated(&self, id: &MovieId) -> Result<f64, GatewayError> {
        let call = self.upstream.call(|channel, _| {
            let mut request = tonic::Request::new(GetAggregatedRatingRequest {
                record_id: id.as_str().to_string(),
                record_type: MOVIE_RECORD_TYPE.to_string(),
            });
            inject_into_request(&mut request);
            async move { RatingServiceClient::new(channel).get_aggregated_rating(request).await }
        });
        let response = timed_client_call("RatingService", "GetAggregatedRating", call).await?;
        Ok(response.into_inner().rating_value)
    }
}

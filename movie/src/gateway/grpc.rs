//! Gateways over gRPC: each call goes to a healthy instance of the service
//! through the shared upstream pool (reused channels, one deadline, sent
//! along as the request's `grpc-timeout`).
//!
//! tonic's call future is boxed: unboxed, it made the gateways' and the
//! controller's futures several kilobytes, copied whole at every layer that
//! takes a future by value (BENCHMARKS.md, "movie: tonic's call future boxed
//! in the gateways").
use contract::{
    api::{
        GetAggregatedRatingRequest, GetMetadataRequest, metadata_service_client::MetadataServiceClient,
        rating_service_client::RatingServiceClient,
    },
    id::MOVIE_RECORD_TYPE,
};
use contract::{id::MovieId, metadata::Metadata};
use platform::{
    transport::Deadline,
    upstream::{Upstream, timed_client_call},
};
use telemetry::trace_context::inject_into_request;

use super::{GatewayError, MetadataGateway, RatingGateway};

/// A dependency reached over gRPC through its upstream pool: the metadata
/// service as a [`MetadataGateway`], the rating service as a [`RatingGateway`].
pub struct GrpcGateway {
    upstream: Upstream,
    max_message_size: usize,
}

impl GrpcGateway {
    /// Calls through `upstream`, with messages of at most `max_message_size`
    /// bytes either way.
    pub fn new(upstream: Upstream, max_message_size: usize) -> Self {
        Self { upstream, max_message_size }
    }
}

impl MetadataGateway for GrpcGateway {
    async fn get(&self, id: &MovieId, deadline: Option<Deadline>) -> Result<Metadata, GatewayError> {
        let limit = self.max_message_size;
        let call = self.upstream.call(deadline, |channel, _, time_left| {
            let mut request = tonic::Request::new(GetMetadataRequest { movie_id: id.as_str().to_string() });
            request.set_timeout(time_left);
            inject_into_request(&mut request);
            let mut client =
                MetadataServiceClient::new(channel).max_decoding_message_size(limit).max_encoding_message_size(limit);
            Box::pin(async move { client.get_metadata(request).await })
        });
        let response = timed_client_call("MetadataService", "GetMetadata", call).await?;
        Metadata::parse(response.into_inner().metadata).map_err(|error| GatewayError::Failed {
            service: self.upstream.service().clone(),
            reason: format!("malformed answer: {error}"),
        })
    }
}

impl RatingGateway for GrpcGateway {
    async fn aggregated(&self, id: &MovieId, deadline: Option<Deadline>) -> Result<f64, GatewayError> {
        let limit = self.max_message_size;
        let call = self.upstream.call(deadline, |channel, _, time_left| {
            let mut request = tonic::Request::new(GetAggregatedRatingRequest {
                record_id: id.as_str().to_string(),
                record_type: MOVIE_RECORD_TYPE.to_string(),
            });
            request.set_timeout(time_left);
            inject_into_request(&mut request);
            let mut client =
                RatingServiceClient::new(channel).max_decoding_message_size(limit).max_encoding_message_size(limit);
            Box::pin(async move { client.get_aggregated_rating(request).await })
        });
        let response = timed_client_call("RatingService", "GetAggregatedRating", call).await?;
        Ok(response.into_inner().rating_value)
    }
}

//! Gateways over gRPC: each call goes to a healthy instance of the service
//! through the shared upstream pool ([`Upstream::unary`]: reused
//! connections, the caller's deadline sent along as `grpc-timeout`, trace
//! context, size limits, timing).
use contract::{
    api::{GetAggregatedRatingRequest, GetMetadataRequest},
    id::{MOVIE_RECORD_TYPE, MovieId},
    metadata::Metadata,
    method::{GET_AGGREGATED_RATING, GET_METADATA},
};
use platform::{transport::Deadline, upstream::Upstream};

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
    async fn get(&self, id: &MovieId, deadline: Option<Deadline>) -> Result<Metadata, GatewayError> {
        let request = GetMetadataRequest { movie_id: id.as_str().to_string() };
        let response = self.upstream.unary(&GET_METADATA, &request, deadline).await?;
        Metadata::parse(response.metadata)
            .map_err(|problem| GatewayError::Malformed { service: self.upstream.service().clone(), problem })
    }
}

impl RatingGateway for GrpcGateway {
    async fn aggregated(&self, id: &MovieId, deadline: Option<Deadline>) -> Result<f64, GatewayError> {
        let request = GetAggregatedRatingRequest {
            record_id: id.as_str().to_string(),
            record_type: MOVIE_RECORD_TYPE.to_string(),
        };
        Ok(self.upstream.unary(&GET_AGGREGATED_RATING, &request, deadline).await?.rating_value)
    }
}

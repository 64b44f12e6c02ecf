//! The unary RPCs one service of the suite calls on another, by name and
//! typed by their messages: what a client needs to make the call without
//! the generated client (the upstream pool's `unary`), and what metrics and
//! spans name it by.
use std::marker::PhantomData;

use crate::api::{GetAggregatedRatingRequest, GetAggregatedRatingResponse, GetMetadataRequest, GetMetadataResponse};

/// A unary RPC taking `Req` and answering `Resp`.
#[derive(Debug)]
pub struct Unary<Req, Resp> {
    /// The gRPC service, as the generated server names it (`SERVICE_NAME`).
    pub service: &'static str,
    /// The method, as in `movie.proto`.
    pub method: &'static str,
    /// `/service/method`, the HTTP/2 path of the call.
    pub path: &'static str,
    messages: PhantomData<fn(Req) -> Resp>,
}

/// A [`Unary`] whose path is spelled from its service and method, so that
/// the three cannot disagree.
macro_rules! unary {
    ($service:literal, $method:literal) => {
        Unary { service: $service, method: $method, path: concat!("/", $service, "/", $method), messages: PhantomData }
    };
}

/// `MetadataService/GetMetadata`, which movie calls for a movie's metadata.
pub static GET_METADATA: Unary<GetMetadataRequest, GetMetadataResponse> = unary!("MetadataService", "GetMetadata");

/// `RatingService/GetAggregatedRating`, which movie calls for a movie's
/// average rating.
pub static GET_AGGREGATED_RATING: Unary<GetAggregatedRatingRequest, GetAggregatedRatingResponse> =
    unary!("RatingService", "GetAggregatedRating");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{metadata_service_server, rating_service_server};

    #[test]
    fn services_are_named_as_the_generated_servers_name_them() {
        assert_eq!(GET_METADATA.service, metadata_service_server::SERVICE_NAME);
        assert_eq!(GET_AGGREGATED_RATING.service, rating_service_server::SERVICE_NAME);
        assert_eq!(GET_METADATA.path, "/MetadataService/GetMetadata");
        assert_eq!(GET_AGGREGATED_RATING.path, "/RatingService/GetAggregatedRating");
    }
}

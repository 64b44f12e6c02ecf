//! Typed calls to the metadata and movie services running as processes,
//! from synchronous test code (the rating service's are in [`crate::rating`]).
use contract::api::{
    GetMovieDetailsRequest, Metadata, PutMetadataRequest, metadata_service_client::MetadataServiceClient,
    movie_service_client::MovieServiceClient,
};
use tonic::Code;

use crate::process::{ServiceProcess, block_on, endpoint};

/// The PutMetadata request of movie "1", Heat, with every field set.
pub fn heat() -> PutMetadataRequest {
    PutMetadataRequest {
        metadata: Some(Metadata {
            id: "1".into(),
            title: "Heat".into(),
            description: "A crime saga".into(),
            director: "Michael Mann".into(),
        }),
    }
}

/// PutMetadata of movie `id` titled "Heat", which must succeed.
pub fn put_movie(metadata: &ServiceProcess, id: &str) {
    let request =
        PutMetadataRequest { metadata: Some(Metadata { id: id.into(), title: "Heat".into(), ..Default::default() }) };
    block_on(async {
        let channel = endpoint(metadata).connect().await.expect("connect to metadata");
        MetadataServiceClient::new(channel).put_metadata(request).await.expect("PutMetadata succeeds")
    });
}

/// Asks movie for the details of each id, one call each, and returns the
/// status codes.
pub fn movie_details(movie: &ServiceProcess, ids: &[&str]) -> Vec<Code> {
    block_on(async {
        let channel = endpoint(movie).connect().await.expect("connect to movie");
        let mut client = MovieServiceClient::new(channel);
        let mut codes = Vec::new();
        for id in ids {
            let answer = client.get_movie_details(GetMovieDetailsRequest { movie_id: id.to_string() }).await;
            codes.push(answer.map_or_else(|status| status.code(), |_| Code::Ok));
        }
        codes
    })
}

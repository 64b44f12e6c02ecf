//! The suite's RPCs as the harness calls them: one request each, reduced to
//! its status code, over channels opened once.
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};

use contract::api::{
    GetAggregatedRatingRequest, GetMetadataRequest, GetMovieDetailsRequest, Metadata, PutMetadataRequest,
    PutRatingRequest, metadata_service_client::MetadataServiceClient, movie_service_client::MovieServiceClient,
    rating_service_client::RatingServiceClient,
};
use tonic::transport::{Channel, Endpoint};

/// The RPCs under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rpc {
    /// `MovieService/GetMovieDetails` (movie, which calls metadata and rating)
    GetMovieDetails,
    /// `MetadataService/GetMetadata` (metadata, or the constant server)
    GetMetadata,
}

impl Rpc {
    pub fn name(self) -> &'static str {
        match self {
            Rpc::GetMovieDetails => "GetMovieDetails",
            Rpc::GetMetadata => "GetMetadata",
        }
    }

    /// The HTTP/2 path of the method.
    pub fn path(self) -> &'static str {
        match self {
            Rpc::GetMovieDetails => "/MovieService/GetMovieDetails",
            Rpc::GetMetadata => "/MetadataService/GetMetadata",
        }
    }

    /// The protobuf request for `id`. Both requests are `{string movie_id = 1}`.
    pub fn encoded_request(self, id: &str) -> Vec<u8> {
        use prost::Message;
        match self {
            Rpc::GetMovieDetails => GetMovieDetailsRequest { movie_id: id.to_owned() }.encode_to_vec(),
            Rpc::GetMetadata => GetMetadataRequest { movie_id: id.to_owned() }.encode_to_vec(),
        }
    }

    pub async fn call(self, channel: Channel, id: String) -> Result<(), tonic::Code> {
        let outcome = match self {
            Rpc::GetMovieDetails => MovieServiceClient::new(channel)
                .get_movie_details(GetMovieDetailsRequest { movie_id: id })
                .await
                .map(drop),
            Rpc::GetMetadata => {
                MetadataServiceClient::new(channel).get_metadata(GetMetadataRequest { movie_id: id }).await.map(drop)
            }
        };
        outcome.map_err(|status| status.code())
    }
}

/// A gRPC message as it travels in an HTTP/2 DATA frame: a zero
/// (uncompressed) flag, the length as a big-endian u32, then the message.
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// One HTTP/2 connection to `address` (`host:port`), connected now.
pub async fn connect(address: &str, timeout: Duration) -> anyhow::Result<Channel> {
    let channel = Endpoint::from_shared(format!("http://{address}"))?
        .tcp_nodelay(true)
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await?;
    Ok(channel)
}

/// Connects, retrying until `deadline` (a server that is still starting).
pub async fn connect_until(address: &str, deadline: Instant) -> anyhow::Result<Channel> {
    loop {
        match connect(address, Duration::from_secs(5)).await {
            Ok(channel) => return Ok(channel),
            Err(error) if Instant::now() >= deadline => {
                return Err(error.context(format!("cannot connect to {address}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Stores a movie's metadata.
pub async fn put_metadata(channel: Channel, id: &str) -> Result<(), tonic::Status> {
    let metadata = Metadata {
        id: id.to_owned(),
        title: format!("Movie {id}"),
        description: format!("The benchmark's movie number {id}, with a description of ordinary length."),
        director: "A. Director".to_owned(),
    };
    MetadataServiceClient::new(channel).put_metadata(PutMetadataRequest { metadata: Some(metadata) }).await.map(drop)
}

/// Stores one user's rating of a movie (through Kafka when the rating
/// service has it, waiting until applied).
pub async fn put_rating(channel: Channel, movie: &str, user: &str, value: i32) -> Result<(), tonic::Status> {
    let request = PutRatingRequest {
        user_id: user.to_owned(),
        record_id: movie.to_owned(),
        record_type: "movie".to_owned(),
        rating_value: value,
    };
    RatingServiceClient::new(channel).put_rating(request).await.map(drop)
}

/// The average rating of a movie record, `None` while it has none.
pub async fn aggregated_rating(channel: Channel, record_id: &str) -> Result<Option<f64>, tonic::Status> {
    let request = GetAggregatedRatingRequest { record_id: record_id.to_owned(), record_type: "movie".to_owned() };
    match RatingServiceClient::new(channel).get_aggregated_rating(request).await {
        Ok(response) => Ok(Some(response.into_inner().rating_value)),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(status),
    }
}

/// Polls the average of `record_id` every `interval` until it is exactly
/// `expected`; returns when that was first seen. Connection failures (an
/// instance still starting) are retried until `deadline`.
pub async fn await_average(
    address: &str,
    record_id: &str,
    expected: f64,
    interval: Duration,
    deadline: Instant,
) -> anyhow::Result<Instant> {
    let mut channel = None;
    loop {
        if Instant::now() >= deadline {
            anyhow::bail!("the average of {record_id} at {address} did not reach {expected} in time");
        }
        if channel.is_none() {
            channel = connect(address, Duration::from_secs(2)).await.ok();
        }
        if let Some(open) = &channel {
            match aggregated_rating(open.clone(), record_id).await {
                Ok(Some(average)) if average == expected => return Ok(Instant::now()),
                Ok(_) => {}
                Err(status) if status.code() == tonic::Code::Unavailable => channel = None,
                Err(status) => anyhow::bail!("GetAggregatedRating({record_id}) at {address}: {status}"),
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Waits until the server at `address` reports SERVING on the standard
/// health service (the rating service does once its replay is done).
pub async fn await_serving(address: &str, deadline: Instant) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    loop {
        if let Ok(channel) = connect(address, Duration::from_secs(2)).await {
            let response = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
            if response.is_ok_and(|response| response.into_inner().status == ServingStatus::Serving as i32) {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "{address} did not report SERVING in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stores `movies` movies: metadata and one rating each (ids `0..movies`),
/// 32 movies at a time.
pub async fn seed(metadata: &str, rating: &str, movies: u32) -> anyhow::Result<()> {
    seed_at_most(metadata, rating, movies, 32).await
}

/// [`seed`] with at most `in_flight` movies stored at a time.
pub async fn seed_at_most(metadata: &str, rating: &str, movies: u32, in_flight: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let metadata = connect_until(metadata, deadline).await?;
    let rating = connect_until(rating, deadline).await?;
    futures::stream::iter(0..movies)
        .map(|id| {
            let (metadata, rating) = (metadata.clone(), rating.clone());
            async move {
                let id = id.to_string();
                put_metadata(metadata, &id).await.with_context(|| format!("PutMetadata {id}"))?;
                let value = (id.len() % 5) as i32 + 1;
                put_rating(rating, &id, "bench-seed", value).await.with_context(|| format!("PutRating {id}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(in_flight.max(1))
        .try_collect::<()>()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpc_frame_is_a_flag_a_length_and_the_message() {
        let message = Rpc::GetMetadata.encoded_request("42");
        assert_eq!(message, [0x0a, 2, b'4', b'2']);
        assert_eq!(grpc_frame(&message), [0, 0, 0, 0, 4, 0x0a, 2, b'4', b'2']);
        assert_eq!(Rpc::GetMovieDetails.encoded_request("42"), message);
    }
}

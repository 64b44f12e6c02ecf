//! Hostile input to every RPC, in the test process: ids that are empty,
//! over the length limit, huge, hold a control character, or are not UTF-8
//! at all (hand-encoded, as no typed client can send them), and every
//! numeric edge of a rating value. Each is refused INVALID_ARGUMENT with a
//! message that names the field and the rule; nothing is INTERNAL.
use contract::{
    api::{
        GetAggregatedRatingRequest, GetMetadataRequest, GetMovieDetailsRequest, Metadata, PutMetadataRequest,
        PutRatingRequest,
    },
    validation::MAX_ID_BYTES,
};
use e2e::app::{spawn_metadata, spawn_movie, spawn_rating};
use prost::Message as _;
use tonic::{Code, transport::Channel};

/// Stands for the id under test in an encoded request: four bytes that the
/// invalid UTF-8 case overwrites in place, so the encoding stays well formed.
const PLACE: &str = "@@@@";
const NOT_UTF8: [u8; 4] = [0xc3, 0x28, 0xa0, 0xff];

/// An id field of the API: the RPC that takes it, and its request with
/// `id` in that field and valid values elsewhere.
struct IdField {
    service: Service,
    path: &'static str,
    /// As errors name it.
    field: &'static str,
    /// As prost names it in a decode error: `Message.field`, innermost first.
    proto_field: &'static str,
    request: fn(&str) -> Vec<u8>,
}

#[derive(Clone, Copy)]
enum Service {
    Metadata,
    Rating,
    Movie,
}

fn put_rating(user: &str, record: &str, record_type: &str) -> Vec<u8> {
    PutRatingRequest {
        user_id: user.into(),
        record_id: record.into(),
        record_type: record_type.into(),
        rating_value: 3,
    }
    .encode_to_vec()
}

fn aggregated(record: &str, record_type: &str) -> Vec<u8> {
    GetAggregatedRatingRequest { record_id: record.into(), record_type: record_type.into() }.encode_to_vec()
}

const ID_FIELDS: [IdField; 8] = [
    IdField {
        service: Service::Metadata,
        path: "/MetadataService/GetMetadata",
        field: "movie_id",
        proto_field: "GetMetadataRequest.movie_id",
        request: |id| GetMetadataRequest { movie_id: id.into() }.encode_to_vec(),
    },
    IdField {
        service: Service::Metadata,
        path: "/MetadataService/PutMetadata",
        field: "metadata.id",
        proto_field: "Metadata.id: PutMetadataRequest.metadata",
        request: |id| {
            let metadata = Metadata { id: id.into(), title: "Heat".into(), ..Default::default() };
            PutMetadataRequest { metadata: Some(metadata) }.encode_to_vec()
        },
    },
    IdField {
        service: Service::Rating,
        path: "/RatingService/GetAggregatedRating",
        field: "record_id",
        proto_field: "GetAggregatedRatingRequest.record_id",
        request: |id| aggregated(id, "movie"),
    },
    IdField {
        service: Service::Rating,
        path: "/RatingService/GetAggregatedRating",
        field: "record_type",
        proto_field: "GetAggregatedRatingRequest.record_type",
        request: |id| aggregated("1", id),
    },
    IdField {
        service: Service::Rating,
        path: "/RatingService/PutRating",
        field: "user_id",
        proto_field: "PutRatingRequest.user_id",
        request: |id| put_rating(id, "1", "movie"),
    },
    IdField {
        service: Service::Rating,
        path: "/RatingService/PutRating",
        field: "record_id",
        proto_field: "PutRatingRequest.record_id",
        request: |id| put_rating("u", id, "movie"),
    },
    IdField {
        service: Service::Rating,
        path: "/RatingService/PutRating",
        field: "record_type",
        proto_field: "PutRatingRequest.record_type",
        request: |id| put_rating("u", "1", id),
    },
    IdField {
        service: Service::Movie,
        path: "/MovieService/GetMovieDetails",
        field: "movie_id",
        proto_field: "GetMovieDetailsRequest.movie_id",
        request: |id| GetMovieDetailsRequest { movie_id: id.into() }.encode_to_vec(),
    },
];

/// `request` with the bytes of [`PLACE`] replaced by [`NOT_UTF8`].
fn not_utf8(mut request: Vec<u8>) -> Vec<u8> {
    let at = request.windows(PLACE.len()).position(|window| window == PLACE.as_bytes()).expect("the placeholder");
    request[at..at + PLACE.len()].copy_from_slice(&NOT_UTF8);
    request
}

#[tokio::test]
async fn hostile_ids_are_invalid_argument_on_every_rpc() {
    let metadata = spawn_metadata(&[]).await;
    let rating = spawn_rating(&[]).await;
    let movie = spawn_movie(&metadata.authority(), &rating.authority(), &["--upstream-timeout", "2s"]).await;
    let channel = |service: Service| {
        let address = match service {
            Service::Metadata => metadata.address,
            Service::Rating => rating.address,
            Service::Movie => movie.address,
        };
        Channel::from_shared(format!("http://{address}")).expect("an endpoint").connect_lazy()
    };
    let over = "9".repeat(MAX_ID_BYTES + 1);
    // Huge, yet well under the 4 MiB message limit: the id rule refuses it.
    let huge = "9".repeat(1024 * 1024);

    for id_field in &ID_FIELDS {
        let IdField { service, path, field, proto_field, request } = *id_field;
        let cases: [(Vec<u8>, String); 6] = [
            (request(""), format!("{field} must not be empty")),
            (request(" \u{3000}"), format!("{field} must not be empty")),
            (request(&over), format!("{field} must be at most 256 bytes long, not 257")),
            (request(&huge), format!("{field} must be at most 256 bytes long, not 1048576")),
            (request("a\nb"), format!("{field} must not contain a control character, found U+000A")),
            (
                not_utf8(request(PLACE)),
                format!(
                    "the request message cannot be decoded: {proto_field}: invalid string value: data is not UTF-8 encoded"
                ),
            ),
        ];
        for (message, expected) in cases {
            let status = match e2e::raw::call(channel(service), path, message).await {
                Ok(_) => panic!("{path} {field}: accepted where {expected:?} was expected"),
                Err(status) => status,
            };
            assert_eq!((status.code(), status.message()), (Code::InvalidArgument, expected.as_str()), "{path}");
        }
    }
}

#[tokio::test]
async fn every_numeric_edge_of_a_rating_value_has_its_answer() {
    let rating = spawn_rating(&[]).await;
    let mut client = rating.client.clone();
    for (value, accepted) in
        [(i32::MIN, false), (-1, false), (0, false), (1, true), (2, true), (5, true), (6, false), (i32::MAX, false)]
    {
        let request = PutRatingRequest {
            user_id: format!("u{value}"),
            record_id: "1".into(),
            record_type: "movie".into(),
            rating_value: value,
        };
        match client.put_rating(request).await {
            Ok(_) => assert!(accepted, "{value} was accepted"),
            Err(status) => {
                assert!(!accepted, "{value} was refused: {status}");
                let expected = format!("rating_value must be between 1 and 5, got {value}");
                assert_eq!((status.code(), status.message()), (Code::InvalidArgument, expected.as_str()));
            }
        }
    }
    let average = client
        .get_aggregated_rating(GetAggregatedRatingRequest { record_id: "1".into(), record_type: "movie".into() })
        .await
        .expect("the accepted values were stored")
        .into_inner()
        .rating_value;
    assert_eq!(average, (1.0 + 2.0 + 5.0) / 3.0);
}

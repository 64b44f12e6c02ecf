//! A request message that does not decode (invalid UTF-8 in a string field,
//! a truncated field, a wrong wire type) is the caller's fault: this layer
//! answers it INVALID_ARGUMENT, where tonic's protobuf codec answers
//! INTERNAL, as if the server had failed. One tower layer for every
//! service's routes.
use tonic::{Code, Status};

use crate::server::call_layer::{Answer, AroundCall, Inner};

/// What `prost::DecodeError` writes first, as tonic's codec passes it on.
const DECODE_ERROR_PREFIX: &str = "failed to decode Protobuf message: ";

/// Around every route as a [`CallLayer`](crate::server::call_layer::CallLayer).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestDecoding;

impl AroundCall for RequestDecoding {
    fn around<S: Inner<B>, B>(&self, inner: &mut S, request: http::Request<B>) -> Answer<S, B> {
        let response = inner.forward(request);
        Box::pin(async move {
            let mut response = response.await?;
            // A request that does not decode is answered before the handler
            // runs, with the status in the headers (a trailers-only response).
            if let Some(status) = invalid_request(response.headers()) {
                tracing::debug!(message = status.message(), "refusing a request message that does not decode");
                if status.add_header(response.headers_mut()).is_err() {
                    tracing::warn!("cannot rewrite the status of an undecodable request");
                }
            }
            Ok(response)
        })
    }
}

/// The INVALID_ARGUMENT status for a response that reports a request
/// message that did not decode, if it is one.
fn invalid_request(headers: &http::HeaderMap) -> Option<Status> {
    let status = Status::from_header_map(headers)?;
    let problem = status.message().strip_prefix(DECODE_ERROR_PREFIX).filter(|_| status.code() == Code::Internal)?;
    Some(Status::invalid_argument(format!("the request message cannot be decoded: {problem}")))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use prost::Message as _;
    use tower::{Layer as _, ServiceExt as _};

    use super::*;

    async fn answer(status: Status) -> http::HeaderMap {
        let service = tower::service_fn(move |_: http::Request<()>| {
            let status = status.clone();
            async move { Ok::<_, Infallible>(status.into_http::<()>()) }
        });
        let response = crate::server::call_layer::CallLayer(RequestDecoding)
            .layer(service)
            .oneshot(http::Request::new(()))
            .await
            .unwrap();
        response.headers().clone()
    }

    #[tokio::test]
    async fn a_request_that_does_not_decode_is_invalid_argument_naming_the_field() {
        // Field 1, a string, holding two bytes that are not UTF-8.
        let problem = contract::api::GetMovieDetailsRequest::decode(&[0x0a, 0x02, 0xc3, 0x28][..]).unwrap_err();
        let status = Status::from_header_map(&answer(Status::internal(problem.to_string())).await).unwrap();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "the request message cannot be decoded: GetMovieDetailsRequest.movie_id: invalid string value: data is not UTF-8 encoded"
        );
    }

    #[tokio::test]
    async fn other_statuses_pass_unchanged() {
        for status in [Status::internal("the store failed"), Status::not_found("failed to decode Protobuf message: x")]
        {
            let answered = Status::from_header_map(&answer(status.clone()).await).unwrap();
            assert_eq!((answered.code(), answered.message()), (status.code(), status.message()));
        }
    }
}

//! What keeps a server standing under overload, as tower layers around its
//! routes: a request message over the size limit is refused before it is
//! read, and past a number of RPCs in flight a new call is shed at once
//! rather than queued. Both answer RESOURCE_EXHAUSTED, as a gRPC status;
//! health checks and reflection are never shed, so that probes still get
//! through under load.
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::Frame;
use tokio::sync::Semaphore;
use tonic::{Status, body::Body};

use super::{
    call_layer::{Answer, AroundCall, Inner},
    metrics,
};

/// Refuses a request whose message is over `limit` bytes as soon as the
/// message's length prefix arrives. Tonic's own limit answers OUT_OF_RANGE;
/// gRPC's status codes ask for RESOURCE_EXHAUSTED.
#[derive(Debug, Clone, Copy)]
pub struct MessageSizeLayer {
    pub limit: usize,
}

impl<S> tower::Layer<S> for MessageSizeLayer {
    type Service = MessageSizeLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageSizeLimit { inner, limit: self.limit }
    }
}

#[derive(Debug, Clone)]
pub struct MessageSizeLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> tower::Service<http::Request<Body>> for MessageSizeLimit<S>
where
    S: tower::Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let limit = self.limit;
        self.inner.call(request.map(|body| Body::new(LimitedBody { inner: body, limit, frames: Frames::default() })))
    }
}

/// A request body that fails with RESOURCE_EXHAUSTED instead of passing on
/// the length prefix of a message over the limit.
struct LimitedBody {
    inner: Body,
    limit: usize,
    frames: Frames,
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(context));
        let data = frame.as_ref().and_then(|frame| frame.as_ref().ok()).and_then(Frame::data_ref);
        if let Some(Err(length)) = data.map(|data| this.frames.read(data, this.limit)) {
            let limit = this.limit;
            return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                "the request message is {length} bytes, over this server's limit of {limit} bytes (--max-message-size)"
            )))));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Where a stream of gRPC messages is, across data chunks: each message is
/// a 5-byte prefix (a compression flag, then its length as a big-endian
/// u32) followed by that many bytes.
#[derive(Debug, Default)]
struct Frames {
    prefix: [u8; 5],
    prefix_read: usize,
    message_left: u64,
}

impl Frames {
    /// Follows `data`; the announced length of the first message over
    /// `limit`, if any.
    fn read(&mut self, mut data: &[u8], limit: usize) -> Result<(), u64> {
        while !data.is_empty() {
            if self.message_left > 0 {
                let skipped = data.len().min(usize::try_from(self.message_left).unwrap_or(usize::MAX));
                data = &data[skipped..];
                self.message_left -= skipped as u64;
                continue;
            }
            let taken = data.len().min(self.prefix.len() - self.prefix_read);
            self.prefix[self.prefix_read..self.prefix_read + taken].copy_from_slice(&data[..taken]);
            self.prefix_read += taken;
            data = &data[taken..];
            if self.prefix_read == self.prefix.len() {
                self.prefix_read = 0;
                let [_, a, b, c, d] = self.prefix;
                let length = u64::from(u32::from_be_bytes([a, b, c, d]));
                if length > limit as u64 {
                    return Err(length);
                }
                self.message_left = length;
            }
        }
        Ok(())
    }
}

/// Serves at most `limit` calls of the service's own API at once; past it,
/// a call is answered RESOURCE_EXHAUSTED at once (and counted), so that a
/// burst cannot pile up work and memory behind it. One per server, around
/// its routes as a [`CallLayer`](crate::server::call_layer::CallLayer): its
/// clones, one per connection, share the count.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    service: Arc<str>,
    limit: usize,
    permits: Arc<Semaphore>,
}

impl ConcurrencyLimit {
    /// A limit of `limit` calls in flight for the service named `service`
    /// (as errors name it).
    pub fn new(service: &str, limit: usize) -> Self {
        Self { service: service.into(), limit, permits: Arc::new(Semaphore::new(limit)) }
    }
}

impl AroundCall for ConcurrencyLimit {
    fn around<S: Inner<B>, B>(&self, inner: &mut S, request: http::Request<B>) -> Answer<S, B> {
        let Some((rpc_service, rpc_method)) = metrics::counted_call(request.uri().path()) else {
            return Box::pin(inner.forward(request));
        };
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                // Held until the response is ready: for a unary call, until
                // the handler has answered.
                let response = inner.forward(request);
                Box::pin(async move {
                    let response = response.await;
                    drop(permit);
                    response
                })
            }
            Err(_) => {
                metrics::record_shed_call(rpc_service.to_owned(), rpc_method.to_owned());
                let Self { service, limit, .. } = self;
                tracing::debug!(%service, limit, rpc_method, "shedding a call: too many in flight");
                let status = Status::resource_exhausted(format!(
                    "the {service} service is serving its limit of {limit} concurrent requests (--max-concurrent-requests); try again later"
                ));
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::BodyExt as _;
    use tokio::sync::oneshot;
    use tower::{Layer as _, Service as _, ServiceExt as _};

    use super::*;

    /// A message with its 5-byte prefix, as gRPC frames it.
    fn message(length: usize) -> Vec<u8> {
        let mut framed = vec![0];
        framed.extend_from_slice(&u32::try_from(length).unwrap().to_be_bytes());
        framed.extend(std::iter::repeat_n(7, length));
        framed
    }

    #[test]
    fn messages_within_the_limit_pass_in_any_chunking() {
        let stream: Vec<u8> = [message(10), message(0), message(100)].concat();
        for chunk in [1, 2, 5, 6, 7, 50, stream.len()] {
            let mut frames = Frames::default();
            for piece in stream.chunks(chunk) {
                assert_eq!(frames.read(piece, 100), Ok(()), "chunks of {chunk}");
            }
        }
    }

    #[test]
    fn a_message_over_the_limit_is_caught_at_its_prefix_in_any_chunking() {
        let stream: Vec<u8> = [message(10), message(101)].concat();
        for chunk in [1, 3, 5, 16, stream.len()] {
            let mut frames = Frames::default();
            let outcome: Result<Vec<()>, u64> = stream.chunks(chunk).map(|piece| frames.read(piece, 100)).collect();
            assert_eq!(outcome, Err(101), "chunks of {chunk}");
        }
    }

    #[tokio::test]
    async fn a_body_with_a_message_over_the_limit_fails_resource_exhausted() {
        let body = Body::new(http_body_util::Full::new(Bytes::from(message(2000))));
        let limited = LimitedBody { inner: body, limit: 1000, frames: Frames::default() };
        let status = limited.collect().await.expect_err("the message is over the limit");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "the request message is 2000 bytes, over this server's limit of 1000 bytes (--max-message-size)"
        );
    }

    type Held = oneshot::Receiver<()>;

    /// A service whose calls answer when the test says so.
    fn held_service(
        calls: tokio::sync::mpsc::UnboundedSender<oneshot::Sender<()>>,
    ) -> impl tower::Service<
        http::Request<()>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future = impl Future<Output = Result<http::Response<Body>, Infallible>> + Send + 'static,
    > + Clone {
        tower::service_fn(move |_: http::Request<()>| {
            let (release, held): (_, Held) = oneshot::channel();
            let _ = calls.send(release);
            async move {
                let _ = held.await;
                Ok::<_, Infallible>(http::Response::new(Body::empty()))
            }
        })
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    fn grpc_status(response: &http::Response<Body>) -> Option<&str> {
        response.headers().get("grpc-status").and_then(|value| value.to_str().ok())
    }

    #[tokio::test]
    async fn past_the_limit_calls_are_shed_but_health_checks_are_not() {
        let (calls, mut arrived) = tokio::sync::mpsc::unbounded_channel();
        let layer = crate::server::call_layer::CallLayer(ConcurrencyLimit::new("rating", 2));
        let mut service = layer.layer(held_service(calls));
        let mut in_flight = Vec::new();
        for _ in 0..2 {
            let call = service.ready().await.unwrap().call(request("/RatingService/GetAggregatedRating"));
            let call = tokio::spawn(call);
            in_flight.push((call, arrived.recv().await.expect("the call reached the service")));
        }

        // Another clone (another connection) shares the limit.
        let mut other_connection = layer.layer(held_service(tokio::sync::mpsc::unbounded_channel().0));
        let shed = other_connection.ready().await.unwrap().call(request("/RatingService/PutRating")).await.unwrap();
        assert_eq!(grpc_status(&shed), Some("8"));
        let message = shed.extensions().get::<Status>().map(|status| status.message().to_owned());
        assert_eq!(
            message.as_deref(),
            Some(
                "the rating service is serving its limit of 2 concurrent requests (--max-concurrent-requests); try again later"
            )
        );

        let health = tokio::spawn(service.ready().await.unwrap().call(request("/grpc.health.v1.Health/Check")));
        arrived.recv().await.expect("the health check reached the service").send(()).unwrap();
        assert_eq!(grpc_status(&health.await.unwrap().unwrap()), None, "health checks are not shed");

        // One call ends: the next one is served.
        let (call, release) = in_flight.remove(0);
        release.send(()).unwrap();
        assert_eq!(grpc_status(&call.await.unwrap().unwrap()), None);
        let next = tokio::spawn(service.ready().await.unwrap().call(request("/RatingService/PutRating")));
        arrived.recv().await.expect("the next call reached the service").send(()).unwrap();
        assert_eq!(grpc_status(&next.await.unwrap().unwrap()), None);
    }
}

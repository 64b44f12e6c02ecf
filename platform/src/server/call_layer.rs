//! The tower plumbing of the layers a server puts around each call
//! (authorization, the concurrency limit, request decoding, the per-call
//! span and metrics): a layer says what it does with one call
//! ([`AroundCall`]), and [`CallLayer`] makes it a `tower::Layer` whose
//! service forwards readiness to the service inside and hands it each call.
use std::task::{Context, Poll};

use tonic::codegen::BoxFuture;

/// What a layer does with one call: answer it at once, or call `inner` and
/// pass its answer on, changed or not.
pub trait AroundCall {
    fn around<S: Inner<B>, B>(&self, inner: &mut S, request: http::Request<B>) -> Answer<S, B>;
}

/// The answer to a call, as a layer passes it on.
pub type Answer<S, B> = BoxFuture<http::Response<<S as Inner<B>>::Body>, <S as Inner<B>>::Error>;

/// The service inside a layer (the routes, or the next layer), as an
/// [`AroundCall`] sees it: it answers with an HTTP response whose body a
/// layer can also make (`Default`, as tonic's statuses need), from a future
/// that may be boxed.
pub trait Inner<B> {
    type Body: Default + Send + 'static;
    type Error: Send + 'static;
    type Future: Future<Output = Result<http::Response<Self::Body>, Self::Error>> + Send + 'static;

    /// Passes the call on to this service.
    fn forward(&mut self, request: http::Request<B>) -> Self::Future;
}

impl<S, B, ResponseBody> Inner<B> for S
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Body = ResponseBody;
    type Error = S::Error;
    type Future = S::Future;

    fn forward(&mut self, request: http::Request<B>) -> Self::Future {
        self.call(request)
    }
}

/// An [`AroundCall`] as a `tower::Layer`; each service it makes (one per
/// connection) holds a clone of it.
#[derive(Debug, Clone, Copy)]
pub struct CallLayer<A>(pub A);

impl<A: Clone, S> tower::Layer<S> for CallLayer<A> {
    type Service = AroundCalls<A, S>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundCalls { around: self.0.clone(), inner }
    }
}

#[derive(Debug, Clone)]
pub struct AroundCalls<A, S> {
    around: A,
    inner: S,
}

impl<A, S, B, ResponseBody> tower::Service<http::Request<B>> for AroundCalls<A, S>
where
    A: AroundCall,
    S: tower::Service<http::Request<B>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.around.around(&mut self.inner, request)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{Layer as _, Service as _, ServiceExt as _};

    use super::*;

    /// Passes every call on, untouched.
    #[derive(Clone)]
    struct Forward;

    impl AroundCall for Forward {
        fn around<S: Inner<B>, B>(&self, inner: &mut S, request: http::Request<B>) -> Answer<S, B> {
            Box::pin(inner.forward(request))
        }
    }

    /// Ready only once `ready` is set; answers with the request's path.
    struct Gate {
        ready: bool,
    }

    impl tower::Service<http::Request<()>> for Gate {
        type Response = http::Response<String>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            if self.ready { Poll::Ready(Ok(())) } else { Poll::Pending }
        }

        fn call(&mut self, request: http::Request<()>) -> Self::Future {
            std::future::ready(Ok(http::Response::new(request.uri().path().to_owned())))
        }
    }

    #[tokio::test]
    async fn the_layer_is_ready_when_the_service_inside_is_and_hands_it_the_call() {
        let mut service = CallLayer(Forward).layer(Gate { ready: false });
        let waker = std::task::Waker::noop();
        assert!(service.poll_ready(&mut Context::from_waker(waker)).is_pending());
        service.inner.ready = true;
        let request = http::Request::builder().uri("/RatingService/PutRating").body(()).unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.body(), "/RatingService/PutRating");
    }
}

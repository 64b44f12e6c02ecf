//! What keeps a server standing under overload, as tower layers around its
//! routes: a request message over the size limit is refused before it is
//! read, with RESOURCE_EXHAUSTED.
use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::Frame;
use tonic::{Status, body::Body};

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

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

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
}

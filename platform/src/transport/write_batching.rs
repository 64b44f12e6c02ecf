//! Fewer, larger writes on every gRPC connection, server and client side.
//!
//! An HTTP/2 connection task writes whatever frames are queued each time it
//! is polled, and it is polled as soon as one stream queues a frame: under
//! load that is one `writev` per response, or per request on a client
//! connection. On loopback and on a LAN a write costs more than the frames
//! it carries, receiver's wake-up included.
//!
//! [`Batched`] wraps a connection's socket and holds back the first write of
//! each flush: it wakes its own task and answers `Pending`, so the task goes
//! to the back of the runtime's queue. The tasks already queued (other
//! calls' handlers, the connection's other streams) queue their frames
//! meanwhile, and the next poll writes them all in one `writev`. A
//! connection alone on the runtime loses one trip through the queue per
//! flush, microseconds; nothing is held back past that.
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An I/O stream whose writes are held back for one pass of the runtime's
/// queue (see the module's documentation). Reads go straight through.
#[derive(Debug)]
pub struct Batched<T> {
    io: T,
    /// Set when the current flush has already let other tasks run once;
    /// cleared by the flush's end.
    yielded: bool,
}

impl<T> Batched<T> {
    pub fn new(io: T) -> Self {
        Self { io, yielded: false }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// `Pending` (after waking the task) the first time a flush writes,
    /// `Ready` from then on until the flush ends.
    fn let_others_run_first(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Batched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Batched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        std::task::ready!(self.let_others_run_first(cx));
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.let_others_run_first(cx));
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.io).poll_flush(cx);
        if flushed.is_ready() {
            self.yielded = false;
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A server sees the peer of a batched connection as that of its socket.
impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Batched<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::Wake,
    };

    use super::*;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_first_write_of_each_flush_waits_for_one_pass_of_the_queue() {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = Batched::new(Vec::<u8>::new());
        let mut io = Pin::new(&mut io);

        // Held back once, with the task woken to come back after the others.
        assert!(io.as_mut().poll_write(&mut cx, b"frame 1").is_pending());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(io.get_ref().is_empty());

        // Then everything queued meanwhile goes through at once.
        assert!(matches!(io.as_mut().poll_write(&mut cx, b"frame 1"), Poll::Ready(Ok(7))));
        assert!(matches!(io.as_mut().poll_write(&mut cx, b", frame 2"), Poll::Ready(Ok(9))));
        assert!(io.as_mut().poll_flush(&mut cx).is_ready());
        assert_eq!(io.get_ref().as_slice(), b"frame 1, frame 2");

        // The next flush's first write is held back again, vectored or not.
        let slices = [io::IoSlice::new(b"frame 3")];
        assert!(io.as_mut().poll_write_vectored(&mut cx, &slices).is_pending());
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert!(matches!(io.as_mut().poll_write_vectored(&mut cx, &slices), Poll::Ready(Ok(7))));
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    }
}

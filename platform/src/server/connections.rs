//! The gRPC servers' connections, accepted and served here rather than in
//! tonic's own loop, so that each is bounded: a handshake timeout (TLS, then
//! the HTTP/2 preface and the client's first SETTINGS), HTTP/2 keep-alive
//! pings, an idle timeout that closes a connection with no open stream
//! (GOAWAY), and a cap on the connections open at once. Without them a
//! socket that never speaks is held forever, and a few thousand of them
//! leave an instance unable to accept anyone. A maximum age, when set, sends
//! a connection GOAWAY however busy it is, so that long-lived clients
//! reconnect and spread over the instances added since they connected.
//!
//! Each connection is served by hyper's HTTP/2 server, as tonic does, with
//! the same settings; what tonic added per connection and this suite uses
//! (errors answered as statuses, the caller's `grpc-timeout` enforced) is
//! kept in [`PerStream`].
use std::{
    future::Future,
    io,
    net::SocketAddr,
    num::NonZeroUsize,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;
use tonic::codegen::StdError;

use telemetry::log_throttle::Throttle;

use crate::transport::write_batching::Batched;

/// Connections refused because `--max-connections` were open.
pub const SERVER_CONNECTIONS_REFUSED: &str = "rpc_server_connections_refused_total";
/// Connections open at the moment.
pub const SERVER_CONNECTIONS_OPEN: &str = "rpc_server_connections_open";
/// Connections this server closed because of one of its limits, by `reason`.
pub const SERVER_CONNECTIONS_CLOSED: &str = "rpc_server_connections_closed_total";

/// The service a server runs on every connection (its layers around tonic's
/// routes), as hyper can serve it.
pub trait ConnectionService<B>:
    tower::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<B>,
        Error: Into<StdError> + Send,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, B> ConnectionService<B> for S where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<B>,
            Error: Into<StdError> + Send,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// The body of a [`ConnectionService`]'s responses, as hyper can send it.
pub trait ResponseBody:
    http_body::Body<Data = Bytes, Error: Into<StdError>> + Default + Send + Unpin + 'static
{
}

impl<B> ResponseBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<StdError>> + Default + Send + Unpin + 'static
{
}

/// The limits every connection is served under.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Time for the TLS handshake (if any), the HTTP/2 preface and the
    /// client's first SETTINGS frame, from the accept on.
    pub handshake_timeout: Duration,
    /// A connection that received nothing for this long is sent a PING.
    pub keepalive_interval: Duration,
    /// A PING unanswered for this long closes the connection.
    pub keepalive_timeout: Duration,
    /// A connection with no open stream for this long is closed (GOAWAY).
    pub idle_timeout: Duration,
    /// Connections open at once; past it, a new one is closed at once.
    pub max_connections: NonZeroUsize,
    /// A connection this old (give or take a tenth, at random) is sent
    /// GOAWAY; none: a connection lives until its client closes it.
    pub max_age: Option<Duration>,
    /// How long the calls open on a connection sent GOAWAY for its age may
    /// take to finish before it is closed with them.
    pub max_age_grace: Duration,
}

/// The HTTP/2 settings of every connection besides the limits: those tonic's
/// builder was given before this loop replaced it.
#[derive(Debug, Clone, Copy)]
pub struct Http2Settings {
    pub initial_connection_window: u32,
    pub max_concurrent_streams: u32,
    pub max_pending_accept_reset_streams: usize,
}

/// Why this server closed a connection, as the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    HandshakeTimeout,
    Idle,
    KeepAlive,
    MaxAge,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Self::HandshakeTimeout => "handshake_timeout",
            Self::Idle => "idle",
            Self::KeepAlive => "keepalive",
            Self::MaxAge => "max_age",
        }
    }

    fn record(self) {
        metrics::counter!(SERVER_CONNECTIONS_CLOSED, "reason" => self.label()).increment(1);
    }
}

/// What the accept loop and every connection task share.
struct Shared<S> {
    service: S,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnectionLimits,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// Cancelled when the server stops accepting: open connections are sent
    /// GOAWAY and end once their streams did; those still in their
    /// handshake are dropped.
    stop: CancellationToken,
    /// Cancelled when the serving future is dropped (the drain ran out of
    /// time): every connection is dropped at once.
    abort: CancellationToken,
}

/// Accepts connections on `listener` and serves `service` on each, within
/// `limits`, until `stop` is cancelled; then sends every connection GOAWAY
/// and completes once all of them closed. Dropping the future drops every
/// connection.
pub async fn serve<S, B>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    service: S,
    limits: ConnectionLimits,
    http2: Http2Settings,
    stop: CancellationToken,
) where
    S: ConnectionService<B>,
    B: ResponseBody,
{
    let abort = CancellationToken::new();
    let _abort_on_drop = abort.clone().drop_guard();
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .initial_connection_window_size(http2.initial_connection_window)
        .max_concurrent_streams(http2.max_concurrent_streams)
        .max_pending_accept_reset_streams(http2.max_pending_accept_reset_streams)
        // tonic's builder passed no limit here; keeps what it served with.
        .max_local_error_reset_streams(None)
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections.get()));
    let shared = Arc::new(Shared { service, tls, limits, http2: builder, stop: stop.clone(), abort });
    // Each connection task holds a sender; `recv` ends once all are gone.
    let (connection_ended, mut all_ended) = mpsc::channel::<()>(1);
    let refusals = Throttle::new(telemetry::log_throttle::REPORT_INTERVAL);
    let accept_errors = Throttle::new(telemetry::log_throttle::REPORT_INTERVAL);

    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if let Some(held_back) = accept_errors.admit() {
                    tracing::warn!(%error, held_back, "cannot accept a connection");
                }
                // Out of descriptors (EMFILE) or memory, accept fails at once
                // again: a pause keeps the loop from spinning meanwhile.
                if !per_connection_error(&error) {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    }
                }
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            metrics::counter!(SERVER_CONNECTIONS_REFUSED).increment(1);
            if let Some(held_back) = refusals.admit() {
                tracing::warn!(%peer, max_connections = shared.limits.max_connections.get(), held_back,
                    "connection refused: as many connections are open as --max-connections allows");
            }
            continue;
        };
        turn_nagle_off(&stream);
        tokio::spawn(serve_connection(shared.clone(), stream, peer, slot, connection_ended.clone()));
    }
    // Stop listening before the drain, so that new clients are refused
    // instead of waiting on a port nobody accepts on.
    drop(listener);
    drop(connection_ended);
    let _ = all_ended.recv().await;
}

/// gRPC writes small frames; with Nagle's algorithm on, a response can sit
/// waiting for the peer's delayed ACK (40 ms on Linux), which caps a
/// connection at a few dozen calls a second under concurrency.
fn turn_nagle_off(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::warn!(%error, "cannot turn Nagle's algorithm off on an accepted connection");
    }
}

/// How long the accept loop pauses after an error that is not one
/// connection's own (running out of descriptors), before it accepts again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// An accept error that concerns the one connection only: the next accept
/// may succeed at once.
fn per_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

/// One connection, from its accept to its close: the handshake within the
/// handshake timeout, then HTTP/2 until the peer leaves, a limit closes it,
/// or the server stops.
async fn serve_connection<S, B>(
    shared: Arc<Shared<S>>,
    stream: TcpStream,
    peer: SocketAddr,
    _slot: OwnedSemaphorePermit,
    _ended: mpsc::Sender<()>,
) where
    S: ConnectionService<B>,
    B: ResponseBody,
{
    metrics::gauge!(SERVER_CONNECTIONS_OPEN).increment(1);
    let deadline = Instant::now() + shared.limits.handshake_timeout;
    let io = Batched::new(stream);
    match &shared.tls {
        Some(acceptor) => {
            let handshake = tokio::time::timeout_at(deadline, acceptor.accept(io));
            let tls = tokio::select! {
                tls = handshake => tls,
                // A connection still in its handshake is simply dropped.
                () = shared.stop.cancelled() => return closed(),
                () = shared.abort.cancelled() => return closed(),
            };
            match tls {
                Ok(Ok(io)) => serve_http2(&shared, io, deadline, peer).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake not done within the handshake timeout");
                    Closed::HandshakeTimeout.record();
                }
            }
        }
        None => serve_http2(&shared, io, deadline, peer).await,
    }
    closed();
}

fn closed() {
    metrics::gauge!(SERVER_CONNECTIONS_OPEN).decrement(1);
}

async fn serve_http2<S, B, T>(shared: &Shared<S>, io: T, deadline: Instant, peer: SocketAddr)
where
    S: ConnectionService<B>,
    B: ResponseBody,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = AwaitingPreface::new(io, deadline);
    let handshake = io.progress();
    let activity = Arc::new(Activity::new());
    let service = PerStream { inner: shared.service.clone(), activity: activity.clone() };
    let connection =
        shared.http2.serve_connection(TokioIo::new(io), hyper_util::service::TowerToHyperService::new(service));
    tokio::pin!(connection);
    let mut closing = false;
    let too_old_at = shared.limits.max_age.and_then(|age| Instant::now().checked_add(jittered(age)));
    // After a GOAWAY for being idle, h2 closes once the client answered the
    // PING sent with it; a client that never does is dropped after the
    // keep-alive timeout (it has no stream open to lose). After one for its
    // age, the calls still open are cut after the grace.
    let mut dropped_at = None;
    let result = loop {
        tokio::select! {
            result = connection.as_mut() => break result,
            () = activity.idle_for(shared.limits.idle_timeout), if !closing => {
                tracing::debug!(%peer, timeout = ?shared.limits.idle_timeout, "closing an idle connection");
                Closed::Idle.record();
                connection.as_mut().graceful_shutdown();
                closing = true;
                dropped_at = Some(Instant::now() + shared.limits.keepalive_timeout);
            }
            () = sleep_until_some(too_old_at), if !closing => {
                tracing::debug!(%peer, max_age = ?shared.limits.max_age, "closing a connection at its maximum age");
                Closed::MaxAge.record();
                connection.as_mut().graceful_shutdown();
                closing = true;
                dropped_at = Instant::now().checked_add(shared.limits.max_age_grace);
            }
            () = sleep_until_some(dropped_at) => {
                tracing::debug!(%peer, "closing a connection whose client did not leave after GOAWAY");
                return;
            }
            () = shared.stop.cancelled(), if !closing => {
                // hyper would wait for the end of a handshake before its
                // GOAWAY; a connection still in it is dropped instead.
                if !handshake.opened.load(Ordering::Acquire) {
                    return;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = shared.abort.cancelled() => return,
        }
    };
    let Err(error) = result else { return };
    if handshake.timed_out.load(Ordering::Acquire) {
        tracing::debug!(%peer, "no HTTP/2 preface and SETTINGS within the handshake timeout");
        Closed::HandshakeTimeout.record();
    } else if error.is_timeout() {
        tracing::debug!(%peer, "the peer did not answer a keep-alive PING in time");
        Closed::KeepAlive.record();
    } else {
        tracing::debug!(%peer, %error, "connection failed");
    }
}

/// `age`, give or take a tenth at random (as gRPC's MAX_CONNECTION_AGE), so
/// that the connections of clients that connected together (a fleet
/// started at once, or reconnected after a restart) do not all go at once.
fn jittered(age: Duration) -> Duration {
    Duration::try_from_secs_f64(age.as_secs_f64() * rand::random_range(0.9..=1.1)).unwrap_or(age)
}

/// Sleeps until `deadline`; with none, forever.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The streams open on one connection, and since when none is.
#[derive(Debug)]
struct Activity {
    open: AtomicUsize,
    /// When the last stream ended (or the connection began), in nanoseconds
    /// since `epoch`.
    last_end: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn new() -> Self {
        Self { open: AtomicUsize::new(0), last_end: AtomicU64::new(0), epoch: Instant::now() }
    }

    fn stream_opened(self: &Arc<Self>) -> OpenStream {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenStream(self.clone())
    }

    /// Completes once no stream has been open for `timeout`. The streams
    /// only count, never wake it: it looks again when the time it waited
    /// for comes.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let now = Instant::now();
            let next_look = if self.open.load(Ordering::Acquire) == 0 {
                let last_end = self.epoch + Duration::from_nanos(self.last_end.load(Ordering::Acquire));
                let idle_until = last_end + timeout;
                if now >= idle_until {
                    return;
                }
                idle_until
            } else {
                now + timeout
            };
            tokio::time::sleep_until(next_look).await;
        }
    }
}

/// One open stream of a connection, from its request until its response
/// body is dropped (sent, or reset).
#[derive(Debug)]
struct OpenStream(Arc<Activity>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        let ended = u64::try_from(self.0.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.last_end.fetch_max(ended, Ordering::Release);
        self.0.open.fetch_sub(1, Ordering::Release);
    }
}

/// The service of one connection: counts its streams for the idle timeout,
/// ends a call when the caller's `grpc-timeout` passes (CANCELLED, as
/// tonic's server did), and answers a service error with its status.
#[derive(Clone)]
struct PerStream<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> tower::Service<http::Request<Incoming>> for PerStream<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<StdError> + Send,
    B: Default + Send + 'static,
{
    type Response = http::Response<Counted<B>>;
    type Error = StdError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Incoming>) -> Self::Future {
        let stream = self.activity.stream_opened();
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(crate::transport::deadline::parse_grpc_timeout);
        let answer = self.inner.call(request.map(tonic::body::Body::new));
        Box::pin(async move {
            let answer = match timeout {
                Some(timeout) => match tokio::time::timeout(timeout, answer).await {
                    Ok(answer) => answer,
                    Err(_) => Ok(tonic::Status::cancelled("Timeout expired").into_http()),
                },
                None => answer.await,
            };
            let response = match answer {
                Ok(response) => response,
                Err(error) => tonic::Status::try_from_error(error.into())?.into_http(),
            };
            Ok(response.map(|body| Counted { body, _stream: stream }))
        })
    }
}

/// A response body that keeps its stream counted as open until it is
/// dropped.
#[derive(Debug)]
struct Counted<B> {
    body: B,
    _stream: OpenStream,
}

impl<B: http_body::Body + Unpin> http_body::Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The first bytes a client sends on an HTTP/2 connection: the 24-byte
/// preface, then a SETTINGS frame (a 9-byte header, then its payload).
#[derive(Debug, Default)]
struct Opening {
    /// Bytes seen so far, up to the end of the first frame.
    seen: usize,
    /// The first frame's header, as far as it has come.
    header: [u8; FRAME_HEADER],
}

const PREFACE: usize = 24;
const FRAME_HEADER: usize = 9;

impl Opening {
    /// Takes the next bytes read; `true` once the preface and the whole
    /// first frame have come. Their content is h2's to check: a wrong
    /// preface or a first frame that is not SETTINGS closes the connection
    /// there.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &byte in bytes {
            if self.complete() {
                return true;
            }
            if let Some(at) = self.seen.checked_sub(PREFACE).filter(|at| *at < FRAME_HEADER) {
                self.header[at] = byte;
            }
            self.seen += 1;
        }
        self.complete()
    }

    fn complete(&self) -> bool {
        let Some(header_end) = self.seen.checked_sub(PREFACE + FRAME_HEADER) else {
            return false;
        };
        let payload = u32::from_be_bytes([0, self.header[0], self.header[1], self.header[2]]) as usize;
        header_end >= payload
    }
}

/// A connection's stream, whose reads fail once the deadline passes before
/// the client's [`Opening`] came; from then on, it stays out of the way.
struct AwaitingPreface<T> {
    io: T,
    /// Until the opening came: its progress and the deadline.
    awaiting: Option<(Opening, Pin<Box<Sleep>>)>,
    progress: Arc<HandshakeProgress>,
}

/// How the handshake of an [`AwaitingPreface`] went, for its connection's
/// task.
#[derive(Debug, Default)]
struct HandshakeProgress {
    /// Set once the client's opening came.
    opened: AtomicBool,
    /// Set once a read failed because the deadline passed first.
    timed_out: AtomicBool,
}

impl<T> AwaitingPreface<T> {
    fn new(io: T, deadline: Instant) -> Self {
        let awaiting = Some((Opening::default(), Box::pin(tokio::time::sleep_until(deadline))));
        Self { io, awaiting, progress: Arc::default() }
    }

    fn progress(&self) -> Arc<HandshakeProgress> {
        self.progress.clone()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AwaitingPreface<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some((opening, deadline)) = &mut this.awaiting else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        if deadline.as_mut().poll(cx).is_ready() {
            this.progress.timed_out.store(true, Ordering::Release);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface and SETTINGS within the handshake timeout",
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if opening.feed(&buf.filled()[before..]) {
            this.awaiting = None;
            this.progress.opened.store(true, Ordering::Release);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AwaitingPreface<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const CLIENT_PREFACE: &[u8; PREFACE] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    /// `actual` is `expected`, give or take the timer's millisecond ticks.
    fn assert_about(actual: Duration, expected: Duration) {
        let ticks = Duration::from_millis(5);
        assert!(actual >= expected && actual <= expected + ticks, "{actual:?}, expected {expected:?}");
    }

    /// The preface and a SETTINGS frame with one setting.
    fn opening() -> Vec<u8> {
        let mut bytes = CLIENT_PREFACE.to_vec();
        bytes.extend([0, 0, 6, 0x4, 0, 0, 0, 0, 0]);
        bytes.extend([0, 3, 0, 0, 0, 100]);
        bytes
    }

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        turn_nagle_off(&accepted);
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY is set on the accepted connection");
    }

    #[test]
    fn the_opening_is_complete_with_the_last_byte_of_the_first_frame() {
        let bytes = opening();
        let mut opening = Opening::default();
        for (at, byte) in bytes.iter().enumerate() {
            assert!(!opening.complete(), "complete after {at} of {} bytes", bytes.len());
            assert_eq!(opening.feed(&[*byte]), at == bytes.len() - 1, "after byte {at}");
        }

        let mut in_one_read = Opening::default();
        assert!(!in_one_read.feed(&bytes[..bytes.len() - 1]));
        let mut with_more = bytes.clone();
        with_more.extend([0, 0, 0, 0x4, 0x1, 0, 0, 0, 0]);
        assert!(Opening::default().feed(&with_more));
    }

    #[test]
    fn an_empty_settings_frame_completes_the_opening_with_its_header() {
        let mut bytes = CLIENT_PREFACE.to_vec();
        bytes.extend([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        let mut opening = Opening::default();
        assert!(!opening.feed(&bytes[..bytes.len() - 1]));
        assert!(opening.feed(&bytes[bytes.len() - 1..]));
    }

    #[tokio::test(start_paused = true)]
    async fn reads_fail_once_the_deadline_passes_before_the_opening() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = AwaitingPreface::new(server, Instant::now() + Duration::from_secs(10));
        let progress = server.progress();
        // Part of the opening, then silence.
        client.write_all(&opening()[..30]).await.unwrap();
        let mut buffer = [0; 64];
        assert_eq!(server.read(&mut buffer).await.unwrap(), 30);

        let started = Instant::now();
        let error = server.read(&mut buffer).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_about(started.elapsed(), Duration::from_secs(10));
        assert!(progress.timed_out.load(Ordering::Acquire));
        assert!(!progress.opened.load(Ordering::Acquire));
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_opening_the_deadline_no_longer_matters() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = AwaitingPreface::new(server, Instant::now() + Duration::from_secs(10));
        client.write_all(&opening()).await.unwrap();
        let mut buffer = vec![0; opening().len()];
        server.read_exact(&mut buffer).await.unwrap();

        tokio::time::sleep(Duration::from_secs(60)).await;
        client.write_all(b"later").await.unwrap();
        let mut later = [0; 5];
        server.read_exact(&mut later).await.expect("reads go on past the deadline");
        assert_eq!(&later, b"later");
        assert!(server.progress().opened.load(Ordering::Acquire));
        assert!(!server.progress().timed_out.load(Ordering::Acquire));
    }

    #[test]
    fn maximum_ages_vary_by_a_tenth_either_way() {
        let age = Duration::from_secs(100);
        let ages: Vec<Duration> = (0..1000).map(|_| jittered(age)).collect();
        assert!(ages.iter().all(|jittered| *jittered >= age * 9 / 10 && *jittered <= age * 11 / 10), "{ages:?}");
        // Spread over the range: a thousand draws all within a twentieth of
        // the age of each other has odds below 2^-1000.
        let (least, most) = (ages.iter().min().unwrap(), ages.iter().max().unwrap());
        assert!(*most - *least > age / 20, "{least:?}..{most:?}");
        assert!(jittered(Duration::MAX) > Duration::MAX / 2, "an age too long for a tenth more does not overflow");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_once_no_stream_was_open_for_the_timeout() {
        let timeout = Duration::from_secs(300);
        let activity = Arc::new(Activity::new());
        let started = Instant::now();
        let stream = activity.stream_opened();
        // A stream open for longer than the timeout: not idle meanwhile.
        tokio::time::sleep(2 * timeout).await;
        drop(stream);
        let ended = Instant::now();
        activity.idle_for(timeout).await;
        assert_about(Instant::now() - ended, timeout);
        assert!(Instant::now() - started >= 3 * timeout);

        // Streams that come and go keep pushing it back.
        let activity = Arc::new(Activity::new());
        let idle = activity.clone();
        let watching = tokio::spawn(async move {
            idle.idle_for(timeout).await;
            Instant::now()
        });
        let begun = Instant::now();
        for _ in 0..3 {
            tokio::time::sleep(timeout / 2).await;
            drop(activity.stream_opened());
        }
        let last = Instant::now();
        assert_about(watching.await.unwrap() - last, timeout);
        assert_about(last - begun, 3 * timeout / 2);
    }
}

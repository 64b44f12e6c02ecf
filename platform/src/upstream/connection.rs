//! The gRPC channel to one upstream instance: one HTTP/2 connection, opened
//! at the first call and again after it closes, driven by `h2` directly.
//!
//! tonic's `Channel` would put three task hops in front of each call: its
//! `Buffer` (a queue to a worker task that owns the connection), hyper's
//! dispatch queue to the connection task, and a task hyper spawns per call
//! to await the response. Here a call's own task opens the stream on the
//! shared connection (`h2`'s `SendRequest` is a cloneable handle) and is
//! woken by the connection task when its answer arrives: per call, one wake
//! each way. tonic's generated clients run on top unchanged: [`Connection`]
//! is the `tower::Service` they call through.
use std::{
    fmt,
    pin::Pin,
    sync::{Arc, Mutex, Weak},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, rustls::pki_types::ServerName};

use telemetry::Chain;

use crate::{security::ClientTls, transport::write_batching::Batched};

/// How often an idle connection is checked with a PING, and how long the
/// answer may take before the connection is given up (tonic's defaults).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Flow-control windows, hyper's defaults for a client: room for a few
/// large answers in flight before the window must be updated.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// Calls opened at once on a new connection until the server's SETTINGS
/// say how many it takes: the least HTTP/2 asks a server to allow (RFC
/// 9113, 6.5.2), hyper's choice too. `h2`'s own default is no limit, and a
/// server refuses the calls past its limit.
const INITIAL_MAX_CALLS: usize = 100;

/// Where and how to connect.
struct Target {
    /// `http` or `https`, and `host:port`: the URI every request carries.
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The TLS handshake, and the name the server's certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
}

struct Shared {
    target: Target,
    /// The open connection's handle, with the number that tells it from
    /// the connections before it; none before the first call and after the
    /// connection closed.
    open: Mutex<Option<(u64, h2::client::SendRequest<Bytes>)>>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<u64>,
}

/// The channel to one instance. Cheap to clone; the connection closes when
/// the last clone is dropped.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Connection({}://{})", self.shared.target.scheme, self.shared.target.authority)
    }
}

/// Why a connection could not be opened, or why a call could not use it.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("{0} is not a usable address")]
    InvalidAddress(String),
    #[error("cannot connect to {authority}")]
    Connect {
        authority: http::uri::Authority,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {authority} within {timeout:?}")]
    ConnectTimeout { authority: http::uri::Authority, timeout: Duration },
    #[error("the HTTP/2 handshake with {authority} failed")]
    Handshake {
        authority: http::uri::Authority,
        #[source]
        source: h2::Error,
    },
}

impl Connection {
    /// A channel to `authority` (`host:port`), with TLS when `tls` is set;
    /// nothing is opened until the first call.
    pub fn new(authority: &str, tls: Option<&ClientTls>, connect_timeout: Duration) -> Result<Self, ConnectionError> {
        let invalid = || ConnectionError::InvalidAddress(authority.to_owned());
        let parsed: http::uri::Authority = authority.parse().map_err(|_| invalid())?;
        parsed.port_u16().ok_or_else(invalid)?;
        let tls = match tls {
            Some(tls) => {
                let name = tls.server_name().unwrap_or_else(|| unbracketed(parsed.host()));
                let name = ServerName::try_from(name.to_owned()).map_err(|_| invalid())?;
                Some((TlsConnector::from(tls.rustls()), name))
            }
            None => None,
        };
        let scheme = if tls.is_some() { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP };
        Ok(Self {
            shared: Arc::new(Shared {
                target: Target { scheme, authority: parsed, tls, connect_timeout },
                open: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(0),
            }),
        })
    }

    /// Makes a call: sends `request` (its body is a whole unary message)
    /// and returns the response as it starts, its body still to be read.
    /// Errors are the statuses a caller should see: UNAVAILABLE when no
    /// connection could be opened or it broke before the answer began.
    ///
    /// A server going away (GOAWAY: it stops, or the connection reached its
    /// maximum age) takes no new call on the connection, and says which of
    /// the calls already sent it did not take up; such a call is made again,
    /// once, on a new connection, which is safe even for a write since the
    /// server never saw it.
    pub async fn call(
        &self,
        request: http::Request<tonic::body::Body>,
    ) -> Result<http::Response<ResponseBody>, tonic::Status> {
        let (mut parts, body) = request.into_parts();
        let message = body.collect().await?.to_bytes();
        let mut uri = http::uri::Parts::from(std::mem::take(&mut parts.uri));
        uri.scheme = Some(self.shared.target.scheme.clone());
        uri.authority = Some(self.shared.target.authority.clone());
        parts.uri = http::Uri::from_parts(uri).map_err(|error| tonic::Status::internal(error.to_string()))?;
        let request = http::Request::from_parts(parts, ());

        let unavailable = |error: ConnectionError| tonic::Status::unavailable(Chain(&error).to_string());
        let (generation, sender) = self.sender().await.map_err(unavailable)?;
        let response = match send(sender, request.clone(), message.clone()).await {
            Err(error) if error.is_go_away() && error.is_remote() => {
                tracing::debug!(authority = %self.shared.target.authority, %error,
                    "the server is going away; making the call on a new connection");
                self.forget(generation);
                let (_, sender) = self.sender().await.map_err(unavailable)?;
                send(sender, request, message).await
            }
            sent => sent,
        };
        let response = response.map_err(|error| self.failed(error))?;
        Ok(response.map(|body| ResponseBody { body, data_done: false }))
    }

    /// The status of a call the connection failed: UNAVAILABLE when the
    /// connection is gone or the instance refused the stream, as gRPC maps
    /// HTTP/2 errors otherwise.
    fn failed(&self, error: h2::Error) -> tonic::Status {
        let at = &self.shared.target.authority;
        if error.is_io() || error.is_go_away() || error.reason() == Some(h2::Reason::REFUSED_STREAM) {
            return tonic::Status::unavailable(format!("the connection to {at} failed: {error}"));
        }
        tonic::Status::from_error(Box::new(error))
    }

    /// The open connection's handle and number, opening one when there is
    /// none.
    async fn sender(&self) -> Result<(u64, h2::client::SendRequest<Bytes>), ConnectionError> {
        if let Some(open) = self.open() {
            return Ok(open);
        }
        let mut generation = self.shared.connecting.lock().await;
        // Whoever held the lock may have opened it meanwhile.
        if let Some(open) = self.open() {
            return Ok(open);
        }
        let target = &self.shared.target;
        let (sender, connection) =
            tokio::time::timeout(target.connect_timeout, connect(target)).await.map_err(|_| {
                ConnectionError::ConnectTimeout { authority: target.authority.clone(), timeout: target.connect_timeout }
            })??;
        *generation += 1;
        *self.shared.open.lock().expect("connection slot") = Some((*generation, sender.clone()));
        tokio::spawn(drive(connection, *generation, Arc::downgrade(&self.shared)));
        Ok((*generation, sender))
    }

    fn open(&self) -> Option<(u64, h2::client::SendRequest<Bytes>)> {
        self.shared.open.lock().expect("connection slot").clone()
    }

    /// Takes connection `generation` out of the slot, if it is still there,
    /// so that the next call opens a new one; it goes on serving the calls
    /// it has until they end.
    fn forget(&self, generation: u64) {
        let mut open = self.shared.open.lock().expect("connection slot");
        if open.as_ref().is_some_and(|(current, _)| *current == generation) {
            *open = None;
        }
    }
}

/// Sends one call on a connection, waiting for room for its stream, and
/// waits for its response to start.
async fn send(
    sender: h2::client::SendRequest<Bytes>,
    request: http::Request<()>,
    message: Bytes,
) -> Result<http::Response<h2::RecvStream>, h2::Error> {
    let mut sender = sender.ready().await?;
    let end_of_stream = message.is_empty();
    let (response, mut stream) = sender.send_request(request, end_of_stream)?;
    if !end_of_stream {
        stream.send_data(message, true)?;
    }
    response.await
}

type Io = Pin<Box<dyn AsyncReadWrite>>;
trait AsyncReadWrite: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> AsyncReadWrite for T {}

async fn connect(
    target: &Target,
) -> Result<(h2::client::SendRequest<Bytes>, h2::client::Connection<Io, Bytes>), ConnectionError> {
    let authority = &target.authority;
    let connect_error = |source| ConnectionError::Connect { authority: authority.clone(), source };
    let port = authority.port_u16().expect("checked when the channel was made");
    let stream = TcpStream::connect((unbracketed(authority.host()), port)).await.map_err(connect_error)?;
    stream.set_nodelay(true).map_err(connect_error)?;
    let stream = Batched::new(stream);
    let io: Io = match &target.tls {
        Some((tls, name)) => Box::pin(tls.connect(name.clone(), stream).await.map_err(connect_error)?),
        None => Box::pin(stream),
    };
    h2::client::Builder::new()
        .initial_max_send_streams(INITIAL_MAX_CALLS)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake(io)
        .await
        .map_err(|source| ConnectionError::Handshake { authority: authority.clone(), source })
}

/// Runs the connection (its reads, writes and PINGs) until it closes, the
/// peer stops answering PINGs, or the channel is dropped; then clears the
/// channel's slot, so that the next call opens a new connection.
async fn drive(mut connection: h2::client::Connection<Io, Bytes>, generation: u64, shared: Weak<Shared>) {
    let mut ping_pong = connection.ping_pong().expect("taken once, here");
    let keepalive = async {
        loop {
            tokio::time::sleep(KEEPALIVE_INTERVAL).await;
            match tokio::time::timeout(KEEPALIVE_TIMEOUT, ping_pong.ping(h2::Ping::opaque())).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return format!("PING failed: {error}"),
                Err(_) => return format!("no answer to a PING within {KEEPALIVE_TIMEOUT:?}"),
            }
        }
    };
    let authority = shared.upgrade().map(|shared| shared.target.authority.to_string()).unwrap_or_default();
    tokio::select! {
        closed = &mut connection => match closed {
            Ok(()) => tracing::debug!(%authority, "connection closed"),
            Err(error) => tracing::debug!(%authority, %error, "connection failed"),
        },
        reason = keepalive => tracing::warn!(%authority, %reason, "closing an unresponsive connection"),
    }
    if let Some(shared) = shared.upgrade() {
        Connection { shared }.forget(generation);
    }
}

/// A host as a socket address or a certificate name take it: an IPv6
/// literal without the brackets a URI writes it in.
fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')).unwrap_or(host)
}

/// The body of a response: its DATA frames, each acknowledged to flow
/// control as it is read, then its trailers (where gRPC puts the status).
pub struct ResponseBody {
    body: h2::RecvStream,
    data_done: bool,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match std::task::ready!(self.body.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.body.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => self.data_done = true,
            }
        }
        match std::task::ready!(self.body.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

/// What tonic's generated clients call through.
impl tower::Service<http::Request<tonic::body::Body>> for Connection {
    type Response = http::Response<ResponseBody>;
    type Error = tonic::Status;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness (a free stream on the connection) is awaited in the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let connection = self.clone();
        Box::pin(async move { connection.call(request).await })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use contract::api::{
        GetMetadataRequest, GetMetadataResponse, Metadata, PutMetadataRequest, PutMetadataResponse,
        metadata_service_client::MetadataServiceClient,
        metadata_service_server::{MetadataService, MetadataServiceServer},
    };
    use tokio::{
        net::TcpListener,
        sync::{mpsc, oneshot},
    };
    use tokio_stream::{StreamExt, wrappers::TcpListenerStream};

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(10);

    /// Answers GetMetadata with the id asked for, except `wait`: that call
    /// reports it started, then never answers, and reports when it is
    /// dropped (the server drops it when the client cancels the stream).
    struct Echo {
        started: mpsc::UnboundedSender<()>,
        dropped: mpsc::UnboundedSender<()>,
    }

    struct ReportDrop(mpsc::UnboundedSender<()>);

    impl Drop for ReportDrop {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    #[tonic::async_trait]
    impl MetadataService for Echo {
        async fn get_metadata(
            &self,
            request: tonic::Request<GetMetadataRequest>,
        ) -> Result<tonic::Response<GetMetadataResponse>, tonic::Status> {
            let id = request.into_inner().movie_id;
            if id == "wait" {
                let _report = ReportDrop(self.dropped.clone());
                let _ = self.started.send(());
                std::future::pending::<()>().await;
            }
            Ok(tonic::Response::new(GetMetadataResponse { metadata: Some(Metadata { id, ..Default::default() }) }))
        }

        async fn put_metadata(
            &self,
            _: tonic::Request<PutMetadataRequest>,
        ) -> Result<tonic::Response<PutMetadataResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not here"))
        }
    }

    /// A server on `listener` counting the connections it accepts, until
    /// `stop` is sent (then it closes them, as a stopping server does).
    struct TestServer {
        accepted: Arc<AtomicUsize>,
        started: mpsc::UnboundedReceiver<()>,
        dropped: mpsc::UnboundedReceiver<()>,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    }

    fn serve(listener: TcpListener) -> TestServer {
        let accepted = Arc::new(AtomicUsize::new(0));
        let (started_tx, started) = mpsc::unbounded_channel();
        let (dropped_tx, dropped) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let counted = accepted.clone();
        let incoming = TcpListenerStream::new(listener).map(move |accepted| {
            counted.fetch_add(1, Ordering::SeqCst);
            accepted
        });
        let service = MetadataServiceServer::new(Echo { started: started_tx, dropped: dropped_tx });
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
                .expect("the test server runs");
        });
        TestServer { accepted, started, dropped, stop, task }
    }

    async fn listener() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        (listener, address)
    }

    fn connection(address: SocketAddr) -> Connection {
        Connection::new(&address.to_string(), None, Duration::from_secs(1)).unwrap()
    }

    async fn get(connection: &Connection, id: &str) -> Result<String, tonic::Status> {
        let mut client = MetadataServiceClient::new(connection.clone());
        let response = client.get_metadata(GetMetadataRequest { movie_id: id.into() }).await?;
        Ok(response.into_inner().metadata.unwrap_or_default().id)
    }

    #[tokio::test]
    async fn calls_share_one_connection_opened_at_the_first_call() {
        let (listener, address) = listener().await;
        let server = serve(listener);
        let connection = connection(address);
        assert_eq!(server.accepted.load(Ordering::SeqCst), 0, "nothing is opened before the first call");

        let ids: Vec<String> = (0..20).map(|n| n.to_string()).collect();
        let calls: Vec<_> = ids
            .iter()
            .map(|id| {
                let (connection, id) = (connection.clone(), id.clone());
                tokio::spawn(async move { get(&connection, &id).await })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.unwrap().unwrap());
        }
        assert_eq!(answers, ids, "each call gets its own answer");
        assert_eq!(get(&connection, "after").await.unwrap(), "after");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1, "one connection for all calls");
    }

    /// Until a new connection has the server's SETTINGS, it opens no more
    /// calls at once than HTTP/2 asks every server to allow (100): a server
    /// refuses the calls past its limit. The server here withholds its
    /// SETTINGS until 100 calls arrived, then counts the calls the client
    /// opened before it acknowledged them.
    #[tokio::test]
    async fn a_new_connection_keeps_within_what_every_server_allows_until_it_hears_the_limit() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        use crate::transport::http2_frames::Frames;

        // What HTTP/2 asks every server to allow at least (RFC 9113, 6.5.2).
        const ALLOWED: usize = 100;
        let (listener, address) = listener().await;
        let opened_before_the_limit = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (mut frames, mut buffer) = (Frames::new(Frames::CLIENT_PREFACE), vec![0; 64 * 1024]);
            let (mut calls, mut told, mut acknowledged) = (0, false, false);
            while !acknowledged {
                let read = socket.read(&mut buffer).await.unwrap();
                assert!(read > 0, "the client hung up");
                frames.feed(&buffer[..read], |kind, flags, _| match kind {
                    Frames::HEADERS => calls += 1,
                    Frames::SETTINGS if flags & Frames::ACK != 0 => acknowledged = true,
                    _ => {}
                });
                if calls >= ALLOWED && !told {
                    socket.write_all(&Frames::max_concurrent_streams(ALLOWED as u32)).await.unwrap();
                    told = true;
                }
            }
            calls
        });
        let connection = connection(address);
        let calls: Vec<_> = (0..1_000)
            .map(|n| {
                let connection = connection.clone();
                tokio::spawn(async move { get(&connection, &n.to_string()).await })
            })
            .collect();
        let opened = tokio::time::timeout(PATIENCE, opened_before_the_limit).await.expect("the calls came").unwrap();
        assert_eq!(opened, ALLOWED);
        calls.iter().for_each(tokio::task::JoinHandle::abort);
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable_naming_the_address() {
        let (listener, address) = listener().await;
        drop(listener);
        let status = get(&connection(address), "1").await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().starts_with(&format!("cannot connect to {address}: ")), "{}", status.message());
    }

    #[tokio::test]
    async fn a_closed_connection_is_opened_again_by_a_later_call() {
        let (listener, address) = listener().await;
        let first = serve(listener);
        let connection = connection(address);
        assert_eq!(get(&connection, "1").await.unwrap(), "1");
        first.stop.send(()).unwrap();
        first.task.await.unwrap();

        let second = serve(TcpListener::bind(address).await.unwrap());
        // The first calls may still meet the closed connection: UNAVAILABLE.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let answer = loop {
            match get(&connection, "2").await {
                Ok(answer) => break answer,
                Err(status) if tokio::time::Instant::now() < deadline => {
                    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                    tokio::task::yield_now().await;
                }
                Err(status) => panic!("no new connection within {PATIENCE:?}: {status:?}"),
            }
        };
        assert_eq!(answer, "2");
        assert_eq!(second.accepted.load(Ordering::SeqCst), 1);
    }

    /// This suite's own server, sending each connection GOAWAY at `max_age`
    /// (give or take a tenth), serving [`Echo`] until `stop` is cancelled.
    async fn serve_aging(max_age: Duration, stop: tokio_util::sync::CancellationToken) -> SocketAddr {
        use crate::{
            discovery::MemoryRegistry,
            server::{BoundServer, test_settings},
        };
        let mut settings = test_settings();
        settings.connections.max_age = Some(max_age);
        let server = BoundServer::bind(settings).await.unwrap();
        let address = server.local_address();
        let (started, _) = mpsc::unbounded_channel();
        let (dropped, _) = mpsc::unbounded_channel();
        let routes = tonic::service::Routes::new(MetadataServiceServer::new(Echo { started, dropped }));
        tokio::spawn(server.run(routes, Arc::new(MemoryRegistry::default()), async {}, stop));
        address
    }

    /// A server that sends GOAWAY as each connection reaches its maximum
    /// age: calls keep coming through it, each on a new connection once the
    /// old one is going away, and none fails (a call the server had not
    /// taken up is made again on the new connection).
    #[tokio::test]
    async fn calls_go_on_through_a_servers_goaway_on_new_connections_without_a_failure() {
        const CALLERS: usize = 8;
        const CONNECTIONS: u64 = 4;
        let stop = tokio_util::sync::CancellationToken::new();
        let _stop_server = stop.clone().drop_guard();
        let address = serve_aging(Duration::from_millis(200), stop).await;
        let connection = connection(address);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let callers: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let connection = connection.clone();
                tokio::spawn(async move {
                    let (mut answered, mut failed) = (0, Vec::new());
                    while *connection.shared.connecting.lock().await < CONNECTIONS
                        && tokio::time::Instant::now() < deadline
                    {
                        let id = format!("{caller}-{answered}");
                        match get(&connection, &id).await {
                            Ok(answer) if answer == id => answered += 1,
                            Ok(answer) => failed.push(format!("asked for {id}, answered {answer}")),
                            Err(status) => failed.push(status.to_string()),
                        }
                    }
                    (answered, failed)
                })
            })
            .collect();
        let mut answered = 0;
        for caller in callers {
            let (answers, failed) = caller.await.unwrap();
            assert!(failed.is_empty(), "{} calls failed, the first: {}", failed.len(), failed[0]);
            answered += answers;
        }
        let opened = *connection.shared.connecting.lock().await;
        assert!(opened >= CONNECTIONS, "{opened} connections in 20 s for a maximum age of 200 ms");
        assert!(answered > 0);
    }

    #[tokio::test]
    async fn a_call_dropped_before_its_answer_is_cancelled_at_the_server() {
        let (listener, address) = listener().await;
        let mut server = serve(listener);
        let connection = connection(address);
        let call = tokio::spawn(async move { get(&connection, "wait").await });
        tokio::time::timeout(PATIENCE, server.started.recv()).await.expect("the call reached the server");
        call.abort();
        let cancelled = tokio::time::timeout(PATIENCE, server.dropped.recv()).await;
        assert!(cancelled.is_ok(), "the server kept running a call its client dropped");
    }
}

//! The gRPC server every service runs: its own services plus server
//! reflection (v1 and v1alpha) and `grpc.health.v1`, registration in the
//! registry once ready, the overload limits of [`crate::server::overload`] around
//! every call (and, with a key configured, the bearer tokens of
//! [`crate::security::auth`] on the calls that need them), and the shutdown order
//! NOT_SERVING → deregister → stop accepting → drain (bounded) → return.
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use contract::api;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::{ServingStatus, server::HealthReporter};

mod args;
mod authorization;
pub mod call_layer;
mod calls;
pub mod connections;
mod metrics;
pub mod overload;
mod request_decoding;

pub use args::ServerArgs;
use call_layer::CallLayer;
use calls::ServerCalls;
use connections::{ConnectionLimits, Http2Settings};
use overload::{ConcurrencyLimit, MessageSizeLayer};
use request_decoding::RequestDecoding;

use crate::{
    discovery::{DiscoveryArgs, Instance, InstanceId, Registration, RegistrationSettings, Registry, ServiceName},
    security::{Authorization, ServerTls, ServerTlsArgs},
};

/// The services every server offers besides its own, whose calls are not
/// business traffic: not counted in the metrics.
const INFRASTRUCTURE_SERVICES: [&str; 3] =
    ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/// Everything the bootstrap needs to know about one service instance.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// The name the service registers under, e.g. `metadata`.
    pub service: ServiceName,
    /// The fully qualified gRPC service names it implements, e.g.
    /// `MetadataService`; health reports each of them.
    pub grpc_services: Vec<&'static str>,
    pub listen: SocketAddr,
    pub advertise_host: Option<String>,
    pub instance_id: Option<InstanceId>,
    pub shutdown_timeout: Duration,
    /// Where Prometheus metrics are served; `None`: no metrics.
    pub metrics_address: Option<SocketAddr>,
    pub registration: RegistrationSettings,
    /// Largest request message taken, in bytes.
    pub max_message_size: usize,
    /// Calls of the service's own API served at once; more are shed.
    pub max_concurrent_requests: usize,
    /// The server's certificate and key (and client CA); none: plaintext.
    pub tls: ServerTlsArgs,
    /// The calls that need a bearer token, and its key; none: all open.
    pub authorization: Option<Authorization>,
    /// The limits of every connection: handshake, keep-alive, idle, age, count.
    pub connections: ConnectionLimits,
}

impl ServiceSettings {
    /// Settings from the flags every service shares.
    pub fn from_args(
        service: &str,
        grpc_services: Vec<&'static str>,
        listen: SocketAddr,
        server: &ServerArgs,
        discovery: &DiscoveryArgs,
    ) -> Self {
        Self {
            service: ServiceName::new(service),
            grpc_services,
            listen,
            advertise_host: server.advertise_host.clone(),
            instance_id: server.instance_id(),
            shutdown_timeout: server.shutdown_timeout,
            metrics_address: server.metrics.metrics_addr,
            registration: discovery.registration(),
            max_message_size: server.max_message_size(),
            max_concurrent_requests: server.max_concurrent_requests.get(),
            tls: server.tls.clone(),
            authorization: None,
            connections: server.connection_limits(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server task ended abnormally")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Metrics(#[from] telemetry::metrics::MetricsError),
    #[error(transparent)]
    Tls(#[from] crate::security::tls::TlsError),
}

/// A service whose listener is bound, so its real address (after asking for
/// port 0) is known before it runs.
pub struct BoundServer {
    settings: ServiceSettings,
    listener: TcpListener,
    local_address: SocketAddr,
    tls: Option<ServerTls>,
}

impl BoundServer {
    pub async fn bind(settings: ServiceSettings) -> Result<Self, ServeError> {
        let tls = settings.tls.server_config()?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ServeError::Bind { address: settings.listen, source })?;
        let local_address =
            listener.local_addr().map_err(|source| ServeError::Bind { address: settings.listen, source })?;
        if let Some(address) = settings.metrics_address {
            telemetry::metrics::serve(address, settings.service.as_str()).await?;
        }
        Ok(Self { settings, listener, local_address, tls })
    }

    pub fn local_address(&self) -> SocketAddr {
        self.local_address
    }

    /// The registry entry of this instance: the advertised host (or one
    /// derived from the listen address) and the bound port.
    pub async fn instance(&self) -> Instance {
        let settings = &self.settings;
        let host = match &settings.advertise_host {
            Some(host) => host.clone(),
            None if self.local_address.ip().is_unspecified() => advertise_host_for_all_interfaces().await,
            None => self.local_address.ip().to_string(),
        };
        Instance {
            id: settings.instance_id.clone().unwrap_or_else(|| InstanceId::generate(&settings.service)),
            service: settings.service.clone(),
            host,
            port: self.local_address.port(),
            metrics_port: settings.metrics_address.map(|address| address.port()),
            server_name: None,
        }
    }

    /// Serves `routes` until `shutdown` is cancelled.
    ///
    /// Health reports NOT_SERVING until `ready` completes, then SERVING, and
    /// the instance registers. On shutdown: NOT_SERVING → deregister → stop
    /// accepting → drain in-flight RPCs (within the shutdown timeout) →
    /// return. If the server ends on its own, the registration is stopped
    /// and the server's error returned.
    pub async fn run(
        self,
        routes: Routes,
        registry: Arc<dyn Registry>,
        ready: impl Future<Output = ()> + Send,
        shutdown: CancellationToken,
    ) -> Result<(), ServeError> {
        let instance = self.instance().await;
        let Self { settings, listener, local_address, tls } = self;
        let (health, routes) = Health::not_serving(routes, &settings.grpc_services).await;
        let routes = with_reflection(routes, &settings.grpc_services)?;
        let spans = telemetry::exporting_traces();
        let metrics = settings.metrics_address.is_some();
        let calls = (spans || metrics).then_some(ServerCalls { spans, metrics });
        let limits = Limits {
            message_size: MessageSizeLayer { limit: settings.max_message_size },
            concurrency: ConcurrencyLimit::new(settings.service.as_str(), settings.max_concurrent_requests),
            authorization: settings.authorization.clone(),
        };
        let mut server = ServerTask::spawn(routes, listener, calls, limits, tls, settings.connections.clone());
        tracing::info!(service = %settings.service, instance = %instance.id, address = %local_address,
            tls = settings.tls.mode(),
            auth = settings.authorization.as_ref().map_or_else(|| "off".to_owned(), Authorization::algorithm),
            "listening");

        let mut registration = None;
        let stopped = tokio::select! {
            () = ready => {
                health.set(ServingStatus::Serving).await;
                tracing::info!(service = %settings.service, "ready: health reports SERVING");
                registration = start_registration(registry, instance, &settings);
                server.until_shutdown(&shutdown).await
            }
            () = shutdown.cancelled() => Stopped::ShutdownRequested,
            result = server.finished() => Stopped::ServerEnded(result),
        };

        if let Stopped::ShutdownRequested = stopped {
            tracing::info!(service = %settings.service, "shutting down: NOT_SERVING, deregistering, draining in-flight RPCs");
            health.set(ServingStatus::NotServing).await;
        }
        if let Some(registration) = registration {
            registration.stop().await;
        }
        match stopped {
            Stopped::ServerEnded(result) => result,
            Stopped::ShutdownRequested => server.drain(&settings).await,
        }
    }
}

/// Readiness for [`BoundServer::run`] that waits for a start-up `step`: it
/// completes once the step succeeds. If the step fails it never completes
/// and the error waits in the receiver; the step should then cancel the
/// shutdown token, so that the server stops.
pub fn ready_after<E>(
    step: impl Future<Output = Result<(), E>>,
) -> (impl Future<Output = ()>, tokio::sync::oneshot::Receiver<E>) {
    let (failed, failure) = tokio::sync::oneshot::channel();
    let ready = async move {
        if let Err(error) = step.await {
            let _ = failed.send(error);
            std::future::pending::<()>().await;
        }
    };
    (ready, failure)
}

/// What ended the serving phase of [`BoundServer::run`].
enum Stopped {
    /// The shutdown token was cancelled: leave in order and drain.
    ShutdownRequested,
    /// The server task ended on its own, with this outcome.
    ServerEnded(Result<(), ServeError>),
}

/// The `grpc.health.v1` status of the server as a whole (the empty service
/// name) and of each of its gRPC services.
struct Health {
    reporter: HealthReporter,
    grpc_services: Vec<&'static str>,
}

impl Health {
    /// Adds the health service to `routes`, reporting NOT_SERVING.
    async fn not_serving(routes: Routes, grpc_services: &[&'static str]) -> (Self, Routes) {
        let (reporter, service) = tonic_health::server::health_reporter();
        let health = Self { reporter, grpc_services: grpc_services.to_vec() };
        health.set(ServingStatus::NotServing).await;
        (health, routes.add_service(service))
    }

    async fn set(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for name in &self.grpc_services {
            self.reporter.set_service_status(name, status).await;
        }
    }
}

/// Adds server reflection, v1 and v1alpha, to `routes`. It lists only what
/// this server serves, though the descriptor set describes every service of
/// the suite.
fn with_reflection(routes: Routes, grpc_services: &[&'static str]) -> Result<Routes, ServeError> {
    let advertised: Vec<&str> = grpc_services.iter().copied().chain(INFRASTRUCTURE_SERVICES).collect();
    let reflection = || {
        advertised.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(api::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |builder, name| builder.with_service_name(*name),
        )
    };
    Ok(routes.add_service(reflection().build_v1()?).add_service(reflection().build_v1alpha()?))
}

/// Keeps the instance registered, unless the registry takes no registrations
/// (static discovery, where peers are configured with this address; dns
/// discovery, where the orchestrator lists it).
fn start_registration(
    registry: Arc<dyn Registry>,
    instance: Instance,
    settings: &ServiceSettings,
) -> Option<Registration> {
    if registry.accepts_registrations() {
        Some(Registration::start(registry, instance, settings.registration.clone()))
    } else {
        tracing::info!(service = %settings.service, registry = %registry.describe(),
            "nothing to register: peers find this instance at a configured address, or in DNS");
        None
    }
}

/// Each connection's HTTP/2 receive window: hyper's default for a server,
/// set here because the stream limit below is derived from it.
const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// Calls open at once on one connection; past it, the client waits for one
/// to end (HTTP/2's `SETTINGS_MAX_CONCURRENT_STREAMS`; tonic sets none).
///
/// `h2` closes a connection with ENHANCE_YOUR_CALM, failing every call on
/// it, once the DATA frames of under 256 bytes it holds unread cost more
/// than half its receive window, at 256 bytes less their length each. A
/// unary request leaves one such frame until its handler runs, so a burst
/// of small calls that lands while the server is busy (an open-loop client,
/// a runtime stall) was enough: at 19,500 calls/s it cut movie's client
/// connections. At most `CONNECTION_WINDOW / 2 / 256` open calls keep that
/// charge within the budget, whatever the burst.
///
/// The same number bounds the calls a client may cancel before the server
/// took them up (the rapid-reset guard, 20 by default): a caller that goes
/// away cancels its calls' calls downstream, and with 20 the first burst of
/// cancellations closed the shared connection under every other caller's
/// calls too. Cancelled calls awaiting the server are still bounded, by
/// twice the stream limit.
const MAX_STREAMS_PER_CONNECTION: u32 = CONNECTION_WINDOW / 2 / 256;

/// The overload limits and the authorization of writes around a server's
/// routes.
struct Limits {
    message_size: MessageSizeLayer,
    concurrency: ConcurrencyLimit,
    authorization: Option<Authorization>,
}

/// The server, serving in a task of its own until told to stop accepting.
struct ServerTask {
    task: JoinHandle<()>,
    stop_accepting: CancellationToken,
}

impl ServerTask {
    fn spawn(
        routes: Routes,
        listener: TcpListener,
        calls: Option<ServerCalls>,
        limits: Limits,
        tls: Option<ServerTls>,
        connection_limits: ConnectionLimits,
    ) -> Self {
        let stop_accepting = CancellationToken::new();
        // Outermost first: a shed call is still timed and counted.
        let service = tower::ServiceBuilder::new()
            .layer(tower::util::option_layer(calls.map(CallLayer)))
            .layer(CallLayer(limits.concurrency))
            .layer(limits.message_size)
            .layer(tower::util::option_layer(limits.authorization.map(CallLayer)))
            .layer(CallLayer(RequestDecoding))
            .service(routes.prepare());
        let http2 = Http2Settings {
            initial_connection_window: CONNECTION_WINDOW,
            max_concurrent_streams: MAX_STREAMS_PER_CONNECTION,
            max_pending_accept_reset_streams: MAX_STREAMS_PER_CONNECTION as usize,
        };
        let server = crate::server::connections::serve(
            listener,
            tls.as_ref().map(ServerTls::acceptor),
            service,
            connection_limits,
            http2,
            stop_accepting.clone(),
        );
        Self { task: tokio::spawn(server), stop_accepting }
    }

    /// Completes when the server task ends on its own. Cancel-safe.
    async fn finished(&mut self) -> Result<(), ServeError> {
        (&mut self.task).await?;
        Ok(())
    }

    /// Serves until `shutdown` is cancelled or the server ends on its own,
    /// whichever comes first; a cancelled `shutdown` wins a tie.
    async fn until_shutdown(&mut self, shutdown: &CancellationToken) -> Stopped {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => Stopped::ShutdownRequested,
            result = self.finished() => Stopped::ServerEnded(result),
        }
    }

    /// Stops accepting connections and waits for in-flight RPCs, within the
    /// shutdown timeout; past it, the server is aborted.
    async fn drain(mut self, settings: &ServiceSettings) -> Result<(), ServeError> {
        self.stop_accepting.cancel();
        match tokio::time::timeout(settings.shutdown_timeout, self.finished()).await {
            Ok(result) => {
                result?;
                tracing::info!(service = %settings.service, "stopped cleanly");
            }
            Err(_) => {
                self.task.abort();
                tracing::warn!(service = %settings.service, timeout = ?settings.shutdown_timeout,
                    "in-flight RPCs still running after the shutdown timeout; stopping anyway");
            }
        }
        Ok(())
    }
}

/// The address peers should use for an instance that listens on every
/// interface: the host name's own non-loopback IP when it resolves to one (in
/// a container, its address on the container network, which every replica
/// has its own of), else the host name itself, else loopback.
async fn advertise_host_for_all_interfaces() -> String {
    let Some(name) = host_name() else {
        return "127.0.0.1".into();
    };
    let resolved = tokio::net::lookup_host((name.as_str(), 0)).await.map(|addresses| addresses.collect::<Vec<_>>());
    match resolved {
        Ok(addresses) => match routable_ip(&addresses) {
            Some(ip) => ip.to_string(),
            None => name,
        },
        Err(error) => {
            tracing::warn!(host = %name, %error, "cannot resolve the host name; advertising it unresolved");
            name
        }
    }
}

/// The first non-loopback address, IPv4 preferred.
fn routable_ip(addresses: &[SocketAddr]) -> Option<std::net::IpAddr> {
    let routable = || addresses.iter().map(SocketAddr::ip).filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    routable().find(std::net::IpAddr::is_ipv4).or_else(|| routable().next())
}

fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// Settings for this crate's tests: a `rating` instance on a free port of
/// 127.0.0.1, plaintext, open, with generous limits and no maximum
/// connection age.
#[cfg(test)]
pub(crate) fn test_settings() -> ServiceSettings {
    ServiceSettings {
        service: ServiceName::new("rating"),
        grpc_services: vec!["RatingService"],
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise_host: None,
        instance_id: Some(InstanceId::new("rating-1")),
        shutdown_timeout: Duration::from_secs(5),
        metrics_address: None,
        registration: RegistrationSettings::default(),
        max_message_size: 4 * 1024 * 1024,
        max_concurrent_requests: 100,
        tls: ServerTlsArgs::default(),
        authorization: None,
        connections: ConnectionLimits {
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(300),
            max_connections: std::num::NonZeroUsize::new(100).unwrap(),
            max_age: None,
            max_age_grace: Duration::from_secs(5),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
        sync::{mpsc, oneshot},
    };
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus as Status, health_client::HealthClient,
    };

    use super::*;
    use crate::{
        discovery::{DiscoveryError, MemoryRegistry},
        transport::http2_frames::Frames,
    };

    /// A registry that reports each call that reached it, in order.
    struct Reporting {
        inner: MemoryRegistry,
        calls: mpsc::UnboundedSender<&'static str>,
    }

    #[async_trait::async_trait]
    impl Registry for Reporting {
        async fn register(&self, instance: &Instance) -> Result<(), DiscoveryError> {
            let _ = self.calls.send("register");
            self.inner.register(instance).await
        }
        async fn deregister(&self, instance: &Instance) -> Result<(), DiscoveryError> {
            let _ = self.calls.send("deregister");
            self.inner.deregister(instance).await
        }
        async fn report_healthy(&self, instance: &Instance) -> Result<(), DiscoveryError> {
            let _ = self.calls.send("report_healthy");
            self.inner.report_healthy(instance).await
        }
        async fn healthy_instances(&self, service: &ServiceName) -> Result<Vec<Instance>, DiscoveryError> {
            self.inner.healthy_instances(service).await
        }
        fn describe(&self) -> String {
            "reporting".into()
        }
    }

    #[tokio::test]
    async fn serves_health_once_ready_and_leaves_the_registry_before_it_stops() {
        let deadline = Duration::from_secs(10);
        let (calls, mut reached) = mpsc::unbounded_channel();
        let registry = Arc::new(Reporting { inner: MemoryRegistry::default(), calls });
        let server = BoundServer::bind(test_settings()).await.unwrap();
        let address = server.local_address();
        let (make_ready, ready) = oneshot::channel::<()>();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(server.run(
            Routes::default(),
            registry.clone(),
            async {
                let _ = ready.await;
            },
            shutdown.clone(),
        ));

        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
        let mut statuses = HealthClient::new(channel)
            .watch(HealthCheckRequest { service: "RatingService".into() })
            .await
            .unwrap()
            .into_inner();
        let mut next_status = async || {
            let message = tokio::time::timeout(deadline, statuses.message()).await.expect("a status in time");
            message.unwrap().expect("the watch goes on").status()
        };
        assert_eq!(next_status().await, Status::NotServing);
        assert!(reached.try_recv().is_err(), "nothing registers before ready");

        make_ready.send(()).unwrap();
        assert_eq!(next_status().await, Status::Serving);
        for expected in ["register", "report_healthy"] {
            let call = tokio::time::timeout(deadline, reached.recv()).await.expect("a registry call in time");
            assert_eq!(call, Some(expected));
        }
        assert_eq!(registry.healthy_instances(&ServiceName::new("rating")).await.unwrap().len(), 1);

        shutdown.cancel();
        assert_eq!(next_status().await, Status::NotServing);
        // The watch is an RPC in flight: the drain waits for it to end.
        drop(statuses);
        tokio::time::timeout(deadline, running).await.expect("run returns in time").unwrap().unwrap();
        let mut after_shutdown = Vec::new();
        while let Ok(call) = reached.try_recv() {
            after_shutdown.push(call);
        }
        after_shutdown.retain(|call| *call != "report_healthy");
        assert_eq!(after_shutdown, ["deregister"]);
        assert!(registry.healthy_instances(&ServiceName::new("rating")).await.unwrap().is_empty());
    }

    /// The network between one HTTP/2 client and `server`: it forwards both
    /// ways, except that, told to [`Gate::hold`] the client's frames, it
    /// delivers them in one write once enough went by: a burst landing all
    /// at once, as when a busy server gets to its socket.
    struct Gate {
        address: SocketAddr,
        /// Hold until this many frames of this type went by.
        release_after: Arc<std::sync::Mutex<Option<(u8, usize)>>>,
        /// HEADERS frames the client sent while held.
        held_calls: tokio::sync::watch::Receiver<usize>,
    }

    impl Gate {
        /// Holds what the client sends until `count` frames of type `kind`
        /// went by; for HEADERS (calls started), or as many calls as the
        /// server's SETTINGS let the client have open at once.
        fn hold(&self, kind: u8, count: usize) {
            *self.release_after.lock().unwrap() = Some((kind, count));
        }

        /// Waits until the client started `calls` calls while held.
        async fn wait_for_held_calls(&mut self, calls: usize) {
            let started = self.held_calls.wait_for(|held| *held >= calls);
            tokio::time::timeout(Duration::from_secs(10), started).await.expect("calls started in time").unwrap();
        }

        async fn start(server: SocketAddr) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let release_after = Arc::new(std::sync::Mutex::new(None::<(u8, usize)>));
            let max_streams = Arc::new(AtomicUsize::new(usize::MAX));
            let (held_calls_tx, held_calls) = tokio::sync::watch::channel(0);
            let holding = release_after.clone();
            tokio::spawn(async move {
                let (client, _) = listener.accept().await?;
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = TcpStream::connect(server).await?.into_split();
                let settings = max_streams.clone();
                tokio::spawn(async move {
                    let mut frames = Frames::new(0);
                    let mut buffer = vec![0; 64 * 1024];
                    loop {
                        let read = from_server.read(&mut buffer).await?;
                        if read == 0 {
                            return Ok::<_, std::io::Error>(());
                        }
                        frames.feed(&buffer[..read], |kind, _, payload| {
                            let entries = payload.chunks_exact(6).filter(|_| kind == Frames::SETTINGS);
                            for entry in entries {
                                if u16::from_be_bytes([entry[0], entry[1]]) == Frames::SETTINGS_MAX_CONCURRENT_STREAMS {
                                    let max = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
                                    settings.store(max as usize, Ordering::SeqCst);
                                }
                            }
                        });
                        to_client.write_all(&buffer[..read]).await?;
                    }
                });
                let mut frames = Frames::new(Frames::CLIENT_PREFACE);
                let (mut buffer, mut held, mut seen) = (vec![0; 64 * 1024], Vec::new(), [0_usize; 256]);
                loop {
                    let read = from_client.read(&mut buffer).await?;
                    if read == 0 {
                        return Ok::<_, std::io::Error>(());
                    }
                    frames.feed(&buffer[..read], |kind, _, _| seen[usize::from(kind)] += 1);
                    let Some((kind, count)) = *holding.lock().unwrap() else {
                        to_server.write_all(&buffer[..read]).await?;
                        seen = [0; 256];
                        continue;
                    };
                    held.extend_from_slice(&buffer[..read]);
                    held_calls_tx.send_replace(seen[usize::from(Frames::HEADERS)]);
                    let count =
                        if kind == Frames::HEADERS { count.min(max_streams.load(Ordering::SeqCst)) } else { count };
                    if seen[usize::from(kind)] >= count {
                        *holding.lock().unwrap() = None;
                        to_server.write_all(&std::mem::take(&mut held)).await?;
                    }
                }
            });
            Self { address, release_after, held_calls }
        }
    }

    /// Thousands of small calls landing at once on one connection, all read
    /// off the socket before any handler runs (one thread: the connection's
    /// task takes up every stream it has before the handlers get a turn):
    /// each is answered, none is lost with the connection.
    #[tokio::test]
    async fn a_burst_of_small_calls_on_one_connection_is_answered_in_full() {
        const CALLS: usize = 5_000;
        let server = BoundServer::bind(test_settings()).await.unwrap();
        let gate = Gate::start(server.local_address()).await;
        let shutdown = CancellationToken::new();
        let registry = Arc::new(MemoryRegistry::default());
        let running = tokio::spawn(server.run(Routes::default(), registry, async {}, shutdown.clone()));
        let channel = connect(gate.address).await;
        // The first call also brings the server's SETTINGS.
        check(channel.clone()).await.unwrap();

        gate.hold(Frames::HEADERS, CALLS);
        let calls: tokio::task::JoinSet<_> = (0..CALLS).map(|_| check(channel.clone())).collect();
        let answers = calls.join_all().await;
        let failed: Vec<_> = answers.iter().filter_map(|answer| answer.as_ref().err()).collect();
        assert!(failed.is_empty(), "{} of {CALLS} calls failed, the first: {}", failed.len(), failed[0]);

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), running).await.expect("stops in time").unwrap().unwrap();
    }

    /// A client that cancels a hundred calls before the server took them up
    /// (its own caller went away) keeps its connection: the call it still
    /// has open on it goes on.
    #[tokio::test]
    async fn calls_cancelled_before_the_server_took_them_up_leave_the_connection_open() {
        const CANCELLED: usize = 100;
        let server = BoundServer::bind(test_settings()).await.unwrap();
        let mut gate = Gate::start(server.local_address()).await;
        let (make_ready, ready) = oneshot::channel::<()>();
        let shutdown = CancellationToken::new();
        let registry = Arc::new(MemoryRegistry::default());
        let running = tokio::spawn(server.run(
            Routes::default(),
            registry,
            async {
                let _ = ready.await;
            },
            shutdown.clone(),
        ));
        let channel = connect(gate.address).await;
        let mut statuses = HealthClient::new(channel.clone())
            .watch(HealthCheckRequest { service: "RatingService".into() })
            .await
            .unwrap()
            .into_inner();
        let patience = Duration::from_secs(10);
        assert_eq!(
            tokio::time::timeout(patience, statuses.message()).await.unwrap().unwrap().unwrap().status(),
            Status::NotServing
        );

        gate.hold(Frames::RST_STREAM, CANCELLED);
        let mut calls: tokio::task::JoinSet<_> = (0..CANCELLED).map(|_| check(channel.clone())).collect();
        gate.wait_for_held_calls(CANCELLED).await;
        calls.abort_all();
        while calls.join_next().await.is_some() {}
        // Answered after the burst: the server has read every frame of it.
        check(channel.clone()).await.expect("the connection still takes calls");

        make_ready.send(()).unwrap();
        let status = tokio::time::timeout(patience, statuses.message()).await.expect("a status in time");
        assert_eq!(status.expect("the watch still runs").expect("the watch goes on").status(), Status::Serving);

        drop(statuses);
        shutdown.cancel();
        tokio::time::timeout(patience, running).await.expect("stops in time").unwrap().unwrap();
    }

    async fn connect(address: SocketAddr) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap()
    }

    /// A health check: a unary call whose message tonic sends in a small
    /// DATA frame of its own, then an empty one that ends the stream.
    async fn check(
        channel: tonic::transport::Channel,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error_naming_the_address_with_the_io_error_as_source() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = taken.local_addr().unwrap();
        let Err(error) = BoundServer::bind(ServiceSettings { listen, ..test_settings() }).await else {
            panic!("{listen} is taken");
        };
        assert_eq!(error.to_string(), format!("cannot listen on {listen}"));
        let source = std::error::Error::source(&error).and_then(|source| source.downcast_ref::<std::io::Error>());
        assert_eq!(source.map(std::io::Error::kind), Some(std::io::ErrorKind::AddrInUse));
    }

    #[tokio::test]
    async fn readiness_waits_for_the_step_and_never_comes_after_it_failed() {
        let (ready, mut failure) = ready_after(async { Ok::<(), &str>(()) });
        ready.await;
        assert!(failure.try_recv().is_err(), "no error after a step that succeeded");

        let (ready, mut failure) = ready_after(async { Err("the step failed") });
        tokio::select! {
            biased;
            () = ready => panic!("ready after a failed step"),
            () = std::future::ready(()) => {}
        }
        assert_eq!(failure.try_recv(), Ok("the step failed"));
    }

    fn addresses(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|address| address.parse().unwrap()).collect()
    }

    #[test]
    fn a_container_advertises_its_network_address_not_loopback() {
        let resolved = addresses(&["127.0.0.1:0", "[::1]:0", "[fd00::5]:0", "172.18.0.5:0"]);
        assert_eq!(routable_ip(&resolved), Some("172.18.0.5".parse().unwrap()));
    }

    #[test]
    fn an_ipv6_only_host_advertises_its_ipv6_address() {
        assert_eq!(routable_ip(&addresses(&["[::1]:0", "[fd00::5]:0"])), Some("fd00::5".parse().unwrap()));
    }

    #[test]
    fn a_host_name_that_resolves_only_to_loopback_is_not_routable() {
        assert_eq!(routable_ip(&addresses(&["127.0.1.1:0", "[::1]:0"])), None);
    }
}

//! A stand-in for the metadata service, in the test process: its
//! GetMetadata answers only once the test opens the gate, so calls stay in
//! flight as long as a test needs (a slow or stuck dependency), and it
//! records the `grpc-timeout` each call came with.
use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use contract::api::{
    GetMetadataRequest, GetMetadataResponse, Metadata, PutMetadataRequest, PutMetadataResponse,
    metadata_service_server::{MetadataService, MetadataServiceServer},
};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// What the test sees of the stand-in; it serves until the test's runtime ends.
pub struct GatedMetadata {
    pub address: SocketAddr,
    state: Arc<State>,
}

struct State {
    open: watch::Sender<bool>,
    in_flight: AtomicUsize,
    /// The most calls ever waiting at once.
    max_in_flight: AtomicUsize,
    timeouts: Mutex<Vec<Option<String>>>,
}

impl GatedMetadata {
    /// Serves on 127.0.0.1:0 with the gate closed.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the stand-in");
        let address = listener.local_addr().expect("the stand-in's address");
        let state = Arc::new(State {
            open: watch::Sender::new(false),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            timeouts: Mutex::new(Vec::new()),
        });
        let service = MetadataServiceServer::new(Service(state.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        Self { address, state }
    }

    /// `127.0.0.1:PORT`, as the movie service's flags take it.
    pub fn authority(&self) -> String {
        self.address.to_string()
    }

    /// Lets every held call and every later one answer.
    pub fn open(&self) {
        self.state.open.send_replace(true);
    }

    /// Calls that arrived and wait at the gate.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most calls that ever waited at the gate at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `count` calls wait at the gate.
    pub async fn wait_for_in_flight(&self, count: usize, timeout: Duration) {
        crate::wait_for(&format!("{count} calls wait at the stand-in"), timeout, || async {
            self.in_flight() == count
        })
        .await;
    }

    /// The `grpc-timeout` header of each call so far, in arrival order.
    pub fn timeouts(&self) -> Vec<Option<String>> {
        self.state.timeouts.lock().expect("not poisoned").clone()
    }
}

struct Service(Arc<State>);

/// Counts a call at the gate, until it passes or its caller gives up.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(count: &'a AtomicUsize, max: &AtomicUsize) -> Self {
        let now = count.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(now, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tonic::async_trait]
impl MetadataService for Service {
    async fn get_metadata(
        &self,
        request: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        let timeout = request.metadata().get("grpc-timeout").and_then(|value| value.to_str().ok()).map(str::to_owned);
        self.0.timeouts.lock().expect("not poisoned").push(timeout);
        let mut open = self.0.open.subscribe();
        let waiting = Waiting::start(&self.0.in_flight, &self.0.max_in_flight);
        let opened = open.wait_for(|open| *open).await.is_ok();
        drop(waiting);
        if !opened {
            return Err(Status::unavailable("the stand-in is gone"));
        }
        let id = request.into_inner().movie_id;
        let metadata =
            Metadata { id, title: "Heat".into(), description: "A crime saga".into(), director: "Michael Mann".into() };
        Ok(Response::new(GetMetadataResponse { metadata: Some(metadata) }))
    }

    async fn put_metadata(&self, _: Request<PutMetadataRequest>) -> Result<Response<PutMetadataResponse>, Status> {
        Err(Status::unimplemented("the stand-in stores nothing"))
    }
}

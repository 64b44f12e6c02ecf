//! The services in the test process (`spawn_app`, as zero-to-production
//! calls it): each built on 127.0.0.1:0 from the flags a user would give,
//! served on the test's runtime, and reached through typed tonic clients.
//! For tests of the services' behaviour; what users do by hand (grpcurl,
//! signals, exit codes) goes through real processes instead.
use std::{future::Future, net::SocketAddr, time::Duration};

use clap::Parser;
use contract::api::{
    metadata_service_client::MetadataServiceClient, movie_service_client::MovieServiceClient,
    rating_service_client::RatingServiceClient,
};
use platform::shutdown::CancellationToken;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// One service running in the test process; it stops with the test's
/// runtime, or earlier with [`TestApp::stop`].
pub struct TestApp<C> {
    pub address: SocketAddr,
    /// A typed client of the service's own API.
    pub client: C,
    pub health: HealthClient<Channel>,
    shutdown: CancellationToken,
    served: JoinHandle<anyhow::Result<()>>,
}

impl<C> TestApp<C> {
    /// `127.0.0.1:PORT`, as the other services' flags take it.
    pub fn authority(&self) -> String {
        self.address.to_string()
    }

    /// The overall health status, or `None` when the call fails.
    pub async fn health_status(&self) -> Option<ServingStatus> {
        let answer = self.health.clone().check(HealthCheckRequest { service: String::new() }).await.ok()?;
        ServingStatus::try_from(answer.into_inner().status).ok()
    }

    /// Waits until health reports SERVING.
    pub async fn wait_until_serving(&self, timeout: Duration) {
        crate::wait_for("the service reports SERVING", timeout, || async {
            self.health_status().await == Some(ServingStatus::Serving)
        })
        .await;
    }

    /// Shuts the service down as a signal would, and returns how serving ended.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.served.await?
    }
}

fn config<T: Parser>(binary: &str, args: &[&str]) -> T {
    let argv = [binary, "--listen", "127.0.0.1:0"].into_iter().chain(args.iter().copied());
    T::try_parse_from(argv).unwrap_or_else(|error| panic!("{binary} {args:?}: {error}"))
}

async fn start<C>(
    address: SocketAddr,
    run: impl FnOnce(CancellationToken) -> JoinHandle<anyhow::Result<()>>,
    client: impl FnOnce(Channel) -> C,
) -> TestApp<C> {
    let shutdown = CancellationToken::new();
    let served = run(shutdown.clone());
    let channel = Endpoint::from_shared(format!("http://{address}")).expect("a valid endpoint").connect_lazy();
    TestApp { address, client: client(channel.clone()), health: HealthClient::new(channel), shutdown, served }
}

fn spawn_served(served: impl Future<Output = anyhow::Result<()>> + Send + 'static) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(served)
}

/// A metadata service started with `args` (besides `--listen`).
pub async fn spawn_metadata(args: &[&str]) -> TestApp<MetadataServiceClient<Channel>> {
    let app = metadata::Application::build(config("metadata", args)).await.expect("metadata builds");
    let address = app.local_address();
    start(address, |shutdown| spawn_served(app.run_until_stopped(shutdown)), MetadataServiceClient::new).await
}

/// A rating service started with `args` (besides `--listen`).
pub async fn spawn_rating(args: &[&str]) -> TestApp<RatingServiceClient<Channel>> {
    let app = rating::Application::build(config("rating", args)).await.expect("rating builds");
    let address = app.local_address();
    start(address, |shutdown| spawn_served(app.run_until_stopped(shutdown)), RatingServiceClient::new).await
}

/// A movie service calling `metadata` and `rating` (static discovery), with
/// `args` besides.
pub async fn spawn_movie(metadata: &str, rating: &str, args: &[&str]) -> TestApp<MovieServiceClient<Channel>> {
    let peers = ["--metadata-addrs", metadata, "--rating-addrs", rating];
    let args: Vec<&str> = peers.into_iter().chain(args.iter().copied()).collect();
    let app = movie::Application::build(config("movie", &args)).await.expect("movie builds");
    let address = app.local_address();
    start(address, |shutdown| spawn_served(app.run_until_stopped(shutdown)), MovieServiceClient::new).await
}

//! The movie service: `GetMovieDetails` returns a movie's metadata and its
//! aggregated rating, fetched concurrently from the metadata and rating
//! services found through discovery.
//!
//! Layers: [`handler`] (gRPC mapping) → [`controller`] (rules) →
//! [`gateway`] (clients of the other services), over [`model`].

pub mod controller;
pub mod gateway;
pub mod handler;
pub mod model;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use contract::api::movie_service_server::MovieServiceServer;
use contract::service::MOVIE;
use controller::{MovieController, RatingFailurePolicy};
use gateway::GrpcGateway;
use handler::MovieHandler;
use platform::{
    discovery::{DiscoveryArgs, Registry, StaticRegistry},
    security::tls::{ClientTls, UpstreamTlsArgs},
    server::{BoundServer, ServerArgs, ServiceSettings},
    shutdown::CancellationToken,
    upstream::{Upstream, UpstreamSettings},
};
use tonic::{server::NamedService, service::Routes};

/// Settings of the movie service, from flags or environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "movie", version, about = "Serves movie details: metadata plus aggregated rating (MovieService).")]
pub struct Config {
    /// Address to listen on for gRPC
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8083")]
    pub listen: SocketAddr,

    /// Metadata service instances (comma-separated host:port) used with static discovery; with dns discovery, each host is resolved to every address behind it (e.g. a headless Service's name)
    #[arg(long, env = "METADATA_ADDRS", value_delimiter = ',', default_value = "127.0.0.1:8081")]
    pub metadata_addrs: Vec<String>,

    /// Rating service instances (comma-separated host:port) used with static discovery; with dns discovery, each host is resolved to every address behind it (e.g. a headless Service's name)
    #[arg(long, env = "RATING_ADDRS", value_delimiter = ',', default_value = "127.0.0.1:8082")]
    pub rating_addrs: Vec<String>,

    /// Deadline of each call to the metadata or rating service, retries on other instances included; a caller's shorter deadline (its grpc-timeout) wins
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub upstream_timeout: Duration,

    /// How often the healthy instances of each dependency are looked up again (in Consul, or in DNS with dns discovery); an instance that refuses a call also sets off a lookup at once
    #[arg(long, env = "DISCOVERY_REFRESH", default_value = "2s", value_parser = humantime::parse_duration)]
    pub discovery_refresh: Duration,

    /// When the rating service is down or failing: `omit` answers without a rating (header x-rating-status: unavailable), `fail` answers UNAVAILABLE
    #[arg(long, env = "ON_RATING_FAILURE", value_enum, default_value = "omit")]
    pub on_rating_failure: RatingFailurePolicy,

    #[command(flatten)]
    pub upstream_tls: UpstreamTlsArgs,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub discovery: DiscoveryArgs,
}

/// The gRPC routes of the service, calling its dependencies found in
/// `registry`, over TLS when `upstream_tls` is given.
pub fn routes(config: &Config, registry: Arc<dyn Registry>, upstream_tls: Option<ClientTls>) -> Routes {
    let settings = UpstreamSettings {
        refresh_interval: config.discovery_refresh,
        request_timeout: config.upstream_timeout,
        tls: upstream_tls,
        max_message_size: config.server.max_message_size(),
        ..UpstreamSettings::default()
    };
    let limit = settings.max_message_size;
    let metadata = Upstream::new(controller::metadata_service(), registry.clone(), settings.clone());
    let rating = Upstream::new(controller::rating_service(), registry, settings);
    let controller =
        MovieController::new(GrpcGateway::new(metadata), GrpcGateway::new(rating), config.on_rating_failure);
    let server = MovieServiceServer::new(MovieHandler::new(Arc::new(controller)))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    Routes::new(server)
}

type Handler = MovieHandler<GrpcGateway, GrpcGateway>;

/// A movie service whose listener is bound: its address is known, and it
/// serves once [`Application::run_until_stopped`] is called.
pub struct Application {
    server: BoundServer,
    registry: Arc<dyn Registry>,
    upstream_tls: Option<ClientTls>,
    config: Config,
}

impl Application {
    /// Checks the settings and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let peers = StaticRegistry::new()
            .with_service(controller::metadata_service(), &config.metadata_addrs)?
            .with_service(controller::rating_service(), &config.rating_addrs)?;
        let registry = config.discovery.registry(peers)?;
        let upstream_tls = config.upstream_tls.client_tls()?;
        let served = vec![<MovieServiceServer<Handler> as NamedService>::NAME];
        let settings = ServiceSettings::from_args(MOVIE, served, config.listen, &config.server, &config.discovery);
        tracing::info!(listen = %config.listen, discovery = %registry.describe(), upstream_timeout = ?config.upstream_timeout,
            on_rating_failure = ?config.on_rating_failure, upstream_tls = upstream_tls.as_ref().map(tracing::field::display),
            "starting movie service");
        let server = BoundServer::bind(settings).await?;
        Ok(Self { server, registry, upstream_tls, config })
    }

    /// The address the listener is bound to (the real port when asked for 0).
    pub fn local_address(&self) -> SocketAddr {
        self.server.local_address()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let routes = routes(&self.config, self.registry.clone(), self.upstream_tls);
        self.server.run(routes, self.registry, std::future::ready(()), shutdown).await?;
        Ok(())
    }
}

impl platform::entry::ServiceConfig for Config {
    const TRACED_CRATES: &'static [&'static str] = &[env!("CARGO_CRATE_NAME")];

    fn server(&self) -> &ServerArgs {
        &self.server
    }
}

/// Builds the service, then serves until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config).await?.run_until_stopped(shutdown).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[tokio::test]
    async fn upstream_tls_settings_are_checked_before_the_service_listens() {
        let argv = ["movie", "--listen", "127.0.0.1:0", "--upstream-tls-domain", "metadata.internal"];
        let config = Config::try_parse_from(argv).unwrap();
        let Some(error) = Application::build(config).await.err() else {
            panic!("movie started with a server name but no CA to check it against");
        };
        assert_eq!(
            error.to_string(),
            "--upstream-tls-domain (UPSTREAM_TLS_DOMAIN) needs --upstream-tls-ca (UPSTREAM_TLS_CA)"
        );
    }
}

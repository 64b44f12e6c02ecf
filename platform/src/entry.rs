//! The `main` of every service binary: parse the configuration (flags and
//! environment), set up telemetry, and run until SIGINT or SIGTERM, on
//! tokio's multi-threaded runtime.
use std::future::Future;

use crate::{config::ServerArgs, shutdown, shutdown::CancellationToken, telemetry};

/// The configuration of a service binary: its own flags and the ones every
/// service shares.
pub trait ServiceConfig: clap::Parser {
    fn server(&self) -> &ServerArgs;
}

/// Runs a service: `run` gets the parsed configuration and the token that
/// the first SIGINT/SIGTERM cancels.
pub fn run_service<C, F, E>(run: impl FnOnce(C, CancellationToken) -> F) -> Result<(), E>
where
    C: ServiceConfig,
    F: Future<Output = Result<(), E>>,
    E: From<std::io::Error>,
{
    let config = C::parse();
    let name = C::command().get_name().to_string();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        // Dropped after the service has stopped: the last spans are flushed.
        let _telemetry = telemetry::init(config.server().logging.log_format, &name);
        run(config, shutdown::on_signal()).await
    })
}

//! The `main` of every service binary: parse the configuration (flags and
//! environment), set up telemetry, and run until SIGINT or SIGTERM, on
//! tokio's multi-threaded runtime with `--worker-threads` workers.
use std::{future::Future, num::NonZeroUsize};

use crate::{server::ServerArgs, shutdown, shutdown::CancellationToken};

/// The configuration of a service binary: its own flags and the ones every
/// service shares.
pub trait ServiceConfig: clap::Parser {
    /// The crates whose spans and events go into this service's traces,
    /// besides platform's and contract's: the service's own, and any other
    /// crate of the suite it runs on (`sql_store`).
    const TRACED_CRATES: &'static [&'static str];

    fn server(&self) -> &ServerArgs;
}

/// The suite's crates every service runs on.
const PLATFORM_CRATES: [&str; 2] = [env!("CARGO_CRATE_NAME"), "contract"];

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
    runtime(config.server().worker_threads)?.block_on(async {
        // Dropped after the service has stopped: the last spans are flushed.
        let traced = PLATFORM_CRATES.into_iter().chain(C::TRACED_CRATES.iter().copied());
        let _telemetry = telemetry::init(config.server().logging.log_format, &name, traced);
        run(config, shutdown::on_signal()).await
    })
}

/// tokio's multi-threaded runtime with `worker_threads` workers, or one per
/// core.
fn runtime(worker_threads: Option<NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads.get());
    }
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::server::ServerArgs;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn workers(args: &[&str]) -> usize {
        let probe = Probe::try_parse_from(args).unwrap();
        runtime(probe.server.worker_threads).unwrap().metrics().num_workers()
    }

    #[test]
    fn the_runtime_has_the_worker_threads_asked_for_or_one_per_core() {
        assert_eq!(workers(&["probe", "--worker-threads", "1"]), 1);
        assert_eq!(workers(&["probe", "--worker-threads", "3"]), 3);
        assert_eq!(workers(&["probe"]), std::thread::available_parallelism().unwrap().get());
        assert!(Probe::try_parse_from(["probe", "--worker-threads", "0"]).is_err());
    }
}

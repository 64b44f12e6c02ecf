//! The consumer running beside the server: it starts once the store is
//! prepared, tells the server when this instance is ready to answer (caught
//! up with the topic), and stops after the server has drained its calls.
use std::{future::Future, sync::Arc, time::Duration};

use platform::shutdown::CancellationToken;
use sql_store::UnusableDatabase;
use telemetry::Chain;
use tokio::{sync::Notify, task::JoinHandle};

use super::consumer::{EventConsumer, IngestError};
use crate::repository::RatingRepository;

/// Why ingestion ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum IngestionError {
    #[error(transparent)]
    Store(#[from] UnusableDatabase),
    #[error("the rating service cannot ingest the ratings topic")]
    Ingest(#[from] IngestError),
    #[error("ingestion failed")]
    Panicked(#[source] tokio::task::JoinError),
}

pub struct Ingestion {
    caught_up: Arc<Notify>,
    /// Its own token: ingestion goes on while the server drains.
    stop: CancellationToken,
    task: JoinHandle<Result<(), IngestionError>>,
}

impl Ingestion {
    /// Starts `consumer` once `prepared` (the store's preparation) is done.
    /// When ingestion cannot go on, it says so and cancels `service_stop`:
    /// an instance that no longer ingests must not keep answering.
    pub fn start<R: RatingRepository>(
        consumer: EventConsumer<R>,
        prepared: impl Future<Output = Result<(), UnusableDatabase>> + Send + 'static,
        service_stop: CancellationToken,
    ) -> Self {
        let caught_up = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (caught_up, stop) = (caught_up.clone(), stop.clone());
            async move {
                tokio::select! {
                    prepared = prepared => prepared?,
                    _ = stop.cancelled() => return Ok(()),
                }
                consumer.run(&caught_up, stop).await.map_err(|error| {
                    tracing::error!(error = %Chain(&error), "ingestion cannot go on; stopping");
                    service_stop.cancel();
                    IngestionError::from(error)
                })
            }
        });
        Self { caught_up, stop, task }
    }

    /// Resolves once this instance holds what the topic held when it
    /// started; never if ingestion ends first. For the server's readiness:
    /// one waiter.
    pub fn caught_up(&self) -> impl Future<Output = ()> + Send + 'static {
        let caught_up = self.caught_up.clone();
        async move { caught_up.notified().await }
    }

    /// Stops ingestion and waits for it to end, at most `timeout`.
    pub async fn stop(self, timeout: Duration) -> Result<(), IngestionError> {
        self.stop.cancel();
        match tokio::time::timeout(timeout, self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(panicked)) => Err(IngestionError::Panicked(panicked)),
            Err(_) => {
                tracing::warn!(?timeout, "ingestion did not stop in time");
                Ok(())
            }
        }
    }
}

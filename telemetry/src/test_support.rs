//! For the services' tests (feature `test-support`): the log events a test
//! caused, kept with their level, message and fields so that it can count
//! them and read them.
use std::{
    fmt,
    sync::{Arc, Mutex},
};

use tracing::{Level, subscriber::DefaultGuard};
use tracing_subscriber::{Layer, layer::SubscriberExt as _};

/// One event, its fields formatted as `tracing`'s text output shows them
/// (`Display` for `%field`, `Debug` otherwise).
#[derive(Clone, Debug)]
pub struct Event {
    pub level: Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl Event {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(field, _)| field == name).map(|(_, value)| value.as_str())
    }
}

/// Every event of this thread, kept while the value lives (it is the
/// thread's default subscriber until then, so a `#[tokio::test]` on its
/// default current-thread runtime sees everything its service code logs).
pub struct CapturedLogs {
    events: Arc<Mutex<Vec<Event>>>,
    _default: DefaultGuard,
}

impl CapturedLogs {
    pub fn start() -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Keep(events.clone()));
        Self { events, _default: tracing::subscriber::set_default(subscriber) }
    }

    /// The events at `level` whose message is `message`.
    pub fn events(&self, level: Level, message: &str) -> Vec<Event> {
        let events = self.events.lock().expect("no test thread panicked holding the log");
        events.iter().filter(|event| event.level == level && event.message == message).cloned().collect()
    }

    /// Every event kept, one per line, for a failed assertion to show.
    pub fn text(&self) -> String {
        let events = self.events.lock().expect("no test thread panicked holding the log");
        events.iter().map(|event| format!("{} {} {:?}\n", event.level, event.message, event.fields)).collect()
    }
}

struct Keep(Arc<Mutex<Vec<Event>>>);

impl<S: tracing::Subscriber> Layer<S> for Keep {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let event = Event { level: *event.metadata().level(), message: fields.message, fields: fields.others };
        self.0.lock().expect("no test thread panicked holding the log").push(event);
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(String, String)>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &tracing::field::Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.others.push((field.name().to_string(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_kept_with_their_level_message_and_fields() {
        let logs = CapturedLogs::start();
        let error = std::io::Error::other("refused");
        tracing::warn!(service = "rating", %error, held_back = 3_u64, "instance unavailable");
        tracing::info!("instance unavailable");
        tracing::warn!("something else");

        let warned = logs.events(Level::WARN, "instance unavailable");
        assert_eq!(warned.len(), 1, "{}", logs.text());
        assert_eq!(warned[0].field("service"), Some("rating"));
        assert_eq!(warned[0].field("error"), Some("refused"));
        assert_eq!(warned[0].field("held_back"), Some("3"));
        assert_eq!(warned[0].field("absent"), None);
        assert_eq!(logs.events(Level::INFO, "instance unavailable").len(), 1);
        drop(logs);
        // Not kept once the capture is dropped.
        tracing::warn!("instance unavailable");
    }
}

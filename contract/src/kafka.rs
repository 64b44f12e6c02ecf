//! What every Kafka client of the ratings topic agrees on: the connection
//! settings (`--kafka-brokers`, `--topic`), the partitioner, and the base
//! producer configuration. The rating service's write path and
//! ratingingester both produce to the topic: a key maps to one partition
//! only if both hash it the same way, and per-key order is what keeps one
//! user's events for a record in sequence.
use std::time::Duration;

use rdkafka::{
    ClientConfig,
    message::{Header, Headers, OwnedHeaders},
};

/// The ratings topic, unless configured otherwise.
pub const DEFAULT_TOPIC: &str = "ratings";

/// Where a broker listens on one laptop (the demo's and the README's).
pub const LOCAL_BROKERS: &str = "127.0.0.1:9092";

/// The partitioner of every producer of the ratings topic; murmur2 is also
/// what Java clients use.
pub const PARTITIONER: &str = "murmur2_random";

/// The Kafka connection, flattened into the clap configuration of every
/// binary that talks to the ratings topic.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...) [rating: ingestion from Kafka is off when unset; ratingingester: 127.0.0.1:9092 when unset]
    #[arg(long = "kafka-brokers", env = "KAFKA_BROKERS")]
    pub brokers: Option<String>,

    /// Topic of rating events
    #[arg(long, env = "RATINGS_TOPIC", default_value = DEFAULT_TOPIC)]
    pub topic: String,

    /// A librdkafka property for every Kafka client, KEY=VALUE, set after the suite's own (repeatable; in the environment, separated by ';'), e.g. security.protocol=SASL_SSL, sasl.mechanism=SCRAM-SHA-512, sasl.username=..., sasl.password=..., ssl.ca.location=...
    #[arg(long = "kafka-property", env = "KAFKA_PROPERTIES", value_delimiter = ';', value_parser = KafkaProperty::parse, hide_env_values = true)]
    pub properties: Vec<KafkaProperty>,
}

/// A librdkafka property given in the settings. Its value may be a secret
/// (a SASL password, a key), so `Debug` shows only the key of a property
/// whose name says it holds one.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaProperty {
    pub key: String,
    pub value: String,
}

impl KafkaProperty {
    /// Reads `KEY=VALUE` (the value may hold `=`).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok(Self { key: key.trim().to_owned(), value: value.to_owned() })
            }
            _ => Err("expected KEY=VALUE, e.g. security.protocol=SASL_SSL".to_owned()),
        }
    }

    /// Whether the property's name says its value is a secret.
    pub fn is_secret(&self) -> bool {
        ["password", "secret", "key", "token", "jaas", "credential"].iter().any(|word| self.key.contains(word))
    }
}

impl std::fmt::Debug for KafkaProperty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.is_secret() { "***" } else { self.value.as_str() };
        write!(f, "{}={value}", self.key)
    }
}

/// Sets `properties` on `config`, after (and so over) what it holds.
pub fn with_properties<'c>(config: &'c mut ClientConfig, properties: &[KafkaProperty]) -> &'c mut ClientConfig {
    for KafkaProperty { key, value } in properties {
        config.set(key, value);
    }
    config
}

impl KafkaArgs {
    /// The configured brokers, or the local default.
    pub fn brokers_or_local(&self) -> &str {
        self.brokers.as_deref().unwrap_or(LOCAL_BROKERS)
    }
}

/// How long at most a client waits between two attempts to reach a broker
/// it lost. librdkafka doubles the wait after each failed attempt up to
/// 10 s by default, so a broker back after a few seconds was reached again
/// only up to 10 s later, by the consumer and then by the producer; one
/// attempt a second per broker costs the broker nothing.
const RECONNECT_BACKOFF_MAX: &str = "1000";

/// A client of `brokers` named `client_id` in the broker's logs.
pub fn client_config(brokers: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX);
    config
}

/// A producer of the ratings topic that never duplicates or reorders what it
/// sends (idempotent, acks from all in-sync replicas), hashes keys with
/// [`PARTITIONER`], never creates topics by publishing, and gives up on a
/// message after `message_timeout` (at least a millisecond).
pub fn producer_config(brokers: &str, client_id: &str, message_timeout: Duration) -> ClientConfig {
    let mut config = client_config(brokers, client_id);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", PARTITIONER)
        .set("allow.auto.create.topics", "false")
        .set("message.timeout.ms", message_timeout.as_millis().max(1).to_string());
    config
}

/// Message headers from name/value pairs (e.g. a `traceparent`); `None`
/// when there are none, so a message without them carries no header block.
pub fn headers(pairs: &[(String, String)]) -> Option<OwnedHeaders> {
    (!pairs.is_empty()).then(|| {
        pairs.iter().fold(OwnedHeaders::new_with_capacity(pairs.len()), |headers, (key, value)| {
            headers.insert(Header { key, value: Some(value.as_str()) })
        })
    })
}

/// A message's headers whose values are text, as name/value pairs.
pub fn text_headers(headers: Option<&impl Headers>) -> Vec<(&str, &str)> {
    headers
        .map(|headers| {
            headers.iter().filter_map(|header| Some((header.key, std::str::from_utf8(header.value?).ok()?))).collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[test]
    fn brokers_are_optional_and_the_topic_defaults_to_ratings() {
        let probe = Probe::try_parse_from(["probe"]).unwrap();
        assert_eq!((probe.kafka.brokers.as_deref(), probe.kafka.topic.as_str()), (None, "ratings"));
        assert_eq!(probe.kafka.brokers_or_local(), "127.0.0.1:9092");
        let probe = Probe::try_parse_from(["probe", "--kafka-brokers", "a:1,b:2", "--topic", "imdb"]).unwrap();
        assert_eq!((probe.kafka.brokers_or_local(), probe.kafka.topic.as_str()), ("a:1,b:2", "imdb"));
    }

    #[test]
    fn headers_round_trip_as_text_pairs() {
        assert!(headers(&[]).is_none());
        let owned = headers(&[("traceparent".into(), "00-abc-def-01".into()), ("b".into(), "2".into())]);
        assert_eq!(text_headers(owned.as_ref()), [("traceparent", "00-abc-def-01"), ("b", "2")]);
    }

    #[test]
    fn producers_share_the_partitioner_and_the_delivery_guarantees() {
        let config = producer_config("k:9092", "test", Duration::from_secs(5));
        for (key, value) in [
            ("bootstrap.servers", "k:9092"),
            ("client.id", "test"),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("partitioner", "murmur2_random"),
            ("allow.auto.create.topics", "false"),
            ("message.timeout.ms", "5000"),
        ] {
            assert_eq!(config.get(key), Some(value), "{key}");
        }
        assert_eq!(producer_config("k", "t", Duration::ZERO).get("message.timeout.ms"), Some("1"));
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;

    #[test]
    fn a_property_is_key_equals_value_and_a_secret_never_shows() {
        let password = KafkaProperty::parse("sasl.password=hunter2=x").unwrap();
        assert_eq!((password.key.as_str(), password.value.as_str()), ("sasl.password", "hunter2=x"));
        assert_eq!(format!("{password:?}"), "sasl.password=***");
        let protocol = KafkaProperty::parse("security.protocol=SASL_SSL").unwrap();
        assert_eq!(format!("{protocol:?}"), "security.protocol=SASL_SSL");
        assert!(KafkaProperty::parse("no-equals-sign").is_err());
        assert!(KafkaProperty::parse("=value").is_err());
    }

    #[test]
    fn given_properties_win_over_the_suites_own() {
        let mut config = producer_config("127.0.0.1:9092", "test", Duration::from_secs(5));
        let given =
            [KafkaProperty::parse("message.timeout.ms=9000").unwrap(), KafkaProperty::parse("client.rack=r1").unwrap()];
        with_properties(&mut config, &given);
        assert_eq!(config.get("message.timeout.ms"), Some("9000"));
        assert_eq!(config.get("client.rack"), Some("r1"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
    }
}

//! The rating ingester: reads rating events from a file (or stdin),
//! validates all of them, and only then publishes them to the Kafka topic the
//! rating service consumes.
//!
//! [`input`] reads and validates, one record at a time, [`publish`] talks to
//! Kafka, and [`run`] ties them together in two passes over the input, so
//! that memory stays bounded whatever its size; [`summary`] reports the run.
//! With `--validate-only` the run stops after the first pass: a producer
//! written in another language checks its output against the contract
//! without a broker.
//! What a user must read (each refused record as `FILE:record N: reason`,
//! the final summary) goes to stderr as plain lines like a compiler's
//! diagnostics, or, with `--summary json`, the summary goes to stdout as one
//! JSON object for machines; operational detail goes through `tracing`.
pub mod input;
pub mod publish;
pub mod summary;

use std::{io::IsTerminal, ops::ControlFlow, path::PathBuf, time::Duration};

use contract::{
    kafka::KafkaArgs,
    rating::{InvalidRangeSettings, RatingRange, RatingRangeArgs},
};

use crate::{
    input::{InputError, InputSource, Refusal},
    publish::{Compression, Delivery, PublishError, PublishSettings, Publisher},
    summary::SummaryFormat,
};

/// Settings of the ingester, from flags or environment variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ratingingester",
    version,
    about = "Validates rating events from a JSON file, then publishes them to Kafka for the rating service.",
    long_about = "Validates rating events from a JSON file, then publishes them to Kafka for the rating service.\n\n\
        The file holds a JSON array of events, or one JSON object per line. An event looks like\n\
        {\"recordId\": \"1\", \"recordType\": \"movie\", \"userId\": \"105\", \"ratingValue\": 5, \"eventType\": \"put\"}\n\
        (eventType put or delete). Nothing is published unless every event is valid, or --skip-invalid is given.\n\n\
        --validate-only checks a file against the event contract without a broker, and publishes nothing."
)]
pub struct Config {
    /// File of rating events: a JSON array or one JSON object per line; `-` reads stdin (into a temporary file, as the input is read twice)
    #[arg(default_value = "ratingsdata.json")]
    pub file: PathBuf,

    /// The topic is created by the rating service, never by the ingester
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Compression of produced batches (zstd needs a librdkafka built with it)
    #[arg(long, env = "KAFKA_COMPRESSION", value_enum, default_value_t = Compression::Lz4)]
    pub compression: Compression,

    #[command(flatten)]
    pub ratings: RatingRangeArgs,

    #[command(flatten)]
    pub logging: telemetry::LogArgs,

    /// Bound on reaching the broker, on each event's delivery, and on the final wait for delivery reports
    #[arg(long, env = "PUBLISH_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Publish the valid events and report the invalid ones, instead of publishing nothing
    #[arg(long, env = "SKIP_INVALID")]
    pub skip_invalid: bool,

    /// The summary at the end of every run, success or failure: for people, or for machines
    #[arg(long, env = "SUMMARY_FORMAT", value_enum, default_value_t = SummaryFormat::Text)]
    pub summary: SummaryFormat,

    /// Check the file against the event contract as a publishing run would, and stop there: no broker needed, nothing published
    #[arg(long, env = "VALIDATE_ONLY")]
    pub validate_only: bool,
}

impl Config {
    pub fn input_source(&self) -> InputSource {
        InputSource::from_argument(&self.file)
    }

    pub fn rating_range(&self) -> Result<RatingRange, IngestError> {
        Ok(self.ratings.range()?)
    }

    pub fn publish_settings(&self) -> PublishSettings {
        PublishSettings {
            brokers: self.kafka.brokers_or_local().to_string(),
            topic: self.kafka.topic.clone(),
            compression: self.compression,
            timeout: self.timeout,
            properties: self.kafka.properties.clone(),
        }
    }
}

/// Why nothing, or not everything, was published.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Range(#[from] InvalidRangeSettings),
    #[error("{input}: {error}")]
    Input { input: InputSource, error: InputError },
    #[error("{input}: {refusal}")]
    Refused { input: InputSource, refusal: Refusal },
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// What became of the events; `None` when they were only validated
    /// (`--validate-only`).
    pub delivery: Option<Delivery>,
    /// The valid events, published or to publish.
    pub events: usize,
    /// Invalid records left out with `--skip-invalid`.
    pub skipped: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.delivery {
            Some(delivery) => write!(f, "{delivery}")?,
            None => {
                let records = self.events + self.skipped;
                return write!(
                    f,
                    "{} of {records} records are valid rating events; nothing was published (--validate-only)",
                    self.events
                );
            }
        }
        if self.skipped > 0 {
            write!(f, "; skipped {} invalid records (reported above)", self.skipped)?;
        }
        Ok(())
    }
}

/// What the input held, once it was read and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputCounts {
    /// Records read, valid or not.
    pub records: usize,
    /// Invalid records found.
    pub invalid: usize,
    /// Invalid records left out with `--skip-invalid`; 0 when the input was refused.
    pub skipped: usize,
    /// Events to publish; 0 when the input was refused.
    pub events: usize,
}

/// How a run ended, with what it had counted by then.
#[derive(Debug)]
pub struct Report {
    pub topic: String,
    /// `None` when the run stopped before the input was validated.
    pub input: Option<InputCounts>,
    pub result: Result<Summary, IngestError>,
}

impl Report {
    /// What became of the events, once publishing started (whether or not
    /// all of them were acknowledged).
    pub fn delivery(&self) -> Option<&Delivery> {
        match &self.result {
            Ok(summary) => summary.delivery.as_ref(),
            Err(IngestError::Publish(PublishError::Undelivered(delivery))) => Some(delivery),
            Err(_) => None,
        }
    }
}

/// Validates the whole input, then publishes it. Refused records are
/// written to stderr as they are found; the caller reports the result.
pub fn run(config: &Config) -> Report {
    let mut input = None;
    let result = ingest(config, &mut input);
    Report { topic: config.kafka.topic.clone(), input, result }
}

/// [`run`], noting the input's counts in `counts` as soon as they are known.
fn ingest(config: &Config, counts: &mut Option<InputCounts>) -> Result<Summary, IngestError> {
    let range = config.rating_range()?;
    let source = config.input_source();
    let input_error = |error| IngestError::Input { input: source.clone(), error };
    // Settings are checked before a possibly large input is read.
    let publisher = if config.validate_only { None } else { Some(Publisher::new(config.publish_settings())?) };

    let mut input = input::open(&source).map_err(input_error)?;
    let scan = input
        .scan(range, |record| {
            if let Err(rejection) = record {
                eprintln!("{source}:{rejection}");
            }
            ControlFlow::Continue(())
        })
        .map_err(input_error)?;
    // What a refusal reports: nothing skipped, nothing to publish.
    let found = InputCounts { records: scan.records, invalid: scan.invalid, skipped: 0, events: 0 };
    *counts = Some(found);
    let events = scan
        .events_to_publish(config.skip_invalid)
        .map_err(|refusal| IngestError::Refused { input: source.clone(), refusal })?;
    let skipped = found.invalid;
    *counts = Some(InputCounts { skipped, events, ..found });
    tracing::info!(input = %source, events, skipped, "input validated");
    let Some(publisher) = publisher else {
        return Ok(Summary { delivery: None, events, skipped });
    };

    let partitions = publisher.check_topic()?;
    input.ensure_unchanged().map_err(input_error)?;
    tracing::info!(brokers = %config.kafka.brokers_or_local(), topic = %config.kafka.topic, partitions, "publishing");
    let progress = publish::progress_bar(events, std::io::stderr().is_terminal());
    let delivery =
        input.replay_alongside(&scan, range, |replayed| publisher.publish(replayed, events as u64, &progress))?;
    Ok(Summary { delivery: Some(delivery), events, skipped })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn defaults_work_on_one_laptop() {
        let config = Config::try_parse_from(["ratingingester"]).unwrap();
        assert_eq!(config.input_source(), InputSource::File(PathBuf::from("ratingsdata.json")));
        assert_eq!(config.publish_settings().brokers, "127.0.0.1:9092");
        assert_eq!(config.kafka.topic, "ratings");
        assert_eq!(config.compression, Compression::Lz4);
        assert_eq!(config.rating_range().unwrap(), RatingRange::default());
        assert_eq!(config.timeout, Duration::from_secs(30));
        assert!(!config.skip_invalid);
        assert_eq!(config.summary, SummaryFormat::Text);
        assert!(!config.validate_only);
    }

    #[test]
    fn flags_are_parsed() {
        let config = Config::try_parse_from([
            "ratingingester",
            "-",
            "--kafka-brokers",
            "a:1,b:2",
            "--topic",
            "imdb-ratings",
            "--compression",
            "gzip",
            "--min-rating",
            "-2",
            "--max-rating",
            "10",
            "--timeout",
            "1m 30s",
            "--skip-invalid",
            "--summary",
            "json",
            "--validate-only",
        ])
        .unwrap();
        assert_eq!(config.input_source(), InputSource::Stdin);
        assert_eq!(config.publish_settings().brokers, "a:1,b:2");
        assert_eq!(config.kafka.topic, "imdb-ratings");
        assert_eq!(config.compression, Compression::Gzip);
        assert_eq!(config.rating_range().unwrap(), RatingRange::new(-2, 10).unwrap());
        assert_eq!(config.timeout, Duration::from_secs(90));
        assert!(config.skip_invalid);
        assert_eq!(config.summary, SummaryFormat::Json);
        assert!(config.validate_only);
    }

    #[test]
    fn bad_flag_values_are_refused() {
        assert!(Config::try_parse_from(["ratingingester", "--compression", "brotli"]).is_err());
        assert!(Config::try_parse_from(["ratingingester", "--timeout", "soon"]).is_err());
        assert!(Config::try_parse_from(["ratingingester", "--summary", "yaml"]).is_err());
        let config = Config::try_parse_from(["ratingingester", "--min-rating", "5", "--max-rating", "1"]).unwrap();
        assert_eq!(
            telemetry::Chain(&config.rating_range().unwrap_err()).to_string(),
            "invalid --min-rating/--max-rating: the lowest rating 5 is above the highest 1"
        );
    }

    #[test]
    fn input_errors_name_the_source() {
        let config = Config::try_parse_from(["ratingingester", "/nonexistent/ratings.json"]).unwrap();
        let report = run(&config);
        assert_eq!(report.input, None, "nothing was read");
        assert_eq!(report.delivery(), None, "nothing was published");
        assert_eq!(
            report.result.unwrap_err().to_string(),
            "/nonexistent/ratings.json: no such file (name the events file as the first argument, or `-` for stdin)"
        );
    }

    #[test]
    fn validate_only_checks_the_input_without_a_broker() {
        let file = std::env::temp_dir().join(format!("ratingingester-validate-{}.json", std::process::id()));
        let valid = r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 4}"#;
        let invalid = r#"{"recordId": "1", "recordType": "movie", "userId": "2", "ratingValue": 9}"#;
        // No broker listens there: a publishing run would fail to reach it.
        let validating = |contents: String, extra: &[&str]| {
            std::fs::write(&file, contents).unwrap();
            let path = file.to_str().unwrap();
            let arguments = [&["ratingingester", path, "--validate-only", "--kafka-brokers", "127.0.0.1:1"][..], extra];
            run(&Config::try_parse_from(arguments.concat()).unwrap())
        };

        let report = validating(format!("{valid}\n{valid}\n"), &[]);
        assert_eq!(report.input, Some(InputCounts { records: 2, invalid: 0, skipped: 0, events: 2 }));
        assert_eq!(report.result.as_ref().unwrap(), &Summary { delivery: None, events: 2, skipped: 0 });
        assert_eq!(report.delivery(), None, "nothing was published");

        let report = validating(format!("{valid}\n{invalid}\n"), &[]);
        assert!(matches!(report.result, Err(IngestError::Refused { .. })), "{:?}", report.result);
        // The same rules as a publishing run: --skip-invalid accepts what it would publish.
        let report = validating(format!("{valid}\n{invalid}\n"), &["--skip-invalid"]);
        let _ = std::fs::remove_file(&file);
        assert_eq!(report.result.unwrap(), Summary { delivery: None, events: 1, skipped: 1 });
    }

    #[test]
    fn a_failed_run_reports_the_input_counts_it_knew() {
        let file = std::env::temp_dir().join(format!("ratingingester-counts-{}.json", std::process::id()));
        std::fs::write(
            &file,
            concat!(
                r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 4}"#,
                "\n",
                r#"{"recordId": "1", "recordType": 1, "userId": "2", "ratingValue": 3}"#,
            ),
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let nowhere = ["--kafka-brokers", "127.0.0.1:1", "--timeout", "200ms"];

        let refused = run(&Config::try_parse_from([&["ratingingester", path][..], &nowhere].concat()).unwrap());
        assert_eq!(refused.input, Some(InputCounts { records: 2, invalid: 1, skipped: 0, events: 0 }));
        assert!(matches!(refused.result, Err(IngestError::Refused { .. })), "{:?}", refused.result);
        assert_eq!(refused.delivery(), None);

        let skipping = ["ratingingester", path, "--skip-invalid"];
        let unreachable = run(&Config::try_parse_from([&skipping[..], &nowhere].concat()).unwrap());
        let _ = std::fs::remove_file(&file);
        assert_eq!(unreachable.input, Some(InputCounts { records: 2, invalid: 1, skipped: 1, events: 1 }));
        assert!(
            matches!(unreachable.result, Err(IngestError::Publish(PublishError::Unreachable { .. }))),
            "{:?}",
            unreachable.result
        );
        assert_eq!(unreachable.delivery(), None, "publishing never started");
    }
}

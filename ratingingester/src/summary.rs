//! The end of a run, summed up for whoever runs the tool: a line on stderr
//! for people (`--summary text`), or one JSON object on stdout for machines
//! (`--summary json`), written whether the run succeeded or not.
use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use serde::Serialize;
use telemetry::Chain;

use crate::{IngestError, Report, Summary, input::InputError, publish::PublishError};

/// How a run is summed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    /// A line on stderr: what was sent, or the error (people).
    Text,
    /// One JSON object on stdout with the counts, the outcome and the error; the diagnostics stay on stderr (machines).
    Json,
}

/// How a run ended, for machines to branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every event was acknowledged.
    Ok,
    /// With `--validate-only`: the input may be published as it is (with
    /// `--skip-invalid`, its valid records); nothing was.
    Valid,
    /// The input was read and refused (invalid records, a broken array, no
    /// valid event, empty, not JSON): nothing was published.
    InvalidInput,
    /// Publishing started and some events were not acknowledged.
    Undelivered,
    /// Anything else stopped the run before publishing: the settings, a
    /// missing or unreadable file, a file changed while it was validated, no
    /// broker, no topic.
    Error,
}

impl Outcome {
    pub fn of(result: &Result<Summary, IngestError>) -> Self {
        // No wildcard: a new error must be placed deliberately.
        match result {
            Ok(summary) if summary.delivery.is_none() => Outcome::Valid,
            Ok(_) => Outcome::Ok,
            Err(IngestError::Refused { .. }) => Outcome::InvalidInput,
            Err(IngestError::Input { error, .. }) => match error {
                InputError::Empty | InputError::EmptyArray | InputError::NotJson { .. } => Outcome::InvalidInput,
                InputError::NotFound | InputError::Unreadable(_) | InputError::Spool(_) | InputError::Changed => {
                    Outcome::Error
                }
            },
            Err(IngestError::Publish(PublishError::Undelivered(_))) => Outcome::Undelivered,
            Err(IngestError::Range(_) | IngestError::Publish(_)) => Outcome::Error,
        }
    }
}

/// The JSON summary of a run. The input's counts are null when the run
/// stopped before the input was validated, `duration_ms` when publishing
/// never started (`sent` and `failed` are 0 then). Once publishing started,
/// `events == sent + failed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonSummary<'a> {
    pub outcome: Outcome,
    pub topic: &'a str,
    /// Records read, valid or not.
    pub records: Option<usize>,
    /// Invalid records found.
    pub invalid: Option<usize>,
    /// Invalid records left out with `--skip-invalid`.
    pub skipped: Option<usize>,
    /// Events to publish: 0 when the input was refused.
    pub events: Option<usize>,
    /// Events the broker acknowledged.
    pub sent: u64,
    /// Events not acknowledged, sent or not.
    pub failed: u64,
    /// How many events each failure reason hit.
    pub failures: &'a BTreeMap<String, u64>,
    /// Publishing time, from the first send to the last delivery report.
    pub duration_ms: Option<f64>,
    /// The error with its sources, `a: b: c`; null on success.
    pub error: Option<String>,
}

static NO_FAILURES: BTreeMap<String, u64> = BTreeMap::new();

impl<'a> JsonSummary<'a> {
    pub fn of(report: &'a Report) -> Self {
        let input = report.input;
        let delivery = report.delivery();
        JsonSummary {
            outcome: Outcome::of(&report.result),
            topic: &report.topic,
            records: input.map(|input| input.records),
            invalid: input.map(|input| input.invalid),
            skipped: input.map(|input| input.skipped),
            events: input.map(|input| input.events),
            sent: delivery.map_or(0, |delivery| delivery.delivered),
            failed: delivery.map_or(0, |delivery| delivery.failed()),
            failures: delivery.map_or(&NO_FAILURES, |delivery| &delivery.failures),
            // Whole microseconds: enough for a rate, and no float noise.
            duration_ms: delivery.map(|delivery| delivery.elapsed.as_micros() as f64 / 1000.0),
            error: report.result.as_ref().err().map(|error| Chain(error).to_string()),
        }
    }
}

/// Writes the end of `report`: the error, if any, to `stderr` as
/// `error: ...`; then with [`SummaryFormat::Text`] the summary line of a
/// success to `stderr`, with [`SummaryFormat::Json`] one JSON object and a
/// newline to `stdout`.
pub fn write(
    report: &Report,
    format: SummaryFormat,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> io::Result<()> {
    if let Err(error) = &report.result {
        writeln!(stderr, "error: {}", Chain(error))?;
    }
    match format {
        SummaryFormat::Text => {
            if let Ok(summary) = &report.result {
                writeln!(stderr, "{summary}")?;
            }
        }
        SummaryFormat::Json => {
            serde_json::to_writer(&mut *stdout, &JsonSummary::of(report))?;
            writeln!(stdout)?;
        }
    }
    stdout.flush()
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::Duration};

    use serde_json::json;

    use super::*;
    use crate::{
        InputCounts,
        input::{InputSource, Refusal},
        publish::Delivery,
    };

    fn delivery(delivered: u64, failures: &[(&str, u64)]) -> Delivery {
        let failures: BTreeMap<String, u64> =
            failures.iter().map(|(reason, count)| ((*reason).to_owned(), *count)).collect();
        Delivery {
            topic: "ratings".into(),
            events: delivered + failures.values().sum::<u64>(),
            delivered,
            failures,
            elapsed: Duration::from_micros(1_500_250),
        }
    }

    fn report(input: Option<InputCounts>, result: Result<Summary, IngestError>) -> Report {
        Report { topic: "ratings".into(), input, result }
    }

    fn counts(records: usize, invalid: usize, skipped: usize, events: usize) -> Option<InputCounts> {
        Some(InputCounts { records, invalid, skipped, events })
    }

    fn json(report: &Report) -> serde_json::Value {
        serde_json::to_value(JsonSummary::of(report)).unwrap()
    }

    /// What `write` puts on stdout and on stderr.
    fn written(report: &Report, format: SummaryFormat) -> (String, String) {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        write(report, format, &mut stdout, &mut stderr).unwrap();
        (String::from_utf8(stdout).unwrap(), String::from_utf8(stderr).unwrap())
    }

    #[test]
    fn a_success_has_every_count() {
        let success =
            report(counts(21, 1, 1, 20), Ok(Summary { delivery: Some(delivery(20, &[])), events: 20, skipped: 1 }));
        assert_eq!(
            json(&success),
            json!({
                "outcome": "ok", "topic": "ratings",
                "records": 21, "invalid": 1, "skipped": 1, "events": 20,
                "sent": 20, "failed": 0, "failures": {},
                "duration_ms": 1500.25, "error": null,
            })
        );
    }

    #[test]
    fn undelivered_events_are_counted_by_reason() {
        let delivery = delivery(17, &[("Message timed out", 2), ("not sent after the first failure", 1)]);
        let undelivered =
            report(counts(20, 0, 0, 20), Err(IngestError::Publish(PublishError::Undelivered(delivery.clone()))));
        assert_eq!(
            json(&undelivered),
            json!({
                "outcome": "undelivered", "topic": "ratings",
                "records": 20, "invalid": 0, "skipped": 0, "events": 20,
                "sent": 17, "failed": 3,
                "failures": {"Message timed out": 2, "not sent after the first failure": 1},
                "duration_ms": 1500.25, "error": delivery.to_string(),
            })
        );
    }

    #[test]
    fn refused_input_is_counted_and_nothing_is_sent() {
        let refused = report(
            counts(5, 2, 0, 0),
            Err(IngestError::Refused {
                input: InputSource::File(PathBuf::from("ratings.json")),
                refusal: Refusal::InvalidRecords { invalid: 2, records: 5 },
            }),
        );
        assert_eq!(
            json(&refused),
            json!({
                "outcome": "invalid_input", "topic": "ratings",
                "records": 5, "invalid": 2, "skipped": 0, "events": 0,
                "sent": 0, "failed": 0, "failures": {}, "duration_ms": null,
                "error": "ratings.json: 2 of 5 records are invalid; nothing was published (--skip-invalid publishes the valid ones)",
            })
        );
    }

    #[test]
    fn a_run_stopped_before_reading_knows_no_input_counts() {
        let missing = report(
            None,
            Err(IngestError::Input {
                input: InputSource::File(PathBuf::from("missing.json")),
                error: InputError::NotFound,
            }),
        );
        let summary = json(&missing);
        assert_eq!(summary["outcome"], "error");
        for unknown in ["records", "invalid", "skipped", "events", "duration_ms"] {
            assert!(summary[unknown].is_null(), "{unknown}: {summary}");
        }
        assert_eq!((summary["sent"].as_u64(), summary["failed"].as_u64()), (Some(0), Some(0)));
        assert!(summary["error"].as_str().unwrap().starts_with("missing.json: no such file"), "{summary}");

        let empty = report(None, Err(IngestError::Input { input: InputSource::Stdin, error: InputError::EmptyArray }));
        assert_eq!(json(&empty)["outcome"], "invalid_input");
    }

    #[test]
    fn text_writes_the_summary_line_or_the_error_to_stderr_only() {
        let success =
            report(counts(20, 0, 0, 20), Ok(Summary { delivery: Some(delivery(20, &[])), events: 20, skipped: 0 }));
        assert_eq!(
            written(&success, SummaryFormat::Text),
            (String::new(), "sent 20 of 20 rating events to topic \"ratings\" in 1.50s, 0 failed\n".to_owned())
        );
        let failure = report(None, Err(IngestError::Input { input: InputSource::Stdin, error: InputError::Empty }));
        assert_eq!(
            written(&failure, SummaryFormat::Text),
            (String::new(), "error: <stdin>: the input is empty: no rating events to publish\n".to_owned())
        );
    }

    #[test]
    fn a_validation_only_run_says_nothing_was_published() {
        let validated = report(counts(21, 1, 1, 20), Ok(Summary { delivery: None, events: 20, skipped: 1 }));
        assert_eq!(
            json(&validated),
            json!({
                "outcome": "valid", "topic": "ratings",
                "records": 21, "invalid": 1, "skipped": 1, "events": 20,
                "sent": 0, "failed": 0, "failures": {},
                "duration_ms": null, "error": null,
            })
        );
        assert_eq!(
            written(&validated, SummaryFormat::Text),
            (
                String::new(),
                "20 of 21 records are valid rating events; nothing was published (--validate-only)\n".to_owned()
            )
        );
    }

    #[test]
    fn json_writes_one_object_on_stdout_and_the_error_on_stderr() {
        let success =
            report(counts(20, 0, 0, 20), Ok(Summary { delivery: Some(delivery(20, &[])), events: 20, skipped: 0 }));
        let (stdout, stderr) = written(&success, SummaryFormat::Json);
        assert_eq!(stderr, "");
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap(), json(&success));

        let failure = report(None, Err(IngestError::Input { input: InputSource::Stdin, error: InputError::Empty }));
        let (stdout, stderr) = written(&failure, SummaryFormat::Json);
        assert_eq!(stderr, "error: <stdin>: the input is empty: no rating events to publish\n");
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["outcome"], "invalid_input");
    }
}

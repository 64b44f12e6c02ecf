//! Figures read from other tools' output: ratingingester's JSON summary
//! and h2load's report.
use std::time::Duration;

use serde::Deserialize;

/// What ratingingester's `--summary json` object says, as far as the runner
/// needs it; the object holds more.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IngesterSummary {
    /// `ok`, `invalid_input`, `undelivered` or `error`.
    pub outcome: String,
    /// Events to publish; null when the input was not validated.
    pub events: Option<u64>,
    /// Events the broker acknowledged.
    pub sent: u64,
    pub failed: u64,
    /// Publishing time; null when publishing never started.
    pub duration_ms: Option<f64>,
}

impl IngesterSummary {
    /// Reads the object ratingingester printed on stdout.
    pub fn from_stdout(stdout: &str) -> serde_json::Result<Self> {
        serde_json::from_str(stdout)
    }

    pub fn publish_elapsed(&self) -> Option<Duration> {
        self.duration_ms.and_then(|millis| Duration::try_from_secs_f64(millis / 1e3).ok())
    }
}

/// What h2load measured: requests per second and the count of requests
/// that succeeded and failed (`finished in 5.00s, 12345.67 req/s, ...` and
/// `requests: N total, N started, N done, N succeeded, N failed, ...`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H2loadReport {
    pub requests_per_s: f64,
    pub succeeded: u64,
    pub failed: u64,
}

pub fn h2load_report(output: &str) -> Option<H2loadReport> {
    let finished = output.lines().find_map(|line| line.trim().strip_prefix("finished in "))?;
    let requests_per_s = finished.split(", ").nth(1)?.strip_suffix(" req/s")?.parse().ok()?;
    let counts = output.lines().find_map(|line| line.trim().strip_prefix("requests: "))?;
    let count = |name: &str| {
        counts.split(", ").find_map(|part| part.strip_suffix(name)).and_then(|number| number.trim().parse().ok())
    };
    Some(H2loadReport { requests_per_s, succeeded: count(" succeeded")?, failed: count(" failed")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ingester_summary_is_read_from_its_json() {
        let stdout = r#"{"outcome":"ok","topic":"ratings","records":1000,"invalid":0,"skipped":0,"events":1000,"sent":1000,"failed":0,"failures":{},"duration_ms":812.25,"error":null}
"#;
        let summary = IngesterSummary::from_stdout(stdout).unwrap();
        assert_eq!(
            summary,
            IngesterSummary {
                outcome: "ok".into(),
                events: Some(1000),
                sent: 1000,
                failed: 0,
                duration_ms: Some(812.25)
            }
        );
        assert_eq!(summary.publish_elapsed(), Some(Duration::from_micros(812_250)));

        let stopped = r#"{"outcome":"error","topic":"ratings","records":null,"invalid":null,"skipped":null,"events":null,"sent":0,"failed":0,"failures":{},"duration_ms":null,"error":"no broker"}"#;
        let summary = IngesterSummary::from_stdout(stopped).unwrap();
        assert_eq!((summary.events, summary.publish_elapsed()), (None, None));
        assert!(IngesterSummary::from_stdout("sent 1000 of 1000 rating events").is_err());
    }

    #[test]
    fn h2load_throughput_and_outcomes_are_read() {
        let output = "starting benchmark...\n\
            finished in 5.00s, 12345.67 req/s, 1.20MB/s\n\
            requests: 61728 total, 61856 started, 61728 done, 61700 succeeded, 28 failed, 0 errored, 0 timeout\n";
        assert_eq!(
            h2load_report(output),
            Some(H2loadReport { requests_per_s: 12345.67, succeeded: 61700, failed: 28 })
        );
        assert_eq!(h2load_report("no such thing"), None);
    }
}

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

/// What h2load measured (`finished in 5.00s, 12345.67 req/s, ...`,
/// `requests: N total, N started, N done, N succeeded, N failed, N errored,
/// N timeout`, `status codes: N 2xx, ...` and `traffic: ... (N) data`).
/// h2load counts any HTTP/2 response as a success, a gRPC error included;
/// the DATA bytes are what tells them apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct H2loadReport {
    pub requests_per_s: f64,
    pub started: u64,
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    /// Responses with a 2xx HTTP status.
    pub status_2xx: u64,
    /// Bytes of the DATA frames' payloads received (every response body).
    pub data_bytes: u64,
}

pub fn h2load_report(output: &str) -> Option<H2loadReport> {
    let line = |prefix: &str| output.lines().find_map(|line| line.trim().strip_prefix(prefix).map(str::to_owned));
    let finished = line("finished in ")?;
    let requests_per_s = finished.split(", ").nth(1)?.strip_suffix(" req/s")?.parse().ok()?;
    let counts = line("requests: ")?;
    let count = |name: &str| {
        counts.split(", ").find_map(|part| part.strip_suffix(name)).and_then(|number| number.trim().parse().ok())
    };
    let status_2xx = line("status codes: ")?.split(", ").find_map(|part| part.strip_suffix(" 2xx"))?.parse().ok()?;
    // `1.15MB (1201068) data`: the exact count is in parentheses.
    let traffic = line("traffic: ")?;
    let data = traffic.split(", ").find_map(|part| part.strip_suffix(" data"))?;
    let data_bytes = data.split_once('(')?.1.strip_suffix(')')?.parse().ok()?;
    Some(H2loadReport {
        requests_per_s,
        started: count(" started")?,
        done: count(" done")?,
        succeeded: count(" succeeded")?,
        failed: count(" failed")?,
        errored: count(" errored")?,
        timeout: count(" timeout")?,
        status_2xx,
        data_bytes,
    })
}

/// The request durations of h2load's `--log-file` (one line per request:
/// start time, HTTP status, duration in µs, tab-separated), in µs.
pub fn h2load_log_durations(log: &str) -> Option<Vec<u64>> {
    log.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.split('\t').nth(2)?.trim().parse().ok())
        .collect()
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
    fn h2load_throughput_outcomes_and_data_bytes_are_read() {
        let output = "starting benchmark...\n\
            finished in 5.00s, 12345.67 req/s, 1.20MB/s\n\
            requests: 61728 total, 61856 started, 61728 done, 61700 succeeded, 28 failed, 2 errored, 1 timeout\n\
            status codes: 61700 2xx, 0 3xx, 0 4xx, 0 5xx\n\
            traffic: 1.70MB (1778625) total, 65.35KB (66918) headers (space savings 94.72%), 1.15MB (1201068) data\n";
        assert_eq!(
            h2load_report(output),
            Some(H2loadReport {
                requests_per_s: 12345.67,
                started: 61856,
                done: 61728,
                succeeded: 61700,
                failed: 28,
                errored: 2,
                timeout: 1,
                status_2xx: 61700,
                data_bytes: 1_201_068,
            })
        );
        assert_eq!(h2load_report("no such thing"), None);
    }

    #[test]
    fn h2load_log_lines_give_the_durations() {
        let log = "1795494585725444\t200\t19541\n1795494585725445\t200\t618\n";
        assert_eq!(h2load_log_durations(log), Some(vec![19541, 618]));
        assert_eq!(h2load_log_durations("1795494585725444 200\n"), None);
    }
}

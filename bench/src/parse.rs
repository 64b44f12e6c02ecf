//! Figures read from other tools' output: ratingingester's summary line and
//! h2load's report.
use std::time::Duration;

/// The publishing time in ratingingester's summary, `sent 1000 of 1000
/// rating events to topic "ratings" in 1.50s, 0 failed` (a `{:.2?}`
/// duration: `ns`, `µs`, `ms` or `s`).
pub fn publish_elapsed(summary: &str) -> Option<Duration> {
    let line = summary.lines().rev().find(|line| line.starts_with("sent "))?;
    let after = &line[line.rfind(" in ")? + 4..];
    let duration = after.split(',').next()?.trim();
    let number_end = duration.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let value: f64 = duration[..number_end].parse().ok()?;
    let seconds = match &duration[number_end..] {
        "s" => value,
        "ms" => value / 1e3,
        "µs" | "us" => value / 1e6,
        "ns" => value / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// How many events ratingingester's summary says were sent.
pub fn published_events(summary: &str) -> Option<u64> {
    let line = summary.lines().rev().find(|line| line.starts_with("sent "))?;
    line.split_whitespace().nth(1)?.parse().ok()
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
    fn the_publish_time_is_read_in_any_unit() {
        let summary =
            |elapsed: &str| format!("sent 1000 of 1000 rating events to topic \"ratings\" in {elapsed}, 0 failed");
        assert_eq!(publish_elapsed(&summary("1.50s")), Some(Duration::from_millis(1500)));
        assert_eq!(publish_elapsed(&summary("812.25ms")), Some(Duration::from_micros(812_250)));
        assert_eq!(publish_elapsed(&summary("12.00µs")), Some(Duration::from_micros(12)));
        assert_eq!(publish_elapsed(&summary("1.5 fortnights")), None);
        assert_eq!(published_events(&format!("some log line\n{}", summary("1.00s"))), Some(1000));
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

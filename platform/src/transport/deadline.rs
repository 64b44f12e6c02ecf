//! The caller's deadline, read from the `grpc-timeout` header of its request,
//! so that the calls a handler makes on its behalf give up when the caller
//! would, and the caller hears why.
use std::time::Duration;

use tokio::time::Instant;

/// The longest part of a caller's timeout kept for answering it: the calls
/// made on its behalf end this much earlier (or a tenth of the timeout, when
/// that is less), so the answer naming what was slow reaches the caller
/// before its own timer ends the call with a bare CANCELLED or
/// DEADLINE_EXCEEDED.
const ANSWER_MARGIN: Duration = Duration::from_millis(50);

/// The moment a caller stops waiting, less the margin to answer it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline of the caller of `request`; `None` when it set no
    /// `grpc-timeout` (or one that does not parse).
    pub fn of_request<T>(request: &tonic::Request<T>) -> Option<Self> {
        let header = request.metadata().get("grpc-timeout")?.to_str().ok()?;
        let timeout = parse_grpc_timeout(header)?;
        let margin = ANSWER_MARGIN.min(timeout / 10);
        Some(Self(Instant::now() + timeout - margin))
    }

    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Self(Instant::now() + timeout)
    }

    pub fn instant(self) -> Instant {
        self.0
    }

    /// The time left, zero once passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }
}

/// A `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`
/// for milliseconds, `u`, `n`), as gRPC over HTTP/2 defines it.
pub(crate) fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit_at = value.len().checked_sub(1)?;
    let (amount, unit) = (value.get(..unit_at)?, value.get(unit_at..)?);
    if amount.is_empty() || amount.len() > 8 || !amount.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse_grpc_timeout("5n"), Some(Duration::from_nanos(5)));
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for value in ["", "m", "100", "100x", "123456789m", "-1S", "1.5S", "+1S", "1 S", "é"] {
            assert_eq!(parse_grpc_timeout(value), None, "{value:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_deadline_keeps_a_margin_to_answer_in() {
        let mut request = tonic::Request::new(());
        request.set_timeout(Duration::from_millis(300));
        let deadline = Deadline::of_request(&request).expect("a deadline");
        assert_eq!(deadline.remaining(), Duration::from_millis(270));

        request.set_timeout(Duration::from_secs(10));
        let deadline = Deadline::of_request(&request).expect("a deadline");
        assert_eq!(deadline.remaining(), Duration::from_secs(10) - ANSWER_MARGIN);

        assert_eq!(Deadline::of_request(&tonic::Request::new(())), None);
    }
}

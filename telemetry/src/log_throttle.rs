//! Warnings that every call could log, logged at most once per interval.
//!
//! When a dependency goes down, every call through it fails the same way: at
//! 20,000 calls/s a warning per call is 20,000 lines a second, written
//! synchronously, in the middle of an outage, saying one thing. A
//! [`Throttle`] lets one through per interval and counts the others, and the
//! next line that goes through says how many it stands for. Metrics still
//! count every call.
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// The interval of the services' per-call warnings.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Throttle {
    epoch: Instant,
    interval_nanos: u64,
    /// When the next line may go out, in nanoseconds since `epoch`.
    next_nanos: AtomicU64,
    held_back: AtomicU64,
}

impl Throttle {
    pub fn new(interval: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            interval_nanos: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            next_nanos: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(held_back)` when this occurrence is to be logged, with how many
    /// were held back since the last one logged; `None` when it is only
    /// counted. The first occurrence is always logged.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let now = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let next = self.next_nanos.load(Ordering::Relaxed);
        let due = now >= next;
        // Of the callers that find the line due at once, exactly one moves `next` on.
        if due
            && self
                .next_nanos
                .compare_exchange(next, now.saturating_add(self.interval_nanos), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_occurrence_per_interval_goes_through_and_says_how_many_were_held_back() {
        let throttle = Throttle::new(Duration::from_secs(1));
        let at = |millis| throttle.epoch + Duration::from_millis(millis);
        assert_eq!(throttle.admit_at(at(0)), Some(0));
        for millis in 1..=999 {
            assert_eq!(throttle.admit_at(at(millis)), None, "{millis} ms");
        }
        assert_eq!(throttle.admit_at(at(1000)), Some(999));
        assert_eq!(throttle.admit_at(at(1500)), None);
        // Quiet for a while: the next occurrence goes through at once.
        assert_eq!(throttle.admit_at(at(60_000)), Some(1));
        assert_eq!(throttle.admit_at(at(60_001)), None);
    }
}

//! The real processes that the end-to-end tests (`e2e`) and the benchmark
//! runner (`bench-run`) start: any program as a child with its output kept
//! in memory or in a log file ([`child`]), a Tansu broker ([`tansu`]), a
//! throwaway PostgreSQL server ([`postgres`]), free ports, and polling with
//! a deadline.
//!
//! Everything here returns errors rather than panicking, so the benchmark
//! can report them; the test helpers in `e2e` turn them into panics.
//!
//! It depends on nothing of the suite's: `scripts/bench.sh` builds the
//! services' release binaries together with the benchmark, and a dependency
//! here could turn on features in theirs.
pub mod child;
pub mod postgres;
pub mod tansu;

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

pub use child::{ChildProcess, Finished, Output, ProcessError};
pub use tansu::{Storage, Tansu};

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server that
/// must be started at a known address.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Calls `attempt` every `interval` until it returns `Some`, and returns
/// that; returns `None` once `deadline` has passed. `attempt` is called at
/// least once, and once more after the last interval.
pub fn poll_until<T>(deadline: Instant, interval: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    loop {
        if let Some(value) = attempt() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_returns_the_first_answer() {
        let mut calls = 0;
        let answer = poll_until(Instant::now() + Duration::from_secs(5), Duration::from_millis(1), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(answer, Some(3));
    }

    #[test]
    fn polling_gives_up_at_the_deadline_after_trying_once() {
        let mut calls = 0;
        let answer: Option<()> = poll_until(Instant::now(), Duration::from_millis(1), || {
            calls += 1;
            None
        });
        assert_eq!((answer, calls), (None, 1));
    }

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port().expect("a free port");
        TcpListener::bind(("127.0.0.1", port)).expect("the port is still free");
    }
}

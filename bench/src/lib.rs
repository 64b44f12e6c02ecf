//! The benchmark harness of the movie-rating suite.
//!
//! The binaries under `src/bin` are the tools: `loadgen` (gRPC load in closed
//! and open loop), `constant-server` (the floor of one RPC), `kafka-bare`
//! (librdkafka with nothing around it, the yardstick of ingestion),
//! `gen-events` (a deterministic file of rating events) and `bench-run` (the
//! runner behind `scripts/bench.sh`). This library holds what they share and
//! what deserves unit tests: the open-loop schedule and latency accounting
//! ([`load`]), the event generator and its probe ([`events`]), statistics
//! ([`stats`]) and readings of `/proc` ([`procfs`]).
pub mod events;
pub mod load;
pub mod parse;
pub mod procfs;
pub mod rpc;
pub mod stats;

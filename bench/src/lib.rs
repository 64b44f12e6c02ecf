//! The benchmark harness of the movie-rating suite.
//!
//! The binaries under `src/bin` are the tools: `loadgen` (gRPC load in closed
//! and open loop), `constant-server` (the floor of one RPC), `kafka-bare`
//! (librdkafka with nothing around it, the yardstick of ingestion),
//! `gen-events` (a deterministic file of rating events), `bench-run` (the
//! runner behind `scripts/bench.sh`) and `soak` (the driver behind
//! `scripts/soak.sh`). This library holds what they share and
//! what deserves unit tests: the open-loop schedule and latency accounting
//! ([`load`]), the event generator and its probe ([`events`]), statistics
//! ([`stats`]), readings of `/proc` ([`procfs`]), and how the services are
//! started and the tools run ([`processes`]), the open-loop sweep and its
//! knee ([`sweep`]), and the charts drawn from the recorded figures
//! ([`charts`]).
pub mod charts;
pub mod events;
pub mod load;
pub mod parse;
pub mod processes;
pub mod procfs;
pub mod rpc;
pub mod stats;
pub mod sweep;

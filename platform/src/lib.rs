//! What the suite's gRPC services run on, a room per concern:
//! - [`server`]: the gRPC server, its settings and the layers around every
//!   call (authorization, overload limits, request decoding, per-call spans
//!   and metrics), over its own bounded connection loop;
//! - [`upstream`]: calls to other services (the pool of healthy instances,
//!   one HTTP/2 connection each, and the timing of each call);
//! - [`transport`]: HTTP/2 details both sides share (batched writes, the
//!   caller's deadline);
//! - [`discovery`]: where instances register and are looked up (Consul,
//!   static, in memory), with its settings;
//! - [`security`]: bearer tokens of authenticated writes, TLS, secrets in
//!   the settings;
//! - [`entry`] and [`shutdown`]: a service binary's `main` and its stop signal.
//!
//! Logs, traces and metrics are in the `telemetry` crate, the SQL store in
//! `sql-store`, and what services and tools agree on (the API, ids, events)
//! in `contract`. A service crate brings its own domain, controller,
//! repository and handler; everything around them that would otherwise be
//! repeated three times lives here.

pub mod discovery;
pub mod entry;
pub mod security;
pub mod server;
pub mod shutdown;
pub mod transport;
pub mod upstream;

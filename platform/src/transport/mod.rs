//! HTTP/2 details the server and the upstream connections share: writes
//! batched into few system calls, and the caller's deadline as the
//! `grpc-timeout` header carries it.
pub mod deadline;
#[cfg(test)]
pub(crate) mod http2_frames;
pub mod write_batching;

pub use deadline::Deadline;

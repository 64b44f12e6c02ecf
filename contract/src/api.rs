//! The gRPC API generated from `proto/movie.proto` (which has no proto package,
//! hence the `_` module prost writes), and its encoded descriptors for server
//! reflection.
#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/_.rs"));

/// The encoded `FileDescriptorSet` of `movie.proto`, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/movie_descriptor.bin"));

//! `ratingingester [FILE]`: validates rating events, then publishes them to Kafka.
use std::process::ExitCode;

use clap::Parser;

/// mimalloc: fewer instructions per allocation than glibc's malloc, and the
/// request path allocates a lot (HTTP/2 frames, headers, messages).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = ratingingester::Config::parse();
    platform::telemetry::init();
    match ratingingester::run(&config) {
        Ok(summary) => {
            eprintln!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

//! `ratingingester [FILE]`: validates rating events, then publishes them to Kafka.
use std::process::ExitCode;

use clap::Parser;

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
            eprintln!("error: {}", platform::errors::Chain(&error));
            ExitCode::FAILURE
        }
    }
}

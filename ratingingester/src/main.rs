//! `ratingingester [FILE]`: validates rating events, then publishes them to Kafka.
use std::process::ExitCode;

use clap::Parser;

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

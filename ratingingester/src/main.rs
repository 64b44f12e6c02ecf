//! `ratingingester [FILE]`: validates rating events, then publishes them to Kafka.
use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = ratingingester::Config::parse();
    // The OTLP exporter's gRPC channel runs on tokio; the publishing itself
    // is synchronous. Declared first, the runtime outlives the exporter,
    // which flushes its last spans when dropped.
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _runtime_entered = runtime.enter();
    let _telemetry =
        telemetry::init(config.logging.log_format, "ratingingester", [env!("CARGO_CRATE_NAME"), "contract"]);
    let report = ratingingester::run(&config);
    let written =
        ratingingester::summary::write(&report, config.summary, &mut std::io::stdout(), &mut std::io::stderr());
    if let Err(error) = written {
        eprintln!("error: cannot write the summary: {error}");
        return ExitCode::FAILURE;
    }
    if report.result.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

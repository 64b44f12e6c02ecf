//! How the benchmark and the soak start the services and run the tools: on 127.0.0.1,
//! with the runner's environment, a service's output in a log file of its
//! own. The processes themselves are `testbed`'s, shared with the
//! end-to-end tests: stopped with SIGTERM, then SIGKILL after a grace
//! period, and killed if dropped while running (on an error).
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use testbed::{ChildProcess, Finished, Output};

use crate::parse::IngesterSummary;

/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `program` with `args`, in `directory`, logging warnings only, and with
/// none of the settings a service would otherwise take from the
/// environment.
fn command(program: &Path, args: &[String], directory: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(directory)
        .env("RUST_LOG", "warn")
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("KAFKA_BROKERS");
    command
}

/// Starts a server on a free 127.0.0.1 port (`extra`, then `--listen`) in
/// `work_dir`, with `envs` besides the runner's, its output to `log`, and
/// waits until it accepts connections; returns it and its address.
pub fn start_service(
    name: &str,
    program: &Path,
    extra: &[String],
    envs: &[(String, String)],
    work_dir: &Path,
    log: PathBuf,
) -> anyhow::Result<(ChildProcess, String)> {
    let with_envs = || {
        let mut command = command(program, extra, work_dir);
        command.envs(envs.iter().map(|(key, value)| (key, value)));
        command
    };
    let (process, address) = ChildProcess::start_server(name, with_envs, &Output::File(log), START_TIMEOUT)?;
    Ok((process, address.to_string()))
}

/// Runs a tool to completion within `timeout`; returns its stdout and
/// stderr and when it started and finished, fails with its stderr.
pub fn run_tool(program: &Path, args: &[String], timeout: Duration) -> anyhow::Result<Finished> {
    let mut command = Command::new(program);
    command.args(args).env("RUST_LOG", "warn");
    Ok(ChildProcess::run(command, timeout)?)
}

/// Stops every process in turn (SIGTERM, then SIGKILL after 10 s); fails
/// with the first that could not be stopped.
pub fn stop_all(processes: impl IntoIterator<Item = ChildProcess>) -> Result<(), testbed::ProcessError> {
    processes.into_iter().try_for_each(|mut process| process.stop(Duration::from_secs(10)).map(drop))
}

/// ratingingester's arguments to publish `file` to `ratings` at `brokers`,
/// with its summary as JSON.
pub fn ingester_args(brokers: &str, file: &Path) -> Vec<String> {
    let mut args: Vec<String> =
        ["--kafka-brokers", brokers, "--topic", "ratings", "--timeout", "300s", "--summary", "json"]
            .map(str::to_owned)
            .to_vec();
    args.push(file.display().to_string());
    args
}

/// ratingingester's JSON summary of a run that must have sent all `events`.
pub fn sent_all(published: &Finished, events: u64) -> anyhow::Result<IngesterSummary> {
    let summary = IngesterSummary::from_stdout(&published.stdout).map_err(|error| {
        anyhow::anyhow!("no JSON summary from ratingingester ({error}):\n{}\n{}", published.stdout, published.stderr)
    })?;
    anyhow::ensure!(
        summary.outcome == "ok" && summary.sent == events,
        "ratingingester did not send all {events} events:\n{}\n{}",
        published.stdout,
        published.stderr
    );
    Ok(summary)
}

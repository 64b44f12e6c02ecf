//! The `healthcheck` binary that container healthchecks run: exit 0 only for
//! a SERVING server (or service), non-zero with a reason otherwise.
use std::process::{Command, Output};

use e2e::{
    free_port,
    process::{ServiceProcess, binary},
};

fn healthcheck(args: &[&str]) -> Output {
    Command::new(binary("healthcheck")).args(args).output().expect("run healthcheck")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_serving_server_and_service_pass() {
    let metadata = ServiceProcess::start("metadata", &[], &[]);
    metadata.wait_until_serving(std::time::Duration::from_secs(10));
    let address = metadata.authority();

    let whole = healthcheck(&[&address]);
    assert!(whole.status.success(), "{}", stderr(&whole));
    assert_eq!(stdout(&whole).trim(), format!("{address}: SERVING"));

    let service = healthcheck(&[&address, "--service", "MetadataService"]);
    assert!(service.status.success(), "{}", stderr(&service));
}

#[test]
fn an_unknown_service_a_server_that_is_not_ready_and_a_closed_port_fail() {
    let metadata = ServiceProcess::start("metadata", &[], &[]);
    let unknown = healthcheck(&[&metadata.authority(), "--service", "NoSuchService"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("NotFound"), "{}", stderr(&unknown));

    // A rating service whose broker is unreachable cannot replay its events,
    // so it listens but is not ready.
    let unreachable_broker = format!("127.0.0.1:{}", free_port());
    let rating = ServiceProcess::start("rating", &["--kafka-brokers", &unreachable_broker], &[]);
    let not_ready = healthcheck(&[&rating.authority()]);
    assert!(!not_ready.status.success());
    assert_eq!(stderr(&not_ready).trim(), format!("{}: NOT_SERVING", rating.authority()));

    let closed = format!("127.0.0.1:{}", free_port());
    let refused = healthcheck(&[&closed, "--timeout", "3s"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("cannot connect"), "{}", stderr(&refused));
}

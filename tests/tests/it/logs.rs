//! `--log-format json`: every line a service writes is one JSON object, with
//! the message and its fields, ready for a log collector.
use std::time::Duration;

use e2e::process::ServiceProcess;
use serde_json::Value;

#[test]
fn json_logs_are_one_object_per_line_with_the_message_and_its_fields() {
    let metadata = ServiceProcess::start("metadata", &["--log-format", "json"], &[]);
    metadata.wait_until_serving(Duration::from_secs(10));
    let address = metadata.authority();
    let (status, log) = metadata.terminate_with_log(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");

    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}")))
        .collect();
    let listening = lines
        .iter()
        .find(|line| line["fields"]["message"] == "listening")
        .unwrap_or_else(|| panic!("no listening line in\n{log}"));
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "platform::server");
    assert_eq!(listening["fields"]["address"], address);
    assert!(lines.iter().any(|line| line["fields"]["message"] == "stopped cleanly"), "{log}");
}

//! What a fault test measured: printed as one line (`fault N figures:
//! key=value ...`) and written as JSON to `target/reliability/fault-N.json`,
//! where docs/reliability.md quotes them from.
use std::path::PathBuf;

use serde_json::Value;

/// Prints `figures` (a JSON object) and writes them for fault `number`;
/// returns where they were written.
pub fn record(number: u32, figures: &Value) -> PathBuf {
    let line: Vec<String> = figures
        .as_object()
        .expect("figures are a JSON object")
        .iter()
        .map(|(key, value)| match value {
            Value::String(text) => format!("{key}={text}"),
            other => format!("{key}={other}"),
        })
        .collect();
    println!("fault {number} figures: {}", line.join(" "));
    let directory = target_directory().join("reliability");
    std::fs::create_dir_all(&directory).expect("create target/reliability");
    let path = directory.join(format!("fault-{number}.json"));
    let text = serde_json::to_string_pretty(figures).expect("figures serialise");
    std::fs::write(&path, text + "\n").expect("write the figures");
    path
}

/// The target directory the test executable was built in
/// (`target/<profile>/deps/<test>` → `target`).
fn target_directory() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors().nth(3).expect("the target directory").to_path_buf()
}

//! The README's demo as a user runs it: `scripts/demo.sh 2>&1 | tee demo.log`,
//! stopped with Ctrl-C. Uses the demo's fixed ports (8081-8083, 9092).
use std::{
    net::TcpStream,
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use e2e::{compose::workspace_root, wait_until};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

const PORTS: [u16; 4] = [8081, 8082, 8083, 9092];

/// The processes that have `marker` in their environment: what the demo
/// started, since each inherits its `DEMO_DIR`.
fn started_with(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environ| environ.split(|&byte| byte == 0).any(|variable| variable == marker.as_bytes()))
        })
        .collect()
}

/// Kills whatever the demo left running, so that a failed run does not
/// hold the ports for the next one.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in started_with(&self.0) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Ctrl-C reaches the script and `tee` at once (the terminal's foreground
/// process group); `tee` is gone before the script's clean-up writes to it.
/// Every process the demo started must stop all the same.
#[test]
fn the_demo_piped_through_tee_stops_everything_it_started_on_ctrl_c() {
    let busy: Vec<u16> = PORTS.into_iter().filter(|&port| listening(port)).collect();
    assert!(busy.is_empty(), "ports {busy:?} are taken: is a demo running? This test needs them free");
    let directory = tempfile::tempdir().unwrap();
    let log = directory.path().join("demo.log");
    let demo_directory = directory.path().join("demo");
    let marker = format!("DEMO_DIR={}", demo_directory.display());
    let _leftovers = Leftovers(marker.clone());
    let mut shell = Command::new("bash")
        .args(["-c", r#"scripts/demo.sh --fresh 2>&1 | tee "$LOG" >/dev/null"#])
        .env("DEMO_DIR", &demo_directory)
        .env("LOG", &log)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        // A process group of its own, as a terminal gives a job.
        .process_group(0)
        .spawn()
        .expect("start bash");
    let group = Pid::from_raw(shell.id() as i32);
    let printed = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = Instant::now();
    while !printed().contains("the services keep running") {
        if let Some(status) = shell.try_wait().expect("the shell's state") {
            panic!("the demo ended ({status}) before it was up:\n{}", printed());
        }
        assert!(started.elapsed() < Duration::from_secs(180), "the demo is not up after 180 s:\n{}", printed());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(PORTS.into_iter().all(listening), "the demo is up, yet not every port listens:\n{}", printed());

    killpg(group, Signal::SIGINT).expect("Ctrl-C to the demo's process group");
    wait_until("the demo's shell exits", Duration::from_secs(60), || shell.try_wait().expect("state").is_some());
    wait_until("every process the demo started has stopped", Duration::from_secs(30), || {
        started_with(&marker).is_empty()
    });
    assert!(!PORTS.into_iter().any(listening), "a port still listens after the demo stopped");
}

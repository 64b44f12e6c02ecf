//! The machine a benchmark ran on, for the report.
use std::{fs, process::Command};

#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub rustc: String,
    pub date: String,
    pub commit: String,
}

fn command(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name")
                    .and_then(|rest| rest.split_once(':'))
                    .map(|(_, name)| name.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kilobytes| format!("{:.1} GiB", kilobytes as f64 / (1 << 20) as f64))
            .unwrap_or_else(|| "unknown".to_owned());
        let dirty = !command("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
        let commit = command("git", &["rev-parse", "--short", "HEAD"]);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map(usize::from).unwrap_or(0),
            memory,
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|text| text.trim().to_owned())
                .unwrap_or_default(),
            rustc: command("rustc", &["--version"]),
            date: command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            commit: if dirty { format!("{commit} (with uncommitted changes)") } else { commit },
        }
    }
}

impl Machine {
    /// Where and on what the run measured, for the charts' captions.
    pub fn provenance(&self, quick: bool) -> bench::charts::Provenance {
        bench::charts::Provenance {
            date: self.date.clone(),
            commit: self.commit.clone(),
            machine: format!("{} cores ({})", self.cores, self.cpu),
            note: quick.then(|| "quick run: a smoke test, not figures to quote".to_owned()),
        }
    }
}

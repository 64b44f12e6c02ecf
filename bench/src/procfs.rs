//! Readings of a process from Linux's `/proc`: CPU time consumed (user +
//! system, in clock ticks) and resident memory.
use std::{fs, io};

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let ticks = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|ticks| *ticks > 0).unwrap_or(100)
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/stat: {stat}")))
}

/// utime (field 14) + stime (field 15) of a `/proc/<pid>/stat` line. The
/// command name (field 2) is in parentheses and may hold spaces and
/// parentheses itself, so fields are counted after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Field 3 (state) is the first after the name; utime is field 14.
    let utime: u64 = fields.nth(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// utime + stime of `root` and of every process descending from it (a
/// server and the workers it forks, as PostgreSQL's backends), in clock
/// ticks. A descendant that exited since the last reading is no longer
/// counted.
pub fn tree_cpu_ticks(root: u32) -> io::Result<u64> {
    let mut processes = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        // A process may exit between the listing and the reading.
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        if let (Some(parent), Some(ticks)) = (parse_parent(&stat), parse_cpu_ticks(&stat)) {
            processes.push((pid, parent, ticks));
        }
    }
    Ok(sum_of_tree(root, &processes))
}

/// The ticks of `root` and its descendants among `processes` (pid, parent
/// pid, ticks).
fn sum_of_tree(root: u32, processes: &[(u32, u32, u64)]) -> u64 {
    let mut members = vec![root];
    let mut total = 0;
    while let Some(member) = members.pop() {
        for &(pid, parent, ticks) in processes {
            if pid == member {
                total += ticks;
            }
            if parent == member && pid != member {
                members.push(pid);
            }
        }
    }
    total
}

/// The parent pid (field 4) of a `/proc/<pid>/stat` line.
fn parse_parent(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// The machine's CPU time so far, all cores: (busy, all) in clock ticks,
/// from the `cpu` line of `/proc/stat`.
pub fn machine_ticks() -> io::Result<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat")?;
    parse_machine_ticks(&stat).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/stat has no cpu line"))
}

/// The share of the machine's CPU time that was busy between two
/// [`machine_ticks`] readings, 0 to 1.
pub fn busy_share(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let all = after.1.checked_sub(before.1).filter(|all| *all > 0)?;
    Some(after.0.saturating_sub(before.0) as f64 / all as f64)
}

/// (busy, all) ticks of the `cpu` line: user nice system idle iowait irq
/// softirq steal …; idle and iowait are the time not busy. Guest time is
/// already counted in user and nice, so it is left out.
fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find_map(|line| line.strip_prefix("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks[..] else { return None };
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy, busy + idle + iowait))
}

/// Resident memory of a process in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn resident_bytes(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no VmRSS for {pid}")))
}

/// The `VmRSS:   123456 kB` line of a `/proc/<pid>/status`, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let mut words = line.split_whitespace();
    let kilobytes: u64 = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(kilobytes * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_user_plus_system_time_counted_after_the_name() {
        let stat = "4242 (movie (x) y) S 1 4242 4242 0 -1 4194560 1500 0 0 0 321 45 0 0 20 0 6 0 100 1000 200 0";
        assert_eq!(parse_cpu_ticks(stat), Some(321 + 45));
        assert_eq!(parse_cpu_ticks("4242 (movie) S 1 2"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time_and_a_resident_size() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_ok());
        assert!(resident_bytes(pid).unwrap() > 0);
        assert!(clock_ticks_per_second() > 0);
    }

    #[test]
    fn a_tree_counts_the_root_and_every_descendant_only() {
        // 1 -> 10 -> 11, 10 -> 12; 20 is a sibling of 10 outside the tree of 10.
        let processes = [(1, 0, 1000), (10, 1, 5), (11, 10, 7), (12, 10, 11), (20, 1, 100)];
        assert_eq!(sum_of_tree(10, &processes), 5 + 7 + 11);
        assert_eq!(sum_of_tree(11, &processes), 7);
        assert_eq!(sum_of_tree(99, &processes), 0);
        assert_eq!(parse_parent("4242 (post gres) S 17 4242 4242"), Some(17));
    }

    #[test]
    fn the_machine_is_busy_outside_idle_and_iowait() {
        let before = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n";
        let after = "cpu  250 10 90 900 50 5 5 0 40 0\ncpu0 125 5 45 450 25 2 3 0 20 0\n";
        assert_eq!(parse_machine_ticks(before), Some((150, 1000)));
        assert_eq!(parse_machine_ticks(after), Some((360, 1310)));
        let busy = busy_share(parse_machine_ticks(before).unwrap(), parse_machine_ticks(after).unwrap());
        assert_eq!(busy, Some(210.0 / 310.0));
        assert_eq!(busy_share((5, 10), (5, 10)), None, "no time went by");
        assert_eq!(parse_machine_ticks("cpu  1 2 3\n"), None);
        assert!(machine_ticks().is_ok());
    }

    #[test]
    fn vm_rss_is_read_in_kilobytes() {
        let status = "Name:\trating\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\nThreads:\t6\n";
        assert_eq!(parse_vm_rss(status), Some(123_456 * 1024));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
    }
}

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
    fn vm_rss_is_read_in_kilobytes() {
        let status = "Name:\trating\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\nThreads:\t6\n";
        assert_eq!(parse_vm_rss(status), Some(123_456 * 1024));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
    }
}

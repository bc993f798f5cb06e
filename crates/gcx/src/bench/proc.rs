//! What Linux's `/proc` says about a child process: resident memory, open file
//! descriptors and CPU time. Each reader answers `None` when the process is gone or the
//! file cannot be read (not Linux), so a benchmark reports the figure as missing.

use std::path::Path;

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times: `sysconf(_SC_CLK_TCK)`,
/// which is 100 on every Linux architecture gcx builds for (the kernel's `USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field_kib(&status, "VmRSS:")
}

fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Open file descriptors of process `pid` (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> Option<u64> {
    let entries = std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("fd")).ok()?;
    Some(entries.count() as u64)
}

/// CPU seconds process `pid` has used so far, user and system (`utime + stime` of
/// `/proc/<pid>/stat`).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_ticks(&stat).map(|ticks| ticks as f64 / TICKS_PER_SECOND)
}

/// CPU seconds used so far by every process named `name` (`/proc/<pid>/comm`), such as
/// a database server's backends on this machine. Processes that ended are not counted.
pub fn cpu_seconds_named(name: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .filter_map(cpu_seconds)
        .sum()
}

/// `utime + stime` from a `stat` line. The command name (field 2) is in parentheses and
/// may hold spaces, so fields are counted from the last `)`: `utime` is field 14, the
/// 12th after it.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_from_after_the_command_name() {
        let stat =
            "4242 (gcx serve) S 1 4242 4242 0 -1 4194560 2197 0 0 0 731 269 0 0 20 0 9 0 1 1 1";
        assert_eq!(stat_cpu_ticks(stat), Some(1000));
        assert_eq!(stat_cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn rss_comes_from_the_vmrss_line() {
        let status = "Name:\tgcx\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(status_field_kib(status, "VmRSS:"), Some(12345));
        assert_eq!(status_field_kib("Name:\tgcx\n", "VmRSS:"), None);
    }

    #[test]
    fn this_process_reads_as_alive() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|k| k > 0));
        assert!(open_fds(me).is_some_and(|n| n >= 3));
        assert!(cpu_seconds(me).is_some());
    }
}

//! What a process costs: CPU time and memory read from `/proc`, and the
//! open-file limit a connection-heavy generator needs raised.
//!
//! `/proc/PID/stat` gives user and system time in clock ticks, for the
//! process and for its children that have been waited for; `/proc/PID/status`
//! gives resident memory. Reading files keeps this free of `unsafe` (the
//! workspace forbids it); `rustix` supplies the two system calls that have
//! no file: the tick rate and `setrlimit`.

use std::io;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// CPU time of one process, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    /// User plus system time of the process itself.
    pub own: f64,
    /// User plus system time of its children that have exited and been
    /// waited for.
    pub children: f64,
}

impl CpuTimes {
    /// Own and children's time together.
    pub fn total(&self) -> f64 {
        self.own + self.children
    }
}

/// Resident memory of one process, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident.
    pub peak_kib: u64,
}

/// CPU times of `pid`, or of this process when `None`.
pub fn cpu_times(pid: Option<u32>) -> io::Result<CpuTimes> {
    let text = std::fs::read_to_string(proc_path(pid, "stat"))?;
    parse_stat(&text, rustix::param::clock_ticks_per_second())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat format"))
}

/// Resident memory of `pid`, or of this process when `None`.
pub fn memory(pid: Option<u32>) -> io::Result<Memory> {
    let text = std::fs::read_to_string(proc_path(pid, "status"))?;
    Ok(parse_status(&text))
}

/// Raises the soft limit on open files to the hard limit; returns the soft
/// limit now in force.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// Parses `utime stime cutime cstime` (fields 14..=17) of a `stat` line.
/// The command name (field 2) is in parentheses and may hold spaces, so
/// fields are counted from the last `)`.
fn parse_stat(text: &str, ticks_per_sec: u64) -> Option<CpuTimes> {
    let after_name = &text[text.rfind(')')? + 1..];
    // After the name: state is field 3, so utime (14) is the 12th.
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let mut next = || fields.next()?.parse::<u64>().ok();
    let (utime, stime, cutime, cstime) = (next()?, next()?, next()?, next()?);
    let tick = 1.0 / ticks_per_sec.max(1) as f64;
    Some(CpuTimes {
        own: (utime + stime) as f64 * tick,
        children: (cutime + cstime) as f64 * tick,
    })
}

fn parse_status(text: &str) -> Memory {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_ascii_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kib: kib("VmRSS:"),
        peak_kib: kib("VmHWM:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let line =
            "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 30 20 20 0 9 0 1 2 3";
        let t = parse_stat(line, 100).expect("parses");
        assert!((t.own - 3.0).abs() < 1e-9);
        assert!((t.children - 0.5).abs() < 1e-9);
        assert!(parse_stat("garbage", 100).is_none());
    }

    #[test]
    fn parses_status_memory() {
        let text = "Name:\tcourier\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(
            parse_status(text),
            Memory {
                rss_kib: 1024,
                peak_kib: 2048
            }
        );
    }

    #[test]
    fn reads_this_process() {
        assert!(cpu_times(None).is_ok());
        assert!(memory(None).expect("status").rss_kib > 0);
    }
}

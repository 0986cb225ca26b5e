//! What the harness reads about a server process, and CPU pinning.
//!
//! CPU time comes from the kernel's per-process CPU clock (`clock_getcpuclockid`), which is the
//! exact sum (in nanoseconds) of user and system time over every thread the process ever had;
//! `/proc/PID/stat`'s `utime + stime` is the same quantity rounded to clock ticks (10 ms here),
//! too coarse for per-connection costs. Both are recorded; the report uses the clock and the
//! harness checks the two agree.

use std::io;
use std::time::Duration;

use nix::sched::{sched_setaffinity, CpuSet};
use nix::time::{clock_getcpuclockid, clock_gettime, ClockId};
use nix::unistd::Pid;

/// CPU time consumed so far by a process.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    /// From the process CPU clock.
    pub exact: Duration,
    /// `utime + stime` from `/proc/PID/stat`, in clock ticks.
    pub ticks: u64,
}

impl CpuSample {
    /// CPU used between `earlier` and `self`: (exact, ticks).
    pub fn since(&self, earlier: &CpuSample) -> (Duration, u64) {
        (
            self.exact.saturating_sub(earlier.exact),
            self.ticks.saturating_sub(earlier.ticks),
        )
    }
}

/// Memory of a process, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug)]
pub struct MemorySample {
    /// Resident set now (VmRSS), KiB.
    pub rss_kib: u64,
    /// Peak resident set (VmHWM), KiB.
    pub peak_kib: u64,
}

/// Reads one process's CPU time and memory.
pub struct ProcessProbe {
    pid: u32,
    clock: ClockId,
}

impl ProcessProbe {
    /// A probe for `pid` (which must be alive).
    pub fn new(pid: u32) -> io::Result<ProcessProbe> {
        let clock = clock_getcpuclockid(Pid::from_raw(pid as i32)).map_err(io::Error::from)?;
        Ok(ProcessProbe { pid, clock })
    }

    /// CPU used so far.
    pub fn cpu(&self) -> io::Result<CpuSample> {
        let t = clock_gettime(self.clock).map_err(io::Error::from)?;
        let exact = Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32);
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| -> io::Result<u64> {
            fields
                .get(i - 3)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))
        };
        Ok(CpuSample {
            exact,
            ticks: field(14)? + field(15)?,
        })
    }

    /// Resident and peak memory.
    pub fn memory(&self) -> io::Result<MemorySample> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kib = |key: &str| -> io::Result<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| io::Error::other(format!("no {key} in /proc/PID/status")))
        };
        Ok(MemorySample {
            rss_kib: kib("VmRSS:")?,
            peak_kib: kib("VmHWM:")?,
        })
    }
}

/// Clock ticks per second (`USER_HZ`).
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(100)
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// Pins the calling thread (and every thread it spawns afterwards) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(io::Error::from)?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// CPUs the calling thread may run on, as `/proc/self/status` lists them.
pub fn allowed_cpus() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default()
}

//! The process metrics (CPU, memory, open files, start time), read from `/proc/self` on every scrape.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The clock ticks per second of `/proc`'s times (`USER_HZ`, 100 on every Linux architecture
/// orch runs on; the kernel scales its internal `HZ` to it for userspace).
const USER_HZ: f64 = 100.0;

/// Encodes `orch_process_*` from `/proc/self`; on a system without `/proc` it encodes nothing.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcessSample {
    pub(crate) cpu_seconds: f64,
    pub(crate) resident_bytes: i64,
    pub(crate) virtual_bytes: i64,
    pub(crate) open_fds: i64,
    pub(crate) max_fds: Option<i64>,
    pub(crate) start_time_seconds: Option<f64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(sample) = read_self() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(sample.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "CPU time orch used, user and system, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory of orch's process, in bytes",
                Some(sample.resident_bytes),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory of orch's process, in bytes",
                Some(sample.virtual_bytes),
            ),
            (
                "process_open_fds",
                "Open file descriptors of orch's process",
                Some(sample.open_fds),
            ),
            (
                "process_max_fds",
                "The limit of open file descriptors of orch's process",
                sample.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        if let Some(start) = sample.start_time_seconds {
            let gauge = ConstGauge::new(start);
            gauge.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "When orch's process started (Unix time)",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// Reads `/proc/self/stat`, `/proc/self/fd`, `/proc/self/limits` and `/proc/stat`.
pub(crate) fn read_self() -> Option<ProcessSample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields = stat_fields(&stat)?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| boot_time(&text));
    Some(ProcessSample {
        cpu_seconds: (fields.utime + fields.stime) as f64 / USER_HZ,
        resident_bytes: i64::try_from(resident_bytes(&status)?).unwrap_or(i64::MAX),
        virtual_bytes: i64::try_from(fields.vsize).unwrap_or(i64::MAX),
        // read_dir's own descriptor is among them.
        open_fds: i64::try_from(open_fds.saturating_sub(1)).unwrap_or(i64::MAX),
        max_fds: max_open_files(&limits),
        start_time_seconds: boot_time.map(|boot| boot + fields.start_ticks as f64 / USER_HZ),
    })
}

/// The fields of `/proc/[pid]/stat` orch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatFields {
    pub(crate) utime: u64,
    pub(crate) stime: u64,
    pub(crate) start_ticks: u64,
    pub(crate) vsize: u64,
}

/// Parses `/proc/[pid]/stat`: the command name is in parentheses and may hold spaces, so
/// fields are counted from the last `)` (field 3 is the state).
pub(crate) fn stat_fields(stat: &str) -> Option<StatFields> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 of proc(5).
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(StatFields {
        utime: field(14)?,
        stime: field(15)?,
        start_ticks: field(22)?,
        vsize: field(23)?,
    })
}

/// The soft limit of "Max open files" in `/proc/[pid]/limits`.
pub(crate) fn max_open_files(limits: &str) -> Option<i64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` of `/proc/stat`: when the system booted (Unix time).
pub(crate) fn boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// `VmRSS` of `/proc/[pid]/status`, in bytes.
pub(crate) fn resident_bytes(status: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests;

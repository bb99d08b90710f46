//! This process's own figures, read from `/proc/self` when scraped (Linux; elsewhere they stay
//! at 0): CPU time, resident memory, open file descriptors and their limit. Every process,
//! web or worker, exposes its own.

use std::sync::{Mutex, atomic::AtomicU64};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

/// Clock ticks per second of `/proc/self/stat`: `USER_HZ`, 100 on every Linux architecture
/// Herald is built for.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Default)]
pub struct Process {
    cpu: Counter<f64, AtomicU64>,
    cpu_seen: Mutex<f64>,
    resident: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
}

impl Process {
    pub fn register(registry: &mut Registry) -> Self {
        let process = Self::default();
        registry.register(
            "process_cpu_seconds",
            "CPU time this process has used, user and system",
            process.cpu.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of this process",
            process.resident.clone(),
        );
        registry.register(
            "process_open_fds",
            "File descriptors this process has open (connections, database files)",
            process.open_fds.clone(),
        );
        registry.register(
            "process_max_fds",
            "The most file descriptors this process may open (its soft limit)",
            process.max_fds.clone(),
        );
        process
    }

    /// Reads the figures again.
    pub fn sample(&self) {
        if let Some(cpu) = cpu_seconds() {
            let mut seen = self.cpu_seen.lock().unwrap_or_else(|p| p.into_inner());
            if cpu > *seen {
                self.cpu.inc_by(cpu - *seen);
                *seen = cpu;
            }
        }
        if let Some(bytes) = resident_bytes() {
            self.resident.set(bytes);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
        if let Some(max) = max_fds() {
            self.max_fds.set(max);
        }
    }
}

/// User and system time from `/proc/self/stat` (fields 14 and 15, after the command name,
/// which may itself hold spaces and parentheses).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / TICKS_PER_SECOND)
}

fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<i64>()
        .ok()?;
    Some(kb * 1024)
}

fn max_fds() -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_of_this_process_are_read() {
        assert!(cpu_seconds().is_some_and(|s| s >= 0.0));
        assert!(resident_bytes().is_some_and(|b| b > 1024 * 1024));
        assert!(max_fds().is_some_and(|n| n > 0));
    }
}

//! What every podgate binary's `/metrics` says about itself: `podgate_build_info` and
//! the conventional process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, …), read from `/proc/self` at
//! each scrape.
//!
//! Owns: those names and their reading. Must never fail a scrape: a value that cannot
//! be read (another OS, a restricted `/proc`) is left out.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    /// `controller`, `proxy` or `demo`.
    role: &'static str,
}

/// Registers `podgate_build_info` and the process metrics on `root` (a registry
/// without a prefix).
pub(crate) fn register(root: &mut Registry, role: &'static str) {
    root.sub_registry_with_prefix("podgate").register(
        "build",
        "The running podgate's version and role",
        Info::new(BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            role,
        }),
    );
    root.register_collector(Box::new(Process {
        started: mark_start(),
    }));
}

/// The process's start time (seconds since the Unix epoch), taken on the first call:
/// call it as a binary starts.
pub(crate) fn mark_start() -> f64 {
    static STARTED: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

/// Reads `/proc/self` at each scrape.
#[derive(Debug)]
struct Process {
    /// See [`mark_start`].
    started: f64,
}

/// `/proc` reports CPU time in USER_HZ ticks, 100 per second on every Linux.
const TICKS_PER_SECOND: f64 = 100.0;

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let gauge = |encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: f64| {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        if let Some(cpu) = cpu_seconds() {
            let c = ConstCounter::new(cpu);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(kb) = status_field(&status, "VmRSS:") {
            let help = "Resident memory size in bytes";
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                help,
                kb * 1024.0,
            )?;
        }
        if let Some(kb) = status_field(&status, "VmSize:") {
            let help = "Virtual memory size in bytes";
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                help,
                kb * 1024.0,
            )?;
        }
        if let Some(n) = status_field(&status, "Threads:") {
            gauge(&mut encoder, "process_threads", "OS threads", n)?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            #[allow(clippy::cast_precision_loss)] // a count of file descriptors
            let open = fds.count() as f64;
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                open,
            )?;
        }
        if let Some(max) = max_fds() {
            let help = "Most file descriptors the process may open";
            gauge(&mut encoder, "process_max_fds", help, max)?;
        }
        let help = "Start time of the process since the Unix epoch, in seconds";
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            help,
            self.started,
        )
    }
}

/// utime + stime of `/proc/self/stat` (fields 14 and 15, counted after the command
/// name, which may hold spaces and ends with the last `)`).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / TICKS_PER_SECOND)
}

/// The number after `name` in `/proc/self/status` (`VmRSS:   1234 kB` → 1234).
fn status_field(status: &str, name: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_fds() -> Option<f64> {
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
    fn the_process_metrics_and_the_build_info_are_exported() {
        let mut root = Registry::default();
        register(&mut root, "proxy");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &root).unwrap();
        for name in [
            "podgate_build_info{version=",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
        assert!(text.contains("role=\"proxy\""), "{text}");
    }
}

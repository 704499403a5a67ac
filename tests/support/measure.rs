//! What the benchmarks measure: CPU time and memory from /proc, etcd request counters
//! from a daemon's /metrics, percentiles, and the machine they ran on.

use std::process::Command;

use super::net::http_get;

/// Sum of `rune_etcd_requests` over all labels on a daemon's /metrics (`addr`:
/// host:port of its `--listen`).
pub fn etcd_requests(addr: &str) -> u64 {
    let (_, body) = http_get(addr, "/metrics").expect("daemon /metrics answers");
    body.lines()
        .filter(|l| {
            l.starts_with("rune_etcd_requests_total") || l.starts_with("rune_etcd_requests{")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Clock ticks per second (`getconf CLK_TCK`), the unit of /proc/<pid>/stat's times.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: i32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: field 3 (state) is f[0]; utime is field 14, stime 15.
    let t = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (t(11) + t(12)) / ticks
}

/// A line of /proc/<pid>/status in MiB (VmHWM, VmRSS).
pub fn status_mib(pid: i32, field: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Nearest-rank percentile of sorted data.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn median(sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The machine a benchmark ran on, for its report.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem: String,
    pub kernel: String,
    pub etcd: String,
    pub date: String,
    pub nofile: String,
}

/// This machine; `etcd_bin` is asked for its version.
pub fn machine(etcd_bin: &str) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cpu,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        mem,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into()),
        etcd: first_line_of(etcd_bin, &["--version"]),
        date: jiff::Timestamp::now()
            .strftime("%Y-%m-%d %H:%M UTC")
            .to_string(),
        nofile: first_line_of("sh", &["-c", "ulimit -n"]),
    }
}

/// The first line a command prints, or `unknown`.
fn first_line_of(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Requests of the given kinds on a daemon's /metrics (e.g. the writes: `txn`,
/// `put`, `delete`).
pub fn etcd_requests_of(addr: &str, ops: &[&str]) -> u64 {
    let (_, body) = http_get(addr, "/metrics").expect("daemon /metrics answers");
    body.lines()
        .filter(|l| l.starts_with("rune_etcd_requests_total{"))
        .filter(|l| ops.iter().any(|op| l.contains(&format!("op=\"{op}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn section_markers(name: &str) -> (String, String) {
    (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    )
}

/// The section `name` of a report (markers included), if it has one: what another
/// benchmark rewriting the file keeps.
pub fn section(report: &str, name: &str) -> Option<String> {
    let (begin, end) = section_markers(name);
    let start = report.find(&begin)?;
    let stop = report[start..].find(&end)? + start + end.len();
    Some(report[start..stop].to_string())
}

/// `report` with section `name` set to `body` (replaced where it is, else appended).
pub fn with_section(report: &str, name: &str, body: &str) -> String {
    let (begin, end) = section_markers(name);
    let block = format!("{begin}\n{}\n{end}", body.trim_end());
    match section(report, name) {
        Some(old) => report.replacen(&old, &block, 1),
        None => format!("{}\n\n{block}\n", report.trim_end()),
    }
}

/// A Markdown table (it reads fine in a terminal too) with `header`.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::ASCII_MARKDOWN)
        .set_header(header.to_vec());
    t
}

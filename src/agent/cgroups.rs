//! Instance cgroups, written straight to cgroupfs: one cgroup per instance (named
//! by its id) under the agent's `--cgroup-parent`, for two jobs. Tracking: every
//! process an instance starts stays in its cgroup, `setsid` or daemonized or not,
//! so a stop kills the whole tree. Limits: `resources: {memory, cpu, pids}`.
//!
//! cgroup v2 is used when the host mounts it at the root (`cgroup.controllers` at
//! `/sys/fs/cgroup`), with the controllers it enables there; otherwise the v1
//! hierarchies that are mounted: `memory`, `cpu` (or `cpu,cpuacct`), `cpuacct`,
//! `pids`. A hybrid host's `unified` v2 mount holds no controllers and is not used.
//! A hierarchy the agent cannot create its parent in (not root, read-only) counts
//! as absent. Only the few files rune needs are touched (`cgroup.procs`,
//! `memory.max`/`memory.limit_in_bytes`, `cpu.max`/`cpu.cfs_quota_us`, `pids.max`,
//! `memory.events`/`memory.oom_control`, `cgroup.kill`, usage counters), so no crate.

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::Resources;
use crate::model::node::CgroupSupport;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Which limits a node can enforce (reported in its node record).
pub type Controllers = CgroupSupport;

/// The cgroup hierarchies found on this host, with the agent's parent in each.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// One hierarchy; `dir` is `<mount>/<parent>`.
    V2 {
        dir: PathBuf,
        controllers: Controllers,
    },
    /// A directory `<mount>/<parent>` per usable hierarchy.
    V1 {
        memory: Option<PathBuf>,
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
        pids: Option<PathBuf>,
    },
}

/// Finds the hierarchies under `root` (normally `/sys/fs/cgroup`), without
/// creating anything. `parent` is a relative path (`rune`).
pub fn detect(root: &Path, parent: &str) -> Option<Layout> {
    let controllers = root.join("cgroup.controllers");
    if let Ok(text) = fs::read_to_string(&controllers) {
        let has = |c: &str| text.split_whitespace().any(|w| w == c);
        return Some(Layout::V2 {
            dir: root.join(parent),
            controllers: Controllers {
                version: 2,
                memory: has("memory"),
                cpu: has("cpu"),
                pids: has("pids"),
            },
        });
    }
    let find = |names: &[&str], file: &str| {
        names
            .iter()
            .map(|n| root.join(n))
            .find(|d| d.join(file).exists())
            .map(|d| d.join(parent))
    };
    let layout = Layout::V1 {
        memory: find(&["memory"], "memory.limit_in_bytes"),
        cpu: find(&["cpu", "cpu,cpuacct", "cpuacct,cpu"], "cpu.cfs_quota_us"),
        cpuacct: find(&["cpuacct", "cpu,cpuacct", "cpuacct,cpu"], "cpuacct.usage"),
        // The root pids cgroup has no pids.max; its cgroup.procs marks the mount.
        pids: find(&["pids"], "cgroup.procs"),
    };
    match &layout {
        Layout::V1 {
            memory: None,
            cpu: None,
            cpuacct: None,
            pids: None,
        } => None,
        _ => Some(layout),
    }
}

/// This node's cgroups: where instance cgroups go and what they can limit.
#[derive(Debug)]
pub struct Cgroups {
    layout: Layout,
}

impl Cgroups {
    /// Detects the hierarchies under `root` and creates `parent` in each; one the
    /// agent cannot create it in is left out. None when no hierarchy is usable.
    pub fn open(root: &Path, parent: &str) -> Result<Cgroups, String> {
        let parent = parent.trim_matches('/');
        if parent.is_empty() || parent.split('/').any(|p| p.is_empty() || p == "..") {
            return Err(format!(
                "cgroup parent {parent:?}: use a relative path like rune"
            ));
        }
        let layout = detect(root, parent)
            .ok_or_else(|| format!("no cgroup hierarchy under {}", root.display()))?;
        let layout = match layout {
            Layout::V2 {
                dir,
                mut controllers,
            } => {
                fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                // Delegate the controllers down to our parent, level by level from
                // the root; a level that refuses leaves the controller out.
                let mut level = root.to_path_buf();
                for part in Path::new(parent).components() {
                    for (c, on) in [
                        ("memory", &mut controllers.memory),
                        ("cpu", &mut controllers.cpu),
                        ("pids", &mut controllers.pids),
                    ] {
                        if *on
                            && write(&level.join("cgroup.subtree_control"), &format!("+{c}"))
                                .is_err()
                        {
                            *on = false;
                        }
                    }
                    level = level.join(part);
                }
                for (c, on) in [
                    ("memory", &mut controllers.memory),
                    ("cpu", &mut controllers.cpu),
                    ("pids", &mut controllers.pids),
                ] {
                    if *on && write(&dir.join("cgroup.subtree_control"), &format!("+{c}")).is_err()
                    {
                        *on = false;
                    }
                }
                Layout::V2 { dir, controllers }
            }
            Layout::V1 {
                memory,
                cpu,
                cpuacct,
                pids,
            } => {
                let usable = |d: Option<PathBuf>| d.filter(|d| fs::create_dir_all(d).is_ok());
                let layout = Layout::V1 {
                    memory: usable(memory),
                    cpu: usable(cpu),
                    cpuacct: usable(cpuacct),
                    pids: usable(pids),
                };
                if let Layout::V1 {
                    memory: None,
                    cpu: None,
                    cpuacct: None,
                    pids: None,
                } = layout
                {
                    return Err(format!(
                        "cannot create {parent} in any cgroup hierarchy under {} (not root?)",
                        root.display()
                    ));
                }
                layout
            }
        };
        Ok(Cgroups { layout })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn version(&self) -> u8 {
        match self.layout {
            Layout::V2 { .. } => 2,
            Layout::V1 { .. } => 1,
        }
    }

    pub fn controllers(&self) -> Controllers {
        match &self.layout {
            Layout::V2 { controllers, .. } => *controllers,
            Layout::V1 {
                memory, cpu, pids, ..
            } => Controllers {
                version: 1,
                memory: memory.is_some(),
                cpu: cpu.is_some(),
                pids: pids.is_some(),
            },
        }
    }

    /// The cgroup of instance `id`, whether or not it exists yet.
    pub fn instance(&self, id: &str) -> InstanceCgroup {
        let name = sanitize(id);
        match &self.layout {
            Layout::V2 { dir, controllers } => {
                let d = dir.join(&name);
                let on = |yes: bool| yes.then(|| d.clone());
                InstanceCgroup {
                    v2: true,
                    dirs: vec![d.clone()],
                    members: d.clone(),
                    memory: on(controllers.memory),
                    cpu: on(controllers.cpu),
                    // cpu.stat's usage_usec is there without the cpu controller.
                    cpuacct: Some(d.clone()),
                    pids: on(controllers.pids),
                }
            }
            Layout::V1 {
                memory,
                cpu,
                cpuacct,
                pids,
            } => {
                let at = |d: &Option<PathBuf>| d.as_ref().map(|d| d.join(&name));
                let (memory, cpu, cpuacct, pids) = (at(memory), at(cpu), at(cpuacct), at(pids));
                let mut dirs: Vec<PathBuf> = Vec::new();
                for d in [&pids, &memory, &cpu, &cpuacct].into_iter().flatten() {
                    if !dirs.contains(d) {
                        dirs.push(d.clone());
                    }
                }
                // Membership from the pids hierarchy, else the first there is.
                let members = dirs[0].clone();
                InstanceCgroup {
                    v2: false,
                    dirs,
                    members,
                    memory,
                    cpu,
                    cpuacct,
                    pids,
                }
            }
        }
    }
}

/// An instance id as one directory name.
fn sanitize(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => format!("_{s}"),
        _ => s,
    }
}

/// Writes `value` to an existing cgroup file (as `echo value > file` does: O_TRUNC
/// is ignored by cgroupfs, and keeps the unit tests' plain files exact).
fn write(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(value.as_bytes())
}

fn with_path<T>(path: &Path, r: io::Result<T>) -> io::Result<T> {
    r.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// One instance's cgroup: a directory per hierarchy (one on v2).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceCgroup {
    v2: bool,
    dirs: Vec<PathBuf>,
    /// Where its processes are listed.
    members: PathBuf,
    memory: Option<PathBuf>,
    cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    pids: Option<PathBuf>,
}

/// A cgroup's `cgroup.procs` files, opened before the fork: the child writes `0`
/// (itself) to each between fork and exec, so it runs nothing outside them.
pub struct Join {
    files: Vec<OwnedFd>,
}

impl Join {
    /// In the child, after fork: async-signal-safe (write(2) on open descriptors).
    pub fn enter(&self) -> io::Result<()> {
        for f in &self.files {
            let n = nix::unistd::write(f, b"0").map_err(io::Error::from)?;
            if n != 1 {
                return Err(io::Error::other("short write to cgroup.procs"));
            }
        }
        Ok(())
    }
}

/// Memory and CPU an instance used, from its cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub memory_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
}

impl InstanceCgroup {
    pub fn exists(&self) -> bool {
        self.members.is_dir()
    }

    /// Creates the cgroup (or takes the one left over) and writes `resources`:
    /// each limit asked for, and every other one back to unlimited.
    pub fn create(&self, r: Option<&Resources>) -> io::Result<Join> {
        for d in &self.dirs {
            with_path(d, fs::create_dir_all(d))?;
        }
        let none = Resources::default();
        let r = r.unwrap_or(&none);
        if let Some(d) = &self.memory {
            let limit = r.memory.map(|m| m.0);
            if self.v2 {
                let v = limit.map_or("max".to_string(), |b| b.to_string());
                let f = d.join("memory.max");
                with_path(&f, write(&f, &v))?;
                // No swapping around the limit (where swap accounting exists).
                let _ = write(
                    &d.join("memory.swap.max"),
                    if limit.is_some() { "0" } else { "max" },
                );
            } else {
                let v = limit.map_or("-1".to_string(), |b| b.to_string());
                let f = d.join("memory.limit_in_bytes");
                // memsw must stay ≥ the memory limit: raise it first, lower it last.
                let memsw = d.join("memory.memsw.limit_in_bytes");
                let _ = write(&memsw, "-1");
                with_path(&f, write(&f, &v))?;
                if memsw.exists() && limit.is_some() {
                    let _ = write(&memsw, &v);
                }
            }
        }
        if let Some(d) = &self.cpu {
            let quota = r.cpu.map(|c| c.0 as u64 * 100); // µs per 100 ms period
            if self.v2 {
                let v = quota.map_or("max 100000".to_string(), |q| format!("{q} 100000"));
                let f = d.join("cpu.max");
                with_path(&f, write(&f, &v))?;
            } else {
                let f = d.join("cpu.cfs_period_us");
                with_path(&f, write(&f, "100000"))?;
                let f = d.join("cpu.cfs_quota_us");
                let v = quota.map_or("-1".to_string(), |q| q.to_string());
                with_path(&f, write(&f, &v))?;
            }
        }
        if let Some(d) = &self.pids {
            let f = d.join("pids.max");
            let v = r.pids.map_or("max".to_string(), |p| p.to_string());
            with_path(&f, write(&f, &v))?;
        }
        let mut files = Vec::new();
        for d in &self.dirs {
            let f = d.join("cgroup.procs");
            let file = with_path(&f, fs::OpenOptions::new().write(true).open(&f))?;
            files.push(OwnedFd::from(file));
        }
        Ok(Join { files })
    }

    /// Live members, by pid.
    pub fn procs(&self) -> Vec<u32> {
        fs::read_to_string(self.members.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills every process in the cgroup: `cgroup.kill` where v2 has it, else
    /// SIGKILL to each member, again until none is left (bounded: ~5 s).
    pub async fn kill_all(&self) {
        if self.v2 {
            let _ = write(&self.members.join("cgroup.kill"), "1");
        }
        for _ in 0..250 {
            let procs = self.procs();
            if procs.is_empty() {
                return;
            }
            for pid in procs {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(cgroup = %self.members.display(), "processes left in the cgroup after SIGKILL");
    }

    /// Removes the cgroup's directories (empty by now: see `kill_all`).
    pub async fn remove(&self) {
        for d in &self.dirs {
            for i in 0..50 {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if i == 49 => {
                        tracing::warn!(cgroup = %d.display(), error = %e, "cannot remove cgroup")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup
    /// (v2 `memory.events`, v1 `memory.oom_control` since Linux 4.13).
    pub fn oom_kills(&self) -> Option<u64> {
        let d = self.memory.as_ref()?;
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        parse_oom_kill(&fs::read_to_string(d.join(file)).ok()?)
    }

    /// Memory in use now and CPU time used so far.
    pub fn usage(&self) -> Usage {
        let read = |d: &Option<PathBuf>, f: &str| {
            d.as_ref().and_then(|d| fs::read_to_string(d.join(f)).ok())
        };
        if self.v2 {
            Usage {
                memory_bytes: read(&self.memory, "memory.current")
                    .and_then(|t| t.trim().parse().ok()),
                cpu_seconds: read(&self.cpuacct, "cpu.stat")
                    .and_then(|t| keyed(&t, "usage_usec"))
                    .map(|us| us as f64 / 1e6),
            }
        } else {
            Usage {
                memory_bytes: read(&self.memory, "memory.usage_in_bytes")
                    .and_then(|t| t.trim().parse().ok()),
                cpu_seconds: read(&self.cpuacct, "cpuacct.usage")
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .map(|ns| ns as f64 / 1e9),
            }
        }
    }
}

/// `key N` from a flat-keyed cgroup file.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The `oom_kill` counter of `memory.events` or `memory.oom_control`.
pub fn parse_oom_kill(text: &str) -> Option<u64> {
    keyed(text, "oom_kill")
}

/// Whether the process ended because the memory limit was hit: the cgroup's OOM
/// kill counter went up while it ran.
pub fn oom_killed(before: Option<u64>, after: Option<u64>) -> bool {
    matches!((before, after), (Some(b), Some(a)) if a > b)
        || matches!((before, after), (None, Some(a)) if a > 0)
}

/// The reason an exit reports when the memory limit killed it (Kubernetes' word).
pub const OOM_KILLED: &str = "OOMKilled";

/// The node's memory (bytes, /proc/meminfo `MemTotal`).
pub fn node_memory() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The node's CPUs (millicores).
pub fn node_cpu() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> PathBuf {
        let root = std::env::temp_dir().join(format!(
            "rune-cgroups-test-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7()
        ));
        for f in files {
            let p = root.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, "").unwrap();
        }
        root
    }

    #[test]
    fn v1_hybrid_is_detected_by_hierarchy() {
        let root = tree(&[
            "memory/memory.limit_in_bytes",
            "cpu/cpu.cfs_quota_us",
            "cpuacct/cpuacct.usage",
            "pids/cgroup.procs",
            "unified/cgroup.procs",
        ]);
        let l = detect(&root, "rune").unwrap();
        assert_eq!(
            l,
            Layout::V1 {
                memory: Some(root.join("memory/rune")),
                cpu: Some(root.join("cpu/rune")),
                cpuacct: Some(root.join("cpuacct/rune")),
                pids: Some(root.join("pids/rune")),
            }
        );
        let cg = Cgroups::open(&root, "rune").unwrap();
        assert_eq!(cg.version(), 1);
        assert_eq!(
            cg.controllers(),
            Controllers {
                version: 1,
                memory: true,
                cpu: true,
                pids: true
            }
        );
        let i = cg.instance("api-1/x");
        assert_eq!(i.members, root.join("pids/rune/api-1_x"));
        assert_eq!(i.dirs.len(), 4);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn v1_combined_cpu_and_missing_pids() {
        let root = tree(&["cpu,cpuacct/cpu.cfs_quota_us", "cpu,cpuacct/cpuacct.usage"]);
        let cg = Cgroups::open(&root, "rune").unwrap();
        assert_eq!(
            cg.controllers(),
            Controllers {
                version: 1,
                memory: false,
                cpu: true,
                pids: false
            }
        );
        let i = cg.instance("a");
        assert_eq!(i.dirs, vec![root.join("cpu,cpuacct/rune/a")]);
        let r: Resources = serde_json::from_str(r#"{"memory": "64Mi", "pids": 5}"#).unwrap();
        assert_eq!(cg.controllers().missing(&r), ["memory", "pids"]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn v2_takes_the_controllers_the_root_enables() {
        let root = tree(&["cgroup.controllers", "cgroup.subtree_control"]);
        fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let l = detect(&root, "rune").unwrap();
        assert_eq!(
            l,
            Layout::V2 {
                dir: root.join("rune"),
                controllers: Controllers {
                    version: 2,
                    memory: true,
                    cpu: true,
                    pids: true
                }
            }
        );
        fs::write(root.join("cgroup.controllers"), "cpu io\n").unwrap();
        let Some(Layout::V2 { controllers, .. }) = detect(&root, "rune") else {
            panic!()
        };
        assert!(controllers.cpu && !controllers.memory && !controllers.pids);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn nothing_mounted_is_no_cgroups() {
        let root = tree(&["unified/cgroup.procs"]);
        assert_eq!(detect(&root, "rune"), None);
        assert!(Cgroups::open(&root, "rune").is_err());
        assert!(Cgroups::open(&root, "../x").is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    /// The files the kernel would have in an instance cgroup, made by hand.
    fn fake_instance(cg: &InstanceCgroup, files: &[&str]) {
        for d in &cg.dirs {
            fs::create_dir_all(d).unwrap();
            for f in files {
                fs::write(d.join(f), "").unwrap();
            }
        }
    }

    #[test]
    fn limits_are_written_where_each_hierarchy_wants_them() {
        let root = tree(&[
            "memory/memory.limit_in_bytes",
            "cpu/cpu.cfs_quota_us",
            "cpuacct/cpuacct.usage",
            "pids/cgroup.procs",
        ]);
        let cg = Cgroups::open(&root, "rune").unwrap().instance("i1");
        fake_instance(
            &cg,
            &[
                "cgroup.procs",
                "memory.limit_in_bytes",
                "cpu.cfs_period_us",
                "cpu.cfs_quota_us",
                "pids.max",
            ],
        );
        let r: Resources =
            serde_json::from_str(r#"{"memory": "256Mi", "cpu": "500m", "pids": 64}"#).unwrap();
        cg.create(Some(&r)).unwrap();
        let read = |f: &str| fs::read_to_string(root.join(f)).unwrap();
        assert_eq!(read("memory/rune/i1/memory.limit_in_bytes"), "268435456");
        assert_eq!(read("cpu/rune/i1/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu/rune/i1/cpu.cfs_period_us"), "100000");
        assert_eq!(read("pids/rune/i1/pids.max"), "64");
        // Without resources: everything back to unlimited (a cgroup left over).
        cg.create(None).unwrap();
        assert_eq!(read("memory/rune/i1/memory.limit_in_bytes"), "-1");
        assert_eq!(read("cpu/rune/i1/cpu.cfs_quota_us"), "-1");
        assert_eq!(read("pids/rune/i1/pids.max"), "max");
        fs::remove_dir_all(&root).unwrap();

        // v2 with only cpu and pids enabled: no memory files are touched.
        let root = tree(&["cgroup.controllers", "cgroup.subtree_control"]);
        fs::write(root.join("cgroup.controllers"), "cpu pids\n").unwrap();
        fs::create_dir_all(root.join("rune")).unwrap();
        fs::write(root.join("rune/cgroup.subtree_control"), "").unwrap();
        let cgroups = Cgroups::open(&root, "rune").unwrap();
        assert_eq!(cgroups.version(), 2);
        assert!(!cgroups.controllers().memory);
        let cg = cgroups.instance("i1");
        fake_instance(&cg, &["cgroup.procs", "cpu.max", "pids.max"]);
        let r: Resources = serde_json::from_str(r#"{"cpu": 2, "pids": 10}"#).unwrap();
        cg.create(Some(&r)).unwrap();
        let read = |f: &str| fs::read_to_string(root.join(f)).unwrap();
        assert_eq!(read("rune/i1/cpu.max"), "200000 100000");
        assert_eq!(read("rune/i1/pids.max"), "10");
        assert_eq!(cg.oom_kills(), None);
        fs::write(root.join("rune/i1/cgroup.procs"), "12\n13\n").unwrap();
        assert_eq!(cg.procs(), [12, 13]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn oom_reason_from_the_kill_counter() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_oom_kill(v1), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(1));
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"), None);
        assert!(oom_killed(Some(0), Some(1)));
        assert!(!oom_killed(Some(1), Some(1)));
        assert!(!oom_killed(None, None));
        assert!(!oom_killed(Some(0), None));
        assert!(oom_killed(None, Some(1)));
    }
}

/// The memory (bytes) and CPU (millicores) the agent's instances ask for in all,
/// for its node record (placement fits new instances in what is left).
#[derive(Debug)]
pub struct Requests {
    by_instance: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
    total: tokio::sync::watch::Sender<(u64, u64)>,
}

impl Requests {
    pub fn new() -> (Requests, tokio::sync::watch::Receiver<(u64, u64)>) {
        let (total, rx) = tokio::sync::watch::channel((0, 0));
        let r = Requests {
            by_instance: Default::default(),
            total,
        };
        (r, rx)
    }

    /// Instance `key` asks for `r` (None: nothing), or is gone.
    pub fn set(&self, key: &str, r: Option<&Resources>) {
        let mut by = self.by_instance.lock().unwrap_or_else(|e| e.into_inner());
        let ask = r.map_or((0, 0), |r| {
            (r.memory.map_or(0, |m| m.0), r.cpu.map_or(0, |c| c.0 as u64))
        });
        if ask == (0, 0) {
            by.remove(key);
        } else {
            by.insert(key.to_string(), ask);
        }
        let total = by.values().fold((0u64, 0u64), |(m, c), (dm, dc)| {
            (m.saturating_add(*dm), c.saturating_add(*dc))
        });
        self.total
            .send_if_modified(|t| std::mem::replace(t, total) != total);
    }
}

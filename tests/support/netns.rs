//! A test host in a network namespace of its own, joined to this one by a veth pair
//! that carries loopback-range addresses only (127.x: no other address is a
//! permitted target on this machine), so that a fault test can cut one program off
//! etcd while everything else keeps reaching it.
//!
//! 127.0.0.0/8 is local on both sides (the `local 127.0.0.0/8 dev lo` route of the
//! local table), so each side gets a /32 route to its peer in the local table (the
//! longer prefix wins) and `route_localnet` on its veth end, which lets 127.x
//! packets cross a non-loopback link. Needs root and iproute2; everything is
//! removed on drop (deleting the namespace deletes the veth pair and its routes).

use std::process::Command;

use super::scratch::unique;

/// The namespace, the veth pair and the two addresses.
pub struct NetNs {
    /// The namespace's name (`ip netns exec <name> ...`).
    pub name: String,
    /// The veth end in this (the root) namespace: what [`NetNs::cut`] takes down.
    pub host_if: String,
    ns_if: String,
    /// This namespace's address on the link: what programs inside reach us at.
    pub host_addr: String,
    /// The namespace's address on the link.
    pub ns_addr: String,
}

/// Runs `ip ARGS`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        format!(
            "running `ip {}`: {e} (is iproute2 installed?)",
            args.join(" ")
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetNs {
    /// A /30 of 127.x addresses for this process and this call (unique enough that
    /// two test runs on one machine do not collide), without setting anything up.
    fn plan() -> NetNs {
        let n: u32 = unique("n").rsplit('-').next().unwrap().parse().unwrap();
        let pid = std::process::id();
        // 127.222.<a>.<b*4 + 1|2>: a from the pid, b from pid and call.
        let a = (pid >> 6) & 0xff;
        let b = (pid + n * 7) & 0x3f;
        let tag = format!("{}{}", pid % 100_000, n % 100);
        NetNs {
            name: format!("rune-fault-{pid}-{n}"),
            host_if: format!("rf{tag}h"),
            ns_if: format!("rf{tag}n"),
            host_addr: format!("127.222.{a}.{}", b * 4 + 1),
            ns_addr: format!("127.222.{a}.{}", b * 4 + 2),
        }
    }

    /// The address etcd must also listen on before the namespace exists (binding a
    /// 127.x address works without it: the whole range is local).
    pub fn reserve() -> NetNs {
        NetNs::plan()
    }

    /// Creates the namespace and the link (after [`NetNs::reserve`]); a clear error
    /// when this machine cannot (not root, no `ip`, no netns support).
    pub fn create(&self) -> Result<(), String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if uid != "0" {
            return Err(format!(
                "network namespaces need root (running as uid {uid:?})"
            ));
        }
        sweep_stale();
        ip(&["netns", "add", &self.name])?;
        let (h, n, ns) = (&self.host_if, &self.ns_if, &self.name);
        ip(&["link", "add", h, "type", "veth", "peer", "name", n])?;
        ip(&["link", "set", n, "netns", ns])?;
        // The root side.
        ip(&["addr", "add", &format!("{}/30", self.host_addr), "dev", h])?;
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{h}/route_localnet"), "1")
            .map_err(|e| format!("route_localnet on {h}: {e}"))?;
        ip(&["link", "set", h, "up"])?;
        self.route_to_ns()?;
        // The namespace side.
        let inside = |args: &[&str]| {
            let mut a = vec!["netns", "exec", ns, "ip"];
            a.extend_from_slice(args);
            ip(&a)
        };
        inside(&["link", "set", "lo", "up"])?;
        inside(&["addr", "add", &format!("{}/30", self.ns_addr), "dev", n])?;
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c"])
            .arg(format!(
                "echo 1 > /proc/sys/net/ipv4/conf/{n}/route_localnet"
            ))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "route_localnet in {ns}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        inside(&["link", "set", n, "up"])?;
        inside(&[
            "route",
            "replace",
            &format!("{}/32", self.host_addr),
            "dev",
            n,
            "table",
            "local",
        ])?;
        Ok(())
    }

    /// Our /32 route to the namespace's address (dropped whenever the link goes
    /// down, so [`NetNs::restore`] puts it back).
    fn route_to_ns(&self) -> Result<(), String> {
        ip(&[
            "route",
            "replace",
            &format!("{}/32", self.ns_addr),
            "dev",
            &self.host_if,
            "table",
            "local",
        ])
    }

    /// `ip netns exec <name>`: the prefix that runs a program inside.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    /// Cuts the link: packets either way are dropped from now on (no reset, no
    /// refusal: a partition, as when a cable or a switch fails).
    pub fn cut(&self) -> Result<(), String> {
        ip(&["link", "set", &self.host_if, "down"])
    }

    /// Restores the link and its route.
    pub fn restore(&self) -> Result<(), String> {
        ip(&["link", "set", &self.host_if, "up"])?;
        self.route_to_ns()
    }
}

/// Namespaces of earlier test runs that died before their drop (SIGKILLed, say):
/// `rune-fault-<pid>-<n>` whose pid is gone. Deleting one deletes its veth pair.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix("rune-fault-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys the veth pair (both ends) and its routes.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

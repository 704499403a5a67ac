//! Port allocation: a free loopback port per named port unless pinned, never handed
//! to two instances of this agent (the kernel's "free right now" is not enough: an
//! instance that is restarting does not hold its port while it is down).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::model::PortSpec;

/// Asks the kernel for a port that is free right now.
pub fn free_loopback_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Ports handed out by this agent. Cheap to clone.
#[derive(Clone, Default)]
pub struct Ports {
    used: Arc<Mutex<BTreeSet<u16>>>,
}

impl Ports {
    /// Marks ports (e.g. an adopted instance's) as taken.
    pub fn claim(&self, ports: impl IntoIterator<Item = u16>) {
        self.used.lock().unwrap().extend(ports);
    }

    pub fn release(&self, ports: impl IntoIterator<Item = u16>) {
        let mut used = self.used.lock().unwrap();
        for p in ports {
            used.remove(&p);
        }
    }

    /// One port per declared port, in declaration order.
    pub fn allocate(&self, specs: &[PortSpec]) -> std::io::Result<Vec<(String, u16)>> {
        let mut used = self.used.lock().unwrap();
        allocate_with(specs, &mut used, free_loopback_port)
    }
}

/// The allocation rule, apart from the kernel so it can be tested: pinned ports are
/// taken as they are; others come from `candidate` until one is not in `used`.
pub fn allocate_with(
    specs: &[PortSpec],
    used: &mut BTreeSet<u16>,
    mut candidate: impl FnMut() -> std::io::Result<u16>,
) -> std::io::Result<Vec<(String, u16)>> {
    let mut out = Vec::new();
    for spec in specs {
        let port = match spec.port {
            Some(p) => p,
            None => {
                let mut tries = 0;
                loop {
                    let p = candidate()?;
                    if !used.contains(&p) {
                        break p;
                    }
                    tries += 1;
                    if tries > 1000 {
                        return Err(std::io::Error::other("no free loopback port"));
                    }
                }
            }
        };
        used.insert(port);
        out.push((spec.name.as_str().to_string(), port));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, port: Option<u16>) -> PortSpec {
        serde_json::from_value(serde_json::json!({"name": name, "port": port})).unwrap()
    }

    #[test]
    fn pinned_kept_free_ones_never_shared() {
        let mut used: BTreeSet<u16> = [5000].into();
        let mut next = [5000u16, 5000, 5001, 5001, 5002].into_iter();
        let got = allocate_with(
            &[
                spec("http", None),
                spec("admin", Some(9000)),
                spec("x", None),
            ],
            &mut used,
            || Ok(next.next().unwrap()),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("http".to_string(), 5001),
                ("admin".to_string(), 9000),
                ("x".to_string(), 5002)
            ]
        );
        assert!(used.contains(&9000) && used.contains(&5001) && used.contains(&5002));
    }

    #[test]
    fn real_allocation_is_distinct() {
        let p = Ports::default();
        let a = p.allocate(&[spec("a", None)]).unwrap();
        let b = p.allocate(&[spec("a", None)]).unwrap();
        assert_ne!(a[0].1, b[0].1);
    }
}

//! Deletion: stop everything, purge once, and never bring a purged service back.

use super::*;

#[test]
fn deletion_stops_then_purges() {
    let mut s = Sim::converged(2, &["n1"]);
    if let SpecState::Valid { stored, .. } = &mut s.o.spec {
        stored.deletion_timestamp = Some(t(5));
    }
    let p = s.step();
    assert_eq!(p.stop.len(), 2);
    assert!(!p.purge);
    s.agents(false);
    s.step();
    let p = s.step();
    assert!(p.purge);
}

#[test]
fn nothing_is_purged_twice() {
    let mut s = Sim::new(1, &["n1"]);
    s.o.spec = SpecState::Missing;
    let p = s.step();
    assert!(!p.purge, "no keys left to remove");
    assert_eq!(
        p.status,
        ServiceStatus::default(),
        "and no status brought back"
    );
    s.o.has_status = true;
    let p = s.step();
    assert!(p.purge);
}

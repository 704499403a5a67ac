//! Which services use which configs and secrets, from the informer's watch of
//! their specs: a change of `configs/<ns>/<name>` or `secrets/<ns>/<name>` enqueues
//! exactly the services whose current spec names it (for the `Stale` condition),
//! with no scan over every service. The same watch gives each config's and
//! secret's current `version` (clear metadata; nothing is decrypted), which the
//! reconciles read here instead of asking etcd once per source. Kept by every
//! replica, as the triage is.
//!
//! Only spec values that can hold a ref at all (they mention `secret` or
//! `config`) are parsed, so a fleet of services that use none costs a substring
//! search per spec write. Instances of an older revision that named another
//! source are not indexed: the periodic resync covers them.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::model::{ServiceRef, SourceRef, StoredService, StoredSource};
use crate::store::Keys;
use crate::store::watch::WatchEvent;

type Source = (String, SourceRef);

#[derive(Default)]
pub struct SourceIndex {
    users: HashMap<Source, HashSet<ServiceRef>>,
    used: HashMap<ServiceRef, BTreeSet<SourceRef>>,
    /// Each config's and secret's current version; one that does not parse is
    /// absent (no `Stale` claim from it).
    versions: HashMap<Source, u64>,
}

impl SourceIndex {
    pub fn observe(&mut self, keys: &Keys, ev: &WatchEvent) {
        match ev {
            WatchEvent::Reset { kvs, .. } => {
                *self = SourceIndex::default();
                for kv in kvs {
                    self.put(keys, &kv.key, &kv.value);
                }
            }
            WatchEvent::Put(kv) => self.put(keys, &kv.key, &kv.value),
            WatchEvent::Delete(kv) => {
                if let Some(service) = spec_key(keys, &kv.key) {
                    self.set(service, BTreeSet::new());
                } else if let Some(source) = keys.source_of(&kv.key) {
                    self.versions.remove(&source);
                }
            }
            WatchEvent::Connected(_) => {}
        }
    }

    /// The services whose spec names `source` of namespace `ns`.
    pub fn users(&self, ns: &str, source: &SourceRef) -> Vec<ServiceRef> {
        let key = (ns.to_string(), source.clone());
        self.users
            .get(&key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The current version of config or secret `source` of namespace `ns`, as
    /// last watched.
    pub fn version(&self, ns: &str, source: &SourceRef) -> Option<u64> {
        self.versions
            .get(&(ns.to_string(), source.clone()))
            .copied()
    }

    fn put(&mut self, keys: &Keys, key: &str, value: &[u8]) {
        if let Some(source) = keys.source_of(key) {
            match StoredSource::parse(key, value) {
                Ok(stored) => self.versions.insert(source, stored.version),
                Err(_) => self.versions.remove(&source),
            };
            return;
        }
        let Some(service) = spec_key(keys, key) else {
            return;
        };
        let mentions = |word: &[u8]| value.windows(word.len()).any(|w| w == word);
        let refs = if mentions(b"secret") || mentions(b"config") {
            StoredService::parse(key, value, &service.namespace, &service.name)
                .map(|s| s.service.sources())
                .unwrap_or_default()
        } else {
            BTreeSet::new()
        };
        self.set(service, refs);
    }

    fn set(&mut self, service: ServiceRef, refs: BTreeSet<SourceRef>) {
        if let Some(old) = self.used.remove(&service) {
            for r in old {
                let key = (service.namespace.clone(), r);
                if let Some(users) = self.users.get_mut(&key) {
                    users.remove(&service);
                    if users.is_empty() {
                        self.users.remove(&key);
                    }
                }
            }
        }
        if refs.is_empty() {
            return;
        }
        for r in &refs {
            self.users
                .entry((service.namespace.clone(), r.clone()))
                .or_default()
                .insert(service.clone());
        }
        self.used.insert(service, refs);
    }
}

/// The service of a `services/<ns>/<name>` key.
fn spec_key(keys: &Keys, key: &str) -> Option<ServiceRef> {
    key.starts_with(&keys.services())
        .then(|| keys.service_of(key))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SourceKind;
    use crate::store::Kv;

    fn kv(key: String, value: &str) -> Kv {
        Kv {
            key,
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        }
    }

    #[test]
    fn a_change_finds_the_services_that_use_it() {
        let k = Keys::new("/t");
        let mut index = SourceIndex::default();
        let db = SourceRef::new(SourceKind::Secret, "db");
        let spec = |name: &str, extra: &str| {
            format!(
                "{{\"service\":{{\"name\":\"{name}\",\"namespace\":\"ns\",\"command\":\"x\"{extra}}}}}"
            )
        };
        let uses_db = r#","env":{"P":{"secret":"db","key":"password"}}"#;
        index.observe(
            &k,
            &WatchEvent::Put(kv(k.service("ns", "api"), &spec("api", uses_db))),
        );
        index.observe(
            &k,
            &WatchEvent::Put(kv(k.service("ns", "web"), &spec("web", ""))),
        );
        assert_eq!(index.users("ns", &db), vec![ServiceRef::new("ns", "api")]);
        assert!(index.users("other", &db).is_empty(), "namespaced");
        // The spec no longer names it.
        index.observe(
            &k,
            &WatchEvent::Put(kv(k.service("ns", "api"), &spec("api", ""))),
        );
        assert!(index.users("ns", &db).is_empty());
        index.observe(
            &k,
            &WatchEvent::Put(kv(k.service("ns", "api"), &spec("api", uses_db))),
        );
        index.observe(&k, &WatchEvent::Delete(kv(k.service("ns", "api"), "")));
        assert!(index.users("ns", &db).is_empty(), "deleted");
    }

    #[test]
    fn versions_follow_the_watch_of_configs_and_secrets() {
        let k = Keys::new("/t");
        let mut index = SourceIndex::default();
        let db = SourceRef::new(SourceKind::Secret, "db");
        let key = k.source(SourceKind::Secret, "ns", "db");
        let value = |version: u64| {
            format!(
                "{{\"name\":\"db\",\"namespace\":\"ns\",\"version\":{version},\"createdAt\":\"2026-01-01T00:00:00Z\",\"updatedAt\":\"2026-01-01T00:00:00Z\",\"keys\":{{}}}}"
            )
        };
        index.observe(&k, &WatchEvent::Put(kv(key.clone(), &value(2))));
        assert_eq!(index.version("ns", &db), Some(2));
        assert_eq!(index.version("other", &db), None, "namespaced");
        index.observe(&k, &WatchEvent::Put(kv(key.clone(), "not json")));
        assert_eq!(index.version("ns", &db), None, "unparseable: no claim");
        index.observe(&k, &WatchEvent::Put(kv(key.clone(), &value(3))));
        index.observe(&k, &WatchEvent::Delete(kv(key, "")));
        assert_eq!(index.version("ns", &db), None, "deleted");
    }
}

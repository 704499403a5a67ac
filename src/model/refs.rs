//! Typed identities, after kube-runtime's `ObjectRef` and controller-runtime's
//! `NamespacedName`: a service or an instance is named by a value with one
//! `Display` (`ns/name`, `ns/service/id`), one parser and one file-name form,
//! instead of tuples and strings split and joined by hand.

use std::fmt;

/// A service: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

impl ServiceRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses `namespace/name`; both parts non-empty, nothing more.
    pub fn parse(s: &str) -> Option<Self> {
        let (ns, name) = s.split_once('/')?;
        if ns.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(ServiceRef::new(ns, name))
    }

    /// One of this service's instances.
    pub fn instance(&self, id: impl Into<String>) -> InstanceRef {
        InstanceRef {
            service: self.clone(),
            id: id.into(),
        }
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An instance: `namespace/service/id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceRef {
    pub service: ServiceRef,
    pub id: String,
}

impl InstanceRef {
    /// Parses `namespace/service/id`.
    pub fn parse(s: &str) -> Option<Self> {
        let (svc, id) = s.rsplit_once('/')?;
        if id.is_empty() {
            return None;
        }
        Some(ServiceRef::parse(svc)?.instance(id))
    }

    /// The name of this instance's files in an agent's data dir (`ns_service_id`):
    /// names and namespaces are DNS labels and ids are `[a-z0-9-]`, so `_` cannot
    /// collide.
    pub fn file_name(&self) -> String {
        format!(
            "{}_{}_{}",
            self.service.namespace, self.service.name, self.id
        )
    }

    /// Parses [`Self::file_name`]'s form back: an agent rebuilds what it knows of
    /// instances' logs from the file names alone.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let mut parts = name.split('_');
        let (ns, svc, id) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || [ns, svc, id].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(ServiceRef::new(ns, svc).instance(id))
    }
}

impl fmt::Display for InstanceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.id)
    }
}

/// A stored value and the etcd revision it was read at (its `mod_revision`): what
/// a compare-and-swap write compares against. For a write, `value` is what to
/// store and `revision` the one its key must still have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: i64,
}

impl<T> Versioned<T> {
    pub fn new(value: T, revision: i64) -> Self {
        Versioned { value, revision }
    }

    /// Borrows the value, at the same revision.
    pub fn as_ref(&self) -> Versioned<&T> {
        Versioned::new(&self.value, self.revision)
    }

    /// Transforms the value, keeping the revision: what to write in place of a
    /// value read, compared against the revision it was read at.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Versioned<U> {
        Versioned::new(f(self.value), self.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ref_round_trips() {
        let s = ServiceRef::new("default", "api");
        assert_eq!(s.to_string(), "default/api");
        assert_eq!(ServiceRef::parse("default/api"), Some(s));
        for bad in ["", "api", "/api", "default/", "a/b/c"] {
            assert_eq!(ServiceRef::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn instance_ref_round_trips_and_names_files() {
        let i = ServiceRef::new("default", "api").instance("api-0a1b");
        assert_eq!(i.to_string(), "default/api/api-0a1b");
        assert_eq!(InstanceRef::parse("default/api/api-0a1b"), Some(i.clone()));
        assert_eq!(i.file_name(), "default_api_api-0a1b");
        assert_eq!(InstanceRef::from_file_name(&i.file_name()), Some(i.clone()));
        for bad in ["default_api", "default_api_", "a_b_c_d", "_api_x", "x"] {
            assert_eq!(InstanceRef::from_file_name(bad), None, "{bad}");
        }
        for bad in ["default/api", "default/api/", "x"] {
            assert_eq!(InstanceRef::parse(bad), None, "{bad}");
        }
    }
}

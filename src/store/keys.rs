//! The etcd key layout from the contract, in one place. Every key is under the
//! configured prefix, so two prefixes in one etcd are two independent systems.

use crate::model::ServiceRef;

/// Builds and parses keys under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Always ends with '/'.
    root: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        let trimmed = prefix.trim_end_matches('/');
        Keys {
            root: format!("{trimmed}/"),
        }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn services(&self) -> String {
        format!("{}services/", self.root)
    }
    pub fn services_in(&self, ns: &str) -> String {
        format!("{}services/{ns}/", self.root)
    }
    pub fn service(&self, ns: &str, name: &str) -> String {
        format!("{}services/{ns}/{name}", self.root)
    }

    pub fn operations(&self) -> String {
        format!("{}operations/", self.root)
    }
    pub fn operation(&self, ns: &str, name: &str) -> String {
        format!("{}operations/{ns}/{name}", self.root)
    }

    pub fn statuses(&self) -> String {
        format!("{}status/", self.root)
    }
    pub fn status(&self, ns: &str, name: &str) -> String {
        format!("{}status/{ns}/{name}", self.root)
    }

    pub fn instances(&self) -> String {
        format!("{}instances/", self.root)
    }
    /// All instance records of one service (trailing '/', so `api` doesn't match `api2`).
    pub fn instances_of(&self, ns: &str, svc: &str) -> String {
        format!("{}instances/{ns}/{svc}/", self.root)
    }
    pub fn instance(&self, ns: &str, svc: &str, id: &str) -> String {
        format!("{}instances/{ns}/{svc}/{id}", self.root)
    }

    pub fn instance_statuses(&self) -> String {
        format!("{}instance-status/", self.root)
    }
    pub fn instance_statuses_of(&self, ns: &str, svc: &str) -> String {
        format!("{}instance-status/{ns}/{svc}/", self.root)
    }
    pub fn instance_status(&self, ns: &str, svc: &str, id: &str) -> String {
        format!("{}instance-status/{ns}/{svc}/{id}", self.root)
    }

    /// Spec revisions, controller-owned and immutable: `revisions/<ns>/<svc>/<n>`.
    pub fn revisions(&self) -> String {
        format!("{}revisions/", self.root)
    }
    pub fn revisions_of(&self, ns: &str, svc: &str) -> String {
        format!("{}revisions/{ns}/{svc}/", self.root)
    }
    pub fn revision(&self, ns: &str, svc: &str, n: u64) -> String {
        format!("{}revisions/{ns}/{svc}/{n}", self.root)
    }

    /// Where a service's ready instances answer (`endpoints/<ns>/<svc>`), written by
    /// the controller leader for load balancers; no trigger for a reconcile.
    pub fn endpoints(&self) -> String {
        format!("{}endpoints/", self.root)
    }
    pub fn endpoints_in(&self, ns: &str) -> String {
        format!("{}endpoints/{ns}/", self.root)
    }
    pub fn endpoints_of(&self, ns: &str, svc: &str) -> String {
        format!("{}endpoints/{ns}/{svc}", self.root)
    }

    /// Node-scoped copies of the instance records, for that node's agent alone:
    /// `assignments/<node>/<ns>/<svc>/<id>`. Written by the controller in the same
    /// transaction as `instances/…`, so an agent watches (and may be allowed to read)
    /// only its own node's prefix.
    pub fn assignments(&self) -> String {
        format!("{}assignments/", self.root)
    }
    pub fn assignments_of(&self, node: &str) -> String {
        format!("{}assignments/{node}/", self.root)
    }
    pub fn assignment(&self, node: &str, ns: &str, svc: &str, id: &str) -> String {
        format!("{}assignments/{node}/{ns}/{svc}/{id}", self.root)
    }

    /// Events, on their writer's lease: `events/<ns>/<svc>/<id>` (see `crate::events`).
    pub fn events(&self) -> String {
        format!("{}events/", self.root)
    }
    pub fn events_in(&self, ns: &str) -> String {
        format!("{}events/{ns}/", self.root)
    }
    pub fn events_of(&self, ns: &str, svc: &str) -> String {
        format!("{}events/{ns}/{svc}/", self.root)
    }
    pub fn event(&self, ns: &str, svc: &str, id: &str) -> String {
        format!("{}events/{ns}/{svc}/{id}", self.root)
    }

    /// Configs and secrets: `configs/<ns>/<name>`, `secrets/<ns>/<name>` (see
    /// `model::source`). Written by the CLI and GitOps tools; a secret's data is
    /// sealed, its metadata in clear.
    pub fn configs(&self) -> String {
        format!("{}configs/", self.root)
    }
    pub fn secrets(&self) -> String {
        format!("{}secrets/", self.root)
    }
    /// Every config or every secret (`kind`), of one namespace or of all.
    pub fn sources_of(&self, kind: crate::model::SourceKind, ns: Option<&str>) -> String {
        match ns {
            Some(ns) => format!("{}{}/{ns}/", self.root, kind.collection()),
            None => format!("{}{}/", self.root, kind.collection()),
        }
    }
    pub fn source(&self, kind: crate::model::SourceKind, ns: &str, name: &str) -> String {
        format!("{}{}/{ns}/{name}", self.root, kind.collection())
    }
    /// The config or secret a `configs/` or `secrets/` key names: its namespace and
    /// reference; `None` for any other key, or one of the wrong shape.
    pub fn source_of(&self, key: &str) -> Option<(String, crate::model::SourceRef)> {
        use crate::model::{SourceKind, SourceRef};
        let rest = key.strip_prefix(&self.root)?;
        let (collection, rest) = rest.split_once('/')?;
        let kind = match collection {
            "configs" => SourceKind::Config,
            "secrets" => SourceKind::Secret,
            _ => return None,
        };
        let (ns, name) = rest.split_once('/')?;
        if ns.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some((ns.to_string(), SourceRef::new(kind, name)))
    }

    /// The layout marker: which key layout this prefix holds (see `store::layout`).
    pub fn layout(&self) -> String {
        format!("{}layout", self.root)
    }

    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.root)
    }
    pub fn node(&self, node: &str) -> String {
        format!("{}nodes/{node}", self.root)
    }

    /// The operator's node state (`rune node cordon|uncordon`): `node-state/<node>`.
    /// Not on the agent's lease: it outlives agent restarts.
    pub fn node_states(&self) -> String {
        format!("{}node-state/", self.root)
    }
    pub fn node_state(&self, node: &str) -> String {
        format!("{}node-state/{node}", self.root)
    }

    /// The bearer token of `<node>`'s logs endpoint, written by its agent; readable
    /// only by roles allowed to read logs (deploy/logs.md).
    pub fn node_token(&self, node: &str) -> String {
        format!("{}node-tokens/{node}", self.root)
    }

    /// Election keys: `leader/<lease id>`; the lowest create revision leads.
    pub fn leader(&self) -> String {
        format!("{}leader/", self.root)
    }

    /// Splits a key under `collection` (e.g. `services/`) into its path segments:
    /// `…/services/default/api` → `["default", "api"]`.
    pub fn segments<'a>(&self, collection: &str, key: &'a str) -> Option<Vec<&'a str>> {
        let rest = key.strip_prefix(&self.root)?.strip_prefix(collection)?;
        let rest = rest.strip_prefix('/')?;
        Some(rest.split('/').collect())
    }

    /// The service any per-service key (services, operations, status, instances,
    /// instance-status, revisions) belongs to; `None` for a key that does not fit the layout
    /// exactly (a segment too many or too few), so that it is reported as such
    /// rather than taken for another service's key.
    pub fn service_of(&self, key: &str) -> Option<ServiceRef> {
        let rest = key.strip_prefix(&self.root)?;
        let (collection, rest) = rest.split_once('/')?;
        let segments = match collection {
            "services" | "operations" | "status" => 2,
            "instances" | "instance-status" | "revisions" => 3,
            _ => return None,
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() != segments || parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(ServiceRef::new(parts[0], parts[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_normalised() {
        assert_eq!(
            Keys::new("/rune").service("default", "api"),
            "/rune/services/default/api"
        );
        assert_eq!(
            Keys::new("/rune/").service("default", "api"),
            "/rune/services/default/api"
        );
    }

    #[test]
    fn service_of_every_collection() {
        let k = Keys::new("/t");
        for key in [
            k.service("ns", "a"),
            k.operation("ns", "a"),
            k.status("ns", "a"),
            k.instance("ns", "a", "id1"),
            k.instance_status("ns", "a", "id1"),
            k.revision("ns", "a", 3),
        ] {
            assert_eq!(
                k.service_of(&key),
                Some(ServiceRef::new("ns", "a")),
                "{key}"
            );
        }
        assert_eq!(k.service_of(&k.node("n1")), None);
        use crate::model::{SourceKind, SourceRef};
        let secret = k.source(SourceKind::Secret, "ns", "db");
        assert_eq!(secret, "/t/secrets/ns/db");
        assert_eq!(k.service_of(&secret), None, "a secret is no service's key");
        assert_eq!(
            k.source_of(&secret),
            Some(("ns".into(), SourceRef::new(SourceKind::Secret, "db")))
        );
        assert_eq!(k.source_of("/t/configs/ns/a/b"), None);
        assert_eq!(k.source_of(&k.service("ns", "a")), None);
        assert_eq!(k.service_of(&k.node_state("n1")), None);
        assert_eq!(
            k.segments("node-state", &k.node_state("n1")),
            Some(vec!["n1"])
        );
        assert_eq!(
            k.service_of(&k.assignment("n1", "ns", "a", "i")),
            None,
            "an assignment is the agent's copy: it triggers nothing"
        );
        assert_eq!(
            k.segments("assignments", &k.assignment("n1", "ns", "a", "i")),
            Some(vec!["n1", "ns", "a", "i"])
        );
        assert_eq!(
            k.service_of("/t/services/ns/a/x"),
            None,
            "a segment too many"
        );
        assert_eq!(k.service_of("/t/services/ns"), None, "one too few");
        assert_eq!(k.service_of("/t/instances/ns/a/i/x"), None);
        assert_eq!(k.service_of("/other/services/ns/a"), None);
        assert_eq!(
            k.segments("instances", &k.instance("ns", "a", "i")),
            Some(vec!["ns", "a", "i"])
        );
    }
}

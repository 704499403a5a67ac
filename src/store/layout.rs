//! The layout marker: `<prefix>/layout` says which key layout a prefix holds, so
//! that a rune reading keys it does not understand stops with a clear message
//! instead of misreading them.
//!
//! rune is pre-1.0 and does not migrate: a prefix written by an older layout is
//! refused as a whole, with what to do. Layouts so far:
//! - 1 (no marker): instance records embedding the spec, agents watching every
//!   instance record.
//! - 2: spec revisions (`revisions/`), instance records naming a revision, and
//!   node-scoped copies (`assignments/<node>/`) that each agent watches.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, cmp, op};

/// The layout this build reads and writes.
pub const LAYOUT: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Marker {
    layout: u32,
    written_by: String,
}

impl Store {
    /// For agents (which may not read the fleet's keys): refuses a prefix marked
    /// with another layout. An unmarked prefix is accepted: it is new, or its
    /// controller refuses it.
    pub async fn check_layout(&self) -> Result<(), StoreError> {
        match self.get(self.keys().layout().as_str()).await? {
            None => Ok(()),
            Some(kv) => self.judge(Some(&kv.value)),
        }
    }

    /// For controllers: refuses a prefix of another layout, or an unmarked one that
    /// already holds instance records (written before the marker existed); marks a
    /// new prefix with this layout.
    pub async fn ensure_layout(&self) -> Result<(), StoreError> {
        let key = self.keys().layout();
        loop {
            if let Some(kv) = self.get(&key).await? {
                return self.judge(Some(&kv.value));
            }
            if !self
                .list_keys_limited(&self.keys().instances(), 1)
                .await?
                .is_empty()
            {
                return self.judge(None);
            }
            let marker = Marker {
                layout: LAYOUT,
                written_by: format!("rune {}", env!("CARGO_PKG_VERSION")),
            };
            let put = op::put(
                &key,
                serde_json::to_vec(&marker).expect("marker serializes"),
            );
            if self
                .txn(vec![cmp::absent(&key)], vec![put], vec![])
                .await?
                .succeeded
            {
                return Ok(());
            }
            // Another controller marked it meanwhile: judge what it wrote.
        }
    }

    /// Ok for this layout; otherwise what the operator must do.
    fn judge(&self, marker: Option<&[u8]>) -> Result<(), StoreError> {
        let found = match marker.map(serde_json::from_slice::<Marker>) {
            Some(Ok(m)) if m.layout == LAYOUT => return Ok(()),
            Some(Ok(m)) => format!("layout {} (written by {})", m.layout, m.written_by),
            Some(Err(_)) => "a layout marker this rune cannot read".to_string(),
            None => "an older layout (instance records but no layout marker)".to_string(),
        };
        let prefix = self.keys().root();
        Err(StoreError::Layout(format!(
            "etcd prefix {prefix} holds {found}; this rune {} reads layout {LAYOUT} and, \
             before 1.0, does not migrate. Use a new prefix (--etcd-prefix), or stop every \
             rune controller and agent, delete the old keys (etcdctl del --prefix {prefix}) \
             and cast the services again",
            env!("CARGO_PKG_VERSION")
        )))
    }
}

//! Read-modify-write that never loses a concurrent update, after etcd's STM
//! (software transactional memory) reduced to one guard key: read, decide the
//! writes from what was read, and commit them only if the guard key's
//! `mod_revision` is still the one read; otherwise someone wrote in between, so
//! read again and decide again. A bounded number of times: a key that keeps
//! changing fails loudly ([`KeptChanging`]) rather than spinning.
//!
//! The caller reads (it knows what it needs: one key, or a whole service at one
//! revision) and names the guard; this module owns the commit and the retry, so
//! every compare-and-swap writer retries the same way.

use etcd_client::{Compare, TxnOp};

use super::{Kv, Store, StoreError, cmp};

/// How many times an update is read, decided and tried before giving up.
pub const ATTEMPTS: usize = 5;

/// The key a write depends on, as it was read.
#[derive(Debug, Clone)]
pub struct Guard {
    key: String,
    /// The key's `mod_revision` when read; 0 when it did not exist.
    mod_revision: i64,
}

impl Guard {
    /// Guards on `key` as read: `read` is what the read returned (`None`: absent).
    pub fn on(key: &str, read: Option<&Kv>) -> Guard {
        Guard {
            key: key.to_string(),
            mod_revision: read.map_or(0, |kv| kv.mod_revision),
        }
    }

    /// The comparison that holds only while nobody wrote the key since it was read.
    fn unchanged(&self) -> Compare {
        if self.mod_revision == 0 {
            cmp::absent(&self.key)
        } else {
            cmp::mod_rev(&self.key, self.mod_revision)
        }
    }
}

/// What one attempt decided from what it read.
pub enum Decision<T> {
    /// Commit `ops` if `guard` still holds; `answer` is the attempt's result.
    Write {
        guard: Guard,
        ops: Vec<TxnOp>,
        answer: T,
    },
    /// Nothing to write (no change, a dry run): done with `answer`.
    Done(T),
}

/// Every attempt lost the race: the guarded key kept changing. The CLI reports it
/// as a conflict (exit 4); this module knows nothing of exit codes.
#[derive(Debug, thiserror::Error)]
#[error("{what} kept changing under us; try again")]
pub struct KeptChanging {
    pub what: String,
}

/// How an update ended.
pub enum Outcome<T> {
    /// The writes committed at `revision`.
    Written { answer: T, revision: i64 },
    /// The decision was not to write.
    Done(T),
}

impl<T> Outcome<T> {
    pub fn answer(self) -> T {
        match self {
            Outcome::Written { answer, .. } | Outcome::Done(answer) => answer,
        }
    }
}

impl Store {
    /// Runs `attempt` (read, then decide) and commits its writes guarded by what it
    /// read; on a conflict runs it again, at most [`ATTEMPTS`] times. `what` names
    /// the thing updated in the error when every attempt lost the race.
    /// The caller's error type carries store failures and [`KeptChanging`].
    pub async fn read_modify_write<T, E>(
        &self,
        what: &str,
        mut attempt: impl AsyncFnMut() -> Result<Decision<T>, E>,
    ) -> Result<Outcome<T>, E>
    where
        E: From<StoreError> + From<KeptChanging>,
    {
        for _ in 0..ATTEMPTS {
            let (guard, ops, answer) = match attempt().await? {
                Decision::Done(answer) => return Ok(Outcome::Done(answer)),
                Decision::Write { guard, ops, answer } => (guard, ops, answer),
            };
            let committed = self.txn(vec![guard.unchanged()], ops, vec![]).await?;
            if committed.succeeded {
                return Ok(Outcome::Written {
                    answer,
                    revision: committed.revision,
                });
            }
        }
        Err(KeptChanging {
            what: what.to_string(),
        }
        .into())
    }
}

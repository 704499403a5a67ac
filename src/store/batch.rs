//! Many writes split into transactions that etcd takes: each within a count of
//! operations (etcd refuses more than `--max-txn-ops`, 128 by default) and within
//! a size (etcd refuses a request over `--max-request-bytes`, 1.5 MiB by default).
//! Counting alone is not enough: a hundred instance records that each embed a
//! 100 KiB spec are 10 MiB. The controller's reconcile and `rune node forget`
//! both split here.

use etcd_client::{Compare, TxnOp};

use super::{cmp, op};

/// Operations (and, separately, comparisons) per transaction: below etcd's default
/// of 128, leaving room for the guards a caller adds to every transaction (the
/// leader fence, a node that must stay unregistered).
pub const MAX_TXN_OPS: usize = 100;
/// Approximate bytes per transaction: below etcd's default request limit of
/// 1.5 MiB, leaving room for the guards and for what the estimate misses.
pub const MAX_TXN_BYTES: usize = 1024 * 1024;
/// What one operation or comparison adds beyond its key and value: field tags and
/// lengths, revisions, the request's framing. Generous on purpose.
const OVERHEAD: usize = 32;

/// Writes that must land together (one or more operations and the comparisons
/// they are guarded by), with their approximate encoded size.
#[derive(Debug, Default)]
pub struct Write {
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
    bytes: usize,
}

impl Write {
    pub fn put(key: &str, value: impl Into<Vec<u8>>) -> Write {
        let value = value.into();
        Write {
            bytes: key.len() + value.len() + OVERHEAD,
            ops: vec![op::put(key, value)],
            compares: Vec::new(),
        }
    }

    /// A put on a lease (the key goes when the lease does).
    pub fn put_with_lease(key: &str, value: impl Into<Vec<u8>>, lease: i64) -> Write {
        let value = value.into();
        Write {
            bytes: key.len() + value.len() + OVERHEAD,
            ops: vec![op::put_with_lease(key, value, lease)],
            compares: Vec::new(),
        }
    }

    pub fn put_json<T: serde::Serialize>(key: &str, value: &T) -> Write {
        Write::put(
            key,
            serde_json::to_vec(value).expect("model values serialize"),
        )
    }

    pub fn delete(key: &str) -> Write {
        Write {
            bytes: key.len() + OVERHEAD,
            ops: vec![op::delete(key)],
            compares: Vec::new(),
        }
    }

    /// Deletes every key under `prefix`.
    pub fn delete_prefix(prefix: &str) -> Write {
        Write {
            bytes: prefix.len() + OVERHEAD,
            ops: vec![op::delete_prefix(prefix)],
            compares: Vec::new(),
        }
    }

    /// Only while `key` was last written at `revision`.
    pub fn if_mod_rev(self, key: &str, revision: i64) -> Write {
        self.guarded(key, cmp::mod_rev(key, revision))
    }

    /// Only while `key` does not exist.
    pub fn if_absent(self, key: &str) -> Write {
        self.guarded(key, cmp::absent(key))
    }

    fn guarded(mut self, key: &str, compare: Compare) -> Write {
        self.bytes += key.len() + OVERHEAD;
        self.compares.push(compare);
        self
    }

    /// This and `other`, in one transaction.
    pub fn and(mut self, other: Write) -> Write {
        self.compares.extend(other.compares);
        self.ops.extend(other.ops);
        self.bytes += other.bytes;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.compares.is_empty()
    }

    /// The comparisons and the operations, for [`Store::txn`](super::Store::txn).
    pub fn into_parts(self) -> (Vec<Compare>, Vec<TxnOp>) {
        (self.compares, self.ops)
    }

    fn fits_with(&self, other: &Write) -> bool {
        self.ops.len() + other.ops.len() <= MAX_TXN_OPS
            && self.compares.len() + other.compares.len() <= MAX_TXN_OPS
            && self.bytes + other.bytes <= MAX_TXN_BYTES
    }
}

/// Splits `writes`, in order, into as few transactions as fit [`MAX_TXN_OPS`] and
/// [`MAX_TXN_BYTES`]; each [`Write`] stays whole (one over the limits on its own
/// gets a transaction of its own, and etcd has the last word). Committing the
/// results in order keeps the writes' order: what must land last, goes last.
pub fn split(writes: impl IntoIterator<Item = Write>) -> Vec<Write> {
    let mut txns: Vec<Write> = Vec::new();
    for write in writes.into_iter().filter(|w| !w.is_empty()) {
        match txns.last_mut() {
            Some(txn) if txn.fits_with(&write) => *txn = std::mem::take(txn).and(write),
            _ => txns.push(write),
        }
    }
    txns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(txns: &[Write]) -> Vec<(usize, usize)> {
        txns.iter().map(|t| (t.ops.len(), t.bytes)).collect()
    }

    #[test]
    fn transactions_are_bounded_by_count() {
        let writes = (0..250).map(|i| Write::delete(&format!("k{i:03}")).if_absent("x"));
        let txns = split(writes);
        let counts: Vec<usize> = txns.iter().map(|t| t.ops.len()).collect();
        assert_eq!(counts, [100, 100, 50]);
        assert!(txns.iter().all(|t| t.compares.len() == t.ops.len()));
    }

    #[test]
    fn transactions_are_bounded_by_bytes() {
        // 25 records of 100 KiB: 10 fit in 1 MiB, not 11.
        let value = vec![b'x'; 100 * 1024];
        let writes = (0..25).map(|i| Write::put(&format!("k{i:02}"), value.clone()));
        let txns = split(writes);
        let counts: Vec<usize> = txns.iter().map(|t| t.ops.len()).collect();
        assert_eq!(counts, [10, 10, 5], "{:?}", sizes(&txns));
        assert!(txns.iter().all(|t| t.bytes <= MAX_TXN_BYTES));
    }

    #[test]
    fn writes_stay_whole_and_in_order_and_an_oversized_one_goes_alone() {
        let big = vec![b'x'; MAX_TXN_BYTES];
        let writes = vec![
            Write::delete("a"),
            Write::put("b", big),
            Write::delete("c").and(Write::delete("d")),
            Write::default(),
        ];
        let txns = split(writes);
        let counts: Vec<usize> = txns.iter().map(|t| t.ops.len()).collect();
        assert_eq!(counts, [1, 1, 2], "{:?}", sizes(&txns));
        // Two ops of one write are never split across transactions.
        let pairs = (0..99).map(|i| Write::delete(&format!("a{i}")).and(Write::delete("s")));
        let counts: Vec<usize> = split(pairs).iter().map(|t| t.ops.len()).collect();
        assert!(
            counts.iter().all(|n| n % 2 == 0 && *n <= MAX_TXN_OPS),
            "{counts:?}"
        );
    }

    #[test]
    fn what_must_land_last_shares_the_last_transaction_when_it_fits() {
        let last = || Write::put("status", "s").and(Write::put("spec", "t"));
        let with = |n: usize| {
            let writes = (0..n).map(|i| Write::delete(&format!("k{i}")));
            split(writes.chain([last()]))
                .iter()
                .map(|t| t.ops.len())
                .collect::<Vec<_>>()
        };
        assert_eq!(with(98), [100]);
        assert_eq!(with(99), [99, 2]);
        assert_eq!(with(0), [2]);
    }
}

//! Paged range reads: every read of a prefix asks etcd for at most a page of keys at
//! a time, so no single response grows with the fleet (etcd serves a range whole, in
//! one message, and holds it in memory meanwhile). The first page fixes the
//! revision; every later page reads at that revision, so a listing is one
//! consistent snapshot however many pages it takes, as etcd's own client pager
//! (`etcdctl get --prefix` with `--limit`) and kube-apiserver's paged lists do.

use etcd_client::{GetOptions, GetResponse, Txn, TxnOp, TxnOpResponse};

use super::{Failed, Kv, Store, StoreError};

/// Keys per page unless [`PAGE_SIZE_ENV`] says otherwise. Specs, statuses and
/// records are small: 500 of them stay far below [`MAX_RESPONSE_BYTES`]; a page
/// that does not fit is read again in halves.
pub const DEFAULT_PAGE_SIZE: i64 = 500;
/// Sets the page size, for tests only: a few hundred keys then span many pages.
pub const PAGE_SIZE_ENV: &str = "RUNE_ETCD_PAGE_SIZE";
/// The largest response accepted from etcd (gRPC's default limit is 4 MiB).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// A snapshot whose revision is compacted between its pages is read again from
/// the start; compaction keeps at least the last few minutes, so twice is rare.
const ATTEMPTS: usize = 5;

/// The page size from [`PAGE_SIZE_ENV`] (a positive number of keys), else the
/// default.
pub(super) fn page_size_from_env() -> i64 {
    std::env::var(PAGE_SIZE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_PAGE_SIZE)
}

/// One read inside [`Store::snapshot`].
pub enum Read<'a> {
    Key(&'a str),
    Prefix(&'a str),
}

impl Read<'_> {
    fn op(&self, limit: i64) -> TxnOp {
        match self {
            Read::Key(k) => TxnOp::get(*k, None),
            Read::Prefix(p) => {
                TxnOp::get(*p, Some(GetOptions::new().with_prefix().with_limit(limit)))
            }
        }
    }
}

/// The end of the range of keys that start with `prefix` (etcd's `GetPrefix`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: to the end of the keyspace.
    vec![0]
}

/// The first key after `key`: where the next page starts.
fn after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// Why a paged read stopped.
enum PageError {
    /// The revision the pages are read at was compacted away.
    Compacted,
    Store(StoreError),
}

/// What an etcd error means to paging.
enum Meaning {
    Compacted,
    TooLarge,
    Other,
}

fn meaning(e: &Failed) -> Meaning {
    let Failed::Etcd(etcd_client::Error::GRpcStatus(s)) = e else {
        return Meaning::Other;
    };
    // Both are OUT_OF_RANGE; only the message tells them apart (etcd's
    // ErrGRPCCompacted, tonic's decoder limit).
    if s.code() != tonic::Code::OutOfRange {
        Meaning::Other
    } else if s.message().contains("compacted") {
        Meaning::Compacted
    } else if s.message().contains("too large") {
        Meaning::TooLarge
    } else {
        Meaning::Other
    }
}

/// Halves `limit` when `e` says the response was too large for one message (it
/// is then asked for again); false when that is not the failure, or one key a page
/// is as small as pages get.
fn halved(limit: &mut i64, e: &Failed) -> bool {
    if !matches!(meaning(e), Meaning::TooLarge) || *limit <= 1 {
        return false;
    }
    *limit /= 2;
    true
}

impl Store {
    /// Every key under `prefix`, with the revision the read happened at, read a
    /// page at a time at that one revision.
    pub async fn list(&self, prefix: &str) -> Result<(Vec<Kv>, i64), StoreError> {
        self.list_pages(prefix, false).await
    }

    /// Every key under `prefix`, without values (for scans of large prefixes whose
    /// values are not needed).
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let (kvs, _) = self.list_pages(prefix, true).await?;
        Ok(kvs.into_iter().map(|kv| kv.key).collect())
    }

    /// [`Self::list`], with or without the values.
    async fn list_pages(
        &self,
        prefix: &str,
        keys_only: bool,
    ) -> Result<(Vec<Kv>, i64), StoreError> {
        let end = prefix_end(prefix.as_bytes());
        let mut compactions = 0;
        loop {
            let mut kvs = Vec::new();
            match self
                .pages(prefix.as_bytes().to_vec(), &end, 0, keys_only, &mut kvs)
                .await
            {
                Ok(revision) => return Ok((kvs, revision)),
                Err(PageError::Compacted) => self.compacted(prefix, &mut compactions)?,
                Err(PageError::Store(e)) => return Err(e),
            }
        }
    }

    /// At most `limit` keys under `prefix`, without values: whether a prefix holds
    /// anything, in one small read.
    pub async fn list_keys_limited(
        &self,
        prefix: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let options = GetOptions::new()
            .with_prefix()
            .with_limit(limit)
            .with_keys_only();
        let mut kv = self.kv.clone();
        let resp = self
            .request("list", kv.get(prefix, Some(options)))
            .await
            .map_err(|e| self.classify(e))?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect())
    }

    /// Reads several prefixes or keys at one revision (a consistent snapshot): one
    /// transaction reads each key and the first page of each prefix; a prefix with
    /// more is read on, page by page, at the transaction's revision. When that
    /// revision is compacted meanwhile, the whole snapshot is read again.
    pub async fn snapshot(&self, reads: &[Read<'_>]) -> Result<(Vec<Vec<Kv>>, i64), StoreError> {
        let mut limit = self.page_size;
        let mut compactions = 0;
        'again: loop {
            let mut kv = self.kv.clone();
            let txn = Txn::new().and_then(reads.iter().map(|r| r.op(limit)).collect::<Vec<_>>());
            // Counted as a read ("snapshot"), not with the writing transactions.
            let resp = match self.request("snapshot", kv.txn(txn)).await {
                Ok(r) => r,
                Err(e) if halved(&mut limit, &e) => continue,
                Err(e) => return Err(self.classify(e)),
            };
            let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            let mut ranges = Vec::with_capacity(reads.len());
            for (read, r) in reads.iter().zip(resp.op_responses()) {
                let TxnOpResponse::Get(first) = r else {
                    return Err(StoreError::Invalid("a read answered as a write".into()));
                };
                self.metrics.received(first.kvs().len());
                let mut kvs: Vec<Kv> = first.kvs().iter().map(Kv::from_etcd).collect();
                if let Read::Prefix(prefix) = read
                    && first.more()
                    && let Some(last) = first.kvs().last()
                {
                    let end = prefix_end(prefix.as_bytes());
                    match self
                        .pages(after(last.key()), &end, revision, false, &mut kvs)
                        .await
                    {
                        Ok(_) => {}
                        Err(PageError::Compacted) => {
                            self.compacted(prefix, &mut compactions)?;
                            continue 'again;
                        }
                        Err(PageError::Store(e)) => return Err(e),
                    }
                }
                ranges.push(kvs);
            }
            return Ok((ranges, revision));
        }
    }

    /// Reads `[from, end)` into `into` a page at a time, at `revision` (0: the
    /// newest, fixed by the first page); returns the revision read at. A page too
    /// large for one response is asked for again with half the keys.
    async fn pages(
        &self,
        mut from: Vec<u8>,
        end: &[u8],
        mut revision: i64,
        keys_only: bool,
        into: &mut Vec<Kv>,
    ) -> Result<i64, PageError> {
        let mut limit = self.page_size;
        loop {
            let mut options = GetOptions::new()
                .with_range(end.to_vec())
                .with_limit(limit)
                .with_revision(revision);
            if keys_only {
                options = options.with_keys_only();
            }
            let mut kv = self.kv.clone();
            let page: GetResponse = match self
                .request("list", kv.get(from.clone(), Some(options)))
                .await
            {
                Ok(page) => page,
                Err(e) if halved(&mut limit, &e) => continue,
                Err(e) if matches!(meaning(&e), Meaning::Compacted) => {
                    return Err(PageError::Compacted);
                }
                Err(e) => return Err(PageError::Store(self.classify(e))),
            };
            if revision == 0 {
                revision = page.header().map(|h| h.revision()).unwrap_or(0);
            }
            self.metrics.received(page.kvs().len());
            into.extend(page.kvs().iter().map(Kv::from_etcd));
            match page.kvs().last() {
                Some(last) if page.more() => from = after(last.key()),
                _ => return Ok(revision),
            }
        }
    }

    /// Counts a read whose revision was compacted between its pages: it starts
    /// over, unless that kept happening.
    fn compacted(&self, prefix: &str, compactions: &mut usize) -> Result<(), StoreError> {
        *compactions += 1;
        if *compactions < ATTEMPTS {
            return Ok(());
        }
        Err(StoreError::Refused {
            endpoints: self.endpoints.clone(),
            detail: format!(
                "{prefix}: the revision read at was compacted {ATTEMPTS} times before \
                 every page was read"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_where_its_keys_end() {
        assert_eq!(
            prefix_end(b"/rune/instances/"),
            b"/rune/instances0".to_vec()
        );
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(after(b"/rune/a"), b"/rune/a\0".to_vec());
    }
}

//! The store against a real etcd: the resumable watch the controller's and the
//! agent's informers stand on, the compare-and-swap loop, and paged listings.

use std::time::Duration;

use rune::exit::Exit;
use rune::store::batch::{self, Write};
use rune::store::cas::{ATTEMPTS, Decision, Guard, Outcome};
use rune::store::watch::{WatchEvent, watch_prefix_after};
use rune::store::{Kv, Read, Store, op};

use crate::harness::World;
use crate::support::etcd::Etcd;

#[test]
fn a_watch_whose_revision_was_compacted_lists_again() {
    let w = World::new();
    w.block_on_store(async |store| {
        let prefix = format!("{}/services/", w.prefix);
        let first = store.put(&format!("{prefix}default/a"), "1").await.unwrap();
        store.put(&format!("{prefix}default/b"), "2").await.unwrap();
        let last = store.put(&format!("{prefix}default/c"), "3").await.unwrap();
        let out = w.etcd.etcdctl(&["compact", &last.to_string()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // A watcher that last saw `first` cannot resume there any more.
        let mut events = watch_prefix_after(store.clone(), prefix.clone(), first);
        let ev = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match events.recv().await.expect("watch ended") {
                    WatchEvent::Reset { kvs, revision } => return (kvs, revision),
                    WatchEvent::Connected(_) => continue,
                    other => panic!("expected a relist, got {other:?}"),
                }
            }
        })
        .await
        .expect("relisted");
        let keys: Vec<String> = ev.0.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert!(ev.1 >= last);

        // And it goes on watching from the list.
        store.put(&format!("{prefix}default/d"), "4").await.unwrap();
        let put = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap();
        assert!(matches!(put, Some(WatchEvent::Put(kv)) if kv.key.ends_with("/d")));
    });
}

#[test]
fn a_watch_resumes_after_its_revision_without_relisting() {
    let w = World::new();
    w.block_on_store(async |store| {
        let prefix = format!("{}/instances/", w.prefix);
        let seen = store.put(&format!("{prefix}x"), "1").await.unwrap();
        store.put(&format!("{prefix}y"), "2").await.unwrap();
        let mut events = watch_prefix_after(store.clone(), prefix, seen);
        let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap();
        assert!(
            matches!(ev, Some(WatchEvent::Put(kv)) if kv.key.ends_with("/y")),
            "only what came after"
        );
    });
}

#[test]
fn read_modify_write_reads_again_after_a_conflict_and_gives_up_after_its_attempts() {
    let w = World::new();
    w.block_on_store(async |store| {
        let key = format!("{}/services/default/a", w.prefix);

        // Another writer gets in between read and commit twice: first creating the
        // key (the guard said absent), then updating it (the guard named a revision).
        let mut attempts = 0;
        let outcome = store
            .read_modify_write::<_, rune::exit::Error>("service default/a", async || {
                attempts += 1;
                let current = store.get(&key).await?;
                if attempts <= 2 {
                    store.put(&key, format!("theirs {attempts}")).await?;
                }
                Ok(Decision::Write {
                    guard: Guard::on(&key, current.as_ref()),
                    ops: vec![op::put(&key, "ours")],
                    answer: attempts,
                })
            })
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Written { answer: 3, .. }));
        assert_eq!(store.get(&key).await.unwrap().unwrap().value, b"ours");

        // A key that changes under every attempt: a conflict (exit 4), not a spin.
        let mut attempts = 0;
        let err = store
            .read_modify_write::<_, rune::exit::Error>("service default/a", async || {
                attempts += 1;
                let current = store.get(&key).await?;
                store.put(&key, "theirs").await?;
                Ok(Decision::Write {
                    guard: Guard::on(&key, current.as_ref()),
                    ops: vec![op::put(&key, "ours")],
                    answer: (),
                })
            })
            .await
            .err()
            .expect("gives up");
        assert_eq!(err.exit, Exit::Conflict);
        assert_eq!(attempts, ATTEMPTS);
        assert_eq!(
            err.message,
            "service default/a kept changing under us; try again"
        );
    });
}

/// Puts `n` keys `<prefix><i>` of `bytes` bytes each, in transactions as the store
/// sizes them.
async fn fill(store: &Store, prefix: &str, n: usize, bytes: usize) {
    let value = vec![b'v'; bytes];
    let writes = (0..n).map(|i| Write::put(&format!("{prefix}{i:04}"), value.clone()));
    for txn in batch::split(writes) {
        let (compares, ops) = txn.into_parts();
        assert!(store.txn(compares, ops, vec![]).await.unwrap().succeeded);
    }
}

/// The keys under `prefix` at `revision`, as etcdctl reads them in one request.
fn keys_at(etcd: &Etcd, prefix: &str, revision: i64) -> Vec<String> {
    let out = etcd.etcdctl(&[
        "get",
        prefix,
        "--prefix",
        "--keys-only",
        &format!("--rev={revision}"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn names(kvs: &[Kv]) -> Vec<String> {
    kvs.iter().map(|kv| kv.key.clone()).collect()
}

#[test]
fn listings_and_snapshots_are_read_in_pages_at_one_revision() {
    let w = World::new();
    w.block_on_store(async |store| {
        let prefix = format!("{}/instances/default/api/", w.prefix);
        let other = format!("{}/instance-status/default/api/", w.prefix);
        fill(store, &prefix, 300, 10).await;
        fill(store, &other, 30, 10).await;
        // The first key past the prefix's range (`api/` ends before `api0`).
        store
            .put(&format!("{}/instances/default/api0", w.prefix), "x")
            .await
            .unwrap();
        let spec = format!("{}/services/default/api", w.prefix);
        store.put(&spec, "spec").await.unwrap();

        // Another writer keeps adding keys while the pages are read: the listing is
        // still exactly the state at its one revision.
        let writer = tokio::spawn({
            let (store, prefix) = (store.clone(), prefix.clone());
            async move {
                for i in 0..100 {
                    store.put(&format!("{prefix}w{i:03}"), "w").await.unwrap();
                }
            }
        });
        let paged = store.clone().with_page_size(7);
        let pages = || paged.metrics().requests_of("list");
        let before = pages();
        let (kvs, revision) = paged.list(&prefix).await.unwrap();
        let read = pages() - before;
        assert_eq!(names(&kvs), keys_at(&w.etcd, &prefix, revision));
        assert!(kvs.len() >= 300, "{}", kvs.len());
        assert!(read >= 300 / 7, "{read} pages");

        let before = pages();
        let (ranges, revision) = paged
            .snapshot(&[
                Read::Prefix(&prefix),
                Read::Key(&spec),
                Read::Prefix(&other),
            ])
            .await
            .unwrap();
        assert!(
            pages() - before >= (300 + 30) / 7 - 2,
            "the rest read in pages"
        );
        assert_eq!(names(&ranges[0]), keys_at(&w.etcd, &prefix, revision));
        assert_eq!(names(&ranges[1]), [spec]);
        assert_eq!(names(&ranges[2]), keys_at(&w.etcd, &other, revision));
        assert_eq!(ranges[2].len(), 30);
        writer.await.unwrap();

        // With the default page size, the same in one request.
        let (all, _) = store.list(&prefix).await.unwrap();
        assert_eq!(all.len(), 400);
    });
}

#[test]
fn a_listing_whose_revision_is_compacted_between_pages_is_read_again() {
    let w = World::new();
    let prefix = format!("{}/instances/", w.prefix);
    w.block_on_store(async |store| fill(store, &prefix, 400, 10).await);
    for snapshot in [false, true] {
        // Page by page, one key each: long enough for a compaction to land between
        // two pages. The reader starts over at a newer revision.
        let late = format!("{prefix}late-{snapshot}");
        let (reading, started) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let (etcd, late) = (&w.etcd, &late);
            s.spawn(move || {
                started.recv().unwrap();
                std::thread::sleep(Duration::from_millis(20));
                etcd.put(late, "x");
                let out = etcd.etcdctl(&["get", late, "-w", "json"]);
                let header: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                let revision = header["header"]["revision"].as_i64().unwrap();
                let out = etcd.etcdctl(&["compact", &revision.to_string()]);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            });
            w.block_on_store(async |store| {
                let paged = store.clone().with_page_size(1);
                reading.send(()).unwrap();
                let (kvs, revision) = if snapshot {
                    let (mut ranges, revision) =
                        paged.snapshot(&[Read::Prefix(&prefix)]).await.unwrap();
                    (ranges.remove(0), revision)
                } else {
                    paged.list(&prefix).await.unwrap()
                };
                let pages = paged.metrics().requests_of("list");
                assert!(
                    pages > 400,
                    "read again after the compaction: {pages} pages"
                );
                assert!(names(&kvs).contains(late), "read at a revision after it");
                assert_eq!(names(&kvs), keys_at(&w.etcd, &prefix, revision));
            });
        });
    }
}

#[test]
fn a_listing_larger_than_4_mib_is_one_response() {
    let w = World::new();
    w.block_on_store(async |store| {
        let prefix = format!("{}/instances/default/big/", w.prefix);
        fill(store, &prefix, 50, 100 * 1024).await;
        let before = store.metrics().requests_of("list");
        let (kvs, _) = store.list(&prefix).await.unwrap();
        assert_eq!(store.metrics().requests_of("list") - before, 1);
        assert_eq!(kvs.len(), 50);
        let bytes: usize = kvs.iter().map(|kv| kv.value.len()).sum();
        assert!(bytes > 4 * 1024 * 1024, "{bytes}");
        let (ranges, _) = store.snapshot(&[Read::Prefix(&prefix)]).await.unwrap();
        assert_eq!(ranges[0].len(), 50);
    });
}

//! The store's resumable watch, against a real etcd: what the controller's and the
//! agent's informers stand on.

use std::time::Duration;

use rune::exit::Exit;
use rune::store::cas::{ATTEMPTS, Decision, Guard, Outcome};
use rune::store::op;
use rune::store::watch::{WatchEvent, watch_prefix_after};

use crate::harness::World;

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

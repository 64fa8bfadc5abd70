//! The redb backend's compare-and-swap semantics and group commit.

use std::sync::Arc;

use jobnet_ipam::store::{prefix_end, Compare, Op, RedbStore, Store, Txn, TxnOutcome};

fn put(k: &str, v: &str) -> Op {
    Op::Put(k.into(), v.as_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_key_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let txn = Txn {
                compares: vec![Compare::Absent("k".into())],
                ops: vec![put("k", &i.to_string()), put(&format!("side/{i}"), "x")],
            };
            store.txn(txn).await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            TxnOutcome::Committed(_) => winners += 1,
            TxnOutcome::Conflict(k) => assert_eq!(k, "k"),
        }
    }
    assert_eq!(winners, 1);
    // A losing transaction applied none of its ops.
    let side = store
        .range("side/", &prefix_end("side/"), usize::MAX)
        .await
        .unwrap();
    assert_eq!(side.len(), 1);
}

#[tokio::test]
async fn revisions_guard_updates_and_prefix_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let r1 = match store
        .txn(Txn {
            compares: vec![],
            ops: vec![put("a/1", "one"), put("a/2", "two"), put("b", "b")],
        })
        .await
        .unwrap()
    {
        TxnOutcome::Committed(r) => r,
        other => panic!("{other:?}"),
    };
    let v = store.get("a/1").await.unwrap().unwrap();
    assert_eq!((v.value.as_slice(), v.mod_revision), (&b"one"[..], r1));
    let stale = Txn {
        compares: vec![Compare::ModRevision("a/1".into(), r1 + 7)],
        ops: vec![put("a/1", "bad")],
    };
    assert_eq!(
        store.txn(stale).await.unwrap(),
        TxnOutcome::Conflict("a/1".into())
    );
    let fresh = Txn {
        compares: vec![Compare::ModRevision("a/1".into(), r1)],
        ops: vec![Op::DeletePrefix("a/".into())],
    };
    assert!(matches!(store.txn(fresh).await.unwrap(), TxnOutcome::Committed(r) if r > r1));
    assert!(store
        .range("a/", &prefix_end("a/"), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.get("b").await.unwrap().is_some());
    drop(store);
    let store = RedbStore::open(dir.path()).unwrap();
    assert_eq!(store.get("b").await.unwrap().unwrap().value, b"b");
    assert!(store.get("a/2").await.unwrap().is_none());
}

/// A store that forwards everything but `count`, to test the trait's default.
struct NoCount(RedbStore);

impl Store for NoCount {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> jobnet_ipam::store::StoreFuture<'a, Option<jobnet_ipam::store::Versioned>> {
        self.0.get(key)
    }
    fn range<'a>(
        &'a self,
        start: &'a str,
        end: &'a str,
        limit: usize,
    ) -> jobnet_ipam::store::StoreFuture<'a, Vec<(String, jobnet_ipam::store::Versioned)>> {
        self.0.range(start, end, limit)
    }
    fn txn(&self, txn: Txn) -> jobnet_ipam::store::StoreFuture<'_, TxnOutcome> {
        self.0.txn(txn)
    }
}

#[tokio::test]
async fn count_matches_range_and_paging_sees_every_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    // 2500 keys: more than two pages of the default count; neighbours outside the prefix.
    let mut ops: Vec<Op> = (0..2500).map(|i| put(&format!("c/{i:05}"), "v")).collect();
    ops.push(put("b/x", "v"));
    ops.push(put("d/x", "v"));
    let txn = Txn {
        compares: vec![],
        ops,
    };
    assert!(matches!(
        store.txn(txn).await.unwrap(),
        TxnOutcome::Committed(_)
    ));
    assert_eq!(store.count("c/", &prefix_end("c/")).await.unwrap(), 2500);
    assert_eq!(store.count("c/", "c/").await.unwrap(), 0);
    let store = NoCount(store);
    assert_eq!(store.count("c/", &prefix_end("c/")).await.unwrap(), 2500);
    // Paging with key_after visits each key exactly once, in order.
    let mut seen = Vec::new();
    let mut from = "c/".to_string();
    loop {
        let page = store.range(&from, &prefix_end("c/"), 700).await.unwrap();
        let Some((last, _)) = page.last() else { break };
        from = jobnet_ipam::store::key_after(last);
        seen.extend(page.into_iter().map(|(k, _)| k));
    }
    let want: Vec<String> = (0..2500).map(|i| format!("c/{i:05}")).collect();
    assert_eq!(seen, want);
}

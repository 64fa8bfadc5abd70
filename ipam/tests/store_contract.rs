//! The store contract, run against the embedded (redb) and the etcd backend,
//! plus what only a cluster can do: prefix isolation, member loss, quorum
//! loss, full restarts and TLS.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobnet_ipam::store::{
    key_after, prefix_end, Compare, Op, RedbStore, Revision, Store, StoreError, Txn, TxnOutcome,
    Versioned,
};
use jobnet_ipam::{EtcdOptions, EtcdStore, EtcdTls};
use jobnet_tests::etcd::{EtcdCluster, EtcdError, EtcdSpec, TestPki};
use jobnet_tests::skip;

const TIMEOUT: Duration = Duration::from_secs(2);
/// Slack over the store timeout for a failing call: it checks for hangs, not speed.
const SLACK: Duration = Duration::from_secs(1);

/// Starts a cluster from a tokio test; `None` (after reporting the skip) when etcd is not installed.
fn cluster(test: &str, spec: EtcdSpec) -> Option<EtcdCluster> {
    match blocking(|| EtcdCluster::start(spec)) {
        Ok(c) => Some(c),
        Err(e @ EtcdError::Missing(_)) => {
            skip(test, &e.to_string());
            None
        }
        Err(e) => panic!("{test}: starting etcd: {e}"),
    }
}

/// Runs blocking fixture work without stalling the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn options(cluster: &EtcdCluster, prefix: &str) -> EtcdOptions {
    EtcdOptions {
        prefix: prefix.into(),
        timeout: TIMEOUT,
        ..EtcdOptions::new(cluster.endpoints())
    }
}

async fn etcd(cluster: &EtcdCluster, prefix: &str) -> EtcdStore {
    EtcdStore::connect(options(cluster, prefix))
        .await
        .unwrap_or_else(|e| panic!("connecting to {:?}: {e}", cluster.endpoints()))
}

fn put(k: &str, v: &str) -> Op {
    Op::Put(k.into(), v.as_bytes().to_vec())
}

async fn commit(store: &dyn Store, compares: Vec<Compare>, ops: Vec<Op>) -> Revision {
    match store.txn(Txn { compares, ops }).await {
        Ok(TxnOutcome::Committed(r)) => r,
        other => panic!("expected a commit, got {other:?}"),
    }
}

async fn value(store: &dyn Store, key: &str) -> Option<String> {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .map(|v| String::from_utf8(v.value).expect("utf-8 value"))
}

async fn keys(store: &dyn Store, prefix: &str) -> Vec<String> {
    store
        .range(prefix, &prefix_end(prefix), usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("range {prefix}: {e}"))
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = f.await;
    let took = started.elapsed();
    eprintln!("{what}: {took:?}");
    assert!(
        took <= TIMEOUT + SLACK,
        "{what} took {took:?}, more than the {TIMEOUT:?} timeout + {SLACK:?}"
    );
    (out, took)
}

// ---- the contract -------------------------------------------------------------

async fn contract(store: Arc<dyn Store>) {
    reads_and_ranges(&*store).await;
    compares_and_conflict_keys(&*store).await;
    failed_txn_changes_nothing(&*store).await;
    deletes_and_op_order(&*store).await;
    revisions_increase_and_match(&*store).await;
    one_winner_per_absent_key(Arc::clone(&store)).await;
    deferred_txns_apply_like_txns(&*store).await;
}

/// A deferred transaction is applied, seen by reads and compares, and
/// ordered by revision exactly as a durable one; only when it reaches disk
/// differs.
async fn deferred_txns_apply_like_txns(s: &dyn Store) {
    let first = match s
        .txn_deferred(Txn {
            compares: vec![Compare::Absent("d/a".into())],
            ops: vec![put("d/a", "1")],
        })
        .await
        .unwrap()
    {
        TxnOutcome::Committed(rev) => rev,
        other => panic!("deferred txn not applied: {other:?}"),
    };
    assert_eq!(value(s, "d/a").await.as_deref(), Some("1"));
    let again = s
        .txn_deferred(Txn {
            compares: vec![Compare::Absent("d/a".into())],
            ops: vec![put("d/a", "2")],
        })
        .await
        .unwrap();
    assert_eq!(again, TxnOutcome::Conflict("d/a".into()));
    let next = commit(
        s,
        vec![Compare::ModRevision("d/a".into(), first)],
        vec![put("d/a", "3")],
    )
    .await;
    assert!(next > first, "revision {next} after deferred {first}");
    assert_eq!(value(s, "d/a").await.as_deref(), Some("3"));
}

async fn reads_and_ranges(s: &dyn Store) {
    commit(
        s,
        vec![],
        ["r/a/1", "r/a/2", "r/a/3", "r/ab", "r/a", "r/b"]
            .iter()
            .map(|k| put(k, &k[2..]))
            .collect(),
    )
    .await;
    assert_eq!(value(s, "r/a/2").await.as_deref(), Some("a/2"));
    assert_eq!(value(s, "r/a/4").await, None);
    assert_eq!(value(s, "r/").await, None, "a prefix is not a key");
    assert_eq!(keys(s, "r/a/").await, ["r/a/1", "r/a/2", "r/a/3"]);
    assert_eq!(
        keys(s, "r/a").await,
        ["r/a", "r/a/1", "r/a/2", "r/a/3", "r/ab"],
        "a prefix without a separator matches longer names"
    );
    let range = |a: &'static str, b: &'static str, limit: usize| async move {
        s.range(a, b, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        range("r/a/1", "r/a/3", 10).await,
        ["r/a/1", "r/a/2"],
        "[start, end)"
    );
    assert_eq!(range("r/a/1", "r/a/1", 10).await, Vec::<String>::new());
    assert_eq!(range("r/b", "r/a", 10).await, Vec::<String>::new());
    assert_eq!(range("r/", "r0", 2).await, ["r/a", "r/a/1"], "limit");
    assert_eq!(range("r/", "r0", 0).await, Vec::<String>::new(), "limit 0");
    assert_eq!(range("r/", "r0", usize::MAX).await.len(), 6);
    let after = key_after("r/a/1");
    assert_eq!(
        s.range(&after, "r0", 1).await.unwrap()[0].0,
        "r/a/2",
        "paging"
    );
    assert_eq!(s.count("r/a/", &prefix_end("r/a/")).await.unwrap(), 3);
    assert_eq!(s.count("r/", "r0").await.unwrap(), 6);
    assert_eq!(s.count("r/z", "r0").await.unwrap(), 0);
    assert_eq!(s.count("r0", "r/").await.unwrap(), 0);
    let full = s.range("r/", "r0", usize::MAX).await.unwrap();
    assert!(full.iter().all(|(k, v)| v.value == k.as_bytes()[2..]));
}

async fn compares_and_conflict_keys(s: &dyn Store) {
    let r1 = commit(
        s,
        vec![Compare::Absent("c/x".into())],
        vec![put("c/x", "1")],
    )
    .await;
    let outcome = |compares: Vec<Compare>| async move {
        s.txn(Txn {
            compares,
            ops: vec![put("c/y", "never")],
        })
        .await
        .unwrap()
    };
    let conflict = |k: &str| TxnOutcome::Conflict(k.into());
    assert_eq!(
        outcome(vec![Compare::Absent("c/x".into())]).await,
        conflict("c/x")
    );
    assert_eq!(
        outcome(vec![Compare::ModRevision("c/x".into(), r1 + 1000)]).await,
        conflict("c/x")
    );
    assert_eq!(
        outcome(vec![Compare::ModRevision("c/missing".into(), r1)]).await,
        conflict("c/missing")
    );
    assert_eq!(
        outcome(vec![Compare::ModRevision("c/x".into(), u64::MAX)]).await,
        conflict("c/x"),
        "a revision beyond any store's range"
    );
    // The first compare that fails is named, whatever the order of keys.
    assert_eq!(
        outcome(vec![
            Compare::ModRevision("c/x".into(), r1),
            Compare::Absent("c/missing".into()),
            Compare::Absent("c/x".into()),
            Compare::Absent("c/a".into()),
        ])
        .await,
        conflict("c/x")
    );
    assert_eq!(
        outcome(vec![
            Compare::Absent("c/z".into()),
            Compare::ModRevision("c/a".into(), r1),
            Compare::ModRevision("c/x".into(), r1 + 1),
        ])
        .await,
        conflict("c/a")
    );
    assert_eq!(value(s, "c/y").await, None);
    let r2 = commit(
        s,
        vec![
            Compare::ModRevision("c/x".into(), r1),
            Compare::Absent("c/y".into()),
            Compare::ModRevision("c/x".into(), r1),
        ],
        vec![put("c/x", "2"), put("c/y", "2")],
    )
    .await;
    assert!(r2 > r1);
    assert_eq!(value(s, "c/x").await.as_deref(), Some("2"));
    // A txn without compares always applies.
    commit(s, vec![], vec![put("c/free", "1")]).await;
}

async fn failed_txn_changes_nothing(s: &dyn Store) {
    commit(s, vec![], vec![put("t/keep", "old"), put("t/gone/1", "x")]).await;
    let before = s.range("t/", "t0", usize::MAX).await.unwrap();
    let failed = s
        .txn(Txn {
            compares: vec![
                Compare::Absent("t/new".into()),
                Compare::Absent("t/keep".into()),
            ],
            ops: vec![
                put("t/new", "x"),
                put("t/keep", "new"),
                Op::Delete("t/gone/1".into()),
                Op::DeletePrefix("t/".into()),
            ],
        })
        .await
        .unwrap();
    assert_eq!(failed, TxnOutcome::Conflict("t/keep".into()));
    assert_eq!(s.range("t/", "t0", usize::MAX).await.unwrap(), before);
}

async fn deletes_and_op_order(s: &dyn Store) {
    commit(
        s,
        vec![],
        vec![
            put("d/p/1", "1"),
            put("d/p/2", "2"),
            put("d/p", "exact"),
            put("d/pq", "sibling"),
        ],
    )
    .await;
    commit(s, vec![], vec![Op::DeletePrefix("d/p/".into())]).await;
    assert_eq!(keys(s, "d/").await, ["d/p", "d/pq"]);
    // Deleting what is not there is no error.
    commit(
        s,
        vec![],
        vec![
            Op::Delete("d/none".into()),
            Op::DeletePrefix("d/none/".into()),
        ],
    )
    .await;
    // Ops apply in order: the last op on a key decides.
    commit(
        s,
        vec![],
        vec![
            put("d/o/1", "first"),
            put("d/o/1", "second"),
            put("d/o/2", "x"),
            Op::Delete("d/o/2".into()),
            Op::Delete("d/o/3".into()),
            put("d/o/3", "back"),
        ],
    )
    .await;
    assert_eq!(value(s, "d/o/1").await.as_deref(), Some("second"));
    assert_eq!(value(s, "d/o/2").await, None);
    assert_eq!(value(s, "d/o/3").await.as_deref(), Some("back"));
    commit(
        s,
        vec![],
        vec![
            put("d/o/4", "x"),
            Op::DeletePrefix("d/o/".into()),
            put("d/o/2", "after"),
            put("d/o/9", "after"),
        ],
    )
    .await;
    assert_eq!(keys(s, "d/o/").await, ["d/o/2", "d/o/9"]);
    assert_eq!(keys(s, "d/").await, ["d/o/2", "d/o/9", "d/p", "d/pq"]);
}

async fn revisions_increase_and_match(s: &dyn Store) {
    let mut last = 0;
    for i in 0..5 {
        let k = format!("v/{i}");
        let r = commit(s, vec![], vec![put(&k, "x"), put("v/shared", &k)]).await;
        assert!(r > last, "revision {r} after {last}");
        let got = s.get(&k).await.unwrap().unwrap();
        assert_eq!(got.mod_revision, r);
        assert_eq!(s.get("v/shared").await.unwrap().unwrap().mod_revision, r);
        last = r;
    }
    // Untouched keys keep the revision of their last write; ranges agree with gets.
    let first = s.get("v/0").await.unwrap().unwrap();
    assert!(first.mod_revision < last);
    for (k, v) in s.range("v/", "v0", usize::MAX).await.unwrap() {
        assert_eq!(Some(v), s.get(&k).await.unwrap(), "{k}");
    }
    // A revision read back guards the next update.
    let cur: Versioned = s.get("v/shared").await.unwrap().unwrap();
    let r = commit(
        s,
        vec![Compare::ModRevision("v/shared".into(), cur.mod_revision)],
        vec![put("v/shared", "guarded")],
    )
    .await;
    assert!(r > cur.mod_revision);
}

async fn one_winner_per_absent_key(store: Arc<dyn Store>) {
    const RACERS: usize = 32;
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .txn(Txn {
                        compares: vec![Compare::Absent("w/key".into())],
                        ops: vec![
                            put("w/key", &i.to_string()),
                            put(&format!("w/side/{i}"), "x"),
                        ],
                    })
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap().unwrap() {
            TxnOutcome::Committed(_) => winners.push(i),
            TxnOutcome::Conflict(k) => assert_eq!(k, "w/key"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(value(&*store, "w/key").await, Some(winners[0].to_string()));
    assert_eq!(
        keys(&*store, "w/side/").await,
        [format!("w/side/{}", winners[0])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_redb() {
    let dir = tempfile::tempdir().unwrap();
    contract(Arc::new(RedbStore::open(dir.path()).unwrap())).await;
}

/// Deferred transactions commit without fsync until a durable one, or the
/// bound on deferred commits in a row, or closing the store, takes them to
/// disk; what was deferred is there after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_deferred_txns_reach_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let base = store.durable_commits();
    let deferred = |k: String| Txn {
        compares: vec![Compare::Absent(k.clone())],
        ops: vec![Op::Put(k, b"r".to_vec())],
    };
    for i in 0..3 {
        let out = store
            .txn_deferred(deferred(format!("r/{i}")))
            .await
            .unwrap();
        assert!(matches!(out, TxnOutcome::Committed(_)), "{out:?}");
    }
    assert_eq!(store.durable_commits(), base, "deferred commits used fsync");
    commit(&store, vec![], vec![put("c/0", "x")]).await;
    assert_eq!(store.durable_commits(), base + 1);
    // One after another, so each is its own commit: the bound makes the
    // last of every MAX_DEFERRED_COMMITS durable.
    let bound = usize::try_from(jobnet_ipam::store::MAX_DEFERRED_COMMITS).unwrap();
    for i in 0..bound {
        store
            .txn_deferred(deferred(format!("b/{i:03}")))
            .await
            .unwrap();
    }
    assert_eq!(store.durable_commits(), base + 2);
    store.txn_deferred(deferred("z/last".into())).await.unwrap();
    drop(store);
    let store = RedbStore::open(dir.path()).unwrap();
    for k in ["r/0", "r/2", "b/000", "z/last"] {
        assert!(store.get(k).await.unwrap().is_some(), "{k} lost at close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_etcd_one_member() {
    let Some(c) = cluster("contract_etcd_one_member", EtcdSpec::members(1)) else {
        return;
    };
    contract(Arc::new(etcd(&c, "/jobnet/").await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_etcd_three_members() {
    let Some(c) = cluster("contract_etcd_three_members", EtcdSpec::members(3)) else {
        return;
    };
    contract(Arc::new(etcd(&c, "/jobnet/").await)).await;
}

// ---- etcd only ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_prefixes_isolate_stores() {
    let Some(c) = cluster("etcd_prefixes_isolate_stores", EtcdSpec::members(1)) else {
        return;
    };
    let a = etcd(&c, "/jobnet-a/").await;
    let b = etcd(&c, "/jobnet-b/").await;
    assert_eq!(a.prefix(), "/jobnet-a/");
    commit(&a, vec![], vec![put("k", "a"), put("only-a", "a")]).await;
    // Same key, other store: its own Absent holds and its value is its own.
    commit(&b, vec![Compare::Absent("k".into())], vec![put("k", "b")]).await;
    assert_eq!(value(&a, "k").await.as_deref(), Some("a"));
    assert_eq!(value(&b, "k").await.as_deref(), Some("b"));
    assert_eq!(keys(&a, "").await, ["k", "only-a"]);
    assert_eq!(keys(&b, "").await, ["k"]);
    assert_eq!(b.count("", &prefix_end("")).await.unwrap(), 1);
    commit(&a, vec![], vec![Op::DeletePrefix(String::new())]).await;
    assert!(keys(&a, "").await.is_empty());
    assert_eq!(value(&b, "k").await.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_txn_op_limit() {
    let Some(c) = cluster("etcd_txn_op_limit", EtcdSpec::members(1)) else {
        return;
    };
    let store = etcd(&c, "/jobnet/").await;
    let ops = |n: usize| {
        (0..n)
            .map(|i| put(&format!("l/{i:03}"), "x"))
            .collect::<Vec<_>>()
    };
    commit(&store, vec![], ops(128)).await;
    let too_many = store
        .txn(Txn {
            compares: vec![],
            ops: ops(129),
        })
        .await;
    assert!(
        matches!(&too_many, Err(StoreError::Backend(m)) if m.contains("--max-txn-ops")),
        "{too_many:?}"
    );
    // A store that believes in a higher limit gets etcd's own refusal, as Backend too.
    let optimist = EtcdStore::connect(EtcdOptions {
        max_txn_ops: 1000,
        ..options(&c, "/jobnet/")
    })
    .await
    .unwrap();
    let refused = optimist
        .txn(Txn {
            compares: vec![],
            ops: ops(129),
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::Backend(_))),
        "{refused:?}"
    );
    assert_eq!(store.count("l/", "l0").await.unwrap(), 128);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_unreachable_cluster_fails_within_timeout() {
    if !std::path::Path::new(jobnet_tests::etcd::ETCD_BIN).exists() {
        return skip(
            "etcd_unreachable_cluster_fails_within_timeout",
            "etcd is not installed",
        );
    }
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let (r, _) = bounded(
        "connect to nothing",
        EtcdStore::connect(EtcdOptions {
            timeout: TIMEOUT,
            ..EtcdOptions::new(vec![format!("http://127.0.0.1:{port}")])
        }),
    )
    .await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    // A blackholed address (TEST-NET-1, RFC 5737) never answers a SYN.
    let (r, _) = bounded(
        "connect to a blackhole",
        EtcdStore::connect(EtcdOptions {
            timeout: TIMEOUT,
            ..EtcdOptions::new(vec!["http://192.0.2.1:2379".into()])
        }),
    )
    .await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
}

/// Writes `n` fresh keys under `prefix`; every write must succeed at once.
async fn all_succeed(store: &dyn Store, prefix: &str, n: usize) {
    for i in 0..n {
        let k = format!("{prefix}{i}");
        commit(store, vec![Compare::Absent(k.clone())], vec![put(&k, "x")]).await;
        assert_eq!(value(store, &k).await.as_deref(), Some("x"));
    }
    assert_eq!(
        store.count(prefix, &prefix_end(prefix)).await.unwrap(),
        n as u64
    );
}

/// Creates `key` the way the allocator does after an unknown outcome: retry,
/// and take a conflict on the key itself as "an earlier attempt applied".
/// Each failing attempt must be Unavailable within the timeout. Returns the
/// time to the first success and the number of failed attempts.
async fn write_through_loss(store: &dyn Store, key: &str) -> (Duration, usize) {
    let started = Instant::now();
    let mut failed = 0;
    loop {
        let txn = Txn {
            compares: vec![Compare::Absent(key.into())],
            ops: vec![put(key, "x")],
        };
        match bounded("write after a member loss", store.txn(txn)).await.0 {
            Ok(TxnOutcome::Committed(_)) => return (started.elapsed(), failed),
            Ok(TxnOutcome::Conflict(k)) if k == key => return (started.elapsed(), failed),
            Err(StoreError::Unavailable(_)) => failed += 1,
            other => panic!("write after a member loss: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no new leader after 15 s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_member_loss_quorum_loss_and_restart() {
    let test = "etcd_member_loss_quorum_loss_and_restart";
    let Some(mut c) = cluster(test, EtcdSpec::members(3)) else {
        return;
    };
    let store = etcd(&c, "/jobnet/").await;
    let before = commit(&store, vec![], vec![put("f/before", "1")]).await;
    let leader = |c: &EtcdCluster| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = c.leader().unwrap() {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // A follower gone: a write the client sends on the dead member's
    // connection before it notices the close may fail (at once, as
    // Unavailable); after that every call succeeds.
    let follower = (blocking(|| leader(&c)) + 1) % 3;
    blocking(|| c.kill_member(follower)).unwrap();
    let (first, failures) = write_through_loss(&store, "f/follower-gone").await;
    eprintln!("{test}: follower killed: first write after {first:?} ({failures} failed attempts)");
    all_succeed(&store, "f/follower-down/", 20).await;
    blocking(|| {
        c.restart_member(follower)?;
        c.wait_ready()
    })
    .unwrap();

    // The leader gone: writes fail (Unavailable, bounded) until the others
    // elect a new one, then everything succeeds again.
    let old_leader = blocking(|| leader(&c));
    blocking(|| c.kill_member(old_leader)).unwrap();
    let (recovered, failures) = write_through_loss(&store, "f/election").await;
    eprintln!(
        "{test}: leader killed: first write after {recovered:?} ({failures} failed attempts)"
    );
    all_succeed(&store, "f/leader-down/", 20).await;

    // Two of three gone: no quorum. Calls fail as Unavailable, within the timeout.
    let second = (old_leader + 1) % 3;
    blocking(|| c.kill_member(second)).unwrap();
    let (r, took_txn) = bounded(
        "txn without quorum",
        store.txn(Txn {
            compares: vec![Compare::Absent("f/no-quorum".into())],
            ops: vec![put("f/no-quorum", "maybe")],
        }),
    )
    .await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    let (r, took_get) = bounded("get without quorum", store.get("f/before")).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    // A live member answers the serializable probe: connecting works, using does not.
    let (r, _) = bounded(
        "connect without quorum",
        EtcdStore::connect(options(&c, "/jobnet/")),
    )
    .await;
    let late = r.unwrap_or_else(|e| panic!("connect without quorum: {e}"));
    let (r, _) = bounded("count without quorum", late.count("f/", "f0")).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    // Relaxed reads are served by the live member's own copy.
    let (r, took_relaxed) =
        bounded("relaxed get without quorum", store.get_relaxed("f/before")).await;
    assert_eq!(
        r.expect("relaxed get").map(|v| v.value),
        Some(b"1".to_vec())
    );
    let (r, _) = bounded(
        "relaxed count without quorum",
        late.count_relaxed("f/", "f0"),
    )
    .await;
    assert!(r.expect("relaxed count") >= 1);
    eprintln!("{test}: no quorum: relaxed get answered after {took_relaxed:?}");
    eprintln!("{test}: no quorum: txn failed after {took_txn:?}, get after {took_get:?}");

    // Quorum back.
    blocking(|| {
        c.restart_member(second)?;
        c.wait_ready()
    })
    .unwrap();
    let (recovered, _) = write_through_loss(&store, "f/quorum-back").await;
    eprintln!("{test}: quorum back: first write after {recovered:?}");
    let after = commit(&store, vec![], vec![put("f/after", "1")]).await;
    assert!(after > before);
    // The txn cut off by the quorum loss may or may not have applied.
    let maybe = value(&store, "f/no-quorum").await;
    assert!(maybe.is_none() || maybe.as_deref() == Some("maybe"));
    eprintln!(
        "{test}: the txn cut off by quorum loss applied: {}",
        maybe.is_some()
    );

    // Every member restarted from its data dir: nothing lost.
    let snapshot = store.range("f/", "f0", usize::MAX).await.unwrap();
    blocking(|| -> Result<(), EtcdError> {
        c.stop();
        for i in 0..c.len() {
            c.restart_member(i)?;
        }
        c.wait_ready()
    })
    .unwrap();
    assert_eq!(store.range("f/", "f0", usize::MAX).await.unwrap(), snapshot);
    let fresh = etcd(&c, "/jobnet/").await;
    assert_eq!(fresh.range("f/", "f0", usize::MAX).await.unwrap(), snapshot);
    let last = commit(&fresh, vec![], vec![put("f/last", "1")]).await;
    assert!(last > after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_liveness_key_lives_with_its_store() {
    let test = "etcd_liveness_key_lives_with_its_store";
    let Some(c) = cluster(test, EtcdSpec::members(1)) else {
        return;
    };
    let watcher = etcd(&c, "/jobnet/").await;
    let ttl = Duration::from_secs(2);
    {
        let holder = etcd(&c, "/jobnet/").await;
        holder
            .put_alive("alive/n1", b"up".to_vec(), ttl)
            .await
            .expect("liveness key written");
        // Renewed: still there after several TTLs.
        tokio::time::sleep(ttl * 3).await;
        assert_eq!(value(&watcher, "alive/n1").await.as_deref(), Some("up"));
    }
    // The holder is gone: the lease runs out and the key with it.
    let deadline = Instant::now() + ttl * 4;
    while value(&watcher, "alive/n1").await.is_some() {
        assert!(Instant::now() < deadline, "liveness key outlived its store");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_tls_with_client_certificates() {
    let test = "etcd_tls_with_client_certificates";
    if !std::path::Path::new(jobnet_tests::etcd::ETCD_BIN).exists() {
        return skip(test, "etcd is not installed");
    }
    let pki_dir = tempfile::tempdir().unwrap();
    let host = std::net::IpAddr::from([127, 0, 0, 1]);
    let pki = TestPki::generate(pki_dir.path(), host).unwrap();
    let spec = EtcdSpec {
        tls: Some(pki.server_tls(true)),
        ..EtcdSpec::members(1)
    };
    let Some(c) = cluster(test, spec) else {
        return;
    };
    assert!(c.endpoints()[0].starts_with("https://"));
    let tls = EtcdTls {
        ca_file: pki.ca_file.clone(),
        cert_file: Some(pki.client_cert.clone()),
        key_file: Some(pki.client_key.clone()),
    };
    let store = EtcdStore::connect(EtcdOptions {
        tls: Some(tls.clone()),
        ..options(&c, "/jobnet/")
    })
    .await
    .unwrap();
    let r = commit(
        &store,
        vec![Compare::Absent("tls".into())],
        vec![put("tls", "ok")],
    )
    .await;
    assert_eq!(store.get("tls").await.unwrap().unwrap().mod_revision, r);

    // Without the CA the server is not trusted; without a client certificate
    // the server refuses. Both fail cleanly within the timeout.
    let (r, _) = bounded(
        "TLS client without the CA",
        EtcdStore::connect(options(&c, "/jobnet/")),
    )
    .await;
    assert!(r.is_err(), "connected without the CA");
    eprintln!(
        "{test}: without the CA: {}",
        r.err().map(|e| e.to_string()).unwrap_or_default()
    );
    let (r, _) = bounded(
        "TLS client without a certificate",
        EtcdStore::connect(EtcdOptions {
            tls: Some(EtcdTls {
                cert_file: None,
                key_file: None,
                ..tls.clone()
            }),
            ..options(&c, "/jobnet/")
        }),
    )
    .await;
    assert!(r.is_err(), "connected without a client certificate");
    eprintln!(
        "{test}: without a client certificate: {}",
        r.err().map(|e| e.to_string()).unwrap_or_default()
    );
    // A missing file is a configuration error, reported at once.
    let r = EtcdStore::connect(EtcdOptions {
        tls: Some(EtcdTls {
            ca_file: pki_dir.path().join("absent.pem"),
            ..tls
        }),
        ..options(&c, "/jobnet/")
    })
    .await;
    assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
}

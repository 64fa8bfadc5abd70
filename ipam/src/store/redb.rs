//! Embedded store on redb with group commit.
//!
//! One writer thread owns all writes. It takes the first queued transaction,
//! drains whatever else is queued (up to `max_batch`), applies them in order
//! inside one redb write transaction (each sees the ones before it, and a
//! transaction whose compares fail is skipped as a whole), commits once with
//! fsync, and only then answers every caller. A batch of only deferred
//! transactions ([`Store::txn_deferred`]) commits without fsync; the next
//! durable commit persists it, and the writer makes every
//! [`MAX_DEFERRED_COMMITS`]th commit and its last one durable whatever it
//! carries. Readers use redb's MVCC read transactions and never wait for
//! the writer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition};
use tokio::sync::oneshot;

use super::{
    Compare, Op, RangeFuture, Revision, Store, StoreError, StoreFuture, Txn, TxnOutcome, Versioned,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";
/// File name of the database inside the state directory.
pub const DB_FILE: &str = "ipam.redb";

type Reply = oneshot::Sender<Result<TxnOutcome, StoreError>>;

/// Most commits in a row without fsync: bounds what a crash can lose and
/// the dirty pages redb holds in memory until a durable commit.
pub const MAX_DEFERRED_COMMITS: u64 = 64;

/// A transaction waiting for the writer.
struct Queued {
    txn: Txn,
    /// False for a deferred transaction: it may be answered before fsync.
    durable: bool,
    reply: Reply,
}

/// Tuning of the embedded store.
#[derive(Debug, Clone, Copy)]
pub struct RedbOptions {
    /// redb page cache size in bytes (bounds the store's share of RSS).
    pub cache_bytes: usize,
    /// Most transactions folded into one commit.
    pub max_batch: usize,
    /// How long the writer lingers for more transactions before a commit, when the
    /// previous commit carried more than one (i.e. requests are concurrent). A lone
    /// client never waits; under load every commit (one fsync plus the page writes,
    /// the writer's main CPU cost) carries more transactions.
    pub batch_window: Duration,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 16 << 20,
            max_batch: 1024,
            batch_window: Duration::from_micros(500),
        }
    }
}

/// Counters of the writer, for benchmarks and metrics.
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    durable_commits: AtomicU64,
    txns: AtomicU64,
    apply_ns: AtomicU64,
    commit_ns: AtomicU64,
}

/// The embedded backend: a redb file under the state directory.
pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
    queue: Option<mpsc::Sender<Queued>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl RedbStore {
    /// Opens (or creates) the store in `state_dir` with default options.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(state_dir, RedbOptions::default())
    }

    /// Opens (or creates) the store in `state_dir`.
    pub fn open_with(state_dir: &Path, options: RedbOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(backend)?;
        let path = state_dir.join(DB_FILE);
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .create(&path)
            .map_err(backend)?;
        // Create the tables up front so readers never meet a missing table.
        let w = db.begin_write().map_err(backend)?;
        {
            w.open_table(KV).map_err(backend)?;
            w.open_table(META).map_err(backend)?;
        }
        w.commit().map_err(backend)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let writer = {
            let db = Arc::clone(&db);
            let counters = Arc::clone(&counters);
            let batching = Batching {
                max: options.max_batch.max(1),
                window: options.batch_window,
            };
            std::thread::Builder::new()
                .name("ipam-store-writer".into())
                .spawn(move || write_loop(&db, &rx, batching, &counters))
                .map_err(backend)?
        };
        Ok(Self {
            db,
            path,
            queue: Some(tx),
            writer: Some(writer),
            counters,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// (redb commits, transactions applied) since open: their ratio is the group-commit factor.
    pub fn commit_stats(&self) -> (u64, u64) {
        (
            self.counters.commits.load(Ordering::Relaxed),
            self.counters.txns.load(Ordering::Relaxed),
        )
    }

    /// Commits made with fsync since open (the rest were deferred).
    pub fn durable_commits(&self) -> u64 {
        self.counters.durable_commits.load(Ordering::Relaxed)
    }

    fn enqueue(&self, txn: Txn, durable: bool) -> StoreFuture<'_, TxnOutcome> {
        let (reply, rx) = oneshot::channel();
        let queued = match &self.queue {
            Some(q) => q
                .send(Queued {
                    txn,
                    durable,
                    reply,
                })
                .is_ok(),
            None => false,
        };
        Box::pin(async move {
            if !queued {
                return Err(StoreError::Closed);
            }
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    /// Writer time since open: (applying transactions, committing to disk).
    pub fn writer_time(&self) -> (Duration, Duration) {
        (
            Duration::from_nanos(self.counters.apply_ns.load(Ordering::Relaxed)),
            Duration::from_nanos(self.counters.commit_ns.load(Ordering::Relaxed)),
        )
    }

    fn get_sync(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let r = self.db.begin_read().map_err(backend)?;
        let t = r.open_table(KV).map_err(backend)?;
        let v = t.get(key).map_err(backend)?;
        v.map(|g| decode(key, g.value())).transpose()
    }

    fn range_sync(
        &self,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>, StoreError> {
        let r = self.db.begin_read().map_err(backend)?;
        let t = r.open_table(KV).map_err(backend)?;
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        for item in t.range(start..end).map_err(backend)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(backend)?;
            let key = k.value().to_string();
            let val = decode(&key, v.value())?;
            out.push((key, val));
        }
        Ok(out)
    }
}

impl RedbStore {
    fn count_sync(&self, start: &str, end: &str) -> Result<u64, StoreError> {
        if start >= end {
            return Ok(0);
        }
        let r = self.db.begin_read().map_err(backend)?;
        let t = r.open_table(KV).map_err(backend)?;
        let mut n = 0u64;
        for item in t.range(start..end).map_err(backend)? {
            item.map_err(backend)?;
            n += 1;
        }
        Ok(n)
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it answered everything queued.
        self.queue.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Store for RedbStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(std::future::ready(self.get_sync(key)))
    }

    fn range<'a>(&'a self, start: &'a str, end: &'a str, limit: usize) -> RangeFuture<'a> {
        Box::pin(std::future::ready(self.range_sync(start, end, limit)))
    }

    fn count<'a>(&'a self, start: &'a str, end: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(std::future::ready(self.count_sync(start, end)))
    }

    fn txn(&self, txn: Txn) -> StoreFuture<'_, TxnOutcome> {
        self.enqueue(txn, true)
    }

    fn txn_deferred(&self, txn: Txn) -> StoreFuture<'_, TxnOutcome> {
        self.enqueue(txn, false)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn decode(key: &str, raw: &[u8]) -> Result<Versioned, StoreError> {
    let (rev, value) = raw
        .split_first_chunk::<8>()
        .ok_or_else(|| StoreError::Corrupt(key.to_string()))?;
    Ok(Versioned {
        value: value.to_vec(),
        mod_revision: u64::from_le_bytes(*rev),
    })
}

fn encode(rev: Revision, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + value.len());
    v.extend_from_slice(&rev.to_le_bytes());
    v.extend_from_slice(value);
    v
}

/// How the writer groups transactions into commits.
#[derive(Debug, Clone, Copy)]
struct Batching {
    max: usize,
    window: Duration,
}

/// The next batch: the first queued transaction, whatever else is queued, and,
/// when the last batch showed concurrent callers, what arrives within the window.
fn next_batch(rx: &mpsc::Receiver<Queued>, b: Batching, concurrent: bool) -> Option<Vec<Queued>> {
    let first = rx.recv().ok()?;
    let mut batch = vec![first];
    while batch.len() < b.max {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    if concurrent && !b.window.is_zero() {
        let deadline = Instant::now() + b.window;
        while batch.len() < b.max {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(next) if !left.is_zero() => batch.push(next),
                Ok(next) => {
                    batch.push(next);
                    break;
                }
                Err(_) => break,
            }
        }
    }
    Some(batch)
}

fn write_loop(db: &Database, rx: &mpsc::Receiver<Queued>, batching: Batching, counters: &Counters) {
    let mut concurrent = false;
    // Commits since the last durable one.
    let mut deferred = 0u64;
    while let Some(batch) = next_batch(rx, batching, concurrent) {
        concurrent = batch.len() > 1;
        let durable = batch.iter().any(|q| q.durable) || deferred + 1 >= MAX_DEFERRED_COMMITS;
        let result = apply_batch(db, &batch, durable, counters);
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters
            .txns
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        match result {
            Ok((outcomes, durable)) => {
                deferred = if durable { 0 } else { deferred + 1 };
                for (q, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = q.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "ipam store commit failed");
                for q in batch {
                    let _ = q.reply.send(Err(StoreError::Backend(e.to_string())));
                }
            }
        }
    }
    if deferred > 0 {
        // The queue closed (the store is dropped): what was deferred
        // becomes durable now, not at some later open.
        if let Err(e) = apply_batch(db, &[], true, counters) {
            tracing::error!(error = %e, "ipam store: final durable commit failed");
        }
    }
}

fn apply_batch(
    db: &Database,
    batch: &[Queued],
    durable: bool,
    counters: &Counters,
) -> Result<(Vec<TxnOutcome>, bool), redb::Error> {
    let started = Instant::now();
    let mut w = db.begin_write()?;
    // Refused only for persistent savepoints and multi-process mode,
    // neither of which this store uses; then the commit stays durable.
    let durable = durable || w.set_durability(Durability::None).is_err();
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut kv = w.open_table(KV)?;
        let mut meta = w.open_table(META)?;
        let mut rev = meta.get(REVISION_KEY)?.map(|g| g.value()).unwrap_or(0);
        for Queued { txn, .. } in batch {
            if let Some(failed) = first_failed(&kv, &txn.compares)? {
                outcomes.push(TxnOutcome::Conflict(failed));
                continue;
            }
            rev += 1;
            for op in &txn.ops {
                apply_op(&mut kv, op, rev)?;
            }
            outcomes.push(TxnOutcome::Committed(rev));
        }
        meta.insert(REVISION_KEY, rev)?;
    }
    let applied = Instant::now();
    w.commit()?;
    if durable {
        counters.durable_commits.fetch_add(1, Ordering::Relaxed);
    }
    counters
        .apply_ns
        .fetch_add(nanos(applied - started), Ordering::Relaxed);
    counters
        .commit_ns
        .fetch_add(nanos(applied.elapsed()), Ordering::Relaxed);
    Ok((outcomes, durable))
}

fn first_failed(
    kv: &Table<&str, &[u8]>,
    compares: &[Compare],
) -> Result<Option<String>, redb::Error> {
    for c in compares {
        let current = kv.get(c.key())?;
        let ok = match (c, current) {
            (Compare::Absent(_), cur) => cur.is_none(),
            (Compare::ModRevision(_, want), Some(g)) => g
                .value()
                .split_first_chunk::<8>()
                .is_some_and(|(r, _)| u64::from_le_bytes(*r) == *want),
            (Compare::ModRevision(..), None) => false,
        };
        if !ok {
            return Ok(Some(c.key().to_string()));
        }
    }
    Ok(None)
}

fn apply_op(kv: &mut Table<&str, &[u8]>, op: &Op, rev: Revision) -> Result<(), redb::Error> {
    match op {
        Op::Put(k, v) => {
            kv.insert(k.as_str(), encode(rev, v).as_slice())?;
        }
        Op::Delete(k) => {
            kv.remove(k.as_str())?;
        }
        Op::DeletePrefix(p) => {
            let end = super::prefix_end(p);
            let mut keys = Vec::new();
            for item in kv.range(p.as_str()..end.as_str())? {
                keys.push(item?.0.value().to_string());
            }
            for k in keys {
                kv.remove(k.as_str())?;
            }
        }
    }
    Ok(())
}

//! A compare-and-swap key/value store: reads return revisions, writes are
//! conditional batches. The shape maps one to one onto an etcd v3 `Txn`
//! (compare mod/create revision, then puts and deletes), so a cluster backend
//! can implement the same trait.

#[cfg(feature = "etcd")]
mod etcd;
mod redb;

use std::future::Future;
use std::pin::Pin;

#[cfg(feature = "etcd")]
pub use self::etcd::{EtcdOptions, EtcdStore, EtcdTls};
pub use self::redb::{RedbOptions, RedbStore, DB_FILE, MAX_DEFERRED_COMMITS};

/// Revision of a write; increases with every committed transaction.
pub type Revision = u64;

/// Future returned by store operations.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Future returned by range reads: keys in order, each with its value.
pub type RangeFuture<'a> = StoreFuture<'a, Vec<(String, Versioned)>>;

/// A value and the revision of its last write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// Revision of the transaction that last wrote the key.
    pub mod_revision: Revision,
}

/// A condition every compare of a transaction must satisfy for its ops to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key exists and was last written at this revision.
    ModRevision(String, Revision),
}

impl Compare {
    /// The key the compare looks at.
    pub fn key(&self) -> &str {
        match self {
            Compare::Absent(k) | Compare::ModRevision(k, _) => k,
        }
    }
}

/// A write in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set a key.
    Put(String, Vec<u8>),
    /// Remove a key (no error if absent).
    Delete(String),
    /// Remove every key starting with the prefix.
    DeletePrefix(String),
}

/// A conditional write batch: all ops apply atomically iff all compares hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions.
    pub compares: Vec<Compare>,
    /// Writes applied when every condition holds.
    pub ops: Vec<Op>,
}

/// What happened to a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Applied at this revision (durable, unless the transaction was
    /// [deferred](Store::txn_deferred)).
    Committed(Revision),
    /// Not applied: the compare on this key failed.
    Conflict(String),
}

/// Store failures (I/O, corruption, shutdown, an unreachable cluster).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed or rejected the request; retrying the same request will not help.
    #[error("store backend: {0}")]
    Backend(String),
    /// The store cannot answer now (cluster unreachable, no quorum, deadline exceeded):
    /// try again later. A transaction that failed this way may or may not have applied,
    /// so the caller must find out by reading before it repeats the work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store was shut down while the request was pending.
    #[error("store is shut down")]
    Closed,
    /// A stored value is malformed.
    #[error("corrupt store value at {0:?}")]
    Corrupt(String),
}

/// A transactional key/value store with revisions.
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>>;

    /// Reads keys in `[start, end)` in key order, at most `limit` of them.
    fn range<'a>(&'a self, start: &'a str, end: &'a str, limit: usize) -> RangeFuture<'a>;

    /// Applies a transaction; returns once it is durable (or known not applied).
    fn txn(&self, txn: Txn) -> StoreFuture<'_, TxnOutcome>;

    /// Applies a transaction like [`Store::txn`], but may answer before it
    /// is durable: the next durable transaction makes it durable with
    /// itself, and a crash before that loses it. Only for a write that a
    /// later durable one confirms before anyone relies on it (a
    /// reservation, confirmed by its commit). Backends that cannot defer
    /// (etcd) apply it durably.
    fn txn_deferred(&self, txn: Txn) -> StoreFuture<'_, TxnOutcome> {
        self.txn(txn)
    }

    /// Reads one key as the nearest replica has it: possibly a moment behind,
    /// but answered without a quorum (views keep working in an outage). Never
    /// use it to decide a write.
    fn get_relaxed<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        self.get(key)
    }

    /// [`Store::range`] as the nearest replica has it (see [`Store::get_relaxed`]).
    fn range_relaxed<'a>(&'a self, start: &'a str, end: &'a str, limit: usize) -> RangeFuture<'a> {
        self.range(start, end, limit)
    }

    /// [`Store::count`] as the nearest replica has it (see [`Store::get_relaxed`]).
    fn count_relaxed<'a>(&'a self, start: &'a str, end: &'a str) -> StoreFuture<'a, u64> {
        self.count(start, end)
    }

    /// Keeps `key` = `value` in the store while this process lives. Backends
    /// with leases (etcd) bind the key to a lease of `ttl` that they renew in
    /// the background, so the key vanishes about `ttl` after the process dies;
    /// the default writes it plainly (a single-node store has no one else to
    /// tell that the node is gone).
    fn put_alive<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: std::time::Duration,
    ) -> StoreFuture<'a, ()> {
        let _ = ttl;
        Box::pin(async move {
            self.txn(Txn {
                compares: Vec::new(),
                ops: vec![Op::Put(key.to_string(), value)],
            })
            .await
            .map(|_| ())
        })
    }

    /// Number of keys in `[start, end)`. The default pages through [`Store::range`];
    /// backends that can count without reading values should.
    fn count<'a>(&'a self, start: &'a str, end: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            const PAGE: usize = 1024;
            let mut n = 0u64;
            let mut from = start.to_string();
            loop {
                let page = self.range(&from, end, PAGE).await?;
                n += page.len() as u64;
                match page.last() {
                    Some((k, _)) if page.len() == PAGE => from = key_after(k),
                    _ => return Ok(n),
                }
            }
        })
    }
}

/// The smallest key greater than `key` (for paging through a range).
pub fn key_after(key: &str) -> String {
    format!("{key}\0")
}

/// The end of the key range holding every key that starts with `prefix`.
pub fn prefix_end(prefix: &str) -> String {
    // Keys are ASCII (see the key module), so bumping the last byte stays valid UTF-8.
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).unwrap_or_default();
        }
    }
    "\u{7f}".to_string()
}

/// One store shared by several allocators (several simulated nodes in one
/// process, or a bench): each call goes to the shared store.
impl<S: Store> Store for std::sync::Arc<S> {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        (**self).get(key)
    }

    fn range<'a>(&'a self, start: &'a str, end: &'a str, limit: usize) -> RangeFuture<'a> {
        (**self).range(start, end, limit)
    }

    fn txn(&self, txn: Txn) -> StoreFuture<'_, TxnOutcome> {
        (**self).txn(txn)
    }

    fn txn_deferred(&self, txn: Txn) -> StoreFuture<'_, TxnOutcome> {
        (**self).txn_deferred(txn)
    }

    fn put_alive<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: std::time::Duration,
    ) -> StoreFuture<'a, ()> {
        (**self).put_alive(key, value, ttl)
    }

    fn count<'a>(&'a self, start: &'a str, end: &'a str) -> StoreFuture<'a, u64> {
        (**self).count(start, end)
    }

    fn get_relaxed<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        (**self).get_relaxed(key)
    }

    fn range_relaxed<'a>(&'a self, start: &'a str, end: &'a str, limit: usize) -> RangeFuture<'a> {
        (**self).range_relaxed(start, end, limit)
    }

    fn count_relaxed<'a>(&'a self, start: &'a str, end: &'a str) -> StoreFuture<'a, u64> {
        (**self).count_relaxed(start, end)
    }
}

//! Cluster store on the etcd v3 API.
//!
//! Every key lives under a configurable prefix (added on write, stripped on
//! read by etcd-client's prefixed KV client), so several stores can share one
//! cluster. A [`Txn`] becomes one etcd `Txn`: `Absent` is `create_revision == 0`,
//! `ModRevision` is `mod_revision == rev`, and the else branch reads every
//! compared key, so one atomic round trip also tells which compare failed.
//! Revisions are etcd's cluster-wide revisions.
//!
//! # Failures
//! Every call is bounded by [`EtcdOptions::timeout`]. A call that cannot get an
//! answer in time (members unreachable, no quorum, no leader) fails with
//! [`StoreError::Unavailable`]; a request etcd refuses (too many ops, too large,
//! permission denied, out of space) fails with [`StoreError::Backend`].
//! Reads are retried within the timeout, and so are transactions, even when an
//! attempt may have reached the cluster (its connection died, e.g. with the
//! leader): every transaction the allocator sends either compares a key it also
//! writes, so a second application fails its compare and the caller, reading
//! back, finds its own write, or is an idempotent write. When the deadline
//! passes the call is `Unavailable` and **the transaction may or may not have
//! applied**: the caller must read back before repeating it.
//!
//! # Limits
//! etcd refuses a transaction with more than `--max-txn-ops` (default 128)
//! compares, or ops in either branch. The store checks against
//! [`EtcdOptions::max_txn_ops`] before sending and fails with `Backend`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    KvClientPrefix, PutOptions, TlsOptions, TxnOp, TxnOpResponse,
};
use tokio::time::{sleep, timeout, Instant};

use super::{
    key_after, prefix_end, Compare, Op, RangeFuture, Revision, Store, StoreError, StoreFuture, Txn,
    TxnOutcome, Versioned,
};

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

// etcd answers pings more often than every 5 s (its `--grpc-keepalive-min-time`)
// with GOAWAY, so the interval stays above that.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// Shortest time one attempt of a call gets before it is tried again.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);
// Sent by etcd when the member has no leader and the request asked for one
// (`require_leader`): the request was refused before it was proposed.
const NO_LEADER: &str = "etcdserver: no leader";

/// TLS material for talking to etcd (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA that signed the members' server certificates.
    pub ca_file: PathBuf,
    /// Client certificate, for clusters started with `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// Key of the client certificate.
    pub key_file: Option<PathBuf>,
}

/// Where and how to reach the etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs of the members (`https://` when `tls` is set).
    pub endpoints: Vec<String>,
    /// Prefix of every key (non-empty; two stores on one cluster need prefixes
    /// where neither starts with the other, e.g. ending in `/`).
    pub prefix: String,
    /// Bound of every call, connecting included.
    pub timeout: Duration,
    /// TLS settings; `None` for plain `http://` endpoints.
    pub tls: Option<EtcdTls>,
    /// The cluster's `--max-txn-ops`.
    pub max_txn_ops: usize,
}

impl EtcdOptions {
    /// Options for these endpoints with prefix `/jobnet/`, a 2 s timeout, no TLS and etcd's default op limit.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: "/jobnet/".into(),
            timeout: Duration::from_secs(2),
            tls: None,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
        }
    }
}

/// The cluster backend: an etcd v3 client bound to one key prefix.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    /// Same members without "require leader", for serializable reads that a
    /// member answers from its own copy while the cluster has no quorum.
    relaxed: Client,
    prefix: Vec<u8>,
    timeout: Duration,
    max_txn_ops: usize,
    /// Background lease keepers of [`Store::put_alive`] keys; stopped when the
    /// last clone of the store is dropped.
    keepers: Arc<Keepers>,
}

/// Lease keeper tasks, aborted on drop.
#[derive(Default)]
struct Keepers(std::sync::Mutex<Vec<tokio::task::AbortHandle>>);

impl Drop for Keepers {
    fn drop(&mut self) {
        let tasks = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            t.abort();
        }
    }
}

/// Which client a call goes through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Linearizable, refused by a member without a leader.
    Leader,
    /// Serializable, from the member's own copy.
    Replica,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// How an etcd call failed, deciding whether it may be retried.
enum Failure {
    /// The request never reached a member that could apply it: safe to repeat.
    NotSent(String),
    /// The request may have reached the cluster; only reads may be repeated.
    Unknown(String),
    /// etcd refused the request.
    Rejected(String),
}

fn classify(e: &etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    use tonic::Code;
    let E::GRpcStatus(status) = e else {
        return match e {
            E::TransportError(_) | E::IoError(_) => Failure::Unknown(e.to_string()),
            _ => Failure::Rejected(e.to_string()),
        };
    };
    let msg = format!("{}: {}", status.code(), status.message());
    if connect_failed(status) || no_leader(e) {
        return Failure::NotSent(msg);
    }
    match status.code() {
        // Unknown: hyper/h2 errors of a connection lost mid-request.
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            Failure::Unknown(msg)
        }
        // etcd's "too many requests" (apply falling behind) is transient;
        // "database space exceeded" needs an operator.
        Code::ResourceExhausted if status.message().contains("too many requests") => {
            Failure::Unknown(msg)
        }
        _ => Failure::Rejected(msg),
    }
}

fn no_leader(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message() == NO_LEADER)
}

/// Whether the request never left this process: opening the connection
/// failed (refused, TLS handshake) or hyper gave up on it before writing it
/// (its "canceled": the connection was not ready or closed while queued).
fn connect_failed(status: &tonic::Status) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = cur {
        if e.is::<tonic::ConnectError>()
            || e.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Which failures a call may retry within its deadline.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: anything transient.
    Transient,
    /// Guarded transactions: anything transient (see the module docs); at the
    /// deadline the outcome is unknown.
    Guarded,
}

fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path)
        .map_err(|e| StoreError::Backend(format!("etcd TLS {what} {}: {e}", path.display())))
}

fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, StoreError> {
    let ca = read_pem("CA", &tls.ca_file)?;
    let options = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Ok(options.identity(Identity::from_pem(
            read_pem("certificate", cert)?,
            read_pem("key", key)?,
        ))),
        (None, None) => Ok(options),
        _ => Err(StoreError::Backend(
            "etcd TLS: cert_file and key_file must be given together".into(),
        )),
    }
}

fn revision(r: i64) -> Revision {
    Revision::try_from(r).unwrap_or(0)
}

fn etcd_limit(limit: usize) -> i64 {
    // 0 is etcd's "no limit".
    if limit == usize::MAX {
        0
    } else {
        i64::try_from(limit).unwrap_or(0)
    }
}

fn empty_range(start: &str, end: &str) -> bool {
    // "\0" alone means "to the end of the key space" to etcd, not "before \0".
    start >= end || end == "\0"
}

fn key_string(raw: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(raw.to_vec())
        .map_err(|_| StoreError::Corrupt(String::from_utf8_lossy(raw).into_owned()))
}

/// The puts and deletes a transaction's ops amount to when applied in order,
/// shaped as etcd accepts them: etcd refuses a txn that puts a key twice or
/// puts a key inside a range it deletes, so later ops override earlier ones
/// here and deleted ranges are split around keys put after them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Writes {
    puts: BTreeMap<String, Vec<u8>>,
    /// Half-open `[start, end)` ranges.
    deletes: Vec<(String, String)>,
}

impl Writes {
    fn from_ops(ops: Vec<Op>) -> Self {
        let mut w = Writes::default();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    w.deletes = std::mem::take(&mut w.deletes)
                        .into_iter()
                        .flat_map(|(s, e)| {
                            if s <= k && k < e {
                                vec![(s, k.clone()), (key_after(&k), e)]
                            } else {
                                vec![(s, e)]
                            }
                        })
                        .filter(|(s, e)| s < e)
                        .collect();
                    w.puts.insert(k, v);
                }
                Op::Delete(k) => {
                    w.puts.remove(&k);
                    let end = key_after(&k);
                    w.deletes.push((k, end));
                }
                Op::DeletePrefix(p) => {
                    let end = prefix_end(&p);
                    w.puts.retain(|k, _| !(*k >= p && *k < end));
                    w.deletes.push((p, end));
                }
            }
        }
        w
    }

    fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    fn into_ops(self) -> Vec<TxnOp> {
        let deletes = self.deletes.into_iter().map(|(s, e)| {
            let options = (e != key_after(&s)).then(|| DeleteOptions::new().with_range(e));
            TxnOp::delete(s, options)
        });
        let puts = self.puts.into_iter().map(|(k, v)| TxnOp::put(k, v, None));
        deletes.chain(puts).collect()
    }
}

/// The first compare that does not hold, given what the else branch read.
fn failed_compare(
    compares: &[Compare],
    seen: &BTreeMap<String, Option<Revision>>,
) -> Option<String> {
    compares
        .iter()
        .find(|c| {
            let current = seen.get(c.key()).copied().flatten();
            match c {
                Compare::Absent(_) => current.is_some(),
                Compare::ModRevision(_, want) => current != Some(*want),
            }
        })
        .map(|c| c.key().to_string())
}

impl EtcdStore {
    /// Connects and checks that a member answers (reachable, TLS and
    /// permissions fine), all within `options.timeout`.
    pub async fn connect(options: EtcdOptions) -> Result<Self, StoreError> {
        if options.endpoints.is_empty() {
            return Err(StoreError::Backend("etcd: no endpoints".into()));
        }
        if options.prefix.is_empty() {
            return Err(StoreError::Backend("etcd: the key prefix is empty".into()));
        }
        if options.timeout.is_zero() {
            return Err(StoreError::Backend("etcd: the timeout is zero".into()));
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, options.timeout);
        if let Some(tls) = &options.tls {
            connect = connect.with_tls(tls_options(tls)?);
        }
        // Connecting is lazy: no member is contacted until the first request.
        let relaxed = Client::connect(&options.endpoints, Some(connect.clone()))
            .await
            .map_err(backend)?;
        let client = Client::connect(&options.endpoints, Some(connect.with_require_leader(true)))
            .await
            .map_err(backend)?;
        let store = Self {
            client,
            relaxed,
            keepers: Arc::new(Keepers::default()),
            prefix: options.prefix.into_bytes(),
            timeout: options.timeout,
            max_txn_ops: options.max_txn_ops,
        };
        // Serializable, and "no leader" counts as an answer: connecting checks
        // reachability, TLS and permissions; a store that starts during an
        // outage reports Unavailable on use, not here.
        let probe = GetOptions::new()
            .with_range(prefix_end(""))
            .with_count_only()
            .with_serializable();
        // Through both clients: each has its own connections, and the
        // relaxed one must have found a live member before an outage asks
        // it to answer alone.
        for via in [Via::Leader, Via::Replica] {
            store
                .call_via(via, "connect", Retry::Transient, |mut kv| {
                    let probe = probe.clone();
                    async move {
                        match kv.get("", Some(probe)).await {
                            Err(e) if no_leader(&e) => Ok(()),
                            r => r.map(drop),
                        }
                    }
                })
                .await?;
        }
        Ok(store)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        std::str::from_utf8(&self.prefix).unwrap_or_default()
    }

    fn kv(&self, via: Via) -> KvClientPrefix {
        let client = match via {
            Via::Leader => &self.client,
            Via::Replica => &self.relaxed,
        };
        KvClientPrefix::new(client.kv_client(), self.prefix.clone())
    }

    /// Runs `attempt` until it succeeds, fails for good, or the timeout passes.
    async fn call<T, F, Fut>(&self, what: &str, retry: Retry, attempt: F) -> Result<T, StoreError>
    where
        F: FnMut(KvClientPrefix) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_via(Via::Leader, what, retry, attempt).await
    }

    /// [`EtcdStore::call`] through the chosen client.
    async fn call_via<T, F, Fut>(
        &self,
        via: Via,
        what: &str,
        retry: Retry,
        mut attempt: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(KvClientPrefix) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.timeout;
        let attempt_limit = (self.timeout / 3).max(MIN_ATTEMPT);
        let mut last: Option<String> = None;
        let attempts = async {
            let mut backoff = FIRST_BACKOFF;
            loop {
                // One attempt may hang on a connection whose member died
                // (a request forwarded to a killed leader): give it a part of
                // the deadline, then try again on another connection.
                let e = match timeout(attempt_limit, attempt(self.kv(via))).await {
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(e)) => e,
                    Err(_) => {
                        last = Some(format!("no answer within {attempt_limit:?}"));
                        continue;
                    }
                };
                let msg = match classify(&e) {
                    Failure::NotSent(m) => m,
                    Failure::Unknown(m) => m,
                    Failure::Rejected(m) => {
                        return Err(StoreError::Backend(format!("etcd {what}: {m}")))
                    }
                };
                last = Some(msg);
                sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        };
        let outcome = timeout(self.timeout, attempts).await;
        outcome.unwrap_or_else(|_| {
            let cause = last
                .map(|m| format!(" (last error: {m})"))
                .unwrap_or_default();
            // The deadline may have cut an attempt that reached the leader.
            let unknown = match retry {
                Retry::Guarded => "; it may or may not have applied",
                Retry::Transient => "",
            };
            Err(StoreError::Unavailable(format!(
                "etcd {what}: no answer within {:?}{cause}{unknown}",
                self.timeout
            )))
        })
    }

    async fn range_impl(
        &self,
        via: Via,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>, StoreError> {
        if limit == 0 || empty_range(start, end) {
            return Ok(Vec::new());
        }
        let mut options = GetOptions::new()
            .with_range(end)
            .with_limit(etcd_limit(limit));
        if via == Via::Replica {
            options = options.with_serializable();
        }
        let mut resp = self
            .call_via(via, "range", Retry::Transient, |mut kv| {
                let options = options.clone();
                async move { kv.get(start, Some(options)).await }
            })
            .await?;
        resp.take_kvs()
            .into_iter()
            .map(|kv| {
                let key = key_string(kv.key())?;
                let mod_revision = revision(kv.mod_revision());
                let (_, value) = kv.into_key_value();
                Ok((
                    key,
                    Versioned {
                        value,
                        mod_revision,
                    },
                ))
            })
            .collect()
    }

    async fn txn_impl(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let Txn { compares, ops } = txn;
        let writes = Writes::from_ops(ops);
        let compared: Vec<String> = compares
            .iter()
            .map(|c| c.key().to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let largest = compares.len().max(writes.len()).max(compared.len());
        if largest > self.max_txn_ops {
            return Err(StoreError::Backend(format!(
                "etcd txn: {} compares and {} writes exceed the cluster's limit of {} per transaction (--max-txn-ops)",
                compares.len(),
                writes.len(),
                self.max_txn_ops
            )));
        }
        let when: Vec<etcd_client::Compare> = compares
            .iter()
            .map(|c| match c {
                Compare::Absent(k) => {
                    etcd_client::Compare::create_revision(k.as_str(), CompareOp::Equal, 0)
                }
                // A revision etcd can never reach compares unequal, as it should.
                Compare::ModRevision(k, rev) => etcd_client::Compare::mod_revision(
                    k.as_str(),
                    CompareOp::Equal,
                    i64::try_from(*rev).unwrap_or(i64::MAX),
                ),
            })
            .collect();
        let reads: Vec<TxnOp> = compared
            .iter()
            .map(|k| TxnOp::get(k.as_str(), Some(GetOptions::new().with_keys_only())))
            .collect();
        let request = etcd_client::Txn::new()
            .when(when)
            .and_then(writes.into_ops())
            .or_else(reads);
        let resp = self
            .call("txn", Retry::Guarded, |mut kv| {
                let request = request.clone();
                async move { kv.txn(request).await }
            })
            .await?;
        if resp.succeeded() {
            return resp
                .header()
                .map(|h| TxnOutcome::Committed(revision(h.revision())))
                .ok_or_else(|| {
                    StoreError::Backend("etcd txn: committed without a revision".into())
                });
        }
        let mut seen: BTreeMap<String, Option<Revision>> = BTreeMap::new();
        for (key, op) in compared.into_iter().zip(resp.op_responses()) {
            let TxnOpResponse::Get(get) = op else {
                return Err(StoreError::Backend(
                    "etcd txn: unexpected response in the else branch".into(),
                ));
            };
            let current = get.kvs().first().map(|kv| revision(kv.mod_revision()));
            seen.insert(key, current);
        }
        failed_compare(&compares, &seen)
            .map(TxnOutcome::Conflict)
            .ok_or_else(|| {
                StoreError::Backend(
                    "etcd txn: compares failed, yet each holds in the same snapshot".into(),
                )
            })
    }
}

impl EtcdStore {
    async fn get_impl(&self, via: Via, key: &str) -> Result<Option<Versioned>, StoreError> {
        let options = (via == Via::Replica).then(|| GetOptions::new().with_serializable());
        let mut resp = self
            .call_via(via, "get", Retry::Transient, |mut kv| {
                let options = options.clone();
                async move { kv.get(key, options).await }
            })
            .await?;
        Ok(resp.take_kvs().into_iter().next().map(|kv| {
            let mod_revision = revision(kv.mod_revision());
            let (_, value) = kv.into_key_value();
            Versioned {
                value,
                mod_revision,
            }
        }))
    }

    async fn count_impl(&self, via: Via, start: &str, end: &str) -> Result<u64, StoreError> {
        if empty_range(start, end) {
            return Ok(0);
        }
        let mut options = GetOptions::new().with_range(end).with_count_only();
        if via == Via::Replica {
            options = options.with_serializable();
        }
        let resp = self
            .call_via(via, "count", Retry::Transient, |mut kv| {
                let options = options.clone();
                async move { kv.get(start, Some(options)).await }
            })
            .await?;
        Ok(u64::try_from(resp.count()).unwrap_or(0))
    }

    /// Puts `key` under a fresh lease of `ttl`, then renews the lease every
    /// third of it until the store is dropped; a lease lost (expired during an
    /// outage) is granted again and the key written again.
    async fn hold_alive(
        client: Client,
        prefix: Vec<u8>,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
        first: Option<tokio::sync::oneshot::Sender<Result<(), StoreError>>>,
    ) {
        let mut first = first;
        let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let every = (ttl / 3).max(Duration::from_millis(200));
        let mut backoff = FIRST_BACKOFF;
        loop {
            let held = async {
                let mut lease = client.lease_client();
                let mut kv = KvClientPrefix::new(client.kv_client(), prefix.clone());
                let id = timeout(ttl, lease.grant(secs, None))
                    .await
                    .map_err(|_| StoreError::Unavailable("etcd lease grant: no answer".into()))?
                    .map_err(|e| StoreError::Unavailable(format!("etcd lease grant: {e}")))?
                    .id();
                timeout(
                    ttl,
                    kv.put(
                        key.clone(),
                        value.clone(),
                        Some(PutOptions::new().with_lease(id)),
                    ),
                )
                .await
                .map_err(|_| StoreError::Unavailable("etcd put: no answer".into()))?
                .map_err(|e| StoreError::Unavailable(format!("etcd put: {e}")))?;
                let (mut keeper, mut stream) = lease
                    .keep_alive(id)
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("etcd keep-alive: {e}")))?;
                Ok::<_, StoreError>((keeper.id(), async move {
                    loop {
                        sleep(every).await;
                        if keeper.keep_alive().await.is_err() {
                            return;
                        }
                        match timeout(ttl, stream.message()).await {
                            // TTL 0: the lease expired meanwhile; start over.
                            Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                            _ => return,
                        }
                    }
                }))
            }
            .await;
            match held {
                Ok((_, renew)) => {
                    if let Some(tx) = first.take() {
                        let _ = tx.send(Ok(()));
                    }
                    backoff = FIRST_BACKOFF;
                    renew.await;
                }
                Err(e) => {
                    if let Some(tx) = first.take() {
                        let _ = tx.send(Err(e));
                    }
                    sleep(backoff).await;
                    backoff = (backoff * 2).min(every);
                }
            }
        }
    }
}

impl Store for EtcdStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(self.get_impl(Via::Leader, key))
    }

    fn range<'a>(&'a self, start: &'a str, end: &'a str, limit: usize) -> RangeFuture<'a> {
        Box::pin(self.range_impl(Via::Leader, start, end, limit))
    }

    fn txn(&self, txn: Txn) -> StoreFuture<'_, TxnOutcome> {
        Box::pin(self.txn_impl(txn))
    }

    fn count<'a>(&'a self, start: &'a str, end: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(self.count_impl(Via::Leader, start, end))
    }

    fn get_relaxed<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(self.get_impl(Via::Replica, key))
    }

    fn range_relaxed<'a>(&'a self, start: &'a str, end: &'a str, limit: usize) -> RangeFuture<'a> {
        Box::pin(self.range_impl(Via::Replica, start, end, limit))
    }

    fn count_relaxed<'a>(&'a self, start: &'a str, end: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(self.count_impl(Via::Replica, start, end))
    }

    fn put_alive<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(Self::hold_alive(
                self.client.clone(),
                self.prefix.clone(),
                key.to_string(),
                value,
                ttl,
                Some(tx),
            ));
            self.keepers
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(task.abort_handle());
            // The keeper goes on trying in the background whatever the first try says.
            match timeout(self.timeout.max(ttl), rx).await {
                Ok(Ok(r)) => r,
                _ => Err(StoreError::Unavailable(format!(
                    "etcd: liveness key {key} not written within {:?}; retrying in the background",
                    self.timeout.max(ttl)
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> Op {
        Op::Put(k.into(), k.as_bytes().to_vec())
    }

    #[test]
    fn later_ops_override_earlier_ones() {
        let w = Writes::from_ops(vec![
            put("a"),
            Op::Delete("a".into()),
            Op::Delete("b".into()),
            put("b"),
            put("c"),
            put("c"),
        ]);
        assert_eq!(w.puts.keys().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(w.deletes, [("a".to_string(), "a\0".to_string())]);
    }

    #[test]
    fn a_put_inside_a_deleted_prefix_splits_the_range() {
        let w = Writes::from_ops(vec![
            put("p/0"),
            Op::DeletePrefix("p/".into()),
            put("p/5"),
            put("q"),
        ]);
        assert_eq!(w.puts.keys().collect::<Vec<_>>(), ["p/5", "q"]);
        assert_eq!(
            w.deletes,
            [
                ("p/".to_string(), "p/5".to_string()),
                ("p/5\0".to_string(), "p0".to_string())
            ]
        );
    }

    #[test]
    fn the_first_failing_compare_is_reported() {
        let seen = BTreeMap::from([("a".to_string(), Some(3)), ("b".to_string(), None)]);
        let ok = [
            Compare::ModRevision("a".into(), 3),
            Compare::Absent("b".into()),
        ];
        assert_eq!(failed_compare(&ok, &seen), None);
        let bad = [
            Compare::ModRevision("a".into(), 3),
            Compare::Absent("a".into()),
            Compare::ModRevision("b".into(), 1),
        ];
        assert_eq!(failed_compare(&bad, &seen), Some("a".into()));
    }
}

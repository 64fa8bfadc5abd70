//! The allocator: turns requests into compare-and-swap transactions on a [`Store`].
//!
//! The store is the only source of truth. In memory there are just the pool
//! indexes (which job subnets and isolation IDs are taken, loaded from the store
//! on first use and refreshed after a conflict) and the set of claims that
//! in-flight requests are about to write, so concurrent requests pick different
//! candidates instead of colliding and retrying.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::Pool;
use crate::error::IpamError;
use crate::keys;
use crate::layout::SubnetLayout;
use crate::model::{
    Attachment, AttachmentKey, AttachmentState, Family, Gang, GangRequest, Isolation, JobNetwork,
    RailAddresses, RailSelection, RailSubnet, RankAddresses, RecordWrite, ReserveRequest,
    SweepReport,
};
use crate::store::{
    key_after, prefix_end, Compare, Op, Revision, Store, Txn, TxnOutcome, Versioned,
};

/// Attempts before a request gives up with [`IpamError::Contention`].
const MAX_ATTEMPTS: usize = 64;
/// Most entries one sweep looks at per index.
const SWEEP_BATCH: usize = 10_000;
/// Input size limits.
const MAX_NAME: usize = 253;
const MAX_CONTAINER_ID: usize = 256;
const MAX_IFNAME: usize = 64;
const MAX_RECORDS: usize = 16;
const MAX_RECORD_KEY: usize = 512;
const MAX_WORLD_SIZE: u32 = 1 << 20;

/// Node scope of the embedded (single-node) store.
pub const LOCAL_NODE: &str = "local";
/// Addresses per block: unranked addresses of a node come from blocks it
/// claimed, so nodes of one job do not contend for the same next-free address.
pub const BLOCK_SIZE: u64 = 16;

/// A job as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobRecord {
    /// The job's isolation IDs: one for the whole job, or one per rail in
    /// pools whose IDs are per rail (see [`Pool::isolation_ids_per_job`]).
    #[serde(default)]
    isolation_ids: Vec<u32>,
    subnets: Vec<StoredSubnet>,
    world_size: u32,
    draining_since_ms: Option<u64>,
    created_ms: u64,
}

/// One job subnet as stored: the network and its index in the pool's family plan.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct StoredSubnet {
    rail: u16,
    family: Family,
    index: u64,
    net: ipnet::IpNet,
}

/// An attachment as stored, with the address keys it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredAttachment {
    #[serde(flatten)]
    att: Attachment,
    addr_keys: Vec<String>,
}

/// Who holds an address.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    #[serde(default)]
    node: String,
    key: AttachmentKey,
    rank: Option<u32>,
}

/// Taken and in-flight values of one index space (job subnets of a family, isolation IDs).
#[derive(Debug, Default)]
struct TakenSet {
    taken: BTreeSet<u64>,
    inflight: HashSet<u64>,
    cursor: u64,
}

impl TakenSet {
    /// Claims the first free value at or after the cursor (wrapping) in `lo..=hi` that `ok` accepts.
    fn pick(&mut self, lo: u64, hi: u64, ok: impl Fn(u64) -> bool) -> Option<u64> {
        let total = hi.checked_sub(lo)?.saturating_add(1);
        if (self.taken.len() + self.inflight.len()) as u64 >= total {
            return None;
        }
        let mut v = self.cursor.clamp(lo, hi);
        for _ in 0..total {
            if !self.taken.contains(&v) && !self.inflight.contains(&v) && ok(v) {
                self.cursor = if v == hi { lo } else { v + 1 };
                self.inflight.insert(v);
                return Some(v);
            }
            v = if v == hi { lo } else { v + 1 };
        }
        None
    }
}

/// Which job subnets and isolation IDs of a pool are taken.
#[derive(Debug, Default)]
struct PoolIndex {
    loaded: bool,
    /// One per family plan, in plan order.
    subnets: Vec<TakenSet>,
    isolation: TakenSet,
}

struct PoolRt {
    pool: Pool,
    index: Mutex<PoolIndex>,
}

/// Usage of a pool, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUsage {
    /// Pool name.
    pub pool: String,
    /// Per family: (job subnets in use, job subnets in total).
    pub subnets: Vec<(Family, u64, u64)>,
    /// Isolation IDs (in use, total); None for mode `none`.
    pub isolation_ids: Option<(u64, u64)>,
}

/// The job-scoped IPAM over a store. Cheap to share behind an `Arc`.
pub struct Ipam<S: Store> {
    store: S,
    /// The node whose attachments this allocator writes (scope of node keys).
    node: String,
    pools: HashMap<String, PoolRt>,
    clock: Arc<dyn Clock>,
    /// Address keys that in-flight requests are about to claim.
    inflight_addrs: Mutex<HashSet<String>>,
    /// Per-job creation gates (job key -> lock), present only while a job is being created.
    creating: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Job records with the revision they were read or written at. A reserve
    /// uses them without a read: its transaction compares the revision, so a
    /// stale entry costs one conflict and a reload, never a wrong answer.
    jobs: Mutex<HashMap<String, (JobRecord, Revision)>>,
    /// Reservations this process made and has not committed: commit writes
    /// them without reading them back (its compare catches any change).
    reserved: Mutex<HashMap<AttachmentKey, (StoredAttachment, Revision)>>,
}

/// Most job records [`Ipam`] keeps in memory (a cache: cleared when full).
const JOB_CACHE_MAX: usize = 4096;
/// Most uncommitted reservations remembered for commit (cleared when full).
const RESERVED_CACHE_MAX: usize = 65_536;

/// What one attempt of a request decided.
enum Step<T> {
    Done(T),
    Retry,
}

/// Claims made in memory by one attempt; undone on drop unless committed.
struct Claims<'a> {
    pool: &'a PoolRt,
    inflight_addrs: &'a Mutex<HashSet<String>>,
    subnets: Vec<(usize, u64)>,
    isolation: Vec<u64>,
    addrs: Vec<String>,
    /// Held while this attempt creates a job, so concurrent first reservations wait for it.
    gate: Option<Gate<'a>>,
    committed: bool,
}

/// Exclusive right to create one job; released on drop.
struct Gate<'a> {
    map: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = lock(self.map);
        // Only the map's own reference left: nobody waits, forget the gate.
        if map
            .get(&self.key)
            .is_some_and(|a| Arc::strong_count(a) == 1)
        {
            map.remove(&self.key);
        }
    }
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        {
            let mut idx = lock(&self.pool.index);
            for &(plan, v) in &self.subnets {
                if let Some(set) = idx.subnets.get_mut(plan) {
                    set.inflight.remove(&v);
                    if self.committed {
                        set.taken.insert(v);
                    }
                }
            }
            for &v in &self.isolation {
                idx.isolation.inflight.remove(&v);
                if self.committed {
                    idx.isolation.taken.insert(v);
                }
            }
        }
        let mut addrs = lock(self.inflight_addrs);
        for a in &self.addrs {
            addrs.remove(a);
        }
    }
}

/// Locks a mutex, recovering from poisoning (the guarded data stays consistent: every
/// critical section is a few set operations that cannot panic halfway).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn decode<T: DeserializeOwned>(key: &str, v: &Versioned) -> Result<T, IpamError> {
    serde_json::from_slice(&v.value).map_err(|e| IpamError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Our records are plain structs of strings and numbers: serialization cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn check_len(what: &str, s: &str, max: usize) -> Result<(), IpamError> {
    if s.is_empty() || s.len() > max {
        return Err(IpamError::InvalidRequest(format!(
            "{what} must have 1-{max} bytes"
        )));
    }
    Ok(())
}

mod migrate;
mod nodes;
mod preflight;
mod release;
mod reserve;
mod views;

pub use preflight::PreflightId;

impl<S: Store> Ipam<S> {
    /// An allocator over `store` serving `pools`, with `clock` for deadlines.
    pub fn new(store: S, pools: Vec<Pool>, clock: Arc<dyn Clock>) -> Self {
        let pools = pools
            .into_iter()
            .map(|p| {
                let index = PoolIndex {
                    loaded: false,
                    subnets: p.families.iter().map(|_| TakenSet::default()).collect(),
                    isolation: TakenSet::default(),
                };
                (
                    p.name().to_string(),
                    PoolRt {
                        pool: p,
                        index: Mutex::new(index),
                    },
                )
            })
            .collect();
        Self {
            store,
            node: LOCAL_NODE.to_string(),
            pools,
            clock,
            inflight_addrs: Mutex::new(HashSet::new()),
            creating: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            reserved: Mutex::new(HashMap::new()),
        }
    }

    /// The same allocator writing as `node`: in a cluster store every node's
    /// jobnetd uses its own, stable, cluster-unique node name.
    pub fn on_node(mut self, node: impl Into<String>) -> Self {
        self.node = node.into();
        self
    }

    /// The node this allocator writes as.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The configured pools.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values().map(|p| &p.pool)
    }

    /// A configured pool by name.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.get(name).map(|p| &p.pool)
    }

    fn rt(&self, name: &str) -> Result<&PoolRt, IpamError> {
        self.pools
            .get(name)
            .ok_or_else(|| IpamError::UnknownPool(name.to_string()))
    }

    /// Waits for the right to create the job with this key.
    async fn gate(&self, jkey: &str) -> Gate<'_> {
        let m = Arc::clone(lock(&self.creating).entry(jkey.to_string()).or_default());
        let guard = m.lock_owned().await;
        Gate {
            map: &self.creating,
            key: jkey.to_string(),
            guard: Some(guard),
        }
    }

    fn claims<'a>(&'a self, rt: &'a PoolRt) -> Claims<'a> {
        Claims {
            pool: rt,
            inflight_addrs: &self.inflight_addrs,
            subnets: Vec::new(),
            isolation: Vec::new(),
            addrs: Vec::new(),
            gate: None,
            committed: false,
        }
    }

    fn cached_job(&self, jkey: &str) -> Option<(JobRecord, Revision)> {
        lock(&self.jobs).get(jkey).cloned()
    }

    fn put_cached_job(&self, jkey: &str, rec: &JobRecord, rev: Revision) {
        let mut jobs = lock(&self.jobs);
        if jobs.len() >= JOB_CACHE_MAX && !jobs.contains_key(jkey) {
            jobs.clear();
        }
        jobs.insert(jkey.to_string(), (rec.clone(), rev));
    }

    /// Drops a job's cached record (after this process changed or deleted it).
    fn forget_job(&self, jkey: &str) {
        lock(&self.jobs).remove(jkey);
    }

    fn remember_reservation(&self, key: &AttachmentKey, st: &StoredAttachment, rev: Revision) {
        let mut r = lock(&self.reserved);
        if r.len() >= RESERVED_CACHE_MAX {
            r.clear();
        }
        r.insert(key.clone(), (st.clone(), rev));
    }

    fn take_reservation(&self, key: &AttachmentKey) -> Option<(StoredAttachment, Revision)> {
        lock(&self.reserved).remove(key)
    }

    /// After a conflict on a pool-wide key the in-memory index may be stale: reload it.
    fn on_conflict(&self, rt: &PoolRt, key: &str) {
        if key.starts_with(keys::JOB_PREFIX) {
            self.forget_job(key);
        }
        if key.starts_with(keys::SUBNET_INDEX_PREFIX) || key.starts_with(keys::ID_INDEX_PREFIX) {
            lock(&rt.index).loaded = false;
        }
    }

    /// Loads the pool's taken subnets and isolation IDs from the store if not loaded.
    async fn load_index(&self, rt: &PoolRt) -> Result<(), IpamError> {
        if lock(&rt.index).loaded {
            return Ok(());
        }
        let name = rt.pool.name();
        let mut subnets = Vec::new();
        for plan in &rt.pool.families {
            let p = keys::subnets_prefix(name, plan.family);
            // A replica's view is enough: a stale index only costs a conflict.
            let rows = self
                .store
                .range_relaxed(&p, &prefix_end(&p), usize::MAX)
                .await?;
            subnets.push(
                rows.iter()
                    .filter_map(|(k, _)| keys::parse_index(k))
                    .collect::<BTreeSet<u64>>(),
            );
        }
        let p = keys::isolation_prefix(name);
        let ids: BTreeSet<u64> = self
            .store
            .range_relaxed(&p, &prefix_end(&p), usize::MAX)
            .await?
            .iter()
            .filter_map(|(k, _)| keys::parse_index(k))
            .collect();
        let mut idx = lock(&rt.index);
        if idx.loaded {
            // A concurrent loader was first; its snapshot is at least as new as ours.
            return Ok(());
        }
        for (set, taken) in idx.subnets.iter_mut().zip(subnets) {
            set.taken = taken;
        }
        idx.isolation.taken = ids;
        idx.loaded = true;
        Ok(())
    }
}

fn rail_name(pool: &Pool, rail: u16) -> String {
    pool.rail_names()
        .get(usize::from(rail))
        .cloned()
        .unwrap_or_else(|| format!("rail{rail}"))
}

fn layout_of(pool: &Pool, s: &StoredSubnet) -> SubnetLayout {
    let excluded = pool
        .plan(s.family)
        .map(|p| p.excluded.as_slice())
        .unwrap_or(&[]);
    SubnetLayout::new(s.net, pool.config().gateway, excluded)
}

/// The job's isolation on `rail` (the job's single ID when IDs are not per rail).
fn isolation_on(pool: &Pool, job: &JobRecord, rail: u16) -> Option<Isolation> {
    let id = match job.isolation_ids.as_slice() {
        [] => None,
        [one] => Some(*one),
        per_rail => per_rail.get(usize::from(rail)).copied(),
    };
    id.map(|id| Isolation {
        mode: pool.isolation_mode(),
        id,
    })
}

/// The job's isolation on its first rail (what a one-line summary shows).
fn isolation_of(pool: &Pool, job: &JobRecord) -> Option<Isolation> {
    job.isolation_ids.first().map(|&id| Isolation {
        mode: pool.isolation_mode(),
        id,
    })
}

/// The job's subnets grouped by the selected rails, IPv4 first.
fn rails_of(job: &JobRecord, sel: RailSelection) -> Vec<(u16, Vec<StoredSubnet>)> {
    let mut by_rail: std::collections::BTreeMap<u16, Vec<StoredSubnet>> = Default::default();
    for s in &job.subnets {
        if sel == RailSelection::All || sel == RailSelection::One(s.rail) {
            by_rail.entry(s.rail).or_default().push(*s);
        }
    }
    for v in by_rail.values_mut() {
        v.sort_by_key(|s| s.family);
    }
    by_rail.into_iter().collect()
}

//! The allocator: turns requests into compare-and-swap transactions on a [`Store`].
//!
//! The store is the only source of truth. In memory there are just the pool
//! indexes (which job subnets and isolation IDs are taken, loaded from the store
//! on first use and refreshed after a conflict) and the set of claims that
//! in-flight requests are about to write, so concurrent requests pick different
//! candidates instead of colliding and retrying.

use std::collections::{BTreeSet, HashMap, HashSet};
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
use crate::store::{prefix_end, Compare, Op, Store, Txn, TxnOutcome, Versioned};

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

/// A job as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobRecord {
    isolation_id: Option<u32>,
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
    pools: HashMap<String, PoolRt>,
    clock: Arc<dyn Clock>,
    /// Address keys that in-flight requests are about to claim.
    inflight_addrs: Mutex<HashSet<String>>,
    /// Per-job creation gates (job key -> lock), present only while a job is being created.
    creating: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

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
    isolation: Option<u64>,
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
            if let Some(v) = self.isolation {
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
            pools,
            clock,
            inflight_addrs: Mutex::new(HashSet::new()),
            creating: Mutex::new(HashMap::new()),
        }
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

    /// Reserves addresses for one attachment (creating the job network on first use).
    /// Idempotent per `req.key`: a repeat returns the stored attachment unchanged.
    pub async fn reserve(&self, req: ReserveRequest) -> Result<Attachment, IpamError> {
        let rt = self.rt(&req.pool)?;
        check_len("job", &req.job, MAX_NAME)?;
        check_len("container id", &req.key.container_id, MAX_CONTAINER_ID)?;
        check_len("ifname", &req.key.ifname, MAX_IFNAME)?;
        if req.records.len() > MAX_RECORDS {
            return Err(IpamError::InvalidRequest(format!(
                "at most {MAX_RECORDS} records"
            )));
        }
        for r in &req.records {
            check_len("record key", &r.key, MAX_RECORD_KEY)?;
        }
        if let RailSelection::One(rail) = req.rails {
            if usize::from(rail) >= rt.pool.rail_names().len() {
                return Err(IpamError::UnknownRail {
                    pool: req.pool.clone(),
                    rail,
                });
            }
        }
        for _ in 0..MAX_ATTEMPTS {
            if let Step::Done(a) = self.try_reserve(rt, &req).await? {
                return Ok(a);
            }
        }
        Err(IpamError::Contention)
    }

    async fn try_reserve(
        &self,
        rt: &PoolRt,
        req: &ReserveRequest,
    ) -> Result<Step<Attachment>, IpamError> {
        let pool = &rt.pool;
        let akey = keys::attachment(&req.key);
        if let Some(v) = self.store.get(&akey).await? {
            let st: StoredAttachment = decode(&akey, &v)?;
            if st.att.pool == req.pool && st.att.job == req.job {
                return Ok(Step::Done(st.att));
            }
            return Err(IpamError::KeyInUse {
                key: req.key.clone(),
                pool: st.att.pool,
                job: st.att.job,
            });
        }
        for r in req.records.iter().filter(|r| r.if_absent) {
            if self.store.get(&keys::record(&r.key)).await?.is_some() {
                return Err(IpamError::RecordExists(r.key.clone()));
            }
        }
        let now = self.clock.now_ms();
        let mut claims = self.claims(rt);
        let mut txn = Txn::default();
        let (job, new_job) = self
            .job_for_write(rt, &req.job, now, &mut claims, &mut txn)
            .await?;
        if job.draining_since_ms.is_some() && !new_job {
            let mut undrained = job.clone();
            undrained.draining_since_ms = None;
            txn.ops
                .push(Op::Put(keys::job(&req.pool, &req.job), encode(&undrained)));
            txn.ops
                .push(Op::Delete(keys::draining(&req.pool, &req.job)));
        }
        if let (Some(rank), true) = (req.rank, job.world_size > 0) {
            if rank >= job.world_size {
                return Err(IpamError::RankOutOfRange {
                    rank,
                    limit: u64::from(job.world_size),
                });
            }
        }
        let holder = encode(&Holder {
            key: req.key.clone(),
            rank: req.rank,
        });
        let mut rails = Vec::new();
        let mut addr_keys = Vec::new();
        for (rail, subnets) in rails_of(&job, req.rails) {
            let mut ra = RailAddresses {
                rail,
                rail_name: rail_name(pool, rail),
                ips: Vec::new(),
                gateways: Vec::new(),
            };
            for s in subnets {
                let layout = layout_of(pool, &s);
                let offset = match req.rank {
                    Some(rank) => {
                        match self
                            .rank_offset(pool, &req.job, &s, &layout, rank, new_job)
                            .await
                        {
                            // Our own concurrent duplicate won: the retry finds the attachment.
                            Err(IpamError::RankInUse { holder, .. }) if holder == req.key => {
                                return Ok(Step::Retry)
                            }
                            other => other?,
                        }
                    }
                    None => {
                        self.next_free(pool, &req.job, &job, &s, &layout, new_job, &mut claims)
                            .await?
                    }
                };
                let k = keys::addr(pool.name(), &req.job, rail, s.family, offset);
                txn.compares.push(Compare::Absent(k.clone()));
                txn.ops.push(Op::Put(k.clone(), holder.clone()));
                addr_keys.push(k);
                ra.ips.push(layout.host(offset));
                ra.gateways.extend(layout.gateway());
            }
            rails.push(ra);
        }
        let expires_at_ms = now.saturating_add(pool.timeout_ms());
        let att = Attachment {
            key: req.key.clone(),
            pool: req.pool.clone(),
            job: req.job.clone(),
            rank: req.rank,
            isolation: isolation_of(pool, &job),
            rails,
            state: AttachmentState::Reserved { expires_at_ms },
            records: req.records.iter().map(|r| r.key.clone()).collect(),
            created_ms: now,
        };
        for r in &req.records {
            let rk = keys::record(&r.key);
            if r.if_absent {
                txn.compares.push(Compare::Absent(rk.clone()));
            }
            txn.ops.push(Op::Put(rk, encode(&r.value)));
        }
        txn.compares.push(Compare::Absent(akey.clone()));
        let stored = StoredAttachment { att, addr_keys };
        txn.ops.push(Op::Put(akey, encode(&stored)));
        txn.ops
            .push(Op::Put(keys::pending(expires_at_ms, &req.key), Vec::new()));
        txn.ops.push(Op::Put(
            keys::member(&req.pool, &req.job, &req.key),
            Vec::new(),
        ));
        match self.store.txn(txn).await? {
            TxnOutcome::Committed(_) => {
                claims.committed = true;
                Ok(Step::Done(stored.att))
            }
            TxnOutcome::Conflict(k) => {
                self.on_conflict(rt, &k);
                Ok(Step::Retry)
            }
        }
    }

    /// Reads the job for a write, or carves a new one; adds the matching compares and ops.
    async fn job_for_write<'a>(
        &'a self,
        rt: &'a PoolRt,
        job: &str,
        now: u64,
        claims: &mut Claims<'a>,
        txn: &mut Txn,
    ) -> Result<(JobRecord, bool), IpamError> {
        let jkey = keys::job(rt.pool.name(), job);
        for gated in [false, true] {
            if gated {
                claims.gate = Some(self.gate(&jkey).await);
            }
            if let Some(v) = self.store.get(&jkey).await? {
                let rec: JobRecord = decode(&jkey, &v)?;
                txn.compares
                    .push(Compare::ModRevision(jkey, v.mod_revision));
                return Ok((rec, false));
            }
        }
        let rec = self.carve(rt, now, claims).await?;
        let name = encode(&job);
        for s in &rec.subnets {
            let k = keys::subnet(rt.pool.name(), s.family, s.index);
            txn.compares.push(Compare::Absent(k.clone()));
            txn.ops.push(Op::Put(k, name.clone()));
        }
        if let Some(id) = rec.isolation_id {
            let k = keys::isolation(rt.pool.name(), id);
            txn.compares.push(Compare::Absent(k.clone()));
            txn.ops.push(Op::Put(k, name.clone()));
        }
        txn.compares.push(Compare::Absent(jkey.clone()));
        txn.ops.push(Op::Put(jkey, encode(&rec)));
        Ok((rec, true))
    }

    /// Picks subnets (one per rail and family) and an isolation ID for a new job.
    async fn carve(
        &self,
        rt: &PoolRt,
        now: u64,
        claims: &mut Claims<'_>,
    ) -> Result<JobRecord, IpamError> {
        self.load_index(rt).await?;
        let pool = &rt.pool;
        let rails = pool.rail_names().len();
        let mut idx = lock(&rt.index);
        let mut subnets = Vec::with_capacity(rails * pool.families.len());
        for (pi, plan) in pool.families.iter().enumerate() {
            for rail in 0..rails {
                let set = idx
                    .subnets
                    .get_mut(pi)
                    .ok_or_else(|| IpamError::UnknownPool(pool.name().to_string()))?;
                let total = plan.total();
                let index = set
                    .pick(0, total.saturating_sub(1), |i| {
                        plan.subnet(i).is_some_and(|n| !plan.fully_excluded(&n))
                    })
                    .filter(|_| total > 0)
                    .ok_or_else(|| IpamError::PoolExhausted {
                        pool: pool.name().to_string(),
                        family: plan.family,
                    })?;
                claims.subnets.push((pi, index));
                let net = plan.subnet(index).ok_or_else(|| IpamError::PoolExhausted {
                    pool: pool.name().to_string(),
                    family: plan.family,
                })?;
                subnets.push(StoredSubnet {
                    rail: u16::try_from(rail).unwrap_or(u16::MAX),
                    family: plan.family,
                    index,
                    net,
                });
            }
        }
        let isolation_id = match pool.isolation_range() {
            None => None,
            Some((first, last)) => {
                let id = idx
                    .isolation
                    .pick(u64::from(first), u64::from(last), |_| true)
                    .ok_or_else(|| IpamError::IsolationExhausted(pool.name().to_string()))?;
                claims.isolation = Some(id);
                Some(u32::try_from(id).unwrap_or(u32::MAX))
            }
        };
        Ok(JobRecord {
            isolation_id,
            subnets,
            world_size: 0,
            draining_since_ms: None,
            created_ms: now,
        })
    }

    /// The offset of a rank's address; fails if another attachment holds it.
    async fn rank_offset(
        &self,
        pool: &Pool,
        job: &str,
        s: &StoredSubnet,
        layout: &SubnetLayout,
        rank: u32,
        new_job: bool,
    ) -> Result<u64, IpamError> {
        let offset = layout
            .nth_allowed(u64::from(rank))
            .ok_or(IpamError::RankOutOfRange {
                rank,
                limit: layout.capacity(),
            })?;
        if !new_job {
            let k = keys::addr(pool.name(), job, s.rail, s.family, offset);
            if let Some(v) = self.store.get(&k).await? {
                let h: Holder = decode(&k, &v)?;
                return Err(IpamError::RankInUse {
                    rank,
                    holder: h.key,
                });
            }
        }
        Ok(offset)
    }

    /// The highest free allowed offset above the job's rank range.
    #[allow(clippy::too_many_arguments)]
    async fn next_free(
        &self,
        pool: &Pool,
        job_name: &str,
        job: &JobRecord,
        s: &StoredSubnet,
        layout: &SubnetLayout,
        new_job: bool,
        claims: &mut Claims<'_>,
    ) -> Result<u64, IpamError> {
        let exhausted = || IpamError::SubnetExhausted {
            pool: pool.name().to_string(),
            job: job_name.to_string(),
            rail: s.rail,
            family: s.family,
        };
        let floor = match job.world_size {
            0 => None,
            n => Some(layout.nth_allowed(u64::from(n) - 1).ok_or_else(exhausted)?),
        };
        let taken: HashSet<u64> = if new_job {
            HashSet::new()
        } else {
            let prefix = keys::addr_prefix(pool.name(), job_name, s.rail, s.family);
            self.store
                .range(&prefix, &prefix_end(&prefix), usize::MAX)
                .await?
                .iter()
                .filter_map(|(k, _)| keys::parse_addr_offset(k))
                .collect()
        };
        let mut cand = layout.top();
        let mut inflight = lock(&self.inflight_addrs);
        while let Some(c) = cand {
            if floor.is_some_and(|f| c <= f) {
                break;
            }
            let k = keys::addr(pool.name(), job_name, s.rail, s.family, c);
            if !taken.contains(&c) && inflight.insert(k.clone()) {
                claims.addrs.push(k);
                return Ok(c);
            }
            cand = c.checked_sub(1).and_then(|p| layout.prev_allowed(p));
        }
        Err(exhausted())
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
            isolation: None,
            addrs: Vec::new(),
            gate: None,
            committed: false,
        }
    }

    /// After a conflict on a pool-wide key the in-memory index may be stale: reload it.
    fn on_conflict(&self, rt: &PoolRt, key: &str) {
        if key.starts_with("s/") || key.starts_with("i/") {
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
            let rows = self.store.range(&p, &prefix_end(&p), usize::MAX).await?;
            subnets.push(
                rows.iter()
                    .filter_map(|(k, _)| keys::parse_index(k))
                    .collect::<BTreeSet<u64>>(),
            );
        }
        let p = keys::isolation_prefix(name);
        let ids: BTreeSet<u64> = self
            .store
            .range(&p, &prefix_end(&p), usize::MAX)
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

    /// Commits a reservation. Idempotent; [`IpamError::NotFound`] if it was released or expired.
    pub async fn commit(&self, key: &AttachmentKey) -> Result<Attachment, IpamError> {
        let akey = keys::attachment(key);
        for _ in 0..MAX_ATTEMPTS {
            let v = self
                .store
                .get(&akey)
                .await?
                .ok_or_else(|| IpamError::NotFound(key.clone()))?;
            let mut st: StoredAttachment = decode(&akey, &v)?;
            let AttachmentState::Reserved { expires_at_ms } = st.att.state else {
                return Ok(st.att);
            };
            st.att.state = AttachmentState::Committed;
            let txn = Txn {
                compares: vec![Compare::ModRevision(akey.clone(), v.mod_revision)],
                ops: vec![
                    Op::Put(akey.clone(), encode(&st)),
                    Op::Delete(keys::pending(expires_at_ms, key)),
                ],
            };
            if let TxnOutcome::Committed(_) = self.store.txn(txn).await? {
                return Ok(st.att);
            }
        }
        Err(IpamError::Contention)
    }

    /// Releases an attachment (reserved or committed) and the records it owns.
    /// Returns what was released; `None` if there was nothing (idempotent).
    pub async fn release(&self, key: &AttachmentKey) -> Result<Option<Attachment>, IpamError> {
        self.release_if(key, |_| true).await
    }

    async fn release_if(
        &self,
        key: &AttachmentKey,
        cond: impl Fn(&Attachment) -> bool,
    ) -> Result<Option<Attachment>, IpamError> {
        let akey = keys::attachment(key);
        for _ in 0..MAX_ATTEMPTS {
            let Some(v) = self.store.get(&akey).await? else {
                return Ok(None);
            };
            let st: StoredAttachment = decode(&akey, &v)?;
            if !cond(&st.att) {
                return Ok(None);
            }
            let mut ops = vec![
                Op::Delete(akey.clone()),
                Op::Delete(keys::member(&st.att.pool, &st.att.job, key)),
            ];
            if let AttachmentState::Reserved { expires_at_ms } = st.att.state {
                ops.push(Op::Delete(keys::pending(expires_at_ms, key)));
            }
            ops.extend(st.addr_keys.iter().cloned().map(Op::Delete));
            ops.extend(st.att.records.iter().map(|r| Op::Delete(keys::record(r))));
            let txn = Txn {
                compares: vec![Compare::ModRevision(akey.clone(), v.mod_revision)],
                ops,
            };
            if let TxnOutcome::Committed(_) = self.store.txn(txn).await? {
                if let Err(e) = self.after_leave(&st.att.pool, &st.att.job).await {
                    // The release itself is durable; a job left undrained is retried by the sweep.
                    tracing::warn!(pool = %st.att.pool, job = %st.att.job, error = %e, "marking job draining failed");
                }
                return Ok(Some(st.att));
            }
        }
        Err(IpamError::Contention)
    }

    /// Marks the job draining if it has no attachment left.
    async fn after_leave(&self, pool: &str, job: &str) -> Result<(), IpamError> {
        let jkey = keys::job(pool, job);
        let mp = keys::members_prefix(pool, job);
        for _ in 0..MAX_ATTEMPTS {
            if !self.store.range(&mp, &prefix_end(&mp), 1).await?.is_empty() {
                return Ok(());
            }
            let Some(v) = self.store.get(&jkey).await? else {
                return Ok(());
            };
            let mut rec: JobRecord = decode(&jkey, &v)?;
            if rec.draining_since_ms.is_some() {
                return Ok(());
            }
            rec.draining_since_ms = Some(self.clock.now_ms());
            let txn = Txn {
                compares: vec![Compare::ModRevision(jkey.clone(), v.mod_revision)],
                ops: vec![
                    Op::Put(jkey.clone(), encode(&rec)),
                    Op::Put(keys::draining(pool, job), Vec::new()),
                ],
            };
            if let TxnOutcome::Committed(_) = self.store.txn(txn).await? {
                return Ok(());
            }
        }
        Err(IpamError::Contention)
    }

    /// Sweeps with the injected clock's current time (see [`Ipam::expire`]).
    pub async fn sweep(&self) -> Result<SweepReport, IpamError> {
        self.expire(self.clock.now_ms()).await
    }

    /// Releases reservations whose deadline is <= `now_ms` and jobs that have been
    /// empty for their pool's grace period. The daemon calls this periodically.
    pub async fn expire(&self, now_ms: u64) -> Result<SweepReport, IpamError> {
        let mut report = SweepReport::default();
        let end = format!("{}{:016x}", keys::PENDING_PREFIX, now_ms.saturating_add(1));
        let due = self
            .store
            .range(keys::PENDING_PREFIX, &end, SWEEP_BATCH)
            .await?;
        for (k, _) in due {
            let Some((_, key)) = keys::parse_pending(&k) else {
                continue;
            };
            let expired = |a: &Attachment| matches!(a.state, AttachmentState::Reserved { expires_at_ms } if expires_at_ms <= now_ms);
            if self.release_if(&key, expired).await?.is_some() {
                report.expired_reservations += 1;
            }
        }
        let dp = keys::DRAINING_PREFIX;
        for (k, _) in self.store.range(dp, &prefix_end(dp), SWEEP_BATCH).await? {
            let Some((pool, job)) = keys::parse_draining(&k) else {
                continue;
            };
            let Ok(rt) = self.rt(&pool) else {
                continue;
            };
            if self.release_job(rt, &job, now_ms).await? {
                report.released_jobs += 1;
            }
        }
        Ok(report)
    }

    /// Deletes a draining job whose grace period is over; undrains it if it has members.
    async fn release_job(&self, rt: &PoolRt, job: &str, now_ms: u64) -> Result<bool, IpamError> {
        let pool = rt.pool.name();
        let jkey = keys::job(pool, job);
        let dkey = keys::draining(pool, job);
        let mp = keys::members_prefix(pool, job);
        for _ in 0..MAX_ATTEMPTS {
            let Some(v) = self.store.get(&jkey).await? else {
                self.store
                    .txn(Txn {
                        compares: vec![Compare::Absent(jkey.clone())],
                        ops: vec![Op::Delete(dkey.clone())],
                    })
                    .await?;
                return Ok(false);
            };
            let mut rec: JobRecord = decode(&jkey, &v)?;
            let Some(since) = rec.draining_since_ms else {
                return Ok(false);
            };
            let has_members = !self.store.range(&mp, &prefix_end(&mp), 1).await?.is_empty();
            let mut txn = Txn {
                compares: vec![Compare::ModRevision(jkey.clone(), v.mod_revision)],
                ops: vec![Op::Delete(dkey.clone())],
            };
            if has_members {
                rec.draining_since_ms = None;
                txn.ops.push(Op::Put(jkey.clone(), encode(&rec)));
            } else if since.saturating_add(rt.pool.grace_ms()) <= now_ms {
                txn.ops.push(Op::Delete(jkey.clone()));
                txn.ops
                    .push(Op::DeletePrefix(keys::job_addrs_prefix(pool, job)));
                for s in &rec.subnets {
                    txn.ops
                        .push(Op::Delete(keys::subnet(pool, s.family, s.index)));
                }
                if let Some(id) = rec.isolation_id {
                    txn.ops.push(Op::Delete(keys::isolation(pool, id)));
                }
            } else {
                return Ok(false);
            }
            if let TxnOutcome::Committed(_) = self.store.txn(txn).await? {
                if has_members {
                    return Ok(false);
                }
                let mut idx = lock(&rt.index);
                for s in &rec.subnets {
                    if let Some(pi) = rt.pool.families.iter().position(|p| p.family == s.family) {
                        if let Some(set) = idx.subnets.get_mut(pi) {
                            set.taken.remove(&s.index);
                        }
                    }
                }
                if let Some(id) = rec.isolation_id {
                    idx.isolation.taken.remove(&u64::from(id));
                }
                return Ok(true);
            }
        }
        Err(IpamError::Contention)
    }

    /// Reserves a whole job up front: subnets, isolation ID and the addresses of ranks
    /// `0..world_size`, all or nothing. Rank addresses are reserved by the job's world
    /// size (next-free allocations stay above it), so this is one small write.
    /// A gang job with no attachment drains like any empty job, grace counted from now.
    pub async fn gang_reserve(&self, req: GangRequest) -> Result<Gang, IpamError> {
        let rt = self.rt(&req.pool)?;
        check_len("job", &req.job, MAX_NAME)?;
        if req.world_size == 0 || req.world_size > MAX_WORLD_SIZE {
            return Err(IpamError::InvalidRequest(format!(
                "world size must be 1-{MAX_WORLD_SIZE}"
            )));
        }
        for _ in 0..MAX_ATTEMPTS {
            if let Step::Done(g) = self.try_gang(rt, &req).await? {
                return Ok(g);
            }
        }
        Err(IpamError::Contention)
    }

    async fn try_gang(&self, rt: &PoolRt, req: &GangRequest) -> Result<Step<Gang>, IpamError> {
        let pool = &rt.pool;
        let now = self.clock.now_ms();
        let mut claims = self.claims(rt);
        let mut txn = Txn::default();
        let (mut job, new_job) = self
            .job_for_write(rt, &req.job, now, &mut claims, &mut txn)
            .await?;
        if job.world_size >= req.world_size {
            return Ok(Step::Done(gang_view(pool, &req.job, &job, req.world_size)));
        }
        let last = u64::from(req.world_size - 1);
        for s in &job.subnets {
            let layout = layout_of(pool, s);
            let floor = layout.nth_allowed(last).ok_or(IpamError::SubnetExhausted {
                pool: req.pool.clone(),
                job: req.job.clone(),
                rail: s.rail,
                family: s.family,
            })?;
            if new_job {
                continue;
            }
            // Keys are ordered highest offset first: the tail of the range is the rank slots.
            let prefix = keys::addr_prefix(pool.name(), &req.job, s.rail, s.family);
            for (k, v) in self
                .store
                .range(&prefix, &prefix_end(&prefix), usize::MAX)
                .await?
            {
                let Some(off) = keys::parse_addr_offset(&k) else {
                    continue;
                };
                let h: Holder = decode(&k, &v)?;
                if off <= floor && h.rank.is_none() {
                    return Err(IpamError::GangConflict {
                        job: req.job.clone(),
                        world_size: req.world_size,
                        address: layout.addr(off),
                    });
                }
            }
        }
        job.world_size = req.world_size;
        let mp = keys::members_prefix(pool.name(), &req.job);
        let empty = new_job || self.store.range(&mp, &prefix_end(&mp), 1).await?.is_empty();
        if empty {
            job.draining_since_ms = Some(now);
            txn.ops
                .push(Op::Put(keys::draining(pool.name(), &req.job), Vec::new()));
        }
        let jkey = keys::job(pool.name(), &req.job);
        txn.ops
            .retain(|op| !matches!(op, Op::Put(k, _) if *k == jkey));
        txn.ops.push(Op::Put(jkey, encode(&job)));
        match self.store.txn(txn).await? {
            TxnOutcome::Committed(_) => {
                claims.committed = true;
                Ok(Step::Done(gang_view(pool, &req.job, &job, req.world_size)))
            }
            TxnOutcome::Conflict(k) => {
                self.on_conflict(rt, &k);
                Ok(Step::Retry)
            }
        }
    }

    /// One attachment.
    pub async fn attachment(&self, key: &AttachmentKey) -> Result<Option<Attachment>, IpamError> {
        let akey = keys::attachment(key);
        match self.store.get(&akey).await? {
            None => Ok(None),
            Some(v) => Ok(Some(decode::<StoredAttachment>(&akey, &v)?.att)),
        }
    }

    /// All attachments (at most `limit`), in key order.
    pub async fn attachments(&self, limit: usize) -> Result<Vec<Attachment>, IpamError> {
        let p = keys::ATTACHMENT_PREFIX;
        self.store
            .range(p, &prefix_end(p), limit)
            .await?
            .iter()
            .map(|(k, v)| decode::<StoredAttachment>(k, v).map(|s| s.att))
            .collect()
    }

    /// The attachments of one job.
    pub async fn job_attachments(
        &self,
        pool: &str,
        job: &str,
    ) -> Result<Vec<Attachment>, IpamError> {
        let mp = keys::members_prefix(pool, job);
        let mut out = Vec::new();
        for (k, _) in self.store.range(&mp, &prefix_end(&mp), usize::MAX).await? {
            let Some(key) = k.strip_prefix(&mp).and_then(keys::parse_att_tail) else {
                continue;
            };
            if let Some(a) = self.attachment(&key).await? {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// One job network.
    pub async fn job(&self, pool: &str, job: &str) -> Result<Option<JobNetwork>, IpamError> {
        let rt = self.rt(pool)?;
        let jkey = keys::job(pool, job);
        match self.store.get(&jkey).await? {
            None => Ok(None),
            Some(v) => Ok(Some(job_view(&rt.pool, job, &decode(&jkey, &v)?))),
        }
    }

    /// All job networks of a pool (or of every pool).
    pub async fn jobs(&self, pool: Option<&str>) -> Result<Vec<JobNetwork>, IpamError> {
        let prefix = match pool {
            Some(p) => keys::job_prefix_of_pool(p),
            None => keys::JOB_PREFIX.to_string(),
        };
        let mut out = Vec::new();
        for (k, v) in self
            .store
            .range(&prefix, &prefix_end(&prefix), usize::MAX)
            .await?
        {
            let Some((p, j)) = k
                .strip_prefix(keys::JOB_PREFIX)
                .and_then(|r| r.split_once('/'))
                .and_then(|(p, j)| Some((keys::unesc(p)?, keys::unesc(j)?)))
            else {
                continue;
            };
            let Ok(rt) = self.rt(&p) else {
                continue;
            };
            out.push(job_view(&rt.pool, &j, &decode(&k, &v)?));
        }
        Ok(out)
    }

    /// Writes daemon records in one durable transaction (all or nothing).
    pub async fn put_records(&self, writes: Vec<RecordWrite>) -> Result<(), IpamError> {
        let mut txn = Txn::default();
        for w in writes {
            check_len("record key", &w.key, MAX_RECORD_KEY)?;
            let k = keys::record(&w.key);
            if w.if_absent {
                txn.compares.push(Compare::Absent(k.clone()));
            }
            txn.ops.push(Op::Put(k, encode(&w.value)));
        }
        match self.store.txn(txn).await? {
            TxnOutcome::Committed(_) => Ok(()),
            TxnOutcome::Conflict(k) => Err(IpamError::RecordExists(
                k.strip_prefix(keys::RECORD_PREFIX)
                    .and_then(keys::unesc)
                    .unwrap_or(k),
            )),
        }
    }

    /// Deletes daemon records in one durable transaction (absent keys are fine).
    pub async fn delete_records(&self, keys_to_delete: &[String]) -> Result<(), IpamError> {
        let ops = keys_to_delete
            .iter()
            .map(|k| Op::Delete(keys::record(k)))
            .collect();
        self.store
            .txn(Txn {
                compares: Vec::new(),
                ops,
            })
            .await?;
        Ok(())
    }

    /// Reads a daemon record.
    pub async fn record(&self, key: &str) -> Result<Option<serde_json::Value>, IpamError> {
        let k = keys::record(key);
        match self.store.get(&k).await? {
            None => Ok(None),
            Some(v) => decode(&k, &v).map(Some),
        }
    }

    /// Daemon records whose key starts with `prefix`, in key order.
    pub async fn records(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, serde_json::Value)>, IpamError> {
        let p = keys::record(prefix);
        let mut out = Vec::new();
        for (k, v) in self.store.range(&p, &prefix_end(&p), usize::MAX).await? {
            let Some(key) = k.strip_prefix(keys::RECORD_PREFIX).and_then(keys::unesc) else {
                continue;
            };
            out.push((key, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// How much of a pool is in use.
    pub async fn usage(&self, pool: &str) -> Result<PoolUsage, IpamError> {
        let rt = self.rt(pool)?;
        self.load_index(rt).await?;
        let idx = lock(&rt.index);
        let subnets = rt
            .pool
            .families
            .iter()
            .zip(&idx.subnets)
            .map(|(plan, set)| (plan.family, set.taken.len() as u64, plan.total()))
            .collect();
        let isolation_ids = rt
            .pool
            .isolation_range()
            .map(|(a, b)| (idx.isolation.taken.len() as u64, u64::from(b - a) + 1));
        Ok(PoolUsage {
            pool: pool.to_string(),
            subnets,
            isolation_ids,
        })
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

fn isolation_of(pool: &Pool, job: &JobRecord) -> Option<Isolation> {
    job.isolation_id.map(|id| Isolation {
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

fn job_view(pool: &Pool, job: &str, rec: &JobRecord) -> JobNetwork {
    let rails = rails_of(rec, RailSelection::All)
        .into_iter()
        .map(|(rail, subnets)| {
            let layouts: Vec<SubnetLayout> = subnets.iter().map(|s| layout_of(pool, s)).collect();
            RailSubnet {
                rail,
                rail_name: rail_name(pool, rail),
                subnets: layouts.iter().map(SubnetLayout::net).collect(),
                gateways: layouts.iter().filter_map(SubnetLayout::gateway).collect(),
            }
        })
        .collect();
    JobNetwork {
        pool: pool.name().to_string(),
        job: job.to_string(),
        isolation: isolation_of(pool, rec),
        rails,
        world_size: rec.world_size,
        draining_since_ms: rec.draining_since_ms,
        created_ms: rec.created_ms,
    }
}

fn gang_view(pool: &Pool, job: &str, rec: &JobRecord, world_size: u32) -> Gang {
    let rails = rails_of(rec, RailSelection::All);
    let layouts: Vec<(u16, Vec<SubnetLayout>)> = rails
        .iter()
        .map(|(r, ss)| (*r, ss.iter().map(|s| layout_of(pool, s)).collect()))
        .collect();
    let ranks = (0..world_size)
        .map(|rank| RankAddresses {
            rank,
            rails: layouts
                .iter()
                .map(|(rail, ls)| RailAddresses {
                    rail: *rail,
                    rail_name: rail_name(pool, *rail),
                    ips: ls
                        .iter()
                        .filter_map(|l| l.nth_allowed(u64::from(rank)).map(|o| l.host(o)))
                        .collect(),
                    gateways: ls.iter().filter_map(SubnetLayout::gateway).collect(),
                })
                .collect(),
        })
        .collect();
    Gang {
        job: job_view(pool, job, rec),
        ranks,
    }
}

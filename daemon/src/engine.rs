//! The attachment engine: VF ownership on top of jobnet-ipam's allocations.
//!
//! Every reserve writes, in one durable IPAM transaction, the addresses plus
//! two kinds of daemon records owned by the attachment (deleted with it):
//! - `vf/<node>/<pci>` → owner key, written only if absent, so a VF can never
//!   have two owners even if the in-memory view were wrong;
//! - `att/<containerID>/<ifname>` → netns, network, node and VFs.
//!
//! In memory the engine keeps a mirror of VF owners (rebuilt from the store
//! on start and on every reconciliation) and the VFs that in-flight reserves
//! have claimed but not yet written.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use jobnet_api::{self as api, ApiError, ErrorCode};
use jobnet_hw::{PciAddr, SysfsRoot};
use jobnet_ipam::store::StoreError;
use jobnet_ipam::{self as ipam, Clock, Ipam, IpamError, RailSelection, RecordWrite, Store};
use serde::{Deserialize, Serialize};

use crate::config::{Config, DaemonPool, StoreBackend};
use crate::inventory::{FirstFree, Inventory, PoolLayout, RailWant, VfBook, VfEntry, VfSelector};
use crate::isolation::{vni_of, Isolator, Vni};
use crate::keylock::KeyLocks;
use crate::metrics::Metrics;
use crate::netns;
use crate::validate;

/// Record key prefix of VF owners.
const VF_PREFIX: &str = "vf/";
/// Record key prefix of attachment details.
const ATT_PREFIX: &str = "att/";
/// Records read at a time by scans (reconcile, GC, owners), bounding their memory.
const PAGE: usize = 512;
/// Most uncommitted reservations remembered for their commit.
const RESERVED_VIEWS_MAX: usize = 65_536;

/// What the daemon stores about an attachment besides its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AttRecord {
    node: String,
    netns: String,
    #[serde(default)]
    network: Option<String>,
    vfs: Vec<api::VfAssignment>,
}

/// Owner record of one VF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct VfOwner {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// Per-pool settings the daemon adds to the IPAM pool.
#[derive(Debug, Clone)]
struct PoolSettings {
    isolation: api::IsolationMode,
    mtu: Option<u32>,
    rails: u16,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A pool's IPAM config is invalid.
    #[error("pool config: {0}")]
    Pool(#[from] ipam::ConfigError),
    /// The devices could not be read.
    #[error("inventory: {0}")]
    Inventory(#[from] crate::inventory::InventoryError),
    /// The store could not be read.
    #[error("state: {0}")]
    State(ApiError),
}

/// The daemon's state and operations. Share it behind an `Arc`.
pub struct Engine<S: Store> {
    node: String,
    ipam: Ipam<S>,
    clock: Arc<dyn Clock>,
    pools: BTreeMap<String, PoolSettings>,
    default_pool: String,
    sysfs: SysfsRoot,
    layouts: Vec<PoolLayout>,
    /// The inventory and who holds which VF, changed together.
    book: Mutex<VfBook>,
    selector: Box<dyn VfSelector>,
    key_locks: KeyLocks<api::AttachmentKey>,
    metrics: Arc<Metrics>,
    started: Instant,
    netns_grace_ms: u64,
    /// Releases the store could not take (no quorum, deadline): retried by
    /// every reconciliation until they land. The plugin queues them too.
    retry_releases: Mutex<BTreeSet<api::AttachmentKey>>,
    /// The node's per-job bridges and tunnels (`vxlan` pools).
    isolator: Isolator,
    /// Reservations this process made, as answered: their commit needs no
    /// read back (removed by commit or release; cleared when too many).
    reserved: Mutex<HashMap<api::AttachmentKey, api::Attachment>>,
    /// Whether any pool isolates with `vxlan` (else no bridge work at all).
    has_vxlan: bool,
}

impl<S: Store> std::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a few map operations; a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn api_err(e: IpamError) -> ApiError {
    let code = match &e {
        IpamError::UnknownPool(_) => ErrorCode::UnknownPool,
        IpamError::UnknownRail { .. } | IpamError::InvalidRequest(_) => ErrorCode::InvalidArgument,
        IpamError::PoolExhausted { .. }
        | IpamError::IsolationExhausted(_)
        | IpamError::SubnetExhausted { .. }
        | IpamError::RankOutOfRange { .. } => ErrorCode::PoolExhausted,
        IpamError::RankInUse { .. }
        | IpamError::KeyInUse { .. }
        | IpamError::GangConflict { .. }
        | IpamError::NodeAlive(_) => ErrorCode::Conflict,
        IpamError::NotFound(_) => ErrorCode::UnknownAttachment,
        IpamError::RecordExists(_) => ErrorCode::DeviceBusy,
        // The cluster store cannot answer now (no quorum, deadline): retryable.
        IpamError::Contention | IpamError::Store(StoreError::Unavailable(_)) => {
            ErrorCode::Unavailable
        }
        IpamError::Store(_) | IpamError::Corrupt { .. } => ErrorCode::StoreFailure,
    };
    ApiError::new(code, e.to_string())
}

fn to_api_key(k: &ipam::AttachmentKey) -> api::AttachmentKey {
    api::AttachmentKey::new(k.container_id.clone(), k.ifname.clone())
}

fn to_ipam_key(k: &api::AttachmentKey) -> ipam::AttachmentKey {
    ipam::AttachmentKey::new(k.container_id.clone(), k.ifname.clone())
}

fn mode(m: ipam::IsolationMode) -> api::IsolationMode {
    match m {
        ipam::IsolationMode::VfVlan => api::IsolationMode::VfVlan,
        ipam::IsolationMode::Vxlan => api::IsolationMode::Vxlan,
        ipam::IsolationMode::Pkey => api::IsolationMode::Pkey,
        ipam::IsolationMode::None => api::IsolationMode::None,
    }
}

fn isolation(pool_mode: api::IsolationMode, i: Option<ipam::Isolation>) -> api::Isolation {
    match i {
        Some(i) => api::Isolation {
            mode: mode(i.mode),
            id: Some(i.id),
        },
        None => api::Isolation {
            mode: pool_mode,
            id: None,
        },
    }
}

/// The gateway of the same family as `addr`, if any.
fn gateway_for(addr: &ipnet::IpNet, gateways: &[std::net::IpAddr]) -> Option<std::net::IpAddr> {
    gateways
        .iter()
        .copied()
        .find(|g| g.is_ipv4() == addr.addr().is_ipv4())
}

fn rail_addresses(rails: &[ipam::RailAddresses]) -> Vec<api::RailAddress> {
    rails
        .iter()
        .flat_map(|r| {
            r.ips.iter().map(|ip| api::RailAddress {
                rail: u32::from(r.rail),
                address: *ip,
                gateway: gateway_for(ip, &r.gateways),
                isolation_id: r.isolation.map(|i| i.id),
            })
        })
        .collect()
}

fn rail_subnets(rails: &[ipam::RailSubnet]) -> Vec<api::RailSubnet> {
    rails
        .iter()
        .flat_map(|r| {
            r.subnets.iter().map(|net| api::RailSubnet {
                rail: u32::from(r.rail),
                subnet: *net,
                gateway: gateway_for(net, &r.gateways),
                isolation_id: r.isolation.map(|i| i.id),
            })
        })
        .collect()
}

fn vf_record_key(node: &str, pci: PciAddr) -> String {
    format!("{VF_PREFIX}{node}/{pci}")
}

fn att_record_key(k: &api::AttachmentKey) -> String {
    format!("{ATT_PREFIX}{}/{}", k.container_id, k.ifname)
}

fn assignment(e: &VfEntry) -> api::VfAssignment {
    api::VfAssignment {
        rail: u32::from(e.rail),
        pci: e.info.pci,
        pf_pci: e.info.pf_pci,
        pf: e.info.pf_netdevs.first().cloned(),
        vf_index: e.info.vf_index,
        netdev: e.info.netdevs.first().cloned(),
    }
}

/// Releases in-flight VF claims when a reserve ends, whatever the outcome.
struct ClaimGuard<'a> {
    book: &'a Mutex<VfBook>,
    vfs: Vec<PciAddr>,
    owner: Option<api::AttachmentKey>,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        lock(self.book).unclaim(&self.vfs, self.owner.as_ref());
    }
}

impl<S: Store> Engine<S> {
    /// Builds the engine over `store`, reads the devices and the recorded VF owners.
    pub async fn start(
        config: &Config,
        store: S,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let ipam_pools = config
            .pools
            .iter()
            .map(|p| ipam::Pool::from_config(p.ipam.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let pools = config
            .pools
            .iter()
            .map(|p: &DaemonPool| {
                (
                    p.ipam.name.clone(),
                    PoolSettings {
                        isolation: mode(p.ipam.isolation.mode),
                        mtu: p.mtu,
                        rails: p.rail_count(),
                    },
                )
            })
            .collect();
        let layouts: Vec<PoolLayout> = config.pools.iter().map(DaemonPool::layout).collect();
        let sysfs = config.sysfs();
        let inventory = Inventory::scan(&sysfs, &layouts)?;
        let node = config.node_name();
        // The embedded store is the node's own: its records must not depend on
        // the node's name, which an operator may change.
        let scope = match config.store.backend {
            StoreBackend::Embedded => ipam::LOCAL_NODE.to_owned(),
            StoreBackend::Etcd => node.clone(),
        };
        let engine = Self {
            node,
            ipam: Ipam::new(store, ipam_pools, clock.clone()).on_node(scope),
            clock,
            pools,
            default_pool: config.default_pool_name().to_owned(),
            sysfs,
            layouts,
            book: Mutex::new(VfBook::new(Arc::new(inventory))),
            selector: Box::new(FirstFree),
            key_locks: KeyLocks::default(),
            metrics,
            started: Instant::now(),
            netns_grace_ms: config.netns_grace_secs.saturating_mul(1000),
            retry_releases: Mutex::new(BTreeSet::new()),
            isolator: Isolator::new(config.sysfs()),
            reserved: Mutex::new(HashMap::new()),
            has_vxlan: config
                .pools
                .iter()
                .any(|p| p.ipam.isolation.mode == ipam::IsolationMode::Vxlan),
        };
        if config.store.backend == StoreBackend::Embedded {
            // A state dir from before the cluster key layout keeps its records.
            engine
                .ipam
                .migrate_legacy_layout()
                .await
                .map_err(|e| StartError::State(api_err(e)))?;
        }
        engine.reload_owners().await.map_err(StartError::State)?;
        engine.adopt_isolation().await.map_err(StartError::State)?;
        engine.update_gauges();
        Ok(engine)
    }

    /// Replaces the VF chooser (the topology-aware selector plugs in here).
    pub fn with_selector(mut self, selector: Box<dyn VfSelector>) -> Self {
        self.selector = selector;
        self
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The IPAM underneath.
    pub fn ipam(&self) -> &Ipam<S> {
        &self.ipam
    }

    fn inventory(&self) -> Arc<Inventory> {
        lock(&self.book).inventory().clone()
    }

    /// Re-reads the devices from sysfs.
    pub fn rescan(&self) -> Result<(), crate::inventory::InventoryError> {
        let inv = Inventory::scan(&self.sysfs, &self.layouts)?;
        lock(&self.book).set_inventory(Arc::new(inv));
        Ok(())
    }

    /// Rebuilds the VF owner mirror from this node's `vf/` records.
    ///
    /// Reads the records a page at a time and keeps only VFs of the inventory
    /// (the others cannot be chosen or listed), so memory follows the node's
    /// VFs, not the number of records in the store.
    async fn reload_owners(&self) -> Result<(), ApiError> {
        let prefix = format!("{VF_PREFIX}{}/", self.node);
        let inv = self.inventory();
        let mut owners = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .ipam
                .records_page(&prefix, after.as_deref(), PAGE)
                .await
                .map_err(api_err)?;
            let full = page.len() == PAGE;
            for (k, v) in &page {
                let Some(pci) = k
                    .strip_prefix(&prefix)
                    .and_then(|p| p.parse::<PciAddr>().ok())
                    .filter(|p| inv.knows(*p))
                else {
                    continue;
                };
                match serde_json::from_value::<VfOwner>(v.clone()) {
                    Ok(o) => {
                        owners.insert(pci, api::AttachmentKey::new(o.container_id, o.ifname));
                    }
                    Err(e) => {
                        tracing::warn!(record = %k, error = %e, "unreadable VF owner record")
                    }
                }
            }
            after = page.into_iter().next_back().map(|(k, _)| k);
            if !full || after.is_none() {
                break;
            }
        }
        lock(&self.book).set_owners(owners);
        Ok(())
    }

    fn pool_settings(&self, pool: &str) -> Result<&PoolSettings, ApiError> {
        self.pools
            .get(pool)
            .ok_or_else(|| ApiError::new(ErrorCode::UnknownPool, format!("unknown pool {pool:?}")))
    }

    async fn att_record(&self, key: &api::AttachmentKey) -> Result<Option<AttRecord>, ApiError> {
        let v = self
            .ipam
            .record(&att_record_key(key))
            .await
            .map_err(api_err)?;
        Ok(v.and_then(|v| serde_json::from_value(v).ok()))
    }

    fn view(&self, a: &ipam::Attachment, rec: Option<&AttRecord>) -> api::Attachment {
        let settings = self.pools.get(&a.pool);
        api::Attachment {
            container_id: a.key.container_id.clone(),
            ifname: a.key.ifname.clone(),
            netns: rec.map(|r| r.netns.clone()).unwrap_or_default(),
            node: rec
                .map(|r| r.node.clone())
                .unwrap_or_else(|| self.node.clone()),
            job: a.job.clone(),
            rank: a.rank,
            pool: a.pool.clone(),
            state: match a.state {
                ipam::AttachmentState::Reserved { .. } => api::AttachmentState::Reserved,
                ipam::AttachmentState::Committed => api::AttachmentState::Committed,
            },
            vfs: rec.map(|r| r.vfs.clone()).unwrap_or_default(),
            addresses: rail_addresses(&a.rails),
            isolation: isolation(
                settings.map_or(api::IsolationMode::None, |s| s.isolation),
                a.isolation,
            ),
            mtu: settings.and_then(|s| s.mtu),
            network: rec.and_then(|r| r.network.clone()),
            reserved_at_ms: a.created_ms,
        }
    }

    /// Picks and claims the VFs for a reserve; the guard un-claims on drop.
    fn claim_vfs(
        &self,
        pool: &str,
        req: &api::ReserveRequest,
        key: &api::AttachmentKey,
    ) -> Result<(Vec<VfEntry>, ClaimGuard<'_>), ApiError> {
        let settings = self.pool_settings(pool)?;
        let mut book = lock(&self.book);
        let inv = book.inventory().clone();
        let mut fixed: Option<&VfEntry> = None;
        if let Some(dev) = req.device_id {
            let e = inv.get(pool, dev).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UnknownDevice,
                    format!("{dev} is not a VF of pool {pool:?} on node {}", self.node),
                )
            })?;
            if let Some(owner) = book.owner(dev) {
                if owner != key {
                    return Err(ApiError::new(
                        ErrorCode::DeviceBusy,
                        format!("VF {dev} is owned by {owner}"),
                    ));
                }
            }
            if book.is_claimed(dev) {
                return Err(ApiError::new(
                    ErrorCode::DeviceBusy,
                    format!("VF {dev} is being reserved by another request"),
                ));
            }
            if e.info.is_dpdk() {
                return Err(ApiError::new(
                    ErrorCode::DeviceUnavailable,
                    format!(
                        "VF {dev} is bound to {} (userspace)",
                        e.info.driver.as_deref().unwrap_or("?")
                    ),
                ));
            }
            fixed = Some(e);
        }
        let want = match (req.rails, fixed) {
            (api::Rails::One, Some(_)) => RailWant::Each(Vec::new()),
            (api::Rails::One, None) => RailWant::Any((0..settings.rails).collect()),
            (api::Rails::All, f) => RailWant::Each(
                (0..settings.rails)
                    .filter(|r| f.is_none_or(|e| e.rail != *r))
                    .collect(),
            ),
        };
        let free = book.free_vfs(pool);
        let picked = self
            .selector
            .select(&free, &want, &req.gpus)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NoFreeDevice,
                    format!(
                        "pool {pool:?} has no free VF for {want} on node {}",
                        self.node
                    ),
                )
            })?;
        let mut chosen: Vec<VfEntry> = fixed.into_iter().chain(picked).cloned().collect();
        chosen.sort_by_key(|e| e.rail);
        let pcis: Vec<PciAddr> = chosen.iter().map(VfEntry::pci).collect();
        book.claim(&pcis);
        let guard = ClaimGuard {
            book: &self.book,
            vfs: pcis,
            owner: None,
        };
        Ok((chosen, guard))
    }

    /// Reserves addresses and VF(s) for an attachment (idempotent per key).
    pub async fn reserve(&self, req: api::ReserveRequest) -> Result<api::Attachment, ApiError> {
        validate::reserve(&req)?;
        let started = Instant::now();
        let key = req.key();
        let pool = req
            .pool
            .clone()
            .unwrap_or_else(|| self.default_pool.clone());
        self.pool_settings(&pool)?;
        let _key_guard = self.key_locks.lock(key.clone()).await;
        // Every recorded attachment owns its VFs in the book, so only a key
        // that owns one can be a repeat worth a read; any other repeat is
        // caught by the reservation's own compare below.
        let maybe_repeat = lock(&self.book).owns_any(&key);
        if maybe_repeat {
            if let Some(existing) = self
                .ipam
                .attachment(&to_ipam_key(&key))
                .await
                .map_err(api_err)?
            {
                return self.repeat(&req, &pool, &existing).await;
            }
        }
        if let Some(dev) = req.device_id {
            if self.inventory().get(&pool, dev).is_none() {
                // A VF created since the last scan: look again once, owners included
                // (the book only keeps owners of VFs it knows).
                match self.rescan() {
                    Ok(()) => self.reload_owners().await?,
                    Err(e) => tracing::warn!(error = %e, "rescan for an unknown deviceID failed"),
                }
            }
        }
        let (chosen, mut claim) = self.claim_vfs(&pool, &req, &key)?;
        let rails = match req.rails {
            api::Rails::All => RailSelection::All,
            api::Rails::One => RailSelection::One(chosen.first().map_or(0, |e| e.rail)),
        };
        let record = AttRecord {
            node: self.node.clone(),
            netns: req.netns.clone(),
            network: req.network.clone(),
            vfs: chosen.iter().map(assignment).collect(),
        };
        let records = self.records_for(&key, &record)?;
        let (att, created) = self
            .ipam
            .reserve_new(ipam::ReserveRequest {
                pool: pool.clone(),
                job: req.job.clone(),
                key: to_ipam_key(&key),
                rank: req.rank,
                rails,
                records,
            })
            .await
            .map_err(api_err)?;
        if !created {
            // Recorded already: an earlier attempt of this very reserve that
            // the store applied without telling us, or a record the book has
            // not loaded. Answer as a repeat; the VFs are its owner's.
            let view = self.repeat(&req, &pool, &att).await;
            if let Ok(v) = &view {
                if v.vfs.iter().map(|x| x.pci).eq(claim.vfs.iter().copied()) {
                    claim.owner = Some(key.clone());
                }
            }
            drop(claim);
            return view;
        }
        claim.owner = Some(key.clone());
        drop(claim);
        self.metrics.attachments.inc();
        self.metrics
            .reserve_seconds
            .observe(started.elapsed().as_secs_f64());
        self.update_gauges();
        tracing::info!(attachment = %key, job = %req.job, rank = ?req.rank, pool = %pool,
            vfs = ?record.vfs.iter().map(|v| v.pci.to_string()).collect::<Vec<_>>(), "reserved");
        let view = self.view(&att, Some(&record));
        self.remember_reserved(&view);
        Ok(view)
    }

    /// The daemon records an attachment owns: one owner record per VF (written
    /// only if absent, so a VF never gets two owners) and its details.
    fn records_for(
        &self,
        key: &api::AttachmentKey,
        record: &AttRecord,
    ) -> Result<Vec<RecordWrite>, ApiError> {
        let mut records: Vec<RecordWrite> = record
            .vfs
            .iter()
            .map(|v| RecordWrite {
                key: vf_record_key(&self.node, v.pci),
                value: serde_json::json!(VfOwner {
                    container_id: key.container_id.clone(),
                    ifname: key.ifname.clone(),
                }),
                if_absent: true,
            })
            .collect();
        records.push(RecordWrite {
            key: att_record_key(key),
            value: serde_json::to_value(record)
                .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?,
            if_absent: false,
        });
        Ok(records)
    }

    /// Records a committed attachment exactly as reserve and commit would, with
    /// `vfs` as its devices, without looking at the inventory. For filling a
    /// store in benchmarks and tests (the devices need not exist).
    #[doc(hidden)]
    pub async fn import_committed(
        &self,
        req: api::ReserveRequest,
        vfs: Vec<api::VfAssignment>,
    ) -> Result<(), ApiError> {
        validate::reserve(&req)?;
        let key = req.key();
        let pool = req
            .pool
            .clone()
            .unwrap_or_else(|| self.default_pool.clone());
        let record = AttRecord {
            node: self.node.clone(),
            netns: req.netns.clone(),
            network: req.network.clone(),
            vfs,
        };
        let records = self.records_for(&key, &record)?;
        self.ipam
            .reserve(ipam::ReserveRequest {
                pool,
                job: req.job.clone(),
                key: to_ipam_key(&key),
                rank: req.rank,
                rails: RailSelection::All,
                records,
            })
            .await
            .map_err(api_err)?;
        self.ipam
            .commit(&to_ipam_key(&key))
            .await
            .map_err(api_err)?;
        Ok(())
    }

    /// A reserve for a key that is already recorded: same answer, or a conflict.
    async fn repeat(
        &self,
        req: &api::ReserveRequest,
        pool: &str,
        existing: &ipam::Attachment,
    ) -> Result<api::Attachment, ApiError> {
        let key = req.key();
        if existing.pool != pool || existing.job != req.job {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "{key} is already reserved for job {:?} in pool {:?}",
                    existing.job, existing.pool
                ),
            ));
        }
        let rec = self.att_record(&key).await?;
        if let (Some(dev), Some(rec)) = (req.device_id, &rec) {
            if !rec.vfs.iter().any(|v| v.pci == dev) {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("{key} is already reserved with another VF"),
                ));
            }
        }
        Ok(self.view(existing, rec.as_ref()))
    }

    /// Commits a reservation (idempotent).
    pub async fn commit(&self, key: api::AttachmentKey) -> Result<api::Attachment, ApiError> {
        validate::key(&key)?;
        let _g = self.key_locks.lock(key.clone()).await;
        let ik = to_ipam_key(&key);
        // The reservation as this process answered it, else as recorded.
        let remembered = lock(&self.reserved).remove(&key);
        let mut view = match remembered {
            Some(v) => v,
            None => {
                let before = self
                    .ipam
                    .attachment(&ik)
                    .await
                    .map_err(api_err)?
                    .ok_or_else(|| unknown(&key))?;
                let rec = self.att_record(&key).await?;
                self.view(&before, rec.as_ref())
            }
        };
        let fresh = view.state == api::AttachmentState::Reserved;
        // vxlan: the VFs join their job rails' bridges before the attachment
        // is committed, so a committed attachment is always isolated.
        let joined = if self.has_vxlan {
            self.join_isolation(&view, fresh).await?
        } else {
            Vec::new()
        };
        let att = match self.ipam.commit(&ik).await {
            Ok(a) => a,
            Err(e) => {
                if fresh {
                    self.leave_isolation(&joined).await;
                }
                return Err(api_err(e));
            }
        };
        if fresh {
            let ms = self.clock.now_ms().saturating_sub(att.created_ms);
            self.metrics.attach_seconds.observe(ms as f64 / 1000.0);
            tracing::info!(attachment = %key, job = %att.job, "committed");
        }
        view.state = api::AttachmentState::Committed;
        Ok(view)
    }

    fn remember_reserved(&self, view: &api::Attachment) {
        let mut r = lock(&self.reserved);
        if r.len() >= RESERVED_VIEWS_MAX {
            r.clear();
        }
        r.insert(view.key(), view.clone());
    }

    /// The `vxlan` job rails the attachment's VFs belong to.
    fn vxlan_vfs(view: &api::Attachment) -> Result<Vec<(PciAddr, Vni)>, ApiError> {
        let mut out = Vec::new();
        for vf in &view.vfs {
            if let Some(vni) = vni_of(&view.isolation_on(vf.rail)).map_err(|e| e.to_api())? {
                out.push((vf.pci, vni));
            }
        }
        Ok(out)
    }

    /// Joins every VF of `view` to its job rail's bridge; on failure undoes
    /// the joins of this call when the attachment is new (a repeated commit
    /// of a live attachment must not cut it off).
    async fn join_isolation(
        &self,
        view: &api::Attachment,
        fresh: bool,
    ) -> Result<Vec<(PciAddr, Vni)>, ApiError> {
        let mut joined = Vec::new();
        for (pci, vni) in Self::vxlan_vfs(view)? {
            match self.isolator.join_vf(pci, vni).await {
                Ok(_) => joined.push((pci, vni)),
                Err(e) => {
                    if fresh {
                        self.leave_isolation(&joined).await;
                    }
                    return Err(e.to_api());
                }
            }
        }
        Ok(joined)
    }

    /// Takes VFs off their job rails' bridges; failures are logged (the
    /// reconciliation sweep removes what is left).
    async fn leave_isolation(&self, vfs: &[(PciAddr, Vni)]) {
        for (pci, vni) in vfs {
            if let Err(e) = self.isolator.leave_vf(*pci, *vni).await {
                tracing::warn!(%pci, %vni, error = %e, "taking the VF off its job bridge failed");
            }
        }
    }

    /// The VFs `key` owns with their `vxlan` job rails, from the book and a
    /// replica's copy of the attachment.
    async fn owned_vxlan_vfs(&self, key: &api::AttachmentKey) -> Vec<(PciAddr, Vni)> {
        let (pcis, inv) = {
            let book = lock(&self.book);
            (book.owned_by(key), book.inventory().clone())
        };
        if pcis.is_empty() {
            return Vec::new();
        }
        let att = match self.ipam.attachment_relaxed(&to_ipam_key(key)).await {
            Ok(Some(a)) => a,
            Ok(None) => return Vec::new(),
            Err(e) => {
                tracing::warn!(attachment = %key, error = %e, "cannot read the attachment's job rails; the sweep will clean its bridges");
                return Vec::new();
            }
        };
        pcis.into_iter()
            .filter_map(|pci| {
                let rail = inv.all().find(|e| e.pci() == pci)?.rail;
                let iso = att.rails.iter().find(|r| r.rail == rail)?.isolation?;
                (iso.mode == ipam::IsolationMode::Vxlan)
                    .then(|| Vni::new(iso.id).ok())
                    .flatten()
                    .map(|vni| (pci, vni))
            })
            .collect()
    }

    /// Tells the isolator which VFs recorded attachments hold on job rails,
    /// so the sweep keeps their bridges.
    async fn adopt_isolation(&self) -> Result<(), ApiError> {
        if !self.has_vxlan {
            return Ok(());
        }
        let mut after = None;
        loop {
            let page = self.attachment_page(after.as_ref()).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(a, _)| a.key.clone());
            let mut vfs = Vec::new();
            for (a, rec) in &page {
                match Self::vxlan_vfs(&self.view(a, rec.as_ref())) {
                    Ok(v) => vfs.extend(v.into_iter().map(|(p, n)| (n, p))),
                    Err(e) => {
                        tracing::warn!(attachment = %a.key, error = %e, "recorded isolation unusable")
                    }
                }
            }
            self.isolator.adopt(vfs).await;
            if !full {
                return Ok(());
            }
        }
    }

    /// Releases an attachment and its VFs (idempotent).
    pub async fn release(&self, key: api::AttachmentKey) -> Result<api::ReleaseResponse, ApiError> {
        validate::key(&key)?;
        let _g = self.key_locks.lock(key.clone()).await;
        let r = self.release_locked(&key).await;
        if r.as_ref().is_err_and(|e| e.code == ErrorCode::Unavailable) {
            tracing::warn!(attachment = %key, "store unavailable: release queued for retry");
            lock(&self.retry_releases).insert(key);
        }
        r
    }

    /// Retries the releases the store could not take; keeps those that fail again.
    async fn retry_queued_releases(&self) -> usize {
        let queued = std::mem::take(&mut *lock(&self.retry_releases));
        let mut landed = 0;
        for key in queued {
            let _g = self.key_locks.lock(key.clone()).await;
            match self.release_locked(&key).await {
                Ok(_) => {
                    landed += 1;
                    tracing::info!(attachment = %key, "queued release landed");
                }
                Err(e) => {
                    tracing::debug!(attachment = %key, error = %e, "queued release still failing");
                    lock(&self.retry_releases).insert(key);
                }
            }
        }
        landed
    }

    async fn release_locked(
        &self,
        key: &api::AttachmentKey,
    ) -> Result<api::ReleaseResponse, ApiError> {
        lock(&self.reserved).remove(key);
        // Device side first, so it is done even while the store cannot
        // record the release (a replica's copy of the attachment names its
        // job rails; the sweep catches what this misses).
        if self.has_vxlan {
            self.leave_isolation(&self.owned_vxlan_vfs(key).await).await;
        }
        let released = self
            .ipam
            .release(&to_ipam_key(key))
            .await
            .map_err(api_err)?;
        let Some(att) = released else {
            return Ok(api::ReleaseResponse { released: false });
        };
        let prefix = format!("{VF_PREFIX}{}/", self.node);
        {
            let mut book = lock(&self.book);
            for r in &att.records {
                if let Some(pci) = r.strip_prefix(&prefix).and_then(|p| p.parse().ok()) {
                    book.disown(pci, key);
                }
            }
        }
        self.metrics.attachments.dec();
        self.update_gauges();
        tracing::info!(attachment = %key, job = %att.job, "released");
        Ok(api::ReleaseResponse { released: true })
    }

    /// The recorded attachment, or `unknown-attachment`.
    pub async fn check(&self, key: api::AttachmentKey) -> Result<api::Attachment, ApiError> {
        validate::key(&key)?;
        let att = self
            .ipam
            .attachment(&to_ipam_key(&key))
            .await
            .map_err(api_err)?
            .ok_or_else(|| unknown(&key))?;
        let rec = self.att_record(&key).await?;
        Ok(self.view(&att, rec.as_ref()))
    }

    /// Free VFs per pool: (total, free).
    fn vf_counts(&self) -> BTreeMap<String, (u32, u32)> {
        let book = lock(&self.book);
        self.pools
            .keys()
            .map(|p| (p.clone(), book.counts(p)))
            .collect()
    }

    fn update_gauges(&self) {
        for (pool, (_, free)) in self.vf_counts() {
            self.metrics.set_pool(&pool, free, None);
        }
    }

    /// Daemon health and free resources.
    pub async fn status(&self) -> Result<api::StatusResponse, ApiError> {
        let counts = self.vf_counts();
        let mut pools = Vec::new();
        for (name, s) in &self.pools {
            let usage = self.ipam.usage(name).await.map_err(api_err)?;
            let jobs = self.ipam.count_jobs(Some(name)).await.map_err(api_err)?;
            let free_subnets = usage
                .subnets
                .iter()
                .map(|(_, u, t)| t.saturating_sub(*u))
                .min();
            let (total, free) = counts.get(name).copied().unwrap_or((0, 0));
            self.metrics.set_pool(name, free, free_subnets);
            pools.push(api::PoolStatus {
                name: name.clone(),
                isolation: s.isolation,
                rails: u32::from(s.rails),
                total_vfs: total,
                free_vfs: free,
                jobs: u32::try_from(jobs).unwrap_or(u32::MAX),
                free_subnets,
            });
        }
        // A counter the engine maintains (reserve, release, each
        // reconciliation), so status costs no scan of the store.
        let attachments = u64::try_from(self.metrics.attachments.get()).unwrap_or(0);
        Ok(api::StatusResponse {
            node: self.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            api_version: api::API_VERSION.to_owned(),
            uptime_secs: self.started.elapsed().as_secs(),
            attachments: u32::try_from(attachments).unwrap_or(u32::MAX),
            free_vfs: pools.iter().map(|p| p.free_vfs).sum(),
            pools,
        })
    }

    /// Up to [`PAGE`] attachments after `after` in key order, each with its daemon
    /// record; scans page through the store instead of loading everything.
    async fn attachment_page(
        &self,
        after: Option<&ipam::AttachmentKey>,
    ) -> Result<Vec<(ipam::Attachment, Option<AttRecord>)>, ApiError> {
        let atts = self
            .ipam
            .attachments_page(after, PAGE)
            .await
            .map_err(api_err)?;
        let mut out = Vec::with_capacity(atts.len());
        for a in atts {
            let rec = self.att_record(&to_api_key(&a.key)).await?;
            out.push((a, rec));
        }
        Ok(out)
    }

    /// One page of this node's attachments, as the nearest store replica has
    /// them (answered even while the cluster store has no quorum). The
    /// `continue` token is the last attachment's `containerID/ifname`.
    pub async fn attachments(
        &self,
        page: api::PageRequest,
    ) -> Result<api::Page<api::Attachment>, ApiError> {
        let limit = page.limit();
        let after = match page.token.as_deref() {
            None => None,
            Some(t) => Some(
                t.split_once('/')
                    .map(|(c, i)| ipam::AttachmentKey::new(c, i))
                    .ok_or_else(|| bad_token(t))?,
            ),
        };
        let scope = self.ipam.node().to_owned();
        let atts = self
            .ipam
            .attachments_view_page(after.as_ref(), limit)
            .await
            .map_err(api_err)?;
        let mut items = Vec::with_capacity(atts.len());
        for a in &atts {
            let rec = self
                .ipam
                .record_relaxed_on(&scope, &att_record_key(&to_api_key(&a.key)))
                .await
                .map_err(api_err)?
                .and_then(|v| serde_json::from_value::<AttRecord>(v).ok());
            items.push(self.view(a, rec.as_ref()));
        }
        let next = (atts.len() == limit)
            .then(|| {
                atts.last()
                    .map(|a| format!("{}/{}", a.key.container_id, a.key.ifname))
            })
            .flatten();
        Ok(api::Page { items, next })
    }

    fn summary(&self, j: &ipam::JobNetwork, attachments: u32) -> api::JobSummary {
        let pool_mode = self
            .pools
            .get(&j.pool)
            .map_or(api::IsolationMode::None, |s| s.isolation);
        api::JobSummary {
            job: j.job.clone(),
            pool: j.pool.clone(),
            isolation: isolation(pool_mode, j.isolation),
            subnets: rail_subnets(&j.rails),
            attachments,
        }
    }

    /// One page of the jobs known to the store (every node's with etcd). The
    /// `continue` token is the last job's `pool/job`.
    pub async fn jobs(
        &self,
        page: api::PageRequest,
    ) -> Result<api::Page<api::JobSummary>, ApiError> {
        let limit = page.limit();
        let after = match page.token.as_deref() {
            None => None,
            Some(t) => Some(t.split_once('/').ok_or_else(|| bad_token(t))?),
        };
        let jobs = self.ipam.jobs_page(after, limit).await.map_err(api_err)?;
        let mut items = Vec::with_capacity(jobs.len());
        for j in &jobs {
            let n = self
                .ipam
                .count_job_attachments(&j.pool, &j.job)
                .await
                .map_err(api_err)?;
            items.push(self.summary(j, u32::try_from(n).unwrap_or(u32::MAX)));
        }
        let next = (jobs.len() == limit)
            .then(|| jobs.last().map(|j| format!("{}/{}", j.pool, j.job)))
            .flatten();
        Ok(api::Page { items, next })
    }

    /// One job (the first pool that has it) with its members in rank order.
    pub async fn job(&self, name: String) -> Result<api::JobDetail, ApiError> {
        validate::job(&name)?;
        let mut found = None;
        for pool in self.pools.keys() {
            if let Some(j) = self.ipam.job(pool, &name).await.map_err(api_err)? {
                found = Some(j);
                break;
            }
        }
        let j = found.ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("no job {name:?} is recorded"))
        })?;
        let atts = self
            .ipam
            .job_attachments(&j.pool, &j.job)
            .await
            .map_err(api_err)?;
        let mut members = Vec::with_capacity(atts.len());
        for (scope, a) in &atts {
            let key = to_api_key(&a.key);
            let rec = self
                .ipam
                .record_relaxed_on(scope, &att_record_key(&key))
                .await
                .map_err(api_err)?
                .and_then(|v| serde_json::from_value::<AttRecord>(v).ok());
            let v = self.view(a, rec.as_ref());
            members.push(api::JobMember {
                rank: v.rank,
                node: v.node,
                key,
                state: v.state,
                addresses: v.addresses,
                vfs: v.vfs,
            });
        }
        members.sort_by(|a, b| {
            (a.rank.is_none(), a.rank, &a.key).cmp(&(b.rank.is_none(), b.rank, &b.key))
        });
        let n = u32::try_from(members.len()).unwrap_or(u32::MAX);
        Ok(api::JobDetail {
            summary: self.summary(&j, n),
            members,
        })
    }

    /// Every VF with its state.
    pub async fn vfs(&self) -> Result<Vec<api::VfInfo>, ApiError> {
        let book = lock(&self.book);
        let inv = book.inventory().clone();
        let mut out: Vec<api::VfInfo> = inv
            .all()
            .map(|e| {
                let state = if let Some(owner) = book.owner(e.pci()) {
                    api::VfState::Owned {
                        owner: owner.clone(),
                    }
                } else if e.info.is_dpdk() {
                    api::VfState::Dpdk
                } else {
                    api::VfState::Free
                };
                api::VfInfo {
                    pci: e.info.pci,
                    pf_pci: e.info.pf_pci,
                    pf: e.info.pf_netdevs.first().cloned(),
                    vf_index: e.info.vf_index,
                    netdev: e.info.netdevs.first().cloned(),
                    driver: e.info.driver.clone(),
                    pool: e.pool.clone(),
                    rail: u32::from(e.rail),
                    state,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.pool, a.rail, a.pci).cmp(&(&b.pool, b.rail, b.pci)));
        Ok(out)
    }

    /// Reserves a whole job up front, all or nothing.
    pub async fn gang_reserve(
        &self,
        req: api::GangReserveRequest,
    ) -> Result<api::GangReservation, ApiError> {
        validate::job(&req.job)?;
        let pool = req
            .pool
            .clone()
            .unwrap_or_else(|| self.default_pool.clone());
        let settings = self.pool_settings(&pool)?;
        let g = self
            .ipam
            .gang_reserve(ipam::GangRequest {
                pool: pool.clone(),
                job: req.job.clone(),
                world_size: req.ranks,
            })
            .await
            .map_err(api_err)?;
        tracing::info!(job = %req.job, pool = %pool, ranks = req.ranks, "gang reserved");
        Ok(api::GangReservation {
            job: req.job,
            pool,
            isolation: isolation(settings.isolation, g.job.isolation),
            subnets: rail_subnets(&g.job.rails),
            ranks: g
                .ranks
                .iter()
                .map(|r| api::RankAddresses {
                    rank: r.rank,
                    addresses: rail_addresses(&r.rails),
                })
                .collect(),
        })
    }

    /// The nodes of the store, alive or stale (with the embedded store: this one).
    pub async fn nodes(&self) -> Result<Vec<api::NodeView>, ApiError> {
        let scope = self.ipam.node();
        Ok(self
            .ipam
            .nodes()
            .await
            .map_err(api_err)?
            .into_iter()
            .map(|n| api::NodeView {
                this_node: n.node == scope,
                // The embedded store records its one node as `local`.
                node: if n.node == ipam::LOCAL_NODE && scope == ipam::LOCAL_NODE {
                    self.node.clone()
                } else {
                    n.node
                },
                alive: n.alive,
                version: n.info.as_ref().map(|i| i.version.clone()),
                started_ms: n.info.map(|i| i.started_ms),
                attachments: n.attachments,
            })
            .collect())
    }

    /// Releases everything `req.node` holds, for a node that will not return
    /// (its pods are gone with it). Refuses this node and, unless forced, a
    /// node whose jobnetd is alive.
    pub async fn forget_node(
        &self,
        req: api::ForgetNodeRequest,
    ) -> Result<api::ForgetNodeResponse, ApiError> {
        validate::job(&req.node).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidArgument,
                format!("bad node name {:?}", req.node),
            )
        })?;
        if req.node == self.ipam.node() || req.node == self.node {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "a node cannot forget itself: release its attachments with GC instead",
            ));
        }
        let report = self
            .ipam
            .forget_node(&req.node, req.force)
            .await
            .map_err(api_err)?;
        tracing::warn!(node = %req.node, released = report.released.len(), "node forgotten");
        Ok(api::ForgetNodeResponse {
            node: req.node,
            released: report.released.iter().map(to_api_key).collect(),
        })
    }

    /// True when the attachment is young enough that its netns may not exist yet.
    fn in_grace(&self, a: &ipam::Attachment) -> bool {
        self.clock.now_ms().saturating_sub(a.created_ms) < self.netns_grace_ms
    }

    /// Releases this node's attachments not in `req.valid` (CNI GC).
    pub async fn gc(&self, req: api::GcRequest) -> Result<api::GcResponse, ApiError> {
        let valid: HashSet<api::AttachmentKey> = req.valid.into_iter().collect();
        let mut released = Vec::new();
        let mut after = None;
        loop {
            let page = self.attachment_page(after.as_ref()).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(a, _)| a.key.clone());
            for (a, rec) in page {
                let key = to_api_key(&a.key);
                let ours = rec.as_ref().is_none_or(|r| r.node == self.node);
                let in_network = req.network.is_none()
                    || rec.as_ref().and_then(|r| r.network.as_ref()) == req.network.as_ref();
                if !ours || !in_network || valid.contains(&key) || self.in_grace(&a) {
                    continue;
                }
                let _g = self.key_locks.lock(key.clone()).await;
                if self.release_locked(&key).await?.released {
                    self.metrics.reconciled.inc();
                    tracing::info!(attachment = %key, "released by GC");
                    released.push(key);
                }
            }
            if !full {
                return Ok(api::GcResponse { released });
            }
        }
    }

    /// One reconciliation pass: expire reservations and drained jobs, re-read
    /// devices and owners, release attachments whose netns is gone.
    pub async fn reconcile(&self) -> Result<ReconcileReport, ApiError> {
        let mut report = ReconcileReport {
            retried_releases: self.retry_queued_releases().await,
            ..ReconcileReport::default()
        };
        let sweep = self.ipam.sweep().await.map_err(api_err)?;
        report.expired = sweep.expired_reservations;
        report.jobs_released = sweep.released_jobs;
        if let Err(e) = self.rescan() {
            tracing::warn!(error = %e, "device rescan failed; keeping the previous inventory");
        }
        let mut after = None;
        loop {
            let page = self.attachment_page(after.as_ref()).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(a, _)| a.key.clone());
            for (a, rec) in &page {
                let Some(rec) = rec else { continue };
                if rec.node != self.node || self.in_grace(a) {
                    continue;
                }
                match netns::state(&rec.netns) {
                    netns::NetnsState::Alive => continue,
                    netns::NetnsState::Unknown => {
                        // Not visible from here is not dead: keep it, say so.
                        report.netns_unknown += 1;
                        continue;
                    }
                    netns::NetnsState::Gone => {}
                }
                let key = to_api_key(&a.key);
                let _g = self.key_locks.lock(key.clone()).await;
                if self.release_locked(&key).await?.released {
                    self.metrics.reconciled.inc();
                    tracing::info!(attachment = %key, netns = %rec.netns, "released: netns is gone");
                    report.netns_gone += 1;
                }
            }
            if !full {
                break;
            }
        }
        if report.netns_unknown > 0 {
            tracing::warn!(
                attachments = report.netns_unknown,
                "netns paths not visible to jobnetd: those attachments are kept; mount the runtime's netns directory into jobnetd (deploy/ mounts /run/netns and /var/run/netns)"
            );
        }
        self.reload_owners().await?;
        if self.has_vxlan {
            match self.isolator.sweep().await {
                Ok(removed) => report.bridges_removed = removed.len(),
                Err(e) => tracing::warn!(error = %e, "sweeping orphaned job bridges failed"),
            }
        }
        let remaining = self.ipam.count_attachments().await.map_err(api_err)?;
        self.metrics
            .attachments
            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
        self.update_gauges();
        Ok(report)
    }
}

fn bad_token(t: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidArgument,
        format!("continue token {t:?} is not one this API gave"),
    )
}

fn unknown(key: &api::AttachmentKey) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownAttachment,
        format!("no attachment {key} is recorded"),
    )
}

/// What one reconciliation pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Reservations released because they were not committed in time.
    pub expired: usize,
    /// Jobs whose subnets were released after their grace period.
    pub jobs_released: usize,
    /// Attachments released because their netns no longer exists.
    pub netns_gone: usize,
    /// Releases queued while the store was unavailable that landed now.
    pub retried_releases: usize,
    /// Job bridges and tunnels removed because no attachment uses them.
    pub bridges_removed: usize,
    /// Attachments kept because jobnetd cannot see their netns path (its
    /// directory is not mounted into jobnetd's container).
    pub netns_unknown: usize,
}

impl<S: Store> crate::server::ApiHandler for Engine<S> {
    async fn reserve(&self, req: api::ReserveRequest) -> Result<api::Attachment, ApiError> {
        Engine::reserve(self, req).await
    }
    async fn commit(&self, key: api::AttachmentKey) -> Result<api::Attachment, ApiError> {
        Engine::commit(self, key).await
    }
    async fn release(&self, key: api::AttachmentKey) -> Result<api::ReleaseResponse, ApiError> {
        Engine::release(self, key).await
    }
    async fn check(&self, key: api::AttachmentKey) -> Result<api::Attachment, ApiError> {
        Engine::check(self, key).await
    }
    async fn status(&self) -> Result<api::StatusResponse, ApiError> {
        Engine::status(self).await
    }
    async fn gc(&self, req: api::GcRequest) -> Result<api::GcResponse, ApiError> {
        Engine::gc(self, req).await
    }
    async fn jobs(&self, page: api::PageRequest) -> Result<api::Page<api::JobSummary>, ApiError> {
        Engine::jobs(self, page).await
    }
    async fn job(&self, job: String) -> Result<api::JobDetail, ApiError> {
        Engine::job(self, job).await
    }
    async fn attachments(
        &self,
        page: api::PageRequest,
    ) -> Result<api::Page<api::Attachment>, ApiError> {
        Engine::attachments(self, page).await
    }
    async fn vfs(&self) -> Result<Vec<api::VfInfo>, ApiError> {
        Engine::vfs(self).await
    }
    async fn gang_reserve(
        &self,
        req: api::GangReserveRequest,
    ) -> Result<api::GangReservation, ApiError> {
        Engine::gang_reserve(self, req).await
    }
    async fn nodes(&self) -> Result<Vec<api::NodeView>, ApiError> {
        Engine::nodes(self).await
    }
    async fn forget_node(
        &self,
        req: api::ForgetNodeRequest,
    ) -> Result<api::ForgetNodeResponse, ApiError> {
        Engine::forget_node(self, req).await
    }
}

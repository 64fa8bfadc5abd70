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
//!
//! - [`records`]: the daemon records, their keys and encoding;
//! - [`convert`]: IPAM answers and errors as API types;
//! - [`views`]: the API views of attachments, jobs and VFs;
//! - [`reserve`]: choosing, claiming and recording VFs for an attachment;
//! - [`commands`]: commit, release, gang reservation, GC, forgetting a node;
//! - [`bridges`]: the VFs' places on their job rails' bridges (`vxlan`);
//! - [`queries`]: status and the listings;
//! - [`cleanup`]: reconciliation and queued releases;
//! - [`handler`]: the engine as the API server's handler.

mod bridges;
mod cleanup;
mod commands;
mod convert;
mod handler;
mod queries;
mod records;
mod reserve;
mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use jobnet_api::{self as api, ApiError, ErrorCode};
use jobnet_hw::SysfsRoot;
use jobnet_ipam::{self as ipam, Clock, Ipam, Store};

use crate::config::{Config, DaemonPool, StoreBackend};
use crate::inventory::{FirstFree, Inventory, PoolLayout, VfBook, VfSelector};
use crate::isolation::Isolator;
use crate::keylock::KeyLocks;
use crate::metrics::Metrics;

pub use cleanup::ReconcileReport;
use convert::{api_err, mode, to_api_key};
use records::AttRecord;

/// Records read at a time by scans (reconcile, GC, owners), bounding their memory.
const PAGE: usize = 512;

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

    fn pool_settings(&self, pool: &str) -> Result<&PoolSettings, ApiError> {
        self.pools
            .get(pool)
            .ok_or_else(|| ApiError::new(ErrorCode::UnknownPool, format!("unknown pool {pool:?}")))
    }

    /// True when the attachment is young enough that its netns may not exist yet.
    fn in_grace(&self, a: &ipam::Attachment) -> bool {
        self.clock.now_ms().saturating_sub(a.created_ms) < self.netns_grace_ms
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
}

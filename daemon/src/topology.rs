//! The node's GPU/NIC topology as jobnetd holds it, and the topology-aware
//! VF choice.
//!
//! [`NodeTopology`] discovers the topology from the daemon's sysfs root at
//! start and again on every reconciliation; readers take a cheap snapshot.
//! [`TopologySelector`] plugs into the engine's [`VfSelector`] seam: with
//! the pod's GPUs known it picks the free VF on the NIC closest to them
//! (the rules are [`choice`]'s); without GPUs it is the first-free choice
//! the engine had before.

pub mod alignment;
pub mod choice;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use jobnet_hw::topology::{PathClass, PciTree, Rails, TopoView, Topology, TopologyError};
use jobnet_hw::{PciAddr, SysfsRoot};

use crate::config::{Config, RailPfs};
use crate::inventory::{FirstFree, RailWant, VfEntry, VfSelector};
use choice::{choose_vfs, FreeVfs, RailRequest};

/// One discovery's results.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// GPUs, NICs, NUMA nodes and the PCI tree.
    pub topo: Topology,
    /// The node's rails (NIC order), as the matrix and the hints number them.
    pub rails: Rails,
    /// The matrix/JSON/dot view served by `GET /v1/topology`.
    pub view: TopoView,
}

impl Snapshot {
    /// A node without GPUs or NICs (discovery failed or found nothing).
    pub fn empty() -> Self {
        let topo = Topology {
            tree: PciTree::from_functions(Vec::new()),
            gpus: Vec::new(),
            nics: Vec::new(),
            numa: Vec::new(),
        };
        let rails = Rails::from_pfs(Vec::new());
        let view = TopoView::build(&topo, &rails);
        Self { topo, rails, view }
    }

    fn build(topo: Topology, explicit_rails: Option<&[String]>) -> Self {
        let rails = match Rails::from_config(&topo, explicit_rails) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "the pool's rail list does not fit the topology; numbering rails by PCI address");
                Rails::by_pci_order(&topo)
            }
        };
        let view = TopoView::build(&topo, &rails);
        Self { topo, rails, view }
    }

    /// Resolves GPU references (PCI addresses or indexes) to addresses.
    /// NVIDIA UUIDs (`GPU-…`) are valid CNI input but sysfs cannot name
    /// them: they are returned apart, unresolved. An index or address the
    /// node does not have is an error.
    pub fn resolve_gpus(
        &self,
        refs: &[String],
    ) -> Result<(Vec<PciAddr>, Vec<String>), TopologyError> {
        let (uuids, rest): (Vec<&String>, Vec<&String>) =
            refs.iter().partition(|r| r.trim().starts_with("GPU-"));
        let gpus = self.topo.resolve_gpus(&rest)?;
        Ok((gpus, uuids.into_iter().cloned().collect()))
    }

    /// The rail of the NIC whose PF or VF is `pci`.
    pub fn rail_of(&self, pci: PciAddr) -> Option<usize> {
        let nic = self.topo.nic_of(pci)?;
        self.rails.rail_of(nic.pci())
    }

    /// Worst path class from `gpus` to `pci` (None without GPUs or when unknown).
    pub fn class(&self, gpus: &[PciAddr], pci: PciAddr) -> Option<PathClass> {
        self.topo.worst_class(gpus, pci)
    }

    /// The best (closest) worst-case class any of `candidates` offers `gpus`.
    pub fn best_class(
        &self,
        gpus: &[PciAddr],
        candidates: impl IntoIterator<Item = PciAddr>,
    ) -> Option<PathClass> {
        candidates
            .into_iter()
            .filter_map(|pci| self.class(gpus, pci))
            .min()
    }
}

/// The daemon's current topology; refreshed in place.
#[derive(Debug)]
pub struct NodeTopology {
    root: SysfsRoot,
    explicit_rails: Option<Vec<String>>,
    current: RwLock<Arc<Snapshot>>,
}

/// The default pool's rails as one PF per rail, when it lists them so.
fn explicit_rails(config: &Config) -> Option<Vec<String>> {
    let name = config.default_pool_name();
    let pool = config.pools.iter().find(|p| p.ipam.name == name)?;
    pool.pfs
        .as_ref()?
        .iter()
        .map(|r| match r {
            RailPfs::One(p) => Some(p.to_string()),
            RailPfs::Many(v) if v.len() == 1 => v.first().map(ToString::to_string),
            RailPfs::Many(_) => None,
        })
        .collect()
}

impl NodeTopology {
    /// Discovers the topology under `root`; a failure is logged and leaves
    /// an empty topology (the daemon then chooses VFs first-free).
    pub fn discover(root: SysfsRoot, explicit_rails: Option<Vec<String>>) -> Self {
        let t = Self {
            root,
            explicit_rails,
            current: RwLock::new(Arc::new(Snapshot::empty())),
        };
        if let Err(e) = t.refresh() {
            tracing::warn!(error = %e, "topology discovery failed; VF choice ignores GPUs");
        }
        t
    }

    /// Discovers the topology of the node `config` describes.
    pub fn from_config(config: &Config) -> Self {
        Self::discover(config.sysfs(), explicit_rails(config))
    }

    /// Reads sysfs again; on failure the previous snapshot stays.
    pub fn refresh(&self) -> Result<(), TopologyError> {
        let topo = Topology::discover(&self.root)?;
        let snap = Snapshot::build(topo, self.explicit_rails.as_deref());
        tracing::debug!(
            gpus = snap.topo.gpus.len(),
            nics = snap.topo.nics.len(),
            "topology discovered"
        );
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
        Ok(())
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Chooses VFs by GPU/NIC distance (see the module doc).
#[derive(Debug, Clone)]
pub struct TopologySelector {
    topo: Arc<NodeTopology>,
}

impl TopologySelector {
    /// A selector over `topo`.
    pub fn new(topo: Arc<NodeTopology>) -> Self {
        Self { topo }
    }
}

/// The best VF among `candidates` for `gpus`: by path class of its NIC,
/// then most free VFs on that NIC, then `rail_pref` order, then PF address.
fn best<'a>(
    snap: &Snapshot,
    gpus: &[PciAddr],
    candidates: &[&'a VfEntry],
    rail_pref: &[u16],
) -> Option<&'a VfEntry> {
    let mut per_pf: BTreeMap<PciAddr, (usize, Vec<PciAddr>)> = BTreeMap::new();
    for e in candidates {
        let Some(pos) = rail_pref.iter().position(|r| *r == e.rail) else {
            continue;
        };
        let slot = per_pf
            .entry(e.info.pf_pci)
            .or_insert_with(|| (pos, Vec::new()));
        slot.0 = slot.0.min(pos);
        slot.1.push(e.pci());
    }
    let mut order: Vec<(usize, PciAddr)> =
        per_pf.iter().map(|(pf, (pos, _))| (*pos, *pf)).collect();
    order.sort();
    let rails = Rails::from_pfs(order.into_iter().map(|(_, pf)| pf).collect());
    let mut free = FreeVfs::new();
    for (pf, (_, vfs)) in per_pf {
        free.set(pf, vfs);
    }
    let pick = choose_vfs(&snap.topo, &rails, gpus, &free, RailRequest::One).ok()?;
    let vf = pick.first()?.vf;
    candidates.iter().copied().find(|e| e.pci() == vf)
}

impl VfSelector for TopologySelector {
    fn select<'a>(
        &self,
        free: &[&'a VfEntry],
        want: &RailWant,
        gpus: &[String],
    ) -> Option<Vec<&'a VfEntry>> {
        if gpus.is_empty() {
            return FirstFree.select(free, want, gpus);
        }
        let snap = self.topo.snapshot();
        let gpus = match snap.resolve_gpus(gpus) {
            Ok((g, _)) if !g.is_empty() => g,
            Ok(_) => return FirstFree.select(free, want, &[]),
            Err(e) => {
                // Requests are checked against the topology before they get
                // here; this only happens when a refresh lost the GPU since.
                tracing::warn!(error = %e, "GPU not in the topology; choosing the first free VF");
                return FirstFree.select(free, want, &[]);
            }
        };
        match want {
            RailWant::Any(rails) => best(&snap, &gpus, free, rails).map(|e| vec![e]),
            RailWant::Each(rails) => rails
                .iter()
                .map(|r| best(&snap, &gpus, free, std::slice::from_ref(r)))
                .collect(),
        }
    }
}

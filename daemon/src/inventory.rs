//! The node's VFs per pool and rail, read from sysfs, and the choice of a VF.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use jobnet_api::AttachmentKey;
use jobnet_hw::sriov::{self, SriovError, VfInfo};
use jobnet_hw::{PciAddr, SysfsRoot};

/// A PF as the config names it: by PCI address or by netdev name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PfRef {
    /// `0000:3b:00.0`.
    Pci(PciAddr),
    /// `ens1f0`.
    Netdev(String),
}

impl FromStr for PfRef {
    type Err = SriovError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(pci) = s.parse::<PciAddr>() {
            return Ok(Self::Pci(pci));
        }
        sriov::validate_netdev_name(s)?;
        Ok(Self::Netdev(s.to_owned()))
    }
}

impl fmt::Display for PfRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci(p) => write!(f, "{p}"),
            Self::Netdev(n) => f.write_str(n),
        }
    }
}

impl<'de> serde::Deserialize<'de> for PfRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for PfRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Which PFs make up each rail of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLayout {
    /// Pool name.
    pub pool: String,
    /// Number of rails the pool's IPAM config has.
    pub rail_count: u16,
    /// PFs per rail; `None` means every SR-IOV PF of the node: all on rail 0
    /// for a one-rail pool, else PF *i* by PCI address is rail *i* (extra PFs unused).
    pub pfs: Option<Vec<Vec<PfRef>>>,
}

/// One VF as the daemon sees it: its pool, rail and sysfs facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfEntry {
    /// Pool it serves.
    pub pool: String,
    /// Rail index within the pool.
    pub rail: u16,
    /// What sysfs says about it.
    pub info: VfInfo,
}

impl VfEntry {
    /// The VF's PCI address.
    pub fn pci(&self) -> PciAddr {
        self.info.pci
    }
}

/// Why the inventory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A configured PF could not be found or read.
    #[error("pool {pool:?}: PF {pf}: {source}")]
    Pf {
        /// Pool name.
        pool: String,
        /// The PF as configured.
        pf: String,
        /// What sysfs said.
        #[source]
        source: SriovError,
    },
    /// Listing the node's PFs failed.
    #[error("listing SR-IOV PFs: {0}")]
    List(#[source] SriovError),
}

/// One pool's VFs in rail, PF, VF-index order.
#[derive(Debug, Clone, Default)]
struct PoolVfs {
    rail_count: u16,
    vfs: Vec<VfEntry>,
}

/// A snapshot of the node's VFs, grouped by pool.
///
/// Built once per scan and then only read: a reserve looks at its pool's list
/// as a slice, so choosing a VF costs no map lookups per candidate.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pools: BTreeMap<String, PoolVfs>,
    /// Where each VF appears: (pool, position in that pool's list).
    places: HashMap<PciAddr, Vec<(String, usize)>>,
}

impl Inventory {
    /// Reads sysfs for every pool's PFs and their VFs.
    pub fn scan(root: &SysfsRoot, layouts: &[PoolLayout]) -> Result<Self, InventoryError> {
        let mut inv = Self::default();
        for layout in layouts {
            let rails = resolve_rails(root, layout)?;
            let mut list: Vec<VfEntry> = Vec::new();
            for (rail, pfs) in rails.iter().enumerate() {
                let rail = u16::try_from(rail).unwrap_or(u16::MAX);
                for pf in pfs {
                    let vfs = sriov::list_vfs(root, *pf).map_err(|source| InventoryError::Pf {
                        pool: layout.pool.clone(),
                        pf: pf.to_string(),
                        source,
                    })?;
                    for info in vfs {
                        let places = inv.places.entry(info.pci).or_default();
                        // A PF listed twice in one pool still gives each VF one slot.
                        if places.iter().any(|(p, _)| *p == layout.pool) {
                            continue;
                        }
                        places.push((layout.pool.clone(), list.len()));
                        list.push(VfEntry {
                            pool: layout.pool.clone(),
                            rail,
                            info,
                        });
                    }
                }
            }
            inv.pools.insert(
                layout.pool.clone(),
                PoolVfs {
                    rail_count: layout.rail_count,
                    vfs: list,
                },
            );
        }
        Ok(inv)
    }

    /// The VF at `pci` as seen by `pool`, if that pool serves it.
    pub fn get(&self, pool: &str, pci: PciAddr) -> Option<&VfEntry> {
        let (_, i) = self.places.get(&pci)?.iter().find(|(p, _)| p == pool)?;
        self.pools.get(pool)?.vfs.get(*i)
    }

    /// True when some pool serves the VF at `pci`.
    pub fn knows(&self, pci: PciAddr) -> bool {
        self.places.contains_key(&pci)
    }

    /// Every (pool, position in [`Inventory::pool_vfs`]) where the VF at `pci` appears.
    pub fn places(&self, pci: PciAddr) -> &[(String, usize)] {
        self.places.get(&pci).map_or(&[], Vec::as_slice)
    }

    /// The VFs of `pool` in rail, then PF, then VF-index order.
    pub fn pool_vfs(&self, pool: &str) -> &[VfEntry] {
        self.pools.get(pool).map_or(&[], |p| p.vfs.as_slice())
    }

    /// Names of the pools scanned.
    pub fn pool_names(&self) -> impl Iterator<Item = &str> {
        self.pools.keys().map(String::as_str)
    }

    /// Number of rails of `pool` (0 when the pool has no devices).
    pub fn rail_count(&self, pool: &str) -> u16 {
        self.pools.get(pool).map_or(0, |p| p.rail_count)
    }

    /// Every (pool, VF) entry.
    pub fn all(&self) -> impl Iterator<Item = &VfEntry> {
        self.pools.values().flat_map(|p| p.vfs.iter())
    }
}

/// One VF slot of a pool in the [`VfBook`].
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Owned by an attachment or claimed by an in-flight reserve.
    busy: bool,
    /// Bound to a userspace (DPDK) driver: never handed out.
    dpdk: bool,
}

/// Who holds which VF, kept next to the inventory it indexes so that both
/// always change together (one mutex in the engine guards the whole book).
///
/// Per pool a slot vector aligned with [`Inventory::pool_vfs`] and a free
/// counter make choosing a VF and the free-VF gauges cost no map lookup per VF.
#[derive(Debug, Default)]
pub struct VfBook {
    inv: Arc<Inventory>,
    /// Durable owners (mirror of the store's VF owner records of this node).
    owners: HashMap<PciAddr, AttachmentKey>,
    /// VFs claimed by reserves whose write is in flight.
    claimed: HashSet<PciAddr>,
    slots: HashMap<String, Vec<Slot>>,
    /// Per pool: (usable VFs, free VFs).
    counts: HashMap<String, (u32, u32)>,
    /// Bumped by every change of `owners`: a reload from the store applies
    /// its snapshot only if no owner changed while it read (see
    /// [`VfBook::owner_changes`]).
    owner_changes: u64,
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl VfBook {
    /// A book over `inv` with no owner.
    pub fn new(inv: Arc<Inventory>) -> Self {
        let mut b = Self {
            inv,
            ..Self::default()
        };
        b.rebuild();
        b
    }

    /// The inventory the book indexes.
    pub fn inventory(&self) -> &Arc<Inventory> {
        &self.inv
    }

    /// Replaces the inventory (after a rescan), keeping owners and claims.
    pub fn set_inventory(&mut self, inv: Arc<Inventory>) {
        self.inv = inv;
        self.rebuild();
    }

    /// Replaces every durable owner (after reading them from the store).
    pub fn set_owners(&mut self, owners: HashMap<PciAddr, AttachmentKey>) {
        self.owners = owners;
        self.owner_changes += 1;
        self.rebuild();
    }

    /// How many times the owners changed: equal before and after a read of
    /// the store means the read is not older than the book.
    pub fn owner_changes(&self) -> u64 {
        self.owner_changes
    }

    fn rebuild(&mut self) {
        self.slots.clear();
        self.counts.clear();
        for pool in self.inv.pool_names() {
            let slots: Vec<Slot> = self
                .inv
                .pool_vfs(pool)
                .iter()
                .map(|e| Slot {
                    busy: self.owners.contains_key(&e.pci()) || self.claimed.contains(&e.pci()),
                    dpdk: e.info.is_dpdk(),
                })
                .collect();
            let usable = slots.iter().filter(|s| !s.dpdk).count();
            let free = slots.iter().filter(|s| !s.dpdk && !s.busy).count();
            self.counts
                .insert(pool.to_owned(), (count(usable), count(free)));
            self.slots.insert(pool.to_owned(), slots);
        }
    }

    /// Brings the slots of `pci` in line with its owner and claim.
    fn refresh(&mut self, pci: PciAddr) {
        let busy = self.owners.contains_key(&pci) || self.claimed.contains(&pci);
        for (pool, i) in self.inv.places(pci) {
            let Some(slot) = self.slots.get_mut(pool).and_then(|v| v.get_mut(*i)) else {
                continue;
            };
            if slot.busy == busy {
                continue;
            }
            slot.busy = busy;
            if !slot.dpdk {
                if let Some((_, free)) = self.counts.get_mut(pool) {
                    *free = if busy {
                        free.saturating_sub(1)
                    } else {
                        free.saturating_add(1)
                    };
                }
            }
        }
    }

    /// The durable owner of a VF.
    pub fn owner(&self, pci: PciAddr) -> Option<&AttachmentKey> {
        self.owners.get(&pci)
    }

    /// The VFs `owner` durably owns.
    pub fn owned_by(&self, owner: &AttachmentKey) -> Vec<PciAddr> {
        self.owners
            .iter()
            .filter(|(_, o)| *o == owner)
            .map(|(p, _)| *p)
            .collect()
    }

    /// True when `owner` durably owns any VF (it has a recorded attachment).
    pub fn owns_any(&self, owner: &AttachmentKey) -> bool {
        self.owners.values().any(|o| o == owner)
    }

    /// True when an in-flight reserve has claimed the VF.
    pub fn is_claimed(&self, pci: PciAddr) -> bool {
        self.claimed.contains(&pci)
    }

    /// Marks VFs as claimed by an in-flight reserve.
    pub fn claim(&mut self, pcis: &[PciAddr]) {
        for pci in pcis {
            self.claimed.insert(*pci);
            self.refresh(*pci);
        }
    }

    /// Ends claims; with `owner`, the VFs are now durably owned by it.
    pub fn unclaim(&mut self, pcis: &[PciAddr], owner: Option<&AttachmentKey>) {
        for pci in pcis {
            self.claimed.remove(pci);
            if let Some(o) = owner {
                self.owners.insert(*pci, o.clone());
                self.owner_changes += 1;
            }
            self.refresh(*pci);
        }
    }

    /// Forgets `owner`'s ownership of `pci` (after its release is durable).
    pub fn disown(&mut self, pci: PciAddr, owner: &AttachmentKey) {
        if self.owners.get(&pci) == Some(owner) {
            self.owners.remove(&pci);
            self.owner_changes += 1;
            self.refresh(pci);
        }
    }

    /// The VFs of `pool` that can be handed out now, in inventory order.
    pub fn free_vfs(&self, pool: &str) -> Vec<&VfEntry> {
        let Some(slots) = self.slots.get(pool) else {
            return Vec::new();
        };
        self.inv
            .pool_vfs(pool)
            .iter()
            .zip(slots)
            .filter(|(_, s)| !s.busy && !s.dpdk)
            .map(|(e, _)| e)
            .collect()
    }

    /// (usable, free) VFs of `pool`; usable excludes userspace-bound VFs.
    pub fn counts(&self, pool: &str) -> (u32, u32) {
        self.counts.get(pool).copied().unwrap_or((0, 0))
    }
}

/// PF addresses per rail for one pool.
fn resolve_rails(
    root: &SysfsRoot,
    layout: &PoolLayout,
) -> Result<Vec<Vec<PciAddr>>, InventoryError> {
    let Some(rails) = &layout.pfs else {
        let pfs: Vec<PciAddr> = sriov::list_pfs(root)
            .map_err(InventoryError::List)?
            .into_iter()
            .map(|pf| pf.pci)
            .collect();
        if layout.rail_count <= 1 {
            return Ok(vec![pfs]);
        }
        if pfs.len() > usize::from(layout.rail_count) {
            tracing::warn!(pool = %layout.pool, pfs = pfs.len(), rails = layout.rail_count,
                "more SR-IOV PFs than rails; list them under `pfs` to use the rest");
        }
        return Ok(pfs
            .into_iter()
            .take(usize::from(layout.rail_count))
            .map(|pf| vec![pf])
            .collect());
    };
    rails
        .iter()
        .map(|pfs| {
            pfs.iter()
                .map(|pf| {
                    let res = match pf {
                        PfRef::Pci(p) => sriov::read_pf(root, *p).map(|i| i.pci),
                        PfRef::Netdev(n) => sriov::pf_by_netdev(root, n),
                    };
                    res.map_err(|source| InventoryError::Pf {
                        pool: layout.pool.clone(),
                        pf: pf.to_string(),
                        source,
                    })
                })
                .collect()
        })
        .collect()
}

/// Which rails a reservation needs VFs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RailWant {
    /// One VF on any one of these rails (in order of preference).
    Any(Vec<u16>),
    /// One VF on each of these rails.
    Each(Vec<u16>),
}

impl fmt::Display for RailWant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any(r) => write!(f, "any of rails {r:?}"),
            Self::Each(r) => write!(f, "each of rails {r:?}"),
        }
    }
}

/// Picks VFs for an attachment among free candidates (the topology-aware seam).
pub trait VfSelector: Send + Sync {
    /// The chosen VFs (one per rail), or `None` when `want` cannot be met.
    /// `gpus` are the pod's GPUs, for choosing the VFs closest to them.
    fn select<'a>(
        &self,
        free: &[&'a VfEntry],
        want: &RailWant,
        gpus: &[String],
    ) -> Option<Vec<&'a VfEntry>>;
}

/// Takes the first free VF of each rail (rail, PF, VF-index order).
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstFree;

impl VfSelector for FirstFree {
    fn select<'a>(
        &self,
        free: &[&'a VfEntry],
        want: &RailWant,
        _gpus: &[String],
    ) -> Option<Vec<&'a VfEntry>> {
        let first_on = |rail: &u16| free.iter().copied().find(|e| e.rail == *rail);
        match want {
            RailWant::Any(rails) => rails.iter().find_map(first_on).map(|e| vec![e]),
            RailWant::Each(rails) => rails.iter().map(first_on).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobnet_tests::fake_sysfs::FakeSysfs;

    #[test]
    fn scans_all_pfs_by_address_and_selects_first_free() {
        let fake = FakeSysfs::new();
        fake.pf("0000:3b:00.0", "ens1f0", 3);
        fake.pf("0000:1a:00.0", "ens2f0", 2);
        let inv = Inventory::scan(
            &fake.root(),
            &[PoolLayout {
                pool: "p".into(),
                rail_count: 2,
                pfs: None,
            }],
        )
        .unwrap();
        assert_eq!(inv.rail_count("p"), 2);
        let vfs: Vec<&VfEntry> = inv.pool_vfs("p").iter().collect();
        assert_eq!(vfs.len(), 5);
        // Rail 0 is the lower PCI address.
        assert_eq!(vfs[0].info.pf_pci.to_string(), "0000:1a:00.0");
        assert_eq!(vfs[0].rail, 0);
        let sel = FirstFree
            .select(&vfs[1..], &RailWant::Each(vec![1, 0]), &[])
            .unwrap();
        assert_eq!(sel[0].rail, 1);
        assert_eq!(sel[0].info.vf_index, 0);
        assert_eq!(sel[1].info.vf_index, 1);
        assert!(FirstFree
            .select(&vfs[2..], &RailWant::Each(vec![0]), &[])
            .is_none());
        let any = FirstFree
            .select(&vfs[2..], &RailWant::Any(vec![0, 1]), &[])
            .unwrap();
        assert_eq!(any.len(), 1);
        assert_eq!(any[0].rail, 1);
    }

    #[test]
    fn book_tracks_claims_owners_and_free_counts() {
        let fake = FakeSysfs::new();
        fake.pf("0000:3b:00.0", "ens1f0", 4);
        let layout = PoolLayout {
            pool: "p".into(),
            rail_count: 1,
            pfs: None,
        };
        let scan =
            || Arc::new(Inventory::scan(&fake.root(), std::slice::from_ref(&layout)).unwrap());
        let mut book = VfBook::new(scan());
        let vfs: Vec<PciAddr> = book
            .inventory()
            .pool_vfs("p")
            .iter()
            .map(VfEntry::pci)
            .collect();
        assert_eq!(book.counts("p"), (4, 4));
        let owner = AttachmentKey::new("c1", "net1");
        book.claim(&vfs[..2]);
        assert_eq!(book.counts("p"), (4, 2));
        assert_eq!(
            book.free_vfs("p")
                .iter()
                .map(|e| e.pci())
                .collect::<Vec<_>>(),
            vfs[2..]
        );
        // One claim ends in ownership, the other is dropped.
        book.unclaim(&vfs[..1], Some(&owner));
        book.unclaim(&vfs[1..2], None);
        assert_eq!(book.counts("p"), (4, 3));
        assert_eq!(book.owner(vfs[0]), Some(&owner));
        assert!(!book.is_claimed(vfs[0]));
        // Only the owner can disown.
        let changes = book.owner_changes();
        book.disown(vfs[0], &AttachmentKey::new("other", "net1"));
        assert_eq!(book.counts("p"), (4, 3));
        // What changed no owner leaves the count a reload compares alone;
        // a new owner moves it.
        book.claim(&vfs[2..3]);
        book.unclaim(&vfs[2..3], None);
        assert_eq!(book.owner_changes(), changes);
        book.claim(&vfs[2..3]);
        book.unclaim(&vfs[2..3], Some(&owner));
        assert!(book.owner_changes() > changes);
        book.disown(vfs[2], &owner);
        // A VF bound to vfio-pci is neither usable nor free; owners survive a rescan.
        fake.set_driver(&vfs[3].to_string(), "vfio-pci");
        book.set_inventory(scan());
        assert_eq!(book.counts("p"), (3, 2));
        assert_eq!(book.owner(vfs[0]), Some(&owner));
        book.disown(vfs[0], &owner);
        assert_eq!(book.counts("p"), (3, 3));
        assert_eq!(book.counts("unknown"), (0, 0));
    }

    #[test]
    fn explicit_rails_by_netdev_and_unknown_pf() {
        let fake = FakeSysfs::new();
        fake.pf("0000:3b:00.0", "ens1f0", 1);
        fake.pf("0000:1a:00.0", "ens2f0", 1);
        let layout = PoolLayout {
            pool: "p".into(),
            rail_count: 2,
            pfs: Some(vec![
                vec!["ens1f0".parse().unwrap()],
                vec!["0000:1a:00.0".parse().unwrap()],
            ]),
        };
        let inv = Inventory::scan(&fake.root(), &[layout]).unwrap();
        let vfs = inv.pool_vfs("p");
        assert_eq!(inv.places(vfs[1].pci()), &[("p".to_string(), 1)]);
        assert_eq!(inv.get("p", vfs[1].pci()), Some(&vfs[1]));
        assert_eq!(vfs[0].info.pf_pci.to_string(), "0000:3b:00.0");
        assert_eq!(vfs[1].rail, 1);
        let bad = PoolLayout {
            pool: "p".into(),
            rail_count: 1,
            pfs: Some(vec![vec!["ens9".parse().unwrap()]]),
        };
        assert!(Inventory::scan(&fake.root(), &[bad]).is_err());
        assert!("../x".parse::<PfRef>().is_err());
    }
}

//! The node's VFs per pool and rail, read from sysfs, and the choice of a VF.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

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

/// A snapshot of the node's VFs, grouped by pool.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    vfs: BTreeMap<PciAddr, Vec<VfEntry>>,
    by_pool: BTreeMap<String, Vec<PciAddr>>,
    rails: BTreeMap<String, u16>,
}

impl Inventory {
    /// Reads sysfs for every pool's PFs and their VFs.
    pub fn scan(root: &SysfsRoot, layouts: &[PoolLayout]) -> Result<Self, InventoryError> {
        let mut inv = Self::default();
        for layout in layouts {
            let rails = resolve_rails(root, layout)?;
            inv.rails.insert(layout.pool.clone(), layout.rail_count);
            let mut list = Vec::new();
            for (rail, pfs) in rails.iter().enumerate() {
                let rail = u16::try_from(rail).unwrap_or(u16::MAX);
                for pf in pfs {
                    let vfs = sriov::list_vfs(root, *pf).map_err(|source| InventoryError::Pf {
                        pool: layout.pool.clone(),
                        pf: pf.to_string(),
                        source,
                    })?;
                    for info in vfs {
                        list.push(info.pci);
                        inv.vfs.entry(info.pci).or_default().push(VfEntry {
                            pool: layout.pool.clone(),
                            rail,
                            info,
                        });
                    }
                }
            }
            inv.by_pool.insert(layout.pool.clone(), list);
        }
        Ok(inv)
    }

    /// The VF at `pci` as seen by `pool`, if that pool serves it.
    pub fn get(&self, pool: &str, pci: PciAddr) -> Option<&VfEntry> {
        self.vfs.get(&pci)?.iter().find(|e| e.pool == pool)
    }

    /// True when some pool serves the VF at `pci`.
    pub fn knows(&self, pci: PciAddr) -> bool {
        self.vfs.contains_key(&pci)
    }

    /// The VFs of `pool` in rail, then PF, then VF-index order.
    pub fn pool_vfs(&self, pool: &str) -> Vec<&VfEntry> {
        self.by_pool
            .get(pool)
            .map(|list| list.iter().filter_map(|p| self.get(pool, *p)).collect())
            .unwrap_or_default()
    }

    /// Number of rails of `pool` (0 when the pool has no devices).
    pub fn rail_count(&self, pool: &str) -> u16 {
        self.rails.get(pool).copied().unwrap_or(0)
    }

    /// Every (pool, VF) entry.
    pub fn all(&self) -> impl Iterator<Item = &VfEntry> {
        self.vfs.values().flatten()
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
    use crate::testing::FakeSysfs;

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
        let vfs = inv.pool_vfs("p");
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

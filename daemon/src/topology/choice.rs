//! Which free VF a pod gets.
//!
//! jobnet's choice: the free VF on the NIC closest to the pod's GPUs.
//! "Closest" for a set of GPUs is decided by, in order:
//! 1. the worst path class from any of the pod's GPUs to the NIC (a ring
//!    or tree is as slow as its slowest hop, so the worst GPU matters most);
//! 2. the sum of the class ranks over the GPUs (among NICs with the same
//!    worst case, the one closer to more of the GPUs);
//! 3. the most free VFs (spreads pods over NICs, keeps room on each rail);
//! 4. the lowest rail (stable answers).
//!
//! The baseline is what the SR-IOV device plugin does without topology:
//! the free VF with the lowest PCI address, whatever the GPUs
//! ([`super::alignment`] compares the two).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use jobnet_hw::topology::{path_class, PathClass, Rails, Topology};
use jobnet_hw::PciAddr;

/// Free VFs per NIC (PF address -> VFs in the order to hand them out).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FreeVfs {
    per_pf: BTreeMap<PciAddr, Vec<PciAddr>>,
}

impl FreeVfs {
    /// No free VF anywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every VF of every NIC of `topo`, by VF index.
    pub fn all_of(topo: &Topology) -> Self {
        let mut f = Self::new();
        for n in &topo.nics {
            f.set(n.pci(), n.vfs.iter().map(|v| v.info.pci).collect());
        }
        f
    }

    /// Sets the free VFs of the NIC whose PF is `pf`.
    pub fn set(&mut self, pf: PciAddr, vfs: Vec<PciAddr>) {
        self.per_pf.insert(pf, vfs);
    }

    /// Marks `vf` as taken; false when it was not free.
    pub fn take(&mut self, vf: PciAddr) -> bool {
        for vfs in self.per_pf.values_mut() {
            if let Some(i) = vfs.iter().position(|v| *v == vf) {
                vfs.remove(i);
                return true;
            }
        }
        false
    }

    /// Free VFs of `pf`.
    pub fn of(&self, pf: PciAddr) -> &[PciAddr] {
        self.per_pf.get(&pf).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Total free VFs.
    pub fn total(&self) -> usize {
        self.per_pf.values().map(Vec::len).sum()
    }

    /// (PF, VF) pairs of every free VF.
    pub fn iter(&self) -> impl Iterator<Item = (PciAddr, PciAddr)> + '_ {
        self.per_pf
            .iter()
            .flat_map(|(pf, vfs)| vfs.iter().map(move |vf| (*pf, *vf)))
    }
}

/// How many rails an attachment asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RailRequest {
    /// One VF, on the best NIC (the default).
    #[default]
    One,
    /// One VF on every rail.
    All,
}

/// One chosen VF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VfPick {
    /// The NIC's rail.
    pub rail: usize,
    /// The NIC's PF.
    pub pf: PciAddr,
    /// The VF.
    pub vf: PciAddr,
    /// Worst path class from the pod's GPUs to the VF (None without GPUs).
    pub class: Option<PathClass>,
}

/// Why no VF could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    /// The node has no rails (no SR-IOV NIC).
    #[error("this node has no SR-IOV NIC")]
    NoRails,
    /// No NIC has a free VF.
    #[error("no free VF on any NIC")]
    NoFreeVf,
    /// `rails: all` and one rail is full.
    #[error("rail {rail} (NIC {pf}) has no free VF")]
    RailExhausted {
        /// The rail.
        rail: usize,
        /// Its PF.
        pf: PciAddr,
    },
}

/// (worst class, sum of class ranks) from `gpus` to `target`.
fn closeness(topo: &Topology, gpus: &[PciAddr], target: PciAddr) -> (Option<PathClass>, u32) {
    let Some(t) = topo.placement(target) else {
        return (Some(PathClass::Sys), u32::MAX);
    };
    let mut worst = None;
    let mut sum = 0u32;
    for g in gpus {
        // An unknown GPU cannot be near anything.
        let c = topo
            .placement(*g)
            .map(|p| path_class(&p, &t))
            .unwrap_or(PathClass::Sys);
        worst = worst.max(Some(c));
        sum = sum.saturating_add(c.rank());
    }
    (worst, sum)
}

/// Picks the VF(s) for a pod whose GPUs are `gpus` (empty: unknown).
///
/// `One`: the first free VF of the best NIC (see the module doc for
/// "best"). `All`: the first free VF of every rail, in rail order; fails
/// when a rail has none. Nothing is marked taken: the caller reserves.
pub fn choose_vfs(
    topo: &Topology,
    rails: &Rails,
    gpus: &[PciAddr],
    free: &FreeVfs,
    request: RailRequest,
) -> Result<Vec<VfPick>, ChoiceError> {
    if rails.is_empty() {
        return Err(ChoiceError::NoRails);
    }
    match request {
        RailRequest::All => rails
            .pfs()
            .iter()
            .enumerate()
            .map(|(rail, pf)| {
                let vf = *free
                    .of(*pf)
                    .first()
                    .ok_or(ChoiceError::RailExhausted { rail, pf: *pf })?;
                Ok(VfPick {
                    rail,
                    pf: *pf,
                    vf,
                    class: closeness(topo, gpus, vf).0,
                })
            })
            .collect(),
        RailRequest::One => {
            let best = rails
                .pfs()
                .iter()
                .enumerate()
                .filter_map(|(rail, pf)| {
                    let vfs = free.of(*pf);
                    let vf = *vfs.first()?;
                    let (worst, sum) = closeness(topo, gpus, *pf);
                    let key = (worst, sum, Reverse(vfs.len()), rail);
                    Some((
                        key,
                        VfPick {
                            rail,
                            pf: *pf,
                            vf,
                            class: worst,
                        },
                    ))
                })
                .min_by_key(|(key, _)| *key)
                .map(|(_, pick)| pick)
                .ok_or(ChoiceError::NoFreeVf)?;
            Ok(vec![best])
        }
    }
}

/// The baseline: the free VF with the lowest PCI address, ignoring GPUs.
pub fn first_free_vf(rails: &Rails, free: &FreeVfs) -> Option<VfPick> {
    let (pf, vf) = free
        .iter()
        .filter(|(pf, _)| rails.rail_of(*pf).is_some())
        .min_by_key(|(_, vf)| *vf)?;
    Some(VfPick {
        rail: rails.rail_of(pf)?,
        pf,
        vf,
        class: None,
    })
}

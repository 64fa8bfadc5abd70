//! Rails: NIC *i* of every node of a pool is rail *i*.
//!
//! In a rail-optimized cluster, NIC *i* of every server plugs into the same
//! leaf switch ("rail" *i*), so GPU *i* of one server reaches GPU *i* of
//! another in one switch hop. The rail order is the PCI address order of
//! the node's SR-IOV NICs unless the pool lists its rails explicitly (PF
//! netdev names or PCI addresses, in rail order). Rails only work when all
//! nodes agree on them: same number, same NIC kind and speed per rail.

use std::fmt;

use super::discover::Topology;
use crate::pci::PciAddr;
use crate::rdma::LinkLayer;

/// Why a pool's explicit rail list does not fit this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RailError {
    /// An entry names no SR-IOV NIC of this node.
    #[error(
        "rail entry {0:?} is neither the PCI address nor a netdev of an SR-IOV NIC on this node"
    )]
    UnknownNic(String),
    /// Two entries name the same NIC.
    #[error("rail entry {entry:?} names the NIC of rail {rail} again")]
    Duplicate {
        /// The entry.
        entry: String,
        /// The rail that already has that NIC.
        rail: usize,
    },
}

/// The node's rails: PF addresses in rail order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rails {
    pfs: Vec<PciAddr>,
}

/// What a rail is made of, for comparing nodes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RailInfo {
    /// Rail number.
    pub rail: usize,
    /// The PF on this node.
    pub pf: PciAddr,
    /// PCI vendor id of the NIC.
    pub vendor: u16,
    /// PCI device id of the NIC.
    pub device: u16,
    /// `Ethernet` or `InfiniBand`, when the NIC has RDMA.
    pub link_layer: Option<String>,
    /// Port rate in Mbit/s, when known.
    pub speed_mbps: Option<u64>,
    /// The PF's first RDMA device.
    pub rdma_device: Option<String>,
    /// The PF's netdevs.
    pub netdevs: Vec<String>,
}

impl RailInfo {
    /// `15b3:101d Ethernet 200000 Mb/s`: what must match across nodes.
    pub fn kind(&self) -> String {
        format!(
            "{:04x}:{:04x} {}",
            self.vendor,
            self.device,
            self.link_layer.as_deref().unwrap_or("no-RDMA")
        )
    }
}

/// A node's rails, as published for the pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RailSummary {
    /// One entry per rail, in rail order.
    pub rails: Vec<RailInfo>,
}

/// How two nodes' rails disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RailMismatch {
    /// Different numbers of rails.
    #[error("node {a_node} has {a} rails but node {b_node} has {b}")]
    Count {
        /// First node.
        a_node: String,
        /// Its rail count.
        a: usize,
        /// Second node.
        b_node: String,
        /// Its rail count.
        b: usize,
    },
    /// Rail `rail` is a different kind of NIC.
    #[error("rail {rail}: node {a_node} has {a} ({a_pf}) but node {b_node} has {b} ({b_pf})")]
    Kind {
        /// The rail.
        rail: usize,
        /// First node.
        a_node: String,
        /// Its NIC kind.
        a: String,
        /// Its PF.
        a_pf: PciAddr,
        /// Second node.
        b_node: String,
        /// Its NIC kind.
        b: String,
        /// Its PF.
        b_pf: PciAddr,
    },
    /// Rail `rail` runs at different speeds.
    #[error("rail {rail}: node {a_node} runs at {a} but node {b_node} at {b}")]
    Speed {
        /// The rail.
        rail: usize,
        /// First node.
        a_node: String,
        /// Its speed.
        a: Speed,
        /// Second node.
        b_node: String,
        /// Its speed.
        b: Speed,
    },
}

/// A port speed for messages (`200000 Mb/s`, `unknown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Speed(pub Option<u64>);

impl fmt::Display for Speed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(m) => write!(f, "{m} Mb/s"),
            None => f.write_str("unknown speed"),
        }
    }
}

impl Rails {
    /// Rails by PCI address order of the node's SR-IOV NICs.
    pub fn by_pci_order(topo: &Topology) -> Self {
        let mut pfs: Vec<PciAddr> = topo.nics.iter().map(|n| n.pci()).collect();
        pfs.sort();
        Self { pfs }
    }

    /// Rails from the pool's explicit list (PF netdev names or PCI
    /// addresses, in rail order), or by PCI order when there is none.
    pub fn from_config<S: AsRef<str>>(
        topo: &Topology,
        explicit: Option<&[S]>,
    ) -> Result<Self, RailError> {
        let Some(list) = explicit else {
            return Ok(Self::by_pci_order(topo));
        };
        let mut pfs: Vec<PciAddr> = Vec::new();
        for entry in list {
            let e = entry.as_ref().trim();
            let by_pci = e.parse::<PciAddr>().ok();
            let nic = topo.nics.iter().find(|n| match by_pci {
                Some(a) => n.pci() == a,
                None => n.pf.netdevs.iter().any(|d| d == e),
            });
            let pf = nic
                .map(|n| n.pci())
                .ok_or_else(|| RailError::UnknownNic(e.chars().take(64).collect()))?;
            if let Some(rail) = pfs.iter().position(|p| *p == pf) {
                return Err(RailError::Duplicate {
                    entry: e.chars().take(64).collect(),
                    rail,
                });
            }
            pfs.push(pf);
        }
        Ok(Self { pfs })
    }

    /// Rails in the given PF order (no check against a node).
    pub fn from_pfs(pfs: Vec<PciAddr>) -> Self {
        Self { pfs }
    }

    /// The rail of the NIC whose PF is `pf`.
    pub fn rail_of(&self, pf: PciAddr) -> Option<usize> {
        self.pfs.iter().position(|p| *p == pf)
    }

    /// The PF of rail `rail`.
    pub fn pf(&self, rail: usize) -> Option<PciAddr> {
        self.pfs.get(rail).copied()
    }

    /// PFs in rail order.
    pub fn pfs(&self) -> &[PciAddr] {
        &self.pfs
    }

    /// Number of rails.
    pub fn len(&self) -> usize {
        self.pfs.len()
    }

    /// Whether there is no rail.
    pub fn is_empty(&self) -> bool {
        self.pfs.is_empty()
    }

    /// What each rail is made of on this node.
    pub fn summary(&self, topo: &Topology) -> RailSummary {
        let rails = self
            .pfs
            .iter()
            .enumerate()
            .filter_map(|(rail, pf)| {
                let nic = topo.nic_of(*pf)?;
                Some(RailInfo {
                    rail,
                    pf: *pf,
                    vendor: nic.vendor,
                    device: nic.device,
                    link_layer: nic.link_layer().map(|l| {
                        match l {
                            LinkLayer::Ethernet => "Ethernet",
                            LinkLayer::InfiniBand => "InfiniBand",
                        }
                        .to_owned()
                    }),
                    speed_mbps: nic.speed_mbps(),
                    rdma_device: nic.rdma_name().map(str::to_owned),
                    netdevs: nic.pf.netdevs.clone(),
                })
            })
            .collect();
        RailSummary { rails }
    }
}

/// Checks that two nodes' rails agree: same count, and per rail the same
/// NIC kind (vendor, device, link layer) and speed. PCI addresses and
/// names may differ between nodes.
pub fn check_rails_agree(
    a_node: &str,
    a: &RailSummary,
    b_node: &str,
    b: &RailSummary,
) -> Result<(), RailMismatch> {
    if a.rails.len() != b.rails.len() {
        return Err(RailMismatch::Count {
            a_node: a_node.to_owned(),
            a: a.rails.len(),
            b_node: b_node.to_owned(),
            b: b.rails.len(),
        });
    }
    for (rail, (x, y)) in a.rails.iter().zip(&b.rails).enumerate() {
        if x.kind() != y.kind() {
            return Err(RailMismatch::Kind {
                rail,
                a_node: a_node.to_owned(),
                a: x.kind(),
                a_pf: x.pf,
                b_node: b_node.to_owned(),
                b: y.kind(),
                b_pf: y.pf,
            });
        }
        if x.speed_mbps != y.speed_mbps {
            return Err(RailMismatch::Speed {
                rail,
                a_node: a_node.to_owned(),
                a: Speed(x.speed_mbps),
                b_node: b_node.to_owned(),
                b: Speed(y.speed_mbps),
            });
        }
    }
    Ok(())
}

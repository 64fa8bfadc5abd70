//! The node's GPUs, SR-IOV NICs and NUMA nodes, read from sysfs.

use std::fs;
use std::io;

use super::path_class::{path_class, PathClass, Placement};
use super::pci_tree::{PciFunction, PciTree};
use super::TopologyError;
use crate::pci::PciAddr;
use crate::rdma::{self, LinkLayer, RdmaDevice};
use crate::sriov::{self, PfInfo, VfInfo};
use crate::sysfs::SysfsRoot;

/// NVIDIA's PCI vendor id.
pub const VENDOR_NVIDIA: u16 = 0x10de;
/// AMD/ATI's PCI vendor id.
pub const VENDOR_AMD: u16 = 0x1002;

/// Whether a function is a GPU: a display controller (VGA 0x0300, 3D
/// 0x0302, or "other" 0x0380 as AMD Instinct cards report) from NVIDIA or
/// AMD, or an AMD processing accelerator (0x1200, MI300). BMC graphics
/// (ASPEED, Matrox) are display controllers too but from other vendors.
pub fn is_gpu(f: &PciFunction) -> bool {
    let sub = f.class >> 8;
    match f.vendor {
        VENDOR_NVIDIA => matches!(sub, 0x0300 | 0x0302 | 0x0380),
        VENDOR_AMD => matches!(sub, 0x0300 | 0x0302 | 0x0380 | 0x1200),
        _ => false,
    }
}

/// Whether a class code is a network controller (Ethernet, InfiniBand, ...).
pub fn is_network_class(class: u32) -> bool {
    class >> 16 == 0x02
}

/// A GPU of the node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Gpu {
    /// Index on the node: position in PCI address order.
    pub index: usize,
    /// Its address.
    pub pci: PciAddr,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// NUMA node.
    pub numa_node: Option<u32>,
}

/// A VF of a NIC and its RDMA devices.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Vf {
    /// What sysfs says about it.
    pub info: VfInfo,
    /// Its RDMA devices (empty without RDMA or when moved to a pod).
    pub rdma: Vec<RdmaDevice>,
}

/// An SR-IOV NIC (its physical function) with its VFs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Nic {
    /// The PF.
    pub pf: PfInfo,
    /// Class code.
    pub class: u32,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// The PF's RDMA devices.
    pub rdma: Vec<RdmaDevice>,
    /// Its VFs, by VF index.
    pub vfs: Vec<Vf>,
}

impl Nic {
    /// The PF's address.
    pub fn pci(&self) -> PciAddr {
        self.pf.pci
    }

    /// Link layer of the PF's first RDMA port, when it has RDMA.
    pub fn link_layer(&self) -> Option<LinkLayer> {
        self.rdma.first().and_then(RdmaDevice::link_layer)
    }

    /// Rate of the PF's first RDMA port in Mbit/s, when known.
    pub fn speed_mbps(&self) -> Option<u64> {
        self.rdma
            .first()
            .and_then(|d| d.ports.first())
            .and_then(|p| p.rate.as_ref())
            .map(|r| r.mbit_per_s)
    }

    /// The PF's first RDMA device name.
    pub fn rdma_name(&self) -> Option<&str> {
        self.rdma.first().map(|d| d.name.as_str())
    }

    /// The VF at `pci`.
    pub fn vf(&self, pci: PciAddr) -> Option<&Vf> {
        self.vfs.iter().find(|v| v.info.pci == pci)
    }
}

/// A NUMA node's CPUs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NumaNode {
    /// Node id.
    pub id: u32,
    /// `cpulist` (`0-31,64-95`).
    pub cpulist: Option<String>,
    /// `cpumap` (hex words, what NCCL's `affinity` takes).
    pub cpumap: Option<String>,
}

/// Everything topology-related about one node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Topology {
    /// Every PCI function.
    pub tree: PciTree,
    /// GPUs, by PCI address (`index` = position).
    pub gpus: Vec<Gpu>,
    /// SR-IOV NICs, by PF address.
    pub nics: Vec<Nic>,
    /// NUMA nodes, by id.
    pub numa: Vec<NumaNode>,
}

fn read_numa_nodes(root: &SysfsRoot) -> Result<Vec<NumaNode>, TopologyError> {
    let dir = root.join("devices/system/node");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(TopologyError::Io { path: dir, source }),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix("node"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let rel = format!("devices/system/node/node{id}");
        let small = |s: String| (s.len() <= 1024).then_some(s);
        out.push(NumaNode {
            id,
            cpulist: root.read_attr(format!("{rel}/cpulist")).and_then(small),
            cpumap: root.read_attr(format!("{rel}/cpumap")).and_then(small),
        });
    }
    out.sort_by_key(|n| n.id);
    Ok(out)
}

impl Topology {
    /// Reads the node's topology under `root`.
    pub fn discover(root: &SysfsRoot) -> Result<Self, TopologyError> {
        let tree = PciTree::read(root)?;
        let gpus = tree
            .iter()
            .filter(|f| is_gpu(f))
            .enumerate()
            .map(|(index, f)| Gpu {
                index,
                pci: f.addr,
                vendor: f.vendor,
                device: f.device,
                numa_node: f.numa_node,
            })
            .collect();
        let mut nics = Vec::new();
        for pf in sriov::list_pfs(root)? {
            let Some(f) = tree.get(pf.pci).filter(|f| is_network_class(f.class)) else {
                continue;
            };
            let (class, vendor, device) = (f.class, f.vendor, f.device);
            let mut vfs = Vec::new();
            for info in sriov::list_vfs(root, pf.pci)? {
                let rdma = rdma::devices_of_pci(root, info.pci)?;
                vfs.push(Vf { info, rdma });
            }
            nics.push(Nic {
                rdma: rdma::devices_of_pci(root, pf.pci)?,
                pf,
                class,
                vendor,
                device,
                vfs,
            });
        }
        Ok(Self {
            tree,
            gpus,
            nics,
            numa: read_numa_nodes(root)?,
        })
    }

    /// Where `pci` sits, when it is a known function.
    pub fn placement(&self, pci: PciAddr) -> Option<Placement> {
        self.tree.get(pci).map(|f| Placement::of(&self.tree, f))
    }

    /// The path class between two known functions.
    pub fn path_class(&self, a: PciAddr, b: PciAddr) -> Option<PathClass> {
        Some(path_class(&self.placement(a)?, &self.placement(b)?))
    }

    /// The worst (farthest) class from any of `gpus` to `target`; None
    /// when `gpus` is empty or a function is unknown.
    pub fn worst_class(&self, gpus: &[PciAddr], target: PciAddr) -> Option<PathClass> {
        let t = self.placement(target)?;
        let mut worst = None;
        for g in gpus {
            let c = path_class(&self.placement(*g)?, &t);
            worst = worst.max(Some(c));
        }
        worst
    }

    /// The NIC whose PF or VF is `pci`.
    pub fn nic_of(&self, pci: PciAddr) -> Option<&Nic> {
        self.nics
            .iter()
            .find(|n| n.pci() == pci || n.vf(pci).is_some())
    }

    /// The GPU at `pci`.
    pub fn gpu(&self, pci: PciAddr) -> Option<&Gpu> {
        self.gpus.iter().find(|g| g.pci == pci)
    }

    /// The NUMA node `id`.
    pub fn numa_node(&self, id: u32) -> Option<&NumaNode> {
        self.numa.iter().find(|n| n.id == id)
    }

    /// Resolves GPU references: PCI addresses (`0000:12:00.0`, `12:00.0`)
    /// or node indexes (`3`, by PCI order). Order kept, duplicates dropped.
    pub fn resolve_gpus<S: AsRef<str>>(&self, refs: &[S]) -> Result<Vec<PciAddr>, TopologyError> {
        let mut out: Vec<PciAddr> = Vec::new();
        for r in refs {
            let s = r.as_ref().trim();
            let unknown = || TopologyError::UnknownGpu(s.chars().take(64).collect());
            let pci = if !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()) {
                let i: usize = s.parse().map_err(|_| unknown())?;
                self.gpus.get(i).map(|g| g.pci).ok_or_else(unknown)?
            } else {
                let a: PciAddr = s.parse().map_err(|_| unknown())?;
                self.gpu(a).map(|g| g.pci).ok_or_else(unknown)?
            };
            if !out.contains(&pci) {
                out.push(pci);
            }
        }
        Ok(out)
    }
}

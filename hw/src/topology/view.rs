//! A node's topology as plain data: the GPU/NIC matrix of path classes and
//! the PCI tree from NUMA nodes down to the devices.
//!
//! [`TopoView`] is built once from a [`Topology`] and is serde data, so the
//! daemon can send it over its API and `jobnetctl` can render it (as a
//! matrix like `nvidia-smi topo -m` or a Graphviz picture).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use super::discover::Topology;
use super::path_class::{path_class, Hop, PathClass, Placement};
use super::rails::Rails;
use crate::pci::PciAddr;

/// One matrix cell: the device itself, or a path class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// The row and column are the same device.
    X,
    /// The path class between two devices.
    Path(PathClass),
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::X => f.write_str("X"),
            Self::Path(c) => f.write_str(c.as_str()),
        }
    }
}

impl FromStr for Cell {
    type Err = super::path_class::PathClassParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "X" {
            Ok(Self::X)
        } else {
            s.parse().map(Self::Path)
        }
    }
}

impl serde::Serialize for Cell {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cell {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A device row/column of the matrix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ViewDevice {
    /// `GPU3`, `NIC0`.
    pub name: String,
    /// Its PCI address (the PF for NICs).
    pub pci: PciAddr,
    /// NUMA node.
    pub numa_node: Option<u32>,
    /// CPUs of that NUMA node (`0-31,64-95`).
    pub cpus: Option<String>,
    /// NICs: rail number.
    pub rail: Option<usize>,
    /// NICs: first RDMA device.
    pub rdma_device: Option<String>,
    /// NICs: PF netdevs.
    pub netdevs: Vec<String>,
    /// NICs: port rate in Mbit/s.
    pub speed_mbps: Option<u64>,
    /// NICs: number of VFs.
    pub vfs: usize,
}

/// A node of the PCI picture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TreeNode {
    /// Unique id (`numa0`, `pci0000:00`, `sw 0000:01:00.0`, `GPU0`).
    pub id: String,
    /// Text to show.
    pub label: String,
    /// Parent id; None for NUMA nodes.
    pub parent: Option<String>,
}

/// The node's topology as plain data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopoView {
    /// GPUs, by index.
    pub gpus: Vec<ViewDevice>,
    /// NICs, by rail.
    pub nics: Vec<ViewDevice>,
    /// Square matrix over GPUs then NICs.
    pub cells: Vec<Vec<Cell>>,
    /// NUMA nodes, host bridges, switches/bridges and devices, parents first.
    pub tree: Vec<TreeNode>,
}

impl TopoView {
    /// Builds the view; NICs are listed in rail order.
    pub fn build(topo: &Topology, rails: &Rails) -> Self {
        let cpus = |n: Option<u32>| {
            n.and_then(|n| topo.numa_node(n))
                .and_then(|n| n.cpulist.clone())
        };
        let gpus: Vec<ViewDevice> = topo
            .gpus
            .iter()
            .map(|g| ViewDevice {
                name: format!("GPU{}", g.index),
                pci: g.pci,
                numa_node: g.numa_node,
                cpus: cpus(g.numa_node),
                rail: None,
                rdma_device: None,
                netdevs: Vec::new(),
                speed_mbps: None,
                vfs: 0,
            })
            .collect();
        let nics: Vec<ViewDevice> = rails
            .pfs()
            .iter()
            .enumerate()
            .filter_map(|(rail, pf)| {
                let n = topo.nic_of(*pf)?;
                Some(ViewDevice {
                    name: format!("NIC{rail}"),
                    pci: *pf,
                    numa_node: n.pf.numa_node,
                    cpus: cpus(n.pf.numa_node),
                    rail: Some(rail),
                    rdma_device: n.rdma_name().map(str::to_owned),
                    netdevs: n.pf.netdevs.clone(),
                    speed_mbps: n.speed_mbps(),
                    vfs: n.vfs.len(),
                })
            })
            .collect();
        let all: Vec<&ViewDevice> = gpus.iter().chain(&nics).collect();
        let placements: Vec<Option<Placement>> =
            all.iter().map(|d| topo.placement(d.pci)).collect();
        let cells = placements
            .iter()
            .enumerate()
            .map(|(i, a)| {
                placements
                    .iter()
                    .enumerate()
                    .map(|(j, b)| match (i == j, a, b) {
                        (true, _, _) => Cell::X,
                        (false, Some(a), Some(b)) => Cell::Path(path_class(a, b)),
                        _ => Cell::Path(PathClass::Sys),
                    })
                    .collect()
            })
            .collect();
        let tree = build_tree(&all, &placements);
        Self {
            gpus,
            nics,
            cells,
            tree,
        }
    }
}

fn build_tree(devices: &[&ViewDevice], placements: &[Option<Placement>]) -> Vec<TreeNode> {
    let mut tree = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add = |tree: &mut Vec<TreeNode>, id: String, label: String, parent: Option<String>| {
        if seen.insert(id.clone()) {
            tree.push(TreeNode { id, label, parent });
        }
    };
    for (d, p) in devices.iter().zip(placements) {
        let Some(p) = p else { continue };
        let numa_id = p
            .numa_node
            .map_or_else(|| "numa?".to_owned(), |n| format!("numa{n}"));
        let numa_label = match (p.numa_node, &d.cpus) {
            (Some(n), Some(c)) => format!("NUMA {n} (CPUs {c})"),
            (Some(n), None) => format!("NUMA {n}"),
            _ => "NUMA unknown".to_owned(),
        };
        add(&mut tree, numa_id.clone(), numa_label, None);
        let hb = p.host_bridge.to_string();
        add(
            &mut tree,
            hb.clone(),
            format!("host bridge {hb}"),
            Some(numa_id),
        );
        let mut parent = hb;
        for h in &p.hops {
            let (id, label) = match h {
                Hop::Switch(a) => (format!("sw {a}"), format!("PCIe switch {a}")),
                Hop::Bridge(a) => (format!("br {a}"), format!("bridge {a}")),
            };
            add(&mut tree, id.clone(), label, Some(parent));
            parent = id;
        }
        let mut label = format!("{} {}", d.name, d.pci);
        if let Some(r) = &d.rdma_device {
            label.push_str(&format!(" {r}"));
        }
        add(&mut tree, d.name.clone(), label, Some(parent));
    }
    tree
}

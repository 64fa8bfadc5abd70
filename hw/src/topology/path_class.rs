//! NCCL's path classes between two PCI functions.
//!
//! NCCL (and `nvidia-smi topo -m`) rank how far apart a GPU and a NIC are:
//!
//! | class | the path between them traverses |
//! |-------|---------------------------------|
//! | PIX   | at most one PCIe bridge (both behind the same PCIe switch) |
//! | PXB   | several PCIe bridges, but not the host bridge |
//! | PHB   | a PCIe host bridge (the CPU's root complex) |
//! | NODE  | the interconnect between host bridges of one NUMA node |
//! | SYS   | the SMP interconnect between NUMA nodes (UPI, xGMI) |
//!
//! Lower is closer; GPUDirect RDMA is at its best at PIX/PXB.
//!
//! A PCIe switch appears in sysfs as an upstream port whose children are
//! downstream ports, all PCI-to-PCI bridges. Like NCCL, we count a switch
//! (upstream + downstream ports) as *one* bridge: two devices under two
//! downstream ports of one switch are PIX, not "three bridges apart".

use std::fmt;
use std::str::FromStr;

use super::pci_tree::{HostBridge, PciFunction, PciTree};
use crate::pci::PciAddr;

/// How far apart two PCI functions are, closest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathClass {
    /// At most one PCIe bridge (same PCIe switch).
    Pix,
    /// Several PCIe bridges, no host bridge.
    Pxb,
    /// Through a PCIe host bridge (same root complex).
    Phb,
    /// Between host bridges of the same NUMA node.
    Node,
    /// Across NUMA nodes.
    Sys,
}

impl PathClass {
    /// All classes, closest first.
    pub const ALL: [PathClass; 5] = [Self::Pix, Self::Pxb, Self::Phb, Self::Node, Self::Sys];

    /// The name NCCL and nvidia-smi use (`PIX`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pix => "PIX",
            Self::Pxb => "PXB",
            Self::Phb => "PHB",
            Self::Node => "NODE",
            Self::Sys => "SYS",
        }
    }

    /// Rank 1 (PIX) to 5 (SYS), for sums over several GPUs.
    pub fn rank(self) -> u32 {
        match self {
            Self::Pix => 1,
            Self::Pxb => 2,
            Self::Phb => 3,
            Self::Node => 4,
            Self::Sys => 5,
        }
    }

    /// What the class means, one line.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Pix => "path through at most one PCIe bridge (same PCIe switch)",
            Self::Pxb => "path through several PCIe bridges, not through a host bridge",
            Self::Phb => "path through a PCIe host bridge (the CPU root complex)",
            Self::Node => "path between PCIe host bridges within one NUMA node",
            Self::Sys => "path across the SMP interconnect between NUMA nodes",
        }
    }
}

impl fmt::Display for PathClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a path class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown path class {0:?} (PIX, PXB, PHB, NODE, SYS)")]
pub struct PathClassParseError(pub String);

impl FromStr for PathClass {
    type Err = PathClassParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| PathClassParseError(s.chars().take(32).collect()))
    }
}

impl serde::Serialize for PathClass {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for PathClass {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One bridge on the way down from a root port, switches collapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Hop {
    /// A PCIe switch, named by its upstream port.
    Switch(PciAddr),
    /// A bridge that is not part of a switch (e.g. PCIe-to-PCI).
    Bridge(PciAddr),
}

impl Hop {
    /// The address naming the hop.
    pub fn addr(self) -> PciAddr {
        match self {
            Self::Switch(a) | Self::Bridge(a) => a,
        }
    }
}

/// Where a function sits, as far as path classes care.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    /// Its root complex.
    pub host_bridge: HostBridge,
    /// Its NUMA node, when known.
    pub numa_node: Option<u32>,
    /// The root port it is behind (None for functions on the root bus).
    pub root_port: Option<PciAddr>,
    /// Switches and bridges below the root port, top first.
    pub hops: Vec<Hop>,
}

impl Placement {
    /// The placement of `f`, using `tree` to tell bridges from the rest.
    ///
    /// Below the root port, a bridge directly followed by another bridge
    /// on the path is a switch's upstream port and the next one its
    /// downstream port: the pair is one [`Hop::Switch`]. A bridge followed
    /// by anything else is a lone [`Hop::Bridge`].
    pub fn of(tree: &PciTree, f: &PciFunction) -> Self {
        let (root_port, below) = match f.ancestors.split_first() {
            Some((rp, rest)) => (Some(*rp), rest),
            None => (None, &[][..]),
        };
        let mut hops = Vec::new();
        let mut i = 0;
        while let Some(&a) = below.get(i) {
            let next_is_bridge = below.get(i + 1).is_some_and(|&n| tree.is_bridge(n));
            if tree.is_bridge(a) && next_is_bridge {
                hops.push(Hop::Switch(a));
                i += 2;
            } else {
                hops.push(Hop::Bridge(a));
                i += 1;
            }
        }
        Self {
            host_bridge: f.host_bridge,
            numa_node: f.numa_node,
            root_port,
            hops,
        }
    }
}

/// The NCCL path class between two functions (a GPU and a NIC, usually).
///
/// The reasoning, from far to near:
/// 1. Different root complexes: the path leaves PCIe through both host
///    bridges. On the same known NUMA node that is NODE; on different or
///    unknown NUMA nodes we must assume the SMP interconnect: SYS.
/// 2. Same root complex but different root ports: the path turns around
///    inside the host bridge: PHB.
/// 3. Same root port: the path turns around at the deepest switch or
///    bridge the two share (or inside the device, if they are functions
///    of one device). Count every switch/bridge on the path once: those
///    below the turning point on either side, plus the turning point
///    itself. One (or none) is PIX; more is PXB.
pub fn path_class(a: &Placement, b: &Placement) -> PathClass {
    if a.host_bridge != b.host_bridge {
        return match (a.numa_node, b.numa_node) {
            (Some(x), Some(y)) if x == y => PathClass::Node,
            _ => PathClass::Sys,
        };
    }
    if a.root_port.is_none() || a.root_port != b.root_port {
        return PathClass::Phb;
    }
    let shared = a
        .hops
        .iter()
        .zip(&b.hops)
        .take_while(|(x, y)| x == y)
        .count();
    let turning_point = usize::from(shared > 0);
    let traversed = (a.hops.len() - shared) + (b.hops.len() - shared) + turning_point;
    if traversed <= 1 {
        PathClass::Pix
    } else {
        PathClass::Pxb
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    fn place(hb: u8, numa: Option<u32>, rp: Option<&str>, hops: &[Hop]) -> Placement {
        Placement {
            host_bridge: HostBridge { domain: 0, bus: hb },
            numa_node: numa,
            root_port: rp.map(p),
            hops: hops.to_vec(),
        }
    }

    #[test]
    fn classes_from_far_to_near() {
        let s1 = Hop::Switch(p("0000:01:00.0"));
        let s2 = Hop::Switch(p("0000:05:00.0"));
        let gpu = place(0, Some(0), Some("0000:00:01.0"), &[s1]);
        let same_switch = place(0, Some(0), Some("0000:00:01.0"), &[s1]);
        let nested = place(0, Some(0), Some("0000:00:01.0"), &[s1, s2]);
        let other_rp = place(0, Some(0), Some("0000:00:02.0"), &[]);
        let other_hb = place(0x40, Some(0), Some("0000:40:01.0"), &[]);
        let other_numa = place(0x80, Some(1), Some("0000:80:01.0"), &[]);
        let unknown_numa = place(0x80, None, Some("0000:80:01.0"), &[]);
        assert_eq!(path_class(&gpu, &same_switch), PathClass::Pix);
        assert_eq!(path_class(&gpu, &nested), PathClass::Pxb);
        assert_eq!(path_class(&nested, &gpu), PathClass::Pxb);
        assert_eq!(path_class(&gpu, &other_rp), PathClass::Phb);
        assert_eq!(path_class(&gpu, &other_hb), PathClass::Node);
        assert_eq!(path_class(&gpu, &other_numa), PathClass::Sys);
        assert_eq!(path_class(&gpu, &unknown_numa), PathClass::Sys);
        // Two functions of one device right under a root port.
        let fn0 = place(0, Some(0), Some("0000:00:03.0"), &[]);
        assert_eq!(path_class(&fn0, &fn0.clone()), PathClass::Pix);
    }

    #[test]
    fn names_round_trip_and_order() {
        for c in PathClass::ALL {
            assert_eq!(c.as_str().parse::<PathClass>().unwrap(), c);
            let j = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<PathClass>(&j).unwrap(), c);
        }
        assert!(PathClass::Pix < PathClass::Pxb && PathClass::Node < PathClass::Sys);
        assert!("NV4".parse::<PathClass>().is_err());
    }
}

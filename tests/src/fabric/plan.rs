//! What a fabric should look like: the spec and the PCI address plan.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use jobnet_hw::PciAddr;

use crate::topo_layouts::{self, Layout, LinkSpec, NicSlot};

use super::sysfs;

/// Mellanox/NVIDIA PCI vendor id.
pub const VENDOR_MELLANOX: u16 = 0x15b3;
/// ConnectX-6 Dx PF device id.
pub const DEVICE_PF: u16 = 0x101d;
/// ConnectX-6 Dx VF device id.
pub const DEVICE_VF: u16 = 0x101e;
/// PCI class of an Ethernet controller.
pub const CLASS_ETHERNET: u32 = 0x020000;
/// PCI class of a PCI-to-PCI bridge (root and switch ports).
pub const CLASS_BRIDGE: u32 = 0x060400;
/// Driver of netdev-backed functions.
pub const DRIVER_NET: &str = "mlx5_core";
/// Driver of DPDK VFs.
pub const DRIVER_DPDK: &str = "vfio-pci";
/// VFs of a PF start at this function offset (as on ConnectX: PF 00.0, VF0 00.2).
const VF_OFFSET: usize = 2;

/// Largest supported sizes (names stay <= 15 bytes, PCI functions fit a bus).
pub const MAX_NODES: usize = 99;
/// See [`MAX_NODES`].
pub const MAX_NICS: usize = 64;
/// See [`MAX_NODES`].
pub const MAX_VFS: usize = 254;

/// How big a fabric to build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FabricSpec {
    /// Number of nodes.
    pub nodes: usize,
    /// NICs (PFs, rails) per node.
    pub nics_per_node: usize,
    /// VFs per NIC.
    pub vfs_per_nic: usize,
    /// Use the host netns as the (only) node.
    pub host_node: bool,
    /// Give PFs and netdev VFs an RDMA device in sysfs.
    pub rdma: bool,
    /// The last `dpdk_vfs` VFs of every NIC are bound to vfio-pci (no netdev).
    pub dpdk_vfs: usize,
    /// Switchdev eswitch: representors live in the node netns, unbridged,
    /// and each PF has an underlay address (see [`underlay_addr`]); without
    /// it (legacy eswitch) representors sit on the rail bridge.
    #[serde(default)]
    pub switchdev: bool,
    /// Lay every node out as this GPU server (see [`GpuLayout`]): its GPUs,
    /// PCIe switches and NUMA nodes, with the fabric's NICs in the server's
    /// NIC slots. None: each NIC alone behind its own switch, no GPUs.
    #[serde(default)]
    pub gpus: Option<GpuLayout>,
    /// A management network: every node gets [`MGMT_IFNAME`] on one bridge
    /// in the fabric's mgmt netns, which holds [`MGMT_HOST_ADDR`] (see
    /// [`mgmt_node_addr`]), so node processes reach services there (etcd)
    /// as a real cluster's host network does.
    #[serde(default)]
    pub mgmt: bool,
}

/// A GPU server layout from [`crate::topo_layouts`] that fabric nodes take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GpuLayout {
    /// [`topo_layouts::eight_by_eight`]: 8 GPUs, 8 NICs, 2 sockets.
    #[serde(rename = "8x8")]
    EightByEight,
    /// [`topo_layouts::uneven`]: 5 GPUs, 2 NICs, one on the other socket.
    #[serde(rename = "uneven")]
    Uneven,
}

impl GpuLayout {
    /// Every layout, for listing.
    pub const ALL: [Self; 2] = [Self::EightByEight, Self::Uneven];

    /// Its name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::EightByEight => "8x8",
            Self::Uneven => "uneven",
        }
    }

    /// The server as node `node` (which changes fake MACs only) with
    /// `vfs` VFs per NIC.
    pub fn server(self, node: u8, vfs: usize) -> Layout {
        match self {
            Self::EightByEight => topo_layouts::eight_by_eight(node, vfs),
            Self::Uneven => topo_layouts::uneven(node, vfs),
        }
    }

    /// How many SR-IOV NICs the server has.
    pub fn nic_count(self) -> usize {
        self.server(0, 0).skeleton().nics.len()
    }
}

impl fmt::Display for GpuLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GpuLayout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("unknown GPU layout {s:?} (8x8 or uneven)"))
    }
}

impl Default for FabricSpec {
    fn default() -> Self {
        Self {
            nodes: 1,
            nics_per_node: 1,
            vfs_per_nic: 4,
            host_node: false,
            rdma: false,
            dpdk_vfs: 0,
            switchdev: false,
            gpus: None,
            mgmt: false,
        }
    }
}

impl FabricSpec {
    /// Why this spec cannot be built, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_NODES).contains(&self.nodes) {
            return Err(format!("nodes must be 1..={MAX_NODES}"));
        }
        if !(1..=MAX_NICS).contains(&self.nics_per_node) {
            return Err(format!("nics per node must be 1..={MAX_NICS}"));
        }
        if self.vfs_per_nic > MAX_VFS {
            return Err(format!("vfs per nic must be 0..={MAX_VFS}"));
        }
        if self.dpdk_vfs > self.vfs_per_nic {
            return Err("dpdk vfs cannot exceed vfs per nic".into());
        }
        if self.host_node && self.nodes != 1 {
            return Err("a host-node fabric has exactly one node".into());
        }
        // The host netns already reaches host services, and a shared
        // `mgmt0` there would collide between fabrics.
        if self.host_node && self.mgmt {
            return Err("a host-node fabric has no management network".into());
        }
        if let Some(g) = self.gpus {
            if self.nics_per_node != g.nic_count() {
                return Err(format!(
                    "the {g} GPU layout has {} NICs per node, not {}",
                    g.nic_count(),
                    self.nics_per_node
                ));
            }
            // Its NICs are RDMA NICs: NCCL hints name their RDMA devices.
            if !self.rdma {
                return Err(format!("the {g} GPU layout needs rdma"));
            }
        }
        Ok(())
    }

    /// Where each NIC's functions go in a node's sysfs, by NIC index (the
    /// same on every node).
    pub fn nic_placements(&self) -> Vec<NicPlacement> {
        match self.gpus {
            Some(g) => g
                .server(0, self.vfs_per_nic)
                .skeleton()
                .nics
                .iter()
                .map(NicPlacement::from_slot)
                .collect(),
            None => (0..self.nics_per_node)
                .map(|m| NicPlacement::alone(m, self.nics_per_node))
                .collect(),
        }
    }

    /// True when VF `k` of a NIC is a DPDK (vfio-pci) VF.
    pub fn is_dpdk(&self, k: usize) -> bool {
        k >= self.vfs_per_nic - self.dpdk_vfs
    }
}

/// MTU of PFs and rail ports in a switchdev fabric: jumbo frames, as RDMA
/// fabrics run, so a VXLAN tunnel (50 bytes of IPv4 overhead) still carries
/// a VF's full 1500-byte frames.
pub const UNDERLAY_MTU: u32 = 9000;

/// Prefix length of the per-rail underlay subnets.
pub const UNDERLAY_PREFIX: u8 = 24;

/// Underlay IPv4 address of node `node`'s PF on rail `rail` in a switchdev
/// fabric: `198.19.<rail>.<node + 1>/24`, inside the 198.18.0.0/15 benchmark
/// range, so a node's VXLAN tunnels run over its rail's switch. Unique for
/// every node and rail [`FabricSpec::validate`] accepts.
pub fn underlay_addr(rail: usize, node: usize) -> std::net::Ipv4Addr {
    // validate() keeps rail < 64 and node + 1 < 100, so both fit an octet.
    std::net::Ipv4Addr::new(198, 19, rail as u8, (node + 1) as u8)
}

/// Netdev of the management network in every node netns.
pub const MGMT_IFNAME: &str = "mgmt0";

/// Prefix length of the management subnet `10.254.0.0/24`, the same in
/// every fabric: each fabric's management network is its own bridge in its
/// own netns, so fabrics built in parallel never meet.
pub const MGMT_PREFIX: u8 = 24;

/// Address of the management bridge in the mgmt netns, where services for
/// the nodes (etcd members) listen.
pub const MGMT_HOST_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 254, 0, 254);

/// Management address of node `node`: `10.254.0.<node + 1>/24`.
pub fn mgmt_node_addr(node: usize) -> std::net::Ipv4Addr {
    // validate() keeps node + 1 < 100, below the bridge's .254.
    std::net::Ipv4Addr::new(10, 254, 0, (node + 1) as u8)
}

/// Where one NIC's PF and VFs sit in a node's sysfs, and what the PCI and
/// RDMA attributes say about its links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicPlacement {
    /// The PF's address.
    pub pf: PciAddr,
    /// Directory of the port the NIC hangs off (relative to the sysfs
    /// root); PF and VFs are its children.
    pub parent: PathBuf,
    /// NUMA node.
    pub numa_node: u32,
    /// PCI class of PF and VFs.
    pub class: u32,
    /// The PF's PCIe link, when the layout says.
    pub link: Option<LinkSpec>,
    /// RDMA port rate.
    pub rate: String,
    /// RDMA link layer.
    pub link_layer: String,
}

impl NicPlacement {
    /// NIC `m` of `nics` on a fabric without a GPU layout: alone behind its
    /// own switch ([`NicPci`]); the first half of the NICs on NUMA node 0,
    /// the rest on node 1.
    pub fn alone(m: usize, nics: usize) -> Self {
        let nic = NicPci::new(m);
        let [_, _, (_, down)] = nic.bridge_dirs();
        Self {
            pf: nic.pf(),
            parent: down,
            numa_node: u32::from(nics > 1 && m >= nics.div_ceil(2)),
            class: CLASS_ETHERNET,
            link: None,
            rate: sysfs::DEFAULT_RATE.to_owned(),
            link_layer: sysfs::LINK_LAYER_ETHERNET.to_owned(),
        }
    }

    /// A GPU server's NIC slot.
    pub fn from_slot(slot: &NicSlot) -> Self {
        Self {
            pf: slot.spec.pf,
            parent: slot.parent.clone(),
            numa_node: slot.numa,
            class: slot.spec.class,
            link: Some(slot.spec.link.clone()),
            rate: slot.spec.rate.clone(),
            link_layer: slot.spec.link_layer.clone(),
        }
    }

    /// VF `k`'s address (routing id + 2 + k, as mlx5 lays VFs out).
    pub fn vf(&self, k: usize) -> Option<PciAddr> {
        topo_layouts::vf_addr(self.pf, k)
    }

    /// Directory of function `pci` (the PF or a VF), relative to the root.
    pub fn function_dir(&self, pci: PciAddr) -> PathBuf {
        self.parent.join(pci.to_string())
    }
}

/// PCI addresses and sysfs directories of NIC `m` (the same on every node).
///
/// Each NIC sits alone under its own host bridge, behind a root port and a
/// PCIe switch (upstream + downstream port), like a GPU server's NIC slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicPci {
    domain: u16,
    host_bus: u8,
}

impl NicPci {
    /// The plan for NIC `m` (m < [`MAX_NICS`]).
    pub fn new(m: usize) -> Self {
        Self {
            domain: (m / 8) as u16,
            host_bus: ((m % 8) * 0x20) as u8,
        }
    }

    fn addr(&self, bus_off: u8, device: u8, function: u8) -> PciAddr {
        PciAddr {
            domain: self.domain,
            bus: self.host_bus + bus_off,
            device,
            function,
        }
    }

    /// The root port.
    pub fn root_port(&self) -> PciAddr {
        self.addr(0, 1, 0)
    }

    /// The PCIe switch's upstream port.
    pub fn switch_up(&self) -> PciAddr {
        self.addr(1, 0, 0)
    }

    /// The PCIe switch's downstream port the NIC hangs off.
    pub fn switch_down(&self) -> PciAddr {
        self.addr(2, 0, 0)
    }

    /// The PF.
    pub fn pf(&self) -> PciAddr {
        self.addr(3, 0, 0)
    }

    /// VF `k` (k < [`MAX_VFS`]).
    pub fn vf(&self, k: usize) -> PciAddr {
        let f = VF_OFFSET + k;
        self.addr(3, (f / 8) as u8, (f % 8) as u8)
    }

    /// `devices/pci<dom>:<bus>` relative to the sysfs root.
    pub fn host_bridge_dir(&self) -> PathBuf {
        PathBuf::from("devices").join(format!("pci{:04x}:{:02x}", self.domain, self.host_bus))
    }

    /// Directories of root port, switch up, switch down (each inside the previous).
    pub fn bridge_dirs(&self) -> [(PciAddr, PathBuf); 3] {
        let rp = self.host_bridge_dir().join(self.root_port().to_string());
        let up = rp.join(self.switch_up().to_string());
        let down = up.join(self.switch_down().to_string());
        [
            (self.root_port(), rp),
            (self.switch_up(), up),
            (self.switch_down(), down),
        ]
    }

    /// Directory of a function on the NIC's bus (PF or VF), relative to the root.
    pub fn function_dir(&self, pci: PciAddr) -> PathBuf {
        let [_, _, (_, down)] = self.bridge_dirs();
        down.join(pci.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vf_addresses_follow_the_pf_and_stay_distinct() {
        let nic = NicPci::new(1);
        assert_eq!(nic.pf().to_string(), "0000:23:00.0");
        assert_eq!(nic.vf(0).to_string(), "0000:23:00.2");
        assert_eq!(nic.vf(6).to_string(), "0000:23:01.0");
        let mut all: Vec<_> = (0..MAX_VFS).map(|k| nic.vf(k)).collect();
        all.push(nic.pf());
        all.sort();
        all.dedup();
        assert_eq!(all.len(), MAX_VFS + 1);
        assert_ne!(NicPci::new(0).pf(), NicPci::new(8).pf());
        // The placement computes VFs the layouts' way; same addresses.
        let place = NicPlacement::alone(1, 2);
        for k in 0..MAX_VFS {
            assert_eq!(place.vf(k), Some(nic.vf(k)), "VF{k}");
        }
        assert_eq!(place.function_dir(nic.vf(3)), nic.function_dir(nic.vf(3)));
    }

    #[test]
    fn gpu_layouts_place_nics_where_the_servers_have_them() {
        let spec = FabricSpec {
            nics_per_node: 8,
            vfs_per_nic: 2,
            rdma: true,
            gpus: Some(GpuLayout::EightByEight),
            ..Default::default()
        };
        assert_eq!(spec.validate(), Ok(()));
        let places = spec.nic_placements();
        let pfs: Vec<String> = places.iter().map(|p| p.pf.to_string()).collect();
        assert_eq!(
            pfs,
            [
                "0000:13:00.0",
                "0000:23:00.0",
                "0000:33:00.0",
                "0000:43:00.0",
                "0000:93:00.0",
                "0000:a3:00.0",
                "0000:b3:00.0",
                "0000:c3:00.0"
            ]
        );
        let numa: Vec<u32> = places.iter().map(|p| p.numa_node).collect();
        assert_eq!(numa, [0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(
            places[0].function_dir(places[0].pf),
            PathBuf::from("devices/pci0000:00/0000:00:01.0/0000:10:00.0/0000:11:01.0/0000:13:00.0")
        );
        assert_eq!(places[0].vf(1).unwrap().to_string(), "0000:13:00.3");
        let uneven = FabricSpec {
            nics_per_node: 2,
            rdma: true,
            gpus: Some(GpuLayout::Uneven),
            ..Default::default()
        };
        let places = uneven.nic_placements();
        assert_eq!(places[1].pf.to_string(), "0000:82:00.0");
        assert_eq!(places[1].numa_node, 1);
        for name in ["8x8", "uneven"] {
            assert_eq!(name.parse::<GpuLayout>().unwrap().name(), name);
        }
        assert!("4x4".parse::<GpuLayout>().is_err());
    }

    #[test]
    fn specs_out_of_range_are_refused() {
        assert!(FabricSpec::default().validate().is_ok());
        let bad = [
            FabricSpec {
                nodes: 0,
                ..Default::default()
            },
            FabricSpec {
                nodes: 2,
                host_node: true,
                ..Default::default()
            },
            FabricSpec {
                vfs_per_nic: MAX_VFS + 1,
                ..Default::default()
            },
            FabricSpec {
                dpdk_vfs: 5,
                ..Default::default()
            },
            FabricSpec {
                nics_per_node: 0,
                ..Default::default()
            },
            FabricSpec {
                nics_per_node: 2,
                rdma: true,
                gpus: Some(GpuLayout::EightByEight),
                ..Default::default()
            },
            FabricSpec {
                nics_per_node: 8,
                gpus: Some(GpuLayout::EightByEight),
                ..Default::default()
            },
            FabricSpec {
                host_node: true,
                mgmt: true,
                ..Default::default()
            },
        ];
        for spec in bad {
            assert!(spec.validate().is_err(), "{spec:?}");
        }
    }
}

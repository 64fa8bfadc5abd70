//! What a fabric should look like: the spec and the PCI address plan.

use std::path::PathBuf;

use jobnet_hw::PciAddr;

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
        Ok(())
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
        ];
        for spec in bad {
            assert!(spec.validate().is_err(), "{spec:?}");
        }
    }
}

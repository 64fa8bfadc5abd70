//! The simulated SR-IOV fabric: N nodes x M NICs x K VFs made of real kernel
//! objects plus a fake sysfs tree per node.
//!
//! - A node is a network namespace (`jf<id>-n<N>`), or the host netns for a
//!   one-node fabric with [`FabricSpec::host_node`].
//! - Rail `m` is a switch netns (`jf<id>-r<m>`) holding a bridge. NIC `m` of
//!   every node is on rail `m`: its PF is a veth whose peer (the uplink port)
//!   is on that bridge.
//! - Each VF is a veth: its netdev (`jf<id>p<m>v<k>`) lives in the node netns,
//!   its peer plays the switchdev representor. In the default legacy eswitch
//!   mode the peer (`jf<id>n<N>v<k>`) sits on the rail bridge, so VFs on one
//!   rail reach each other at L2 across nodes. DPDK VFs (bound to vfio-pci)
//!   have no netdev and so no veth.
//! - With [`FabricSpec::switchdev`] the peer (`jf<id>p<m>r<k>`) lives in the
//!   node netns, up and on no bridge, as a real switchdev representor lives
//!   in the host: a VF reaches nothing until something (jobnet's `vxlan`
//!   isolation) bridges its representor. Each PF gets the underlay address
//!   [`plan::underlay_addr`] (`198.19.<rail>.<node+1>/24`) and a jumbo MTU
//!   ([`plan::UNDERLAY_MTU`]) so VXLAN tunnels carrying full 1500-byte VF
//!   frames run between nodes over the rail switch. Rail bridges never snoop
//!   multicast, so VXLAN's multicast groups flood to every node.
//! - With [`FabricSpec::mgmt`] a management network joins every node (the
//!   cluster's host network, apart from the rails; see [`mgmt`]): `mgmt0`
//!   in each node on one bridge in the netns `jf<id>-mgmt`, which holds
//!   `10.254.0.254/24`; nodes are `10.254.0.<node + 1>`.
//! - The fake sysfs tree ([`FabricNode::sysfs`]) lays out every function as
//!   the kernel does (see [`sysfs`]); representors appear under the PF's
//!   `net/` with `phys_port_name` `pf<P>vf<V>` and the NIC's `phys_switch_id`
//!   (in legacy mode their netdevs live in the rail netns, not in the node).
//! - Without a GPU layout each NIC sits alone behind a root port and a PCIe
//!   switch ([`plan::NicPci`]). With [`FabricSpec::gpus`] every node's tree
//!   is that GPU server ([`crate::topo_layouts`]): its NUMA nodes, host
//!   bridges, PCIe switches and GPUs, with the fabric's PFs and VFs at the
//!   server's NIC addresses and with its link speeds and RDMA port rates, so
//!   topology discovery sees the same GPU/NIC matrix as on the server alone.
//!
//! Limitation: real sysfs follows every rename and netns move of a netdev by
//! itself (a VF's `net/` entry vanishes from the host's view when the VF moves
//! into a pod). The fake tree cannot; it keeps what it was told. Call
//! [`Fabric::sync_vf_sysfs`] after moving a VF to make the tree show what the
//! kernel would, and [`Fabric::kernel_return_vf`] to play what the kernel does
//! when a pod netns dies with a physical VF inside (the VF comes back to the
//! node, down, under the pod's name or `devN`). With veths the kernel would
//! destroy the pair instead, so tests must return the VF before deleting the
//! pod netns.
//!
//! The trees live under `/dev/shm/jobnet-fabric-<id>/node<N>/sys` (the temp
//! dir when there is no /dev/shm): tmpfs keeps building and removing them
//! fast while other builds keep the disk busy. Set `JOBNET_FABRIC_TRACE` to
//! see how long each `ip` batch takes.
//!
//! Every name carries the fabric id; a state file under
//! [`state::STATE_DIR`] is written before the first kernel object and removed
//! after the last, so `jobnet-fabric down --all` cleans up after crashed runs.

pub mod ip;
pub mod mgmt;
pub mod names;
pub mod plan;
pub mod probe;
pub mod state;
pub use crate::topo_layouts::sysfs;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use jobnet_hw::sriov::{validate_netdev_name, SriovError};
use jobnet_hw::{PciAddr, SysfsRoot};

pub use ip::{IpLink, Netns};
pub use mgmt::{FabricMgmt, NodeMgmt};
pub use names::FabricId;
pub use plan::FabricSpec;

use plan::{NicPci, NicPlacement};
use state::{FabricState, Owner};
use sysfs::{Netdev, PciFunction, RdmaDevice, SysfsWriter};

/// Why a fabric operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    /// The spec cannot be built.
    #[error("bad fabric spec: {0}")]
    Spec(String),
    /// An `ip` batch failed.
    #[error("ip in netns {netns}: {detail}")]
    Ip {
        /// Where it ran.
        netns: String,
        /// stderr or what went wrong.
        detail: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No unused fabric id was found.
    #[error("no free fabric id")]
    NoFreeId,
    /// No state file for that fabric.
    #[error("no fabric {0}")]
    NoSuchFabric(String),
    /// A state file could not be read or written.
    #[error("fabric state {path}: {detail}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The VF is not part of this fabric.
    #[error("no VF {0} in this fabric")]
    NoSuchVf(VfId),
    /// The VF is a DPDK VF (no netdev).
    #[error("VF {0} has no netdev")]
    NoNetdev(VfId),
    /// The VF's netdev is in no netns the fabric can see.
    #[error("netdev of VF {0} not found in the node or any named netns")]
    VfLost(VfId),
    /// A name was rejected.
    #[error(transparent)]
    Name(#[from] SriovError),
}

/// Identifies one VF: node, NIC (= rail) and VF index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct VfId {
    /// Node index.
    pub node: usize,
    /// NIC index on the node, which is also the rail.
    pub nic: usize,
    /// VF index on the NIC (`virtfn<index>`).
    pub index: usize,
}

impl std::fmt::Display for VfId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n{}/nic{}/vf{}", self.node, self.nic, self.index)
    }
}

/// One PF of a node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FabricPf {
    /// NIC index (= rail).
    pub nic: usize,
    /// PCI address.
    pub pci: PciAddr,
    /// Netdev in the node netns.
    pub netdev: String,
    /// Its peer on the rail bridge.
    pub uplink_port: String,
    /// MAC address of the netdev.
    pub mac: String,
    /// `phys_switch_id` shared by the PF and its representors.
    pub switch_id: String,
    /// Underlay IPv4 address of the netdev (switchdev fabrics only; the
    /// prefix is [`plan::UNDERLAY_PREFIX`]).
    #[serde(default)]
    pub underlay: Option<std::net::Ipv4Addr>,
    /// RDMA device, when the fabric has RDMA.
    pub rdma_device: Option<String>,
    /// NUMA node.
    pub numa_node: u32,
}

/// One VF.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FabricVf {
    /// Where it is.
    pub id: VfId,
    /// PCI address.
    pub pci: PciAddr,
    /// Its PF's PCI address.
    pub pf_pci: PciAddr,
    /// Its PF's netdev.
    pub pf_netdev: String,
    /// Netdev name at build time (None for DPDK VFs).
    pub netdev: Option<String>,
    /// Representor netdev (None for DPDK VFs): in the rail netns on a legacy
    /// fabric, in the node netns on a switchdev fabric.
    pub representor: Option<String>,
    /// MAC at build time.
    pub mac: Option<String>,
    /// RDMA device, when the fabric has RDMA and the VF has a netdev.
    pub rdma_device: Option<String>,
    /// Bound driver (`mlx5_core` or `vfio-pci`).
    pub driver: String,
    /// NUMA node.
    pub numa_node: u32,
}

impl FabricVf {
    /// True for VFs bound to vfio-pci.
    pub fn is_dpdk(&self) -> bool {
        self.driver == plan::DRIVER_DPDK
    }

    /// The rail (= NIC index).
    pub fn rail(&self) -> usize {
        self.id.nic
    }
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FabricNode {
    /// Node index.
    pub index: usize,
    /// Netns name; None when the node is the host netns.
    pub netns: Option<String>,
    /// Root of the node's fake sysfs tree.
    pub sysfs_root: PathBuf,
    /// The node's PFs by NIC index.
    pub pfs: Vec<FabricPf>,
    /// The node's GPUs in PCI order (index = GPU number as jobnet resolves
    /// `gpus: ["3"]`); empty without a GPU layout.
    #[serde(default)]
    pub gpus: Vec<PciAddr>,
    /// Its end of the management network, when the fabric has one.
    #[serde(default)]
    pub mgmt: Option<NodeMgmt>,
}

impl FabricNode {
    /// Where to run `ip` for this node.
    pub fn ip_netns(&self) -> Netns {
        match &self.netns {
            Some(n) => Netns::Named(n.clone()),
            None => Netns::Host,
        }
    }

    /// A path to the node's netns file (for setns / CNI_NETNS).
    pub fn netns_path(&self) -> PathBuf {
        match &self.netns {
            Some(n) => Path::new("/run/netns").join(n),
            None => PathBuf::from("/proc/1/ns/net"),
        }
    }

    /// The node's sysfs root, as jobnet reads it (`JOBNET_SYSFS_ROOT`).
    pub fn sysfs(&self) -> SysfsRoot {
        SysfsRoot::new(&self.sysfs_root)
    }
}

/// One rail switch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FabricRail {
    /// Rail index (= NIC index on every node).
    pub index: usize,
    /// The switch netns (tests may add addresses or ports there).
    pub netns: String,
    /// The bridge inside it.
    pub bridge: String,
}

/// Everything a fabric made; also the content of its state file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FabricLayout {
    /// The fabric id.
    pub id: FabricId,
    /// What was asked for.
    pub spec: FabricSpec,
    /// Temp dir holding the sysfs trees.
    pub base_dir: PathBuf,
    /// Nodes by index.
    pub nodes: Vec<FabricNode>,
    /// Rails by index.
    pub rails: Vec<FabricRail>,
    /// Every VF, ordered by node, NIC, index.
    pub vfs: Vec<FabricVf>,
    /// The management network, when the spec asked for one.
    #[serde(default)]
    pub mgmt: Option<FabricMgmt>,
}

/// Where a VF's netdev is right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfLocation {
    /// The netns it is in.
    pub netns: Netns,
    /// Its link as `ip` shows it there.
    pub link: IpLink,
}

/// A built fabric; torn down on drop unless [`Fabric::persist`] was called.
#[derive(Debug)]
pub struct Fabric {
    layout: FabricLayout,
    torn_down: bool,
}

/// How many ids to try before giving up.
const ID_ATTEMPTS: usize = 64;

fn switch_id(id: &FabricId, node: usize, nic: usize) -> String {
    // FNV-1a of the id: stable per fabric, distinct across fabrics.
    let h = id.as_str().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{:08x}{:04x}{:04x}", h as u32, node, nic)
}

/// The layout of `spec` under id `id` (names and addresses, nothing created).
fn plan_layout(id: FabricId, spec: &FabricSpec) -> Result<FabricLayout, FabricError> {
    let base_dir = id.base_dir();
    let places = spec.nic_placements();
    let mut gpus: Vec<PciAddr> = match spec.gpus {
        Some(g) => g
            .server(0, 0)
            .skeleton()
            .gpus
            .iter()
            .map(|(p, _)| *p)
            .collect(),
        None => Vec::new(),
    };
    gpus.sort();
    let rails = (0..spec.nics_per_node)
        .map(|m| FabricRail {
            index: m,
            netns: id.rail_netns(m),
            bridge: id.bridge(),
        })
        .collect();
    let mut nodes = Vec::new();
    let mut vfs = Vec::new();
    for n in 0..spec.nodes {
        let mut pfs = Vec::new();
        let mut next_rdma = spec.nics_per_node;
        for (m, place) in places.iter().enumerate() {
            let pf_netdev = id.pf_netdev(m);
            let numa_node = place.numa_node;
            pfs.push(FabricPf {
                nic: m,
                pci: place.pf,
                netdev: pf_netdev.clone(),
                uplink_port: id.uplink_port(n),
                mac: String::new(),
                switch_id: switch_id(&id, n, m),
                underlay: spec.switchdev.then(|| plan::underlay_addr(m, n)),
                rdma_device: spec.rdma.then(|| format!("mlx5_{m}")),
                numa_node,
            });
            for k in 0..spec.vfs_per_nic {
                let dpdk = spec.is_dpdk(k);
                let rdma_device = (spec.rdma && !dpdk).then(|| {
                    next_rdma += 1;
                    format!("mlx5_{}", next_rdma - 1)
                });
                let id_k = VfId {
                    node: n,
                    nic: m,
                    index: k,
                };
                vfs.push(FabricVf {
                    id: id_k,
                    pci: place.vf(k).ok_or(FabricError::NoSuchVf(id_k))?,
                    pf_pci: place.pf,
                    pf_netdev: pf_netdev.clone(),
                    netdev: (!dpdk).then(|| id.vf_netdev(m, k)),
                    representor: (!dpdk).then(|| {
                        if spec.switchdev {
                            id.switchdev_representor(m, k)
                        } else {
                            id.representor(n, k)
                        }
                    }),
                    mac: None,
                    rdma_device,
                    driver: if dpdk {
                        plan::DRIVER_DPDK
                    } else {
                        plan::DRIVER_NET
                    }
                    .to_owned(),
                    numa_node,
                });
            }
        }
        nodes.push(FabricNode {
            index: n,
            netns: (!spec.host_node).then(|| id.node_netns(n)),
            sysfs_root: base_dir.join(format!("node{n}")).join("sys"),
            pfs,
            gpus: gpus.clone(),
            mgmt: mgmt::plan_node(&id, spec, n),
        });
    }
    Ok(FabricLayout {
        mgmt: mgmt::plan_fabric(&id, spec),
        id,
        spec: spec.clone(),
        base_dir,
        nodes,
        rails,
        vfs,
    })
}

impl FabricLayout {
    /// Directory of function `pci` (PF or VF) of NIC `nic` in every node's
    /// sysfs tree, relative to the root; None for an unknown NIC.
    pub fn function_dir(&self, nic: usize, pci: PciAddr) -> Option<PathBuf> {
        self.spec
            .nic_placements()
            .get(nic)
            .map(|p| p.function_dir(pci))
    }
}

/// True when nothing named after `id` exists yet (netns or temp dir).
fn id_unused(id: &FabricId) -> bool {
    !names::tree_parents()
        .iter()
        .any(|p| p.join(format!("{}{id}", names::TREE_DIR_PREFIX)).exists())
        && !ip::named_netns()
            .iter()
            .any(|n| FabricId::of_netns(n).as_ref() == Some(id))
}

impl Fabric {
    /// Builds a fabric: kernel objects, fake sysfs and state file.
    pub fn build(spec: FabricSpec) -> Result<Self, FabricError> {
        spec.validate().map_err(FabricError::Spec)?;
        let owner = Owner::current();
        let mut reserved = None;
        for _ in 0..ID_ATTEMPTS {
            let id = FabricId::generate();
            if !id_unused(&id) {
                continue;
            }
            let st = FabricState {
                layout: plan_layout(id, &spec)?,
                owner: owner.clone(),
            };
            if state::reserve(&st)? {
                reserved = Some(st.layout);
                break;
            }
        }
        let layout = reserved.ok_or(FabricError::NoFreeId)?;
        // From here on, Drop undoes whatever part was made.
        let mut fabric = Self {
            layout,
            torn_down: false,
        };
        fabric.create()?;
        state::update(&FabricState {
            layout: fabric.layout.clone(),
            owner,
        })?;
        Ok(fabric)
    }

    /// Re-attaches to a fabric made by another process (e.g. `jobnet-fabric
    /// up`); the returned handle does not tear it down on drop.
    pub fn load(id: &FabricId) -> Result<Self, FabricError> {
        let st = state::read(id)?;
        Ok(Self {
            layout: st.layout,
            torn_down: true,
        })
    }

    fn create(&mut self) -> Result<(), FabricError> {
        let l = &self.layout;
        let id = &l.id;
        let mut host = Vec::new();
        for r in &l.rails {
            host.push(format!("netns add {}", r.netns));
        }
        for n in &l.nodes {
            if let Some(ns) = &n.netns {
                host.push(format!("netns add {ns}"));
            }
        }
        for r in &l.rails {
            // No multicast snooping: nothing on a rail sends IGMP queries, so
            // a snooping bridge could drop VXLAN's multicast; flood instead.
            host.push(format!(
                "link add name {} netns {} type bridge mcast_snooping 0",
                r.bridge, r.netns
            ));
        }
        let in_node = |n: &FabricNode| match &n.netns {
            Some(ns) => format!(" netns {ns}"),
            None => String::new(),
        };
        for n in &l.nodes {
            for pf in &n.pfs {
                host.push(format!(
                    "link add name {}{} type veth peer name {} netns {}",
                    pf.netdev,
                    in_node(n),
                    pf.uplink_port,
                    l.rails[pf.nic].netns
                ));
            }
        }
        for vf in &l.vfs {
            if let (Some(nd), Some(rep)) = (&vf.netdev, &vf.representor) {
                let node = &l.nodes[vf.id.node];
                // `ip` needs a netns for the peer; the host is pid 1's.
                let rep_ns = if l.spec.switchdev {
                    node.netns.clone().unwrap_or_else(|| "1".into())
                } else {
                    l.rails[vf.id.nic].netns.clone()
                };
                host.push(format!(
                    "link add name {nd}{} type veth peer name {rep} netns {rep_ns}",
                    in_node(node),
                ));
            }
        }
        if let Some(m) = &l.mgmt {
            host.extend(mgmt::host_lines(m, &l.nodes));
        }
        ip::batch(&Netns::Host, &host, false, false)?;
        if let Some(m) = &l.mgmt {
            let ns = Netns::Named(m.netns.clone());
            ip::batch(&ns, &mgmt::mgmt_netns_lines(m, &l.nodes), false, false)?;
        }

        let mut rail_links = Vec::new();
        for r in &l.rails {
            let mut lines = vec![
                "link set lo up".to_owned(),
                format!("link set {} up", r.bridge),
            ];
            for n in &l.nodes {
                let port = &n.pfs[r.index].uplink_port;
                if l.spec.switchdev {
                    lines.push(format!("link set {port} mtu {}", plan::UNDERLAY_MTU));
                }
                lines.push(format!("link set {port} master {} up", r.bridge));
            }
            for vf in l.vfs.iter().filter(|v| v.id.nic == r.index) {
                if let (Some(rep), false) = (&vf.representor, l.spec.switchdev) {
                    lines.push(format!("link set {rep} master {} up", r.bridge));
                }
            }
            lines.push("link show".into());
            let out = ip::batch(&Netns::Named(r.netns.clone()), &lines, true, false)?;
            rail_links.push(by_name(ip::parse_links(&out)?));
        }

        let mut node_links = Vec::new();
        for n in &l.nodes {
            let mut lines = Vec::new();
            if n.netns.is_some() {
                lines.push("link set lo up".to_owned());
            }
            for pf in &n.pfs {
                lines.push(format!("link set {} up", pf.netdev));
                if let Some(addr) = pf.underlay {
                    lines.push(format!("link set {} mtu {}", pf.netdev, plan::UNDERLAY_MTU));
                    lines.push(format!(
                        "address add {addr}/{} dev {}",
                        plan::UNDERLAY_PREFIX,
                        pf.netdev
                    ));
                }
            }
            if let (Some(m), Some(nm)) = (&l.mgmt, &n.mgmt) {
                lines.extend(mgmt::node_lines(m, nm));
            }
            for vf in l.vfs.iter().filter(|v| v.id.node == n.index) {
                if let Some(nd) = &vf.netdev {
                    lines.push(format!("link set {nd} alias {} up", vf_alias(id, vf.id)));
                }
                if let (Some(rep), true) = (&vf.representor, l.spec.switchdev) {
                    lines.push(format!("link set {rep} up"));
                }
            }
            lines.push(format!(
                "link show{}",
                if n.netns.is_some() { "" } else { " up" }
            ));
            let out = ip::batch(&n.ip_netns(), &lines, true, false)?;
            node_links.push(by_name(ip::parse_links(&out)?));
        }

        let id = id.clone();
        let missing = |ns: &str, name: &str| FabricError::Ip {
            netns: ns.to_owned(),
            detail: format!("link {name} missing after creation ({id})"),
        };
        for (n, links) in self.layout.nodes.iter_mut().zip(&node_links) {
            for pf in &mut n.pfs {
                let link = links
                    .get(&pf.netdev)
                    .ok_or_else(|| missing("node", &pf.netdev))?;
                pf.mac = link.address.clone().unwrap_or_default();
            }
        }
        for vf in &mut self.layout.vfs {
            if let Some(nd) = &vf.netdev {
                let link = node_links[vf.id.node]
                    .get(nd)
                    .ok_or_else(|| missing("node", nd))?;
                vf.mac = link.address.clone();
            }
        }
        for (n, links) in node_links.iter().enumerate() {
            self.write_sysfs(n, links, &rail_links)
                .map_err(|source| FabricError::Io {
                    path: self.layout.nodes[n].sysfs_root.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Writes node `n`'s sysfs tree from the links the kernel reported.
    fn write_sysfs(
        &self,
        n: usize,
        node_links: &HashMap<String, IpLink>,
        rail_links: &[HashMap<String, IpLink>],
    ) -> io::Result<()> {
        let l = &self.layout;
        let spec = &l.spec;
        let node = &l.nodes[n];
        let w = SysfsWriter::create(&node.sysfs_root)?;
        match spec.gpus {
            // The node index only changes the server's fake MACs, which
            // the fabric's real netdevs replace anyway.
            Some(g) => g
                .server(u8::try_from(n).unwrap_or(u8::MAX), spec.vfs_per_nic)
                .skeleton()
                .write(&w)?,
            None => {
                for pf in &node.pfs {
                    write_lone_nic_bridges(&w, &NicPci::new(pf.nic), pf.numa_node)?;
                }
            }
        }
        let places = spec.nic_placements();
        let place_of = |nic: usize| {
            places.get(nic).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no placement of NIC {nic}"),
                )
            })
        };
        // A VF reports no link of its own: where the layout gives the PF's
        // link, its VFs say `Unknown` as the kernel does.
        let vf_link = sysfs::LinkSpec::new("Unknown", 0);
        for pf in &node.pfs {
            let place = place_of(pf.nic)?;
            let pf_dir = place.function_dir(pf.pci);
            w.add_function(
                &pf_dir,
                &PciFunction {
                    pci: pf.pci,
                    vendor: plan::VENDOR_MELLANOX,
                    device: plan::DEVICE_PF,
                    class: place.class,
                    numa_node: Some(pf.numa_node),
                    driver: Some(plan::DRIVER_NET),
                    link: place.link.as_ref(),
                },
            )?;
            w.set_sriov(&pf_dir, spec.vfs_per_nic.max(16), spec.vfs_per_nic)?;
            let link = node_links.get(&pf.netdev);
            w.add_netdev(
                &pf_dir,
                &Netdev {
                    name: &pf.netdev,
                    address: &pf.mac,
                    ifindex: link.map_or(0, |k| k.ifindex),
                    mtu: link.and_then(|k| k.mtu).unwrap_or(1500),
                    phys_port_name: Some("p0"),
                    phys_switch_id: Some(&pf.switch_id),
                },
            )?;
            if let Some(dev) = &pf.rdma_device {
                w.add_rdma(&pf_dir, &rdma_device(place, dev, (&pf.netdev, &pf.mac), pf))?;
            }
        }
        for vf in l.vfs.iter().filter(|v| v.id.node == n) {
            let place = place_of(vf.id.nic)?;
            let pf = &node.pfs[vf.id.nic];
            let pf_dir = place.function_dir(vf.pf_pci);
            let vf_dir = place.function_dir(vf.pci);
            w.add_function(
                &vf_dir,
                &PciFunction {
                    pci: vf.pci,
                    vendor: plan::VENDOR_MELLANOX,
                    device: plan::DEVICE_VF,
                    class: place.class,
                    numa_node: Some(vf.numa_node),
                    driver: Some(&vf.driver),
                    link: place.link.as_ref().map(|_| &vf_link),
                },
            )?;
            w.link_vf(&pf_dir, vf.id.index, &vf_dir)?;
            if let (Some(nd), Some(mac)) = (&vf.netdev, &vf.mac) {
                let link = node_links.get(nd);
                w.add_netdev(
                    &vf_dir,
                    &Netdev {
                        name: nd,
                        address: mac,
                        ifindex: link.map_or(0, |k| k.ifindex),
                        mtu: link.and_then(|k| k.mtu).unwrap_or(1500),
                        phys_port_name: None,
                        phys_switch_id: None,
                    },
                )?;
                if let Some(dev) = &vf.rdma_device {
                    w.add_rdma(&vf_dir, &rdma_device(place, dev, (nd, mac), pf))?;
                }
            }
            if let Some(rep) = &vf.representor {
                let link = if spec.switchdev {
                    node_links.get(rep)
                } else {
                    rail_links.get(vf.id.nic).and_then(|m| m.get(rep))
                };
                let port = format!("pf{}vf{}", vf.pf_pci.function, vf.id.index);
                w.add_netdev(
                    &pf_dir,
                    &Netdev {
                        name: rep,
                        address: link.and_then(|k| k.address.as_deref()).unwrap_or(""),
                        ifindex: link.map_or(0, |k| k.ifindex),
                        mtu: link.and_then(|k| k.mtu).unwrap_or(1500),
                        phys_port_name: Some(&port),
                        phys_switch_id: Some(&pf.switch_id),
                    },
                )?;
            }
        }
        Ok(())
    }

    /// The fabric id.
    pub fn id(&self) -> &FabricId {
        &self.layout.id
    }

    /// What was asked for.
    pub fn spec(&self) -> &FabricSpec {
        &self.layout.spec
    }

    /// Everything the fabric made.
    pub fn layout(&self) -> &FabricLayout {
        &self.layout
    }

    /// Nodes by index.
    pub fn nodes(&self) -> &[FabricNode] {
        &self.layout.nodes
    }

    /// Node `n`.
    pub fn node(&self, n: usize) -> Option<&FabricNode> {
        self.layout.nodes.get(n)
    }

    /// Rails (switch netns + bridge) by index.
    pub fn rails(&self) -> &[FabricRail] {
        &self.layout.rails
    }

    /// The management network, when the spec asked for one.
    pub fn mgmt(&self) -> Option<&FabricMgmt> {
        self.layout.mgmt.as_ref()
    }

    /// Every VF, ordered by node, NIC, index.
    pub fn vfs(&self) -> &[FabricVf] {
        &self.layout.vfs
    }

    /// One VF.
    pub fn vf(&self, id: VfId) -> Option<&FabricVf> {
        self.layout.vfs.iter().find(|v| v.id == id)
    }

    /// The VF with PCI address `pci` on node `node`.
    pub fn vf_by_pci(&self, node: usize, pci: PciAddr) -> Option<&FabricVf> {
        self.layout
            .vfs
            .iter()
            .find(|v| v.id.node == node && v.pci == pci)
    }

    /// Finds the VF's netdev, first in the node netns, then in every named
    /// netns. It is recognised by the alias the fabric gave it, which
    /// survives renames and netns moves (ifindexes repeat across namespaces,
    /// so they cannot identify it). None when it is nowhere.
    pub fn vf_location(&self, id: VfId) -> Result<Option<VfLocation>, FabricError> {
        let vf = self.vf(id).ok_or(FabricError::NoSuchVf(id))?;
        if vf.netdev.is_none() {
            return Err(FabricError::NoNetdev(id));
        }
        let alias = vf_alias(&self.layout.id, id);
        // No VF is ever in the fabric's own switch or mgmt netns.
        let own_rails: Vec<&str> = self
            .layout
            .rails
            .iter()
            .map(|r| r.netns.as_str())
            .chain(self.layout.mgmt.iter().map(|m| m.netns.as_str()))
            .collect();
        let node_ns = self.layout.nodes[id.node].ip_netns();
        let others = ip::named_netns()
            .into_iter()
            .filter(|n| !own_rails.contains(&n.as_str()))
            .map(Netns::Named)
            .filter(|ns| *ns != node_ns);
        for ns in std::iter::once(node_ns.clone()).chain(others) {
            // A netns may vanish between listing and looking: skip it.
            let Ok(links) = ip::links(&ns) else { continue };
            if let Some(link) = links
                .into_iter()
                .find(|k| k.ifalias.as_deref() == Some(alias.as_str()))
            {
                return Ok(Some(VfLocation { netns: ns, link }));
            }
        }
        Ok(None)
    }

    /// Makes the node's fake sysfs show the VF's netdev as real sysfs would:
    /// under its current name when it is in the node netns, absent otherwise.
    pub fn sync_vf_sysfs(&self, id: VfId) -> Result<(), FabricError> {
        let loc = self.vf_location(id)?;
        let vf = self.vf(id).ok_or(FabricError::NoSuchVf(id))?;
        let node = &self.layout.nodes[id.node];
        let here = loc.filter(|l| l.netns == node.ip_netns());
        let io_err = |source| FabricError::Io {
            path: node.sysfs_root.clone(),
            source,
        };
        let w = SysfsWriter::create(&node.sysfs_root).map_err(io_err)?;
        let dir = self
            .layout
            .function_dir(id.nic, vf.pci)
            .ok_or(FabricError::NoSuchVf(id))?;
        for old in w.netdevs(&dir) {
            w.remove_netdev(&dir, &old).map_err(io_err)?;
        }
        if let Some(l) = here {
            let link = &l.link;
            w.add_netdev(
                &dir,
                &Netdev {
                    name: &link.ifname,
                    address: link.address.as_deref().unwrap_or(""),
                    ifindex: link.ifindex,
                    mtu: link.mtu.unwrap_or(1500),
                    phys_port_name: None,
                    phys_switch_id: None,
                },
            )
            .map_err(io_err)?;
            if let Some(dev) = &vf.rdma_device {
                w.set_rdma_netdev(&dir, dev, &link.ifname).map_err(io_err)?;
            }
        }
        Ok(())
    }

    /// Plays the kernel's part when a pod netns dies with this VF inside: the
    /// netdev comes back to the node netns, down, named `new_name` (the pod's
    /// ifname or `devN`), and the fake sysfs follows.
    pub fn kernel_return_vf(&mut self, id: VfId, new_name: &str) -> Result<(), FabricError> {
        validate_netdev_name(new_name)?;
        let loc = self.vf_location(id)?.ok_or(FabricError::VfLost(id))?;
        let node = &self.layout.nodes[id.node];
        let cur = &loc.link.ifname;
        let mut lines = vec![format!("link set dev {cur} down")];
        if loc.netns == node.ip_netns() {
            if cur != new_name {
                lines.push(format!("link set dev {cur} name {new_name}"));
            }
        } else {
            let target = node.netns.clone().unwrap_or_else(|| "1".into());
            lines.push(format!("link set dev {cur} netns {target} name {new_name}"));
        }
        ip::batch(&loc.netns, &lines, false, false)?;
        self.sync_vf_sysfs(id)
    }

    /// Leaves the fabric in place after this handle is dropped (for
    /// `jobnet-fabric up`); `jobnet-fabric down` removes it later.
    pub fn persist(mut self) -> Result<FabricLayout, FabricError> {
        state::update(&FabricState {
            layout: self.layout.clone(),
            owner: None,
        })?;
        self.torn_down = true;
        Ok(self.layout.clone())
    }

    /// Removes every netns, link, temp dir and the state file.
    pub fn teardown(mut self) -> Result<(), FabricError> {
        self.torn_down = true;
        teardown_layout(&self.layout)
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        if !self.torn_down {
            self.torn_down = true;
            // Drop cannot report; `jobnet-fabric down --all` catches leftovers.
            let _ = teardown_layout(&self.layout);
        }
    }
}

/// Root port and PCIe switch (upstream and downstream port) in front of a
/// NIC that sits alone under its host bridge.
fn write_lone_nic_bridges(w: &SysfsWriter, nic: &NicPci, numa: u32) -> io::Result<()> {
    w.add_dir(&nic.host_bridge_dir())?;
    for (i, (pci, dir)) in nic.bridge_dirs().into_iter().enumerate() {
        // Root port (Intel), then a Broadcom/PLX switch's ports.
        let (vendor, device) = if i == 0 {
            (0x8086, 0x2030)
        } else {
            (0x10b5, 0x8747)
        };
        w.add_function(
            &dir,
            &PciFunction {
                pci,
                vendor,
                device,
                class: plan::CLASS_BRIDGE,
                numa_node: Some(numa),
                driver: Some("pcieport"),
                link: None,
            },
        )?;
    }
    Ok(())
}

/// The RDMA device `dev` bound to `netdev` (name, MAC) of a function of
/// `pf`'s NIC; it shares the PF's system image GUID, as on real NICs.
fn rdma_device<'a>(
    place: &'a NicPlacement,
    dev: &'a str,
    netdev: (&'a str, &'a str),
    pf: &FabricPf,
) -> RdmaDevice<'a> {
    RdmaDevice {
        name: dev,
        netdev: Some(netdev),
        char_index: rdma_index(dev),
        rate: &place.rate,
        link_layer: &place.link_layer,
        sys_image_guid: sysfs::eui64(&pf.mac),
    }
}

/// N of `mlx5_<N>` (0 for anything else).
fn rdma_index(dev: &str) -> u32 {
    dev.strip_prefix("mlx5_")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn by_name(links: Vec<IpLink>) -> HashMap<String, IpLink> {
    links.into_iter().map(|k| (k.ifname.clone(), k)).collect()
}

/// Removes what `layout` describes; missing pieces are not an error.
pub fn teardown_layout(layout: &FabricLayout) -> Result<(), FabricError> {
    // Host-node links are deleted explicitly: netns teardown would take them
    // too, but asynchronously.
    let mut host = Vec::new();
    for n in layout.nodes.iter().filter(|n| n.netns.is_none()) {
        for pf in &n.pfs {
            host.push(format!("link del dev {}", pf.netdev));
        }
        for vf in layout.vfs.iter().filter(|v| v.id.node == n.index) {
            if let Some(nd) = &vf.netdev {
                host.push(format!("link del dev {nd}"));
            }
        }
    }
    for n in &layout.nodes {
        if let Some(ns) = &n.netns {
            host.push(format!("netns del {ns}"));
        }
    }
    for r in &layout.rails {
        host.push(format!("netns del {}", r.netns));
    }
    if let Some(m) = &layout.mgmt {
        host.push(format!("netns del {}", m.netns));
    }
    let ip_result = ip::batch(&Netns::Host, &host, false, true);
    let dir_result = match std::fs::remove_dir_all(&layout.base_dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(FabricError::Io {
            path: layout.base_dir.clone(),
            source: e,
        }),
        _ => Ok(()),
    };
    ip_result?;
    dir_result?;
    let left: Vec<String> = ip::named_netns()
        .into_iter()
        .filter(|n| FabricId::of_netns(n).as_ref() == Some(&layout.id))
        .collect();
    if !left.is_empty() {
        return Err(FabricError::Ip {
            netns: left.join(","),
            detail: "netns still present after teardown".into(),
        });
    }
    state::remove(&layout.id)
}

/// What `down --all` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleanup {
    /// Fabrics removed through their state file.
    pub fabrics: Vec<FabricId>,
    /// Fabrics kept because their owning process still runs.
    pub kept_live: Vec<FabricId>,
    /// Netns without a state file that were removed.
    pub orphan_netns: Vec<String>,
    /// Temp dirs without a state file that were removed.
    pub orphan_dirs: Vec<PathBuf>,
}

/// Tears down fabric `id` from its state file.
pub fn down(id: &FabricId) -> Result<(), FabricError> {
    teardown_layout(&state::read(id)?.layout)
}

/// Removes every fabric whose owner is gone (all of them with `force`), and
/// any netns or temp dir named like a fabric's that has no state file.
pub fn down_all(force: bool) -> Result<Cleanup, FabricError> {
    let mut c = Cleanup::default();
    let mut first_err = None;
    for id in state::list() {
        match state::read(&id) {
            Ok(st) if !force && st.owner.as_ref().is_some_and(Owner::alive) => c.kept_live.push(id),
            Ok(st) => match teardown_layout(&st.layout) {
                Ok(()) => c.fabrics.push(id),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            },
            // An unreadable state file: its netns are caught as orphans below.
            Err(_) => {
                let _ = state::remove(&id);
            }
        }
    }
    // Checked per name, right before removal: a fabric being built right now
    // has written its state file before making anything.
    let orphans: Vec<String> = ip::named_netns()
        .into_iter()
        .filter(|n| FabricId::of_netns(n).is_some_and(|id| !state::exists(&id)))
        .collect();
    if !orphans.is_empty() {
        let lines: Vec<String> = orphans.iter().map(|n| format!("netns del {n}")).collect();
        ip::batch(&Netns::Host, &lines, false, true)?;
        c.orphan_netns = orphans;
    }
    for parent in names::tree_parents() {
        let Ok(rd) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let name = e.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|s| s.strip_prefix(names::TREE_DIR_PREFIX))
                .and_then(FabricId::parse)
            else {
                continue;
            };
            if !state::exists(&id) && std::fs::remove_dir_all(e.path()).is_ok() {
                c.orphan_dirs.push(e.path());
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(c),
    }
}

/// Every fabric with a state file, with its owner.
pub fn list() -> Vec<FabricState> {
    state::list()
        .iter()
        .filter_map(|id| state::read(id).ok())
        .collect()
}

/// The alias that marks a VF netdev of fabric `id` (unique on the machine).
fn vf_alias(fabric: &FabricId, vf: VfId) -> String {
    format!("jobnet-fabric:{fabric}:{}:{}:{}", vf.node, vf.nic, vf.index)
}

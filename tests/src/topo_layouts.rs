//! Fake sysfs trees of GPU training servers, laid out as the kernel does.
//!
//! A [`Layout`] describes host bridges (one per PCI root complex, each on a
//! NUMA node), their root ports and what hangs below: PCIe switches (an
//! upstream port whose children are downstream ports), plain bridges, GPUs,
//! SR-IOV NICs with their VFs, and other functions. [`write_layout`] turns it
//! into real directories under `devices/pci<domain>:<bus>/...`, with the
//! `bus/pci/devices`, `class/net`, `class/infiniband`, `driver`, `physfn`
//! and `virtfn<N>` links, `numa_node`, link speed/width files and the NUMA
//! nodes' `cpulist`/`cpumap` under `devices/system/node`.
//!
//! No kernel object is involved: the tree lives in a directory the caller
//! owns (a temp dir), and readers are pointed at it through `SysfsRoot`.
//!
//! Two ready-made layouts: [`eight_by_eight`] (8 GPUs, 8 NICs, 2 sockets,
//! one GPU and one NIC under each of 4 PCIe switches per socket) and
//! [`uneven`] (5 GPUs, 2 NICs, a nested switch, two host bridges on one
//! socket and the second NIC on the other socket).
//!
//! Writing happens in two parts so that the simulated fabric can reuse the
//! first: [`Layout::skeleton`] is everything but the NICs (NUMA nodes,
//! bridges, switches, GPUs, other functions) plus where each NIC goes
//! ([`NicSlot`]); [`write_layout`] writes the skeleton and then fake NICs
//! into those slots, while the fabric puts its real veth PFs and VFs there.
//! Both write through the [`sysfs`] module's writer.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use jobnet_hw::PciAddr;

// A file of its own so that the fabric shares it; included by path because
// jobnet-hw's tests include this file by path and have no jobnet-tests crate.
#[path = "fabric/sysfs.rs"]
pub mod sysfs;

pub use sysfs::LinkSpec;
use sysfs::{Netdev, NumaCpus, PciFunction, RdmaDevice, SysfsWriter};

/// NVIDIA's PCI vendor id.
pub const VENDOR_NVIDIA: u16 = 0x10de;
/// AMD/ATI's PCI vendor id (GPUs).
pub const VENDOR_AMD: u16 = 0x1002;
/// Mellanox/NVIDIA networking's PCI vendor id.
pub const VENDOR_MELLANOX: u16 = 0x15b3;
/// Intel's PCI vendor id.
pub const VENDOR_INTEL: u16 = 0x8086;
/// Broadcom/PLX PCIe switches.
pub const VENDOR_PLX: u16 = 0x10b5;
/// ASPEED (BMC VGA and its bridge).
pub const VENDOR_ASPEED: u16 = 0x1a03;

/// PCI-to-PCI bridge class (root ports, switch ports).
pub const CLASS_BRIDGE: u32 = 0x060400;
/// Host bridge class.
pub const CLASS_HOST_BRIDGE: u32 = 0x060000;
/// VGA-compatible display controller class.
pub const CLASS_VGA: u32 = 0x030000;
/// 3D controller class (data-center GPUs).
pub const CLASS_3D: u32 = 0x030200;
/// Other display controller class (AMD Instinct).
pub const CLASS_DISPLAY_OTHER: u32 = 0x038000;
/// Ethernet controller class.
pub const CLASS_ETHERNET: u32 = 0x020000;
/// InfiniBand controller class.
pub const CLASS_INFINIBAND: u32 = 0x020700;

/// Link speed written for switch ports and GPUs.
pub const GEN5: &str = "32.0 GT/s PCIe";
/// Link speed written for NICs.
pub const GEN4: &str = "16.0 GT/s PCIe";

/// A GPU function.
#[derive(Debug, Clone)]
pub struct GpuSpec {
    /// Address.
    pub pci: PciAddr,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class code.
    pub class: u32,
    /// Its link.
    pub link: LinkSpec,
}

/// An SR-IOV NIC (physical function) with its VFs and RDMA devices.
#[derive(Debug, Clone)]
pub struct NicSpec {
    /// The PF's address; VFs follow at routing-id offset 2, stride 1.
    pub pf: PciAddr,
    /// Class code (Ethernet or InfiniBand).
    pub class: u32,
    /// VFs enabled (`sriov_numvfs`); `sriov_totalvfs` is at least this.
    pub vfs: usize,
    /// RDMA port rate (`200 Gb/sec (4X HDR)`).
    pub rate: String,
    /// `Ethernet` (RoCE) or `InfiniBand`.
    pub link_layer: String,
    /// The PF's link.
    pub link: LinkSpec,
    /// PF netdev name; None derives `enp<bus>s<dev>f<fn>np0`.
    pub pf_netdev: Option<String>,
}

/// A function that is neither GPU nor SR-IOV NIC (BMC VGA, management NIC).
#[derive(Debug, Clone)]
pub struct OtherSpec {
    /// Address.
    pub pci: PciAddr,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class code.
    pub class: u32,
    /// Netdev, if it has one.
    pub netdev: Option<String>,
}

/// What sits behind a port.
#[derive(Debug, Clone)]
pub enum Slot {
    /// A GPU.
    Gpu(GpuSpec),
    /// An SR-IOV NIC.
    Nic(NicSpec),
    /// Any other endpoint.
    Other(OtherSpec),
    /// A PCIe switch.
    Switch(SwitchSpec),
    /// A plain PCI(e) bridge with one slot behind it.
    Bridge {
        /// The bridge's address.
        pci: PciAddr,
        /// What is behind it.
        child: Box<Slot>,
    },
}

/// A PCIe switch: an upstream port and its downstream ports.
#[derive(Debug, Clone)]
pub struct SwitchSpec {
    /// Upstream port address.
    pub upstream: PciAddr,
    /// (downstream port address, what is behind it).
    pub ports: Vec<(PciAddr, Slot)>,
}

/// A root port of a host bridge.
#[derive(Debug, Clone)]
pub struct RootPortSpec {
    /// Its address (on the host bridge's bus).
    pub pci: PciAddr,
    /// What is behind it.
    pub slot: Slot,
}

/// A PCI root complex (`devices/pci<domain>:<bus>`).
#[derive(Debug, Clone)]
pub struct HostBridgeSpec {
    /// PCI domain.
    pub domain: u16,
    /// Root bus number.
    pub bus: u8,
    /// NUMA node of everything below.
    pub numa: u32,
    /// Root ports.
    pub root_ports: Vec<RootPortSpec>,
}

/// A NUMA node's CPUs.
#[derive(Debug, Clone)]
pub struct NumaSpec {
    /// Node id.
    pub id: u32,
    /// `cpulist` (`0-31`).
    pub cpulist: String,
    /// `cpumap` (`00000000,ffffffff`).
    pub cpumap: String,
}

/// A whole server.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Short name (`8x8`, `uneven`).
    pub name: String,
    /// Distinguishes nodes of a cluster: it goes into MACs and GUIDs only,
    /// never into PCI addresses or names.
    pub node: u8,
    /// NUMA nodes.
    pub numa: Vec<NumaSpec>,
    /// Root complexes.
    pub host_bridges: Vec<HostBridgeSpec>,
}

/// One VF as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenVf {
    /// Its address.
    pub pci: PciAddr,
    /// N of the PF's `virtfn<N>`.
    pub index: usize,
    /// Its directory, relative to the root.
    pub dir: PathBuf,
    /// Its netdev.
    pub netdev: String,
    /// Its RDMA device.
    pub rdma: String,
    /// Its MAC.
    pub mac: String,
}

/// One NIC as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenNic {
    /// The PF's address.
    pub pf: PciAddr,
    /// Its directory, relative to the root.
    pub dir: PathBuf,
    /// The PF's netdev.
    pub netdev: String,
    /// The PF's RDMA device.
    pub rdma: String,
    /// The PF's MAC.
    pub mac: String,
    /// Its VFs, by index.
    pub vfs: Vec<WrittenVf>,
}

/// What [`write_layout`] made, to find things again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenLayout {
    /// The sysfs root.
    pub root: PathBuf,
    /// GPUs in writing order: (address, directory relative to the root).
    pub gpus: Vec<(PciAddr, PathBuf)>,
    /// SR-IOV NICs in writing order.
    pub nics: Vec<WrittenNic>,
}

fn pci(s: &str) -> PciAddr {
    // Only called with literals below; a typo shows up in every test.
    s.parse().unwrap_or_else(|_| panic!("bad PCI literal {s}"))
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Address of VF `i` of `pf`: routing id + 2 + i, as mlx5 lays VFs out.
/// None when it would leave the PF's domain.
pub fn vf_addr(pf: PciAddr, i: usize) -> Option<PciAddr> {
    let rid = (u32::from(pf.bus) << 8) | (u32::from(pf.device) << 3) | u32::from(pf.function);
    let vf = rid.checked_add(2)?.checked_add(u32::try_from(i).ok()?)?;
    let bus = u8::try_from(vf >> 8).ok()?;
    PciAddr::new(pf.domain, bus, ((vf >> 3) & 0x1f) as u8, (vf & 7) as u8)
}

/// Netdev name systemd would give a function (`enp19s0f0`), plus `suffix`.
fn predictable_name(p: PciAddr, suffix: &str) -> String {
    format!("enp{}s{}f{}{suffix}", p.bus, p.device, p.function)
}

/// Where a layout puts one SR-IOV NIC: the PF and its VFs are children of
/// the port directory `parent`.
#[derive(Debug, Clone)]
pub struct NicSlot {
    /// NIC index: position in writing order, which is PCI address order for
    /// the ready-made layouts.
    pub index: usize,
    /// What the layout says about the NIC.
    pub spec: NicSpec,
    /// Directory of the port the NIC hangs off, relative to the root.
    pub parent: PathBuf,
    /// NUMA node.
    pub numa: u32,
}

impl NicSlot {
    /// Directory of function `pci` (the PF or one of its VFs).
    pub fn function_dir(&self, pci: PciAddr) -> PathBuf {
        self.parent.join(pci.to_string())
    }

    /// The PF's directory.
    pub fn pf_dir(&self) -> PathBuf {
        self.function_dir(self.spec.pf)
    }
}

/// One function of the skeleton, placed.
#[derive(Debug, Clone)]
struct Placed {
    dir: PathBuf,
    pci: PciAddr,
    ids: (u16, u16, u32),
    numa: u32,
    link: Option<LinkSpec>,
    driver: Option<&'static str>,
    /// (name, MAC) of its netdev.
    netdev: Option<(String, String)>,
}

/// Everything of a layout except its NICs, and where the NICs go.
#[derive(Debug, Clone)]
pub struct Skeleton {
    numa: Vec<NumaSpec>,
    functions: Vec<Placed>,
    /// GPUs in writing order: (address, directory relative to the root).
    pub gpus: Vec<(PciAddr, PathBuf)>,
    /// The NICs' places, by NIC index.
    pub nics: Vec<NicSlot>,
}

/// Ifindex of the first netdev the skeleton writes (1 is `lo`).
const FIRST_IFINDEX: u32 = 2;

impl Skeleton {
    /// Writes NUMA nodes and every function (NICs excepted) with `w`.
    pub fn write(&self, w: &SysfsWriter) -> io::Result<()> {
        for n in &self.numa {
            w.add_numa_node(&NumaCpus {
                id: n.id,
                cpulist: &n.cpulist,
                cpumap: &n.cpumap,
            })?;
        }
        let mut ifindex = FIRST_IFINDEX;
        for f in &self.functions {
            let (vendor, device, class) = f.ids;
            w.add_function(
                &f.dir,
                &PciFunction {
                    pci: f.pci,
                    vendor,
                    device,
                    class,
                    numa_node: Some(f.numa),
                    driver: f.driver,
                    link: f.link.as_ref(),
                },
            )?;
            if let Some((name, mac)) = &f.netdev {
                w.add_netdev(
                    &f.dir,
                    &Netdev {
                        name,
                        address: mac,
                        ifindex,
                        mtu: 1500,
                        phys_port_name: None,
                        phys_switch_id: None,
                    },
                )?;
                ifindex += 1;
            }
        }
        Ok(())
    }

    /// How many netdevs [`Skeleton::write`] makes (the next free ifindex
    /// is this plus 2).
    fn netdev_count(&self) -> u32 {
        let n = self.functions.iter().filter(|f| f.netdev.is_some()).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn place(&mut self, dir: PathBuf, pci: PciAddr, ids: (u16, u16, u32), numa: u32) -> usize {
        self.functions.push(Placed {
            dir,
            pci,
            ids,
            numa,
            link: None,
            driver: None,
            netdev: None,
        });
        self.functions.len() - 1
    }

    fn slot(&mut self, node: u8, parent: &Path, slot: &Slot, numa: u32) {
        match slot {
            Slot::Gpu(g) => {
                let dir = parent.join(g.pci.to_string());
                let i = self.place(dir.clone(), g.pci, (g.vendor, g.device, g.class), numa);
                self.functions[i].link = Some(g.link.clone());
                self.functions[i].driver = Some(if g.vendor == VENDOR_NVIDIA {
                    "nvidia"
                } else {
                    "amdgpu"
                });
                self.gpus.push((g.pci, dir));
            }
            Slot::Nic(n) => self.nics.push(NicSlot {
                index: self.nics.len(),
                spec: n.clone(),
                parent: parent.to_owned(),
                numa,
            }),
            Slot::Other(o) => {
                let dir = parent.join(o.pci.to_string());
                let i = self.place(dir, o.pci, (o.vendor, o.device, o.class), numa);
                self.functions[i].link = Some(LinkSpec::new("5.0 GT/s PCIe", 1));
                self.functions[i].netdev = o.netdev.as_ref().map(|nd| {
                    let mac = mac_string([0x02, node, 0xee, 0, 0, o.pci.bus]);
                    (nd.clone(), mac)
                });
            }
            Slot::Switch(s) => {
                let port = |sk: &mut Self, dir: PathBuf, pci: PciAddr| {
                    let i = sk.place(dir, pci, (VENDOR_PLX, 0xc030, CLASS_BRIDGE), numa);
                    sk.functions[i].link = Some(LinkSpec::new(GEN5, 16));
                    sk.functions[i].driver = Some("pcieport");
                };
                let up_dir = parent.join(s.upstream.to_string());
                port(self, up_dir.clone(), s.upstream);
                for (ds, child) in &s.ports {
                    let ds_dir = up_dir.join(ds.to_string());
                    port(self, ds_dir.clone(), *ds);
                    self.slot(node, &ds_dir, child, numa);
                }
            }
            Slot::Bridge { pci: b, child } => {
                let dir = parent.join(b.to_string());
                let i = self.place(dir.clone(), *b, (VENDOR_ASPEED, 0x1150, CLASS_BRIDGE), numa);
                self.functions[i].link = Some(LinkSpec::new("5.0 GT/s PCIe", 1));
                self.slot(node, &dir, child, numa);
            }
        }
    }
}

impl Layout {
    /// Everything but the NICs, placed, and the NICs' slots; no I/O.
    pub fn skeleton(&self) -> Skeleton {
        let mut sk = Skeleton {
            numa: self.numa.clone(),
            functions: Vec::new(),
            gpus: Vec::new(),
            nics: Vec::new(),
        };
        for hb in &self.host_bridges {
            let hb_dir = PathBuf::from(format!("devices/pci{:04x}:{:02x}", hb.domain, hb.bus));
            // The host bridge's own function sits beside the root ports.
            if let Some(hf) = PciAddr::new(hb.domain, hb.bus, 0, 0) {
                sk.place(
                    hb_dir.join(hf.to_string()),
                    hf,
                    (VENDOR_INTEL, 0x09a2, CLASS_HOST_BRIDGE),
                    hb.numa,
                );
            }
            for rp in &hb.root_ports {
                let rp_dir = hb_dir.join(rp.pci.to_string());
                let i = sk.place(
                    rp_dir.clone(),
                    rp.pci,
                    (VENDOR_INTEL, 0x347a, CLASS_BRIDGE),
                    hb.numa,
                );
                sk.functions[i].link = Some(LinkSpec::new(GEN5, 16));
                sk.functions[i].driver = Some("pcieport");
                sk.slot(self.node, &rp_dir, &rp.slot, hb.numa);
            }
        }
        sk
    }
}

/// Counters shared by the NICs of one tree.
struct FakeNicNumbers {
    nic_count: usize,
    next_vf_rdma: usize,
    next_ifindex: u32,
}

/// Writes a netdev numbered from `ifindex` (then advanced).
fn fake_netdev(
    w: &SysfsWriter,
    dir: &Path,
    name: &str,
    mac: &str,
    ifindex: &mut u32,
) -> io::Result<()> {
    let nd = Netdev {
        name,
        address: mac,
        ifindex: *ifindex,
        mtu: 1500,
        phys_port_name: None,
        phys_switch_id: None,
    };
    *ifindex += 1;
    w.add_netdev(dir, &nd)
}

/// A fake NIC's RDMA device bound to `netdev` (name, MAC).
fn fake_rdma<'a>(
    n: &'a NicSpec,
    name: &'a str,
    netdev: (&'a str, &'a str),
    char_index: usize,
    sys_image_guid: Option<[u8; 8]>,
) -> RdmaDevice<'a> {
    RdmaDevice {
        name,
        netdev: Some(netdev),
        char_index: u32::try_from(char_index).unwrap_or(u32::MAX),
        rate: &n.rate,
        link_layer: &n.link_layer,
        sys_image_guid,
    }
}

/// Writes a fake NIC (PF, VFs, netdevs, RDMA devices) into `slot`.
fn write_fake_nic(
    w: &SysfsWriter,
    node: u8,
    slot: &NicSlot,
    numbers: &mut FakeNicNumbers,
) -> io::Result<WrittenNic> {
    let n = &slot.spec;
    let nic_index = slot.index;
    let idx = u8::try_from(nic_index).unwrap_or(u8::MAX);
    let dir = slot.pf_dir();
    w.add_function(
        &dir,
        &PciFunction {
            pci: n.pf,
            vendor: VENDOR_MELLANOX,
            device: 0x101d,
            class: n.class,
            numa_node: Some(slot.numa),
            driver: Some("mlx5_core"),
            link: Some(&n.link),
        },
    )?;
    w.set_sriov(&dir, n.vfs.max(16), n.vfs)?;
    let pf_mac = [0x02, node, idx, 0xff, 0x00, 0x00];
    let pf_netdev = n
        .pf_netdev
        .clone()
        .unwrap_or_else(|| predictable_name(n.pf, "np0"));
    let pf_mac_s = mac_string(pf_mac);
    fake_netdev(w, &dir, &pf_netdev, &pf_mac_s, &mut numbers.next_ifindex)?;
    let sys_image = sysfs::eui64(&pf_mac_s);
    let pf_rdma = format!("mlx5_{nic_index}");
    let pf_dev = fake_rdma(n, &pf_rdma, (&pf_netdev, &pf_mac_s), nic_index, sys_image);
    w.add_rdma(&dir, &pf_dev)?;
    let mut vfs = Vec::new();
    for i in 0..n.vfs {
        let vf = vf_addr(n.pf, i)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "VF address overflow"))?;
        let vf_dir = slot.function_dir(vf);
        // VFs implement no link registers: the kernel shows them as
        // unknown, readers fall back to the PF's link.
        w.add_function(
            &vf_dir,
            &PciFunction {
                pci: vf,
                vendor: VENDOR_MELLANOX,
                device: 0x101e,
                class: n.class,
                numa_node: Some(slot.numa),
                driver: Some("mlx5_core"),
                link: Some(&LinkSpec::new("Unknown", 0)),
            },
        )?;
        w.link_vf(&dir, i, &vf_dir)?;
        let vi = u8::try_from(i).unwrap_or(u8::MAX);
        let mac = mac_string([0x02, node, idx, 0x00, 0x00, vi.wrapping_add(1)]);
        let vf_netdev = predictable_name(n.pf, &format!("v{i}"));
        fake_netdev(w, &vf_dir, &vf_netdev, &mac, &mut numbers.next_ifindex)?;
        let rdma_name = format!("mlx5_{}", numbers.next_vf_rdma);
        let dev = fake_rdma(
            n,
            &rdma_name,
            (&vf_netdev, &mac),
            numbers.next_vf_rdma,
            sys_image,
        );
        w.add_rdma(&vf_dir, &dev)?;
        numbers.next_vf_rdma += 1;
        vfs.push(WrittenVf {
            pci: vf,
            index: i,
            dir: vf_dir,
            netdev: vf_netdev,
            rdma: rdma_name,
            mac,
        });
    }
    Ok(WrittenNic {
        pf: n.pf,
        dir,
        netdev: pf_netdev,
        rdma: pf_rdma,
        mac: pf_mac_s,
        vfs,
    })
}

/// Writes `layout` as a sysfs tree under `root` (which must exist).
pub fn write_layout(root: &Path, layout: &Layout) -> io::Result<WrittenLayout> {
    let w = SysfsWriter::create(root)?;
    let sk = layout.skeleton();
    sk.write(&w)?;
    let mut numbers = FakeNicNumbers {
        nic_count: sk.nics.len(),
        next_vf_rdma: sk.nics.len(),
        next_ifindex: FIRST_IFINDEX + sk.netdev_count(),
    };
    let mut nics = Vec::new();
    for slot in &sk.nics {
        nics.push(write_fake_nic(&w, layout.node, slot, &mut numbers)?);
    }
    debug_assert_eq!(nics.len(), numbers.nic_count);
    Ok(WrittenLayout {
        root: root.to_owned(),
        gpus: sk.gpus,
        nics,
    })
}

impl WrittenLayout {
    /// The written VF at `vf`.
    pub fn vf(&self, vf: PciAddr) -> Option<&WrittenVf> {
        self.nics.iter().flat_map(|n| &n.vfs).find(|v| v.pci == vf)
    }

    /// Adds `ip` to the GID table of `vf`'s RDMA device as RoCE v1 (index
    /// 2) and RoCE v2 (index 3), as the kernel does when the address is
    /// configured on the VF's netdev. Returns the v2 index.
    pub fn add_ipv4_gid(&self, vf: PciAddr, ip: Ipv4Addr) -> io::Result<u32> {
        let v = self
            .vf(vf)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, vf.to_string()))?;
        SysfsWriter::create(&self.root)?.add_ipv4_gid(&v.dir, &v.rdma, &v.netdev, ip)
    }
}

fn two_sockets() -> Vec<NumaSpec> {
    vec![
        NumaSpec {
            id: 0,
            cpulist: "0-31,64-95".to_owned(),
            cpumap: "00000000,ffffffff,00000000,ffffffff".to_owned(),
        },
        NumaSpec {
            id: 1,
            cpulist: "32-63,96-127".to_owned(),
            cpumap: "ffffffff,00000000,ffffffff,00000000".to_owned(),
        },
    ]
}

fn nic(pf: PciAddr, vfs: usize) -> NicSpec {
    NicSpec {
        pf,
        class: CLASS_ETHERNET,
        vfs,
        rate: "200 Gb/sec (2X NDR)".to_owned(),
        link_layer: "Ethernet".to_owned(),
        link: LinkSpec::new(GEN4, 16),
        pf_netdev: None,
    }
}

fn h100(p: PciAddr) -> Slot {
    Slot::Gpu(GpuSpec {
        pci: p,
        vendor: VENDOR_NVIDIA,
        device: 0x2330,
        class: CLASS_3D,
        link: LinkSpec::new(GEN5, 16),
    })
}

fn at(bus: u8, device: u8) -> PciAddr {
    PciAddr::new(0, bus, device, 0).unwrap_or_else(|| pci("0000:00:00.0"))
}

/// The 8-GPU, 8-NIC, 2-socket server: per socket one host bridge
/// (`pci0000:00`, `pci0000:80`) with 4 root ports, each leading to a PCIe
/// switch with one GPU and one NIC. Switch k of the socket whose bus base
/// is B (0x10 or 0x90) has its upstream port at bus B+0x10k, downstream
/// ports at B+0x10k+1 (devices 0 and 1), the GPU at `B+0x10k+2:00.0` and
/// the NIC at `B+0x10k+3:00.0`; so GPU i and NIC i share switch i.
/// `node` only changes MACs and GUIDs.
pub fn eight_by_eight(node: u8, vfs_per_nic: usize) -> Layout {
    let socket = |hb_bus: u8, base: u8| HostBridgeSpec {
        domain: 0,
        bus: hb_bus,
        numa: u32::from(hb_bus >= 0x80),
        root_ports: (0..4u8)
            .map(|k| {
                let b = base + 0x10 * k;
                RootPortSpec {
                    pci: at(hb_bus, k + 1),
                    slot: Slot::Switch(SwitchSpec {
                        upstream: at(b, 0),
                        ports: vec![
                            (at(b + 1, 0), h100(at(b + 2, 0))),
                            (at(b + 1, 1), Slot::Nic(nic(at(b + 3, 0), vfs_per_nic))),
                        ],
                    }),
                }
            })
            .collect(),
    };
    Layout {
        name: "8x8".to_owned(),
        node,
        numa: two_sockets(),
        host_bridges: vec![socket(0x00, 0x10), socket(0x80, 0x90)],
    }
}

/// A deliberately uneven server (5 GPUs, 2 NICs):
///
/// ```text
/// NUMA 0, pci0000:00
///   00:01.0 -> switch 01:00.0
///                02:00.0 -> GPU0 03:00.0
///                02:01.0 -> NIC0 04:00.0
///                02:02.0 -> switch 05:00.0 / 06:00.0 -> GPU1 07:00.0
///   00:02.0 -> GPU2 08:00.0
///   00:03.0 -> bridge 09:00.0 -> BMC VGA 0a:00.0 (not a GPU)
///   00:04.0 -> management NIC 0b:00.0 (no SR-IOV, not a NIC here)
/// NUMA 0, pci0000:40
///   40:01.0 -> GPU3 41:00.0
/// NUMA 1, pci0000:80
///   80:01.0 -> GPU4 81:00.0 (AMD)
///   80:02.0 -> NIC1 82:00.0
/// ```
pub fn uneven(node: u8, vfs_per_nic: usize) -> Layout {
    let gpu0 = h100(pci("0000:03:00.0"));
    let gpu1 = h100(pci("0000:07:00.0"));
    let nested = Slot::Switch(SwitchSpec {
        upstream: pci("0000:05:00.0"),
        ports: vec![(pci("0000:06:00.0"), gpu1)],
    });
    let top = Slot::Switch(SwitchSpec {
        upstream: pci("0000:01:00.0"),
        ports: vec![
            (pci("0000:02:00.0"), gpu0),
            (
                pci("0000:02:01.0"),
                Slot::Nic(nic(pci("0000:04:00.0"), vfs_per_nic)),
            ),
            (pci("0000:02:02.0"), nested),
        ],
    });
    let bmc = Slot::Bridge {
        pci: pci("0000:09:00.0"),
        child: Box::new(Slot::Other(OtherSpec {
            pci: pci("0000:0a:00.0"),
            vendor: VENDOR_ASPEED,
            device: 0x2000,
            class: CLASS_VGA,
            netdev: None,
        })),
    };
    let mgmt = Slot::Other(OtherSpec {
        pci: pci("0000:0b:00.0"),
        vendor: VENDOR_INTEL,
        device: 0x1521,
        class: CLASS_ETHERNET,
        netdev: Some("eno1".to_owned()),
    });
    let amd = Slot::Gpu(GpuSpec {
        pci: pci("0000:81:00.0"),
        vendor: VENDOR_AMD,
        device: 0x740c,
        class: CLASS_DISPLAY_OTHER,
        link: LinkSpec::new(GEN4, 16),
    });
    let rp = |s: &str, slot: Slot| RootPortSpec { pci: pci(s), slot };
    Layout {
        name: "uneven".to_owned(),
        node,
        numa: two_sockets(),
        host_bridges: vec![
            HostBridgeSpec {
                domain: 0,
                bus: 0x00,
                numa: 0,
                root_ports: vec![
                    rp("0000:00:01.0", top),
                    rp("0000:00:02.0", h100(pci("0000:08:00.0"))),
                    rp("0000:00:03.0", bmc),
                    rp("0000:00:04.0", mgmt),
                ],
            },
            HostBridgeSpec {
                domain: 0,
                bus: 0x40,
                numa: 0,
                root_ports: vec![rp("0000:40:01.0", h100(pci("0000:41:00.0")))],
            },
            HostBridgeSpec {
                domain: 0,
                bus: 0x80,
                numa: 1,
                root_ports: vec![
                    rp("0000:80:01.0", amd),
                    rp(
                        "0000:80:02.0",
                        Slot::Nic(nic(pci("0000:82:00.0"), vfs_per_nic)),
                    ),
                ],
            },
        ],
    }
}

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

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use jobnet_hw::PciAddr;

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

/// A PCIe link: speed string as sysfs writes it, and width in lanes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// `current_link_speed` / `max_link_speed` (`16.0 GT/s PCIe`).
    pub speed: String,
    /// `current_link_width` / `max_link_width`.
    pub width: u32,
}

impl LinkSpec {
    /// A link of `speed` and `width` lanes.
    pub fn new(speed: &str, width: u32) -> Self {
        Self {
            speed: speed.to_owned(),
            width,
        }
    }
}

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

fn up(levels: usize) -> PathBuf {
    (0..levels).map(|_| "..").collect()
}

/// Link target for a link placed in `dir` that points at `target` (both
/// relative to the root), as the kernel writes them (relative).
fn relative(dir: &Path, target: &Path) -> PathBuf {
    up(dir.components().count()).join(target)
}

fn write_attr(path: &Path, value: impl std::fmt::Display) -> io::Result<()> {
    fs::write(path, format!("{value}\n"))
}

fn link(target: &Path, at: &Path) -> io::Result<()> {
    match fs::remove_file(at) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    symlink(target, at)
}

/// Modified EUI-64 of a MAC, as RoCE derives node GUIDs and link-local GIDs.
fn eui64(mac: [u8; 6]) -> [u8; 8] {
    let [a, b, c, d, e, f] = mac;
    [a ^ 0x02, b, c, 0xff, 0xfe, d, e, f]
}

fn colon_groups(bytes: &[u8]) -> String {
    bytes
        .chunks(2)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Address of VF `i` of `pf`: routing id + 2 + i, as mlx5 lays VFs out.
fn vf_addr(pf: PciAddr, i: usize) -> Option<PciAddr> {
    let rid = (u32::from(pf.bus) << 8) | (u32::from(pf.device) << 3) | u32::from(pf.function);
    let vf = rid.checked_add(2)?.checked_add(u32::try_from(i).ok()?)?;
    let bus = u8::try_from(vf >> 8).ok()?;
    PciAddr::new(pf.domain, bus, ((vf >> 3) & 0x1f) as u8, (vf & 7) as u8)
}

/// Netdev name systemd would give a function (`enp19s0f0`), plus `suffix`.
fn predictable_name(p: PciAddr, suffix: &str) -> String {
    format!("enp{}s{}f{}{suffix}", p.bus, p.device, p.function)
}

struct Writer<'a> {
    root: &'a Path,
    layout: &'a Layout,
    nic_count: usize,
    next_vf_rdma: usize,
    next_ifindex: u32,
    out: WrittenLayout,
}

impl Writer<'_> {
    fn abs(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    fn function(
        &mut self,
        dir: &Path,
        addr: PciAddr,
        ids: (u16, u16, u32),
        numa: u32,
        link_spec: Option<&LinkSpec>,
        driver: Option<&str>,
    ) -> io::Result<()> {
        let (vendor, device, class) = ids;
        let abs = self.abs(dir);
        fs::create_dir_all(&abs)?;
        write_attr(&abs.join("vendor"), format_args!("0x{vendor:04x}"))?;
        write_attr(&abs.join("device"), format_args!("0x{device:04x}"))?;
        write_attr(&abs.join("class"), format_args!("0x{class:06x}"))?;
        write_attr(&abs.join("numa_node"), numa)?;
        if let Some(l) = link_spec {
            for (file, v) in [
                ("current_link_speed", l.speed.clone()),
                ("max_link_speed", l.speed.clone()),
                ("current_link_width", l.width.to_string()),
                ("max_link_width", l.width.to_string()),
            ] {
                write_attr(&abs.join(file), v)?;
            }
        }
        let devices = Path::new("bus/pci/devices");
        link(
            &relative(devices, dir),
            &self.abs(&devices.join(addr.to_string())),
        )?;
        if let Some(drv) = driver {
            let drv_dir = Path::new("bus/pci/drivers").join(drv);
            fs::create_dir_all(self.abs(&drv_dir))?;
            link(&relative(dir, &drv_dir), &abs.join("driver"))?;
            link(
                &relative(&drv_dir, dir),
                &self.abs(&drv_dir.join(addr.to_string())),
            )?;
        }
        Ok(())
    }

    fn netdev(&mut self, dir: &Path, name: &str, mac: &str) -> io::Result<()> {
        let rel = dir.join("net").join(name);
        let abs = self.abs(&rel);
        fs::create_dir_all(&abs)?;
        self.next_ifindex += 1;
        write_attr(&abs.join("address"), mac)?;
        write_attr(&abs.join("ifindex"), self.next_ifindex)?;
        write_attr(&abs.join("mtu"), 1500)?;
        write_attr(&abs.join("type"), 1)?;
        link(&up(3), &abs.join("device"))?;
        let class = Path::new("class/net");
        link(&relative(class, &rel), &self.abs(&class.join(name)))
    }

    /// `infiniband/<name>` with one port, link-local GIDs at 0 (v1) and 1 (v2).
    #[allow(clippy::too_many_arguments)]
    fn rdma(
        &mut self,
        dir: &Path,
        name: &str,
        char_index: usize,
        mac: [u8; 6],
        sys_image: [u8; 8],
        netdev: &str,
        nic: &NicSpec,
    ) -> io::Result<()> {
        let rel = dir.join("infiniband").join(name);
        let abs = self.abs(&rel);
        let port = abs.join("ports/1");
        for d in ["gids", "gid_attrs/types", "gid_attrs/ndevs"] {
            fs::create_dir_all(port.join(d))?;
        }
        let guid = eui64(mac);
        write_attr(&abs.join("node_guid"), colon_groups(&guid))?;
        write_attr(&abs.join("sys_image_guid"), colon_groups(&sys_image))?;
        write_attr(&abs.join("node_type"), "1: CA")?;
        write_attr(&abs.join("fw_ver"), "28.39.1002")?;
        write_attr(&port.join("state"), "4: ACTIVE")?;
        write_attr(&port.join("phys_state"), "5: LinkUp")?;
        write_attr(&port.join("rate"), &nic.rate)?;
        write_attr(&port.join("link_layer"), &nic.link_layer)?;
        let mut gid = [0u8; 16];
        gid[0] = 0xfe;
        gid[1] = 0x80;
        gid[8..].copy_from_slice(&guid);
        for (i, ty) in ["IB/RoCE v1", "RoCE v2"].into_iter().enumerate() {
            write_attr(&port.join("gids").join(i.to_string()), colon_groups(&gid))?;
            write_attr(&port.join("gid_attrs/types").join(i.to_string()), ty)?;
            write_attr(&port.join("gid_attrs/ndevs").join(i.to_string()), netdev)?;
        }
        let fdir = self.abs(dir);
        let verbs = fdir
            .join("infiniband_verbs")
            .join(format!("uverbs{char_index}"));
        fs::create_dir_all(&verbs)?;
        write_attr(&verbs.join("ibdev"), name)?;
        link(&up(3), &abs.join("device"))?;
        let class = Path::new("class/infiniband");
        link(&relative(class, &rel), &self.abs(&class.join(name)))
    }

    fn slot(&mut self, parent: &Path, slot: &Slot, numa: u32) -> io::Result<()> {
        match slot {
            Slot::Gpu(g) => {
                let dir = parent.join(g.pci.to_string());
                let driver = if g.vendor == VENDOR_NVIDIA {
                    "nvidia"
                } else {
                    "amdgpu"
                };
                self.function(
                    &dir,
                    g.pci,
                    (g.vendor, g.device, g.class),
                    numa,
                    Some(&g.link),
                    Some(driver),
                )?;
                self.out.gpus.push((g.pci, dir));
            }
            Slot::Nic(n) => self.nic(parent, n, numa)?,
            Slot::Other(o) => {
                let dir = parent.join(o.pci.to_string());
                let l = LinkSpec::new("5.0 GT/s PCIe", 1);
                self.function(
                    &dir,
                    o.pci,
                    (o.vendor, o.device, o.class),
                    numa,
                    Some(&l),
                    None,
                )?;
                if let Some(nd) = &o.netdev {
                    let mac = [0x02, self.layout.node, 0xee, 0, 0, o.pci.bus];
                    self.netdev(&dir, nd, &mac_string(mac))?;
                }
            }
            Slot::Switch(s) => {
                let l = LinkSpec::new(GEN5, 16);
                let up_dir = parent.join(s.upstream.to_string());
                self.function(
                    &up_dir,
                    s.upstream,
                    (VENDOR_PLX, 0xc030, CLASS_BRIDGE),
                    numa,
                    Some(&l),
                    Some("pcieport"),
                )?;
                for (ds, child) in &s.ports {
                    let ds_dir = up_dir.join(ds.to_string());
                    self.function(
                        &ds_dir,
                        *ds,
                        (VENDOR_PLX, 0xc030, CLASS_BRIDGE),
                        numa,
                        Some(&l),
                        Some("pcieport"),
                    )?;
                    self.slot(&ds_dir, child, numa)?;
                }
            }
            Slot::Bridge { pci: b, child } => {
                let dir = parent.join(b.to_string());
                let l = LinkSpec::new("5.0 GT/s PCIe", 1);
                self.function(
                    &dir,
                    *b,
                    (VENDOR_ASPEED, 0x1150, CLASS_BRIDGE),
                    numa,
                    Some(&l),
                    None,
                )?;
                self.slot(&dir, child, numa)?;
            }
        }
        Ok(())
    }

    fn nic(&mut self, parent: &Path, n: &NicSpec, numa: u32) -> io::Result<()> {
        let nic_index = self.out.nics.len();
        let node = self.layout.node;
        let idx = u8::try_from(nic_index).unwrap_or(u8::MAX);
        let dir = parent.join(n.pf.to_string());
        self.function(
            &dir,
            n.pf,
            (VENDOR_MELLANOX, 0x101d, n.class),
            numa,
            Some(&n.link),
            Some("mlx5_core"),
        )?;
        let abs = self.abs(&dir);
        write_attr(&abs.join("sriov_totalvfs"), n.vfs.max(16))?;
        write_attr(&abs.join("sriov_numvfs"), n.vfs)?;
        write_attr(&abs.join("sriov_vf_device"), "101e")?;
        let pf_mac = [0x02, node, idx, 0xff, 0x00, 0x00];
        let pf_netdev = n
            .pf_netdev
            .clone()
            .unwrap_or_else(|| predictable_name(n.pf, "np0"));
        let pf_mac_s = mac_string(pf_mac);
        self.netdev(&dir, &pf_netdev, &pf_mac_s)?;
        let sys_image = eui64(pf_mac);
        let pf_rdma = format!("mlx5_{nic_index}");
        self.rdma(&dir, &pf_rdma, nic_index, pf_mac, sys_image, &pf_netdev, n)?;
        let mut vfs = Vec::new();
        for i in 0..n.vfs {
            let vf = vf_addr(n.pf, i).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "VF address overflow")
            })?;
            let vf_dir = parent.join(vf.to_string());
            // VFs implement no link registers: the kernel shows them as
            // unknown, readers fall back to the PF's link.
            self.function(
                &vf_dir,
                vf,
                (VENDOR_MELLANOX, 0x101e, n.class),
                numa,
                Some(&LinkSpec::new("Unknown", 0)),
                Some("mlx5_core"),
            )?;
            link(
                &Path::new("..").join(vf.to_string()),
                &abs.join(format!("virtfn{i}")),
            )?;
            link(
                &Path::new("..").join(n.pf.to_string()),
                &self.abs(&vf_dir).join("physfn"),
            )?;
            let vi = u8::try_from(i).unwrap_or(u8::MAX);
            let mac = [0x02, node, idx, 0x00, 0x00, vi.wrapping_add(1)];
            let netdev = predictable_name(n.pf, &format!("v{i}"));
            let mac_s = mac_string(mac);
            self.netdev(&vf_dir, &netdev, &mac_s)?;
            let rdma = format!("mlx5_{}", self.next_vf_rdma);
            let char_index = self.next_vf_rdma;
            self.next_vf_rdma += 1;
            self.rdma(&vf_dir, &rdma, char_index, mac, sys_image, &netdev, n)?;
            vfs.push(WrittenVf {
                pci: vf,
                index: i,
                dir: vf_dir,
                netdev,
                rdma,
                mac: mac_s,
            });
        }
        self.out.nics.push(WrittenNic {
            pf: n.pf,
            dir,
            netdev: pf_netdev,
            rdma: pf_rdma,
            mac: pf_mac_s,
            vfs,
        });
        Ok(())
    }
}

fn count_nics(slot: &Slot) -> usize {
    match slot {
        Slot::Nic(_) => 1,
        Slot::Switch(s) => s.ports.iter().map(|(_, c)| count_nics(c)).sum(),
        Slot::Bridge { child, .. } => count_nics(child),
        Slot::Gpu(_) | Slot::Other(_) => 0,
    }
}

/// Writes `layout` as a sysfs tree under `root` (which must exist).
pub fn write_layout(root: &Path, layout: &Layout) -> io::Result<WrittenLayout> {
    for d in [
        "devices/system/node",
        "bus/pci/devices",
        "bus/pci/drivers",
        "class/net",
        "class/infiniband",
    ] {
        fs::create_dir_all(root.join(d))?;
    }
    for n in &layout.numa {
        let dir = root.join(format!("devices/system/node/node{}", n.id));
        fs::create_dir_all(&dir)?;
        write_attr(&dir.join("cpulist"), &n.cpulist)?;
        write_attr(&dir.join("cpumap"), &n.cpumap)?;
    }
    let nic_count = layout
        .host_bridges
        .iter()
        .flat_map(|h| &h.root_ports)
        .map(|rp| count_nics(&rp.slot))
        .sum();
    let mut w = Writer {
        root,
        layout,
        nic_count,
        next_vf_rdma: nic_count,
        next_ifindex: 1,
        out: WrittenLayout {
            root: root.to_owned(),
            gpus: Vec::new(),
            nics: Vec::new(),
        },
    };
    for hb in &layout.host_bridges {
        let hb_dir = PathBuf::from(format!("devices/pci{:04x}:{:02x}", hb.domain, hb.bus));
        fs::create_dir_all(w.abs(&hb_dir))?;
        // The host bridge's own function sits beside the root ports.
        if let Some(hf) = PciAddr::new(hb.domain, hb.bus, 0, 0) {
            w.function(
                &hb_dir.join(hf.to_string()),
                hf,
                (VENDOR_INTEL, 0x09a2, CLASS_HOST_BRIDGE),
                hb.numa,
                None,
                None,
            )?;
        }
        for rp in &hb.root_ports {
            let rp_dir = hb_dir.join(rp.pci.to_string());
            w.function(
                &rp_dir,
                rp.pci,
                (VENDOR_INTEL, 0x347a, CLASS_BRIDGE),
                hb.numa,
                Some(&LinkSpec::new(GEN5, 16)),
                Some("pcieport"),
            )?;
            w.slot(&rp_dir, &rp.slot, hb.numa)?;
        }
    }
    debug_assert_eq!(w.out.nics.len(), w.nic_count);
    Ok(w.out)
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
        let port = self
            .root
            .join(&v.dir)
            .join("infiniband")
            .join(&v.rdma)
            .join("ports/1");
        let gid = colon_groups(&ip.to_ipv6_mapped().octets());
        for (i, ty) in [(2u32, "IB/RoCE v1"), (3, "RoCE v2")] {
            write_attr(&port.join("gids").join(i.to_string()), &gid)?;
            write_attr(&port.join("gid_attrs/types").join(i.to_string()), ty)?;
            write_attr(&port.join("gid_attrs/ndevs").join(i.to_string()), &v.netdev)?;
        }
        Ok(3)
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

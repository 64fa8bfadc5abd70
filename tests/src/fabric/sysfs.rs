//! Writes a fake sysfs tree laid out like the kernel's.
//!
//! Function directories are real directories under `devices/` nested along
//! the PCI hierarchy; `bus/pci/devices/<pci>`, `class/net/<netdev>`,
//! `class/infiniband/<dev>`, `driver`, `physfn`, `virtfn<N>` and `device` are
//! relative symlinks, as the kernel makes them, so readers can resolve them
//! with `readlink` or by following them.
//!
//! These are the pieces both fake trees are made of: the simulated fabric's
//! nodes and the GPU server layouts of `topo_layouts` (which includes this
//! file as its `sysfs` module, so it depends on nothing but `jobnet_hw`).

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use jobnet_hw::PciAddr;

/// RDMA port rate written when the caller has no better one.
pub const DEFAULT_RATE: &str = "100 Gb/sec (2X HDR)";
/// Link layer of RoCE ports.
pub const LINK_LAYER_ETHERNET: &str = "Ethernet";

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

/// Attributes of one PCI function.
#[derive(Debug, Clone)]
pub struct PciFunction<'a> {
    /// Address.
    pub pci: PciAddr,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// 24-bit class code.
    pub class: u32,
    /// NUMA node; None writes -1 as the kernel does.
    pub numa_node: Option<u32>,
    /// Bound driver, if any.
    pub driver: Option<&'a str>,
    /// Its upstream PCIe link; None writes no link files.
    pub link: Option<&'a LinkSpec>,
}

/// Attributes of one netdev.
#[derive(Debug, Clone)]
pub struct Netdev<'a> {
    /// Name.
    pub name: &'a str,
    /// MAC address.
    pub address: &'a str,
    /// Interface index.
    pub ifindex: u32,
    /// MTU.
    pub mtu: u32,
    /// `phys_port_name` (switchdev uplinks and representors).
    pub phys_port_name: Option<&'a str>,
    /// `phys_switch_id` (switchdev).
    pub phys_switch_id: Option<&'a str>,
}

/// Attributes of one RDMA device (one active port).
#[derive(Debug, Clone)]
pub struct RdmaDevice<'a> {
    /// Name (`mlx5_3`).
    pub name: &'a str,
    /// The netdev whose MAC makes the GUID and GIDs; None for a bare device.
    pub netdev: Option<(&'a str, &'a str)>,
    /// Number of its character devices (`uverbs<N>`, `umad<N>`).
    pub char_index: u32,
    /// Port `rate` (`200 Gb/sec (2X NDR)`).
    pub rate: &'a str,
    /// Port `link_layer` (`Ethernet` for RoCE, `InfiniBand`).
    pub link_layer: &'a str,
    /// `sys_image_guid` (the same for a PF and its VFs on real NICs); None
    /// uses the device's own node GUID.
    pub sys_image_guid: Option<[u8; 8]>,
}

/// One NUMA node's CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaCpus<'a> {
    /// Node id.
    pub id: u32,
    /// `cpulist` (`0-31`).
    pub cpulist: &'a str,
    /// `cpumap` (`00000000,ffffffff`).
    pub cpumap: &'a str,
}

/// Writes into one fake sysfs root.
#[derive(Debug, Clone)]
pub struct SysfsWriter {
    root: PathBuf,
}

fn up(levels: usize) -> PathBuf {
    (0..levels).map(|_| "..").collect()
}

/// The relative target that a link placed in `dir` needs to reach `target`
/// (both relative to the root).
fn relative(dir: &Path, target: &Path) -> PathBuf {
    up(dir.components().count()).join(target)
}

fn write_attr(path: PathBuf, value: impl std::fmt::Display) -> io::Result<()> {
    fs::write(path, format!("{value}\n"))
}

fn replace_link(target: &Path, link: &Path) -> io::Result<()> {
    match fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    symlink(target, link)
}

/// Modified EUI-64 from a MAC (`aa:bb:cc:dd:ee:ff`), as RoCE derives GUIDs.
pub fn eui64(mac: &str) -> Option<[u8; 8]> {
    let b: Vec<u8> = mac
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let [a, b1, c, d, e, f] = <[u8; 6]>::try_from(b).ok()?;
    Some([a ^ 0x02, b1, c, 0xff, 0xfe, d, e, f])
}

/// Bytes as colon-separated groups of four hex digits, as sysfs prints
/// GUIDs and GIDs.
pub fn groups(bytes: &[u8]) -> String {
    bytes
        .chunks(2)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

impl SysfsWriter {
    /// Creates the top-level directories under `root`.
    pub fn create(root: &Path) -> io::Result<Self> {
        for d in [
            "devices",
            "bus/pci/devices",
            "bus/pci/drivers",
            "class/net",
            "class/infiniband",
        ] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `devices/system/node/node<id>/{cpulist,cpumap}`.
    pub fn add_numa_node(&self, n: &NumaCpus<'_>) -> io::Result<()> {
        let dir = self
            .root
            .join("devices/system/node")
            .join(format!("node{}", n.id));
        fs::create_dir_all(&dir)?;
        write_attr(dir.join("cpulist"), n.cpulist)?;
        write_attr(dir.join("cpumap"), n.cpumap)
    }

    /// Makes `dir` (relative, e.g. `devices/pci0000:00`) if missing.
    pub fn add_dir(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(self.root.join(dir))
    }

    /// Writes a PCI function at `dir` (relative to the root) with its
    /// attributes, its `bus/pci/devices` link and its driver links.
    pub fn add_function(&self, dir: &Path, f: &PciFunction<'_>) -> io::Result<()> {
        let abs = self.root.join(dir);
        fs::create_dir_all(&abs)?;
        write_attr(abs.join("vendor"), format_args!("0x{:04x}", f.vendor))?;
        write_attr(abs.join("device"), format_args!("0x{:04x}", f.device))?;
        write_attr(abs.join("class"), format_args!("0x{:06x}", f.class))?;
        match f.numa_node {
            Some(n) => write_attr(abs.join("numa_node"), n)?,
            None => write_attr(abs.join("numa_node"), -1)?,
        }
        if let Some(l) = f.link {
            for kind in ["current", "max"] {
                write_attr(abs.join(format!("{kind}_link_speed")), &l.speed)?;
                write_attr(abs.join(format!("{kind}_link_width")), l.width)?;
            }
        }
        let devices = Path::new("bus/pci/devices");
        replace_link(
            &relative(devices, dir),
            &self.root.join(devices).join(f.pci.to_string()),
        )?;
        if let Some(drv) = f.driver {
            let drv_dir = Path::new("bus/pci/drivers").join(drv);
            fs::create_dir_all(self.root.join(&drv_dir))?;
            replace_link(&relative(dir, &drv_dir), &abs.join("driver"))?;
            replace_link(
                &relative(&drv_dir, dir),
                &self.root.join(&drv_dir).join(f.pci.to_string()),
            )?;
        }
        Ok(())
    }

    /// Writes `sriov_totalvfs` and `sriov_numvfs` of the PF at `pf_dir`.
    pub fn set_sriov(&self, pf_dir: &Path, total: usize, num: usize) -> io::Result<()> {
        let abs = self.root.join(pf_dir);
        write_attr(abs.join("sriov_totalvfs"), total)?;
        write_attr(abs.join("sriov_numvfs"), num)?;
        write_attr(abs.join("sriov_vf_device"), "101e")
    }

    /// Links PF and VF both ways (`virtfn<n>` and `physfn`); they are siblings.
    pub fn link_vf(&self, pf_dir: &Path, n: usize, vf_dir: &Path) -> io::Result<()> {
        let name = |d: &Path| d.file_name().map(PathBuf::from).unwrap_or_default();
        replace_link(
            &Path::new("..").join(name(vf_dir)),
            &self.root.join(pf_dir).join(format!("virtfn{n}")),
        )?;
        replace_link(
            &Path::new("..").join(name(pf_dir)),
            &self.root.join(vf_dir).join("physfn"),
        )
    }

    /// Adds `net/<name>/` under the function at `dir` and `class/net/<name>`.
    pub fn add_netdev(&self, dir: &Path, nd: &Netdev<'_>) -> io::Result<()> {
        let rel = dir.join("net").join(nd.name);
        let abs = self.root.join(&rel);
        fs::create_dir_all(&abs)?;
        write_attr(abs.join("address"), nd.address)?;
        write_attr(abs.join("ifindex"), nd.ifindex)?;
        write_attr(abs.join("mtu"), nd.mtu)?;
        write_attr(abs.join("type"), 1)?;
        if let Some(p) = nd.phys_port_name {
            write_attr(abs.join("phys_port_name"), p)?;
        }
        if let Some(s) = nd.phys_switch_id {
            write_attr(abs.join("phys_switch_id"), s)?;
        }
        let pci = dir.file_name().map(PathBuf::from).unwrap_or_default();
        replace_link(&up(3).join(pci), &abs.join("device"))?;
        let class = Path::new("class/net");
        replace_link(&relative(class, &rel), &self.root.join(class).join(nd.name))
    }

    /// Removes `net/<name>/` under `dir` and its `class/net` link.
    pub fn remove_netdev(&self, dir: &Path, name: &str) -> io::Result<()> {
        let ignore_missing = |r: io::Result<()>| match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        ignore_missing(fs::remove_dir_all(
            self.root.join(dir).join("net").join(name),
        ))?;
        ignore_missing(fs::remove_file(self.root.join("class/net").join(name)))
    }

    /// Netdev names currently under `net/` of the function at `dir`.
    pub fn netdevs(&self, dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.root.join(dir).join("net"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Adds `infiniband/<dev>/` under the function at `dir` with one active
    /// RoCE port, and `class/infiniband/<dev>`.
    pub fn add_rdma(&self, dir: &Path, dev: &RdmaDevice<'_>) -> io::Result<()> {
        let rel = dir.join("infiniband").join(dev.name);
        let abs = self.root.join(&rel);
        let port = abs.join("ports/1");
        for d in ["gids", "gid_attrs/types", "gid_attrs/ndevs"] {
            fs::create_dir_all(port.join(d))?;
        }
        let guid = dev.netdev.and_then(|(_, mac)| eui64(mac)).unwrap_or([0; 8]);
        write_attr(abs.join("node_guid"), groups(&guid))?;
        let image = dev.sys_image_guid.unwrap_or(guid);
        write_attr(abs.join("sys_image_guid"), groups(&image))?;
        write_attr(abs.join("node_type"), "1: CA")?;
        write_attr(abs.join("hca_type"), "MT4126")?;
        write_attr(abs.join("fw_ver"), "22.36.1010")?;
        write_attr(port.join("state"), "4: ACTIVE")?;
        write_attr(port.join("phys_state"), "5: LinkUp")?;
        write_attr(port.join("rate"), dev.rate)?;
        write_attr(port.join("link_layer"), dev.link_layer)?;
        write_attr(port.join("lid"), "0x0")?;
        write_attr(port.join("sm_lid"), "0x0")?;
        let mut gid = [0u8; 16];
        gid[0] = 0xfe;
        gid[1] = 0x80;
        gid[8..].copy_from_slice(&guid);
        // Index 0 and 1: the link-local GID as RoCE v1 and v2, as mlx5 lists it.
        for (i, ty) in ["IB/RoCE v1", "RoCE v2"].into_iter().enumerate() {
            write_attr(port.join("gids").join(i.to_string()), groups(&gid))?;
            write_attr(port.join("gid_attrs/types").join(i.to_string()), ty)?;
            let ndev = dev.netdev.map(|(n, _)| n).unwrap_or("");
            write_attr(port.join("gid_attrs/ndevs").join(i.to_string()), ndev)?;
        }
        // Character devices (/dev/infiniband/uverbsN, umadN) as the
        // function's infiniband_verbs/ and infiniband_mad/ entries.
        let n = dev.char_index;
        let fdir = self.root.join(dir);
        let verbs = fdir.join("infiniband_verbs").join(format!("uverbs{n}"));
        fs::create_dir_all(&verbs)?;
        write_attr(verbs.join("ibdev"), dev.name)?;
        write_attr(verbs.join("dev"), format_args!("231:{}", 192 + n))?;
        let mad = fdir.join("infiniband_mad").join(format!("umad{n}"));
        fs::create_dir_all(&mad)?;
        write_attr(mad.join("ibdev"), dev.name)?;
        write_attr(mad.join("port"), 1)?;
        write_attr(mad.join("dev"), format_args!("231:{n}"))?;
        let pci = dir.file_name().map(PathBuf::from).unwrap_or_default();
        replace_link(&up(3).join(pci), &abs.join("device"))?;
        let class = Path::new("class/infiniband");
        replace_link(
            &relative(class, &rel),
            &self.root.join(class).join(dev.name),
        )
    }

    /// Adds `ip` to the GID table of RDMA device `dev` (of the function at
    /// `dir`) as RoCE v1 (index 2) and RoCE v2 (index 3) on netdev `netdev`,
    /// as the kernel does when the address is configured on that netdev.
    /// Returns the v2 index.
    pub fn add_ipv4_gid(
        &self,
        dir: &Path,
        dev: &str,
        netdev: &str,
        ip: std::net::Ipv4Addr,
    ) -> io::Result<u32> {
        let port = self
            .root
            .join(dir)
            .join("infiniband")
            .join(dev)
            .join("ports/1");
        let gid = groups(&ip.to_ipv6_mapped().octets());
        for (i, ty) in [(2u32, "IB/RoCE v1"), (3, "RoCE v2")] {
            write_attr(port.join("gids").join(i.to_string()), &gid)?;
            write_attr(port.join("gid_attrs/types").join(i.to_string()), ty)?;
            write_attr(port.join("gid_attrs/ndevs").join(i.to_string()), netdev)?;
        }
        Ok(3)
    }

    /// Points the GID table of RDMA device `dev` at netdev `name`.
    pub fn set_rdma_netdev(&self, dir: &Path, dev: &str, name: &str) -> io::Result<()> {
        let ndevs = self
            .root
            .join(dir)
            .join("infiniband")
            .join(dev)
            .join("ports/1/gid_attrs/ndevs");
        for i in 0..2 {
            write_attr(ndevs.join(i.to_string()), name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eui64_flips_the_local_bit_and_inserts_fffe() {
        assert_eq!(
            eui64("02:11:22:33:44:55"),
            Some([0x00, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55])
        );
        assert_eq!(eui64("zz:11:22:33:44:55"), None);
        assert_eq!(eui64("11:22:33"), None);
    }

    #[test]
    fn links_are_relative_and_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let w = SysfsWriter::create(tmp.path()).unwrap();
        let pci: PciAddr = "0000:03:00.0".parse().unwrap();
        let dir = Path::new("devices/pci0000:00/0000:00:01.0/0000:03:00.0");
        w.add_function(
            dir,
            &PciFunction {
                pci,
                vendor: 0x15b3,
                device: 0x101d,
                class: 0x020000,
                numa_node: None,
                driver: Some("mlx5_core"),
                link: Some(&LinkSpec::new("16.0 GT/s PCIe", 16)),
            },
        )
        .unwrap();
        w.add_netdev(
            dir,
            &Netdev {
                name: "eth7",
                address: "02:00:00:00:00:01",
                ifindex: 9,
                mtu: 1500,
                phys_port_name: None,
                phys_switch_id: None,
            },
        )
        .unwrap();
        let root = tmp.path();
        let via_bus = fs::canonicalize(root.join("bus/pci/devices/0000:03:00.0")).unwrap();
        assert_eq!(via_bus, fs::canonicalize(root.join(dir)).unwrap());
        let drv = fs::canonicalize(root.join(dir).join("driver")).unwrap();
        assert_eq!(
            drv,
            fs::canonicalize(root.join("bus/pci/drivers/mlx5_core")).unwrap()
        );
        let dev = fs::canonicalize(root.join("class/net/eth7/device")).unwrap();
        assert_eq!(dev, via_bus);
        assert_eq!(
            fs::read_to_string(root.join(dir).join("numa_node")).unwrap(),
            "-1\n"
        );
        for (file, want) in [
            ("current_link_speed", "16.0 GT/s PCIe\n"),
            ("max_link_width", "16\n"),
        ] {
            assert_eq!(fs::read_to_string(root.join(dir).join(file)).unwrap(), want);
        }
        w.remove_netdev(dir, "eth7").unwrap();
        assert!(w.netdevs(dir).is_empty());
        assert!(fs::symlink_metadata(root.join("class/net/eth7")).is_err());
    }
}

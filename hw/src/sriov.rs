//! SR-IOV physical and virtual functions found in sysfs.
//!
//! The layout read here is the kernel's:
//! - `bus/pci/devices/<pci>` links to the function's directory under `devices/`;
//! - a PF has `sriov_totalvfs`, `sriov_numvfs` and `virtfn<N>` links to its VFs;
//! - a VF has a `physfn` link back to its PF;
//! - `net/<netdev>/` lists the function's netdevs (in the reader's netns),
//!   `infiniband/<dev>/` its RDMA devices, `driver` links to the bound driver;
//! - `class/net/<netdev>/device` links to the function that owns a netdev.
//!
//! Paths are only ever built from a parsed [`PciAddr`] or a validated netdev
//! name; link targets are reduced to their last component and parsed again, so
//! a crafted tree cannot steer reads outside the function directories.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::pci::PciAddr;
use crate::sysfs::SysfsRoot;

/// Drivers that hand a VF to user space (DPDK) instead of making a netdev.
pub const DPDK_DRIVERS: &[&str] = &["vfio-pci", "uio_pci_generic", "igb_uio"];

/// Longest Linux interface name (IFNAMSIZ - 1).
const MAX_NETDEV_NAME: usize = 15;

/// Why SR-IOV information could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SriovError {
    /// No `bus/pci/devices/<pci>` entry.
    #[error("{0} is not a PCI device on this node")]
    NotPciDevice(PciAddr),
    /// The function has no `physfn` link.
    #[error("{0} is not an SR-IOV virtual function (no physfn)")]
    NotVf(PciAddr),
    /// The function has no `sriov_totalvfs`.
    #[error("{0} is not an SR-IOV physical function (no sriov_totalvfs)")]
    NotPf(PciAddr),
    /// `physfn` exists but does not lead to a PCI device on this node.
    #[error("physical function of VF {vf} is missing ({detail})")]
    PfMissing {
        /// The VF whose PF is missing.
        vf: PciAddr,
        /// What was found instead.
        detail: String,
    },
    /// The PF has no `virtfn<N>` link to this VF.
    #[error("PF {pf} has no virtfn link to VF {vf}")]
    VfIndexNotFound {
        /// The VF.
        vf: PciAddr,
        /// Its PF.
        pf: PciAddr,
    },
    /// An attribute file is missing or does not hold what the kernel writes.
    #[error("{pci}: attribute {attr} is missing or malformed ({value:?})")]
    BadAttribute {
        /// The function.
        pci: PciAddr,
        /// Attribute file name.
        attr: &'static str,
        /// What was read (None when absent).
        value: Option<String>,
    },
    /// The netdev name is not a valid Linux interface name.
    #[error("invalid netdev name {0:?}")]
    InvalidNetdevName(String),
    /// No `class/net/<name>` entry.
    #[error("no netdev {0:?} in sysfs")]
    NoSuchNetdev(String),
    /// `class/net/<name>/device` is missing or not a PCI function.
    #[error("netdev {name:?} is not backed by a PCI function ({detail})")]
    NetdevNotPci {
        /// The netdev.
        name: String,
        /// What was found instead.
        detail: String,
    },
    /// A directory that must be listable could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// One SR-IOV virtual function.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VfInfo {
    /// The VF's PCI address.
    pub pci: PciAddr,
    /// Its physical function.
    pub pf_pci: PciAddr,
    /// The PF's netdevs (uplinks; switchdev representors excluded), sorted.
    pub pf_netdevs: Vec<String>,
    /// N such that the PF's `virtfn<N>` is this VF.
    pub vf_index: u32,
    /// The VF's netdevs visible here, sorted (empty for DPDK or when moved away).
    pub netdevs: Vec<String>,
    /// Bound driver (`mlx5_core`, `vfio-pci`, ...); None when unbound.
    pub driver: Option<String>,
    /// NUMA node; None when the kernel says -1 or does not say.
    pub numa_node: Option<u32>,
    /// PCI vendor id.
    pub vendor: u16,
    /// PCI device id.
    pub device: u16,
    /// RDMA devices of the VF (`infiniband/` entries), sorted.
    pub rdma_devices: Vec<String>,
    /// The VF's switchdev representor netdev under the PF (`phys_port_name`
    /// `pf<P>vf<N>`), when the NIC is in switchdev mode.
    pub representor: Option<String>,
}

impl VfInfo {
    /// True when the VF is bound to a user-space (DPDK) driver.
    pub fn is_dpdk(&self) -> bool {
        self.driver
            .as_deref()
            .is_some_and(|d| DPDK_DRIVERS.contains(&d))
    }
}

/// One SR-IOV physical function.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PfInfo {
    /// The PF's PCI address.
    pub pci: PciAddr,
    /// Its netdevs (uplinks; representors excluded), sorted.
    pub netdevs: Vec<String>,
    /// `sriov_totalvfs`.
    pub total_vfs: u32,
    /// `sriov_numvfs`.
    pub num_vfs: u32,
    /// Bound driver; None when unbound.
    pub driver: Option<String>,
    /// NUMA node; None when -1 or absent.
    pub numa_node: Option<u32>,
    /// `phys_switch_id` of the first uplink netdev that has one (switchdev).
    pub switch_id: Option<String>,
    /// RDMA devices of the PF, sorted.
    pub rdma_devices: Vec<String>,
}

/// Checks that `name` can be a Linux interface name (and so a path component).
pub fn validate_netdev_name(name: &str) -> Result<(), SriovError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NETDEV_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(SriovError::InvalidNetdevName(
            name.chars().take(64).collect(),
        ))
    }
}

/// True for switchdev representor port names (`pf0vf3`, `c1pf0vf3`, `pf0sf1`).
pub fn is_representor_port_name(name: &str) -> bool {
    let rest = match name.strip_prefix('c') {
        Some(r) => match r.find(|c: char| !c.is_ascii_digit()) {
            Some(i) if i > 0 => &r[i..],
            _ => return false,
        },
        None => name,
    };
    let Some(rest) = rest.strip_prefix("pf") else {
        return false;
    };
    let Some(i) = rest.find(|c: char| !c.is_ascii_digit()) else {
        return false;
    };
    if i == 0 {
        return false;
    }
    let tail = &rest[i..];
    let num = tail.strip_prefix("vf").or_else(|| tail.strip_prefix("sf"));
    num.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The function directory `bus/pci/devices/<pci>` (a symlink on real sysfs).
fn dev_dir(root: &SysfsRoot, pci: PciAddr) -> PathBuf {
    root.join("bus/pci/devices").join(pci.to_string())
}

/// Reads the link `dir/name` and parses its last component as a PCI address.
fn link_to_pci(dir: &Path, name: &str) -> Result<PciAddr, String> {
    let target = fs::read_link(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
    let last = target
        .file_name()
        .and_then(|s| s.to_str())
        .ok_or_else(|| format!("{name} -> {}", target.display()))?;
    last.parse::<PciAddr>()
        .map_err(|_| format!("{name} -> {}", target.display()))
}

/// Basename of the link `dir/name`, when it is a link.
fn link_basename(dir: &Path, name: &str) -> Option<String> {
    let target = fs::read_link(dir.join(name)).ok()?;
    target
        .file_name()
        .and_then(|s| s.to_str())
        .map(str::to_owned)
}

/// Sorted entry names of `dir`; an absent directory is empty.
fn list_names(dir: &Path) -> Result<Vec<String>, SriovError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SriovError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| SriovError::Io {
            path: dir.to_owned(),
            source,
        })?;
        if let Some(n) = entry.file_name().to_str() {
            names.push(n.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn parse_hex_u16(pci: PciAddr, dir: &Path, attr: &'static str) -> Result<u16, SriovError> {
    let value = read_trimmed(&dir.join(attr));
    value
        .as_deref()
        .and_then(|v| v.strip_prefix("0x"))
        .and_then(|v| u16::from_str_radix(v, 16).ok())
        .ok_or(SriovError::BadAttribute { pci, attr, value })
}

fn parse_u32(pci: PciAddr, dir: &Path, attr: &'static str) -> Result<u32, SriovError> {
    let value = read_trimmed(&dir.join(attr));
    value
        .as_deref()
        .and_then(|v| v.parse().ok())
        .ok_or(SriovError::BadAttribute { pci, attr, value })
}

/// `numa_node`: -1 and absence both mean "unknown".
fn parse_numa(pci: PciAddr, dir: &Path) -> Result<Option<u32>, SriovError> {
    let Some(value) = read_trimmed(&dir.join("numa_node")) else {
        return Ok(None);
    };
    match value.parse::<i64>() {
        Ok(n) if n < 0 => Ok(None),
        Ok(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| SriovError::BadAttribute {
                pci,
                attr: "numa_node",
                value: Some(value),
            }),
        Err(_) => Err(SriovError::BadAttribute {
            pci,
            attr: "numa_node",
            value: Some(value),
        }),
    }
}

/// Netdev names under `dir/net/` that are valid interface names.
fn netdev_names(dir: &Path) -> Result<Vec<String>, SriovError> {
    Ok(list_names(&dir.join("net"))?
        .into_iter()
        .filter(|n| validate_netdev_name(n).is_ok())
        .collect())
}

/// A representor netdev and its `phys_port_name`.
type Representor = (String, String);

/// A PF's netdevs split into (uplinks, representors).
fn pf_netdevs(pf_dir: &Path) -> Result<(Vec<String>, Vec<Representor>), SriovError> {
    let mut uplinks = Vec::new();
    let mut reps = Vec::new();
    for name in netdev_names(pf_dir)? {
        let port = read_trimmed(&pf_dir.join("net").join(&name).join("phys_port_name"));
        match port {
            Some(p) if is_representor_port_name(&p) => reps.push((name, p)),
            _ => uplinks.push(name),
        }
    }
    Ok((uplinks, reps))
}

/// The `(N, vf)` pairs of a PF's `virtfn<N>` links, sorted by N.
pub fn virtfns(root: &SysfsRoot, pf: PciAddr) -> Result<Vec<(u32, PciAddr)>, SriovError> {
    let dir = dev_dir(root, pf);
    if !dir.exists() {
        return Err(SriovError::NotPciDevice(pf));
    }
    let mut out = Vec::new();
    for name in list_names(&dir)? {
        let Some(n) = name
            .strip_prefix("virtfn")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(vf) = link_to_pci(&dir, &name) {
            out.push((n, vf));
        }
    }
    out.sort();
    Ok(out)
}

/// Everything sysfs knows about the VF at `vf`.
pub fn resolve_vf(root: &SysfsRoot, vf: PciAddr) -> Result<VfInfo, SriovError> {
    let dir = dev_dir(root, vf);
    if !dir.exists() {
        return Err(SriovError::NotPciDevice(vf));
    }
    let physfn = dir.join("physfn");
    if fs::symlink_metadata(&physfn).is_err() {
        return Err(SriovError::NotVf(vf));
    }
    let pf_pci =
        link_to_pci(&dir, "physfn").map_err(|detail| SriovError::PfMissing { vf, detail })?;
    let pf_dir = dev_dir(root, pf_pci);
    if !pf_dir.exists() {
        return Err(SriovError::PfMissing {
            vf,
            detail: format!("no device {pf_pci}"),
        });
    }
    let vf_index = virtfns(root, pf_pci)?
        .into_iter()
        .find(|&(_, v)| v == vf)
        .map(|(n, _)| n)
        .ok_or(SriovError::VfIndexNotFound { vf, pf: pf_pci })?;
    let (uplinks, reps) = pf_netdevs(&pf_dir)?;
    // mlx5 names a VF's representor port pf<PF function>vf<index>.
    let wanted = format!("pf{}vf{}", pf_pci.function, vf_index);
    let representor = reps
        .into_iter()
        .find(|(_, port)| *port == wanted || (port.starts_with('c') && port.ends_with(&wanted)))
        .map(|(name, _)| name);
    Ok(VfInfo {
        pci: vf,
        pf_pci,
        pf_netdevs: uplinks,
        vf_index,
        netdevs: netdev_names(&dir)?,
        driver: link_basename(&dir, "driver"),
        numa_node: parse_numa(vf, &dir)?,
        vendor: parse_hex_u16(vf, &dir, "vendor")?,
        device: parse_hex_u16(vf, &dir, "device")?,
        rdma_devices: list_names(&dir.join("infiniband"))?,
        representor,
    })
}

/// Reads the PF at `pf`; errors when it is not an SR-IOV PF.
pub fn read_pf(root: &SysfsRoot, pf: PciAddr) -> Result<PfInfo, SriovError> {
    let dir = dev_dir(root, pf);
    if !dir.exists() {
        return Err(SriovError::NotPciDevice(pf));
    }
    if !dir.join("sriov_totalvfs").exists() {
        return Err(SriovError::NotPf(pf));
    }
    let (netdevs, _) = pf_netdevs(&dir)?;
    let switch_id = netdevs.iter().find_map(|n| {
        read_trimmed(&dir.join("net").join(n).join("phys_switch_id")).filter(|s| !s.is_empty())
    });
    Ok(PfInfo {
        pci: pf,
        total_vfs: parse_u32(pf, &dir, "sriov_totalvfs")?,
        num_vfs: parse_u32(pf, &dir, "sriov_numvfs")?,
        driver: link_basename(&dir, "driver"),
        numa_node: parse_numa(pf, &dir)?,
        switch_id,
        rdma_devices: list_names(&dir.join("infiniband"))?,
        netdevs,
    })
}

/// Every SR-IOV PF on the node (devices with `sriov_totalvfs`), by address.
pub fn list_pfs(root: &SysfsRoot) -> Result<Vec<PfInfo>, SriovError> {
    let mut out = Vec::new();
    for name in list_names(&root.join("bus/pci/devices"))? {
        let Ok(pci) = name.parse::<PciAddr>() else {
            continue;
        };
        if dev_dir(root, pci).join("sriov_totalvfs").exists() {
            out.push(read_pf(root, pci)?);
        }
    }
    out.sort_by_key(|p| p.pci);
    Ok(out)
}

/// The VFs of `pf`, sorted by VF index.
pub fn list_vfs(root: &SysfsRoot, pf: PciAddr) -> Result<Vec<VfInfo>, SriovError> {
    if !dev_dir(root, pf).join("sriov_totalvfs").exists() {
        return Err(SriovError::NotPf(pf));
    }
    virtfns(root, pf)?
        .into_iter()
        .map(|(_, vf)| resolve_vf(root, vf))
        .collect()
}

/// The PCI function that owns netdev `name` (`class/net/<name>/device`).
pub fn pci_by_netdev(root: &SysfsRoot, name: &str) -> Result<PciAddr, SriovError> {
    validate_netdev_name(name)?;
    let dir = root.join("class/net").join(name);
    if fs::symlink_metadata(&dir).is_err() {
        return Err(SriovError::NoSuchNetdev(name.to_owned()));
    }
    link_to_pci(&dir, "device").map_err(|detail| SriovError::NetdevNotPci {
        name: name.to_owned(),
        detail,
    })
}

/// The SR-IOV PF whose netdev is `name`.
pub fn pf_by_netdev(root: &SysfsRoot, name: &str) -> Result<PciAddr, SriovError> {
    let pci = pci_by_netdev(root, name)?;
    if !dev_dir(root, pci).join("sriov_totalvfs").exists() {
        return Err(SriovError::NotPf(pci));
    }
    Ok(pci)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn representor_port_names() {
        for yes in ["pf0vf0", "pf1vf12", "c1pf0vf3", "pf0sf7"] {
            assert!(is_representor_port_name(yes), "{yes}");
        }
        for no in [
            "p0", "pf0", "pf0vf", "vf0", "pfxvf1", "c pf0vf1", "cpf0vf1", "",
        ] {
            assert!(!is_representor_port_name(no), "{no}");
        }
    }

    #[test]
    fn netdev_names_are_checked() {
        for ok in ["eth0", "jf1234p0v12", "net1", "a.b"] {
            assert!(validate_netdev_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../../etc",
            "sixteen-chars-xx",
            "a b",
            "a:b",
        ] {
            assert!(validate_netdev_name(bad).is_err(), "{bad}");
        }
    }
}

//! Every PCI function of the node and its place in the PCI hierarchy.
//!
//! The kernel names a function's directory after its whole path from the
//! root complex: `devices/pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:00.0`
//! is function `0000:02:00.0` below bridges `0000:00:01.0` (a root port)
//! and `0000:01:00.0`, on host bridge `pci0000:00`. `bus/pci/devices/<pci>`
//! is a link to that directory, so the hierarchy is read from the link's
//! text alone: nothing outside the sysfs root is followed, and a component
//! that is not a PCI address makes the link invalid.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path};

use super::TopologyError;
use crate::pci::PciAddr;
use crate::sysfs::SysfsRoot;

/// Class code of a PCI-to-PCI bridge (root ports, switch ports).
pub const CLASS_PCI_BRIDGE: u32 = 0x060400;

/// A PCI root complex, as in `devices/pci0000:80`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct HostBridge {
    /// PCI domain.
    pub domain: u16,
    /// Root bus number.
    pub bus: u8,
}

impl fmt::Display for HostBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pci{:04x}:{:02x}", self.domain, self.bus)
    }
}

impl HostBridge {
    /// Parses a `pci<dddd>:<bb>` directory name.
    pub fn parse_dir_name(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("pci")?;
        let (d, b) = rest.split_once(':')?;
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_hexdigit());
        if !hex(d, 4) || !hex(b, 2) {
            return None;
        }
        Some(Self {
            domain: u16::from_str_radix(d, 16).ok()?,
            bus: u8::from_str_radix(b, 16).ok()?,
        })
    }
}

/// Link speed and width of a function's upstream PCIe link.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PcieLink {
    /// `current_link_speed` (`16.0 GT/s PCIe`); None when absent or `Unknown`.
    pub speed: Option<String>,
    /// `current_link_width`; None when absent or 0.
    pub width: Option<u32>,
    /// `max_link_speed`; None when absent or `Unknown`.
    pub max_speed: Option<String>,
    /// `max_link_width`; None when absent or 0.
    pub max_width: Option<u32>,
}

impl PcieLink {
    /// The speed to report: current when known, else the maximum.
    pub fn effective_speed(&self) -> Option<&str> {
        self.speed.as_deref().or(self.max_speed.as_deref())
    }

    /// The width to report: current when known, else the maximum.
    pub fn effective_width(&self) -> Option<u32> {
        self.width.or(self.max_width)
    }

    /// Whether neither speed nor width is known (VFs, emulated devices).
    pub fn is_unknown(&self) -> bool {
        self.effective_speed().is_none() && self.effective_width().is_none()
    }
}

/// One PCI function and where it sits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PciFunction {
    /// Its address.
    pub addr: PciAddr,
    /// 24-bit class code (`0x030200`).
    pub class: u32,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Subsystem vendor id, when sysfs has it.
    pub subsystem_vendor: Option<u16>,
    /// Subsystem device id, when sysfs has it.
    pub subsystem_device: Option<u16>,
    /// NUMA node; None when the kernel says -1 or nothing.
    pub numa_node: Option<u32>,
    /// Its upstream link.
    pub link: PcieLink,
    /// The root complex it is under.
    pub host_bridge: HostBridge,
    /// The functions on its path from the host bridge, top first (the
    /// root port first), itself excluded.
    pub ancestors: Vec<PciAddr>,
}

impl PciFunction {
    /// Whether this function is a PCI-to-PCI bridge.
    pub fn is_bridge(&self) -> bool {
        self.class == CLASS_PCI_BRIDGE
    }
}

/// All PCI functions of a node, by address.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PciTree {
    functions: BTreeMap<PciAddr, PciFunction>,
}

/// Splits a device path (the text of a `bus/pci/devices/<pci>` link) into
/// its host bridge and the PCI addresses below it, last = the function.
///
/// The last `pci<dddd>:<bb>` component is the host bridge (a VMD-style
/// domain nested below another device starts a new hierarchy); every
/// component after it must be a PCI address.
pub fn parse_device_path(target: &Path) -> Option<(HostBridge, Vec<PciAddr>)> {
    let names: Vec<&str> = target
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect();
    let hb_pos = names
        .iter()
        .rposition(|n| HostBridge::parse_dir_name(n).is_some())?;
    let hb = HostBridge::parse_dir_name(names.get(hb_pos)?)?;
    let chain = names
        .get(hb_pos + 1..)?
        .iter()
        .map(|n| n.parse::<PciAddr>().ok())
        .collect::<Option<Vec<_>>>()?;
    if chain.is_empty() {
        return None;
    }
    Some((hb, chain))
}

fn read_hex<T: TryFrom<u32>>(root: &SysfsRoot, rel: &Path) -> Option<T> {
    let s = root.read_attr(rel)?;
    let v = u32::from_str_radix(s.strip_prefix("0x")?, 16).ok()?;
    T::try_from(v).ok()
}

fn read_numa(root: &SysfsRoot, rel: &Path) -> Option<u32> {
    let v: i64 = root.read_attr(rel)?.parse().ok()?;
    u32::try_from(v).ok()
}

fn read_speed(root: &SysfsRoot, rel: &Path) -> Option<String> {
    root.read_attr(rel)
        .filter(|s| !s.is_empty() && !s.starts_with("Unknown") && s.len() <= 64)
}

fn read_width(root: &SysfsRoot, rel: &Path) -> Option<u32> {
    root.read_attr(rel)?.parse().ok().filter(|w| *w > 0)
}

impl PciTree {
    /// Reads every function listed in `bus/pci/devices`.
    pub fn read(root: &SysfsRoot) -> Result<Self, TopologyError> {
        let dir = root.join("bus/pci/devices");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(TopologyError::Io { path: dir, source }),
        };
        let mut functions = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|source| TopologyError::Io {
                path: dir.clone(),
                source,
            })?;
            let Some(addr) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<PciAddr>().ok())
            else {
                continue;
            };
            let f = Self::read_function(root, &entry.path(), addr)?;
            functions.insert(addr, f);
        }
        Ok(Self { functions })
    }

    fn read_function(
        root: &SysfsRoot,
        link: &Path,
        addr: PciAddr,
    ) -> Result<PciFunction, TopologyError> {
        let target = fs::read_link(link).map_err(|source| TopologyError::Io {
            path: link.to_owned(),
            source,
        })?;
        let bad = || TopologyError::BadDevicePath {
            pci: addr,
            target: target.display().to_string().chars().take(256).collect(),
        };
        let (host_bridge, mut chain) = parse_device_path(&target).ok_or_else(bad)?;
        if chain.pop() != Some(addr) {
            return Err(bad());
        }
        let rel = Path::new("bus/pci/devices").join(addr.to_string());
        let attr = |name: &str| rel.join(name);
        Ok(PciFunction {
            addr,
            class: read_hex(root, &attr("class")).unwrap_or(0),
            vendor: read_hex(root, &attr("vendor")).unwrap_or(0),
            device: read_hex(root, &attr("device")).unwrap_or(0),
            subsystem_vendor: read_hex(root, &attr("subsystem_vendor")),
            subsystem_device: read_hex(root, &attr("subsystem_device")),
            numa_node: read_numa(root, &attr("numa_node")),
            link: PcieLink {
                speed: read_speed(root, &attr("current_link_speed")),
                width: read_width(root, &attr("current_link_width")),
                max_speed: read_speed(root, &attr("max_link_speed")),
                max_width: read_width(root, &attr("max_link_width")),
            },
            host_bridge,
            ancestors: chain,
        })
    }

    /// Builds a tree from functions (tests, and nodes described by an API).
    pub fn from_functions(functions: impl IntoIterator<Item = PciFunction>) -> Self {
        Self {
            functions: functions.into_iter().map(|f| (f.addr, f)).collect(),
        }
    }

    /// The function at `addr`.
    pub fn get(&self, addr: PciAddr) -> Option<&PciFunction> {
        self.functions.get(&addr)
    }

    /// All functions, by address.
    pub fn iter(&self) -> impl Iterator<Item = &PciFunction> {
        self.functions.values()
    }

    /// Number of functions.
    pub fn len(&self) -> usize {
        self.functions.len()
    }

    /// Whether the tree has no function.
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }

    /// Whether `addr` is a known PCI-to-PCI bridge.
    pub fn is_bridge(&self, addr: PciAddr) -> bool {
        self.get(addr).is_some_and(PciFunction::is_bridge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_paths() {
        let (hb, chain) = parse_device_path(Path::new(
            "../../../devices/pci0000:80/0000:80:01.0/0000:81:00.0",
        ))
        .unwrap();
        assert_eq!(hb.to_string(), "pci0000:80");
        assert_eq!(
            chain,
            vec![
                "0000:80:01.0".parse::<PciAddr>().unwrap(),
                "0000:81:00.0".parse().unwrap()
            ]
        );
        for bad in [
            "../../../devices/virtual/net/lo",
            "../../../devices/pci0000:00",
            "../../../devices/pci0000:00/0000:00:01.0/usb1",
            "../../../devices/pcix000:00/0000:00:01.0",
        ] {
            assert!(parse_device_path(Path::new(bad)).is_none(), "{bad}");
        }
    }

    #[test]
    fn link_falls_back_to_max() {
        let l = PcieLink {
            speed: None,
            width: None,
            max_speed: Some("16.0 GT/s PCIe".into()),
            max_width: Some(16),
        };
        assert_eq!(l.effective_speed(), Some("16.0 GT/s PCIe"));
        assert_eq!(l.effective_width(), Some(16));
        assert!(!l.is_unknown());
        assert!(PcieLink::default().is_unknown());
    }
}

//! RDMA devices found in sysfs.
//!
//! The layout read here is the kernel's:
//! - `<function>/infiniband/<dev>/` for each RDMA device of a PCI function
//!   (`bus/pci/devices/<pci>`) or of an auxiliary device such as a mlx5
//!   sub-function (`bus/auxiliary/devices/<name>`, a link into the PCI
//!   function's directory);
//! - `class/infiniband/<dev>` links to the device, whose `device` link
//!   leads back to its parent;
//! - per device `node_guid`, `sys_image_guid`, `node_type` (`1: CA`),
//!   `fw_ver`, and `ports/<N>/` with `state` (`4: ACTIVE`), `phys_state`
//!   (`5: LinkUp`), `rate` (`100 Gb/sec (4X EDR)`), `link_layer`
//!   (`InfiniBand`/`Ethernet`), `gids/<I>`, `gid_attrs/types/<I>`
//!   (`IB/RoCE v1`, `RoCE v2`) and `gid_attrs/ndevs/<I>`;
//! - `<function>/infiniband_verbs/uverbs<N>/ibdev` and
//!   `<function>/infiniband_mad/umad<N>/{ibdev,port}` name the character
//!   devices under `/dev/infiniband`; `class/misc/rdma_cm` exists when
//!   `/dev/infiniband/rdma_cm` does.
//!
//! Paths are built only from a parsed [`PciAddr`] or a validated name, and
//! link targets are reduced to their last components and parsed again.
//! Attribute files that are missing, unreadable (the kernel answers EINVAL
//! for unpopulated GID entries) or odd become `None`; only directories
//! that exist but cannot be listed are errors.

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::pci::PciAddr;
use crate::sysfs::SysfsRoot;

/// Longest RDMA device name (`IB_DEVICE_NAME_MAX` - 1).
pub const MAX_RDMA_NAME: usize = 63;

/// Where the RDMA character devices live.
pub const DEV_INFINIBAND: &str = "/dev/infiniband";

/// Why RDMA information could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RdmaSysfsError {
    /// A name that cannot be an RDMA or auxiliary device name.
    #[error("invalid device name {0:?}")]
    InvalidName(String),
    /// No `class/infiniband/<name>` entry.
    #[error("no RDMA device {0:?} in sysfs")]
    NoSuchDevice(String),
    /// No `bus/pci/devices/<pci>` entry.
    #[error("no PCI device {0} in sysfs")]
    NoSuchPci(PciAddr),
    /// No `bus/auxiliary/devices/<name>` entry.
    #[error("no auxiliary device {0:?} in sysfs")]
    NoSuchAuxiliary(String),
    /// A directory exists but cannot be listed.
    #[error("reading {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Why a sysfs value did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {input:?}")]
pub struct ParseError {
    /// The kind of value.
    pub what: &'static str,
    /// The rejected text (at most 64 characters).
    pub input: String,
}

impl ParseError {
    fn new(what: &'static str, input: &str) -> Self {
        Self {
            what,
            input: input.chars().take(64).collect(),
        }
    }
}

/// Whether `name` is safe as one path component and plausible as a device
/// name: printable ASCII, no `/`, not `.`/`..`, at most `max` bytes.
fn is_safe_component(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// A validated RDMA device name (`mlx5_3`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct RdmaDevName(String);

impl RdmaDevName {
    /// Checks `name` (printable ASCII, no `/`, 1..=63 bytes).
    pub fn new(name: &str) -> Result<Self, RdmaSysfsError> {
        if is_safe_component(name, MAX_RDMA_NAME) {
            Ok(Self(name.to_owned()))
        } else {
            Err(RdmaSysfsError::InvalidName(name.chars().take(80).collect()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RdmaDevName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A 64-bit GUID, written by sysfs as `0002:c903:0031:7c10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub u64);

impl FromStr for Guid {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError::new("GUID", s);
        let groups: Vec<&str> = s.split(':').collect();
        if groups.len() != 4 {
            return Err(err());
        }
        let mut v = 0u64;
        for g in groups {
            if g.len() != 4 || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            v = (v << 16) | u64::from(u16::from_str_radix(g, 16).map_err(|_| err())?);
        }
        Ok(Self(v))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:04x}:{:04x}:{:04x}:{:04x}",
            (v >> 48) & 0xffff,
            (v >> 32) & 0xffff,
            (v >> 16) & 0xffff,
            v & 0xffff
        )
    }
}

impl serde::Serialize for Guid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The number before the colon of `"4: ACTIVE"`-style files.
fn leading_number(s: &str) -> Option<u8> {
    s.split(':').next()?.trim().parse().ok()
}

/// `node_type` (`1: CA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum NodeType {
    /// InfiniBand channel adapter (also RoCE NICs).
    Ca,
    /// InfiniBand switch.
    Switch,
    /// InfiniBand router.
    Router,
    /// iWARP NIC.
    Rnic,
    /// Cisco usNIC.
    Usnic,
    /// Cisco usNIC over UDP.
    UsnicUdp,
    /// Unspecified.
    Unspecified,
}

impl FromStr for NodeType {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        Ok(match leading_number(s) {
            Some(1) => Self::Ca,
            Some(2) => Self::Switch,
            Some(3) => Self::Router,
            Some(4) => Self::Rnic,
            Some(5) => Self::Usnic,
            Some(6) => Self::UsnicUdp,
            Some(7) => Self::Unspecified,
            _ => return Err(ParseError::new("node type", s)),
        })
    }
}

/// Logical port state (`state`: `4: ACTIVE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PortState {
    /// No state change (0).
    Nop,
    /// Down (1).
    Down,
    /// Initializing (2).
    Init,
    /// Armed (3).
    Armed,
    /// Active (4): usable for traffic.
    Active,
    /// Active, deferring (5).
    ActiveDefer,
}

impl FromStr for PortState {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        Ok(match leading_number(s) {
            Some(0) => Self::Nop,
            Some(1) => Self::Down,
            Some(2) => Self::Init,
            Some(3) => Self::Armed,
            Some(4) => Self::Active,
            Some(5) => Self::ActiveDefer,
            _ => return Err(ParseError::new("port state", s)),
        })
    }
}

/// Physical port state (`phys_state`: `5: LinkUp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PhysState {
    /// Sleep (1).
    Sleep,
    /// Polling (2).
    Polling,
    /// Disabled (3).
    Disabled,
    /// Port configuration training (4).
    Training,
    /// Link up (5).
    LinkUp,
    /// Link error recovery (6).
    LinkErrorRecovery,
    /// PHY test (7).
    PhyTest,
}

impl FromStr for PhysState {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        Ok(match leading_number(s) {
            Some(1) => Self::Sleep,
            Some(2) => Self::Polling,
            Some(3) => Self::Disabled,
            Some(4) => Self::Training,
            Some(5) => Self::LinkUp,
            Some(6) => Self::LinkErrorRecovery,
            Some(7) => Self::PhyTest,
            _ => return Err(ParseError::new("physical port state", s)),
        })
    }
}

/// Port rate (`rate`: `100 Gb/sec (4X EDR)`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rate {
    /// Speed in Mbit/s (`2.5 Gb/sec` is 2500).
    pub mbit_per_s: u64,
    /// The text in parentheses (`4X EDR`), when present.
    pub detail: Option<String>,
}

impl FromStr for Rate {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError::new("rate", s);
        let (num, rest) = s.trim().split_once(' ').ok_or_else(err)?;
        let rest = rest.trim_start();
        let detail = rest
            .strip_prefix("Gb/sec")
            .ok_or_else(err)?
            .trim()
            .strip_prefix('(')
            .and_then(|d| d.strip_suffix(')'))
            .map(str::to_owned);
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || frac.len() > 3 {
            return Err(err());
        }
        let whole: u64 = int.parse().map_err(|_| err())?;
        let milli: u64 = format!("{frac:0<3}").parse().map_err(|_| err())?;
        let mbit_per_s = whole
            .checked_mul(1000)
            .and_then(|w| w.checked_add(milli))
            .ok_or_else(err)?;
        Ok(Self { mbit_per_s, detail })
    }
}

/// Link layer of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum LinkLayer {
    /// InfiniBand (also Omni-Path).
    InfiniBand,
    /// Ethernet: RoCE or iWARP.
    Ethernet,
}

impl FromStr for LinkLayer {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.trim() {
            "InfiniBand" => Ok(Self::InfiniBand),
            "Ethernet" => Ok(Self::Ethernet),
            _ => Err(ParseError::new("link layer", s)),
        }
    }
}

/// Type of a GID entry (`gid_attrs/types/<I>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum GidType {
    /// `IB/RoCE v1`: an InfiniBand GID, or RoCE v1 on Ethernet.
    IbRoceV1,
    /// `RoCE v2`: routable RoCE over UDP/IP.
    RoceV2,
}

impl FromStr for GidType {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.trim() {
            "IB/RoCE v1" => Ok(Self::IbRoceV1),
            "RoCE v2" => Ok(Self::RoceV2),
            _ => Err(ParseError::new("GID type", s)),
        }
    }
}

/// Parses a GID as sysfs writes it (eight groups of four hex digits).
pub fn parse_gid(s: &str) -> Result<Ipv6Addr, ParseError> {
    let err = || ParseError::new("GID", s);
    let groups: Vec<&str> = s.trim().split(':').collect();
    if groups.len() != 8 {
        return Err(err());
    }
    let mut v = 0u128;
    for g in groups {
        if g.len() != 4 || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        v = (v << 16) | u128::from(u16::from_str_radix(g, 16).map_err(|_| err())?);
    }
    Ok(Ipv6Addr::from(v))
}

/// One populated GID table entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GidEntry {
    /// Index in the port's table (what `NCCL_IB_GID_INDEX` takes).
    pub index: u32,
    /// The GID (an IPv4 address appears as `::ffff:a.b.c.d`).
    pub gid: Ipv6Addr,
    /// Its type, when readable.
    pub kind: Option<GidType>,
    /// The netdev it belongs to (RoCE), when readable.
    pub ndev: Option<String>,
}

/// One port of an RDMA device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RdmaPort {
    /// Port number (from 1).
    pub number: u32,
    /// Logical state.
    pub state: Option<PortState>,
    /// Physical state.
    pub phys_state: Option<PhysState>,
    /// Rate.
    pub rate: Option<Rate>,
    /// Link layer.
    pub link_layer: Option<LinkLayer>,
    /// Populated GID entries (all-zero entries skipped), by index.
    pub gids: Vec<GidEntry>,
}

impl RdmaPort {
    /// Index of the RoCE v2 GID carrying `ip` (IPv4 as `::ffff:a.b.c.d`).
    pub fn roce_v2_gid_index(&self, ip: IpAddr) -> Option<u32> {
        let want = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        self.gids
            .iter()
            .find(|g| g.kind == Some(GidType::RoceV2) && g.gid == want)
            .map(|g| g.index)
    }

    /// Whether the port is ACTIVE.
    pub fn is_active(&self) -> bool {
        self.state == Some(PortState::Active)
    }
}

/// What an RDMA device hangs off.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum RdmaParent {
    /// A PCI function (PF or VF).
    Pci(PciAddr),
    /// An auxiliary-bus device (e.g. `mlx5_core.sf.2`) of a PCI function.
    Auxiliary {
        /// The auxiliary device's name.
        name: String,
        /// The PCI function it belongs to, when the link says so.
        pci: Option<PciAddr>,
    },
    /// No parent device (software RDMA such as rxe or siw).
    Virtual,
    /// A parent of another kind (its directory name).
    Other(String),
}

impl RdmaParent {
    /// The PCI function behind the device, directly or through the auxiliary bus.
    pub fn pci(&self) -> Option<PciAddr> {
        match self {
            Self::Pci(p) => Some(*p),
            Self::Auxiliary { pci, .. } => *pci,
            _ => None,
        }
    }
}

/// Interface of an RDMA character device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum CharDevKind {
    /// `uverbsN`: the verbs interface every RDMA application opens.
    Uverbs,
    /// `umadN`: management datagrams of one port.
    Umad,
    /// `rdma_cm`: the connection manager (one per host).
    RdmaCm,
}

/// A character device under `/dev/infiniband`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CharDevice {
    /// Interface.
    pub kind: CharDevKind,
    /// File name (`uverbs3`).
    pub name: String,
    /// Port, for per-port devices (umad).
    pub port: Option<u32>,
}

impl CharDevice {
    /// The device node: `/dev/infiniband/<name>`.
    pub fn path(&self) -> PathBuf {
        Path::new(DEV_INFINIBAND).join(&self.name)
    }
}

/// One RDMA device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RdmaDevice {
    /// Name (`mlx5_3`).
    pub name: RdmaDevName,
    /// What it hangs off.
    pub parent: RdmaParent,
    /// Node GUID.
    pub node_guid: Option<Guid>,
    /// System image GUID.
    pub sys_image_guid: Option<Guid>,
    /// Node type.
    pub node_type: Option<NodeType>,
    /// Firmware version.
    pub fw_ver: Option<String>,
    /// Ports, by number.
    pub ports: Vec<RdmaPort>,
    /// Its character devices (uverbs, umad), by name.
    pub char_devices: Vec<CharDevice>,
}

impl RdmaDevice {
    /// Port `number`, if the device has it.
    pub fn port(&self, number: u32) -> Option<&RdmaPort> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// Link layer of the first port (devices are either IB or Ethernet).
    pub fn link_layer(&self) -> Option<LinkLayer> {
        self.ports.first().and_then(|p| p.link_layer)
    }

    /// Whether this is RoCE (Ethernet link layer on a CA).
    pub fn is_roce(&self) -> bool {
        self.link_layer() == Some(LinkLayer::Ethernet) && self.node_type == Some(NodeType::Ca)
    }

    /// (port, index) of the RoCE v2 GID carrying `ip`, first port first.
    pub fn roce_v2_gid_index(&self, ip: IpAddr) -> Option<(u32, u32)> {
        self.ports
            .iter()
            .find_map(|p| p.roce_v2_gid_index(ip).map(|i| (p.number, i)))
    }

    /// The `uverbsN` device, the one a pod needs to run verbs.
    pub fn uverbs(&self) -> Option<&CharDevice> {
        self.char_devices
            .iter()
            .find(|c| c.kind == CharDevKind::Uverbs)
    }
}

/// An auxiliary-bus device of a PCI function and its RDMA devices.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuxiliaryDevice {
    /// Name on the auxiliary bus (`mlx5_core.sf.2`).
    pub name: String,
    /// Its RDMA devices.
    pub rdma: Vec<RdmaDevice>,
}

fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn read_parse<T: FromStr>(path: &Path) -> Option<T> {
    read_trim(path)?.parse().ok()
}

/// Names in `dir`, sorted; an absent directory is empty.
fn list_dir(dir: &Path) -> Result<Vec<String>, RdmaSysfsError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RdmaSysfsError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Numeric entries of `dir` (`ports/1`, `gids/17`), in numeric order.
fn list_numbered(dir: &Path) -> Result<Vec<u32>, RdmaSysfsError> {
    let mut v: Vec<u32> = list_dir(dir)?
        .iter()
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|n| n.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// Numbered char devices in `dir` named `<prefix><N>` whose `ibdev` is `dev`.
fn char_devices_in(
    dir: &Path,
    prefix: &str,
    kind: CharDevKind,
    dev: &RdmaDevName,
) -> Result<Vec<CharDevice>, RdmaSysfsError> {
    let mut out = Vec::new();
    for name in list_dir(dir)? {
        let numbered = name
            .strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !numbered {
            continue;
        }
        let entry = dir.join(&name);
        if read_trim(&entry.join("ibdev")).as_deref() != Some(dev.as_str()) {
            continue;
        }
        let port = match kind {
            CharDevKind::Umad => read_parse(&entry.join("port")),
            _ => None,
        };
        out.push(CharDevice { kind, name, port });
    }
    Ok(out)
}

fn read_port(port_dir: &Path, number: u32) -> Result<RdmaPort, RdmaSysfsError> {
    let mut gids = Vec::new();
    for index in list_numbered(&port_dir.join("gids"))? {
        let i = index.to_string();
        let Some(gid) = read_trim(&port_dir.join("gids").join(&i)).and_then(|s| parse_gid(&s).ok())
        else {
            continue;
        };
        if gid.is_unspecified() {
            continue;
        }
        gids.push(GidEntry {
            index,
            gid,
            kind: read_parse(&port_dir.join("gid_attrs/types").join(&i)),
            ndev: read_trim(&port_dir.join("gid_attrs/ndevs").join(&i))
                .filter(|n| is_safe_component(n, 15)),
        });
    }
    Ok(RdmaPort {
        number,
        state: read_parse(&port_dir.join("state")),
        phys_state: read_parse(&port_dir.join("phys_state")),
        rate: read_parse(&port_dir.join("rate")),
        link_layer: read_parse(&port_dir.join("link_layer")),
        gids,
    })
}

/// Reads the device at `dev_dir` (`<parent>/infiniband/<name>`), whose
/// parent function directory is `parent_dir` and parent is `parent`.
fn read_device(
    root: &SysfsRoot,
    name: RdmaDevName,
    dev_dir: &Path,
    parent_dir: Option<&Path>,
    parent: RdmaParent,
) -> Result<RdmaDevice, RdmaSysfsError> {
    let mut ports = Vec::new();
    for number in list_numbered(&dev_dir.join("ports"))? {
        ports.push(read_port(
            &dev_dir.join("ports").join(number.to_string()),
            number,
        )?);
    }
    // Char devices sit next to `infiniband/` under the parent; devices
    // without a parent (rxe) are found through the class directories.
    let (verbs_dir, mad_dir) = match parent_dir {
        Some(p) => (p.join("infiniband_verbs"), p.join("infiniband_mad")),
        None => (
            root.join("class/infiniband_verbs"),
            root.join("class/infiniband_mad"),
        ),
    };
    let mut char_devices = char_devices_in(&verbs_dir, "uverbs", CharDevKind::Uverbs, &name)?;
    char_devices.extend(char_devices_in(&mad_dir, "umad", CharDevKind::Umad, &name)?);
    Ok(RdmaDevice {
        parent,
        node_guid: read_parse(&dev_dir.join("node_guid")),
        sys_image_guid: read_parse(&dev_dir.join("sys_image_guid")),
        node_type: read_parse(&dev_dir.join("node_type")),
        fw_ver: read_trim(&dev_dir.join("fw_ver")).filter(|s| !s.is_empty()),
        ports,
        char_devices,
        name,
    })
}

/// RDMA devices in `<function_dir>/infiniband/`.
fn devices_under(
    root: &SysfsRoot,
    function_dir: &Path,
    parent: &RdmaParent,
) -> Result<Vec<RdmaDevice>, RdmaSysfsError> {
    let ib = function_dir.join("infiniband");
    let mut out = Vec::new();
    for raw in list_dir(&ib)? {
        let Ok(name) = RdmaDevName::new(&raw) else {
            continue;
        };
        let dev_dir = ib.join(name.as_str());
        out.push(read_device(
            root,
            name,
            &dev_dir,
            Some(function_dir),
            parent.clone(),
        )?);
    }
    Ok(out)
}

fn pci_dir(root: &SysfsRoot, pci: PciAddr) -> PathBuf {
    root.join("bus/pci/devices").join(pci.to_string())
}

fn aux_dir(root: &SysfsRoot, name: &str) -> PathBuf {
    root.join("bus/auxiliary/devices").join(name)
}

/// Names longer than this are not auxiliary devices (`NAME_MAX`).
const MAX_AUX_NAME: usize = 255;

/// The PCI function an auxiliary device belongs to: the path component
/// before the device's own name in its `bus/auxiliary/devices` link.
fn aux_parent_pci(root: &SysfsRoot, name: &str) -> Option<PciAddr> {
    let target = fs::read_link(aux_dir(root, name)).ok()?;
    let mut comps = target.components().rev();
    let last = comps.next()?.as_os_str().to_str()?;
    if last != name {
        return None;
    }
    comps.next()?.as_os_str().to_str()?.parse().ok()
}

/// The RDMA devices of PCI function `pci` (its own `infiniband/` entries,
/// not those of its sub-functions: see [`auxiliary_devices_of_pci`]).
pub fn devices_of_pci(root: &SysfsRoot, pci: PciAddr) -> Result<Vec<RdmaDevice>, RdmaSysfsError> {
    let dir = pci_dir(root, pci);
    if !dir.exists() {
        return Err(RdmaSysfsError::NoSuchPci(pci));
    }
    devices_under(root, &dir, &RdmaParent::Pci(pci))
}

/// The RDMA devices of auxiliary device `name` (e.g. `mlx5_core.sf.2`).
pub fn devices_of_auxiliary(
    root: &SysfsRoot,
    name: &str,
) -> Result<Vec<RdmaDevice>, RdmaSysfsError> {
    if !is_safe_component(name, MAX_AUX_NAME) {
        return Err(RdmaSysfsError::InvalidName(name.chars().take(80).collect()));
    }
    let dir = aux_dir(root, name);
    if !dir.exists() {
        return Err(RdmaSysfsError::NoSuchAuxiliary(name.to_owned()));
    }
    let parent = RdmaParent::Auxiliary {
        name: name.to_owned(),
        pci: aux_parent_pci(root, name),
    };
    devices_under(root, &dir, &parent)
}

/// Auxiliary devices of PCI function `pci` that carry RDMA devices
/// (mlx5 sub-functions), with those devices.
pub fn auxiliary_devices_of_pci(
    root: &SysfsRoot,
    pci: PciAddr,
) -> Result<Vec<AuxiliaryDevice>, RdmaSysfsError> {
    let mut out = Vec::new();
    for name in list_dir(&root.join("bus/auxiliary/devices"))? {
        if !is_safe_component(&name, MAX_AUX_NAME) || aux_parent_pci(root, &name) != Some(pci) {
            continue;
        }
        let rdma = devices_of_auxiliary(root, &name)?;
        if !rdma.is_empty() {
            out.push(AuxiliaryDevice { name, rdma });
        }
    }
    Ok(out)
}

/// The parent of the device behind `class/infiniband/<name>`, from its
/// `device` link, and that parent's directory.
fn class_parent(root: &SysfsRoot, name: &RdmaDevName) -> (RdmaParent, Option<PathBuf>) {
    let link = root
        .join("class/infiniband")
        .join(name.as_str())
        .join("device");
    let Some(last) = fs::read_link(&link)
        .ok()
        .and_then(|t| t.file_name().and_then(|n| n.to_str()).map(str::to_owned))
    else {
        return (RdmaParent::Virtual, None);
    };
    if let Ok(pci) = last.parse::<PciAddr>() {
        return (RdmaParent::Pci(pci), Some(pci_dir(root, pci)));
    }
    if is_safe_component(&last, MAX_AUX_NAME) && aux_dir(root, &last).exists() {
        let pci = aux_parent_pci(root, &last);
        let dir = aux_dir(root, &last);
        return (RdmaParent::Auxiliary { name: last, pci }, Some(dir));
    }
    (RdmaParent::Other(last), Some(link))
}

/// The RDMA device `name`, found through `class/infiniband`.
pub fn device(root: &SysfsRoot, name: &str) -> Result<RdmaDevice, RdmaSysfsError> {
    let name = RdmaDevName::new(name)?;
    let dev_dir = root.join("class/infiniband").join(name.as_str());
    if !dev_dir.exists() {
        return Err(RdmaSysfsError::NoSuchDevice(name.0));
    }
    let (parent, parent_dir) = class_parent(root, &name);
    read_device(root, name, &dev_dir, parent_dir.as_deref(), parent)
}

/// Every RDMA device in `class/infiniband`, by name.
pub fn all_devices(root: &SysfsRoot) -> Result<Vec<RdmaDevice>, RdmaSysfsError> {
    let mut out = Vec::new();
    for raw in list_dir(&root.join("class/infiniband"))? {
        if RdmaDevName::new(&raw).is_err() {
            continue;
        }
        match device(root, &raw) {
            Ok(d) => out.push(d),
            // Gone between listing and reading (hot unplug, netns move).
            Err(RdmaSysfsError::NoSuchDevice(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// `/dev/infiniband/rdma_cm`, when the connection manager is loaded.
pub fn rdma_cm(root: &SysfsRoot) -> Option<CharDevice> {
    root.join("class/misc/rdma_cm")
        .exists()
        .then(|| CharDevice {
            kind: CharDevKind::RdmaCm,
            name: "rdma_cm".to_owned(),
            port: None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_port_files() {
        assert_eq!("4: ACTIVE".parse(), Ok(PortState::Active));
        assert_eq!("1: DOWN".parse(), Ok(PortState::Down));
        assert!("9: WHAT".parse::<PortState>().is_err());
        assert!("ACTIVE".parse::<PortState>().is_err());
        assert_eq!("5: LinkUp".parse(), Ok(PhysState::LinkUp));
        assert_eq!("3: Disabled".parse(), Ok(PhysState::Disabled));
        assert_eq!("1: CA".parse(), Ok(NodeType::Ca));
        assert_eq!("4: RNIC".parse(), Ok(NodeType::Rnic));
        assert_eq!("InfiniBand".parse(), Ok(LinkLayer::InfiniBand));
        assert!("Unknown".parse::<LinkLayer>().is_err());
    }

    #[test]
    fn parses_rates() {
        let r: Rate = "100 Gb/sec (4X EDR)".parse().unwrap();
        assert_eq!(r.mbit_per_s, 100_000);
        assert_eq!(r.detail.as_deref(), Some("4X EDR"));
        let r: Rate = "2.5 Gb/sec (1X SDR)".parse().unwrap();
        assert_eq!(r.mbit_per_s, 2_500);
        let r: Rate = "53.125 Gb/sec (1X HDR)".parse().unwrap();
        assert_eq!(r.mbit_per_s, 53_125);
        let r: Rate = "10 Gb/sec".parse().unwrap();
        assert_eq!((r.mbit_per_s, r.detail), (10_000, None));
        for bad in [
            "",
            "fast",
            "100 Mb/sec",
            "1.2345 Gb/sec",
            "x Gb/sec",
            "99999999999999999999 Gb/sec",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_guids_and_gids() {
        let g: Guid = "0002:c903:0031:7c10".parse().unwrap();
        assert_eq!(g, Guid(0x0002_c903_0031_7c10));
        assert_eq!(g.to_string(), "0002:c903:0031:7c10");
        for bad in [
            "",
            "0002:c903:0031",
            "0002:c903:0031:7c1g",
            "00020:c903:0031:7c10",
        ] {
            assert!(bad.parse::<Guid>().is_err(), "{bad:?}");
        }
        let gid = parse_gid("0000:0000:0000:0000:0000:ffff:0a00:0001").unwrap();
        assert_eq!(gid, "::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap());
        let ll = parse_gid("fe80:0000:0000:0000:0202:c9ff:fe00:0001").unwrap();
        assert_eq!(ll, "fe80::202:c9ff:fe00:1".parse::<Ipv6Addr>().unwrap());
        assert!(parse_gid("fe80::1").is_err());
        assert!(parse_gid("fe80:0000:0000:0000:0202:c9ff:fe00").is_err());
    }

    #[test]
    fn rejects_path_like_names() {
        for bad in ["", ".", "..", "a/b", "mlx5 0", &"x".repeat(64)] {
            assert!(RdmaDevName::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(RdmaDevName::new("mlx5_0").unwrap().as_str(), "mlx5_0");
    }
}

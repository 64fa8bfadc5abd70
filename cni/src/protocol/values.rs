//! Validated value types used by the network config and CNI_ARGS. Each parses
//! from the text form users write and rejects anything out of range.

use std::fmt;
use std::str::FromStr;

use jobnet_hw::PciAddr;

/// Why a value was rejected (the caller adds which field it was).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

fn verr(msg: impl Into<String>) -> ValueError {
    ValueError(msg.into())
}

/// Implements FromStr-based serde for a type (JSON strings only).
macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Parses `n` colon-separated hex bytes (`aa:bb:...`).
fn parse_hex_bytes<const N: usize>(s: &str, what: &str) -> Result<[u8; N], ValueError> {
    let bad = || {
        verr(format!(
            "{s:?} is not a valid {what} ({N} colon-separated hex bytes)"
        ))
    };
    let mut out = [0u8; N];
    let mut parts = s.split(':');
    for byte in out.iter_mut() {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

fn fmt_hex_bytes(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            f.write_str(":")?;
        }
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// An Ethernet unicast MAC address that can be set on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let b = parse_hex_bytes::<6>(s, "MAC address")?;
        if b[0] & 1 == 1 {
            return Err(verr(format!(
                "{s:?} is a multicast MAC address; a device needs a unicast one"
            )));
        }
        if b == [0; 6] {
            return Err(verr("the all-zero MAC address cannot be set on a device"));
        }
        Ok(Self(b))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_hex_bytes(&self.0, f)
    }
}
serde_via_str!(MacAddr);

/// An InfiniBand node/port GUID (8 bytes, `xx:xx:xx:xx:xx:xx:xx:xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IbGuid(pub [u8; 8]);

impl FromStr for IbGuid {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let b = parse_hex_bytes::<8>(s, "InfiniBand GUID")?;
        if b == [0; 8] || b == [0xff; 8] {
            return Err(verr(format!("{s:?} is a reserved InfiniBand GUID")));
        }
        Ok(Self(b))
    }
}

impl fmt::Display for IbGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_hex_bytes(&self.0, f)
    }
}
serde_via_str!(IbGuid);

/// An interface MTU, 68 (IPv4 minimum) to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mtu(u32);

impl Mtu {
    /// Smallest MTU IPv4 allows.
    pub const MIN: u32 = 68;
    /// Largest MTU jobnet accepts.
    pub const MAX: u32 = 65535;

    /// Checks the range.
    pub fn new(v: u32) -> Result<Self, ValueError> {
        if (Self::MIN..=Self::MAX).contains(&v) {
            Ok(Self(v))
        } else {
            Err(verr(format!(
                "MTU {v} is out of range {}..={}",
                Self::MIN,
                Self::MAX
            )))
        }
    }

    /// The value.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// An 802.1Q VLAN ID, 0..=4094 (0 means untagged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VlanId(u16);

impl VlanId {
    /// Highest usable VLAN ID (4095 is reserved).
    pub const MAX: u16 = 4094;

    /// Checks the range.
    pub fn new(v: u64) -> Result<Self, ValueError> {
        u16::try_from(v)
            .ok()
            .filter(|v| *v <= Self::MAX)
            .map(Self)
            .ok_or_else(|| verr(format!("VLAN ID {v} is out of range 0..=4094")))
    }

    /// The value.
    pub fn get(self) -> u16 {
        self.0
    }
}

/// An 802.1p priority (QoS) for VLAN-tagged frames, 0..=7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VlanQos(u8);

impl VlanQos {
    /// Checks the range.
    pub fn new(v: u64) -> Result<Self, ValueError> {
        u8::try_from(v)
            .ok()
            .filter(|v| *v <= 7)
            .map(Self)
            .ok_or_else(|| verr(format!("VLAN QoS {v} is out of range 0..=7")))
    }

    /// The value.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// The VLAN tag protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VlanProto {
    /// 802.1Q (C-tag), the default.
    #[default]
    Dot1Q,
    /// 802.1ad (S-tag, QinQ).
    Dot1Ad,
}

impl FromStr for VlanProto {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.to_ascii_lowercase().as_str() {
            "802.1q" => Ok(Self::Dot1Q),
            "802.1ad" => Ok(Self::Dot1Ad),
            _ => Err(verr(format!(
                "VLAN protocol {s:?} is not one of \"802.1Q\", \"802.1ad\""
            ))),
        }
    }
}

impl fmt::Display for VlanProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dot1Q => "802.1Q",
            Self::Dot1Ad => "802.1ad",
        })
    }
}
serde_via_str!(VlanProto);

/// The administrative link state of a VF as the PF reports it to the VF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Follow the PF's link.
    Auto,
    /// Always up.
    Enable,
    /// Always down.
    Disable,
}

impl FromStr for LinkState {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s {
            "auto" => Ok(Self::Auto),
            "enable" => Ok(Self::Enable),
            "disable" => Ok(Self::Disable),
            _ => Err(verr(format!(
                "link state {s:?} is not one of \"auto\", \"enable\", \"disable\""
            ))),
        }
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Enable => "enable",
            Self::Disable => "disable",
        })
    }
}
serde_via_str!(LinkState);

/// An on/off switch written as `"on"`/`"off"` (sriov-cni style) or a JSON bool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Toggle(pub bool);

impl<'de> serde::Deserialize<'de> for Toggle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(b) => Ok(Self(b)),
            Raw::Text(t) => match t.as_str() {
                "on" => Ok(Self(true)),
                "off" => Ok(Self(false)),
                _ => Err(serde::de::Error::custom(format!(
                    "{t:?} is not one of \"on\", \"off\", true, false"
                ))),
            },
        }
    }
}

/// A job name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 253 bytes (a DNS name's limit).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobName(String);

impl JobName {
    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for JobName {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let ok = s.len() <= 253
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(verr(format!(
                "job name {s:?} must match [A-Za-z0-9][A-Za-z0-9_.-]* and be at most 253 bytes"
            )))
        }
    }
}

impl From<&super::names::NetworkName> for JobName {
    /// A network name always satisfies the job-name rules (same charset, shorter).
    fn from(n: &super::names::NetworkName) -> Self {
        Self(n.as_str().to_owned())
    }
}

impl fmt::Display for JobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serde_via_str!(JobName);

/// A worker's rank within its job (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank(pub u32);

impl FromStr for Rank {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(verr(format!("rank {s:?} is not a non-negative integer")));
        }
        s.parse()
            .map(Self)
            .map_err(|_| verr(format!("rank {s:?} is too large")))
    }
}

impl<'de> serde::Deserialize<'de> for Rank {
    /// Accepts a JSON number or a string of digits (cni-args values are often strings).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => u32::try_from(n)
                .map(Self)
                .map_err(|_| serde::de::Error::custom(format!("rank {n} is too large"))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A GPU reference: an index, a PCI address or an NVIDIA-style UUID (`GPU-...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GpuRef {
    /// The GPU's index on the node (as CUDA_VISIBLE_DEVICES counts).
    Index(u32),
    /// The GPU's PCI address.
    Pci(PciAddr),
    /// The GPU's UUID, e.g. `GPU-3c5a0e6c-...`.
    Uuid(String),
}

impl FromStr for GpuRef {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Self::Index)
                .map_err(|_| verr(format!("GPU index {s:?} is too large")));
        }
        if let Ok(pci) = s.parse::<PciAddr>() {
            return Ok(Self::Pci(pci));
        }
        let uuid_ok = s.len() <= 64
            && s.strip_prefix("GPU-").is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
            });
        if uuid_ok {
            return Ok(Self::Uuid(s.to_owned()));
        }
        Err(verr(format!(
            "GPU {s:?} is not an index, a PCI address or a GPU-<uuid>"
        )))
    }
}

impl fmt::Display for GpuRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Index(i) => write!(f, "{i}"),
            Self::Pci(p) => write!(f, "{p}"),
            Self::Uuid(u) => f.write_str(u),
        }
    }
}

impl<'de> serde::Deserialize<'de> for GpuRef {
    /// Accepts a JSON number (index) or a string.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => u32::try_from(n)
                .map(Self::Index)
                .map_err(|_| serde::de::Error::custom(format!("GPU index {n} is too large"))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Parses a comma-separated GPU list (the CNI_ARGS form, where `;` is taken).
pub fn parse_gpu_list(s: &str) -> Result<Vec<GpuRef>, ValueError> {
    s.split(',').map(str::parse).collect()
}

/// How the RDMA device follows the netdev into the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RdmaIsolation {
    /// Follow the node's RDMA subsystem netns mode.
    #[default]
    Auto,
    /// Require exclusive mode: the RDMA device moves into the pod netns.
    Exclusive,
    /// Shared mode: the RDMA device stays visible in all namespaces.
    Shared,
}

impl FromStr for RdmaIsolation {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s {
            "auto" => Ok(Self::Auto),
            "exclusive" => Ok(Self::Exclusive),
            "shared" => Ok(Self::Shared),
            _ => Err(verr(format!(
                "rdma isolation {s:?} is not one of \"auto\", \"exclusive\", \"shared\""
            ))),
        }
    }
}
serde_via_str!(RdmaIsolation);

impl fmt::Display for RdmaIsolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Exclusive => "exclusive",
            Self::Shared => "shared",
        })
    }
}

/// How many rails an attachment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Rails {
    /// One VF on the rail closest to the pod's GPUs.
    #[default]
    One,
    /// One VF on every rail.
    All,
}

impl FromStr for Rails {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s {
            "one" => Ok(Self::One),
            "all" => Ok(Self::All),
            _ => Err(verr(format!("rails {s:?} is not one of \"one\", \"all\""))),
        }
    }
}

impl fmt::Display for Rails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::One => "one",
            Self::All => "all",
        })
    }
}
serde_via_str!(Rails);

/// Log verbosity (`logLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Plus the steps of each operation (default).
    #[default]
    Info,
    /// Everything.
    Debug,
}

impl FromStr for LogLevel {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Self::Error),
            "warn" | "warning" => Ok(Self::Warn),
            "info" => Ok(Self::Info),
            "debug" => Ok(Self::Debug),
            _ => Err(verr(format!(
                "log level {s:?} is not one of \"error\", \"warn\", \"info\", \"debug\""
            ))),
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
        })
    }
}
serde_via_str!(LogLevel);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parsing() {
        let m: MacAddr = "02:AB:cd:00:11:22".parse().unwrap();
        assert_eq!(m.0, [0x02, 0xab, 0xcd, 0x00, 0x11, 0x22]);
        assert_eq!(m.to_string(), "02:ab:cd:00:11:22");
        for bad in [
            "",
            "02:ab:cd:00:11",
            "02:ab:cd:00:11:22:33",
            "02-ab-cd-00-11-22",
            "0g:ab:cd:00:11:22",
            "2:ab:cd:00:11:22",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn guid_parsing() {
        let g: IbGuid = "00:11:22:33:44:55:66:77".parse().unwrap();
        assert_eq!(g.to_string(), "00:11:22:33:44:55:66:77");
        assert!("00:11:22:33:44:55:66".parse::<IbGuid>().is_err());
        assert!("00:00:00:00:00:00:00:00".parse::<IbGuid>().is_err());
    }

    #[test]
    fn ranges() {
        assert!(Mtu::new(67).is_err());
        assert_eq!(Mtu::new(68).unwrap().get(), 68);
        assert_eq!(Mtu::new(9000).unwrap().get(), 9000);
        assert!(Mtu::new(65536).is_err());
        assert_eq!(VlanId::new(0).unwrap().get(), 0);
        assert_eq!(VlanId::new(4094).unwrap().get(), 4094);
        assert!(VlanId::new(4095).is_err());
        assert!(VlanId::new(70000).is_err());
        assert_eq!(VlanQos::new(7).unwrap().get(), 7);
        assert!(VlanQos::new(8).is_err());
        assert_eq!("802.1AD".parse::<VlanProto>().unwrap(), VlanProto::Dot1Ad);
        assert!("802.1x".parse::<VlanProto>().is_err());
        assert_eq!("enable".parse::<LinkState>().unwrap(), LinkState::Enable);
        assert!("up".parse::<LinkState>().is_err());
    }

    #[test]
    fn job_rank_gpu() {
        assert!("llama-70b.run3".parse::<JobName>().is_ok());
        assert!("../x".parse::<JobName>().is_err());
        assert!("".parse::<JobName>().is_err());
        assert_eq!("12".parse::<Rank>().unwrap(), Rank(12));
        assert!("-1".parse::<Rank>().is_err());
        assert!("99999999999".parse::<Rank>().is_err());
        assert_eq!(
            parse_gpu_list("0,0000:3b:00.0,GPU-3c5a0e6c-aa").unwrap(),
            vec![
                GpuRef::Index(0),
                GpuRef::Pci("0000:3b:00.0".parse().unwrap()),
                GpuRef::Uuid("GPU-3c5a0e6c-aa".into())
            ]
        );
        assert!(parse_gpu_list("0,,1").is_err());
        assert!(parse_gpu_list("gpu0").is_err());
        let r: Rank = serde_json::from_str("\"7\"").unwrap();
        assert_eq!(r, Rank(7));
        let r: Rank = serde_json::from_str("8").unwrap();
        assert_eq!(r, Rank(8));
        assert!(serde_json::from_str::<Rank>("-3").is_err());
        let t: Toggle = serde_json::from_str("\"off\"").unwrap();
        assert_eq!(t, Toggle(false));
        assert!(serde_json::from_str::<Toggle>("\"yes\"").is_err());
    }
}

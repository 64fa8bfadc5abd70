//! The network configuration jobnet receives on stdin.
//!
//! Error codes: input that is not JSON, not an object, or larger than
//! [`MAX_CONFIG_BYTES`] is 6 (decode failure); a missing or unsupported
//! `cniVersion` is 1; any known field with a wrong type or an invalid value
//! is 7 (invalid network config), and the message names the field. Unknown
//! keys are ignored: runtimes and Multus add their own.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use ipnet::IpNet;
use jobnet_hw::PciAddr;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::CniError;
use super::names::{ContainerId, IfName, NetworkName, PluginName};
use super::result::{CniResult, Dns};
use super::values::{
    GpuRef, IbGuid, JobName, LinkState, LogLevel, MacAddr, Mtu, Rails, Rank, RdmaIsolation, Toggle,
    ValueError, VlanId, VlanProto, VlanQos,
};
use super::version::CniVersion;

/// The most stdin jobnet reads; configs are a few KiB, a prevResult adds little.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Where jobnetd listens unless `daemonSocket` says otherwise.
pub const DEFAULT_DAEMON_SOCKET: &str = "/run/jobnet/jobnetd.sock";

/// The parsed and validated network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// The protocol version the runtime chose.
    pub cni_version: CniVersion,
    /// Network name.
    pub name: NetworkName,
    /// Plugin type (the binary's name as the runtime found it).
    pub plugin_type: PluginName,
    /// `args.cni`: per-pod arguments from Multus' `cni-args`.
    pub cni_args: ConfArgs,
    /// `runtimeConfig`: capability arguments from the runtime.
    pub runtime: RuntimeConfig,
    /// Top-level `deviceID` (Multus, from the device plugin).
    pub device_id: Option<PciAddr>,
    /// Top-level `pciBusID` (older Multus/device plugin convention).
    pub pci_bus_id: Option<PciAddr>,
    /// `prevResult`, parsed in its own version.
    pub prev_result: Option<PrevResult>,
    /// `ipam`, when it names a plugin to delegate to.
    pub ipam: Option<IpamConf>,
    /// `dns` (well-known key).
    pub dns: Dns,
    /// `logLevel`.
    pub log_level: LogLevel,
    /// `logFile` (absolute); stderr when unset.
    pub log_file: Option<PathBuf>,
    /// `cni.dev/valid-attachments` (GC).
    pub valid_attachments: Option<Vec<AttachmentKey>>,
    /// jobnet's own settings.
    pub jobnet: JobnetConf,
    /// The exact bytes received, passed unchanged to delegated plugins.
    pub raw: Vec<u8>,
}

/// A `prevResult` and the version it was written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrevResult {
    /// The version the result declared (or the config's).
    pub version: CniVersion,
    /// The result.
    pub result: CniResult,
}

/// `args.cni`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfArgs {
    /// `job`.
    pub job: Option<JobName>,
    /// `rank`.
    pub rank: Option<Rank>,
    /// `gpus`.
    pub gpus: Option<Vec<GpuRef>>,
    /// `guid`: InfiniBand GUID for the VF.
    pub guid: Option<IbGuid>,
}

/// `runtimeConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `deviceID`: the VF's PCI address (DRA / device plugin).
    pub device_id: Option<PciAddr>,
    /// `mac`.
    pub mac: Option<MacAddr>,
    /// `ips`: static addresses in CIDR form.
    pub ips: Vec<IpNet>,
    /// `infinibandGUID`.
    pub infiniband_guid: Option<IbGuid>,
    /// `CNIDeviceInfoFile`: where to write the device-info file.
    pub device_info_file: Option<PathBuf>,
}

/// The `ipam` section, when it has a `type`.
#[derive(Debug, Clone, PartialEq)]
pub struct IpamConf {
    /// The IPAM plugin to execute from CNI_PATH.
    pub plugin: PluginName,
    /// The whole section, as received.
    pub raw: Value,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct AttachmentKey {
    /// The attachment's CNI_CONTAINERID.
    #[serde(rename = "containerID")]
    pub container_id: ContainerId,
    /// The attachment's CNI_IFNAME.
    pub ifname: IfName,
}

/// VLAN settings applied to the VF through its PF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanConf {
    /// `vlan` (0 = untagged).
    pub id: VlanId,
    /// `vlanQoS` (default 0).
    pub qos: VlanQos,
    /// `vlanProto` (default 802.1Q).
    pub proto: VlanProto,
}

/// The `rdma` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RdmaConf {
    /// `isolation`.
    pub isolation: RdmaIsolation,
    /// `required`: fail ADD (code 104) if the VF has no RDMA device.
    pub required: bool,
}

/// jobnet's own settings (all optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobnetConf {
    /// `job`: overrides args and the network name.
    pub job: Option<JobName>,
    /// `mtu`.
    pub mtu: Option<Mtu>,
    /// `mac`.
    pub mac: Option<MacAddr>,
    /// `vlan`, `vlanQoS`, `vlanProto`.
    pub vlan: Option<VlanConf>,
    /// `spoofchk`.
    pub spoofchk: Option<bool>,
    /// `trust`.
    pub trust: Option<bool>,
    /// `min_tx_rate` in Mbps (0 = no minimum).
    pub min_tx_rate: Option<u32>,
    /// `max_tx_rate` in Mbps (0 = no limit).
    pub max_tx_rate: Option<u32>,
    /// `link_state`.
    pub link_state: Option<LinkState>,
    /// `rdma`.
    pub rdma: RdmaConf,
    /// `rails`.
    pub rails: Rails,
    /// `pool`: the jobnetd pool to reserve from (the daemon's default when absent).
    pub pool: Option<String>,
    /// `daemonSocket`.
    pub daemon_socket: PathBuf,
    /// `sysfsRoot`: read sysfs here instead of `$JOBNET_SYSFS_ROOT` or `/sys`.
    pub sysfs_root: Option<PathBuf>,
    /// `stateDir`: attachment caches here instead of `$JOBNET_STATE_DIR`.
    pub state_dir: Option<PathBuf>,
}

impl Default for JobnetConf {
    fn default() -> Self {
        Self {
            job: None,
            mtu: None,
            mac: None,
            vlan: None,
            spoofchk: None,
            trust: None,
            min_tx_rate: None,
            max_tx_rate: None,
            link_state: None,
            rdma: RdmaConf::default(),
            rails: Rails::default(),
            pool: None,
            daemon_socket: PathBuf::from(DEFAULT_DAEMON_SOCKET),
            sysfs_root: None,
            state_dir: None,
        }
    }
}

impl NetConf {
    /// The VF's PCI address: `runtimeConfig.deviceID`, else `deviceID`, else `pciBusID`.
    pub fn device(&self) -> Option<PciAddr> {
        self.runtime
            .device_id
            .or(self.device_id)
            .or(self.pci_bus_id)
    }

    /// The MAC to set: `runtimeConfig.mac` (per pod) wins over `mac` (per network).
    pub fn mac(&self) -> Option<MacAddr> {
        self.runtime.mac.or(self.jobnet.mac)
    }

    /// The InfiniBand GUID: `runtimeConfig.infinibandGUID`, else `args.cni.guid`.
    pub fn ib_guid(&self) -> Option<IbGuid> {
        self.runtime.infiniband_guid.or(self.cni_args.guid)
    }

    /// Parses and validates the config bytes (at most [`MAX_CONFIG_BYTES`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(oversize());
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decode(format!("cannot decode network config: {e}")))?;
        let map = value
            .as_object()
            .ok_or_else(|| CniError::decode("network config is not a JSON object"))?;
        let cni_version = select_version(map)?;
        let top = Fields::new(map, "");
        let name = top
            .required::<String>("name")?
            .parse::<NetworkName>()
            .map_err(|e| CniError::invalid_config(format!("invalid \"name\": {e}")))?;
        let plugin_type = top
            .required::<String>("type")?
            .parse::<PluginName>()
            .map_err(|e| CniError::invalid_config(format!("invalid \"type\": {e}")))?;

        let cni_args = match top.object("args")? {
            Some(args) => match args.object("cni")? {
                Some(c) => ConfArgs {
                    job: c.get("job")?,
                    rank: c.get("rank")?,
                    gpus: c.get("gpus")?,
                    guid: c.get("guid")?,
                },
                None => ConfArgs::default(),
            },
            None => ConfArgs::default(),
        };
        let runtime = match top.object("runtimeConfig")? {
            Some(rc) => RuntimeConfig {
                device_id: rc.get("deviceID")?,
                mac: rc.get("mac")?,
                ips: rc.get("ips")?.unwrap_or_default(),
                infiniband_guid: rc.get("infinibandGUID")?,
                device_info_file: rc.path("CNIDeviceInfoFile")?,
            },
            None => RuntimeConfig::default(),
        };
        let prev_result = match map.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let (version, result) = CniResult::parse(v, cni_version, "prevResult")?;
                Some(PrevResult { version, result })
            }
        };
        let ipam = match top.object("ipam")? {
            Some(ipam) => ipam.get::<String>("type")?.map(|t| {
                t.parse::<PluginName>()
                    .map(|plugin| IpamConf {
                        plugin,
                        raw: map.get("ipam").cloned().unwrap_or(Value::Null),
                    })
                    .map_err(|e| CniError::invalid_config(format!("invalid \"ipam.type\": {e}")))
            }),
            None => None,
        }
        .transpose()?;
        let dns: Dns = top.get("dns")?.unwrap_or_default();
        if let Some(bad) = dns
            .nameservers
            .iter()
            .find(|n| n.parse::<IpAddr>().is_err())
        {
            return Err(CniError::invalid_config(format!(
                "invalid \"dns.nameservers\": {bad:?} is not an IP address"
            )));
        }

        Ok(Self {
            cni_version,
            name,
            plugin_type,
            cni_args,
            runtime,
            device_id: top.get("deviceID")?,
            pci_bus_id: top.get("pciBusID")?,
            prev_result,
            ipam,
            dns,
            log_level: top.get("logLevel")?.unwrap_or_default(),
            log_file: top.path("logFile")?,
            valid_attachments: top.get("cni.dev/valid-attachments")?,
            jobnet: jobnet_conf(&top)?,
            raw: bytes.to_vec(),
        })
    }
}

fn oversize() -> CniError {
    CniError::decode(format!(
        "network config is larger than {MAX_CONFIG_BYTES} bytes"
    ))
}

/// The version to speak: `cniVersion`, or the newest supported entry of
/// `cniVersions` when the runtime left `cniVersion` out.
fn select_version(map: &Map<String, Value>) -> Result<CniVersion, CniError> {
    match map.get("cniVersion") {
        Some(Value::String(s)) => return CniVersion::parse(s),
        Some(Value::Null) | None => {}
        Some(other) => {
            return Err(CniError::decode(format!(
                "\"cniVersion\" must be a string, got {other}"
            )))
        }
    }
    match map.get("cniVersions") {
        Some(Value::Array(list)) => {
            let mut best = None;
            for v in list {
                let s = v.as_str().ok_or_else(|| {
                    CniError::decode(format!("\"cniVersions\" entries must be strings, got {v}"))
                })?;
                best = best.max(CniVersion::from_str_opt(s));
            }
            best.ok_or_else(|| {
                CniError::new(
                    super::error::ErrorCode::IncompatibleVersion,
                    format!(
                        "no supported version in \"cniVersions\" {}",
                        Value::Array(list.clone())
                    ),
                )
                .with_details(format!("jobnet supports {}", CniVersion::supported_list()))
            })
        }
        Some(other) => Err(CniError::decode(format!(
            "\"cniVersions\" must be a list of strings, got {other}"
        ))),
        None => Err(CniError::new(
            super::error::ErrorCode::IncompatibleVersion,
            "network config has no \"cniVersion\"",
        )
        .with_details(format!("jobnet supports {}", CniVersion::supported_list()))),
    }
}

/// Best-effort: the config's version, for printing an error in it.
pub fn peek_version(bytes: &[u8]) -> Option<CniVersion> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return None;
    }
    let value: Value = serde_json::from_slice(bytes).ok()?;
    select_version(value.as_object()?).ok()
}

fn jobnet_conf(top: &Fields<'_>) -> Result<JobnetConf, CniError> {
    let vlan_id = top.get_with("vlan", VlanId::new)?;
    let qos = top.get_with("vlanQoS", VlanQos::new)?;
    let proto: Option<VlanProto> = top.get("vlanProto")?;
    let vlan = match vlan_id {
        Some(id) => {
            let qos = qos.unwrap_or(VlanQos::new(0).map_err(|e| top.bad("vlanQoS", e))?);
            let proto = proto.unwrap_or_default();
            if id.get() == 0 && (qos.get() != 0 || proto != VlanProto::Dot1Q) {
                return Err(CniError::invalid_config(
                    "\"vlanQoS\" and \"vlanProto\" need a non-zero \"vlan\"",
                ));
            }
            Some(VlanConf { id, qos, proto })
        }
        None if qos.is_some() || proto.is_some() => {
            return Err(CniError::invalid_config(
                "\"vlanQoS\" and \"vlanProto\" need \"vlan\" to be set",
            ))
        }
        None => None,
    };
    let min_tx_rate: Option<u32> = top.get("min_tx_rate")?;
    let max_tx_rate: Option<u32> = top.get("max_tx_rate")?;
    if let (Some(min), Some(max)) = (min_tx_rate, max_tx_rate) {
        if max != 0 && min > max {
            return Err(CniError::invalid_config(format!(
                "\"min_tx_rate\" ({min}) is greater than \"max_tx_rate\" ({max})"
            )));
        }
    }
    let rdma = match top.object("rdma")? {
        Some(r) => RdmaConf {
            isolation: r.get("isolation")?.unwrap_or_default(),
            required: r.get("required")?.unwrap_or(false),
        },
        None => RdmaConf::default(),
    };
    Ok(JobnetConf {
        job: top.get("job")?,
        mtu: top.get_with("mtu", |v: u64| {
            u32::try_from(v)
                .map_err(|_| ValueError(format!("MTU {v} is out of range 68..=65535")))
                .and_then(Mtu::new)
        })?,
        mac: top.get("mac")?,
        vlan,
        spoofchk: top.get::<Toggle>("spoofchk")?.map(|t| t.0),
        trust: top.get::<Toggle>("trust")?.map(|t| t.0),
        min_tx_rate,
        max_tx_rate,
        link_state: top.get("link_state")?,
        rdma,
        rails: top.get("rails")?.unwrap_or_default(),
        pool: top.get("pool")?,
        daemon_socket: top
            .path("daemonSocket")?
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DAEMON_SOCKET)),
        sysfs_root: top.path("sysfsRoot")?,
        state_dir: top.path("stateDir")?,
    })
}

/// Typed access to one JSON object's fields, with errors that name the field.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>, prefix: &str) -> Self {
        Self {
            map,
            prefix: prefix.to_owned(),
        }
    }

    fn bad(&self, key: &str, e: impl std::fmt::Display) -> CniError {
        CniError::invalid_config(format!("invalid \"{}{key}\": {e}", self.prefix))
    }

    /// The field, or `None` when absent or `null`.
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CniError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v).map(Some).map_err(|e| self.bad(key, e)),
        }
    }

    /// The field decoded as `T`, then checked by `check`.
    fn get_with<T: DeserializeOwned, R>(
        &self,
        key: &str,
        check: impl FnOnce(T) -> Result<R, ValueError>,
    ) -> Result<Option<R>, CniError> {
        self.get::<T>(key)?
            .map(check)
            .transpose()
            .map_err(|e| self.bad(key, e))
    }

    fn required<T: DeserializeOwned>(&self, key: &str) -> Result<T, CniError> {
        self.get(key)?
            .ok_or_else(|| CniError::invalid_config(format!("missing \"{}{key}\"", self.prefix)))
    }

    fn object(&self, key: &str) -> Result<Option<Fields<'a>>, CniError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Fields::new(m, &format!("{}{key}.", self.prefix)))),
            Some(other) => Err(self.bad(key, format!("expected an object, got {other}"))),
        }
    }

    /// An absolute path without `..` components.
    fn path(&self, key: &str) -> Result<Option<PathBuf>, CniError> {
        let Some(s) = self.get::<String>(key)? else {
            return Ok(None);
        };
        let p = Path::new(&s);
        if !p.is_absolute() || s.contains('\0') {
            return Err(self.bad(key, format!("{s:?} is not an absolute path")));
        }
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(self.bad(key, format!("{s:?} must not contain \"..\"")));
        }
        Ok(Some(p.to_path_buf()))
    }
}

#[cfg(test)]
mod tests;

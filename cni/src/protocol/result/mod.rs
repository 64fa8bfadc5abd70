//! CNI results in every supported version.
//!
//! [`CniResult`] is the version-independent model (the 1.1.0 shape, which is
//! a superset of every older one). [`CniResult::parse`] reads a result in the
//! version it declares; [`CniResult::to_json`] writes exactly the fields the
//! target version defines: 0.3.x/0.4.0 get `version` on each ip and lose
//! interface `mtu`/`socketPath`/`pciID` and route `mtu`/`advmss`/`priority`/
//! `table`/`scope`; 1.0.0 loses the same 1.1.0-only fields; 1.1.0 keeps all.

mod v04;
mod v1;

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::error::{CniError, ErrorCode};
use super::version::CniVersion;

/// An interface created (or reported) by the attachment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address, if meaningful.
    pub mac: Option<String>,
    /// MTU (1.1.0+).
    pub mtu: Option<u32>,
    /// The netns path for container interfaces; `None` on the host.
    pub sandbox: Option<String>,
    /// A socket file for this interface (1.1.0+).
    pub socket_path: Option<String>,
    /// The PCI device behind the interface (1.1.0+).
    pub pci_id: Option<String>,
}

/// One IP address assigned by the attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Index into `interfaces`; `None` in IPAM results.
    pub interface: Option<u32>,
    /// Address with prefix length (host bits kept, e.g. `10.1.0.5/24`).
    pub address: IpNet,
    /// The subnet's default gateway, if any.
    pub gateway: Option<IpAddr>,
}

/// A route created by the attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub dst: IpNet,
    /// Next hop.
    pub gw: Option<IpAddr>,
    /// Path MTU (1.1.0+).
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0+).
    pub advmss: Option<u32>,
    /// Route priority, lower is preferred (1.1.0+).
    pub priority: Option<u32>,
    /// Routing table (1.1.0+).
    pub table: Option<u32>,
    /// Route scope: 0 global, 253 link, 254 host (1.1.0+).
    pub scope: Option<u32>,
}

impl Route {
    /// A route with only destination and gateway.
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        Self {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings (same in every version).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains, in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether nothing is set (then `dns` is left out of the JSON).
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A version-independent CNI result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniResult {
    /// Interfaces (absent in IPAM results).
    pub interfaces: Vec<Interface>,
    /// IP addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS settings.
    pub dns: Dns,
}

/// Why a result could not be read.
fn result_err(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::decode(format!("cannot decode {what}: {e}"))
}

impl CniResult {
    /// Reads a result in the version it declares in `cniVersion`, or in
    /// `default_version` when it has none. Returns that version too.
    /// Unsupported versions are code 1; malformed results are code 6.
    pub fn parse(
        value: &serde_json::Value,
        default_version: CniVersion,
        what: &str,
    ) -> Result<(CniVersion, Self), CniError> {
        let obj = value
            .as_object()
            .ok_or_else(|| result_err(what, "not a JSON object"))?;
        let version = match obj.get("cniVersion") {
            None | Some(serde_json::Value::Null) => default_version,
            Some(serde_json::Value::String(s)) => CniVersion::parse(s).map_err(|e| {
                CniError::new(
                    ErrorCode::IncompatibleVersion,
                    format!("{what} has unsupported cniVersion {s:?}"),
                )
                .with_details(e.details)
            })?,
            Some(other) => {
                return Err(result_err(
                    what,
                    format!("cniVersion {other} is not a string"),
                ))
            }
        };
        let result = if version.is_v1() {
            v1::Result::deserialize(value)
                .map_err(|e| result_err(what, e))?
                .into_model()
        } else {
            v04::Result::deserialize(value)
                .map_err(|e| result_err(what, e))?
                .into_model()
                .map_err(|e| result_err(what, e))?
        };
        Ok((version, result))
    }

    /// The result as JSON in `version`'s layout.
    pub fn to_json(&self, version: CniVersion) -> serde_json::Value {
        let v = if version.is_v1() {
            serde_json::to_value(v1::Result::from_model(self, version))
        } else {
            serde_json::to_value(v04::Result::from_model(self, version))
        };
        // Serializing plain structs of strings and numbers cannot fail.
        v.unwrap_or(serde_json::Value::Null)
    }

    /// Converts between versions (a round trip through the target layout).
    pub fn convert(&self, to: CniVersion) -> Self {
        let json = self.to_json(to);
        Self::parse(&json, to, "result")
            .map(|(_, r)| r)
            .unwrap_or_else(|_| self.clone())
    }

    /// Appends an interface and returns its index.
    pub fn push_interface(&mut self, iface: Interface) -> u32 {
        self.interfaces.push(iface);
        u32::try_from(self.interfaces.len() - 1).unwrap_or(u32::MAX)
    }

    /// The index of the interface named `name` inside `sandbox`.
    pub fn find_interface(&self, name: &str, sandbox: Option<&str>) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|i| i.name == name && i.sandbox.as_deref() == sandbox)
    }
}

#[cfg(test)]
mod tests;

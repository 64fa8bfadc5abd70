//! The 1.0.0 and 1.1.0 wire layout.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{CniResult, Dns, Interface as ModelInterface, IpConfig, Route as ModelRoute};
use crate::protocol::version::CniVersion;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Interface {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sandbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    socket_path: Option<String>,
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pci_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Ip {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<u32>,
    address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Route {
    dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Result {
    #[serde(default)]
    cni_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<Ip>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    dns: Dns,
}

impl Result {
    pub(super) fn into_model(self) -> CniResult {
        CniResult {
            interfaces: self
                .interfaces
                .into_iter()
                .map(|i| ModelInterface {
                    name: i.name,
                    mac: i.mac,
                    mtu: i.mtu,
                    sandbox: i.sandbox,
                    socket_path: i.socket_path,
                    pci_id: i.pci_id,
                })
                .collect(),
            ips: self
                .ips
                .into_iter()
                .map(|i| IpConfig {
                    interface: i.interface,
                    address: i.address,
                    gateway: i.gateway,
                })
                .collect(),
            routes: self
                .routes
                .into_iter()
                .map(|r| ModelRoute {
                    dst: r.dst,
                    gw: r.gw,
                    mtu: r.mtu,
                    advmss: r.advmss,
                    priority: r.priority,
                    table: r.table,
                    scope: r.scope,
                })
                .collect(),
            dns: self.dns,
        }
    }

    /// 1.0.0 output carries only the fields 1.0.0 defines.
    pub(super) fn from_model(m: &CniResult, version: CniVersion) -> Self {
        let v11 = version >= CniVersion::V1_1_0;
        let only_v11 = |o: Option<u32>| o.filter(|_| v11);
        Self {
            cni_version: Some(version.as_str().to_owned()),
            interfaces: m
                .interfaces
                .iter()
                .map(|i| Interface {
                    name: i.name.clone(),
                    mac: i.mac.clone(),
                    mtu: only_v11(i.mtu),
                    sandbox: i.sandbox.clone(),
                    socket_path: i.socket_path.clone().filter(|_| v11),
                    pci_id: i.pci_id.clone().filter(|_| v11),
                })
                .collect(),
            ips: m
                .ips
                .iter()
                .map(|i| Ip {
                    interface: i.interface,
                    address: i.address,
                    gateway: i.gateway,
                })
                .collect(),
            routes: m
                .routes
                .iter()
                .map(|r| Route {
                    dst: r.dst,
                    gw: r.gw,
                    mtu: only_v11(r.mtu),
                    advmss: only_v11(r.advmss),
                    priority: only_v11(r.priority),
                    table: only_v11(r.table),
                    scope: only_v11(r.scope),
                })
                .collect(),
            dns: m.dns.clone(),
        }
    }
}

//! The 0.3.0, 0.3.1 and 0.4.0 wire layout (identical): ips carry `version`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{CniResult, Dns, Interface as ModelInterface, IpConfig, Route as ModelRoute};
use crate::protocol::version::CniVersion;

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Interface {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sandbox: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Ip {
    /// "4" or "6"; required by the spec, derived from the address if absent.
    #[serde(default)]
    version: Option<String>,
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

fn family(addr: &IpNet) -> &'static str {
    match addr {
        IpNet::V4(_) => "4",
        IpNet::V6(_) => "6",
    }
}

impl Result {
    /// Fails if an ip's `version` disagrees with its address.
    pub(super) fn into_model(self) -> std::result::Result<CniResult, String> {
        let mut ips = Vec::with_capacity(self.ips.len());
        for ip in self.ips {
            if let Some(v) = &ip.version {
                if v != family(&ip.address) {
                    return Err(format!(
                        "ip {} has version {v:?}, expected {:?}",
                        ip.address,
                        family(&ip.address)
                    ));
                }
            }
            ips.push(IpConfig {
                interface: ip.interface,
                address: ip.address,
                gateway: ip.gateway,
            });
        }
        Ok(CniResult {
            interfaces: self
                .interfaces
                .into_iter()
                .map(|i| ModelInterface {
                    name: i.name,
                    mac: i.mac,
                    sandbox: i.sandbox,
                    ..ModelInterface::default()
                })
                .collect(),
            ips,
            routes: self
                .routes
                .into_iter()
                .map(|r| ModelRoute::new(r.dst, r.gw))
                .collect(),
            dns: self.dns,
        })
    }

    pub(super) fn from_model(m: &CniResult, version: CniVersion) -> Self {
        Self {
            cni_version: Some(version.as_str().to_owned()),
            interfaces: m
                .interfaces
                .iter()
                .map(|i| Interface {
                    name: i.name.clone(),
                    mac: i.mac.clone(),
                    sandbox: i.sandbox.clone(),
                })
                .collect(),
            ips: m
                .ips
                .iter()
                .map(|i| Ip {
                    version: Some(family(&i.address).to_owned()),
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
                })
                .collect(),
            dns: m.dns.clone(),
        }
    }
}

//! Reading and changing kernel network state from tests, in one netns at a
//! time, through iproute2 (the view an operator would check by hand).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;

use crate::fabric::ip::{self, IpLink, Netns};
use crate::fabric::Fabric;

/// Every link in `ns`, by name. Panics when `ip` fails (tests only).
pub fn links_by_name(ns: &Netns) -> HashMap<String, IpLink> {
    ip::links(ns)
        .unwrap_or_else(|e| panic!("ip link show in {ns:?}: {e}"))
        .into_iter()
        .map(|l| (l.ifname.clone(), l))
        .collect()
}

/// Runs `lines` as one `ip -batch` in `ns`; panics when any line fails.
pub fn ip_batch(ns: &Netns, lines: &[&str]) {
    let lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    if let Err(e) = ip::batch(ns, &lines, false, false) {
        panic!("ip -batch in {ns:?} {lines:?}: {e}");
    }
}

/// `ip -j <args>` run in `ns`, parsed; panics when `ip` fails.
pub fn ip_json(ns: &Netns, args: &[&str]) -> serde_json::Value {
    let mut cmd = match ns {
        Netns::Host => Command::new("ip"),
        Netns::Named(name) => {
            let mut c = Command::new("ip");
            c.args(["-n", name]);
            c
        }
        Netns::Path(p) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", p.display())).arg("ip");
            c
        }
    };
    let out = cmd
        .arg("-j")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip {args:?}: {e}"));
    assert!(out.status.success(), "ip {args:?} in {ns:?}: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ip {args:?} in {ns:?} printed no JSON: {e}"))
}

/// `ip -d` details of one link (what the fabric's [`IpLink`] leaves out).
pub fn link_details(ns: &Netns, dev: &str) -> serde_json::Value {
    ip_json(ns, &["-d", "link", "show", "dev", dev])[0].clone()
}

/// The bridge (or other master) `dev` is enslaved to in `ns`, if any.
pub fn master_of(ns: &Netns, dev: &str) -> Option<String> {
    ip::links(ns)
        .unwrap_or_else(|e| panic!("ip link show in {ns:?}: {e}"))
        .into_iter()
        .find(|l| l.ifname == dev)
        .and_then(|l| l.master)
}

/// What a VF netdev and its representor look like from the node: what DEL
/// must give back as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortState {
    /// MAC address.
    pub mac: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// The bridge (or bond) it is enslaved to.
    pub master: Option<String>,
}

/// Every VF netdev and representor of fabric node `node` by name, as its
/// netns has them. Panics when `ip` fails (tests only).
pub fn port_states(fabric: &Fabric, node: usize) -> BTreeMap<String, PortState> {
    let wanted: BTreeSet<&str> = fabric
        .vfs()
        .iter()
        .filter(|v| v.id.node == node)
        .flat_map(|v| [v.netdev.as_deref(), v.representor.as_deref()])
        .flatten()
        .collect();
    let ns = fabric.node(node).expect("fabric node").ip_netns();
    ip::links(&ns)
        .unwrap_or_else(|e| panic!("ip link show in {ns:?}: {e}"))
        .into_iter()
        .filter(|l| wanted.contains(l.ifname.as_str()))
        .map(|l| {
            let st = PortState {
                mac: l.address.clone(),
                mtu: l.mtu,
                up: l.flags.iter().any(|f| f == "UP"),
                master: l.master.clone(),
            };
            (l.ifname, st)
        })
        .collect()
}

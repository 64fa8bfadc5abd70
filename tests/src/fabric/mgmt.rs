//! The management network of a fabric built with [`FabricSpec::mgmt`]: the
//! cluster's host network, apart from the SR-IOV rails.
//!
//! One netns (`jf<id>-mgmt`) holds a bridge (`jf<id>mb`) with the address
//! [`plan::MGMT_HOST_ADDR`] (`10.254.0.254/24`); every node netns gets a veth
//! [`plan::MGMT_IFNAME`] (`mgmt0`) with [`plan::mgmt_node_addr`]
//! (`10.254.0.<node + 1>/24`) whose peer (`jf<id>m<node>`) is a port of that
//! bridge. A process in any node reaches what listens in the mgmt netns on
//! the bridge address (the tests run etcd members there), and the nodes
//! reach each other, as hosts of a real cluster do over their own NICs. The
//! rails never carry this traffic, and nothing here appears in sysfs: jobnet
//! must not take it for a NIC.

use std::net::Ipv4Addr;

use super::names::FabricId;
use super::plan::{self, FabricSpec};
use super::FabricNode;

/// The fabric side of the management network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FabricMgmt {
    /// The mgmt netns; services for the nodes run in it.
    pub netns: String,
    /// The bridge in it that every node's `mgmt0` is plugged into.
    pub bridge: String,
    /// The bridge's address: where services in the mgmt netns listen.
    pub address: Ipv4Addr,
    /// Prefix length of the management subnet.
    pub prefix_len: u8,
}

/// A node's end of the management network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeMgmt {
    /// Netdev in the node netns.
    pub ifname: String,
    /// Its address (prefix: [`FabricMgmt::prefix_len`]).
    pub address: Ipv4Addr,
    /// Its peer, a port of the management bridge.
    pub port: String,
}

/// The management network `spec` asks for under `id`, if any.
pub(super) fn plan_fabric(id: &FabricId, spec: &FabricSpec) -> Option<FabricMgmt> {
    spec.mgmt.then(|| FabricMgmt {
        netns: id.mgmt_netns(),
        bridge: id.mgmt_bridge(),
        address: plan::MGMT_HOST_ADDR,
        prefix_len: plan::MGMT_PREFIX,
    })
}

/// Node `n`'s end, when the fabric has a management network.
pub(super) fn plan_node(id: &FabricId, spec: &FabricSpec, n: usize) -> Option<NodeMgmt> {
    spec.mgmt.then(|| NodeMgmt {
        ifname: plan::MGMT_IFNAME.to_owned(),
        address: plan::mgmt_node_addr(n),
        port: id.mgmt_port(n),
    })
}

/// `ip -batch` lines for the host: the netns, its bridge and every node's
/// veth, the node end born in the node and the port born in the mgmt netns.
pub(super) fn host_lines(m: &FabricMgmt, nodes: &[FabricNode]) -> Vec<String> {
    let mut lines = vec![
        format!("netns add {}", m.netns),
        format!("link add name {} netns {} type bridge", m.bridge, m.netns),
    ];
    for n in nodes {
        if let (Some(ns), Some(nm)) = (&n.netns, &n.mgmt) {
            lines.push(format!(
                "link add name {} netns {ns} type veth peer name {} netns {}",
                nm.ifname, nm.port, m.netns
            ));
        }
    }
    lines
}

/// Lines run in the mgmt netns: loopback (members talk to their own
/// address through it), the bridge with its address, every port on it.
pub(super) fn mgmt_netns_lines(m: &FabricMgmt, nodes: &[FabricNode]) -> Vec<String> {
    let mut lines = vec![
        "link set lo up".to_owned(),
        format!("link set {} up", m.bridge),
        format!(
            "address add {}/{} dev {}",
            m.address, m.prefix_len, m.bridge
        ),
    ];
    for nm in nodes.iter().filter_map(|n| n.mgmt.as_ref()) {
        lines.push(format!("link set {} master {} up", nm.port, m.bridge));
    }
    lines
}

/// Lines run in a node netns for its end.
pub(super) fn node_lines(m: &FabricMgmt, nm: &NodeMgmt) -> Vec<String> {
    vec![
        format!("link set {} up", nm.ifname),
        format!(
            "address add {}/{} dev {}",
            nm.address, m.prefix_len, nm.ifname
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::fabric::ip::{self, Netns};
    use crate::fabric::probe::run_in_netns;
    use crate::fabric::{state, Fabric};

    const DEADLINE: Duration = Duration::from_secs(10);

    fn root(test: &str) -> bool {
        let ok = nix::unistd::Uid::effective().is_root();
        if !ok {
            crate::skip(
                &format!("fabric::mgmt::{test}"),
                "needs root (network namespaces)",
            );
        }
        ok
    }

    /// True once `ping` from inside netns `ns` gets an answer from `to`,
    /// trying for up to [`DEADLINE`] (the veths come up asynchronously).
    fn pings(ns: &str, to: Ipv4Addr) -> bool {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let ok = Command::new("ip")
                .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", "-q"])
                .arg(to.to_string())
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok || Instant::now() >= deadline {
                return ok;
            }
        }
    }

    /// Everything named after the fabric that still exists.
    fn leftovers(id: &FabricId) -> Vec<String> {
        let mut left: Vec<String> = ip::named_netns()
            .into_iter()
            .filter(|n| FabricId::of_netns(n).as_ref() == Some(id))
            .collect();
        if state::exists(id) {
            left.push(format!("state of {id}"));
        }
        left
    }

    fn settled_leftovers(id: &FabricId) -> Vec<String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = leftovers(id);
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn nodes_reach_the_mgmt_address_and_teardown_removes_it() {
        if !root("nodes_reach_the_mgmt_address_and_teardown_removes_it") {
            return;
        }
        let f = Fabric::build(FabricSpec {
            nodes: 3,
            nics_per_node: 1,
            vfs_per_nic: 1,
            switchdev: true,
            mgmt: true,
            ..Default::default()
        })
        .unwrap();
        let m = f.mgmt().unwrap().clone();
        assert_eq!(m.netns, format!("jf{}-mgmt", f.id()));
        assert_eq!(m.address, Ipv4Addr::new(10, 254, 0, 254));
        assert!(ip::named_netns().contains(&m.netns));
        let bridge = ip::links(&Netns::Named(m.netns.clone())).unwrap();
        let ports = bridge
            .iter()
            .filter(|l| l.master.as_deref() == Some(m.bridge.as_str()))
            .count();
        assert_eq!(ports, 3);
        for n in f.nodes() {
            let nm = n.mgmt.as_ref().unwrap();
            assert_eq!(nm.address, Ipv4Addr::new(10, 254, 0, n.index as u8 + 1));
            let ns = n.netns.clone().unwrap();
            assert!(
                pings(&ns, m.address),
                "node {} cannot ping {}",
                n.index,
                m.address
            );
            // The other nodes too: it is one L2 segment.
            let other = f.node((n.index + 1) % 3).unwrap();
            let to = other.mgmt.as_ref().unwrap().address;
            assert!(pings(&ns, to), "node {} cannot ping {to}", n.index);
        }
        // A TCP service in the mgmt netns answers a node, as etcd must.
        let mgmt_path = std::path::Path::new("/run/netns").join(&m.netns);
        let addr = SocketAddr::from((m.address, 0));
        let listener = run_in_netns(&mgmt_path, move || TcpListener::bind(addr))
            .unwrap()
            .unwrap();
        let service = listener.local_addr().unwrap();
        let node0 = f.node(0).unwrap().netns_path();
        let connected = run_in_netns(&node0, move || {
            TcpStream::connect_timeout(&service, Duration::from_secs(2)).is_ok()
        })
        .unwrap();
        assert!(connected, "node 0 cannot connect to {service}");
        // The rails carry none of it: their bridges hold the uplinks only.
        for r in f.rails() {
            let ports = ip::links(&Netns::Named(r.netns.clone()))
                .unwrap()
                .into_iter()
                .filter(|l| l.master.as_deref() == Some(r.bridge.as_str()))
                .count();
            assert_eq!(ports, 3, "rail {}", r.index);
        }
        let id = f.id().clone();
        f.teardown().unwrap();
        assert_eq!(settled_leftovers(&id), Vec::<String>::new());
    }

    #[test]
    fn a_persisted_mgmt_network_goes_with_down() {
        if !root("a_persisted_mgmt_network_goes_with_down") {
            return;
        }
        let f = Fabric::build(FabricSpec {
            nodes: 1,
            mgmt: true,
            ..Default::default()
        })
        .unwrap();
        let id = f.id().clone();
        let l = f.persist().unwrap();
        let m = l.mgmt.clone().unwrap();
        assert!(ip::named_netns().contains(&m.netns));
        // What `down` and `down --all` read back is the state file.
        let st = state::read(&id).unwrap();
        assert_eq!(st.layout.mgmt, Some(m));
        crate::fabric::down(&id).unwrap();
        assert_eq!(settled_leftovers(&id), Vec::<String>::new());
    }
}

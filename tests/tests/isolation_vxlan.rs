//! `vxlan` job isolation end to end: a two-node switchdev fabric, one real
//! jobnetd per node, pods attached by the real `jobnet` binary (no `ipam`
//! section: jobnetd hands out subnet, address, VF and VNI). Ranks of one job
//! reach each other across nodes through the job's VXLAN tunnel; a pod of
//! another job cannot reach them even with an address in their subnet; DEL
//! removes every bridge and tunnel and leaves VFs and representors as they
//! were.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use jobnet_api::{AttachmentKey, Client};
use jobnet_daemon::isolation::Vni;
use jobnet_tests::fabric::ip::{self, Netns};
use jobnet_tests::fabric::probe::udp_echo;
use jobnet_tests::fabric::{Fabric, FabricSpec, FabricVf};
use jobnet_tests::harness::{
    link_details, master_of, port_states, result_addr, result_pci, unique, CniCall, Daemon,
    PluginRun, Pod,
};
use jobnet_tests::harness::{udp_echo_within, wait_oper_up, STATE_DEADLINE};
use serde_json::json;

/// The same pool on every node: with the embedded store each node
/// allocates on its own, so jobs must be created in the same order.
const POOLS: &str = r#"[[pools]]
name = "rdma"
cidrs = ["198.18.0.0/16"]
isolation = { mode = "vxlan", first = 1000, last = 1999 }
"#;

/// Node `index` of the fabric with its daemon and the plugin's private dirs.
struct Node<'f> {
    fabric: &'f Fabric,
    index: usize,
    daemon: Daemon,
    state: tempfile::TempDir,
    files: tempfile::TempDir,
}

/// One attachment made by ADD.
struct Attached<'p> {
    pod: &'p Pod,
    node: usize,
    container_id: String,
    job: &'static str,
    rank: u32,
    vf: FabricVf,
    /// The pod's address on the job network.
    addr: IpAddr,
}

impl<'f> Node<'f> {
    fn new(fabric: &'f Fabric, index: usize) -> Self {
        let n = fabric.node(index).unwrap();
        Self {
            fabric,
            index,
            daemon: Daemon::start_in(
                n.netns.as_deref(),
                &format!("node-{index}"),
                &n.sysfs_root,
                POOLS,
            ),
            state: tempfile::tempdir().unwrap(),
            files: tempfile::tempdir().unwrap(),
        }
    }

    fn ns(&self) -> Netns {
        self.fabric.node(self.index).unwrap().ip_netns()
    }

    fn conf(&self, job: &str, container_id: &str) -> serde_json::Value {
        json!({
            "cniVersion": "1.1.0", "name": "jobnet-iso", "type": "jobnet",
            "job": job,
            "daemonSocket": self.daemon.socket,
            "runtimeConfig": {"CNIDeviceInfoFile":
                self.files.path().join(format!("devinfo-{container_id}.json"))},
        })
    }

    /// Runs `jobnet` inside the node netns (the node's "host") like a
    /// runtime.
    fn jobnet(
        &self,
        command: &str,
        cid: &str,
        pod: &Pod,
        args: &str,
        conf: &serde_json::Value,
    ) -> PluginRun {
        let node = self.fabric.node(self.index).unwrap();
        CniCall::new(command, cid, &pod.path(), "net1")
            .cni_path()
            .var("CNI_ARGS", args)
            .dirs(&node.sysfs_root, self.state.path())
            .run(&node.netns_path(), conf)
    }

    /// ADD for `job` rank `rank` into `pod`; makes sysfs follow the VF.
    fn add<'p>(&self, pod: &'p Pod, job: &'static str, rank: u32) -> Attached<'p> {
        let cid = unique("cid");
        let conf = self.conf(job, &cid);
        let add = self.jobnet("ADD", &cid, pod, &format!("JOBNET_RANK={rank}"), &conf);
        assert!(
            add.ok,
            "ADD {job}/{rank} on node {}: {}{}\n{}",
            self.index,
            add.stdout,
            add.stderr,
            self.daemon.log()
        );
        let result = add.json();
        let pci = result_pci(&result).unwrap_or_else(|| panic!("no pciID: {result}"));
        let vf = self.fabric.vf_by_pci(self.index, pci).unwrap().clone();
        self.fabric.sync_vf_sysfs(vf.id).unwrap();
        let addr = result_addr(&result).unwrap_or_else(|| panic!("no address: {result}"));
        Attached {
            pod,
            node: self.index,
            container_id: cid,
            job,
            rank,
            vf,
            addr,
        }
    }

    fn del(&self, a: &Attached<'_>) {
        let conf = self.conf(a.job, &a.container_id);
        let args = format!("JOBNET_RANK={}", a.rank);
        let del = self.jobnet("DEL", &a.container_id, a.pod, &args, &conf);
        assert!(
            del.ok,
            "DEL {}/{}: {}{}",
            a.job, a.rank, del.stdout, del.stderr
        );
        self.fabric.sync_vf_sysfs(a.vf.id).unwrap();
    }

    fn client(&self) -> Client {
        Client::new(&self.daemon.socket)
    }

    /// The isolation ID jobnetd gave the attachment.
    fn vni_of(&self, rt: &tokio::runtime::Runtime, a: &Attached<'_>) -> u32 {
        let key = AttachmentKey::new(&a.container_id, "net1");
        let att = rt.block_on(self.client().check(&key)).unwrap();
        assert_eq!(att.isolation.mode, jobnet_api::IsolationMode::Vxlan);
        att.isolation.id.unwrap()
    }
}

/// Names of the jobnet bridges and tunnels in the node netns.
fn job_links(ns: &Netns) -> Vec<String> {
    let mut v: Vec<String> = ip::links(ns)
        .unwrap()
        .into_iter()
        .map(|l| l.ifname)
        .filter(|n| Vni::from_name(n).is_some())
        .collect();
    v.sort();
    v
}

#[test]
fn jobs_reach_their_own_ranks_across_nodes_and_never_each_other() {
    let fabric = Fabric::build(FabricSpec {
        nodes: 2,
        nics_per_node: 1,
        vfs_per_nic: 4,
        switchdev: true,
        ..Default::default()
    })
    .unwrap();
    let before = [port_states(&fabric, 0), port_states(&fabric, 1)];
    let n0 = Node::new(&fabric, 0);
    let n1 = Node::new(&fabric, 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pods: Vec<Pod> = (0..5).map(|_| Pod::new("jiso")).collect();

    // Same order of job creation on both nodes: A first, then B.
    let a0 = n0.add(&pods[0], "job-a", 0);
    let b0 = n0.add(&pods[1], "job-b", 0);
    let a1 = n1.add(&pods[2], "job-a", 1);
    let b1 = n1.add(&pods[3], "job-b", 1);
    let a2 = n1.add(&pods[4], "job-a", 2);

    // Both daemons gave each job the same VNI, and the jobs differ.
    let vni_a = n0.vni_of(&rt, &a0);
    let vni_b = n0.vni_of(&rt, &b0);
    assert_eq!(n1.vni_of(&rt, &a1), vni_a);
    assert_eq!(n1.vni_of(&rt, &a2), vni_a);
    assert_eq!(n1.vni_of(&rt, &b1), vni_b);
    assert_ne!(vni_a, vni_b);
    assert!((1000..=1999).contains(&vni_a) && (1000..=1999).contains(&vni_b));
    let (va, vb) = (Vni::new(vni_a).unwrap(), Vni::new(vni_b).unwrap());

    // Kernel objects: one bridge + tunnel per job per node, reps on them.
    for node in [&n0, &n1] {
        let ns = node.ns();
        let mut want = vec![
            va.bridge_name(),
            vb.bridge_name(),
            va.vxlan_name(),
            vb.vxlan_name(),
        ];
        want.sort();
        assert_eq!(job_links(&ns), want, "node {}", node.index);
        for v in [va, vb] {
            let vx = link_details(&ns, &v.vxlan_name());
            let data = &vx["linkinfo"]["info_data"];
            assert_eq!(data["id"], v.get());
            assert_eq!(data["group"], v.multicast_group().to_string());
            assert_eq!(data["port"], 4789);
            assert_eq!(data["link"], fabric.node(node.index).unwrap().pfs[0].netdev);
            assert_eq!(master_of(&ns, &v.vxlan_name()), Some(v.bridge_name()));
        }
    }
    for (a, v) in [(&a0, va), (&a1, va), (&a2, va), (&b0, vb), (&b1, vb)] {
        let ns = fabric.node(a.node).unwrap().ip_netns();
        let rep = a.vf.representor.as_deref().unwrap();
        assert_eq!(
            master_of(&ns, rep),
            Some(v.bridge_name()),
            "{}/{}",
            a.job,
            a.rank
        );
    }
    // Rank-derived addresses in one subnet per job.
    let subnet = |ip: IpAddr| match ip {
        IpAddr::V4(v) => v.octets()[..3].to_vec(),
        IpAddr::V6(_) => panic!("expected IPv4"),
    };
    assert_eq!(subnet(a0.addr), subnet(a1.addr));
    assert_eq!(subnet(b0.addr), subnet(b1.addr));
    assert_ne!(subnet(a0.addr), subnet(b0.addr));

    // Probes start once every pod's interface is up; a reachable pair then
    // gets until the deadline, an unreachable one a short fixed window.
    for a in [&a0, &a1, &a2, &b0, &b1] {
        wait_oper_up(&a.pod.ns(), &["net1"]);
    }
    let no = Duration::from_millis(1200);
    let port = 7300 + (std::process::id() % 1000) as u16;
    let to = |a: &Attached<'_>, p: u16| SocketAddr::new(a.addr, port + p);
    // A's ranks across nodes and on one node; B's across nodes.
    assert!(udp_echo_within(
        &a0.pod.path(),
        &a1.pod.path(),
        to(&a1, 1),
        STATE_DEADLINE
    ));
    assert!(udp_echo_within(
        &a1.pod.path(),
        &a0.pod.path(),
        to(&a0, 2),
        STATE_DEADLINE
    ));
    assert!(udp_echo_within(
        &a2.pod.path(),
        &a0.pod.path(),
        to(&a0, 3),
        STATE_DEADLINE
    ));
    assert!(udp_echo_within(
        &a1.pod.path(),
        &a2.pod.path(),
        to(&a2, 4),
        STATE_DEADLINE
    ));
    assert!(udp_echo_within(
        &b0.pod.path(),
        &b1.pod.path(),
        to(&b1, 5),
        STATE_DEADLINE
    ));
    assert!(udp_echo_within(
        &b1.pod.path(),
        &b0.pod.path(),
        to(&b0, 6),
        STATE_DEADLINE
    ));

    // B's pods take an address in A's subnet: still no way to A's pods,
    // neither on the other node nor on their own.
    let IpAddr::V4(a_addr) = a0.addr else {
        panic!("expected IPv4")
    };
    let o = a_addr.octets();
    for (b, last) in [(&b0, 250), (&b1, 251)] {
        let addr = format!("{}.{}.{}.{last}/24", o[0], o[1], o[2]);
        let line = format!("addr add {addr} dev net1");
        ip::batch(&b.pod.ns(), &[line], false, false).unwrap();
    }
    assert!(!udp_echo(&b0.pod.path(), &a1.pod.path(), to(&a1, 7), no).unwrap());
    assert!(!udp_echo(&b0.pod.path(), &a0.pod.path(), to(&a0, 8), no).unwrap());
    assert!(!udp_echo(&b1.pod.path(), &a0.pod.path(), to(&a0, 9), no).unwrap());
    assert!(!udp_echo(&b1.pod.path(), &a2.pod.path(), to(&a2, 10), no).unwrap());
    // Control: the very same probe gets through once the test itself puts
    // B0's representor on A's bridge, so only isolation stopped it above.
    let rep_b0 = b0.vf.representor.clone().unwrap();
    let move_rep = |bridge: String| {
        let line = format!("link set {rep_b0} master {bridge}");
        ip::batch(&n0.ns(), &[line], false, false).unwrap();
    };
    move_rep(va.bridge_name());
    assert!(udp_echo_within(
        &b0.pod.path(),
        &a1.pod.path(),
        to(&a1, 14),
        STATE_DEADLINE
    ));
    move_rep(vb.bridge_name());
    // ...while they still reach each other, and A is unaffected.
    assert!(udp_echo_within(
        &b0.pod.path(),
        &b1.pod.path(),
        to(&b1, 11),
        STATE_DEADLINE
    ));
    assert!(udp_echo_within(
        &a0.pod.path(),
        &a1.pod.path(),
        to(&a1, 12),
        STATE_DEADLINE
    ));

    // DEL: the bridge of A on node 1 stays while a rank of A is left there.
    n1.del(&a2);
    assert_eq!(
        master_of(&n1.ns(), a2.vf.representor.as_deref().unwrap()),
        None
    );
    assert!(job_links(&n1.ns()).contains(&va.bridge_name()));
    assert!(udp_echo_within(
        &a0.pod.path(),
        &a1.pod.path(),
        to(&a1, 13),
        STATE_DEADLINE
    ));
    n1.del(&b1);
    n0.del(&b0);
    assert!(!job_links(&n0.ns()).contains(&vb.bridge_name()));
    n1.del(&a1);
    n0.del(&a0);
    for node in [&n0, &n1] {
        assert!(job_links(&node.ns()).is_empty(), "node {}", node.index);
        let left = rt.block_on(node.client().attachments()).unwrap();
        assert!(left.is_empty(), "node {}: {left:?}", node.index);
        assert_eq!(
            port_states(&fabric, node.index),
            before[node.index],
            "node {}",
            node.index
        );
    }
    // jobnetd owns the node's job bridges: one left behind (by a crash, or
    // an older jobnet that made them in the plugin) goes at its next
    // reconciliation, here the one at start.
    let pf0 = &fabric.node(0).unwrap().pfs[0].netdev;
    ip::batch(
        &n0.ns(),
        &[
            "link add jnb4242 type bridge".to_string(),
            format!("link add jnx4242 type vxlan id 4242 dev {pf0} dstport 4789"),
            "link set jnx4242 master jnb4242".to_string(),
        ],
        false,
        false,
    )
    .unwrap();
    assert_eq!(job_links(&n0.ns()), ["jnb4242", "jnx4242"]);
    drop(n0);
    let n0 = Node::new(&fabric, 0);
    assert!(job_links(&n0.ns()).is_empty(), "{:?}", job_links(&n0.ns()));
    // Pods go before the fabric (veth VFs would die with them otherwise).
    drop(pods);
}

#[test]
fn a_legacy_nic_refuses_vxlan_isolation_and_changes_nothing() {
    let fabric = Fabric::build(FabricSpec {
        nodes: 1,
        nics_per_node: 1,
        vfs_per_nic: 2,
        ..Default::default()
    })
    .unwrap();
    let before = port_states(&fabric, 0);
    let n0 = Node::new(&fabric, 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pod = Pod::new("jiso");
    // Legacy representors sit in the rail netns: sysfs lists them, the node
    // does not have them. Hide them from sysfs as a legacy NIC would.
    let node = fabric.node(0).unwrap();
    for vf in fabric.vfs() {
        let rep = vf.representor.as_deref().unwrap();
        let pf_dir = jobnet_tests::fabric::plan::NicPci::new(0).function_dir(vf.pf_pci);
        let p = node.sysfs_root.join(pf_dir).join("net").join(rep);
        std::fs::remove_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
    let cid = unique("cid");
    let conf = n0.conf("job-l", &cid);
    let add = n0.jobnet("ADD", &cid, &pod, "JOBNET_RANK=0", &conf);
    let out = add.stdout;
    assert!(!add.ok, "{out}");
    let err: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(err["code"], 100, "{out}");
    assert!(err["msg"].as_str().unwrap().contains("switchdev"), "{out}");
    // The VF is back, the reservation released, no bridge made.
    for vf in fabric.vfs() {
        fabric.sync_vf_sysfs(vf.id).unwrap();
    }
    assert_eq!(port_states(&fabric, 0), before);
    assert!(job_links(&node.ip_netns()).is_empty());
    assert!(rt.block_on(n0.client().attachments()).unwrap().is_empty());
    drop(pod);
}

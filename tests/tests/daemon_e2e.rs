//! Two jobs end to end on a two-node fabric, one jobnetd per node sharing
//! nothing (embedded stores): pods attached by the real `jobnet` binary with
//! no `ipam` section, ranks spread over both nodes and added out of order.
//! On each node, every job has its own subnet and rank *r* has the *r*-th
//! address of it; `jobnetctl job show` and `job hostfile` (the real binary)
//! match what the pod namespaces hold; DEL of everything leaves each daemon
//! without attachments and every VF as the fabric built it.
//!
//! With the embedded store a job's subnet is chosen by each node on its own,
//! so the checks are per node (cluster-wide subnets need the etcd backend).

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use jobnet_api::JobDetail;
use jobnet_hw::PciAddr;
use jobnet_tests::fabric::{Fabric, FabricSpec, Netns, VfId};
use jobnet_tests::harness::{ip_json, result_pci, unique, CniCall, Daemon, PluginRun, Pod};
use serde_json::json;

const POOLS: &str = r#"
[[pools]]
name = "rdma"
cidrs = ["198.18.0.0/16"]
subnet_prefix = { v4 = 24 }
isolation = { mode = "none" }
"#;

/// One pod of a job, attached on a node.
struct Member {
    job: &'static str,
    rank: u32,
    node: usize,
    cid: String,
    pod: Pod,
    vf: Option<VfId>,
}

/// Runs `jobnet` inside node `node` like a runtime.
fn jobnet(
    fabric: &Fabric,
    node: usize,
    daemon: &Daemon,
    state: &std::path::Path,
    command: &str,
    m: &Member,
) -> PluginRun {
    let n = fabric.node(node).unwrap();
    let conf = json!({
        "cniVersion": "1.1.0", "name": "e2e-net", "type": "jobnet",
        "daemonSocket": daemon.socket,
        "args": {"cni": {"job": m.job, "rank": m.rank}},
    });
    CniCall::new(command, &m.cid, &m.pod.path(), "net1")
        .cni_path()
        .dirs(&n.sysfs_root, state)
        .run(&n.netns_path(), &conf)
}

/// An IPv4 address or network with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct V4 {
    addr: Ipv4Addr,
    len: u8,
}

impl V4 {
    fn parse(s: &str) -> Self {
        let (a, l) = s
            .split_once('/')
            .unwrap_or_else(|| panic!("no prefix in {s}"));
        Self {
            addr: a.parse().unwrap(),
            len: l.parse().unwrap(),
        }
    }

    fn mask(self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0)
    }

    fn network(self) -> u32 {
        u32::from(self.addr) & self.mask()
    }

    fn contains(self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == self.network()
    }
}

/// The IPv4 address (with prefix) of `net1` in the pod, as the kernel has it.
fn pod_addr(pod: &Pod) -> V4 {
    let v = ip_json(&pod.ns(), &["addr", "show", "dev", "net1"]);
    let info = v[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["family"] == "inet")
        .unwrap_or_else(|| panic!("no IPv4 address on net1 in {}: {v}", pod.name));
    V4::parse(&format!(
        "{}/{}",
        info["local"].as_str().unwrap(),
        info["prefixlen"].as_u64().unwrap()
    ))
}

fn ctl_json(daemon: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = daemon.ctl(&all);
    assert!(ok, "jobnetctl {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("jobnetctl {args:?}: {e}: {out}"))
}

#[test]
fn two_jobs_get_their_own_rank_ordered_subnets_and_jobnetctl_matches() {
    let fabric = Fabric::build(FabricSpec {
        nodes: 2,
        nics_per_node: 1,
        vfs_per_nic: 4,
        ..FabricSpec::default()
    })
    .unwrap();
    let daemons: Vec<Daemon> = (0..2)
        .map(|n| {
            Daemon::start(
                &format!("e2e-node{n}"),
                &fabric.node(n).unwrap().sysfs_root,
                POOLS,
            )
        })
        .collect();
    let states: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    // Out of rank order and interleaved across jobs and nodes.
    let plan: [(&'static str, u32, usize); 5] = [
        ("llama", 2, 0),
        ("mixtral", 1, 0),
        ("llama", 1, 1),
        ("mixtral", 0, 1),
        ("llama", 0, 0),
    ];
    let mut members: Vec<Member> = plan
        .iter()
        .map(|&(job, rank, node)| Member {
            job,
            rank,
            node,
            cid: unique("e2e"),
            pod: Pod::new("je2e"),
            vf: None,
        })
        .collect();
    for m in &mut members {
        let add = jobnet(
            &fabric,
            m.node,
            &daemons[m.node],
            states[m.node].path(),
            "ADD",
            m,
        );
        assert!(
            add.ok,
            "ADD {}/{}: {}{}\n{}",
            m.job,
            m.rank,
            add.stdout,
            add.stderr,
            daemons[m.node].log()
        );
        let r = add.json();
        let pci = result_pci(&r).unwrap_or_else(|| panic!("no pciID: {r}"));
        let vf = fabric.vf_by_pci(m.node, pci).unwrap().id;
        fabric.sync_vf_sysfs(vf).unwrap();
        m.vf = Some(vf);
        // The result names the address the pod got.
        let res_addr = V4::parse(r["ips"][0]["address"].as_str().unwrap());
        assert_eq!(res_addr, pod_addr(&m.pod));
    }

    for (node, daemon) in daemons.iter().enumerate() {
        let mut subnets: Vec<V4> = Vec::new();
        for job in ["llama", "mixtral"] {
            let here: BTreeMap<u32, &Member> = members
                .iter()
                .filter(|m| m.node == node && m.job == job)
                .map(|m| (m.rank, m))
                .collect();
            let detail: JobDetail =
                serde_json::from_value(ctl_json(daemon, &["job", "show", job])).unwrap();
            assert_eq!(detail.summary.job, job);
            assert_eq!(detail.summary.subnets.len(), 1);
            let subnet = V4::parse(&detail.summary.subnets[0].subnet.to_string());
            subnets.push(subnet);
            // Rank r holds the r-th address after the gateway (or after the network).
            let base = subnet.network()
                + if detail.summary.subnets[0].gateway.is_some() {
                    2
                } else {
                    1
                };
            let mut pod_addrs = Vec::new();
            for (rank, m) in &here {
                let a = pod_addr(&m.pod);
                assert!(subnet.contains(a.addr), "{a:?} outside {job}'s {subnet:?}");
                assert_eq!(a.len, subnet.len);
                assert_eq!(a.addr, Ipv4Addr::from(base + rank), "{job} rank {rank}");
                pod_addrs.push(a.addr);
            }
            // job show: this node's members, rank-ordered, with the pods' addresses and VFs.
            let shown: Vec<(Option<u32>, IpAddr, PciAddr)> = detail
                .members
                .iter()
                .map(|m| (m.rank, m.addresses[0].address.addr(), m.vfs[0].pci))
                .collect();
            let want: Vec<(Option<u32>, IpAddr, PciAddr)> = here
                .iter()
                .map(|(r, m)| {
                    (
                        Some(*r),
                        IpAddr::V4(pod_addr(&m.pod).addr),
                        fabric.vf(m.vf.unwrap()).unwrap().pci,
                    )
                })
                .collect();
            assert_eq!(shown, want, "job show {job} on node {node}");
            // hostfile, both formats, is the pods' addresses in rank order.
            let (ok, mpi, err) = daemon.ctl(&["job", "hostfile", job]);
            assert!(ok, "hostfile: {err}");
            let want_mpi: String = pod_addrs.iter().map(|a| format!("{a} slots=1\n")).collect();
            assert_eq!(mpi, want_mpi);
            let (ok, plain, err) = daemon.ctl(&["job", "hostfile", job, "--format", "plain"]);
            assert!(ok, "hostfile plain: {err}");
            let want_plain: String = pod_addrs.iter().map(|a| format!("{a}\n")).collect();
            assert_eq!(plain, want_plain);
        }
        assert!(
            !subnets[0].contains(subnets[1].addr) && !subnets[1].contains(subnets[0].addr),
            "jobs share a subnet on node {node}: {subnets:?}"
        );
        let (ok, table, _) = daemon.ctl(&["job", "show", "llama"]);
        assert!(ok && table.contains("llama"), "human job show: {table}");
    }

    // DEL everything: no attachment left, every VF back as built.
    for m in &members {
        let del = jobnet(
            &fabric,
            m.node,
            &daemons[m.node],
            states[m.node].path(),
            "DEL",
            m,
        );
        assert!(
            del.ok,
            "DEL {}/{}: {}{}",
            m.job, m.rank, del.stdout, del.stderr
        );
        fabric.sync_vf_sysfs(m.vf.unwrap()).unwrap();
    }
    for d in &daemons {
        assert_eq!(ctl_json(d, &["attachments"]), json!([]));
        let vfs = ctl_json(d, &["vfs"]);
        assert!(
            vfs.as_array().unwrap().iter().all(|v| v["state"] == "free"),
            "{vfs}"
        );
    }
    let used: HashSet<VfId> = members.iter().filter_map(|m| m.vf).collect();
    assert_eq!(used.len(), members.len(), "a VF was handed out twice");
    for vf in fabric.vfs() {
        let loc = fabric.vf_location(vf.id).unwrap().expect("VF lost");
        assert_eq!(loc.netns, fabric.node(vf.id.node).unwrap().ip_netns());
        assert_eq!(
            Some(&loc.link.ifname),
            vf.netdev.as_ref(),
            "{:?} name",
            vf.id
        );
        assert_eq!(loc.link.address, vf.mac, "{:?} MAC", vf.id);
        assert!(!matches!(loc.netns, Netns::Path(_)));
    }
}

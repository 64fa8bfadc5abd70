//! GPU-aware attach end to end: a one-node fabric laid out as the 8-GPU,
//! 8-NIC server, the real jobnetd over its sysfs and the real `jobnet`
//! plugin run inside the node. A pod that asks for GPU g (and gives no
//! deviceID) gets a VF of the NIC under GPU g's PCIe switch, in its netns
//! for real, and its `nccl.env` names that VF's RDMA device; DEL gives
//! everything back.

use std::collections::BTreeMap;
use std::path::Path;

use jobnet_hw::topology::{PathClass, Topology};
use jobnet_tests::fabric::ip::{self, Netns};
use jobnet_tests::fabric::plan::GpuLayout;
use jobnet_tests::fabric::{Fabric, FabricSpec, FabricVf};
use jobnet_tests::harness::{result_pci, unique, CniCall, Daemon, PluginRun, Pod};
use serde_json::json;

/// Rail-optimized pool over the server's 8 NICs, no isolation.
const POOL: &str = r#"[[pools]]
name = "rails"
cidrs = ["10.70.0.0/16"]
rails = 8
isolation = { mode = "none" }
"#;

/// (name, MAC, MTU, up, master) of every link in `ns`, by name.
type LinkStates = BTreeMap<String, (Option<String>, Option<u32>, bool, Option<String>)>;

fn link_states(ns: &Netns) -> LinkStates {
    ip::links(ns)
        .unwrap()
        .into_iter()
        .map(|l| {
            let up = l.flags.iter().any(|f| f == "UP");
            (l.ifname, (l.address, l.mtu, up, l.master))
        })
        .collect()
}

/// The value of `key=` in an env file.
fn env_value<'a>(env: &'a str, key: &str) -> Option<&'a str> {
    env.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// One pod attached for GPU `gpu`.
struct Attached {
    pod: Pod,
    cid: String,
    gpu: usize,
    vf: FabricVf,
}

/// Runs the plugin for `pod` in the fabric's node 0.
fn plugin(
    fabric: &Fabric,
    command: &str,
    cid: &str,
    pod: &Pod,
    conf: &serde_json::Value,
) -> PluginRun {
    let node = fabric.node(0).unwrap();
    CniCall::new(command, cid, &pod.path(), "net1")
        .cni_path()
        .run(&node.netns_path(), conf)
}

/// The network config for the pod of GPU `gpu`: no deviceID, the GPU in
/// `args.cni.gpus` (a runtime passes no JOBNET_SYSFS_ROOT, so the config
/// names the node's sysfs).
fn conf(daemon: &Daemon, state: &Path, sysfs: &Path, gpu: usize) -> serde_json::Value {
    json!({
        "cniVersion": "1.1.0", "name": "topo-e2e", "type": "jobnet",
        "daemonSocket": daemon.socket, "stateDir": state, "sysfsRoot": sysfs,
        "args": {"cni": {"job": "topo", "rank": gpu, "gpus": [gpu.to_string()]}},
    })
}

#[test]
fn every_single_gpu_pod_gets_a_vf_under_its_gpus_switch() {
    let fabric = Fabric::build(FabricSpec {
        nodes: 1,
        nics_per_node: 8,
        vfs_per_nic: 2,
        rdma: true,
        gpus: Some(GpuLayout::EightByEight),
        ..Default::default()
    })
    .unwrap();
    let node = fabric.node(0).unwrap();
    let node_ns = node.ip_netns();
    let topo = Topology::discover(&node.sysfs()).unwrap();
    assert_eq!(topo.gpus.len(), 8);
    let links_before = link_states(&node_ns);
    let vfs_before: Vec<_> = topo.nics.iter().map(|n| n.vfs.clone()).collect();

    let daemon = Daemon::start("topo-node", &node.sysfs_root, POOL);
    let state = tempfile::tempdir().unwrap();
    let pods_dir = daemon.run_dir().join("pods");

    let mut attached = Vec::new();
    for gpu in 0..8 {
        let pod = Pod::new("jtopo");
        let cid = unique("topo");
        let c = conf(&daemon, state.path(), &node.sysfs_root, gpu);
        let add = plugin(&fabric, "ADD", &cid, &pod, &c);
        assert!(
            add.ok,
            "ADD GPU{gpu}: {}{}\n{}",
            add.stdout,
            add.stderr,
            daemon.log()
        );
        let result = add.json();
        let iface = &result["interfaces"][0];
        let pci = result_pci(&result).unwrap_or_else(|| panic!("no pciID: {result}"));
        let vf = fabric.vf_by_pci(0, pci).unwrap().clone();

        // On the NIC that shares GPU g's PCIe switch: NIC g of the server.
        let gpu_pci = topo.gpus[gpu].pci;
        assert_eq!(
            topo.path_class(gpu_pci, vf.pci),
            Some(PathClass::Pix),
            "GPU{gpu} got {pci}"
        );
        assert_eq!(vf.id.nic, gpu, "GPU{gpu} got {pci}");
        assert_eq!(vf.pf_pci, topo.nics[gpu].pci());

        // The kernel agrees: that VF's netdev is net1 in the pod, with the
        // MAC the result reports.
        let loc = fabric.vf_location(vf.id).unwrap().unwrap();
        assert_eq!(loc.netns, pod.ns(), "GPU{gpu}");
        assert_eq!(loc.link.ifname, "net1");
        assert_eq!(loc.link.address.as_deref(), iface["mac"].as_str());
        fabric.sync_vf_sysfs(vf.id).unwrap();

        // The hints name that VF's RDMA device, on its rail.
        let dir = pods_dir.join(&cid);
        let env = std::fs::read_to_string(dir.join("nccl.env"))
            .unwrap_or_else(|e| panic!("nccl.env of GPU{gpu}: {e}\n{}", daemon.log()));
        let rdma = vf.rdma_device.as_deref().unwrap();
        assert_eq!(
            env_value(&env, "NCCL_IB_HCA"),
            Some(format!("={rdma}:1").as_str()),
            "{env}"
        );
        assert_eq!(env_value(&env, "NCCL_SOCKET_IFNAME"), Some("=net1"));
        assert_eq!(env_value(&env, "NCCL_CROSS_NIC"), Some("0"), "{env}");
        assert!(env.contains(&format!("rail {gpu}")), "{env}");
        // The topology file holds this pod's GPU and VF, no other GPU.
        let xml = std::fs::read_to_string(dir.join("topo.xml")).unwrap();
        assert!(xml.contains(&format!("name=\"{rdma}\"")), "{xml}");
        for (h, g) in topo.gpus.iter().enumerate() {
            let here = xml.contains(&g.pci.to_string());
            assert_eq!(here, h == gpu, "GPU{h} in GPU{gpu}'s topo.xml:\n{xml}");
        }
        attached.push(Attached { pod, cid, gpu, vf });
    }
    // Eight pods, eight NICs: every rail used once.
    let mut nics: Vec<usize> = attached.iter().map(|a| a.vf.id.nic).collect();
    nics.sort();
    assert_eq!(nics, (0..8).collect::<Vec<_>>());

    for a in &attached {
        let c = conf(&daemon, state.path(), &node.sysfs_root, a.gpu);
        let del = plugin(&fabric, "DEL", &a.cid, &a.pod, &c);
        assert!(del.ok, "DEL GPU{}: {}{}", a.gpu, del.stdout, del.stderr);
        fabric.sync_vf_sysfs(a.vf.id).unwrap();
        assert!(
            !pods_dir.join(&a.cid).exists(),
            "hints of GPU{} left",
            a.gpu
        );
        let loc = fabric.vf_location(a.vf.id).unwrap().unwrap();
        assert_eq!(loc.netns, node_ns, "VF of GPU{} not back", a.gpu);
    }

    // Everything as before: node links, what sysfs shows, the daemon's book.
    assert_eq!(link_states(&node_ns), links_before);
    let after = Topology::discover(&node.sysfs()).unwrap();
    let vfs_after: Vec<_> = after.nics.iter().map(|n| n.vfs.clone()).collect();
    assert_eq!(vfs_after, vfs_before);
    let (ok, out, err) = daemon.ctl(&["attachments", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).ok(),
        Some(json!([]))
    );
    // Pods go before the fabric (veth VFs would die with them otherwise).
    drop(attached);
}

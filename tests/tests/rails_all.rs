//! `rails: "all"`: one ADD puts one VF of every rail into the pod, each
//! with its rail's address, named `<ifname>`, `<ifname>r<rail>`; CHECK sees
//! them all and DEL returns them all. Runs the real `jobnet` and jobnetd on
//! a simulated fabric.

use jobnet_tests::fabric::ip::{self, Netns};
use jobnet_tests::fabric::{Fabric, FabricSpec};
use jobnet_tests::harness::{unique, CniCall, Daemon, Pod};
use serde_json::json;

const POOL: &str = r#"[[pools]]
name = "rdma"
cidrs = ["198.18.0.0/16"]
subnet_prefix = { v4 = 24 }
rails = 3
isolation = { mode = "none" }
"#;

#[test]
fn one_add_attaches_a_vf_of_every_rail() {
    let fabric = Fabric::build(FabricSpec {
        nodes: 1,
        nics_per_node: 3,
        vfs_per_nic: 2,
        ..FabricSpec::default()
    })
    .expect("fabric");
    let node = fabric.node(0).expect("node 0");
    let node_ns = Netns::Named(node.netns.clone().expect("node netns"));
    let before: Vec<(String, Option<String>)> = ip::links(&node_ns)
        .expect("links")
        .into_iter()
        .map(|l| (l.ifname, l.address))
        .collect();
    let daemon = Daemon::start("rails-node", &node.sysfs_root, POOL);
    let state = tempfile::tempdir().expect("state dir");
    let pod = Pod::new("jrail");
    let cid = unique("rails");
    let conf = json!({
        "cniVersion": "1.1.0", "name": "rails-net", "type": "jobnet",
        "rails": "all", "daemonSocket": daemon.socket,
        "sysfsRoot": node.sysfs_root, "stateDir": state.path(),
        "args": {"cni": {"job": "llama", "rank": 0}},
    });
    let call = |cmd: &str| CniCall::new(cmd, &cid, &pod.path(), "net1");
    let netns = node.netns_path();

    let add = call("ADD").run(&netns, &conf);
    assert!(
        add.ok,
        "ADD: {}{}\n{}",
        add.stdout,
        add.stderr,
        daemon.log()
    );
    let result = add.json();
    let names: Vec<&str> = result["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["net1", "net1r1", "net1r2"], "{result}");
    // Each interface has its own rail's VF (distinct PFs) and subnet.
    let pcis: Vec<&str> = result["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter_map(|i| i["pciID"].as_str())
        .collect();
    let pfs: std::collections::BTreeSet<String> = pcis
        .iter()
        .filter_map(|p| {
            let pci = p.parse().ok()?;
            fabric.vf_by_pci(0, pci).map(|v| v.pf_netdev.clone())
        })
        .collect();
    assert_eq!(pfs.len(), 3, "one VF per rail: {pcis:?}");
    let pod_ns = pod.ns();
    let in_pod = ip::links(&pod_ns).expect("pod links");
    for (i, name) in names.iter().enumerate() {
        assert!(
            in_pod.iter().any(|l| &l.ifname == name),
            "{name} not in the pod"
        );
        let ip = &result["ips"][i];
        assert_eq!(ip["interface"], i, "{result}");
        let addr = ip["address"].as_str().expect("address");
        assert!(
            addr.starts_with(&format!("198.18.{i}.")),
            "rail {i} address {addr} not in the rail's subnet"
        );
    }

    let check_conf = {
        let mut c = conf.clone();
        c["prevResult"] = result.clone();
        c
    };
    let check = call("CHECK").run(&netns, &check_conf);
    assert!(check.ok, "CHECK: {}{}", check.stdout, check.stderr);
    // Break what jobnet set on the second rail's interface (its address; an
    // MTU the config does not set is a later plugin's): CHECK must notice.
    let rail1_addr = result["ips"][1]["address"].as_str().expect("address");
    let addr_removed = std::process::Command::new("ip")
        .args(["-n", &pod.name, "addr", "del", rail1_addr, "dev", "net1r1"])
        .status()
        .expect("ip")
        .success();
    assert!(addr_removed);
    let check = call("CHECK").run(&netns, &check_conf);
    assert!(!check.ok, "CHECK passed with net1r1's address removed");
    assert!(check.stdout.contains("net1r1"), "{}", check.stdout);

    let del = call("DEL").run(&netns, &conf);
    assert!(del.ok, "DEL: {}{}", del.stdout, del.stderr);
    let after: Vec<(String, Option<String>)> = ip::links(&node_ns)
        .expect("links")
        .into_iter()
        .map(|l| (l.ifname, l.address))
        .collect();
    assert_eq!(after, before, "node links differ after DEL");
    let left: Vec<_> = walk(state.path());
    assert!(left.is_empty(), "state files left: {left:?}");
    let (ok, out, _) = daemon.ctl(&["attachments", "--json"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).ok(),
        Some(json!([]))
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

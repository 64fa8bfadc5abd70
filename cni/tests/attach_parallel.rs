//! 32 ADDs at once on 32 distinct VFs (one node, two NICs, 16 VFs each),
//! then 32 DELs at once: every one succeeds and everything is restored.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use common::kernel;
use common::{CniCall, Netns, Node, Run};
use jobnet_tests::fabric::FabricSpec;
use serde_json::{json, Value};

const PODS: usize = 32;

/// Files host-local keeps in its data dir besides one file per lease.
fn leases(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn thirty_two_parallel_adds_then_dels() {
    if !Path::new("/usr/lib/cni/host-local").exists() {
        jobnet_tests::skip(
            "attach_parallel::thirty_two_parallel_adds_then_dels",
            "no /usr/lib/cni/host-local (install containernetworking-plugins)",
        );
        return;
    }
    let node = Node::build(FabricSpec {
        nodes: 1,
        nics_per_node: 2,
        vfs_per_nic: 16,
        ..FabricSpec::default()
    });
    let vfs = node.vfs();
    assert_eq!(vfs.len(), PODS);
    assert_eq!(
        vfs.iter().map(|v| v.id.nic).collect::<BTreeSet<_>>().len(),
        2
    );
    let pods: Vec<Netns> = (0..PODS).map(|_| Netns::new("jnpar")).collect();
    let data = node.files().join("host-local");
    let work: Vec<(CniCall, Value)> = vfs
        .iter()
        .zip(&pods)
        .map(|(vf, pod)| {
            let cid = common::unique("par");
            let mut conf = node.conf("1.0.0", "parallel", vf, &cid, "net1");
            conf["ipam"] = json!({"type": "host-local",
                "ranges": [[{"subnet": "10.62.0.0/24"}]], "dataDir": data});
            (CniCall::new("ADD", &cid, &pod.path(), "net1"), conf)
        })
        .collect();

    let start = Instant::now();
    let adds: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = work
            .iter()
            .map(|(call, conf)| s.spawn(|| node.call(call, conf)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let add_wall = start.elapsed();
    eprintln!("32 parallel ADDs: {add_wall:?} wall");

    let mut addresses = BTreeSet::new();
    for (((run, vf), pod), (_, conf)) in adds.iter().zip(&vfs).zip(&pods).zip(&work) {
        let result = run.ok_json();
        let link = node.assert_vf_in(vf, &pod.name, "net1");
        assert_eq!(result["interfaces"][0]["mac"], json!(link.mac));
        let addr = result["ips"][0]["address"]
            .as_str()
            .expect("address")
            .to_owned();
        assert_eq!(
            kernel::addresses(&pod.name, "net1"),
            std::slice::from_ref(&addr)
        );
        addresses.insert(addr);
        assert!(conf["runtimeConfig"]["CNIDeviceInfoFile"]
            .as_str()
            .is_some_and(|p| Path::new(p).exists()));
    }
    assert_eq!(addresses.len(), PODS, "addresses must be distinct");
    assert_eq!(leases(&data.join("parallel")).len(), PODS);

    let start = Instant::now();
    let dels: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = work
            .iter()
            .map(|(call, conf)| s.spawn(|| node.call(&call.cmd("DEL"), conf)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("DEL thread"))
            .collect()
    });
    eprintln!("32 parallel DELs: {:?} wall", start.elapsed());
    for run in &dels {
        run.expect_silent_success();
    }
    for vf in &vfs {
        node.assert_vf_home(vf);
    }
    node.assert_no_state();
    assert_eq!(leases(&data.join("parallel")), Vec::<String>::new());
    for (_, conf) in &work {
        let p = conf["runtimeConfig"]["CNIDeviceInfoFile"]
            .as_str()
            .expect("path");
        assert!(!Path::new(p).exists(), "{p} left behind");
    }
    for pod in &pods {
        assert_eq!(
            kernel::links(&pod.name).len(),
            1,
            "pod {} not empty",
            pod.name
        );
    }
}

//! A failure injected before every step of ADD: the CNI error names the
//! step, the VF is back in the node exactly as it was, no cache, ownership
//! record or device-info file is left, and the delegated IPAM (Debian's
//! host-local) has released the address.
//!
//! ADD runs in-process (`jobnet_cni::run_with_faults`) on a thread that
//! entered the node's netns; the engine reads `JOBNET_SYSFS_ROOT` and
//! `JOBNET_STATE_DIR` from the process environment, so this file holds a
//! single test that sets them once.

mod common;

use std::path::Path;

use common::kernel;
use common::{Netns, Node};
use jobnet_cni::sriov::{FailAt, FaultHook, NoFaults, Step};
use serde_json::{json, Value};

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

/// Lease files (named by address) in host-local's store for `network`.
fn leases(data: &Path, network: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data.join(network))
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

/// Runs one verb in-process inside the node; returns (exit code, stdout).
fn run_verb(
    node: &Node,
    vars: &jobnet_cni::protocol::env::EnvMap,
    conf: &Value,
    faults: &(dyn FaultHook + Sync),
) -> (i32, String) {
    let input = conf.to_string();
    node.in_netns(|| {
        let mut out = Vec::new();
        let code = jobnet_cni::run_with_faults(vars, input.as_bytes(), &mut out, faults);
        (code, String::from_utf8_lossy(&out).into_owned())
    })
}

fn vars(command: &str, cid: &str, netns: &str) -> jobnet_cni::protocol::env::EnvMap {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", "/usr/lib/cni"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[test]
fn rollback_at_every_step() {
    if !Path::new(HOST_LOCAL).exists() {
        jobnet_tests::skip(
            "attach_rollback::rollback_at_every_step",
            &format!("no {HOST_LOCAL} (install containernetworking-plugins)"),
        );
        return;
    }
    let node = Node::small(2);
    let vf = node.vf(0);
    let bystander = node.vf(1);
    std::env::set_var("JOBNET_SYSFS_ROOT", node.sysfs_root());
    std::env::set_var("JOBNET_STATE_DIR", node.state_dir());
    let pod = Netns::new("jnrb");
    let network = "rollback";
    let conf_for = |cid: &str, data: &Path| {
        let mut c = node.conf("1.0.0", network, &vf, cid, "net1");
        c["mac"] = json!("02:0b:0b:0b:0b:01");
        c["mtu"] = json!(2000);
        c["ipam"] = json!({"type": "host-local",
            "ranges": [[{"subnet": "10.66.0.0/24"}]],
            "routes": [{"dst": "10.67.0.0/16"}, {"dst": "0.0.0.0/0"}],
            "dataDir": data});
        c
    };

    for step in Step::ALL {
        let data = tempfile::tempdir().expect("tempdir");
        let cid = common::unique("rb");
        let mut conf = conf_for(&cid, data.path());
        if step == Step::PfSettings {
            // The step only runs when a PF-side setting is configured (the
            // fault fires before the veth PF could refuse it).
            conf["spoofchk"] = json!("on");
        }
        let (code, out) = run_verb(&node, &vars("ADD", &cid, &pod.path()), &conf, &FailAt(step));
        node.sync(&vf);
        assert_ne!(code, 0, "{step}: ADD succeeded: {out}");
        let err: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{step}: {e}: {out}"));
        assert_eq!(err["code"], 102, "{step}: {err}");
        let msg = err["msg"].as_str().expect("msg");
        assert!(msg.contains(&step.to_string()), "{step}: {msg}");

        node.assert_vf_home(&vf);
        assert_eq!(&node.snapshot(&bystander), node.original(&bystander));
        node.assert_no_state();
        assert!(
            !node.devinfo_path(&cid, "net1").exists(),
            "{step}: device-info file left"
        );
        assert_eq!(
            leases(data.path(), network),
            Vec::<String>::new(),
            "{step}: host-local lease not released"
        );
        assert_eq!(kernel::links(&pod.name).len(), 1, "{step}: pod not empty");
    }

    // Nothing is stuck: the same VF attaches and detaches normally.
    let data = tempfile::tempdir().expect("tempdir");
    let cid = common::unique("rb");
    let conf = conf_for(&cid, data.path());
    let (code, out) = run_verb(&node, &vars("ADD", &cid, &pod.path()), &conf, &NoFaults);
    node.sync(&vf);
    assert_eq!(code, 0, "{out}");
    let link = node.assert_vf_in(&vf, &pod.name, "net1");
    assert_eq!((link.mac.as_str(), link.mtu), ("02:0b:0b:0b:0b:01", 2000));
    assert_eq!(leases(data.path(), network), ["10.66.0.2"]);
    let (code, out) = run_verb(&node, &vars("DEL", &cid, &pod.path()), &conf, &NoFaults);
    node.sync(&vf);
    assert_eq!((code, out.trim()), (0, ""));
    node.assert_vf_home(&vf);
    node.assert_no_state();
    assert_eq!(leases(data.path(), network), Vec::<String>::new());
}

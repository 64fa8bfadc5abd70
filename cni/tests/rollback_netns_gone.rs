//! An ADD whose pod netns is removed while it runs, failing after the VF
//! moved in: the rollback cannot enter the netns any more (its path is
//! gone) and the VF comes back to the node only when the kernel destroys
//! the netns, under the pod's interface name, with the pod's MAC and MTU.
//! The attachment cache is then the only record of the VF's original
//! state: the rollback keeps it, so that the DEL that follows the failed
//! ADD restores the VF. (Found by tests/tests/fault_suite.rs.)
//!
//! ADD runs in-process (`jobnet_cni::run_with_faults`) so that the netns
//! goes at an exact step; the engine reads `JOBNET_SYSFS_ROOT` and
//! `JOBNET_STATE_DIR` from the process environment, so this file holds a
//! single test that sets them once.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::{CniCall, Node};
use jobnet_cni::sriov::{AttachError, FaultHook, Step};
use serde_json::json;

/// Removes the pod netns's name just before `at`, then fails that step.
struct RemoveNetnsAt {
    at: Step,
    netns: String,
}

impl FaultHook for RemoveNetnsAt {
    fn before(&self, step: Step) -> Result<(), AttachError> {
        if step != self.at {
            return Ok(());
        }
        let ok = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns del {}", self.netns);
        Err(AttachError::Injected(step))
    }
}

/// A pod netns the test removes itself; removed on drop only if still there
/// (a panicking test).
struct PodNetns {
    name: String,
}

impl PodNetns {
    fn new() -> Self {
        let name = common::unique("jnrg");
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        Self { name }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for PodNetns {
    fn drop(&mut self) {
        if std::path::Path::new(&self.path()).exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}

/// Runs `ip args...` inside the netns held open by `ns`.
fn ip_in(ns: &File, args: &[&str]) {
    let path = format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd());
    let out = Command::new("nsenter")
        .arg(format!("--net={path}"))
        .arg("ip")
        .args(args)
        .output()
        .expect("run nsenter ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_rollback_that_cannot_reach_the_pod_keeps_the_cache_for_del() {
    let node = Node::small(1);
    let vf = node.vf(0);
    std::env::set_var("JOBNET_SYSFS_ROOT", node.sysfs_root());
    std::env::set_var("JOBNET_STATE_DIR", node.state_dir());
    let pod = PodNetns::new();
    // What keeps the netns alive once its name is gone: here this handle,
    // in a runtime the sandbox's processes or the plugin itself.
    let holder = File::open(pod.path()).expect("open pod netns");
    let cid = common::unique("rg");
    let mut conf = node.conf("1.1.0", "rollback-gone", &vf, &cid, "net1");
    let ipam =
        FixedIpam::new(&json!({"cniVersion": "1.1.0", "ips": [{"address": "10.66.9.5/24"}]}));
    conf["ipam"] = json!({"type": FIXED_IPAM});
    conf["mac"] = json!("02:0b:0c:0d:0e:01");
    conf["mtu"] = json!(1400);
    let vars: jobnet_cni::protocol::env::EnvMap = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", cid.as_str()),
        ("CNI_NETNS", pod.path().as_str()),
        ("CNI_IFNAME", "net1"),
        ("CNI_PATH", ipam.cni_path().as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let hook = RemoveNetnsAt {
        at: Step::LinkUp,
        netns: pod.name.clone(),
    };
    let input = conf.to_string();
    let (code, out) = node.in_netns(|| {
        let mut out = Vec::new();
        let code = jobnet_cni::run_with_faults(&vars, input.as_bytes(), &mut out, &hook);
        (code, String::from_utf8_lossy(&out).into_owned())
    });
    assert_ne!(code, 0, "ADD succeeded: {out}");

    // The netns dies: the kernel returns the VF to the node as it is.
    ip_in(&holder, &["link", "set", "dev", "net1", "down"]);
    ip_in(
        &holder,
        &[
            "link",
            "set",
            "dev",
            "net1",
            "netns",
            node.netns_name(),
            "name",
            "net1",
        ],
    );
    drop(holder);
    node.sync(&vf);

    let del = CniCall::new("DEL", &cid, &pod.path(), "net1").cni_path(&ipam.cni_path());
    node.call(&del, &conf).expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
    assert!(!node.devinfo_path(&cid, "net1").exists());
}

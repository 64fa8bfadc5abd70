//! DEL always finishes: its device work comes first and does not depend on
//! the IPAM plugin being there, and every lock wait has a bound (a VF held
//! by another operation for too long is "try again later", code 11, with
//! nothing changed).

mod common;

use std::fs::{File, OpenOptions};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::{kernel, wait_within, CniCall, Netns, Node};
use jobnet_tests::fabric::FabricVf;
use nix::fcntl::{Flock, FlockArg};
use serde_json::{json, Value};

/// Longer than any lock bound of the plugin: past it the plugin hangs.
const HANG: Duration = Duration::from_secs(40);

fn attach(node: &Node, vf: &FabricVf, ipam: &FixedIpam, pod: &Netns) -> (CniCall, Value) {
    let cid = common::unique("db");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1").cni_path(&ipam.cni_path());
    let mut conf = node.conf("1.0.0", "delbound", vf, &cid, "net1");
    conf["ipam"] = json!({"type": FIXED_IPAM});
    conf["mtu"] = json!(1300);
    node.call(&call, &conf).ok_json();
    node.assert_vf_in(vf, &pod.name, "net1");
    (call, conf)
}

fn ipam() -> FixedIpam {
    FixedIpam::new(&json!({"cniVersion": "1.0.0", "ips": [{"address": "10.76.0.5/24"}]}))
}

#[test]
fn del_without_cni_path_restores_the_vf_and_succeeds() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ipam = ipam();
    let pod = Netns::new("jndbp");
    let (call, conf) = attach(&node, &vf, &ipam, &pod);
    node.call(&call.cmd("DEL").cni_path(""), &conf)
        .expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
    assert_eq!(kernel::links(&pod.name).len(), 1);
}

#[test]
fn del_with_the_ipam_plugin_gone_restores_the_vf_and_succeeds() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ipam = ipam();
    let pod = Netns::new("jndbm");
    let (call, conf) = attach(&node, &vf, &ipam, &pod);
    let empty = tempfile::tempdir().expect("empty CNI_PATH dir");
    let path = empty.path().to_str().expect("utf-8").to_owned();
    node.call(&call.cmd("DEL").cni_path(&path), &conf)
        .expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
}

/// Holds the lock of the file at `path` (creating it), as a hung
/// operation would.
fn hold_lock(path: &std::path::Path) -> Flock<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("lock dir");
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open lock file");
    Flock::lock(f, FlockArg::LockExclusiveNonblock).expect("take the lock")
}

/// Runs the plugin in the node like `Node::call`, but kills it past `HANG`:
/// (exit code or None when it hung, stdout, time taken).
fn call_bounded(node: &Node, call: &CniCall, conf: &Value) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = node.spawn(call, conf, Stdio::piped());
    let code = wait_within(&mut child, HANG).and_then(|st| st.code());
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    (code, out, started.elapsed())
}

#[test]
fn del_of_a_vf_locked_too_long_is_try_again_and_changes_nothing() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ipam = ipam();
    let pod = Netns::new("jndbl");
    let (call, conf) = attach(&node, &vf, &ipam, &pod);
    let held = hold_lock(&node.owner_file(&vf));

    let (code, out, took) = call_bounded(&node, &call.cmd("DEL"), &conf);
    assert!(code.is_some(), "DEL still waiting after {HANG:?}");
    assert_eq!(code, Some(1), "DEL: {out}");
    let err: Value = serde_json::from_str(&out).expect("error object");
    assert_eq!(err["code"], json!(11), "{out}");
    eprintln!("DEL gave up after {took:?}: {}", err["msg"]);
    node.assert_vf_in(&vf, &pod.name, "net1");
    assert!(
        !ipam.calls().iter().any(|c| c.starts_with("DEL")),
        "IPAM released while the device is still attached: {:?}",
        ipam.calls()
    );

    // The runtime retries once the holder is done.
    drop(held);
    node.call(&call.cmd("DEL"), &conf).expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
}

#[test]
fn add_of_a_vf_locked_too_long_is_try_again() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ipam = ipam();
    let pod = Netns::new("jndba");
    let cid = common::unique("da");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1").cni_path(&ipam.cni_path());
    let mut conf = node.conf("1.0.0", "delbound", &vf, &cid, "net1");
    conf["ipam"] = json!({"type": FIXED_IPAM});
    let held = hold_lock(&node.owner_file(&vf));

    let (code, out, _) = call_bounded(&node, &call, &conf);
    assert_eq!(code, Some(1), "ADD: {out}");
    let err: Value = serde_json::from_str(&out).expect("error object");
    assert_eq!(err["code"], json!(11), "{out}");
    assert_eq!(&node.snapshot(&vf), node.original(&vf));

    drop(held);
    node.call(&call.cmd("DEL"), &conf).expect_silent_success();
    let _ = std::fs::remove_file(node.owner_file(&vf));
    node.assert_vf_home(&vf);
    node.assert_no_state();
}

//! DEL in every state a runtime can leave an attachment in: it always exits
//! 0 and leaves the VF in the node, intact and free for the next pod.

mod common;

use std::path::PathBuf;

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::kernel;
use common::{CniCall, Netns, Node};
use jobnet_tests::fabric::FabricVf;
use serde_json::{json, Value};

/// One attached VF and what DEL needs to undo it.
struct Attached {
    pod: Netns,
    call: CniCall,
    conf: Value,
    cid: String,
    ipam: FixedIpam,
}

fn attach(node: &Node, vf: &FabricVf, ifname: &str) -> Attached {
    let ipam = FixedIpam::new(&json!({"cniVersion": "1.1.0",
        "ips": [{"address": "10.64.0.5/24", "gateway": "10.64.0.1"}],
        "routes": [{"dst": "10.65.0.0/16", "gw": "10.64.0.1"}]}));
    let pod = Netns::new("jndel");
    let cid = common::unique("de");
    let call = CniCall::new("ADD", &cid, &pod.path(), ifname).cni_path(&ipam.cni_path());
    let mut conf = node.conf("1.1.0", "deledge", vf, &cid, ifname);
    conf["ipam"] = json!({"type": FIXED_IPAM});
    conf["mtu"] = json!(1400);
    conf["mac"] = json!("02:de:1e:7e:00:01");
    node.call(&call, &conf).ok_json();
    node.assert_vf_in(vf, &pod.name, ifname);
    assert!(node.devinfo_path(&cid, ifname).exists());
    Attached {
        pod,
        call,
        conf,
        cid,
        ipam,
    }
}

/// The VF is restored, nothing of the attachment is left, and the IPAM
/// plugin got its DEL.
fn assert_all_undone(node: &Node, vf: &FabricVf, a: &Attached) {
    node.assert_vf_home(vf);
    node.assert_no_state();
    assert!(
        !node.devinfo_path(&a.cid, &a.call.ifname).exists(),
        "device-info file left behind"
    );
    assert!(
        a.ipam.calls().contains(&format!("DEL {}", a.cid)),
        "IPAM not released: {:?}",
        a.ipam.calls()
    );
}

/// The VF can be attached to a new pod and detached again.
fn assert_reusable(node: &Node, vf: &FabricVf) {
    let before = node.snapshot(vf);
    let b = attach(node, vf, "net1");
    node.call(&b.call.cmd("DEL"), &b.conf)
        .expect_silent_success();
    assert_eq!(node.snapshot(vf), before, "second attachment not undone");
    node.assert_no_state();
}

#[test]
fn netns_gone_vf_back_under_the_pod_ifname() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let mut a = attach(&node, &vf, "net1");
    let path = a.pod.path();
    node.kernel_return(&vf, "net1");
    a.pod.delete();
    node.call(&a.call.cmd("DEL").netns(Some(&path)), &a.conf)
        .expect_silent_success();
    assert_all_undone(&node, &vf, &a);
    assert_reusable(&node, &vf);
}

#[test]
fn netns_gone_vf_back_as_dev_n() {
    let node = Node::small(2);
    let vf = node.vf(1);
    let mut a = attach(&node, &vf, "eth1");
    let path = a.pod.path();
    node.kernel_return(&vf, "dev7");
    assert!(kernel::link(node.netns_name(), "dev7").is_some());
    a.pod.delete();
    node.call(&a.call.cmd("DEL").netns(Some(&path)), &a.conf)
        .expect_silent_success();
    assert_all_undone(&node, &vf, &a);
    assert!(kernel::link(node.netns_name(), "dev7").is_none());
    assert_eq!(&node.snapshot(&node.vf(0)), node.original(&node.vf(0)));
    assert_reusable(&node, &vf);
}

#[test]
fn netns_gone_and_del_without_netns() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let mut a = attach(&node, &vf, "net1");
    node.kernel_return(&vf, "net1");
    a.pod.delete();
    node.call(&a.call.cmd("DEL").netns(None), &a.conf)
        .expect_silent_success();
    assert_all_undone(&node, &vf, &a);
}

#[test]
fn netns_path_is_a_regular_file() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let a = attach(&node, &vf, "net1");
    let file: PathBuf = node.files().join("not-a-netns");
    std::fs::write(&file, "plain file").expect("write file");
    let file = file.to_str().expect("utf-8").to_owned();
    // The pod's netns still exists: the cache says where the VF went.
    node.call(&a.call.cmd("DEL").netns(Some(&file)), &a.conf)
        .expect_silent_success();
    assert_all_undone(&node, &vf, &a);
    assert_eq!(kernel::links(&a.pod.name).len(), 1);
}

#[test]
fn netns_path_is_missing() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let a = attach(&node, &vf, "net1");
    let missing = format!("/run/netns/{}", common::unique("jnnone"));
    node.call(&a.call.cmd("DEL").netns(Some(&missing)), &a.conf)
        .expect_silent_success();
    assert_all_undone(&node, &vf, &a);
}

/// Without the cache the original name and settings are unknown: the VF
/// comes back to the node (under a temporary name) and is freed.
fn del_without_usable_cache(damage: impl Fn(&PathBuf)) {
    let node = Node::small(1);
    let vf = node.vf(0);
    let a = attach(&node, &vf, "net1");
    let cache = node.cache_file(&a.cid, "net1");
    assert!(cache.exists());
    damage(&cache);
    node.call(&a.call.cmd("DEL"), &a.conf)
        .expect_silent_success();
    let (ns, link) = node.locate(&vf).expect("VF lost");
    assert_eq!(ns, node.netns_name(), "VF not back in the node: {link:?}");
    assert!(!link.up, "returned VF should be down until configured");
    assert!(!node.owner_file(&vf).exists(), "VF still owned after DEL");
    assert_eq!(
        kernel::links(&a.pod.name).len(),
        1,
        "pod still holds the VF"
    );
    assert!(
        a.ipam.calls().contains(&format!("DEL {}", a.cid)),
        "IPAM not released"
    );
    // A second DEL is still fine, and the VF serves the next pod.
    node.call(&a.call.cmd("DEL"), &a.conf)
        .expect_silent_success();
    assert_reusable(&node, &vf);
    let left: Vec<PathBuf> = node
        .state_files()
        .into_iter()
        .filter(|p| p != &cache)
        .collect();
    assert_eq!(left, Vec::<PathBuf>::new());
}

#[test]
fn cache_missing() {
    del_without_usable_cache(|p| std::fs::remove_file(p).expect("remove cache"));
}

#[test]
fn cache_corrupt() {
    del_without_usable_cache(|p| {
        let body = std::fs::read(p).expect("read cache");
        std::fs::write(p, &body[..body.len() / 2]).expect("truncate cache");
    });
}

#[test]

fn device_info_removed_without_cache() {
    // DEL gets the device-info path in runtimeConfig again; without a cache
    // it can still remove the file.
    let node = Node::small(1);
    let vf = node.vf(0);
    let a = attach(&node, &vf, "net1");
    std::fs::remove_file(node.cache_file(&a.cid, "net1")).expect("remove cache");
    node.call(&a.call.cmd("DEL"), &a.conf)
        .expect_silent_success();
    assert!(
        !node.devinfo_path(&a.cid, "net1").exists(),
        "device-info file left behind"
    );
}

#[test]
fn del_twice() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let a = attach(&node, &vf, "net1");
    let del = a.call.cmd("DEL");
    node.call(&del, &a.conf).expect_silent_success();
    assert_all_undone(&node, &vf, &a);
    node.call(&del, &a.conf).expect_silent_success();
    assert_all_undone(&node, &vf, &a);
    assert_reusable(&node, &vf);
}

#[test]
fn del_for_a_container_that_never_added() {
    let node = Node::small(2);
    let free = node.vf(0);
    let taken = node.vf(1);
    let a = attach(&node, &taken, "net1");
    let stranger = Netns::new("jndel");
    for vf in [&free, &taken] {
        let cid = common::unique("never");
        let conf = node.conf("1.1.0", "deledge", vf, &cid, "net1");
        let mut conf_ipam = conf.clone();
        conf_ipam["ipam"] = json!({"type": FIXED_IPAM});
        let call = CniCall::new("DEL", &cid, &stranger.path(), "net1").cni_path(&a.ipam.cni_path());
        node.call(&call, &conf_ipam).expect_silent_success();
        assert!(a.ipam.calls().contains(&format!("DEL {cid}")));
    }
    // The free VF stays free and untouched; the attached one stays attached.
    node.assert_vf_home(&free);
    node.assert_vf_in(&taken, &a.pod.name, "net1");
    let added_result = {
        let mut prev = a.conf.clone();
        prev["prevResult"] = json!({"cniVersion": "1.1.0",
            "interfaces": [{"name": "net1", "sandbox": a.pod.path()}],
            "ips": [{"interface": 0, "address": "10.64.0.5/24"}]});
        prev
    };
    node.call(&a.call.cmd("CHECK"), &added_result)
        .expect_silent_success();
    node.call(&a.call.cmd("DEL"), &a.conf)
        .expect_silent_success();
    assert_all_undone(&node, &taken, &a);
    node.assert_vf_home(&free);
}

/// A pod that already has the requested ifname: ADD fails with "invalid
/// config", the pod keeps its own interface (same device, same name), the
/// VF is back in the node as it was, and nothing of the attempt is left.
/// (The kernel moves the VF before it refuses the rename, so the rollback
/// must find the VF in the pod by what it is, not by the name.)
#[test]
fn add_into_a_pod_that_has_the_ifname_leaves_both_as_they_were() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ipam = FixedIpam::new(&json!({"cniVersion": "1.1.0",
        "ips": [{"address": "10.64.0.5/24"}]}));
    let pod = Netns::new("jndel");
    kernel::ip(
        &pod.name,
        &[
            "link", "add", "net1", "type", "veth", "peer", "name", "net1p",
        ],
    );
    let before = kernel::link(&pod.name, "net1").expect("the pod's own net1");
    let cid = common::unique("taken");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1").cni_path(&ipam.cni_path());
    let mut conf = node.conf("1.1.0", "deledge", &vf, &cid, "net1");
    conf["ipam"] = json!({"type": FIXED_IPAM});
    conf["mac"] = json!("02:de:1e:7e:00:02");
    let err = node.call(&call, &conf).expect_error(7);
    assert!(
        err["msg"].as_str().unwrap_or_default().contains("net1"),
        "{err}"
    );
    let after = kernel::link(&pod.name, "net1").expect("the pod lost its net1");
    assert_eq!(
        (after.index, after.mac.as_str()),
        (before.index, before.mac.as_str()),
        "the pod's net1 is another device now"
    );
    assert_eq!(
        kernel::links(&pod.name).len(),
        kernel::links(&pod.name)
            .iter()
            .filter(|l| ["lo", "net1", "net1p"].contains(&l.name.as_str()))
            .count(),
        "the VF stayed in the pod: {:?}",
        kernel::links(&pod.name)
    );
    node.assert_vf_home(&vf);
    node.assert_no_state();
    assert!(
        ipam.calls().contains(&format!("DEL {cid}")),
        "IPAM not released: {:?}",
        ipam.calls()
    );
    assert_reusable(&node, &vf);
}

/// The delegated IPAM plugin runs while the VF moves into the pod; when it
/// refuses, the ADD fails with the plugin's own error, the VF comes back as
/// it was, and the plugin gets its DEL (CNI spec section 4).
#[test]
fn an_ipam_refusal_during_the_move_is_the_error_and_rolls_back() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::small(1);
    let vf = node.vf(0);
    let before = node.snapshot(&vf);
    let plugins = tempfile::tempdir().unwrap();
    let script = plugins.path().join("refusing-ipam");
    std::fs::write(
        &script,
        "#!/bin/sh\nd=$(dirname \"$0\")\ncat > /dev/null\n\
         echo \"$CNI_COMMAND $CNI_CONTAINERID\" >> \"$d/calls\"\n\
         [ \"$CNI_COMMAND\" = ADD ] || exit 0\n\
         echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"no addresses left\"}'\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pod = Netns::new("jndel");
    let cid = common::unique("refuse");
    let call =
        CniCall::new("ADD", &cid, &pod.path(), "net1").cni_path(plugins.path().to_str().unwrap());
    let mut conf = node.conf("1.0.0", "deledge", &vf, &cid, "net1");
    conf["ipam"] = json!({"type": "refusing-ipam"});
    conf["mac"] = json!("02:de:1e:7e:00:03");
    let err = node.call(&call, &conf).expect_error(11);
    assert!(
        err["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("no addresses left"),
        "{err}"
    );
    assert_eq!(node.snapshot(&vf), before, "VF not restored");
    node.assert_no_state();
    assert_eq!(kernel::links(&pod.name).len(), 1, "pod not empty");
    let calls = std::fs::read_to_string(plugins.path().join("calls")).unwrap_or_default();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [format!("ADD {cid}"), format!("DEL {cid}")],
    );
}

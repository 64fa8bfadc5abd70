//! An ADD repeated for a finished attachment with delegated IPAM: Debian's
//! host-local refuses a second allocation for the same container and
//! ifname, so the repeat fails; it must leave the attachment and its
//! allocation alone. The DEL that follows a failed delegated ADD would
//! otherwise hand back the address the pod still uses, for host-local to
//! give to another pod. (Found by tests/tests/fault_suite.rs.)

mod common;

use std::path::PathBuf;

use common::{kernel, CniCall, Netns, Node};
use jobnet_tests::fault::audit::host_local_leases;
use jobnet_tests::harness::require_reference_plugin;
use serde_json::json;

#[test]
fn a_refused_repeat_add_keeps_the_finished_attachment_and_its_lease() {
    require_reference_plugin("host-local");
    let node = Node::small(1);
    let vf = node.vf(0);
    let data = node.files().join("host-local");
    let pod = Netns::new("jnra");
    let cid = common::unique("ra");
    let mut conf = node.conf("1.0.0", "readd", &vf, &cid, "net1");
    conf["ipam"] = json!({"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": data});
    conf["mtu"] = json!(1400);
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1");

    let result = node.call(&call, &conf).ok_json();
    let addr = result["ips"][0]["address"]
        .as_str()
        .expect("address")
        .to_owned();
    let held = host_local_leases(&data, "readd");
    assert_eq!(held.len(), 1, "{held:?}");

    let again = node.call(&call, &conf);
    assert_ne!(again.status, 0, "host-local allocated twice: {again:?}");
    assert_eq!(
        host_local_leases(&data, "readd"),
        held,
        "the refused repeat handed back the pod's lease"
    );
    node.assert_vf_in(&vf, &pod.name, "net1");
    assert_eq!(kernel::addresses(&pod.name, "net1"), [addr]);
    let mut check = conf.clone();
    check["prevResult"] = result;
    node.call(&call.cmd("CHECK"), &check)
        .expect_silent_success();

    node.call(&call.cmd("DEL"), &conf).expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
    assert_eq!(host_local_leases(&data, "readd"), Vec::<PathBuf>::new());
}

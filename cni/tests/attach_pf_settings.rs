//! PF-side VF settings through the fabric's veth PF: the kernel parses the
//! request and answers EOPNOTSUPP (a veth has no VFs), exactly as it does
//! for `ip link set <pf> vf <n> ...`. ADD must turn that into code 102
//! naming the step, and undo everything.

mod common;

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::kernel;
use common::{CniCall, Netns, Node};
use serde_json::{json, Value};

#[test]
fn pf_side_settings_refused_by_a_veth_pf_roll_back() {
    let node = Node::small(2);
    let vf = node.vf(1);
    let pod = Netns::new("jnpf");
    let ipam = FixedIpam::new(&json!({"cniVersion": "1.1.0",
        "ips": [{"address": "10.69.0.5/24"}]}));
    let settings: Vec<(&str, Value)> = vec![
        ("vlan", json!({"vlan": 100})),
        (
            "vlan qos proto",
            json!({"vlan": 100, "vlanQoS": 3, "vlanProto": "802.1ad"}),
        ),
        ("spoofchk", json!({"spoofchk": "on"})),
        ("trust", json!({"trust": "on"})),
        ("link_state", json!({"link_state": "enable"})),
        ("rates", json!({"min_tx_rate": 100, "max_tx_rate": 1000})),
        (
            "all",
            json!({"vlan": 100, "spoofchk": "off", "trust": "on", "link_state": "disable",
                   "min_tx_rate": 10, "max_tx_rate": 100}),
        ),
    ];
    for (what, extra) in settings {
        let cid = common::unique("pf");
        let call = CniCall::new("ADD", &cid, &pod.path(), "net1").cni_path(&ipam.cni_path());
        let mut conf = node.conf("1.1.0", "pfside", &vf, &cid, "net1");
        conf["ipam"] = json!({"type": FIXED_IPAM});
        conf["mac"] = json!("02:0f:0f:0f:0f:01");
        for (k, v) in extra.as_object().expect("object") {
            conf[k] = v.clone();
        }
        let run = node.call(&call, &conf);
        let err = run.expect_error(102);
        let msg = err["msg"].as_str().expect("msg");
        assert!(
            msg.contains("apply PF-side VF settings"),
            "{what}: step not named: {msg}"
        );
        assert!(
            msg.to_lowercase().contains("not supported") || msg.contains("EOPNOTSUPP"),
            "{what}: the kernel's answer is lost: {msg}"
        );
        // Nothing moved, nothing left.
        node.assert_vf_home(&vf);
        assert_eq!(&node.snapshot(&node.vf(0)), node.original(&node.vf(0)));
        node.assert_no_state();
        assert!(!node.devinfo_path(&cid, "net1").exists(), "{what}");
        assert_eq!(kernel::links(&pod.name).len(), 1, "{what}: pod not empty");
        // The IPAM plugin runs during the VF's move into the pod, which
        // never came: nothing was allocated, so nothing is handed back.
        assert_eq!(
            ipam.calls()
                .iter()
                .filter(|c| c.ends_with(&cid))
                .cloned()
                .collect::<Vec<_>>(),
            Vec::<String>::new(),
            "{what}"
        );
    }
}

//! Two ADDs racing for one VF, and retried ADDs for the same attachment.

mod common;

use std::sync::Barrier;

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::kernel;
use common::{CniCall, Netns, Node, Run};
use serde_json::{json, Value};

const ROUNDS: usize = 12;

fn ipam() -> FixedIpam {
    FixedIpam::new(&json!({"cniVersion": "1.1.0", "ips": [{"address": "10.63.0.5/24"}]}))
}

fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

#[test]
fn two_adds_racing_for_one_vf() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ipam = ipam();
    let pods = [Netns::new("jnrace"), Netns::new("jnrace")];
    let mut busy = 0;
    let mut owned = 0;
    for round in 0..ROUNDS {
        let cids = [common::unique("ra"), common::unique("rb")];
        let calls: Vec<CniCall> = cids
            .iter()
            .zip(&pods)
            .map(|(cid, pod)| {
                CniCall::new("ADD", cid, &pod.path(), "net1").cni_path(&ipam.cni_path())
            })
            .collect();
        let confs: Vec<Value> = cids
            .iter()
            .map(|cid| {
                let mut c = node.conf("1.1.0", "race", &vf, cid, "net1");
                c["ipam"] = json!({"type": FIXED_IPAM});
                c
            })
            .collect();
        let barrier = Barrier::new(2);
        let runs: Vec<Run> = std::thread::scope(|s| {
            let hs: Vec<_> = calls
                .iter()
                .zip(&confs)
                .map(|(call, conf)| {
                    let barrier = &barrier;
                    let node = &node;
                    s.spawn(move || {
                        barrier.wait();
                        node.call(call, conf)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("ADD thread"))
                .collect()
        });
        let winners: Vec<usize> = (0..2).filter(|&i| runs[i].status == 0).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one must win: {runs:?}"
        );
        let w = winners[0];
        let l = 1 - w;

        // The loser: a clear refusal, nothing of it in its pod.
        let err = runs[l].json();
        let code = err["code"].as_u64().expect("code");
        let msg = err["msg"].as_str().expect("msg");
        assert!(msg.contains(&vf.pci.to_string()), "round {round}: {msg}");
        match code {
            101 => {
                owned += 1;
                assert!(
                    msg.contains(&cids[w]),
                    "round {round}: names the owner: {msg}"
                );
            }
            11 => {
                busy += 1;
                assert!(msg.contains("another operation"), "round {round}: {msg}");
            }
            other => panic!("round {round}: loser got code {other}: {:?}", runs[l]),
        }
        runs[l].expect_error(code);
        assert_eq!(
            kernel::links(&pods[l].name).len(),
            1,
            "round {round}: loser's pod"
        );
        assert!(!node.cache_file(&cids[l], "net1").exists());
        assert!(!node.devinfo_path(&cids[l], "net1").exists());

        // The winner holds the VF.
        node.assert_vf_in(&vf, &pods[w].name, "net1");
        let result = runs[w].json();

        // Once the winner is done, the loser's retry is refused as owned.
        let retry = node.call(&calls[l], &confs[l]);
        let msg = retry.expect_error(101)["msg"]
            .as_str()
            .expect("msg")
            .to_owned();
        assert!(
            msg.contains(&cids[w]) && msg.contains(&vf.pci.to_string()),
            "{msg}"
        );
        assert_eq!(
            kernel::links(&pods[l].name).len(),
            1,
            "round {round}: loser's pod"
        );

        // The runtime sends DEL for the failed ADD: it must not touch the winner.
        node.call(&calls[l].cmd("DEL"), &confs[l])
            .expect_silent_success();
        node.assert_vf_in(&vf, &pods[w].name, "net1");
        node.call(&calls[w].cmd("CHECK"), &with_prev(&confs[w], &result))
            .expect_silent_success();

        // DEL of the winner: the VF is intact and free for the next round.
        node.call(&calls[w].cmd("DEL"), &confs[w])
            .expect_silent_success();
        node.assert_vf_home(&vf);
        node.assert_no_state();
        for p in &pods {
            assert_eq!(
                kernel::links(&p.name).len(),
                1,
                "round {round}: pod {}",
                p.name
            );
        }
    }
    eprintln!("{ROUNDS} rounds: loser refused as owned {owned} times, busy {busy} times");
    assert_eq!(owned + busy, ROUNDS);
}

#[test]
fn retried_add_is_idempotent() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let ipam = ipam();
    let pod = Netns::new("jnretry");
    let cid = common::unique("rt");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1").cni_path(&ipam.cni_path());
    let mut conf = node.conf("1.1.0", "retry", &vf, &cid, "net1");
    conf["ipam"] = json!({"type": FIXED_IPAM});
    conf["mtu"] = json!(4000);

    let first = node.call(&call, &conf).ok_json();
    let link = node.assert_vf_in(&vf, &pod.name, "net1");
    // A marker a second move would wipe: a netns move flushes addresses.
    kernel::ip(
        &pod.name,
        &["addr", "add", "198.51.100.77/32", "dev", "net1"],
    );
    for _ in 0..3 {
        let again = node.call(&call, &conf).ok_json();
        assert_eq!(again, first, "a retried ADD answers the same");
        let now = node.assert_vf_in(&vf, &pod.name, "net1");
        assert_eq!(now, link, "the interface was not touched");
        assert!(
            kernel::addresses(&pod.name, "net1").contains(&"198.51.100.77/32".to_owned()),
            "the VF was moved again"
        );
    }
    // Another ifname for the same container is another attachment: refused.
    let other = CniCall::new("ADD", &cid, &pod.path(), "net2").cni_path(&ipam.cni_path());
    let refused = node.call(&other, &conf);
    refused.expect_error(101);
    node.assert_vf_in(&vf, &pod.name, "net1");

    node.call(&call.cmd("DEL"), &conf).expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
}

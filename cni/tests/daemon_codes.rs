//! What the plugin answers when jobnetd's answers go wrong, and that it
//! never gives up a live attachment for it: STATUS without a free VF is 50
//! (no new ADDs; existing pods are fine), a retried ADD whose commit fails
//! leaves the attachment it found intact, and a commit jobnetd no longer
//! knows (the reservation expired meanwhile) undoes this ADD and asks the
//! runtime to try again (11).

mod common;
mod fake_jobnetd;

use common::{kernel, CniCall, Netns, Node};
use fake_jobnetd::{daemon_conf, FakeJobnetd};
use jobnet_api::{ApiError, ErrorCode};

#[test]
fn status_without_a_free_vf_is_plugin_not_available() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let daemon = FakeJobnetd::start(vf.pci, vf.pf_pci, "10.77.0.5/24");
    let conf = daemon_conf(&daemon, node.state_dir(), &node.sysfs_root());
    let status = CniCall::new("STATUS", "unused", "/unused", "net1");
    node.call(&status, &conf).expect_silent_success();
    daemon.set_free_vfs(0);
    let err = node.call(&status, &conf).expect_error(50);
    assert!(
        err["msg"].as_str().is_some_and(|m| m.contains("free VF")),
        "{err}"
    );
}

#[test]
fn a_retried_add_whose_commit_fails_keeps_the_attachment() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let daemon = FakeJobnetd::start(vf.pci, vf.pf_pci, "10.77.1.5/24");
    let conf = daemon_conf(&daemon, node.state_dir(), &node.sysfs_root());
    let pod = Netns::new("jndcr");
    let cid = common::unique("cr");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1");
    let r = node.call(&call, &conf);
    node.sync(&vf);
    let first = r.ok_json();
    let link = node.assert_vf_in(&vf, &pod.name, "net1");

    for (fault, code) in [
        (
            ApiError::new(ErrorCode::Unavailable, "jobnetd is restarting"),
            11,
        ),
        (
            ApiError::new(ErrorCode::StoreFailure, "store is read-only"),
            5,
        ),
    ] {
        daemon.fail_commits(Some(fault));
        let r = node.call(&call, &conf);
        node.sync(&vf);
        r.expect_error(code);
        assert_eq!(
            daemon.count("release", &cid, "net1"),
            0,
            "released: {:?}",
            daemon.calls()
        );
        assert_eq!(
            node.assert_vf_in(&vf, &pod.name, "net1"),
            link,
            "the attachment was touched"
        );
        assert_eq!(kernel::addresses(&pod.name, "net1"), ["10.77.1.5/24"]);
        assert!(node.cache_file(&cid, "net1").exists(), "the cache is gone");
    }

    daemon.fail_commits(None);
    let r = node.call(&call, &conf);
    node.sync(&vf);
    assert_eq!(r.ok_json(), first);

    let r = node.call(&call.cmd("DEL"), &conf);
    node.sync(&vf);
    r.expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
}

#[test]
fn a_commit_jobnetd_no_longer_knows_is_undone_and_try_again() {
    let node = Node::small(1);
    let vf = node.vf(0);
    let daemon = FakeJobnetd::start(vf.pci, vf.pf_pci, "10.77.2.5/24");
    let conf = daemon_conf(&daemon, node.state_dir(), &node.sysfs_root());
    let pod = Netns::new("jndce");
    let cid = common::unique("ce");
    let call = CniCall::new("ADD", &cid, &pod.path(), "net1");
    daemon.fail_commits(Some(ApiError::new(
        ErrorCode::UnknownAttachment,
        format!("no attachment {cid}/net1"),
    )));
    let r = node.call(&call, &conf);
    node.sync(&vf);
    let err = r.expect_error(11);
    let msg = err["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("reservation"), "{msg}");
    node.assert_vf_home(&vf);
    node.assert_no_state();
    assert_eq!(kernel::links(&pod.name).len(), 1);

    // The runtime's retry works once jobnetd holds the reservation again.
    daemon.fail_commits(None);
    let r = node.call(&call, &conf);
    node.sync(&vf);
    r.ok_json();
    node.assert_vf_in(&vf, &pod.name, "net1");
    let r = node.call(&call.cmd("DEL"), &conf);
    node.sync(&vf);
    r.expect_silent_success();
    node.assert_vf_home(&vf);
    node.assert_no_state();
}

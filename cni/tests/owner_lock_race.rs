//! A run that waited for a lock must act on the file that is at the path
//! when it gets the lock, not on the one it opened: while it waited, the
//! holder may have removed it and another attachment made a new one. Each
//! test stops one run between opening and locking (the hook), lets the
//! others finish, then lets it go: the interleaving is fixed.

mod common;

use std::fs::File;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::Duration;

use common::ipam::{FixedIpam, FIXED_IPAM};
use common::{CniCall, Netns, Node};
use jobnet_cni::sriov::owner::{self, OwnerError, OwnerRecord};
use jobnet_cni::sriov::{AttachError, FaultHook, StateDir, Step};
use jobnet_hw::PciAddr;
use jobnet_tests::fabric::FabricVf;
use serde_json::{json, Value};

/// How long a test waits for the paused run at each handshake.
const HANDSHAKE: Duration = Duration::from_secs(60);

/// Pauses the first lock of the run (whatever file it is) until told to
/// go on.
struct PauseAtFirstLock {
    reached: Mutex<Option<Sender<()>>>,
    go: Mutex<Receiver<()>>,
}

impl PauseAtFirstLock {
    fn new(reached: Sender<()>, go: Receiver<()>) -> Self {
        Self {
            reached: Mutex::new(Some(reached)),
            go: Mutex::new(go),
        }
    }
}

impl FaultHook for PauseAtFirstLock {
    fn before(&self, _: Step) -> Result<(), AttachError> {
        Ok(())
    }

    fn before_lock(&self, _path: &std::path::Path) {
        let first = self.reached.lock().map(|mut r| r.take()).ok().flatten();
        if let Some(reached) = first {
            let _ = reached.send(());
            if let Ok(go) = self.go.lock() {
                let _ = go.recv_timeout(HANDSHAKE);
            }
        }
    }
}

/// Runs the plugin in this process, on a thread in the node's netns, with
/// `hook`; returns (exit code, stdout).
fn run_paused(node: &Node, call: &CniCall, conf: &Value, hook: &PauseAtFirstLock) -> (i32, String) {
    let ns = File::open(node.netns_path()).expect("open node netns");
    let vars: jobnet_cni::protocol::env::EnvMap = call.vars().into_iter().collect();
    let input = conf.to_string();
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let mut out = Vec::new();
            let code = jobnet_cni::run_with_faults(&vars, input.as_bytes(), &mut out, hook);
            (code, String::from_utf8_lossy(&out).into_owned())
        })
        .join()
        .expect("plugin thread")
    })
}

struct Setup {
    node: Node,
    vf: FabricVf,
    ipam: FixedIpam,
}

impl Setup {
    fn new() -> Self {
        let node = Node::small(1);
        let vf = node.vf(0);
        let ipam =
            FixedIpam::new(&json!({"cniVersion": "1.1.0", "ips": [{"address": "10.75.0.5/24"}]}));
        Self { node, vf, ipam }
    }

    /// An ADD of `cid` into `pod`, and its config (with the state and sysfs
    /// dirs in it: the in-process run does not see the test's environment).
    fn add(&self, cid: &str, pod: &Netns) -> (CniCall, Value) {
        let call = CniCall::new("ADD", cid, &pod.path(), "net1").cni_path(&self.ipam.cni_path());
        let mut conf = self.node.conf("1.1.0", "lockrace", &self.vf, cid, "net1");
        conf["ipam"] = json!({"type": FIXED_IPAM});
        conf["stateDir"] = json!(self.node.state_dir());
        conf["sysfsRoot"] = json!(self.node.sysfs_root());
        (call, conf)
    }

    fn owner(&self) -> Option<String> {
        let body = std::fs::read(self.node.owner_file(&self.vf)).ok()?;
        let v: Value = serde_json::from_slice(&body).ok()?;
        v["container_id"].as_str().map(str::to_owned)
    }
}

/// Runs `paused` with the hook on a thread; once it sits between opening
/// and locking the record, runs `meanwhile`, then lets it go on.
fn pause_at_first_lock<T: Send>(
    paused: impl FnOnce(&PauseAtFirstLock) -> T + Send,
    meanwhile: impl FnOnce(),
) -> T {
    let (reached_tx, reached_rx) = channel();
    let (go_tx, go_rx) = channel();
    let hook = PauseAtFirstLock::new(reached_tx, go_rx);
    std::thread::scope(|sc| {
        let h = sc.spawn(|| paused(&hook));
        reached_rx
            .recv_timeout(HANDSHAKE)
            .expect("the paused run never opened the VF's record");
        meanwhile();
        go_tx.send(()).expect("paused run gone");
        h.join().expect("paused run panicked")
    })
}

/// [`pause_at_first_lock`] for a plugin run of `paused`.
fn interleave(s: &Setup, paused: (&CniCall, &Value), meanwhile: impl FnOnce()) -> (i32, String) {
    pause_at_first_lock(
        |hook| run_paused(&s.node, paused.0, paused.1, hook),
        meanwhile,
    )
}

#[test]
fn a_duplicate_del_that_waited_leaves_the_new_owner_alone() {
    let s = Setup::new();
    let pod_a = Netns::new("jnlra");
    let pod_b = Netns::new("jnlrb");
    let (cid_a, cid_b) = (common::unique("la"), common::unique("lb"));
    let (add_a, conf_a) = s.add(&cid_a, &pod_a);
    let (add_b, conf_b) = s.add(&cid_b, &pod_b);
    s.node.call(&add_a, &conf_a).ok_json();

    // DEL #2 of A stops at its first lock while DEL #1 of A finishes and
    // B's ADD takes the VF with a new record.
    let (code, out) = interleave(&s, (&add_a.cmd("DEL"), &conf_a), || {
        s.node
            .call(&add_a.cmd("DEL"), &conf_a)
            .expect_silent_success();
        s.node.assert_vf_home(&s.vf);
        s.node.call(&add_b, &conf_b).ok_json();
        assert_eq!(s.owner().as_deref(), Some(cid_b.as_str()));
    });
    assert_eq!(code, 0, "duplicate DEL failed: {out}");

    s.node.sync(&s.vf);
    s.node.assert_vf_in(&s.vf, &pod_b.name, "net1");
    assert_eq!(
        s.owner().as_deref(),
        Some(cid_b.as_str()),
        "the duplicate DEL of A removed B's record"
    );
    assert!(
        s.node.cache_file(&cid_b, "net1").exists(),
        "B's cache is gone"
    );

    s.node
        .call(&add_b.cmd("DEL"), &conf_b)
        .expect_silent_success();
    s.node.assert_vf_home(&s.vf);
    s.node.assert_no_state();
}

#[test]
fn lock_existing_that_waited_sees_the_record_now_at_the_path() {
    let s = Setup::new();
    let state = StateDir::new(s.node.state_dir());
    let pci = s.vf.pci;
    drop(owner::claim(&state, pci, record(&s, "a")).expect("claim a"));
    let got = pause_at_first_lock(
        |hook| owner::lock_existing_with_hook(&state, pci, hook),
        || a_gives_way_to_b(&s, &state),
    );
    let held = got.expect("lock_existing").expect("B's record");
    assert_eq!(held.record.container_id, "b", "acted on the removed record");
    drop(held);
    assert_eq!(owner_id(&state, pci).as_deref(), Some("b"));
}

#[test]
fn claim_that_waited_sees_the_record_now_at_the_path() {
    let s = Setup::new();
    let state = StateDir::new(s.node.state_dir());
    let pci = s.vf.pci;
    drop(owner::claim(&state, pci, record(&s, "a")).expect("claim a"));
    // A retried claim of A opened A's record; meanwhile A is released and B
    // claims the VF.
    let got = pause_at_first_lock(
        |hook| owner::claim_with_hook(&state, pci, record(&s, "a"), hook),
        || a_gives_way_to_b(&s, &state),
    );
    match got {
        Err(OwnerError::OwnedByOther { owner, .. }) => assert_eq!(owner.container_id, "b"),
        other => panic!("a claim of A on B's VF must be refused, got {other:?}"),
    }
    assert_eq!(owner_id(&state, pci).as_deref(), Some("b"));
}

/// While a paused run waits: the holder removes A's record; B makes its own.
fn a_gives_way_to_b(s: &Setup, state: &StateDir) {
    let pci = s.vf.pci;
    let a = owner::lock_existing(state, pci)
        .expect("lock a")
        .expect("a's record");
    a.release().expect("release a");
    drop(owner::claim(state, pci, record(s, "b")).expect("claim b"));
}

/// The container id in the VF's owner record, as the owner module reads it.
fn owner_id(state: &StateDir, pci: PciAddr) -> Option<String> {
    owner::owner_of(state, pci).map(|r| r.container_id)
}

/// A record of `cid` whose netns is alive (the node's), so no claim takes
/// it for stale.
fn record(s: &Setup, cid: &str) -> OwnerRecord {
    serde_json::from_value(json!({
        "container_id": cid, "ifname": "net1", "netns": s.node.netns_path(),
    }))
    .expect("owner record")
}

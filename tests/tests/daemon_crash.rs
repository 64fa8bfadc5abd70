//! jobnetd crash safety on the fabric: a stream of real `jobnet` ADD/DEL
//! (no `ipam` section, so every ADD reserves and commits through jobnetd)
//! while another thread SIGKILLs jobnetd at random moments and restarts it
//! on the same state. Then the invariants:
//! - no address is held twice;
//! - every committed attachment (ADD returned 0, no DEL since) is recorded
//!   by the daemon with the VF that ADD reported, and that VF is in its pod;
//! - nothing uncommitted survives the reservation timeout, and every VF
//!   not held by a committed attachment is back in the node;
//! - a pod netns that dies without DEL (its VF returned by the kernel) is
//!   released by reconciliation.
//!
//! The RNG seed is printed; set `JOBNET_CRASH_SEED` to replay a run. The
//! binaries come from [`jobnet_tests::harness::binaries`] (it runs `cargo
//! build -p jobnet-cni -p jobnet-daemon` into this test's target dir on first
//! use, since `CARGO_BIN_EXE_*` only names the test's own package's bins).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobnet_api::{AttachmentKey, AttachmentState, Client, VfState};
use jobnet_hw::PciAddr;
use jobnet_tests::fabric::{Fabric, FabricSpec, Netns, VfId};
use jobnet_tests::fault::jobnetd::{Jobnetd, JobnetdConfig};
use jobnet_tests::fault::rng::{seed_from_env, Rng};
use jobnet_tests::harness::{binaries, result_addr, result_pci, unique, CniCall, PluginRun, Pod};
use serde_json::json;

/// How long ADD/DEL traffic runs at least while jobnetd is being killed.
const STREAM: Duration = Duration::from_secs(12);
/// The stream goes on past [`STREAM`] until jobnetd was killed and ADDs
/// committed this many times each (a busy machine gets through less in
/// the same time), but never past [`STREAM_CAP`].
const ENOUGH: usize = 5;
const STREAM_CAP: Duration = Duration::from_secs(60);
/// Pod netns slots (fewer than VFs, so lingering reservations rarely exhaust the pool).
const PODS: usize = 6;
const VFS: usize = 8;
/// Pool and daemon timings, short so the test ends quickly.
const RESERVATION_TIMEOUT_SECS: u64 = 2;
const NETNS_GRACE_SECS: u64 = 1;
const RECONCILE_SECS: u64 = 1;

/// What a committed ADD left.
#[derive(Debug, Clone)]
struct Held {
    cid: String,
    vf: VfId,
    addr: IpAddr,
}

struct World {
    fabric: Fabric,
    daemon: Arc<Mutex<Jobnetd>>,
    socket: PathBuf,
    plugin_state: tempfile::TempDir,
    pods: Vec<Pod>,
}

impl World {
    fn conf(&self) -> serde_json::Value {
        json!({
            "cniVersion": "1.1.0", "name": "crash-net", "type": "jobnet",
            "daemonSocket": self.socket,
            "args": {"cni": {"job": "crashjob"}},
        })
    }

    /// Runs `jobnet` in the node netns as a runtime would.
    fn jobnet(&self, command: &str, cid: &str, netns: &Path) -> PluginRun {
        let node = self.fabric.node(0).unwrap();
        CniCall::new(command, cid, netns, "net1")
            .cni_path()
            .dirs(&node.sysfs_root, self.plugin_state.path())
            .run(&node.netns_path(), &self.conf())
    }

    fn vf_of_pci(&self, pci: PciAddr) -> VfId {
        self.fabric.vf_by_pci(0, pci).unwrap().id
    }

    /// DEL must succeed whatever state the daemon is in.
    fn del(&self, cid: &str, pod: usize, vf: Option<VfId>) {
        let del = self.jobnet("DEL", cid, &self.pods[pod].path());
        assert!(del.ok, "DEL {cid} failed: {}{}", del.stdout, del.stderr);
        if let Some(vf) = vf {
            self.fabric.sync_vf_sysfs(vf).unwrap();
        }
    }

    fn client(&self) -> Client {
        Client::new(&self.socket)
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Where the VF's netdev is now.
fn where_is(fabric: &Fabric, vf: VfId) -> Option<Netns> {
    fabric.vf_location(vf).unwrap().map(|l| l.netns)
}

#[test]
fn sigkill_during_add_del_stream_keeps_invariants() {
    let seed = seed_from_env("JOBNET_CRASH_SEED");
    println!("JOBNET_CRASH_SEED={seed}");
    // Build the binaries before the clock starts: on a busy machine the
    // first build can take longer than the whole stream.
    binaries();
    let fabric = Fabric::build(FabricSpec {
        nodes: 1,
        nics_per_node: 1,
        vfs_per_nic: VFS,
        ..FabricSpec::default()
    })
    .unwrap();
    let sysfs_root = fabric.node(0).unwrap().sysfs_root.clone();
    let d = Jobnetd::start(&JobnetdConfig {
        node: "crash-node".into(),
        sysfs_root,
        netns: None,
        reconcile_interval_secs: RECONCILE_SECS,
        netns_grace_secs: NETNS_GRACE_SECS,
        pools: format!(
            "[[pools]]\nname = \"rdma\"\ncidrs = [\"198.18.0.0/16\"]\n\
             subnet_prefix = {{ v4 = 24 }}\nisolation = {{ mode = \"none\" }}\n\
             reservation_timeout_secs = {RESERVATION_TIMEOUT_SECS}\n"
        ),
    });
    let socket = d.socket();
    let world = World {
        fabric,
        daemon: Arc::new(Mutex::new(d)),
        socket,
        plugin_state: tempfile::tempdir().unwrap(),
        pods: (0..PODS).map(|_| Pod::new("jcr")).collect(),
    };

    let started = Instant::now();
    // The killer: SIGKILL at a random moment, restart after a random pause.
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let daemon = world.daemon.clone();
        let stop = stop.clone();
        let kills = kills.clone();
        let mut rng = Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(150 + rng.below(600)));
                daemon.lock().unwrap().kill9();
                kills.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(rng.below(250)));
                daemon.lock().unwrap().spawn();
            }
        })
    };

    // The stream, against a model of what must hold.
    let mut rng = Rng::new(seed);
    let mut held: BTreeMap<usize, Held> = BTreeMap::new();
    let (mut adds_ok, mut adds_failed, mut dels) = (0, 0, 0);
    loop {
        let free: Vec<usize> = (0..PODS).filter(|p| !held.contains_key(p)).collect();
        let add = !free.is_empty() && (held.is_empty() || rng.below(100) < 60);
        if add {
            let pod = free[rng.index(free.len())];
            let cid = unique("crash");
            let add = world.jobnet("ADD", &cid, &world.pods[pod].path());
            let (out, err) = (&add.stdout, &add.stderr);
            if add.ok {
                let r = add.json();
                let pci = result_pci(&r).unwrap_or_else(|| panic!("no pciID: {r}"));
                let vf = world.vf_of_pci(pci);
                world.fabric.sync_vf_sysfs(vf).unwrap();
                let addr = result_addr(&r).unwrap_or_else(|| panic!("no address: {r}"));
                held.insert(pod, Held { cid, vf, addr });
                adds_ok += 1;
            } else {
                // A failed ADD leaves nothing in the pod; the runtime follows with DEL.
                assert!(
                    !out.contains("\"code\": 999") && !out.contains("\"code\":999"),
                    "ADD hit an internal error: {out}{err}"
                );
                world.del(&cid, pod, None);
                adds_failed += 1;
            }
        } else {
            let pods: Vec<usize> = held.keys().copied().collect();
            let pod = pods[rng.index(pods.len())];
            let h = held.remove(&pod).unwrap();
            world.del(&h.cid, pod, Some(h.vf));
            dels += 1;
        }
        let enough = adds_ok >= ENOUGH && kills.load(Ordering::Relaxed) >= ENOUGH;
        if (enough && started.elapsed() > STREAM) || started.elapsed() > STREAM_CAP {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    killer.join().unwrap();
    let kills = kills.load(Ordering::Relaxed);
    println!("adds_ok={adds_ok} adds_failed={adds_failed} dels={dels} kills={kills}");
    assert!(kills >= ENOUGH, "jobnetd was killed only {kills} times");
    assert!(adds_ok >= ENOUGH, "only {adds_ok} ADDs succeeded");
    world.daemon.lock().unwrap().wait_up();

    // Deliver the releases queued while the daemon was down (any plugin run does).
    let flush_cid = unique("flush");
    world.del(&flush_cid, 0, None);
    let queued = std::fs::read_dir(world.plugin_state.path().join("pending-release"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(queued, 0, "releases still queued after a plugin run");

    // Uncommitted reservations expire: wait until only committed ones are left.
    let rt = rt();
    let client = world.client();
    let deadline = Instant::now() + Duration::from_secs(RESERVATION_TIMEOUT_SECS + 15);
    let atts = loop {
        let atts = rt.block_on(client.attachments()).unwrap();
        if atts.iter().all(|a| a.state == AttachmentState::Committed) {
            break atts;
        }
        assert!(
            Instant::now() < deadline,
            "reservations not released: {atts:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // No address twice.
    let mut seen = HashSet::new();
    for a in &atts {
        for addr in &a.addresses {
            assert!(
                seen.insert(addr.address.addr()),
                "{} held twice",
                addr.address
            );
        }
    }
    // Exactly the committed attachments, each with its VF in its pod.
    let recorded: HashMap<String, &jobnet_api::Attachment> =
        atts.iter().map(|a| (a.container_id.clone(), a)).collect();
    let expected: HashSet<&str> = held.values().map(|h| h.cid.as_str()).collect();
    let got: HashSet<&str> = recorded.keys().map(String::as_str).collect();
    assert_eq!(got, expected, "daemon records differ from committed ADDs");
    for (pod, h) in &held {
        let a = recorded[&h.cid];
        let pci = world.fabric.vf(h.vf).unwrap().pci;
        assert_eq!(a.vfs.iter().map(|v| v.pci).collect::<Vec<_>>(), vec![pci]);
        assert!(a.addresses.iter().any(|x| x.address.addr() == h.addr));
        assert_eq!(
            where_is(&world.fabric, h.vf),
            Some(Netns::Named(world.pods[*pod].name.clone())),
            "VF of {} not in its pod",
            h.cid
        );
    }
    // Every other VF is back in the node.
    let held_vfs: HashSet<VfId> = held.values().map(|h| h.vf).collect();
    let node_ns = world.fabric.node(0).unwrap().ip_netns();
    for vf in world.fabric.vfs() {
        if !held_vfs.contains(&vf.id) {
            assert_eq!(
                where_is(&world.fabric, vf.id),
                Some(node_ns.clone()),
                "{:?}",
                vf.id
            );
        }
    }

    // A pod dies without DEL: the kernel returns its VF, reconciliation releases it.
    let mut world = world;
    let extra = if held.is_empty() {
        let cid = unique("crash");
        let add = world.jobnet("ADD", &cid, &world.pods[0].path());
        assert!(
            add.ok,
            "ADD after the stream: {}{}\n{}",
            add.stdout,
            add.stderr,
            world.daemon.lock().unwrap().log_tail(200)
        );
        let r = add.json();
        let pci = result_pci(&r).unwrap_or_else(|| panic!("no pciID: {r}"));
        let vf = world.vf_of_pci(pci);
        world.fabric.sync_vf_sysfs(vf).unwrap();
        held.insert(
            0,
            Held {
                cid,
                vf,
                addr: IpAddr::from([0, 0, 0, 0]),
            },
        );
        true
    } else {
        false
    };
    let (&dead_pod, dead) = held.iter().next().unwrap();
    let dead = dead.clone();
    world.fabric.kernel_return_vf(dead.vf, "net1").unwrap();
    let gone = world.pods.remove(dead_pod);
    drop(gone);
    held.remove(&dead_pod);
    let dead_key = AttachmentKey::new(&dead.cid, "net1");
    let dead_pci = world.fabric.vf(dead.vf).unwrap().pci;
    let deadline = Instant::now() + Duration::from_secs(NETNS_GRACE_SECS + RECONCILE_SECS + 15);
    loop {
        let known = rt.block_on(client.check(&dead_key)).is_ok();
        let vfs = rt.block_on(client.vfs()).unwrap();
        let free = vfs
            .iter()
            .any(|v| v.pci == dead_pci && v.state == VfState::Free);
        if !known && free {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "attachment of a dead netns not released (extra ADD: {extra})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Clean up through the plugin: DEL the rest, the daemon ends empty.
    let pod_of: HashMap<String, usize> = world
        .pods
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.clone(), i))
        .collect();
    for h in held.values() {
        let Some(Netns::Named(ns)) = where_is(&world.fabric, h.vf) else {
            panic!("VF of {} lost", h.cid)
        };
        world.del(&h.cid, pod_of[&ns], Some(h.vf));
    }
    assert!(rt.block_on(client.attachments()).unwrap().is_empty());
    println!(
        "jobnetd starts={} total={:?}",
        world.daemon.lock().unwrap().starts,
        started.elapsed()
    );
}

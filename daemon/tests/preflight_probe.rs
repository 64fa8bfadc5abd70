//! The preflight's probe on real kernel objects: three pod namespaces on one
//! bridge (in a hub namespace), probed from the first with the very
//! function jobnetd runs per rank and rail. Each fault is made by hand and
//! must be caught and named; the same probe passes before and after it.
//! Needs root (namespaces, raw and packet sockets).

use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobnet_api::PreflightCheck;
use jobnet_daemon::jobcheck::probe::{self, ForeignPod, Peer, RailOutcome, RailProbe};
use jobnet_netlink::Netns as KernelNetns;
use jobnet_tests::fabric::ip::Netns;
use jobnet_tests::harness::{ip_batch, wait_oper_up, Pod};
use jobnet_tests::skip;

/// Three pods with one interface each on a bridge; removed on drop.
struct Link3 {
    pods: Vec<Pod>,
    // Last: the bridge goes with its namespace after the pods' ends.
    hub: Pod,
}

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 1 + i as u8)
}

impl Link3 {
    fn new() -> Self {
        let hub = Pod::new("pfh");
        let pods: Vec<Pod> = (0..3).map(|_| Pod::new("pfp")).collect();
        ip_batch(
            &hub.ns(),
            &[
                "link add br0 type bridge",
                "link set br0 type bridge forward_delay 0",
                "link set br0 up",
            ],
        );
        for (i, p) in pods.iter().enumerate() {
            let add = format!("link add h{i} type veth peer name net1 netns {}", p.name);
            let master = format!("link set h{i} master br0 up");
            ip_batch(&hub.ns(), &[&add, &master]);
            let a = format!("addr add {}/24 dev net1", addr(i));
            ip_batch(&p.ns(), &[&a, "link set net1 up", "link set lo up"]);
            wait_oper_up(&p.ns(), &["net1"]);
        }
        Self { pods, hub }
    }

    fn ns(&self, i: usize) -> Netns {
        self.pods[i].ns()
    }

    /// The probe of pod 0 (rank 0) towards pods 1 and 2 (ranks 1 and 2).
    fn probe(&self, foreign: Option<ForeignPod>) -> RailOutcome {
        let spec = RailProbe {
            rank: 0,
            rail: 0,
            ifname: "net1".into(),
            addr: addr(0),
            job_mtu: Some(1500),
            peers: (1..3)
                .map(|i| Peer {
                    rank: i as u32,
                    addr: addr(i),
                })
                .collect(),
            foreign,
            samples: 4,
            deadline: Instant::now() + Duration::from_secs(8),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let ns = KernelNetns::open(self.pods[0].path()).expect("open pod netns");
        ns.run(|| probe::run(&spec)).expect("enter pod netns")
    }
}

/// The failures of an outcome as `check to_rank` pairs, for assertions.
fn failed(o: &RailOutcome) -> Vec<(PreflightCheck, Option<u32>)> {
    o.findings.iter().map(|f| (f.check, f.to_rank)).collect()
}

fn assert_clean(o: &RailOutcome, when: &str) {
    assert!(o.findings.is_empty(), "{when}: {:?}", o.findings);
    assert_eq!(o.rtt.len(), 2, "{when}: {:?}", o.rtt);
    assert!(o.rtt.iter().all(|r| r.received > 0), "{when}: {:?}", o.rtt);
    assert_eq!(o.mtu, Some(1500));
}

fn root(test: &str) -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        skip(&format!("preflight_probe::{test}"), "needs root");
        return false;
    }
    true
}

#[test]
fn a_healthy_link_passes_and_each_fault_is_named() {
    if !root("a_healthy_link_passes_and_each_fault_is_named") {
        return;
    }
    let l = Link3::new();
    let o = l.probe(None);
    assert_clean(&o, "healthy");

    // An MTU lowered on rank 2: its big probe is dropped on the way in.
    ip_batch(&l.ns(2), &["link set net1 mtu 1400"]);
    let o = l.probe(None);
    assert_eq!(failed(&o), vec![(PreflightCheck::Mtu, Some(2))], "{o:?}");
    ip_batch(&l.ns(2), &["link set net1 mtu 1500"]);
    assert_clean(&l.probe(None), "MTU restored");

    // Rank 1 also takes rank 0's address: it answers rank 0's ARP probe
    // (and keeps its echo replies to that address to itself).
    let dup = format!("addr add {}/24 dev net1", addr(0));
    ip_batch(&l.ns(1), &[&dup]);
    let o = l.probe(None);
    let theirs = jobnet_tests::harness::links_by_name(&l.ns(1))["net1"]
        .address
        .clone();
    let f = failed(&o);
    assert_eq!(f[0], (PreflightCheck::DuplicateAddress, None), "{o:?}");
    assert!(
        f[1..].is_empty() || f[1..] == [(PreflightCheck::Reachability, Some(1))],
        "{o:?}"
    );
    assert_eq!(o.findings[0].other_mac, theirs, "{o:?}");
    let undo = format!("addr del {}/24 dev net1", addr(0));
    ip_batch(&l.ns(1), &[&undo]);

    // A pod that should be isolated (here: pod 2 taken as another job's)
    // answers on the link.
    let o = l.probe(Some(ForeignPod {
        job: "other".into(),
        addr: addr(2),
    }));
    assert!(o.isolation_probed);
    assert_eq!(failed(&o), vec![(PreflightCheck::Isolation, None)], "{o:?}");
    // An address nobody holds: the isolation probe hears nothing.
    let o = l.probe(Some(ForeignPod {
        job: "other".into(),
        addr: Ipv4Addr::new(10, 77, 0, 200),
    }));
    assert_clean(&o, "isolated");

    // Rank 0's own interface down: named once, every pair not probed.
    ip_batch(&l.ns(0), &["link set net1 down"]);
    let o = l.probe(None);
    assert_eq!(
        failed(&o),
        vec![
            (PreflightCheck::Link, None),
            (PreflightCheck::Reachability, Some(1)),
            (PreflightCheck::Reachability, Some(2)),
        ],
        "{o:?}"
    );
    ip_batch(&l.ns(0), &["link set net1 up"]);
    wait_oper_up(&l.ns(0), &["net1"]);

    // Rank 2 unplugged on the bridge side: only that pair fails.
    ip_batch(&l.hub.ns(), &["link set h2 down"]);
    let o = l.probe(None);
    assert_eq!(
        failed(&o),
        vec![(PreflightCheck::Reachability, Some(2))],
        "{o:?}"
    );
    assert!(o.findings[0].detail.contains("no echo reply"), "{o:?}");
}

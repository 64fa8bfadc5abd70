//! Job readiness on the simulated fabric: `jobnetctl job wait` and
//! `jobnetctl job preflight` against real jobnetds, one per node netns,
//! sharing a real etcd in the fabric's management netns (as
//! `cluster_etcd.rs` runs them), with pods attached by the real plugin on
//! two rails (`rails: "all"`: `net1`, `net1r1`).
//!
//! - a healthy job passes; `job wait` returns once the last rank attaches
//!   (waiters on the attaching node and on another) and times out naming a
//!   rank that never comes;
//! - each fault made by hand is caught and named, and the same preflight
//!   passes before it is made and after it is undone: one rank's interface
//!   down, an MTU lowered on one rank, a rank's address taken by another
//!   rank, another job's representor put on this job's bridge (isolation
//!   turned off);
//! - one node on the embedded store: the same calls, all local;
//! - `bench_preflight_64x2_on_4_nodes` (ignored; `scripts/bench.sh
//!   preflight`): 64 ranks x 2 rails on 4 nodes.
//!
//! Every jobnetctl run is bounded by `timeout(1)`; fabric, etcd, jobnetds,
//! pods and the plugin's device-info files go with the world's Drop, also
//! when a test panics. The tests take turns: each builds a whole cluster.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jobnet_hw::PciAddr;
use jobnet_tests::etcd::{EtcdCluster, EtcdSpec, ETCD_BIN};
use jobnet_tests::fabric::{Fabric, FabricSpec, FabricVf};
use jobnet_tests::harness::{
    binaries, ip_batch, master_of, remove_default_devinfo, unique, CniCall, Daemon, Pod,
};
use jobnet_tests::skip;
use serde_json::{json, Value};

/// The pod interface the runtime asks for; rail 1 is `net1r1`.
const IFNAME: &str = "net1";
/// Longest a jobnetctl run may take before `timeout(1)` kills it.
const CTL_LIMIT: Duration = Duration::from_secs(120);

/// One cluster at a time: each test builds fabric, etcd and daemons.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// True when the test can run here; reports a skip otherwise.
fn can_run(test: &str, etcd: bool) -> bool {
    let name = format!("preflight::{test}");
    if !nix::unistd::Uid::effective().is_root() {
        skip(&name, "needs root (network namespaces)");
        return false;
    }
    if etcd && !std::path::Path::new(ETCD_BIN).exists() {
        skip(&name, &format!("{ETCD_BIN} is not installed"));
        return false;
    }
    true
}

/// One attached pod: a rank of a job on a node.
struct Rank {
    job: String,
    rank: u32,
    /// Its VFs, by rail.
    vfs: Vec<FabricVf>,
    /// Its addresses, by rail.
    addrs: Vec<IpAddr>,
    pod: Pod,
}

/// The store the daemons share.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Etcd,
    Embedded,
}

/// A fabric, its etcd and one jobnetd per node. Fields drop in order:
/// pods, daemons, plugin state, etcd, fabric.
struct World {
    network: String,
    ranks: Vec<Rank>,
    daemons: Vec<Daemon>,
    states: Vec<tempfile::TempDir>,
    _etcd: Option<EtcdCluster>,
    fabric: Fabric,
}

impl Drop for World {
    fn drop(&mut self) {
        remove_default_devinfo(&self.network);
    }
}

/// The `[store]` and `[[pools]]` sections of node `n`'s jobnetd.
fn daemon_config(fabric: &Fabric, n: usize, endpoints: Option<&[String]>) -> String {
    let node = fabric.node(n).expect("node");
    let pfs: Vec<String> = node.pfs.iter().map(|p| format!("\"{}\"", p.pci)).collect();
    let store = match endpoints {
        Some(eps) => {
            let eps: Vec<String> = eps.iter().map(|e| format!("\"{e}\"")).collect();
            format!(
                "[store]\nbackend = \"etcd\"\nendpoints = [{}]\ntimeout_ms = 2000\n\n",
                eps.join(", ")
            )
        }
        None => String::new(),
    };
    format!(
        "{store}[[pools]]\nname = \"rdma\"\ncidrs = [\"198.18.0.0/16\"]\n\
         subnet_prefix = {{ v4 = 24 }}\nrails = {}\npfs = [{}]\n\
         isolation = {{ mode = \"vxlan\", first = 1000, last = 1999 }}\n",
        node.pfs.len(),
        pfs.join(", ")
    )
}

impl World {
    /// `nodes` nodes with two rails of `vfs` VFs each and a jobnetd per node.
    fn start(nodes: usize, vfs: usize, backend: Backend) -> Self {
        binaries();
        let fabric = Fabric::build(FabricSpec {
            nodes,
            nics_per_node: 2,
            vfs_per_nic: vfs,
            switchdev: true,
            mgmt: backend == Backend::Etcd,
            ..Default::default()
        })
        .expect("fabric");
        let etcd = (backend == Backend::Etcd).then(|| {
            let mgmt = fabric.mgmt().expect("mgmt network").clone();
            EtcdCluster::start(EtcdSpec {
                members: 1,
                host: IpAddr::V4(mgmt.address),
                netns: Some(mgmt.netns),
                tls: None,
            })
            .expect("etcd in the mgmt netns")
        });
        let endpoints = etcd.as_ref().map(EtcdCluster::endpoints);
        let daemons = (0..nodes)
            .map(|n| {
                let node = fabric.node(n).expect("node");
                Daemon::start_in(
                    node.netns.as_deref(),
                    &format!("node{n}"),
                    &node.sysfs_root,
                    &daemon_config(&fabric, n, endpoints.as_deref()),
                )
            })
            .collect();
        let states = (0..nodes)
            .map(|_| tempfile::tempdir().expect("plugin state dir"))
            .collect();
        Self {
            network: unique("jpf"),
            ranks: Vec::new(),
            daemons,
            states,
            _etcd: etcd,
            fabric,
        }
    }

    /// ADD of `job` rank `rank` into a fresh pod on `node`; must succeed.
    fn add(&mut self, node: usize, job: &str, rank: u32) -> &Rank {
        let n = self.fabric.node(node).expect("node");
        let pod = Pod::new("jpp");
        let cid = unique("cpf");
        let conf = json!({
            "cniVersion": "1.1.0", "name": self.network, "type": "jobnet",
            "rails": "all",
            "daemonSocket": self.daemons[node].socket,
            "args": {"cni": {"job": job, "rank": rank}},
            "runtimeConfig": {"CNIDeviceInfoFile":
                self.states[node].path().join(format!("devinfo-{cid}.json"))},
        });
        let run = CniCall::new("ADD", &cid, &pod.path(), IFNAME)
            .cni_path()
            .dirs(&n.sysfs_root, self.states[node].path())
            .run(&n.netns_path(), &conf);
        assert!(
            run.ok,
            "ADD {job}/{rank} on node{node}: {}{}\n{}",
            run.stdout,
            run.stderr,
            self.daemons[node].log()
        );
        let result = run.json();
        let mut rails: Vec<(FabricVf, IpAddr)> = Vec::new();
        for (i, itf) in result["interfaces"]
            .as_array()
            .expect("interfaces")
            .iter()
            .enumerate()
        {
            let Some(pci) = itf["pciID"].as_str() else {
                continue;
            };
            let pci: PciAddr = pci.parse().expect("pciID");
            let vf = self.fabric.vf_by_pci(node, pci).expect("a VF of the node");
            self.fabric.sync_vf_sysfs(vf.id).expect("sync sysfs");
            let addr = result["ips"]
                .as_array()
                .expect("ips")
                .iter()
                .find(|ip| ip["interface"].as_u64() == Some(i as u64))
                .and_then(|ip| ip["address"].as_str())
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse().ok())
                .expect("an address per interface");
            rails.push((vf.clone(), addr));
        }
        rails.sort_by_key(|(vf, _)| vf.id.nic);
        assert_eq!(rails.len(), 2, "one VF per rail: {result}");
        let (vfs, addrs) = rails.into_iter().unzip();
        self.ranks.push(Rank {
            job: job.to_owned(),
            rank,
            vfs,
            addrs,
            pod,
        });
        self.ranks.last().expect("just pushed")
    }

    fn rank(&self, job: &str, rank: u32) -> &Rank {
        self.ranks
            .iter()
            .find(|r| r.job == job && r.rank == rank)
            .expect("attached rank")
    }

    /// A jobnetctl command against node `node`'s jobnetd, bounded by `timeout(1)`.
    fn ctl_command(&self, node: usize, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["--kill-after=5", &format!("{}", CTL_LIMIT.as_secs())])
            .arg(&binaries().jobnetctl)
            .arg("--socket")
            .arg(&self.daemons[node].socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs jobnetctl on node `node`: (exit code, stdout).
    fn ctl(&self, node: usize, args: &[&str]) -> (i32, String) {
        let out = self
            .ctl_command(node, args)
            .output()
            .expect("run jobnetctl");
        finished(out, args, &self.daemons[node])
    }

    /// `job preflight --json` of `job` asked on `node`: (exit code, report).
    fn preflight(&self, node: usize, job: &str) -> (i32, Value) {
        let (code, out) = self.ctl(
            node,
            &["--json", "job", "preflight", job, "--timeout", "60s"],
        );
        let report: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("preflight printed no JSON ({e}): {out}"));
        (code, report)
    }

    /// Asserts a preflight of `job` passes, and returns its report.
    fn passes(&self, node: usize, job: &str, when: &str) -> Value {
        let (code, r) = self.preflight(node, job);
        assert_eq!(
            code,
            0,
            "{when}: preflight of {job} must pass: {}",
            lines(&r).join("\n")
        );
        assert_eq!(r["ok"], true, "{when}: {r}");
        r
    }

    /// Asserts a preflight of `job` fails; returns its failure lines.
    fn fails(&self, node: usize, job: &str, when: &str) -> Vec<String> {
        let (code, r) = self.preflight(node, job);
        assert_eq!(code, 1, "{when}: preflight of {job} must fail: {r}");
        assert_eq!(r["ok"], false, "{when}: {r}");
        lines(&r)
    }
}

/// A finished jobnetctl run as (exit code, stdout); a kill by `timeout(1)` fails the test.
fn finished(out: Output, args: &[&str], daemon: &Daemon) -> (i32, String) {
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        code != 124 && code != 137,
        "jobnetctl {args:?} hung and was killed: {stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    (code, stdout)
}

/// A report's failures as the table prints them.
fn lines(report: &Value) -> Vec<String> {
    report["failures"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|f| {
                    let pair = match f["to_rank"].as_u64() {
                        Some(to) => format!("rank {} -> rank {to}", f["from_rank"]),
                        None => format!("rank {}", f["from_rank"]),
                    };
                    format!(
                        "rail {}: {pair}: {}: {}",
                        f["rail"],
                        f["check"].as_str().unwrap_or("?"),
                        f["detail"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// True when some line starts with `prefix`.
fn names(lines: &[String], prefix: &str) -> bool {
    lines.iter().any(|l| l.starts_with(prefix))
}

/// The ranks named in failure lines (as `from` or `to`).
fn ranks_named(lines: &[String]) -> BTreeSet<u32> {
    lines
        .iter()
        .flat_map(|l| {
            l.split(": ")
                .nth(1)
                .unwrap_or("")
                .split(" -> ")
                .filter_map(|r| r.strip_prefix("rank ")?.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Four ranks of job `pf` on two nodes (rank r on node r % 2) and one pod
/// of job `other` on node 0, the isolation probe's target there.
fn four_ranks(w: &mut World) {
    w.add(0, "other", 0);
    for r in 0..4 {
        w.add(r as usize % 2, "pf", r);
    }
}

#[test]
fn healthy_job_passes_and_wait_returns_when_the_last_rank_attaches() {
    if !can_run(
        "healthy_job_passes_and_wait_returns_when_the_last_rank_attaches",
        true,
    ) {
        return;
    }
    let _turn = turn();
    let mut w = World::start(2, 3, Backend::Etcd);
    w.add(0, "other", 0);
    for r in 0..3 {
        w.add(r as usize % 2, "pf", r);
    }
    // One waiter where the last rank attaches (woken by the commit), one
    // on the other node (which only sees it in the store).
    let args = [
        "--json",
        "job",
        "wait",
        "pf",
        "--ranks",
        "4",
        "--timeout",
        "60s",
    ];
    let waiters: Vec<Child> = [1usize, 0]
        .iter()
        .map(|n| w.ctl_command(*n, &args).spawn().expect("spawn job wait"))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let mut waiters: Vec<Child> = waiters
        .into_iter()
        .map(|mut c| {
            assert!(
                c.try_wait().expect("waiter state").is_none(),
                "job wait returned before rank 3 attached"
            );
            c
        })
        .collect();
    w.add(1, "pf", 3);
    let attached = Instant::now();
    for (c, node) in waiters.drain(..).zip([1usize, 0]) {
        let out = c.wait_with_output().expect("job wait output");
        let (code, stdout) = finished(out, &args, &w.daemons[node]);
        let late = attached.elapsed();
        let v: Value = serde_json::from_str(&stdout).expect("wait JSON");
        assert_eq!(code, 0, "node{node}: {stdout}");
        assert_eq!(v["ready"], true, "{v}");
        assert_eq!(v["attached"], 4, "{v}");
        assert_eq!(v["rails"], json!([0, 1]), "{v}");
        eprintln!("job wait on node{node} returned {late:?} after the last ADD");
        assert!(
            late < Duration::from_secs(5),
            "node{node} answered {late:?} late"
        );
    }

    // A rank that never comes: exit 1 at the timeout, naming it and its rails.
    let started = Instant::now();
    let (code, out) = w.ctl(0, &["job", "wait", "pf", "--ranks", "5", "--timeout", "2s"]);
    assert_eq!(code, 1, "{out}");
    assert!(started.elapsed() >= Duration::from_secs(2), "{out}");
    assert!(out.contains("1 of 5 ranks missing"), "{out}");
    assert!(out.contains("rank 4: rail(s) 0,1: not attached"), "{out}");

    let r = w.passes(1, "pf", "healthy");
    assert_eq!(r["pairs"], 4 * 3 * 2, "{r}");
    assert_eq!(r["ranks"], 4, "{r}");
    assert_eq!(r["rtt"].as_array().map(Vec::len), Some(24), "{r}");
    assert!(r["rtt"]
        .as_array()
        .is_some_and(|v| v.iter().all(|p| p["received"].as_u64() > Some(0))));
    assert!(r["seconds"].as_f64().is_some_and(|s| s < 30.0), "{r}");
    // Node 0 has job other's pod to probe isolation against; node 1 none.
    let skipped = r["skipped"].to_string();
    assert!(
        skipped.contains("node node1") && !skipped.contains("node node0"),
        "{r}"
    );
    let (code, table) = w.ctl(0, &["job", "preflight", "pf"]);
    assert_eq!(code, 0, "{table}");
    assert!(
        table.contains("preflight PASSED: 4 ranks, rail(s) 0,1, 24 pairs"),
        "{table}"
    );
}

/// One fault test on job `pf` ([`four_ranks`]): its preflight asked on
/// `node` passes; `make` breaks something and returns how to undo it; the
/// preflight must then fail, `check` reads its lines; undone, it passes
/// again. So a fault that is not made, or not caught, fails the test.
fn fault_case(
    test: &str,
    node: usize,
    make: impl FnOnce(&World) -> Box<dyn FnOnce(&World)>,
    check: impl FnOnce(&World, &[String]),
) {
    if !can_run(test, true) {
        return;
    }
    let _turn = turn();
    let mut w = World::start(2, 3, Backend::Etcd);
    four_ranks(&mut w);
    w.passes(node, "pf", "before the fault");
    let undo = make(&w);
    let f = w.fails(node, "pf", test);
    check(&w, &f);
    undo(&w);
    w.passes(node, "pf", "after undoing the fault");
}

#[test]
fn an_interface_down_is_named() {
    let make = |w: &World| -> Box<dyn FnOnce(&World)> {
        let ns = w.rank("pf", 1).pod.ns();
        ip_batch(&ns, &["link set net1 down"]);
        Box::new(move |_| ip_batch(&ns, &["link set net1 up"]))
    };
    fault_case("an_interface_down_is_named", 0, make, |_, f| {
        assert!(names(f, "rail 0: rank 1: link: net1 is down"), "{f:#?}");
        for peer in [0, 2, 3] {
            let pair = format!("rail 0: rank {peer} -> rank 1: reachability");
            assert!(names(f, &pair), "{f:#?}");
        }
        let only = |l: &String| l.starts_with("rail 0:") && l.contains("rank 1");
        assert!(f.iter().all(only), "only rank 1 on rail 0 fails: {f:#?}");
    });
}

#[test]
fn an_mtu_mismatch_is_named() {
    let make = |w: &World| -> Box<dyn FnOnce(&World)> {
        let ns = w.rank("pf", 2).pod.ns();
        ip_batch(&ns, &["link set net1r1 mtu 1400"]);
        Box::new(move |_| ip_batch(&ns, &["link set net1r1 mtu 1500"]))
    };
    fault_case("an_mtu_mismatch_is_named", 1, make, |_, f| {
        assert!(names(f, "rail 1: rank 2: mtu:"), "{f:#?}");
        for peer in [0, 1, 3] {
            let pair = format!("rail 1: rank {peer} -> rank 2: mtu:");
            assert!(names(f, &pair), "{f:#?}");
        }
        assert_eq!(ranks_named(f), BTreeSet::from([0, 1, 2, 3]), "{f:#?}");
        // "rail 1: rank 2: mtu: ..." or "rail 1: rank N -> rank 2: mtu: ...".
        let only = |l: &String| l.starts_with("rail 1:") && l.contains("rank 2: mtu:");
        assert!(f.iter().all(only), "only rank 2's MTU on rail 1: {f:#?}");
    });
}

#[test]
fn a_duplicate_address_is_named() {
    // Rank 3 (node 1) takes rank 2's (node 0) rail-0 address as well.
    let make = |w: &World| -> Box<dyn FnOnce(&World)> {
        let taken = w.rank("pf", 2).addrs[0];
        let ns = w.rank("pf", 3).pod.ns();
        ip_batch(&ns, &[&format!("addr add {taken}/24 dev net1")]);
        Box::new(move |_| ip_batch(&ns, &[&format!("addr del {taken}/24 dev net1")]))
    };
    fault_case("a_duplicate_address_is_named", 0, make, |w, f| {
        let taken = w.rank("pf", 2).addrs[0];
        let want = format!("rail 0: rank 2: duplicate-address: {taken} is also answered by");
        let dup = f.iter().find(|l| l.starts_with(&want));
        assert!(
            dup.is_some_and(|l| l.ends_with("(rank 3, rail 0)")),
            "{f:#?}"
        );
    });
}

#[test]
fn a_cross_job_leak_is_named() {
    // Isolation off by hand: job other's rail-0 representor on node 0 joins
    // job pf's rail-0 bridge there.
    let make = |w: &World| -> Box<dyn FnOnce(&World)> {
        let node_ns = w.fabric.node(0).expect("node").ip_netns();
        let rep = |job: &str, rank: u32| {
            w.rank(job, rank).vfs[0]
                .representor
                .clone()
                .expect("switchdev VFs have representors")
        };
        let pf_bridge = master_of(&node_ns, &rep("pf", 0)).expect("pf rail 0 bridge");
        let other_rep = rep("other", 0);
        let other_bridge = master_of(&node_ns, &other_rep).expect("other rail 0 bridge");
        assert_ne!(pf_bridge, other_bridge);
        ip_batch(
            &node_ns,
            &[&format!("link set {other_rep} master {pf_bridge}")],
        );
        let undo = format!("link set {other_rep} master {other_bridge}");
        Box::new(move |_| ip_batch(&node_ns, &[&undo]))
    };
    fault_case("a_cross_job_leak_is_named", 1, make, |w, f| {
        let other_addr = w.rank("other", 0).addrs[0];
        for local in [0, 2] {
            let want = format!("rail 0: rank {local}: isolation: {other_addr} of job \"other\"");
            assert!(names(f, &want), "{f:#?}");
        }
        let only = |l: &String| l.contains(": isolation: ");
        assert!(f.iter().all(only), "only isolation fails: {f:#?}");
    });
}

#[test]
fn one_node_on_the_embedded_store() {
    if !can_run("one_node_on_the_embedded_store", false) {
        return;
    }
    let _turn = turn();
    let mut w = World::start(1, 3, Backend::Embedded);
    w.add(0, "other", 0);
    w.add(0, "solo", 0);
    w.add(0, "solo", 1);
    let (code, out) = w.ctl(
        0,
        &["job", "wait", "solo", "--ranks", "2", "--timeout", "10s"],
    );
    assert_eq!(code, 0, "{out}");
    let r = w.passes(0, "solo", "one node");
    // Two ranks, each probing the other, on two rails.
    assert_eq!(r["pairs"], 4, "{r}");
    assert_eq!(r["nodes"], json!(["node0"]), "{r}");
    ip_batch(&w.rank("solo", 1).pod.ns(), &["link set net1 down"]);
    let f = w.fails(0, "solo", "rank 1 down");
    assert!(names(&f, "rail 0: rank 1: link: net1 is down"), "{f:#?}");
}

/// The host kernel's neighbour table, raised for the benchmark and put
/// back on drop. Every simulated node shares the one kernel, whose table
/// (1024 entries by default) cannot hold 64 ranks x 2 rails x 63 peers;
/// a real node holds its own ranks' only.
struct NeighbourRoom {
    old: Vec<(String, String)>,
}

impl NeighbourRoom {
    fn raise() -> Self {
        let mut old = Vec::new();
        for (knob, want) in [
            ("gc_thresh1", 8192),
            ("gc_thresh2", 16384),
            ("gc_thresh3", 32768),
        ] {
            let path = format!("/proc/sys/net/ipv4/neigh/default/{knob}");
            let was = std::fs::read_to_string(&path).expect("read neighbour limit");
            if was.trim().parse::<u64>().is_ok_and(|v| v < want) {
                std::fs::write(&path, want.to_string()).expect("raise neighbour limit");
                old.push((path, was));
            }
        }
        Self { old }
    }
}

impl Drop for NeighbourRoom {
    fn drop(&mut self) {
        for (path, was) in self.old.iter().rev() {
            let _ = std::fs::write(path, was.trim());
        }
    }
}

/// Ranks and nodes of the benchmark.
const BENCH_RANKS: u32 = 64;
const BENCH_NODES: usize = 4;

#[test]
#[ignore = "benchmark: scripts/bench.sh preflight"]
fn bench_preflight_64x2_on_4_nodes() {
    if !can_run("bench_preflight_64x2_on_4_nodes", true) {
        return;
    }
    let _turn = turn();
    let _room = NeighbourRoom::raise();
    let per_node = (BENCH_RANKS as usize).div_ceil(BENCH_NODES);
    let mut w = World::start(BENCH_NODES, per_node, Backend::Etcd);
    let started = Instant::now();
    for r in 0..BENCH_RANKS {
        w.add(r as usize % BENCH_NODES, "bench", r);
    }
    eprintln!(
        "attached {BENCH_RANKS} ranks x 2 rails in {:?}",
        started.elapsed()
    );
    let (code, out) = w.ctl(
        0,
        &["job", "wait", "bench", "--ranks", "64", "--timeout", "30s"],
    );
    assert_eq!(code, 0, "{out}");
    let mut walls = Vec::new();
    for run in 0..3 {
        let t = Instant::now();
        let (code, r) = w.preflight(run % BENCH_NODES, "bench");
        let wall = t.elapsed();
        assert_eq!(code, 0, "{}", lines(&r).join("\n"));
        assert_eq!(r["pairs"], 64 * 63 * 2, "{r}");
        let rails = r["rail_rtt"].to_string();
        eprintln!(
            "preflight run {run}: {:.2} s wall (jobnetctl), {} s in jobnetd, {} pairs; rail round trips {rails}",
            wall.as_secs_f64(),
            r["seconds"],
            r["pairs"]
        );
        walls.push(wall);
    }
    walls.sort();
    let median = walls[walls.len() / 2];
    println!(
        "preflight 64 ranks x 2 rails on 4 nodes: median {:.2} s wall over {} runs (target <= 10 s)",
        median.as_secs_f64(),
        walls.len()
    );
    assert!(
        median <= Duration::from_secs(10),
        "median {median:?} over the 10 s target"
    );
}

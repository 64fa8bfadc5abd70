//! One job brought up across a simulated cluster on a real etcd, against the
//! same load serialized behind one cluster-wide lock (what whereabouts does
//! with its single Kubernetes lease), in the same run.
//!
//! Per run: a fresh etcd cluster on loopback (`--members`, default 3; killed
//! when the run ends, also on failure), then `--nodes` simulated nodes
//! (default 128) in this process, each an [`Engine`] named `node-NNN` with
//! its own [`EtcdStore`] (its own etcd client and connections), over one fake
//! sysfs whose PFs (one per rail) have one VF per local rank. The job has
//! `nodes × --ranks-per-node` ranks (default 128 × 8 = 1,024) and a pool of
//! `--rails` rails (default 8) with `--isolation vxlan` (default: one VNI per
//! rail) or `vf-vlan` (one VLAN per job).
//!
//! `--mode ipam` (default): every rank makes one attachment per rail
//! (`net1`..`net8`, `RailSelection::One(rail)`): `Ipam::reserve` then
//! `Ipam::commit` on the node's allocator, with the two records the daemon
//! writes alongside (the VF owner, create-only, and the attachment details),
//! so the store sees the daemon's transactions. 8,192 attachments.
//! `--mode engine`: the same attachments through `Engine::reserve` (the
//! rail's VF as `deviceID`) and `Engine::commit`: the daemon's whole path,
//! its own reads included. Its commit joins `vxlan` VFs to job bridges (kernel
//! devices), so use it with `--isolation vf-vlan`.
//! `--mode import`: one `rails: all` attachment per rank through
//! `Engine::import_committed` (same transactions, no device checks). 1,024
//! attachments of 8 addresses each.
//!
//! Each node runs `--per-node` requests at a time (default 4); all nodes run
//! at once. Latency is one attachment's reserve+commit (import: the import).
//! Then the baseline: fresh nodes under another key prefix, the same load,
//! but every reserve+commit holds one etcd lock (etcd's Lock API, a lease per
//! in-flight slot), until `--baseline-max` attachments (default 1,024) or
//! `--baseline-secs` (default 60) have passed, whichever comes first.
//!
//! Store calls are counted by a wrapping store; etcd's own gRPC counters,
//! WAL fsyncs and CPU come from each member's `/metrics`. Correctness is read
//! back from etcd by every node: every rank holds its rank-derived address on
//! every rail, no address twice, every node reads the same job identity
//! (subnets and isolation IDs) and every attachment carries it. Any error or mismatch
//! fails the bench (exit 1); missed targets do not.
//!
//! ```sh
//! cargo build --release -p jobnet-daemon --example cluster_bench
//! target/release/examples/cluster_bench [--runs 3] [--nodes 128] [--ranks-per-node 8] \
//!     [--rails 8] [--per-node 4] [--mode ipam|engine|import] [--isolation vxlan|vf-vlan] \
//!     [--baseline-max 1024] \
//!     [--baseline-secs 60] [--members 3] [--timeout-ms 2000] [--probe-secs 0] \
//!     [--linearizable-views on]
//! ```
//!
//! The read-back checks always read linearizably (a follower may lag the
//! writes by a moment). `--linearizable-views on` makes the load's relaxed
//! (serializable) reads linearizable too, to measure what they cost or to get
//! past a path that reads its own write through a relaxed view.
//!
//! `--probe-secs N` (first run only) also measures etcd's raw rate for
//! linearizable gets, serializable gets and create-if-absent txns with the
//! same clients and concurrency, to price each kind of round trip.

#[path = "shared/cpu.rs"]
mod cpu;

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu::cpu_time;
use jobnet_api::{self as api, ReserveRequest, VfAssignment};
use jobnet_daemon::config::Config;
use jobnet_daemon::engine::Engine;
use jobnet_daemon::metrics::Metrics;
use jobnet_hw::PciAddr;
use jobnet_ipam::store::{Compare, Op, RangeFuture, StoreFuture, Txn, TxnOutcome, Versioned};
use jobnet_ipam::{EtcdStore, JobNetwork, RailSelection, RecordWrite, Store, SystemClock};
use jobnet_tests::etcd::{EtcdCluster, EtcdSpec};
use jobnet_tests::fake_sysfs::FakeSysfs;

const POOL: &str = "rdma";
const JOB: &str = "train";
const POOL_CIDR: &str = "10.0.0.0/8";
const VNI_FIRST: u32 = 1000;
const VNI_LAST: u32 = 1999;
/// Bound of one whole attachment (the store bounds each call on its own).
const OP_DEADLINE: Duration = Duration::from_secs(60);
/// Bound of setting up or tearing down one node's clients.
const SETUP_DEADLINE: Duration = Duration::from_secs(30);
/// Bound of one `/metrics` scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Name of the baseline's cluster-wide lock.
const LOCK_NAME: &str = "/jobnet-bench-lock/allocate";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Engine,
    Import,
    Ipam,
}

impl Mode {
    /// Whether every attachment is on one rail (else on all of them).
    fn one_rail(self) -> bool {
        self != Mode::Import
    }
}

#[derive(Debug, Clone)]
struct Args {
    runs: usize,
    nodes: usize,
    ranks_per_node: usize,
    rails: usize,
    per_node: usize,
    mode: Mode,
    baseline_max: usize,
    baseline_secs: u64,
    members: usize,
    timeout_ms: u64,
    probe_secs: u64,
    linearizable_views: bool,
    /// Pool isolation mode: `vxlan` (one VNI per rail) or `vf-vlan` (one per job).
    isolation: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        runs: 1,
        nodes: 128,
        ranks_per_node: 8,
        rails: 8,
        per_node: 4,
        mode: Mode::Ipam,
        baseline_max: 1024,
        baseline_secs: 60,
        members: 3,
        timeout_ms: 2000,
        probe_secs: 0,
        linearizable_views: false,
        isolation: "vxlan".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || val.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--runs" => a.runs = num()?.max(1),
            "--nodes" => a.nodes = num()?.clamp(1, 999),
            "--ranks-per-node" => a.ranks_per_node = num()?.clamp(1, 64),
            "--rails" => a.rails = num()?.clamp(1, 16),
            "--per-node" => a.per_node = num()?.max(1),
            "--mode" => {
                a.mode = match val.as_str() {
                    "engine" => Mode::Engine,
                    "import" => Mode::Import,
                    "ipam" => Mode::Ipam,
                    _ => return Err(format!("--mode: {val:?} is not engine, import or ipam")),
                }
            }
            "--baseline-max" => a.baseline_max = num()?,
            "--baseline-secs" => a.baseline_secs = num()? as u64,
            "--members" => a.members = num()?.max(1),
            "--timeout-ms" => a.timeout_ms = (num()? as u64).clamp(50, 60_000),
            "--probe-secs" => a.probe_secs = num()? as u64,
            "--linearizable-views" => a.linearizable_views = val == "on",
            "--isolation" => match val.as_str() {
                "vxlan" | "vf-vlan" => a.isolation = val.clone(),
                _ => return Err(format!("--isolation: {val:?} is not vxlan or vf-vlan")),
            },
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

impl Args {
    fn ranks(&self) -> usize {
        self.nodes * self.ranks_per_node
    }

    /// Attachments of the whole job in this mode.
    fn attachments(&self) -> usize {
        match self.mode {
            Mode::Engine | Mode::Ipam => self.ranks() * self.rails,
            Mode::Import => self.ranks(),
        }
    }

    /// Smallest IPv4 job subnet holding every rank after the network address and gateway.
    fn subnet_prefix(&self) -> u8 {
        let need = self.ranks() as u64 + 3;
        let bits = 64 - (need - 1).leading_zeros();
        u8::try_from(32 - bits.min(24)).unwrap_or(8)
    }
}

// ---------------------------------------------------------------- store calls

const KINDS: [&str; 8] = [
    "get",
    "range",
    "txn",
    "count",
    "put_alive",
    "get_relaxed",
    "range_relaxed",
    "count_relaxed",
];

/// Store calls of every simulated node, by kind, with their summed latency.
#[derive(Default)]
struct Calls {
    n: [AtomicU64; 8],
    ns: [AtomicU64; 8],
    conflicts: AtomicU64,
    /// Relaxed reads go linearizable: the checks must see every committed
    /// write, whichever member answers.
    strict: AtomicBool,
}

impl Calls {
    fn note(&self, kind: usize, started: Instant) {
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.n[kind].fetch_add(1, Ordering::Relaxed);
        self.ns[kind].fetch_add(ns, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CallSnap {
        CallSnap {
            n: std::array::from_fn(|i| self.n[i].load(Ordering::Relaxed)),
            ns: std::array::from_fn(|i| self.ns[i].load(Ordering::Relaxed)),
            conflicts: self.conflicts.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct CallSnap {
    n: [u64; 8],
    ns: [u64; 8],
    conflicts: u64,
}

impl CallSnap {
    fn since(&self, before: &CallSnap) -> CallSnap {
        CallSnap {
            n: std::array::from_fn(|i| self.n[i] - before.n[i]),
            ns: std::array::from_fn(|i| self.ns[i] - before.ns[i]),
            conflicts: self.conflicts - before.conflicts,
        }
    }

    fn total(&self) -> u64 {
        self.n.iter().sum()
    }
}

/// A store that counts and times every call of the store it wraps.
struct Counting<S> {
    inner: S,
    calls: Arc<Calls>,
}

impl<S: Store> Store for Counting<S> {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(async move {
            let t = Instant::now();
            let r = self.inner.get(key).await;
            self.calls.note(0, t);
            r
        })
    }

    fn range<'a>(&'a self, start: &'a str, end: &'a str, limit: usize) -> RangeFuture<'a> {
        Box::pin(async move {
            let t = Instant::now();
            let r = self.inner.range(start, end, limit).await;
            self.calls.note(1, t);
            r
        })
    }

    fn txn(&self, txn: Txn) -> StoreFuture<'_, TxnOutcome> {
        Box::pin(async move {
            let t = Instant::now();
            let r = self.inner.txn(txn).await;
            self.calls.note(2, t);
            if matches!(r, Ok(TxnOutcome::Conflict(_))) {
                self.calls.conflicts.fetch_add(1, Ordering::Relaxed);
            }
            r
        })
    }

    fn put_alive<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let t = Instant::now();
            let r = self.inner.put_alive(key, value, ttl).await;
            self.calls.note(4, t);
            r
        })
    }

    fn count<'a>(&'a self, start: &'a str, end: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = Instant::now();
            let r = self.inner.count(start, end).await;
            self.calls.note(3, t);
            r
        })
    }

    fn get_relaxed<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Versioned>> {
        Box::pin(async move {
            let t = Instant::now();
            let (r, kind) = if self.calls.strict.load(Ordering::Relaxed) {
                (self.inner.get(key).await, 0)
            } else {
                (self.inner.get_relaxed(key).await, 5)
            };
            self.calls.note(kind, t);
            r
        })
    }

    fn range_relaxed<'a>(&'a self, start: &'a str, end: &'a str, limit: usize) -> RangeFuture<'a> {
        Box::pin(async move {
            let t = Instant::now();
            let (r, kind) = if self.calls.strict.load(Ordering::Relaxed) {
                (self.inner.range(start, end, limit).await, 1)
            } else {
                (self.inner.range_relaxed(start, end, limit).await, 6)
            };
            self.calls.note(kind, t);
            r
        })
    }

    fn count_relaxed<'a>(&'a self, start: &'a str, end: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = Instant::now();
            let (r, kind) = if self.calls.strict.load(Ordering::Relaxed) {
                (self.inner.count(start, end).await, 3)
            } else {
                (self.inner.count_relaxed(start, end).await, 7)
            };
            self.calls.note(kind, t);
            r
        })
    }
}

// ---------------------------------------------------------- etcd's /metrics

/// What etcd's members report about themselves, summed over the members.
#[derive(Debug, Clone, Default)]
struct EtcdStats {
    /// gRPC requests handled, by method (Range, Txn, Lock, ...).
    rpcs: BTreeMap<String, f64>,
    cpu_secs: f64,
    wal_fsyncs: f64,
    backend_commits: f64,
}

impl EtcdStats {
    fn since(&self, before: &EtcdStats) -> EtcdStats {
        EtcdStats {
            rpcs: self
                .rpcs
                .iter()
                .map(|(k, v)| (k.clone(), v - before.rpcs.get(k).copied().unwrap_or(0.0)))
                .filter(|(_, v)| *v > 0.0)
                .collect(),
            cpu_secs: self.cpu_secs - before.cpu_secs,
            wal_fsyncs: self.wal_fsyncs - before.wal_fsyncs,
            backend_commits: self.backend_commits - before.backend_commits,
        }
    }

    fn total_rpcs(&self) -> f64 {
        self.rpcs.values().sum()
    }

    fn add_text(&mut self, text: &str) {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            if let Some(labels) = name.strip_prefix("grpc_server_handled_total{") {
                if let Some(method) = labels
                    .split(',')
                    .find_map(|l| l.strip_prefix("grpc_method=\""))
                    .and_then(|m| m.split('"').next())
                {
                    *self.rpcs.entry(method.to_owned()).or_default() += v;
                }
            } else if name == "process_cpu_seconds_total" {
                self.cpu_secs += v;
            } else if name == "etcd_disk_wal_fsync_duration_seconds_count" {
                self.wal_fsyncs += v;
            } else if name == "etcd_disk_backend_commit_duration_seconds_count" {
                self.backend_commits += v;
            }
        }
    }
}

/// `GET /metrics` from one member (plain HTTP/1.0, read to the end).
fn scrape(endpoint: &str) -> Result<String, String> {
    let addr = endpoint
        .strip_prefix("http://")
        .ok_or(format!("{endpoint}: not an http:// endpoint"))?;
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, SCRAPE_TIMEOUT)
        .map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(SCRAPE_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(SCRAPE_TIMEOUT)))
        .and_then(|()| write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n"))
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .map_err(|e| format!("{addr}: {e}"))?;
    Ok(body)
}

async fn etcd_stats(endpoints: &[String]) -> Result<EtcdStats, String> {
    let eps = endpoints.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut st = EtcdStats::default();
        for e in &eps {
            st.add_text(&scrape(e)?);
        }
        Ok(st)
    })
    .await
    .map_err(|e| format!("scrape task: {e}"))?
}

/// CPU time every process of the machine has used so far (busy jiffies of `/proc/stat`).
fn machine_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let jiffies: u64 = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|f| f.parse::<u64>().ok())
                .enumerate()
                // user nice system [idle iowait] irq softirq steal
                .filter(|(i, _)| !matches!(i, 3 | 4) && *i < 8)
                .map(|(_, v)| v)
                .sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    Duration::from_millis(jiffies * 1000 / hz)
}

/// The 1-minute load average, to tell a run on a quiet machine from one next to a build.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------- the nodes

type NodeEngine = Engine<Counting<EtcdStore>>;

/// PCI address of rail `rail`'s PF in the fake sysfs.
fn pf_addr(rail: usize) -> String {
    format!("0000:{:02x}:00.0", 0x10 + rail)
}

fn pf_name(rail: usize) -> String {
    format!("ens{rail}f0")
}

/// One fake sysfs for every node: one PF per rail, one VF per local rank.
fn fake_sysfs(args: &Args) -> FakeSysfs {
    let sys = FakeSysfs::new();
    for r in 0..args.rails {
        sys.pf(
            &pf_addr(r),
            &pf_name(r),
            u32::try_from(args.ranks_per_node).unwrap_or(8),
        );
    }
    sys
}

/// The VF of local rank `local` on `rail`.
fn vf(rail: usize, local: usize) -> Result<VfAssignment, String> {
    let pci: PciAddr = FakeSysfs::vf_addr(&pf_addr(rail), u32::try_from(local).unwrap_or(0))
        .parse()
        .map_err(|e| format!("VF address: {e}"))?;
    let pf_pci: PciAddr = pf_addr(rail)
        .parse()
        .map_err(|e| format!("PF address: {e}"))?;
    Ok(VfAssignment {
        rail: u32::try_from(rail).unwrap_or(0),
        pci,
        pf_pci,
        pf: Some(pf_name(rail)),
        vf_index: u32::try_from(local).unwrap_or(0),
        netdev: None,
    })
}

fn node_name(i: usize) -> String {
    format!("node-{i:03}")
}

fn node_config(
    args: &Args,
    i: usize,
    endpoints: &[String],
    prefix: &str,
    sysfs: &Path,
    dir: &Path,
) -> String {
    let pfs: Vec<String> = (0..args.rails)
        .map(|r| format!("\"{}\"", pf_name(r)))
        .collect();
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "node = \"{node}\"\nsocket = \"{d}/{node}.sock\"\nstate_dir = \"{d}/{node}.state\"\n\
         run_dir = \"{d}/{node}.run\"\nsysfs_root = \"{s}\"\nmetrics_addr = \"off\"\n\
         [[pools]]\nname = \"{POOL}\"\ncidrs = [\"{POOL_CIDR}\"]\nsubnet_prefix = {{ v4 = {sp} }}\n\
         isolation = {{ mode = \"{iso}\", first = {VNI_FIRST}, last = {VNI_LAST} }}\n\
         rails = {rails}\npfs = [{pfs}]\n\
         [store]\nbackend = \"etcd\"\nendpoints = [{eps}]\nprefix = \"{prefix}\"\ntimeout_ms = {t}\n",
        node = node_name(i),
        d = dir.display(),
        s = sysfs.display(),
        sp = args.subnet_prefix(),
        iso = args.isolation,
        rails = args.rails,
        pfs = pfs.join(", "),
        eps = eps.join(", "),
        t = args.timeout_ms,
    )
}

/// Starts every node's engine, each over its own etcd connection.
async fn start_nodes(
    args: &Args,
    endpoints: &[String],
    prefix: &str,
    sysfs: &Path,
    calls: &Arc<Calls>,
) -> Result<Vec<Arc<NodeEngine>>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let mut nodes = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let text = node_config(args, i, endpoints, prefix, sysfs, dir.path());
        let cfg = Config::from_toml(&text).map_err(|e| format!("node {i} config: {e}"))?;
        let store = tokio::time::timeout(
            SETUP_DEADLINE,
            EtcdStore::connect(jobnet_daemon::run::etcd_options(&cfg.store)),
        )
        .await
        .map_err(|_| format!("node {i}: connecting to etcd timed out"))?
        .map_err(|e| format!("node {i}: {e}"))?;
        let store = Counting {
            inner: store,
            calls: calls.clone(),
        };
        let engine = tokio::time::timeout(
            SETUP_DEADLINE,
            Engine::start(&cfg, store, Arc::new(SystemClock), Arc::new(Metrics::new())),
        )
        .await
        .map_err(|_| format!("node {i}: engine start timed out"))?
        .map_err(|e| format!("node {i}: engine: {e}"))?;
        nodes.push(Arc::new(engine));
    }
    Ok(nodes)
}

/// One attachment of the load: a rank on a rail (`rail` is None for `rails: all`).
#[derive(Debug, Clone, Copy)]
struct Item {
    rank: usize,
    local: usize,
    rail: Option<usize>,
}

/// The node's attachments, rank by rank (a pod's interfaces one after the other).
fn items_for(args: &Args, node: usize) -> Vec<Item> {
    let mut v = Vec::new();
    for local in 0..args.ranks_per_node {
        let rank = node * args.ranks_per_node + local;
        if args.mode.one_rail() {
            v.extend((0..args.rails).map(|r| Item {
                rank,
                local,
                rail: Some(r),
            }));
        } else {
            v.push(Item {
                rank,
                local,
                rail: None,
            });
        }
    }
    v
}

fn request(item: Item) -> Result<ReserveRequest, String> {
    let rank = u32::try_from(item.rank).map_err(|e| e.to_string())?;
    Ok(ReserveRequest {
        container_id: format!("{JOB}-rank{:04}", item.rank),
        ifname: format!("net{}", item.rail.map_or(1, |r| r + 1)),
        netns: format!("/var/run/netns/{JOB}-rank{:04}", item.rank),
        job: JOB.into(),
        rank: Some(rank),
        gpus: vec![],
        device_id: match item.rail {
            Some(r) => Some(vf(r, item.local)?.pci),
            None => None,
        },
        rails: match item.rail {
            Some(_) => api::Rails::One,
            None => api::Rails::All,
        },
        pool: Some(POOL.into()),
        network: Some("rdma-net".into()),
    })
}

/// One attachment the way the node's jobnetd records it.
async fn attach(engine: &NodeEngine, args: &Args, item: Item) -> Result<(), String> {
    let req = request(item)?;
    match item.rail {
        Some(rail) if args.mode == Mode::Ipam => {
            let ipam = engine.ipam();
            let key = jobnet_ipam::AttachmentKey::new(req.container_id.clone(), req.ifname.clone());
            let v = vf(rail, item.local)?;
            // The daemon's two records, shaped like its own: the VF owner
            // (create-only) and the attachment details.
            let records = vec![
                RecordWrite {
                    key: format!("vf/{}/{}", engine.node(), v.pci),
                    value: serde_json::json!({"containerID": req.container_id, "ifname": req.ifname}),
                    if_absent: true,
                },
                RecordWrite {
                    key: format!("att/{}/{}", req.container_id, req.ifname),
                    value: serde_json::json!({"node": engine.node(), "netns": req.netns,
                        "network": req.network, "vfs": [v]}),
                    if_absent: false,
                },
            ];
            ipam.reserve(jobnet_ipam::ReserveRequest {
                pool: POOL.into(),
                job: JOB.into(),
                key: key.clone(),
                rank: req.rank,
                rails: RailSelection::One(u16::try_from(rail).unwrap_or(0)),
                records,
            })
            .await
            .map_err(|e| format!("reserve: {e}"))?;
            ipam.commit(&key)
                .await
                .map_err(|e| format!("commit: {e}"))?;
        }
        Some(_) => {
            let a = engine
                .reserve(req)
                .await
                .map_err(|e| format!("reserve: {e}"))?;
            engine
                .commit(api::AttachmentKey::new(a.container_id, a.ifname))
                .await
                .map_err(|e| format!("commit: {e}"))?;
        }
        None => {
            let vfs = (0..args.rails)
                .map(|r| vf(r, item.local))
                .collect::<Result<Vec<_>, _>>()?;
            engine
                .import_committed(req, vfs)
                .await
                .map_err(|e| format!("import: {e}"))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- the lock

/// A node's handle on the cluster-wide lock: its own etcd client and one
/// lease per in-flight slot (etcd treats two locks under one lease as one).
struct NodeLock {
    client: etcd_client::Client,
    leases: Vec<i64>,
}

async fn node_locks(args: &Args, endpoints: &[String]) -> Result<Vec<NodeLock>, String> {
    let ttl = i64::try_from(args.baseline_secs + 120).unwrap_or(300);
    let mut out = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let setup = async {
            let mut client = etcd_client::Client::connect(endpoints, None)
                .await
                .map_err(|e| format!("node {i} lock client: {e}"))?;
            let mut leases = Vec::with_capacity(args.per_node);
            for _ in 0..args.per_node {
                let l = client
                    .lease_grant(ttl, None)
                    .await
                    .map_err(|e| format!("node {i} lease: {e}"))?;
                leases.push(l.id());
            }
            Ok::<_, String>(NodeLock { client, leases })
        };
        out.push(
            tokio::time::timeout(SETUP_DEADLINE, setup)
                .await
                .map_err(|_| format!("node {i}: lock setup timed out"))??,
        );
    }
    Ok(out)
}

async fn revoke_leases(locks: Vec<NodeLock>) {
    for mut l in locks {
        for id in l.leases.clone() {
            let _ = tokio::time::timeout(SETUP_DEADLINE, l.client.lease_revoke(id)).await;
        }
    }
}

// ---------------------------------------------------------------- the load

/// What one phase measured.
#[derive(Debug, Default)]
struct Phase {
    done: usize,
    errors: usize,
    first_error: Option<String>,
    lat: Vec<Duration>,
    /// Baseline only: how long each attachment held the lock.
    held: Vec<Duration>,
    wall: Duration,
    cpu: Duration,
    /// CPU used by every process of the machine meanwhile.
    machine: Duration,
    calls: CallSnap,
    etcd: EtcdStats,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.done as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

fn pct_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i].as_secs_f64() * 1e3
}

/// A budget shared by all workers of the baseline: at most `max` starts before `until`.
struct Budget {
    max: usize,
    until: Instant,
    started: AtomicUsize,
}

impl Budget {
    fn take(&self) -> bool {
        Instant::now() < self.until && self.started.fetch_add(1, Ordering::Relaxed) < self.max
    }
}

struct WorkerOut {
    lat: Vec<Duration>,
    held: Vec<Duration>,
    errors: Vec<String>,
}

/// Runs every node's items with `per_node` workers each; with `lock`, each
/// attachment holds the cluster-wide lock and `budget` bounds the phase.
async fn run_load(
    args: &Args,
    nodes: &[Arc<NodeEngine>],
    locks: Option<&[NodeLock]>,
    budget: Option<Arc<Budget>>,
    calls: &Calls,
    endpoints: &[String],
) -> Result<Phase, String> {
    let etcd_before = etcd_stats(endpoints).await?;
    let calls_before = calls.snapshot();
    let cpu_before = cpu_time(libc::RUSAGE_SELF);
    let machine_before = machine_cpu();
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (n, engine) in nodes.iter().enumerate() {
        let items = Arc::new(items_for(args, n));
        let next = Arc::new(AtomicUsize::new(0));
        for slot in 0..args.per_node {
            let engine = engine.clone();
            let items = items.clone();
            let next = next.clone();
            let budget = budget.clone();
            let args = args.clone();
            let lock = locks
                .and_then(|l| l.get(n))
                .map(|l| (l.client.clone(), l.leases.get(slot).copied().unwrap_or(0)));
            set.spawn(async move {
                let mut out = WorkerOut {
                    lat: Vec::new(),
                    held: Vec::new(),
                    errors: Vec::new(),
                };
                let mut lock = lock;
                loop {
                    if budget.as_ref().is_some_and(|b| !b.take()) {
                        return out;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&item) = items.get(i) else {
                        return out;
                    };
                    let t = Instant::now();
                    let r = match lock.as_mut() {
                        None => tokio::time::timeout(OP_DEADLINE, attach(&engine, &args, item))
                            .await
                            .unwrap_or_else(|_| Err("no answer within the deadline".into())),
                        Some((client, lease)) => {
                            locked(client, *lease, &engine, &args, item, &mut out.held).await
                        }
                    };
                    match r {
                        Ok(()) => out.lat.push(t.elapsed()),
                        Err(e) => out
                            .errors
                            .push(format!("rank {} rail {:?}: {e}", item.rank, item.rail)),
                    }
                }
            });
        }
    }
    let mut phase = Phase::default();
    while let Some(r) = set.join_next().await {
        let out = r.map_err(|e| format!("worker: {e}"))?;
        phase.lat.extend(out.lat);
        phase.held.extend(out.held);
        phase.errors += out.errors.len();
        if phase.first_error.is_none() {
            phase.first_error = out.errors.into_iter().next();
        }
    }
    phase.wall = started.elapsed();
    phase.cpu = cpu_time(libc::RUSAGE_SELF) - cpu_before;
    phase.machine = machine_cpu().saturating_sub(machine_before);
    phase.calls = calls.snapshot().since(&calls_before);
    phase.etcd = etcd_stats(endpoints).await?.since(&etcd_before);
    phase.done = phase.lat.len();
    phase.lat.sort();
    phase.held.sort();
    Ok(phase)
}

/// One attachment under the cluster-wide lock, released whatever happened.
async fn locked(
    client: &mut etcd_client::Client,
    lease: i64,
    engine: &NodeEngine,
    args: &Args,
    item: Item,
    held: &mut Vec<Duration>,
) -> Result<(), String> {
    let opts = etcd_client::LockOptions::new().with_lease(lease);
    let key = tokio::time::timeout(OP_DEADLINE, client.lock(LOCK_NAME, Some(opts)))
        .await
        .map_err(|_| "lock: not granted within the deadline".to_string())?
        .map_err(|e| format!("lock: {e}"))?
        .key()
        .to_vec();
    let t = Instant::now();
    let r = tokio::time::timeout(OP_DEADLINE, attach(engine, args, item))
        .await
        .unwrap_or_else(|_| Err("no answer within the deadline".into()));
    let unlocked = tokio::time::timeout(OP_DEADLINE, client.unlock(key)).await;
    held.push(t.elapsed());
    match unlocked {
        Ok(Ok(_)) => r,
        Ok(Err(e)) => Err(format!("unlock: {e}")),
        Err(_) => Err("unlock: no answer within the deadline".into()),
    }
}

// ---------------------------------------------------------------- checks

/// What the read-back found.
#[derive(Debug)]
struct Checked {
    attachments: usize,
    addresses: usize,
    identity: String,
}

/// The address of rank `rank` in `net` (gateway `first`: rank 0 is offset 2).
fn rank_address(net: &ipnet::IpNet, rank: usize) -> Option<IpAddr> {
    let ipnet::IpNet::V4(n) = net else {
        return None;
    };
    let base = u32::from(n.network());
    let a = base.checked_add(u32::try_from(rank).ok()?.checked_add(2)?)?;
    Some(IpAddr::V4(Ipv4Addr::from(a)))
}

/// Reads every node's attachments and the job back from etcd and checks
/// them; `expect_all` when every attachment of the load must be there.
async fn verify(
    args: &Args,
    nodes: &[Arc<NodeEngine>],
    expect_all: bool,
) -> Result<Checked, String> {
    let mut identity: Option<JobNetwork> = None;
    for (n, e) in nodes.iter().enumerate() {
        let job = e
            .ipam()
            .job(POOL, JOB)
            .await
            .map_err(|e| format!("node {n}: reading the job: {e}"))?
            .ok_or(format!("node {n}: the job does not exist"))?;
        match &identity {
            None => identity = Some(job),
            Some(first) if first.rails != job.rails => {
                return Err(format!(
                    "node {n} sees job identity {:?}, node 0 sees {:?}",
                    job.rails, first.rails
                ))
            }
            Some(_) => {}
        }
    }
    let job = identity.ok_or("no node")?;
    if job.rails.len() != args.rails {
        return Err(format!(
            "the job has {} rails, not {}",
            job.rails.len(),
            args.rails
        ));
    }
    let subnets: HashSet<_> = job.rails.iter().flat_map(|r| r.subnets.clone()).collect();
    let vnis: HashSet<_> = job
        .rails
        .iter()
        .filter_map(|r| r.isolation.map(|i| i.id))
        .collect();
    let want_ids = if args.isolation == "vxlan" {
        args.rails
    } else {
        1
    };
    let all_have_ids = job.rails.iter().all(|r| r.isolation.is_some());
    if subnets.len() != args.rails || vnis.len() != want_ids || !all_have_ids {
        return Err(format!(
            "rails must have distinct subnets and {want_ids} distinct isolation IDs: {:?}",
            job.rails
        ));
    }
    let mut seen: HashSet<IpAddr> = HashSet::new();
    let mut count = 0usize;
    for (n, e) in nodes.iter().enumerate() {
        let atts = e
            .ipam()
            .attachments(usize::MAX)
            .await
            .map_err(|e| format!("node {n}: reading attachments: {e}"))?;
        let expected = items_for(args, n).len();
        if expect_all && atts.len() != expected {
            return Err(format!(
                "node {n} has {} attachments, not {expected}",
                atts.len()
            ));
        }
        for a in &atts {
            let rank = a.rank.ok_or(format!("{:?} has no rank", a.key))? as usize;
            if rank / args.ranks_per_node != n {
                return Err(format!("{:?}: rank {rank} on node {n}", a.key));
            }
            if !matches!(a.state, jobnet_ipam::AttachmentState::Committed) {
                return Err(format!("{:?} is not committed", a.key));
            }
            let want_rails = if args.mode.one_rail() { 1 } else { args.rails };
            if a.rails.len() != want_rails {
                return Err(format!("{:?} has {} rails", a.key, a.rails.len()));
            }
            for ra in &a.rails {
                let jr = job
                    .rails
                    .iter()
                    .find(|r| r.rail == ra.rail)
                    .ok_or(format!("{:?}: rail {} not in the job", a.key, ra.rail))?;
                if args.mode.one_rail() && a.key.ifname != format!("net{}", ra.rail + 1) {
                    return Err(format!("{:?} holds rail {}", a.key, ra.rail));
                }
                if ra.isolation.map(|i| i.id) != jr.isolation.map(|i| i.id) {
                    return Err(format!(
                        "{:?} rail {}: VNI {:?}, the job's is {:?}",
                        a.key, ra.rail, ra.isolation, jr.isolation
                    ));
                }
                let net = jr.subnets.first().ok_or("rail without subnet")?;
                let want = rank_address(net, rank).ok_or("rank address")?;
                let [ip] = ra.ips.as_slice() else {
                    return Err(format!("{:?} rail {}: {:?}", a.key, ra.rail, ra.ips));
                };
                if ip.addr() != want || ip.prefix_len() != net.prefix_len() {
                    return Err(format!(
                        "{:?} rail {}: {ip}, rank {rank} must have {want}/{}",
                        a.key,
                        ra.rail,
                        net.prefix_len()
                    ));
                }
                if !seen.insert(ip.addr()) {
                    return Err(format!("duplicate address {ip} ({:?})", a.key));
                }
            }
            count += 1;
        }
    }
    let identity = job
        .rails
        .iter()
        .map(|r| {
            format!(
                "{}:{}/vni{}",
                r.rail,
                r.subnets.first().map(|s| s.to_string()).unwrap_or_default(),
                r.isolation.map_or(0, |i| i.id)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Checked {
        attachments: count,
        addresses: seen.len(),
        identity,
    })
}

// ---------------------------------------------------------------- probe

/// Raw etcd rates with the nodes' clients: linearizable gets of one key, then
/// create-if-absent txns of fresh keys, `per_node` loops per node each.
async fn probe(
    args: &Args,
    nodes: &[Arc<NodeEngine>],
    endpoints: &[String],
) -> Result<String, String> {
    let mut out = String::new();
    for kind in ["get", "get_relaxed", "txn"] {
        let before = etcd_stats(endpoints).await?;
        let cpu0 = cpu_time(libc::RUSAGE_SELF);
        let until = Instant::now() + Duration::from_secs(args.probe_secs);
        let started = Instant::now();
        let n = Arc::new(AtomicU64::new(0));
        let mut set = tokio::task::JoinSet::new();
        for (i, e) in nodes.iter().enumerate() {
            for slot in 0..args.per_node {
                let e = e.clone();
                let n = n.clone();
                set.spawn(async move {
                    let store = e.ipam().store();
                    let mut j = 0u64;
                    while Instant::now() < until {
                        let r = if kind == "get" {
                            store.get("probe/one").await.map(drop)
                        } else if kind == "get_relaxed" {
                            store.get_relaxed("probe/one").await.map(drop)
                        } else {
                            let k = format!("probe/{i}/{slot}/{j}");
                            store
                                .txn(Txn {
                                    compares: vec![Compare::Absent(k.clone())],
                                    ops: vec![Op::Put(k, b"x".to_vec())],
                                })
                                .await
                                .map(drop)
                        };
                        r.map_err(|e| format!("probe {kind}: {e}"))?;
                        j += 1;
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<(), String>(())
                });
            }
        }
        while let Some(r) = set.join_next().await {
            r.map_err(|e| format!("probe: {e}"))??;
        }
        let wall = started.elapsed().as_secs_f64();
        let ops = n.load(Ordering::Relaxed) as f64;
        let st = etcd_stats(endpoints).await?.since(&before);
        let client = (cpu_time(libc::RUSAGE_SELF) - cpu0).as_secs_f64();
        out.push_str(&format!(
            "  probe {kind:<11}: {:>7.0}/s  etcd cpu {:>4.0} us/op  client cpu {:>4.0} us/op  wal fsyncs/op {:.3}\n",
            ops / wall,
            st.cpu_secs * 1e6 / ops.max(1.0),
            client * 1e6 / ops.max(1.0),
            st.wal_fsyncs / ops.max(1.0),
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------- one run

/// The figures of one run.
#[derive(Debug, Default, Clone)]
struct RunFigures {
    rate: f64,
    p50: f64,
    p99: f64,
    wall: f64,
    base_rate: f64,
    base_p50: f64,
    base_p99: f64,
    base_done: usize,
    base_wall: f64,
    calls_per_att: f64,
    rpcs_per_att: f64,
    base_rpcs_per_att: f64,
}

/// An error naming the first failure when any attachment of the phase failed.
fn no_errors(what: &str, p: &Phase) -> Result<(), String> {
    if p.errors == 0 {
        return Ok(());
    }
    Err(format!(
        "{} {what}attachments failed; first: {}",
        p.errors,
        p.first_error.as_deref().unwrap_or_default()
    ))
}

fn print_phase(name: &str, p: &Phase, members: usize) {
    let d = p.done.max(1) as f64;
    let wall = p.wall.as_secs_f64().max(1e-9);
    println!(
        "  {name}: {} attachments in {:.2}s = {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, errors {}",
        p.done,
        p.wall.as_secs_f64(),
        p.rate(),
        pct_ms(&p.lat, 0.50),
        pct_ms(&p.lat, 0.99),
        pct_ms(&p.lat, 1.0),
        p.errors
    );
    if !p.held.is_empty() {
        println!(
            "    lock held per attachment: p50 {:.1} ms, p99 {:.1} ms",
            pct_ms(&p.held, 0.50),
            pct_ms(&p.held, 0.99)
        );
    }
    let c = &p.calls;
    let per: Vec<String> = KINDS
        .iter()
        .enumerate()
        .filter(|(i, _)| c.n[*i] > 0)
        .map(|(i, k)| {
            format!(
                "{k} {:.2} (avg {:.2} ms)",
                c.n[i] as f64 / d,
                c.ns[i] as f64 / c.n[i] as f64 / 1e6
            )
        })
        .collect();
    println!(
        "    store calls per attachment: {:.2} = {}; txn conflicts {}",
        c.total() as f64 / d,
        per.join(", "),
        c.conflicts
    );
    let rpcs: Vec<String> = p
        .etcd
        .rpcs
        .iter()
        .map(|(k, v)| format!("{k} {:.2}", v / d))
        .collect();
    println!(
        "    etcd gRPCs per attachment: {:.2} = {}",
        p.etcd.total_rpcs() / d,
        rpcs.join(", ")
    );
    println!(
        "    CPU: etcd {:.0}% ({:.0} us/attachment over {members} members), bench process {:.0}% ({:.0} us/attachment), other processes {:.0}%; WAL fsyncs per member per attachment {:.3}",
        100.0 * p.etcd.cpu_secs / wall,
        p.etcd.cpu_secs * 1e6 / d,
        100.0 * p.cpu.as_secs_f64() / wall,
        p.cpu.as_secs_f64() * 1e6 / d,
        100.0 * (p.machine.as_secs_f64() - p.cpu.as_secs_f64() - p.etcd.cpu_secs).max(0.0) / wall,
        p.etcd.wal_fsyncs / members as f64 / d,
    );
    if let Some(e) = &p.first_error {
        println!("    first error: {e}");
    }
}

async fn one_run(args: &Args, run: usize, sysfs: &FakeSysfs) -> Result<RunFigures, String> {
    let cluster = EtcdCluster::start(EtcdSpec::members(args.members))
        .map_err(|e| format!("starting etcd: {e}"))?;
    let endpoints = cluster.endpoints();
    let mut admin = tokio::time::timeout(
        SETUP_DEADLINE,
        etcd_client::Client::connect(&endpoints, None),
    )
    .await
    .map_err(|_| "etcd admin client: timed out".to_string())?
    .map_err(|e| format!("etcd admin client: {e}"))?;
    let version = tokio::time::timeout(SETUP_DEADLINE, admin.status())
        .await
        .map_err(|_| "etcd status: timed out".to_string())?
        .map_err(|e| format!("etcd status: {e}"))?
        .version()
        .to_owned();
    let members = tokio::time::timeout(SETUP_DEADLINE, admin.member_list())
        .await
        .map_err(|_| "etcd member list: timed out".to_string())?
        .map_err(|e| format!("etcd member list: {e}"))?
        .members()
        .len();
    println!(
        "run {run}: etcd {version}, {members} members on loopback; {} nodes x {} ranks, {} rails ({}), {} attachments ({}), {} in flight per node ({} in all); load average {}",
        args.nodes,
        args.ranks_per_node,
        args.rails,
        args.isolation,
        args.attachments(),
        match args.mode {
            Mode::Engine => "one rail each: Engine::reserve + Engine::commit",
            Mode::Import => "rails: all: Engine::import_committed",
            Mode::Ipam => "one rail each: Ipam::reserve + Ipam::commit, daemon records alike",
        },
        args.per_node,
        args.per_node * args.nodes,
        loadavg(),
    );

    let calls = Arc::new(Calls::default());
    calls
        .strict
        .store(args.linearizable_views, Ordering::Relaxed);
    let t = Instant::now();
    let nodes = start_nodes(args, &endpoints, "/jobnet-bench", sysfs.path(), &calls).await?;
    println!(
        "  {} engines started in {:.1}s",
        nodes.len(),
        t.elapsed().as_secs_f64()
    );
    let jobnet = run_load(args, &nodes, None, None, &calls, &endpoints).await?;
    print_phase("jobnet  ", &jobnet, members);
    no_errors("", &jobnet)?;
    calls.strict.store(true, Ordering::Relaxed);
    let checked = verify(args, &nodes, true).await?;
    println!(
        "    checked: {} attachments, {} distinct addresses, every rank on its rank address on every rail, {} nodes agree on the job: {}",
        checked.attachments,
        checked.addresses,
        nodes.len(),
        checked.identity
    );
    if checked.attachments != args.attachments() {
        return Err(format!(
            "read back {} attachments, not {}",
            checked.attachments,
            args.attachments()
        ));
    }
    let probed = if run == 1 && args.probe_secs > 0 {
        Some(probe(args, &nodes, &endpoints).await?)
    } else {
        None
    };
    drop(nodes);

    let base_calls = Arc::new(Calls::default());
    base_calls
        .strict
        .store(args.linearizable_views, Ordering::Relaxed);
    let base_nodes = start_nodes(
        args,
        &endpoints,
        "/jobnet-baseline",
        sysfs.path(),
        &base_calls,
    )
    .await?;
    let locks = node_locks(args, &endpoints).await?;
    let budget = Arc::new(Budget {
        max: args.baseline_max.min(args.attachments()),
        until: Instant::now() + Duration::from_secs(args.baseline_secs),
        started: AtomicUsize::new(0),
    });
    let base = run_load(
        args,
        &base_nodes,
        Some(&locks),
        Some(budget),
        &base_calls,
        &endpoints,
    )
    .await?;
    revoke_leases(locks).await;
    print_phase("one lock", &base, members);
    no_errors("baseline ", &base)?;
    base_calls.strict.store(true, Ordering::Relaxed);
    let bchecked = verify(args, &base_nodes, false).await?;
    if bchecked.attachments != base.done {
        return Err(format!(
            "baseline: read back {} attachments, {} were made",
            bchecked.attachments, base.done
        ));
    }
    println!(
        "    checked: {} attachments, {} distinct addresses",
        bchecked.attachments, bchecked.addresses
    );
    if let Some(p) = probed {
        print!("{p}");
    }
    drop(base_nodes);
    drop(cluster);
    let d = jobnet.done.max(1) as f64;
    let bd = base.done.max(1) as f64;
    Ok(RunFigures {
        rate: jobnet.rate(),
        p50: pct_ms(&jobnet.lat, 0.50),
        p99: pct_ms(&jobnet.lat, 0.99),
        wall: jobnet.wall.as_secs_f64(),
        base_rate: base.rate(),
        base_p50: pct_ms(&base.lat, 0.50),
        base_p99: pct_ms(&base.lat, 0.99),
        base_done: base.done,
        base_wall: base.wall.as_secs_f64(),
        calls_per_att: jobnet.calls.total() as f64 / d,
        rpcs_per_att: jobnet.etcd.total_rpcs() / d,
        base_rpcs_per_att: base.etcd.total_rpcs() / bd,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "NO"
    }
}

fn print_table(args: &Args, runs: &[RunFigures]) {
    let m = |f: fn(&RunFigures) -> f64| median(runs.iter().map(f).collect());
    let (rate, p50, p99, wall) = (m(|r| r.rate), m(|r| r.p50), m(|r| r.p99), m(|r| r.wall));
    let (brate, bp50, bp99) = (m(|r| r.base_rate), m(|r| r.base_p50), m(|r| r.base_p99));
    let speedup = m(|r| r.rate / r.base_rate.max(1e-9));
    let bdone = median(runs.iter().map(|r| r.base_done as f64).collect());
    let bwall = m(|r| r.base_wall);
    println!();
    println!(
        "== cluster: medians of {} run(s); {} attachments per run; baseline: {:.0} attachments in {:.1}s per run",
        runs.len(),
        args.attachments(),
        bdone,
        bwall
    );
    println!(
        "{:<32} {:>12} {:>12} {:>10} {:>5}",
        "figure", "jobnet", "one lock", "target", "met?"
    );
    println!(
        "{:<32} {:>12.2} {:>12} {:>10} {:>5}",
        "wall time for the job (s)",
        wall,
        format!("~{:.0}", args.attachments() as f64 / brate.max(1e-9)),
        "-",
        "-"
    );
    println!(
        "{:<32} {:>12.0} {:>12.0} {:>10} {:>5}",
        "attachments/s",
        rate,
        brate,
        ">= 5000",
        yes(rate >= 5000.0)
    );
    println!(
        "{:<32} {:>12.1} {:>12.1} {:>10} {:>5}",
        "p50 reserve+commit (ms)", p50, bp50, "-", "-"
    );
    println!(
        "{:<32} {:>12.1} {:>12.1} {:>10} {:>5}",
        "p99 reserve+commit (ms)",
        p99,
        bp99,
        "<= 50",
        yes(p99 <= 50.0)
    );
    println!(
        "{:<32} {:>11.1}x {:>11}x {:>10} {:>5}",
        "speed-up over one lock",
        speedup,
        1,
        ">= 10x",
        yes(speedup >= 10.0)
    );
    println!(
        "{:<32} {:>12.2} {:>12.2} {:>10} {:>5}",
        "etcd gRPCs per attachment",
        m(|r| r.rpcs_per_att),
        m(|r| r.base_rpcs_per_att),
        "-",
        "-"
    );
    println!(
        "{:<32} {:>12.2} {:>12} {:>10} {:>5}",
        "store calls per attachment",
        m(|r| r.calls_per_att),
        "same",
        "-",
        "-"
    );
    println!(
        "per run (jobnet/s, one lock/s): {}",
        runs.iter()
            .map(|r| format!("{:.0}/{:.0}", r.rate, r.base_rate))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cluster_bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let sysfs = fake_sysfs(&args);
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        match one_run(&args, run, &sysfs).await {
            Ok(f) => runs.push(f),
            Err(e) => {
                eprintln!("cluster_bench: FAILED in run {run}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    print_table(&args, &runs);
    std::process::ExitCode::SUCCESS
}

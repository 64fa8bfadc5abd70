//! Fault suite: a randomized stream of ADD / DEL / CHECK / GC against one
//! fabric node, driven the way kubelet and a CRI runtime drive a CNI plugin,
//! with faults injected at random; then the node must hold nothing the
//! stream made.
//!
//! The node: a switchdev fabric node with three NICs of four VFs. jobnetd
//! runs in the node netns with a two-rail `vxlan` pool over NICs 0 and 1,
//! so every attachment of the job network (`"rails": "all"`, no `ipam`)
//! takes one VF per rail and its representors join the job's bridges.
//! NIC 2's VFs serve a second network with delegated IPAM (Debian's
//! host-local), handed out by `deviceID` as the SR-IOV device plugin does.
//!
//! The runtime model: a pod sandbox gets a fresh netns and container ID and
//! is ADDed to one or both networks; an ADD that fails makes the runtime
//! DEL what it started (a failed sandbox is cleaned up), sometimes after
//! retrying the ADD once; DEL is retried until it succeeds (bounded); a
//! stopped sandbox's netns is removed; GC lists the attachments of every
//! sandbox the runtime knows. Faults, at random: the plugin SIGKILLed at a
//! random moment of an ADD or a DEL; jobnetd SIGKILLed while idle or in the
//! middle of an ADD and restarted later (ADD of the job network answers 11
//! meanwhile, DEL must still succeed); a pod netns removed in the middle of
//! an ADD or before the sandbox's DEL; state dir files (attachment cache,
//! lock, owner record, queued release) truncated before a DEL or an ADD
//! retry; a sandbox the runtime forgets, which only GC can clean up.
//!
//! Checked on the way: no ADD fails without a cause (a fault, jobnetd
//! down, no free VF, a rank held by another pod); CHECK passes on every
//! healthy attachment; GC never touches a listed attachment; no two live
//! pods ever have the same address on the same rail (ADD results, and
//! what the kernel shows in every pod after every step). At the end, after
//! DEL of everything the runtime still holds, a GC and jobnetd's startup
//! reconciliation: every VF back in the node with its name, MAC and MTU;
//! no attachment or held VF in jobnetd; no host-local lease; no file in
//! the plugin's state dir; no device-info file of the test's networks; no
//! job bridge or VXLAN device in the node.
//!
//! `JOBNET_FAULT_OPS` sets the number of plugin runs (default: a short
//! stream for `cargo test`; `scripts/soak.sh` runs thousands in release
//! mode); `JOBNET_FAULT_SEED` replays a run's choices (the seed is printed
//! first). Timing still varies between runs: a kill lands at a moment, not
//! at a step.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jobnet_hw::PciAddr;
use jobnet_tests::fabric::{ip, Fabric, FabricSpec, FabricVf, VfId};
use jobnet_tests::fault::audit::{self, AddressBook, VfBaseline};
use jobnet_tests::fault::jobnetd::{Jobnetd, JobnetdConfig};
use jobnet_tests::fault::podns::{pod_addresses, PodNetns, Returned};
use jobnet_tests::fault::rng::{count_from_env, seed_from_env, Rng};
use jobnet_tests::fault::run::{self, Invocation, Outcome};
use jobnet_tests::fault::sysfs::{check_aliases, SysfsSync};
use jobnet_tests::harness::{binaries, require_reference_plugin};
use serde_json::{json, Value};

/// Plugin runs of the default (short) stream.
const DEFAULT_OPS: usize = 150;
/// Pod sandboxes alive at most at once.
const PODS: usize = 6;
/// Jobs the sandboxes belong to.
const JOBS: [&str; 3] = ["alpha", "beta", "gamma"];
/// Ranks per job.
const RANKS: u64 = 4;
/// NICs of the jobnetd pool (rail 0, rail 1) and of the delegated network.
const JOB_NICS: [usize; 2] = [0, 1];
const DEV_NIC: usize = 2;
const VFS_PER_NIC: usize = 4;
/// DEL runs of one attachment before the runtime (and the test) gives up.
const DEL_ATTEMPTS: u32 = 8;
/// jobnetd timings, short so that its reconciliation takes part.
const RECONCILE_SECS: u64 = 1;
const NETNS_GRACE_SECS: u64 = 1;
const RESERVATION_TIMEOUT_SECS: u64 = 2;
/// How long the node may take to be clean after the stream.
const SETTLE: Duration = Duration::from_secs(30);
const DELEGATED_SUBNET: &str = "10.79.0.0/24";

/// The two networks a sandbox can join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Net {
    /// Through jobnetd, every rail.
    Job,
    /// Delegated IPAM, one VF by `deviceID`.
    Dev,
}

impl Net {
    const ALL: [Net; 2] = [Net::Job, Net::Dev];

    fn ifname(self) -> &'static str {
        match self {
            Net::Job => "net1",
            Net::Dev => "net2",
        }
    }

    fn index(self) -> usize {
        match self {
            Net::Job => 0,
            Net::Dev => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Net::Job => "job",
            Net::Dev => "delegated",
        }
    }
}

/// Fault classes, by the names `JOBNET_FAULT_SKIP` takes (comma-separated)
/// to leave some out while working out which one a leak comes from.
const FAULTS: [&str; 11] = [
    "kill-add",
    "kill-del",
    "kill-jobnetd",
    "netns-add",
    "netns-del",
    "truncate-cache",
    "truncate-lock",
    "truncate-owner",
    "truncate-queue",
    "forget",
    "repeat-add",
];

/// The fault classes `JOBNET_FAULT_SKIP` leaves out; panics on a name that
/// is not one, so that a typo does not quietly run everything.
fn skipped_faults() -> Vec<&'static str> {
    let v = std::env::var("JOBNET_FAULT_SKIP").unwrap_or_default();
    v.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            *FAULTS
                .iter()
                .find(|f| **f == n)
                .unwrap_or_else(|| panic!("JOBNET_FAULT_SKIP: no fault {n:?}; faults: {FAULTS:?}"))
        })
        .collect()
}

/// What the runtime believes of one attachment of a sandbox.
#[derive(Debug, Clone)]
enum Att {
    /// Never ADDed, or DELeted.
    None,
    /// ADD succeeded with this result.
    Live(Value),
    /// An ADD was started and did not succeed: DEL must follow.
    Dirty,
}

/// A pod sandbox as the runtime tracks it.
#[derive(Debug)]
struct Sandbox {
    cid: String,
    /// Its netns until it dies; the path stays what the runtime passes.
    ns: Option<PodNetns>,
    ns_path: PathBuf,
    ns_name: String,
    job: &'static str,
    rank: u64,
    mac: String,
    /// The VF the device plugin gave it for the delegated network.
    dev_vf: Option<PciAddr>,
    att: [Att; 2],
    /// Networks in ADD order (DEL goes in reverse).
    order: Vec<Net>,
    /// One of its attachment caches was truncated at some step: a VF that
    /// cache alone described cannot be put back as it was, whenever its
    /// DEL or GC comes.
    cache_truncated: bool,
}

impl Sandbox {
    fn holder(&self, net: Net) -> String {
        format!("{}/{}", self.cid, net.ifname())
    }

    fn alive(&self) -> bool {
        self.ns.as_ref().is_some_and(PodNetns::is_named)
    }
}

/// What happens while one plugin run is under way.
#[derive(Debug, Clone, Copy)]
enum During {
    Nothing,
    /// SIGKILL the plugin after this long.
    KillPlugin(Duration),
    /// SIGKILL jobnetd after this long.
    KillJobnetd(Duration),
    /// The runtime removes the sandbox's netns after this long.
    RemoveNetns(Duration),
}

/// Counters printed at the end.
#[derive(Debug, Default)]
struct Stats {
    ops: BTreeMap<&'static str, usize>,
    faults: BTreeMap<&'static str, usize>,
    outcomes: BTreeMap<String, usize>,
    actions: BTreeMap<&'static str, usize>,
    /// VFs found in a pod netns the runtime removed after DEL or GC had
    /// succeeded: the kernel had to return them.
    left_in_pod: Vec<String>,
    /// VFs no sandbox holds that were not as before the stream, seen after
    /// the step that left them so.
    vf_leaks: Vec<String>,
    /// VFs whose original state went with a truncated attachment cache (the
    /// only record of it), put back by the test afterwards.
    lost_with_cache: Vec<String>,
    /// VFs the kernel returned from a netns removed under a live pod.
    returned_by_kernel: usize,
}

impl Stats {
    fn fault(&mut self, f: &'static str) {
        *self.faults.entry(f).or_default() += 1;
    }

    fn total_ops(&self) -> usize {
        self.ops.values().sum()
    }
}

fn fmt_counts<K: std::fmt::Display>(m: &BTreeMap<K, usize>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A line on stderr that libtest does not capture: the seed and the counts
/// are wanted in `cargo test` logs also when the test passes.
fn say(line: &str) {
    let _ = std::io::stderr().write_all(format!("fault_suite: {line}\n").as_bytes());
}

/// Device-info files of the test's networks, removed on drop (also when the
/// test panics): they live in a machine-wide directory.
struct DevinfoGuard(Vec<String>);

impl Drop for DevinfoGuard {
    fn drop(&mut self) {
        let names: Vec<&str> = self.0.iter().map(String::as_str).collect();
        for f in audit::devinfo_files(&names) {
            let _ = std::fs::remove_file(f);
        }
    }
}

struct Suite {
    seed: u64,
    target_ops: usize,
    rng: Rng,
    stats: Stats,
    // Field order is drop order: sandboxes and jobnetd go before the fabric.
    slots: Vec<Option<Sandbox>>,
    /// Sandboxes the runtime forgot: only GC can clean them up.
    forgotten: Vec<Sandbox>,
    book: AddressBook,
    jobnetd: Jobnetd,
    daemon_up: bool,
    /// Actions left before jobnetd is started again.
    daemon_down_left: u32,
    plugin_state: tempfile::TempDir,
    host_local: tempfile::TempDir,
    net_job: String,
    net_dev: String,
    dev_vfs: Vec<FabricVf>,
    node_netns: PathBuf,
    sync: SysfsSync,
    /// Typical duration of a successful run, per verb and network: kills
    /// land anywhere in it.
    typical: HashMap<(&'static str, Net), Duration>,
    step: usize,
    skip: Vec<&'static str>,
    /// Every VF as it was before the stream.
    base: Vec<VfBaseline>,
    /// The current step works on a sandbox one of whose attachment caches
    /// was truncated (in this step or an earlier one).
    cache_lost: bool,
    /// VFs reported missing from the node (reported once until back).
    missing: HashSet<VfId>,
    /// VFs named by a truncated attachment cache, until they are next seen
    /// idle: the model may still give such a VF to another sandbox (one
    /// whose netns died and whose attachment jobnetd released), so the
    /// step that finds it changed need not touch the truncated sandbox.
    lost_vfs: HashSet<VfId>,
    /// `JOBNET_FAULT_TRACE`: every step, run and fault, with the plugin's
    /// logs, for working out what a failing seed did.
    trace: Option<std::fs::File>,
    _devinfo: DevinfoGuard,
    fabric: Fabric,
}

fn pools(fabric: &Fabric) -> String {
    let node = fabric.node(0).expect("node 0");
    let pfs: Vec<String> = JOB_NICS
        .iter()
        .map(|&n| format!("\"{}\"", node.pfs[n].netdev))
        .collect();
    format!(
        r#"[[pools]]
name = "fault"
cidrs = ["198.18.0.0/16"]
subnet_prefix = {{ v4 = 24 }}
isolation = {{ mode = "vxlan", first = 3000, last = 3999 }}
rails = 2
pfs = [{pfs}]
reservation_timeout_secs = {RESERVATION_TIMEOUT_SECS}
grace_period_secs = 1
"#,
        pfs = pfs.join(", ")
    )
}

impl Suite {
    fn new(seed: u64, target_ops: usize) -> Self {
        let fabric = Fabric::build(FabricSpec {
            nodes: 1,
            nics_per_node: 3,
            vfs_per_nic: VFS_PER_NIC,
            switchdev: true,
            ..FabricSpec::default()
        })
        .expect("fabric");
        check_aliases(&fabric, 0);
        let node = fabric.node(0).expect("node 0");
        let jobnetd = Jobnetd::start(&JobnetdConfig {
            node: "fault-node".into(),
            sysfs_root: node.sysfs_root.clone(),
            netns: node.netns.clone(),
            reconcile_interval_secs: RECONCILE_SECS,
            netns_grace_secs: NETNS_GRACE_SECS,
            pools: pools(&fabric),
        });
        let tag = std::process::id() % 100_000;
        let net_job = format!("fault-job-{tag}");
        let net_dev = format!("fault-dev-{tag}");
        let dev_vfs = fabric
            .vfs()
            .iter()
            .filter(|v| v.id.node == 0 && v.id.nic == DEV_NIC)
            .cloned()
            .collect();
        let mut s = Self {
            seed,
            target_ops,
            rng: Rng::new(seed),
            stats: Stats::default(),
            slots: (0..PODS).map(|_| None).collect(),
            forgotten: Vec::new(),
            book: AddressBook::default(),
            jobnetd,
            daemon_up: true,
            daemon_down_left: 0,
            plugin_state: tempfile::tempdir().expect("plugin state dir"),
            host_local: tempfile::tempdir().expect("host-local data dir"),
            _devinfo: DevinfoGuard(vec![net_job.clone(), net_dev.clone()]),
            net_job,
            net_dev,
            dev_vfs,
            node_netns: node.netns_path(),
            sync: SysfsSync::new(),
            typical: HashMap::new(),
            step: 0,
            skip: skipped_faults(),
            base: Vec::new(),
            cache_lost: false,
            missing: HashSet::new(),
            lost_vfs: HashSet::new(),
            trace: std::env::var_os("JOBNET_FAULT_TRACE").map(|p| {
                std::fs::File::create(&p).unwrap_or_else(|e| {
                    panic!("JOBNET_FAULT_TRACE={}: {e}", Path::new(&p).display())
                })
            }),
            fabric,
        };
        s.sync_sysfs();
        s.base = audit::baseline(&s.fabric, 0);
        s
    }

    // ---- configs and plugin runs ----

    fn conf(&self, net: Net, sb: &Sandbox) -> Value {
        match net {
            Net::Job => json!({
                "cniVersion": "1.1.0", "name": self.net_job, "type": "jobnet",
                "rails": "all", "mtu": 1400,
                "daemonSocket": self.jobnetd.socket(),
                "args": {"cni": {"job": sb.job, "rank": sb.rank}},
                "runtimeConfig": {"mac": sb.mac},
            }),
            Net::Dev => {
                let mut c = self.gc_conf(Net::Dev);
                c["cniVersion"] = json!("1.0.0");
                c["runtimeConfig"] = json!({"mac": sb.mac});
                if let Some(pci) = sb.dev_vf {
                    c["deviceID"] = json!(pci.to_string());
                }
                c
            }
        }
    }

    /// The network's config as GC gets it: no per-attachment keys. GC needs
    /// 1.1.0; the delegated network's host-local stops at 1.0.0, so jobnet
    /// does its own GC there and does not forward it.
    fn gc_conf(&self, net: Net) -> Value {
        match net {
            Net::Job => json!({
                "cniVersion": "1.1.0", "name": self.net_job, "type": "jobnet",
                "rails": "all", "mtu": 1400,
                "daemonSocket": self.jobnetd.socket(),
            }),
            Net::Dev => json!({
                "cniVersion": "1.1.0", "name": self.net_dev, "type": "jobnet",
                "mtu": 1300,
                "ipam": {"type": "host-local", "subnet": DELEGATED_SUBNET,
                         "dataDir": self.host_local.path()},
            }),
        }
    }

    fn invocation(&self, verb: &str, net: Net, sb: &Sandbox, conf: Value) -> Invocation {
        Invocation::new(verb, &sb.cid, &sb.ns_path, net.ifname(), conf)
            .var("CNI_PATH", "/usr/lib/cni")
            .var(
                "JOBNET_SYSFS_ROOT",
                &self.fabric.node(0).expect("node").sysfs_root,
            )
            .var("JOBNET_STATE_DIR", self.plugin_state.path())
    }

    /// One plugin run with `during` happening meanwhile; sysfs follows the
    /// kernel afterwards.
    fn exec(
        &mut self,
        verb: &'static str,
        net: Net,
        slot: usize,
        inv: &Invocation,
        during: During,
    ) -> Outcome {
        *self.stats.ops.entry(verb).or_default() += 1;
        let what = format!(
            "step {} {verb} {} of {}",
            self.step,
            net.name(),
            inv.get("CNI_CONTAINERID")
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut r = run::spawn(&self.node_netns, &binaries().jobnet, inv, &what);
        match during {
            During::Nothing => {}
            During::KillPlugin(d) => {
                r.kill_after(d);
            }
            During::KillJobnetd(d) => {
                r.wait_for(d);
                self.jobnetd.kill9();
                self.daemon_up = false;
            }
            During::RemoveNetns(d) => {
                r.wait_for(d);
                if let Some(ns) = self.slots[slot].as_mut().and_then(|s| s.ns.as_mut()) {
                    ns.remove_name();
                }
            }
        }
        let out = r.finish();
        if self.trace.is_some() {
            let line = format!(
                "{verb} {} {} ({during:?}): {} in {:?}\n{}{}",
                net.name(),
                inv.get("CNI_CONTAINERID")
                    .map(|c| c.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                out.kind(),
                out.elapsed,
                out.stdout,
                out.stderr
            );
            self.trace(&line);
        }
        if out.ok() {
            let t = self.typical.entry((verb, net)).or_insert(out.elapsed);
            *t = (*t * 3 + out.elapsed) / 4;
        }
        *self
            .stats
            .outcomes
            .entry(format!("{verb} {}: {}", net.name(), out.kind()))
            .or_default() += 1;
        // host-local's own errors come through unchanged, with its 999.
        let delegate_refused = net == Net::Dev && out.stdout.contains("duplicate allocation");
        if out.cni_code() == Some(999) && !delegate_refused {
            self.fail(&format!(
                "internal error (999) from the plugin\n{}",
                out.describe()
            ));
        }
        self.sync_sysfs();
        out
    }

    fn kill_delay(&mut self, verb: &'static str, net: Net) -> Duration {
        let typical = self
            .typical
            .get(&(verb, net))
            .copied()
            .unwrap_or(Duration::from_millis(300));
        self.rng.duration_up_to(typical * 3 / 2)
    }

    fn on(&self, fault: &str) -> bool {
        debug_assert!(FAULTS.contains(&fault), "{fault}");
        !self.skip.contains(&fault)
    }

    fn trace(&mut self, line: &str) {
        if let Some(f) = self.trace.as_mut() {
            let _ = writeln!(f, "[{}] {line}", self.step);
        }
    }

    fn sync_sysfs(&mut self) {
        if let Err(e) = self.sync.sync(&self.fabric, 0) {
            panic!("syncing the node's sysfs: {e}");
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\n(seed {} = JOBNET_FAULT_SEED, step {})\njobnetd log (tail):\n{}",
            self.seed,
            self.step,
            self.jobnetd.log_tail(40)
        );
    }

    // ---- the runtime's operations ----

    /// Addresses of an ADD result, by interface name (one per rail and
    /// network).
    fn result_addrs(result: &Value) -> Vec<(String, IpAddr)> {
        let names: Vec<String> = result["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i["name"].as_str().unwrap_or("?").to_owned())
            .collect();
        result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| {
                let ifname = ip["interface"]
                    .as_u64()
                    .and_then(|i| names.get(usize::try_from(i).ok()?))
                    .cloned()
                    .unwrap_or_else(|| "?".into());
                let addr = ip["address"].as_str()?.split('/').next()?.parse().ok()?;
                Some((ifname, addr))
            })
            .collect()
    }

    fn add(&mut self, slot: usize, net: Net, during: During) -> Outcome {
        let sb = self.slots[slot].as_ref().expect("sandbox");
        let inv = self.invocation("ADD", net, sb, self.conf(net, sb));
        let out = self.exec("ADD", net, slot, &inv, during);
        let sb = self.slots[slot].as_mut().expect("sandbox");
        if out.ok() {
            let result = out
                .json()
                .unwrap_or_else(|| panic!("ADD printed no result: {}", out.describe()));
            let addrs = Self::result_addrs(&result);
            let holder = sb.holder(net);
            sb.att[net.index()] = Att::Live(result);
            let when = format!("step {}", self.step);
            self.book.take(&holder, &addrs, &when);
        } else if matches!(sb.att[net.index()], Att::None) {
            sb.att[net.index()] = Att::Dirty;
        }
        if !sb.order.contains(&net) {
            sb.order.push(net);
        }
        out
    }

    /// Why an ADD without an injected fault may fail, if it may.
    fn excuse(&self, slot: usize, net: Net, out: &Outcome) -> Option<&'static str> {
        let code = out.cni_code();
        match net {
            Net::Job if !self.daemon_up => (code == Some(11)).then_some("jobnetd down"),
            Net::Job => match code {
                Some(108) => Some("no free VF"),
                Some(109) if self.rank_taken(slot) => Some("rank held by another pod"),
                Some(109) => Some("rank held (by a sandbox jobnetd still keeps)"),
                _ => None,
            },
            Net::Dev => None,
        }
    }

    /// jobnetd had no free VF: counted by how many job attachments the
    /// runtime knows of besides this one (fewer than the pool's VFs per
    /// rail means jobnetd holds VFs of attachments already gone: released
    /// later by GC or reconciliation, or leaked).
    fn note_no_free_vf(&mut self, slot: usize) {
        let known = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != slot)
            .filter_map(|(_, s)| s.as_ref())
            .chain(self.forgotten.iter())
            .filter(|s| !matches!(s.att[Net::Job.index()], Att::None))
            .count();
        if known < VFS_PER_NIC && self.trace.is_some() {
            let held = self.jobnetd.attachments().map(|a| {
                a.iter()
                    .map(|a| {
                        format!(
                            "{}/{} {} {}",
                            a["containerID"], a["ifname"], a["state"], a["netns"]
                        )
                    })
                    .collect::<Vec<_>>()
            });
            let line = format!("no free VF; the runtime knows {known}; jobnetd holds {held:?}");
            self.trace(&line);
        }
        let key = if known < VFS_PER_NIC {
            "no free VF while the runtime knows fewer attachments than VFs"
        } else {
            "no free VF, every VF known to be in use"
        };
        *self.stats.actions.entry(key).or_default() += 1;
    }

    fn rank_taken(&self, slot: usize) -> bool {
        let Some(me) = self.slots[slot].as_ref() else {
            return false;
        };
        self.slots
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != slot)
            .filter_map(|(_, s)| s.as_ref())
            .chain(self.forgotten.iter())
            .any(|s| s.job == me.job && s.rank == me.rank && !matches!(s.att[0], Att::None))
    }

    /// DEL of one attachment, retried until it succeeds; the first run may
    /// be killed.
    fn del(&mut self, slot: usize, net: Net, kill_first: bool) {
        let mut last = None;
        for attempt in 1..=DEL_ATTEMPTS {
            let sb = self.slots[slot].as_ref().expect("sandbox");
            let inv = self.invocation("DEL", net, sb, self.conf(net, sb));
            let during = if attempt == 1 && kill_first {
                self.stats.fault("plugin SIGKILL during DEL");
                During::KillPlugin(self.kill_delay("DEL", net))
            } else {
                During::Nothing
            };
            let out = self.exec("DEL", net, slot, &inv, during);
            if out.ok() {
                let sb = self.slots[slot].as_mut().expect("sandbox");
                let holder = sb.holder(net);
                sb.att[net.index()] = Att::None;
                self.book.drop_holder(&holder);
                return;
            }
            if !out.killed {
                // The runtime backs off before it tries again; 11 says why.
                std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
            }
            last = Some(out);
        }
        let last = last.map(|o| o.describe()).unwrap_or_default();
        self.fail(&format!(
            "DEL did not succeed in {DEL_ATTEMPTS} runs; last:\n{last}"
        ));
    }

    /// Truncates one of the sandbox's files in the plugin's state dir (the
    /// attachment's cache or lock, its VFs' owner records, a queued
    /// release); false when it has none.
    fn truncate_state(&mut self, slot: usize) -> bool {
        let sb = self.slots[slot].as_ref().expect("sandbox");
        let root = self.plugin_state.path();
        let mut candidates: Vec<(PathBuf, &'static str)> = Vec::new();
        for (dir, kind) in [
            ("attachments", "cache"),
            ("pending-release", "queued release"),
        ] {
            for f in audit::files_under(&root.join(dir)) {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                if name.starts_with(&format!("{}.", sb.cid)) {
                    let kind = if name.ends_with(".lock") {
                        "lock"
                    } else {
                        kind
                    };
                    candidates.push((f, kind));
                }
            }
        }
        let mut pcis: Vec<String> = sb.dev_vf.iter().map(ToString::to_string).collect();
        for a in &sb.att {
            if let Att::Live(r) = a {
                for i in r["interfaces"].as_array().into_iter().flatten() {
                    if let Some(p) = i["pciID"].as_str() {
                        pcis.push(p.to_owned());
                    }
                }
            }
        }
        for p in pcis {
            let f = root.join("vfs").join(format!("{p}.owner"));
            if f.exists() {
                candidates.push((f, "owner"));
            }
        }
        candidates.retain(|(_, kind)| {
            self.on(match *kind {
                "cache" => "truncate-cache",
                "lock" => "truncate-lock",
                "owner" => "truncate-owner",
                _ => "truncate-queue",
            })
        });
        let Some((path, kind)) = self.rng.pick(&candidates).cloned() else {
            return false;
        };
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let to = if self.rng.chance(50) {
            0
        } else {
            self.rng.below(len)
        };
        let ok = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(to))
            .is_ok();
        let line = format!("truncated {} from {len} to {to} bytes", path.display());
        self.trace(&line);
        if ok && kind == "cache" {
            self.cache_lost = true;
            let lost = self.slots[slot]
                .as_ref()
                .map(|sb| self.vfs_of(sb))
                .unwrap_or_default();
            self.lost_vfs.extend(lost);
            if let Some(sb) = self.slots[slot].as_mut() {
                sb.cache_truncated = true;
            }
        }
        if ok {
            self.stats.fault(match kind {
                "cache" => "state truncated: attachment cache",
                "lock" => "state truncated: attachment lock",
                "owner" => "state truncated: VF owner record",
                _ => "state truncated: queued release",
            });
        }
        ok
    }

    /// The netns of a sandbox dies now (no plugin is in it): the kernel
    /// returns its VFs to the node.
    fn kill_netns(&mut self, slot: usize) -> Vec<Returned> {
        let Some(ns) = self.slots[slot].as_mut().and_then(|s| s.ns.take()) else {
            return Vec::new();
        };
        let back = ns.destroy(&self.fabric, 0);
        self.stats.returned_by_kernel += back.len();
        self.sync_sysfs();
        // A pod without its netns holds no address any more.
        if let Some(sb) = self.slots[slot].as_ref() {
            for net in Net::ALL {
                let holder = sb.holder(net);
                self.book.drop_holder(&holder);
            }
        }
        let line = format!("netns of slot {slot} died; the kernel returned {back:?}");
        self.trace(&line);
        back
    }

    /// The runtime creates a sandbox in `slot` and ADDs it to its networks.
    fn create(&mut self, slot: usize) {
        let job = *self.rng.pick(&JOBS).expect("jobs");
        let rank = self.pick_rank(job);
        let free_dev: Vec<PciAddr> = self
            .dev_vfs
            .iter()
            .map(|v| v.pci)
            .filter(|p| !self.dev_vf_held(*p))
            .collect();
        let mut nets = match self.rng.below(100) {
            0..=34 => vec![Net::Job],
            35..=59 => vec![Net::Dev],
            _ => vec![Net::Job, Net::Dev],
        };
        let dev_vf = self.rng.pick(&free_dev).copied();
        if dev_vf.is_none() {
            nets.retain(|n| *n != Net::Dev);
        }
        if nets.is_empty() {
            nets.push(Net::Job);
        }
        let ns = PodNetns::create("jfs");
        let serial = self.step;
        self.slots[slot] = Some(Sandbox {
            cid: format!("fault{}x{serial}", std::process::id() % 100_000),
            ns_path: ns.path(),
            ns_name: ns.name.clone(),
            ns: Some(ns),
            job,
            rank,
            mac: format!(
                "02:fa:{:02x}:{:02x}:00:01",
                (serial >> 8) & 0xff,
                serial & 0xff
            ),
            dev_vf: nets.contains(&Net::Dev).then_some(dev_vf).flatten(),
            att: [Att::None, Att::None],
            order: Vec::new(),
            cache_truncated: false,
        });
        let mut failed = false;
        for net in nets {
            let during = self.add_fault(net);
            let faulted = !matches!(during, During::Nothing);
            let out = self.add(slot, net, during);
            if matches!(during, During::RemoveNetns(_)) {
                // No plugin is in the netns any more: it dies now.
                self.kill_netns(slot);
            }
            if out.ok() {
                if self.slots[slot].as_ref().is_some_and(|s| s.ns.is_none()) {
                    failed = true;
                    break;
                }
                continue;
            }
            if !faulted && !out.killed && self.excuse(slot, net, &out).is_none() {
                self.fail(&format!("ADD failed without a cause\n{}", out.describe()));
            }
            if net == Net::Job && out.cni_code() == Some(108) {
                self.note_no_free_vf(slot);
            }
            let alive = self.slots[slot].as_ref().is_some_and(Sandbox::alive);
            if alive && self.rng.chance(35) && self.retry_add(slot, net, faulted) {
                continue;
            }
            failed = true;
            break;
        }
        if failed {
            *self
                .stats
                .actions
                .entry("sandbox failed, cleaned up")
                .or_default() += 1;
            self.stop(slot, false);
        }
    }

    /// A retried ADD of the same attachment; true when it succeeded.
    fn retry_add(&mut self, slot: usize, net: Net, after_fault: bool) -> bool {
        self.stats.fault("ADD retried");
        let truncated = self.rng.chance(30) && self.truncate_state(slot);
        let out = self.add(slot, net, During::Nothing);
        if out.ok() {
            return true;
        }
        // After a truncated state file or a killed jobnetd anything may
        // have gone; a plain retry fails only for the usual reasons. A
        // retry after a fault may also meet what that fault left, e.g. the
        // VF of a killed ADD under its lock for a moment.
        if !truncated && !after_fault && self.excuse(slot, net, &out).is_none() {
            self.fail(&format!(
                "retried ADD failed without a cause\n{}",
                out.describe()
            ));
        }
        false
    }

    fn add_fault(&mut self, net: Net) -> During {
        let roll = self.rng.below(100);
        match roll {
            0..=11 if self.on("kill-add") => {
                self.stats.fault("plugin SIGKILL during ADD");
                During::KillPlugin(self.kill_delay("ADD", net))
            }
            12..=15 if self.on("netns-add") => {
                self.stats.fault("netns removed during ADD");
                During::RemoveNetns(self.kill_delay("ADD", net))
            }
            16..=19 if net == Net::Job && self.daemon_up && self.on("kill-jobnetd") => {
                self.stats.fault("jobnetd SIGKILL during ADD");
                self.daemon_down_left = u32::try_from(self.rng.below(3)).unwrap_or(0);
                During::KillJobnetd(self.kill_delay("ADD", net))
            }
            _ => During::Nothing,
        }
    }

    fn pick_rank(&mut self, job: &str) -> u64 {
        let held: Vec<u64> = self
            .slots
            .iter()
            .flatten()
            .chain(self.forgotten.iter())
            .filter(|s| s.job == job)
            .map(|s| s.rank)
            .collect();
        let free: Vec<u64> = (0..RANKS).filter(|r| !held.contains(r)).collect();
        if self.rng.chance(90) {
            if let Some(r) = self.rng.pick(&free) {
                return *r;
            }
        }
        self.rng.below(RANKS)
    }

    fn dev_vf_held(&self, pci: PciAddr) -> bool {
        self.slots
            .iter()
            .flatten()
            .chain(self.forgotten.iter())
            .any(|s| s.dev_vf == Some(pci))
    }

    /// The runtime stops a sandbox: DEL of each network (reverse ADD
    /// order), each retried until it succeeds, then the netns goes.
    fn stop(&mut self, slot: usize, faults: bool) {
        if self.slots[slot].as_ref().is_some_and(|s| s.cache_truncated) {
            self.cache_lost = true;
        }
        if faults && self.rng.chance(10) {
            self.truncate_state(slot);
        }
        if faults
            && self.rng.chance(6)
            && self.on("netns-del")
            && self.slots[slot].as_ref().is_some_and(Sandbox::alive)
        {
            self.stats.fault("netns removed before DEL");
            self.kill_netns(slot);
        }
        let order: Vec<Net> = self.slots[slot]
            .as_ref()
            .map(|s| s.order.iter().rev().copied().collect())
            .unwrap_or_default();
        for net in order {
            if matches!(
                self.slots[slot].as_ref().map(|s| &s.att[net.index()]),
                Some(Att::None)
            ) {
                continue;
            }
            let kill = faults && self.rng.chance(12) && self.on("kill-del");
            self.del(slot, net, kill);
        }
        let sb = self.slots[slot].take().expect("sandbox");
        self.teardown(sb, "DEL");
    }

    /// Removes a sandbox's netns after its DELs (or GC) succeeded: no VF may
    /// be left in it.
    fn teardown(&mut self, mut sb: Sandbox, after: &str) {
        if let Some(ns) = sb.ns.take() {
            let line = format!("teardown of {} ({}) after {after}", sb.cid, sb.ns_name);
            self.trace(&line);
            for r in ns.destroy(&self.fabric, 0) {
                let line = format!(
                    "step {}: {:?} was still in {} as {} after {after} succeeded",
                    self.step, r.vf, sb.ns_name, r.was
                );
                self.trace(&line);
                // Without its cache DEL cannot know the VF; counted below
                // with the VFs that lost their original state.
                if !self.cache_lost {
                    self.stats.left_in_pod.push(line);
                }
            }
            self.sync_sysfs();
        }
    }

    /// CHECK of every live attachment of a sandbox: it must pass while the
    /// pod and jobnetd are well.
    fn check(&mut self, slot: usize) {
        for net in Net::ALL {
            let Some(sb) = self.slots[slot].as_ref() else {
                return;
            };
            let Att::Live(result) = &sb.att[net.index()] else {
                continue;
            };
            let mut conf = self.conf(net, sb);
            conf["prevResult"] = result.clone();
            let inv = self.invocation("CHECK", net, sb, conf);
            let healthy = sb.alive() && (net == Net::Dev || self.daemon_up);
            let out = self.exec("CHECK", net, slot, &inv, During::Nothing);
            if healthy && !out.ok() {
                self.fail(&format!(
                    "CHECK failed on a healthy attachment\n{}",
                    out.describe()
                ));
            }
        }
    }

    /// The runtime ADDs a live attachment again (it lost track of whether
    /// ADD finished, e.g. after a restart). Through jobnetd a healthy one
    /// is answered with the same result; host-local refuses a second
    /// allocation, and then the attachment must be left as it was.
    fn re_add(&mut self, slot: usize) {
        let sb = self.slots[slot].as_ref().expect("sandbox");
        let live: Vec<Net> = Net::ALL
            .into_iter()
            .filter(|n| matches!(sb.att[n.index()], Att::Live(_)))
            .collect();
        let Some(&net) = self.rng.pick(&live) else {
            return;
        };
        let before = match &sb.att[net.index()] {
            Att::Live(r) => Self::result_addrs(r),
            _ => Vec::new(),
        };
        let healthy = sb.alive() && (net == Net::Dev || self.daemon_up);
        let out = self.add(slot, net, During::Nothing);
        if out.ok() {
            let now = match &self.slots[slot].as_ref().expect("sandbox").att[net.index()] {
                Att::Live(r) => Self::result_addrs(r),
                _ => Vec::new(),
            };
            if healthy && now != before {
                self.fail(&format!(
                    "repeated ADD of a live attachment changed its addresses: {before:?} -> {now:?}"
                ));
            }
            return;
        }
        if healthy && net == Net::Job {
            self.fail(&format!(
                "repeated ADD of a healthy attachment failed\n{}",
                out.describe()
            ));
        }
        if healthy {
            // Refused by host-local: the pod keeps what it had.
            self.check(slot);
        }
    }

    /// GC of one network with every attachment the runtime knows listed.
    fn gc(&mut self, net: Net) {
        let valid: Vec<Value> = self
            .slots
            .iter()
            .flatten()
            .filter(|s| !matches!(s.att[net.index()], Att::None))
            .map(|s| json!({"containerID": s.cid, "ifname": net.ifname()}))
            .collect();
        let mut conf = self.gc_conf(net);
        conf["cni.dev/valid-attachments"] = Value::Array(valid);
        let inv = Invocation::gc(conf)
            .var("CNI_PATH", "/usr/lib/cni")
            .var(
                "JOBNET_SYSFS_ROOT",
                &self.fabric.node(0).expect("node").sysfs_root,
            )
            .var("JOBNET_STATE_DIR", self.plugin_state.path());
        let out = self.exec("GC", net, 0, &inv, During::Nothing);
        let may_fail = net == Net::Job && !self.daemon_up;
        if !out.ok() && !may_fail {
            self.fail(&format!("GC failed\n{}", out.describe()));
        }
        // Every listed attachment must still be in its pod.
        for sb in self.slots.iter().flatten() {
            if !matches!(sb.att[net.index()], Att::Live(_)) || !sb.alive() {
                continue;
            }
            let ifs = pod_addresses(&jobnet_tests::fabric::Netns::Named(sb.ns_name.clone()));
            let links = jobnet_tests::fabric::ip::links(&jobnet_tests::fabric::Netns::Named(
                sb.ns_name.clone(),
            ))
            .unwrap_or_default();
            if !links.iter().any(|l| l.ifname == net.ifname()) {
                self.fail(&format!(
                    "GC took {} of {}, which it listed as valid (pod has {ifs:?})",
                    net.ifname(),
                    sb.cid
                ));
            }
        }
        if out.ok() {
            let (gone, keep): (Vec<Sandbox>, Vec<Sandbox>) = std::mem::take(&mut self.forgotten)
                .into_iter()
                .partition(|s| !matches!(s.att[net.index()], Att::None));
            self.forgotten = keep;
            if gone.iter().any(|s| s.cache_truncated) {
                self.cache_lost = true;
            }
            for sb in gone {
                self.book.drop_holder(&sb.holder(net));
                self.teardown(sb, "GC");
            }
        }
    }

    /// The runtime loses a sandbox (only in the job network: host-local
    /// here has no GC to hand its lease back).
    fn forget(&mut self, slot: usize) {
        let sb = self.slots[slot].take().expect("sandbox");
        self.stats.fault("sandbox forgotten by the runtime");
        self.forgotten.push(sb);
    }

    // ---- the stream ----

    fn occupied(&self, pred: impl Fn(&Sandbox) -> bool) -> Vec<usize> {
        (0..PODS)
            .filter(|&i| self.slots[i].as_ref().is_some_and(&pred))
            .collect()
    }

    fn action(&mut self) {
        self.cache_lost = false;
        #[derive(Clone, Copy, Debug)]
        enum A {
            Create,
            Stop,
            Check,
            ReAdd,
            Gc(Net),
            KillDaemon,
            KillNetns,
            Forget,
        }
        let free: Vec<usize> = (0..PODS).filter(|&i| self.slots[i].is_none()).collect();
        let any = self.occupied(|_| true);
        let live = self.occupied(|s| s.alive() && s.att.iter().any(|a| matches!(a, Att::Live(_))));
        let job_only = self.occupied(|s| {
            s.alive() && matches!(s.att[0], Att::Live(_)) && matches!(s.att[1], Att::None)
        });
        let w = |ok: bool, w: u64| if ok { w } else { 0 };
        let choice = self
            .rng
            .weighted(&[
                (A::Create, w(!free.is_empty(), 30)),
                (A::Stop, w(!any.is_empty(), 22)),
                (A::Check, w(!live.is_empty(), 12)),
                (A::ReAdd, w(!live.is_empty() && self.on("repeat-add"), 4)),
                (A::Gc(Net::Job), 5),
                (A::Gc(Net::Dev), 2),
                (
                    A::KillDaemon,
                    w(self.daemon_up && self.on("kill-jobnetd"), 3),
                ),
                (A::KillNetns, w(!live.is_empty() && self.on("netns-del"), 3)),
                (A::Forget, w(!job_only.is_empty() && self.on("forget"), 2)),
            ])
            .expect("some action");
        let name = match choice {
            A::Create => "create sandbox",
            A::Stop => "stop sandbox",
            A::Check => "check sandbox",
            A::ReAdd => "repeat ADD",
            A::Gc(Net::Job) => "GC job network",
            A::Gc(Net::Dev) => "GC delegated network",
            A::KillDaemon => "kill jobnetd",
            A::KillNetns => "kill netns",
            A::Forget => "forget sandbox",
        };
        *self.stats.actions.entry(name).or_default() += 1;
        let line = format!("action: {name}; daemon up: {}", self.daemon_up);
        self.trace(&line);
        match choice {
            A::Create => {
                let slot = *self.rng.pick(&free).expect("free slot");
                self.create(slot);
            }
            A::Stop => {
                let slot = *self.rng.pick(&any).expect("sandbox");
                self.stop(slot, true);
            }
            A::Check => {
                let slot = *self.rng.pick(&live).expect("sandbox");
                self.check(slot);
            }
            A::ReAdd => {
                let slot = *self.rng.pick(&live).expect("sandbox");
                self.re_add(slot);
            }
            A::Gc(net) => self.gc(net),
            A::KillDaemon => {
                self.stats.fault("jobnetd SIGKILL while idle");
                self.jobnetd.kill9();
                self.daemon_up = false;
                self.daemon_down_left = 1 + u32::try_from(self.rng.below(3)).unwrap_or(0);
            }
            A::KillNetns => {
                let slot = *self.rng.pick(&live).expect("sandbox");
                self.stats.fault("netns removed under a live pod");
                self.kill_netns(slot);
            }
            A::Forget => {
                let slot = *self.rng.pick(&job_only).expect("sandbox");
                self.forget(slot);
            }
        }
        self.after_action();
    }

    fn after_action(&mut self) {
        if !self.daemon_up {
            if self.daemon_down_left == 0 {
                self.start_daemon();
            } else {
                self.daemon_down_left -= 1;
            }
        }
        self.scan_addresses();
        self.check_idle_vfs();
    }

    /// The VFs some sandbox the runtime knows holds (ADD results, the
    /// device plugin's choice): the others must be in the node as before.
    fn held_vfs(&self) -> HashSet<VfId> {
        self.slots
            .iter()
            .flatten()
            .chain(self.forgotten.iter())
            .flat_map(|sb| self.vfs_of(sb))
            .collect()
    }

    /// The VFs `sb` holds: its ADD results' and the device plugin's choice.
    fn vfs_of(&self, sb: &Sandbox) -> Vec<VfId> {
        let mut pcis: Vec<PciAddr> = sb.dev_vf.into_iter().collect();
        for a in &sb.att {
            if let Att::Live(r) = a {
                pcis.extend(
                    r["interfaces"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|i| i["pciID"].as_str()?.parse::<PciAddr>().ok()),
                );
            }
        }
        pcis.into_iter()
            .filter_map(|p| self.fabric.vf_by_pci(0, p).map(|v| v.id))
            .collect()
    }

    /// Every VF no sandbox holds is back in the node as it was before the
    /// stream; one that is not is counted at the step that left it so (a
    /// leak, or a VF whose cache was truncated), then put back by hand so
    /// that later steps are judged on their own.
    fn check_idle_vfs(&mut self) {
        let here = match self.sync.sync(&self.fabric, 0) {
            Ok(h) => h,
            Err(e) => panic!("links of the node: {e}"),
        };
        let held = self.held_vfs();
        let node_ns = self.fabric.node(0).expect("node").ip_netns();
        for b in self.base.clone() {
            if held.contains(&b.vf) {
                continue;
            }
            let Some(now) = here.get(&b.vf) else {
                if self.missing.insert(b.vf) {
                    let line = format!(
                        "step {}: {} ({:?}) is not in the node",
                        self.step, b.name, b.vf
                    );
                    self.trace(&line);
                    self.stats.vf_leaks.push(line);
                }
                continue;
            };
            self.missing.remove(&b.vf);
            let lost = self.lost_vfs.remove(&b.vf);
            let Some(diff) = b.differs(now) else { continue };
            let line = format!("step {}: {diff}", self.step);
            self.trace(&line);
            if self.cache_lost || lost {
                self.stats.lost_with_cache.push(line);
            } else {
                self.stats.vf_leaks.push(line);
            }
            if let Err(e) = ip::batch(&node_ns, &b.repair_lines(now), false, false) {
                panic!("putting {} back: {e}", b.name);
            }
        }
        self.sync_sysfs();
    }

    fn start_daemon(&mut self) {
        self.jobnetd.kill9();
        self.jobnetd.spawn();
        self.jobnetd.wait_up();
        self.daemon_up = true;
    }

    /// What every live pod has now: no address twice on one rail.
    fn scan_addresses(&mut self) {
        let mut pods = BTreeMap::new();
        for sb in self.slots.iter().flatten().chain(self.forgotten.iter()) {
            if sb.alive() {
                let ns = jobnet_tests::fabric::Netns::Named(sb.ns_name.clone());
                pods.insert(sb.ns_name.clone(), pod_addresses(&ns));
            }
        }
        let dups = audit::kernel_duplicates(&pods);
        if !dups.is_empty() {
            let when = format!("step {} (kernel)", self.step);
            self.book
                .duplicates
                .extend(dups.into_iter().map(|d| format!("{when}: {d}")));
        }
    }

    fn run_stream(&mut self) {
        let started = Instant::now();
        let mut next_report = 500;
        while self.stats.total_ops() < self.target_ops {
            self.step += 1;
            self.action();
            if self.stats.total_ops() >= next_report {
                say(&format!(
                    "{} plugin runs after {:?}",
                    self.stats.total_ops(),
                    started.elapsed()
                ));
                next_report += 500;
            }
        }
    }

    /// After the stream: DEL what the runtime holds, GC, jobnetd's startup
    /// reconciliation; then wait (bounded) for jobnetd to hold nothing.
    fn settle(&mut self) {
        if !self.daemon_up {
            self.start_daemon();
        }
        for slot in 0..PODS {
            if self.slots[slot].is_some() {
                self.stop(slot, false);
            }
        }
        self.gc(Net::Job);
        self.gc(Net::Dev);
        self.jobnetd.restart();
        let deadline = Instant::now() + SETTLE;
        loop {
            let atts = self.jobnetd.attachments();
            let held = self.jobnetd.held_vfs();
            let clean = matches!((&atts, &held), (Ok(a), Ok(h)) if a.is_empty() && h.is_empty());
            if clean || Instant::now() >= deadline {
                break;
            }
            // The runtime's periodic GC: attachments still in jobnetd's
            // grace period are released by a later one.
            std::thread::sleep(Duration::from_millis(500));
            self.gc(Net::Job);
        }
        self.sync_sysfs();
    }
}

/// The leftovers the audit found, by kind.
struct Leaks(Vec<(&'static str, Vec<String>)>);

impl Leaks {
    fn summary(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={}", v.len()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn details(&self) -> String {
        self.0
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}:\n  {}", v.join("\n  ")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn total(&self) -> usize {
        self.0.iter().map(|(_, v)| v.len()).sum()
    }
}

fn audit(s: &Suite) -> Leaks {
    let node_ns = s.fabric.node(0).expect("node").ip_netns();
    let daemon = {
        let mut v: Vec<String> = match s.jobnetd.attachments() {
            Ok(a) => a
                .iter()
                .map(|a| format!("attachment {} {}", a["containerID"], a["ifname"]))
                .collect(),
            Err(e) => vec![format!("cannot list attachments: {e}")],
        };
        match s.jobnetd.held_vfs() {
            Ok(h) => v.extend(h.into_iter().map(|h| format!("VF {h}"))),
            Err(e) => v.push(format!("cannot list VFs: {e}")),
        }
        v
    };
    let paths = |v: Vec<PathBuf>| -> Vec<String> {
        v.into_iter().map(|p| p.display().to_string()).collect()
    };
    Leaks(vec![
        (
            "vfs",
            s.stats
                .vf_leaks
                .iter()
                .cloned()
                .chain(audit::vf_leaks(&s.fabric, 0, &s.base))
                .collect(),
        ),
        ("vfs_left_in_pods", s.stats.left_in_pod.clone()),
        ("daemon_records", daemon),
        (
            "leases",
            paths(audit::host_local_leases(s.host_local.path(), &s.net_dev)),
        ),
        (
            "state_files",
            paths(audit::files_under(s.plugin_state.path())),
        ),
        (
            "devinfo_files",
            paths(audit::devinfo_files(&[&s.net_job, &s.net_dev])),
        ),
        ("job_links", audit::job_links(&node_ns)),
        ("duplicate_addresses", s.book.duplicates.clone()),
    ])
}

#[test]
fn random_faults_leave_nothing_behind() {
    require_reference_plugin("host-local");
    let seed = seed_from_env("JOBNET_FAULT_SEED");
    let ops = count_from_env("JOBNET_FAULT_OPS", DEFAULT_OPS);
    say(&format!(
        "JOBNET_FAULT_SEED={seed} JOBNET_FAULT_OPS={ops} JOBNET_FAULT_SKIP={}",
        skipped_faults().join(",")
    ));
    // Built before the clock starts: a first build can take minutes.
    binaries();
    let started = Instant::now();
    let mut s = Suite::new(seed, ops);
    s.run_stream();
    let stream = started.elapsed();
    say(&format!(
        "stream: {} plugin runs in {} steps, {stream:?}; peak {} live addresses; jobnetd started {} times",
        s.stats.total_ops(),
        s.step,
        s.book.peak,
        s.jobnetd.starts
    ));
    s.settle();
    let leaks = audit(&s);
    say(&format!("operations: {}", fmt_counts(&s.stats.ops)));
    say(&format!("actions: {}", fmt_counts(&s.stats.actions)));
    say(&format!("faults: {}", fmt_counts(&s.stats.faults)));
    say(&format!("outcomes: {}", fmt_counts(&s.stats.outcomes)));
    say(&format!(
        "VFs the kernel returned from removed netns: {}",
        s.stats.returned_by_kernel
    ));
    say(&format!(
        "VFs whose original state went with a truncated cache (put back by the test): {}",
        s.stats.lost_with_cache.len()
    ));
    say(&format!("leaks: {}", leaks.summary()));
    say(&format!("total: {:?}", started.elapsed()));
    assert!(
        leaks.total() == 0,
        "seed {seed} (JOBNET_FAULT_SEED) left things behind:\n{}\njobnetd log (tail):\n{}",
        leaks.details(),
        s.jobnetd.log_tail(60)
    );
}

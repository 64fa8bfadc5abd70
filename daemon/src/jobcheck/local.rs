//! One node's probes for one preflight: finds its own pods of the job and
//! another job's pod per rail among the node's attachments, then probes
//! every (rank, rail) on its own thread inside the pod's netns, off the
//! async workers.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use jobnet_api::{AttachmentState, PageRequest, PreflightCheck, PreflightFailure};
use jobnet_netlink::Netns;

use super::plan::peers_of;
use super::probe::{self, ForeignPod, Peer, RailOutcome, RailProbe};
use super::roster::rail_interfaces;
use super::task::{IfaceSeen, NodeFinding, NodeResult, Target, Task};
use super::JobSource;

/// Pages of this node's attachments read at most (the node's attachments
/// are bounded by its VFs).
const MAX_PAGES: usize = 64;
/// Probe threads running at once.
const THREADS: usize = 64;

/// A rank's interface on this node.
#[derive(Debug, Clone)]
struct LocalIf {
    netns: String,
    pod_ifname: String,
    mtu: Option<u32>,
}

/// What this node holds: the job's interfaces by (rank, rail), and the
/// first IPv4 address of another job's pod by rail.
#[derive(Debug, Default)]
struct NodeView {
    mine: HashMap<(u32, u32), LocalIf>,
    foreign: BTreeMap<u32, ForeignPod>,
}

/// Reads this node's committed attachments, a page at a time.
async fn node_view<J: JobSource>(source: &J, job: &str) -> NodeView {
    let mut view = NodeView::default();
    let mut page = PageRequest::default();
    for _ in 0..MAX_PAGES {
        let got = match source.local_attachments(page.clone()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "listing this node's attachments for a preflight");
                break;
            }
        };
        for a in got
            .items
            .iter()
            .filter(|a| a.state == AttachmentState::Committed)
        {
            for (rail, pod_ifname, addr) in rail_interfaces(&a.ifname, &a.vfs, &a.addresses) {
                match (a.job == job, a.rank, addr) {
                    (true, Some(rank), _) => {
                        view.mine.entry((rank, rail)).or_insert_with(|| LocalIf {
                            netns: a.netns.clone(),
                            pod_ifname,
                            mtu: a.mtu,
                        });
                    }
                    (false, _, Some(addr)) => {
                        view.foreign.entry(rail).or_insert_with(|| ForeignPod {
                            job: a.job.clone(),
                            addr,
                        });
                    }
                    _ => {}
                }
            }
        }
        match got.next {
            Some(t) => page.token = Some(t),
            None => break,
        }
    }
    view
}

/// One probe to run: the pod's netns path and what to do there.
type Work = (String, RailProbe);

/// Probes this node's ranks of `task`, finishing by `until`, or as soon as
/// `stop` is set.
pub async fn probe_node<J: JobSource>(
    source: &J,
    task: &Task,
    until: Instant,
    stop: Arc<AtomicBool>,
) -> NodeResult {
    let me = source.node_name().to_owned();
    let mut result = NodeResult {
        node: me.clone(),
        ..Default::default()
    };
    let targets = task.targets();
    let mut by_rail: BTreeMap<u32, HashMap<u32, Ipv4Addr>> = BTreeMap::new();
    for t in &targets {
        by_rail.entry(t.rail).or_default().insert(t.rank, t.addr);
    }
    let view = node_view(source, &task.job).await;
    for r in by_rail.keys().filter(|r| !view.foreign.contains_key(r)) {
        result.skipped.push(format!(
            "isolation on rail {r} of node {me}: no other job's pod on the node"
        ));
    }
    let mut work: Vec<Work> = Vec::new();
    for t in targets.iter().filter(|t| t.node == me) {
        let Some(local) = view.mine.get(&(t.rank, t.rail)) else {
            result.findings.push(unprobed(
                t,
                format!("rank {} is no longer committed on node {me}", t.rank),
            ));
            continue;
        };
        result.job_mtu = result.job_mtu.or(local.mtu);
        let on_rail = by_rail.get(&t.rail).cloned().unwrap_or_default();
        let mut ranks: Vec<u32> = on_rail.keys().copied().collect();
        ranks.sort_unstable();
        let peers = peers_of(t.rank, &ranks, task.seed)
            .into_iter()
            .filter_map(|rank| on_rail.get(&rank).map(|addr| Peer { rank, addr: *addr }))
            .collect();
        work.push((
            local.netns.clone(),
            RailProbe {
                rank: t.rank,
                rail: t.rail,
                ifname: local.pod_ifname.clone(),
                addr: t.addr,
                job_mtu: local.mtu,
                peers,
                foreign: view.foreign.get(&t.rail).cloned(),
                samples: task.samples,
                deadline: until,
                stop: stop.clone(),
            },
        ));
    }
    let entries: usize = work.iter().map(|(_, p)| p.peers.len()).sum();
    if let Some(note) = neighbour_room(&me, entries) {
        result.notes.push(note);
    }
    let outcomes = match tokio::task::spawn_blocking(move || run_all(work)).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "preflight probe threads failed");
            Vec::new()
        }
    };
    for o in outcomes {
        absorb(&mut result, o);
    }
    result
}

/// A rank this node was asked to probe but cannot.
fn unprobed(t: &Target, detail: String) -> NodeFinding {
    NodeFinding {
        failure: PreflightFailure {
            rail: t.rail,
            from_rank: t.rank,
            to_rank: None,
            check: PreflightCheck::Attachment,
            detail,
        },
        other_mac: None,
    }
}

/// The kernel's neighbour table limit (one table for every netns of a
/// kernel; readable where jobnetd runs in the host netns).
const GC_THRESH3: &str = "/proc/sys/net/ipv4/neigh/default/gc_thresh3";

/// A note when this node's kernel cannot hold a neighbour entry for every
/// peer its ranks probe: past the limit new peers are not resolved, which
/// reads as unreachable ranks (and would stall NCCL the same way).
fn neighbour_room(node: &str, entries: usize) -> Option<String> {
    let limit: usize = std::fs::read_to_string(GC_THRESH3)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (entries > limit).then(|| {
        format!(
            "node {node}: its ranks need {entries} neighbour entries, the kernel keeps at most \
             {limit} (net.ipv4.neigh.default.gc_thresh3): raise gc_thresh1/2/3"
        )
    })
}

/// Folds one rail's outcome into the node's result.
fn absorb(result: &mut NodeResult, o: RailOutcome) {
    result.pairs += u64::from(o.pairs);
    if let (Some(mtu), Some(mac)) = (o.mtu, o.mac.clone()) {
        result.ifaces.push(IfaceSeen {
            rank: o.rank,
            rail: o.rail,
            mtu,
            mac,
        });
    }
    result.rtt.extend(o.rtt);
    result
        .findings
        .extend(o.findings.into_iter().map(|f| NodeFinding {
            failure: PreflightFailure {
                rail: o.rail,
                from_rank: o.rank,
                to_rank: f.to_rank,
                check: f.check,
                detail: f.detail,
            },
            other_mac: f.other_mac,
        }));
}

/// Runs every probe, [`THREADS`] at a time, each on a thread inside its
/// pod's netns. Blocking: call it off the async workers.
fn run_all(work: Vec<Work>) -> Vec<RailOutcome> {
    let mut out = Vec::with_capacity(work.len());
    for chunk in work.chunks(THREADS) {
        std::thread::scope(|s| {
            let running: Vec<_> = chunk
                .iter()
                .map(|(path, p)| (p, s.spawn(move || run_in(path, p))))
                .collect();
            for (p, h) in running {
                out.push(
                    h.join()
                        .unwrap_or_else(|_| failed(p, "the probe thread panicked".to_owned())),
                );
            }
        });
    }
    out
}

/// One probe inside the netns at `path`.
fn run_in(path: &str, p: &RailProbe) -> RailOutcome {
    let ns = match Netns::open(path) {
        Ok(ns) => ns,
        Err(e) => return failed(p, format!("cannot open the pod's netns {path}: {e}")),
    };
    ns.run(|| probe::run(p))
        .unwrap_or_else(|e| failed(p, format!("cannot enter the pod's netns {path}: {e}")))
}

/// An outcome for a probe that could not run at all.
fn failed(p: &RailProbe, why: String) -> RailOutcome {
    let mut o = RailOutcome::new(p);
    o.findings.push(probe::Finding {
        to_rank: None,
        check: PreflightCheck::Link,
        detail: why,
        other_mac: None,
    });
    o
}

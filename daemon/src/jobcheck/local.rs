//! One node's probes for one preflight: finds the node's ranks' pods and
//! another job's pod per rail, then probes every (rank, rail) on its own
//! thread inside the pod's netns, off the async workers.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use jobnet_api::{
    ApiError, Attachment, AttachmentKey, AttachmentState, PageRequest, PreflightCheck,
    PreflightFailure,
};
use jobnet_netlink::Netns;

use super::plan::peers_of;
use super::probe::{self, ForeignPod, Peer, RailOutcome, RailProbe};
use super::task::{IfaceSeen, NodeFinding, NodeResult, Target, Task};
use super::JobSource;

/// Pages of this node's attachments read to find another job's pod.
const FOREIGN_PAGES: usize = 4;
/// Probe threads running at once.
const THREADS: usize = 64;

/// The first IPv4 address on each rail of another job's committed pod on
/// this node, by rail.
async fn foreign_pods<J: JobSource>(
    source: &J,
    job: &str,
    rails: &[u32],
) -> BTreeMap<u32, ForeignPod> {
    let mut out = BTreeMap::new();
    let mut page = PageRequest::default();
    for _ in 0..FOREIGN_PAGES {
        let got = match source.local_attachments(page.clone()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "listing attachments for the isolation probe");
                break;
            }
        };
        for a in got
            .items
            .iter()
            .filter(|a| a.job != job && a.state == AttachmentState::Committed)
        {
            for addr in &a.addresses {
                if let IpAddr::V4(v4) = addr.address.addr() {
                    out.entry(addr.rail).or_insert_with(|| ForeignPod {
                        job: a.job.clone(),
                        addr: v4,
                    });
                }
            }
        }
        if rails.iter().all(|r| out.contains_key(r)) || got.next.is_none() {
            break;
        }
        page.token = got.next;
    }
    out
}

/// One probe to run: the pod's netns path and what to do there.
type Work = (String, RailProbe);

fn finding(t: &Target, to_rank: Option<u32>, check: PreflightCheck, detail: String) -> NodeFinding {
    NodeFinding {
        failure: PreflightFailure {
            rail: t.rail,
            from_rank: t.rank,
            to_rank,
            check,
            detail,
        },
        other_mac: None,
    }
}

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
    let mine: Vec<&Target> = task.targets.iter().filter(|t| t.node == me).collect();
    let mut by_rail: BTreeMap<u32, Vec<&Target>> = BTreeMap::new();
    for t in &task.targets {
        by_rail.entry(t.rail).or_default().push(t);
    }
    let rails: Vec<u32> = by_rail.keys().copied().collect();
    let foreign = foreign_pods(source, &task.job, &rails).await;
    for r in rails.iter().filter(|r| !foreign.contains_key(r)) {
        result.skipped.push(format!(
            "isolation on rail {r} of node {me}: no other job's pod on the node"
        ));
    }
    let mut atts: HashMap<AttachmentKey, Result<Attachment, ApiError>> = HashMap::new();
    let mut work: Vec<Work> = Vec::new();
    for t in mine {
        let key = AttachmentKey::new(t.container_id.clone(), t.ifname.clone());
        if !atts.contains_key(&key) {
            let a = source.attachment(key.clone()).await;
            atts.insert(key.clone(), a);
        }
        let att = match atts.get(&key) {
            Some(Ok(a)) if a.job != task.job => {
                let d = format!("attachment {key} on node {me} now holds job {:?}", a.job);
                result
                    .findings
                    .push(finding(t, None, PreflightCheck::Attachment, d));
                continue;
            }
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                let d = format!(
                    "attachment {key} is not readable on node {me}: {}",
                    e.message
                );
                result
                    .findings
                    .push(finding(t, None, PreflightCheck::Attachment, d));
                continue;
            }
            None => continue,
        };
        result.job_mtu = result.job_mtu.or(att.mtu);
        let on_rail = by_rail.get(&t.rail).map(Vec::as_slice).unwrap_or(&[]);
        let addr_of: HashMap<u32, Ipv4Addr> = on_rail.iter().map(|x| (x.rank, x.addr)).collect();
        let mut ranks: Vec<u32> = addr_of.keys().copied().collect();
        ranks.sort_unstable();
        let peers = peers_of(t.rank, &ranks, task.seed)
            .into_iter()
            .filter_map(|rank| addr_of.get(&rank).map(|addr| Peer { rank, addr: *addr }))
            .collect();
        work.push((
            att.netns.clone(),
            RailProbe {
                rank: t.rank,
                rail: t.rail,
                ifname: t.pod_ifname.clone(),
                addr: t.addr,
                job_mtu: att.mtu,
                peers,
                foreign: foreign.get(&t.rail).cloned(),
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

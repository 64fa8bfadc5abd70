//! Gathers the nodes' results of one preflight into the report: names the
//! rank behind a duplicate address, compares every interface's MTU with the
//! job's, turns silent nodes into failures, and sums the round trips.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jobnet_api::{PairRtt, PreflightCheck, PreflightFailure, PreflightReport, RailRtt};

use super::roster::Roster;
use super::task::{NodeResult, Target};

/// What the gatherer knows besides the results.
#[derive(Debug)]
pub struct Gathered<'a> {
    /// The job.
    pub job: &'a str,
    /// What was probed.
    pub roster: &'a Roster,
    /// The results that arrived.
    pub results: Vec<NodeResult>,
    /// Why each node without a result sent none.
    pub silent: BTreeMap<String, String>,
    /// Wall time of the run.
    pub seconds: f64,
}

/// The job's MTU on `rail`: the pool's when a node reports it, else what
/// most of the rail's interfaces have.
fn job_mtu(results: &[NodeResult], mtus: &[(u32, u32, u32)], rail: u32) -> Option<(u32, bool)> {
    if let Some(m) = results.iter().find_map(|r| r.job_mtu) {
        return Some((m, true));
    }
    let mut count: BTreeMap<u32, usize> = BTreeMap::new();
    for (_, r, m) in mtus {
        if *r == rail {
            *count.entry(*m).or_default() += 1;
        }
    }
    // Most common; the larger on a tie (a lowered MTU is the usual fault).
    count
        .into_iter()
        .max_by_key(|(m, n)| (*n, *m))
        .map(|(m, _)| (m, false))
}

/// MTU settings that differ from the job's, where the probes did not
/// already say so for that rank.
fn mtu_settings(results: &[NodeResult], failures: &[PreflightFailure]) -> Vec<PreflightFailure> {
    let mtus: Vec<(u32, u32, u32)> = results
        .iter()
        .flat_map(|r| r.ifaces.iter().map(|i| (i.rank, i.rail, i.mtu)))
        .collect();
    let said: BTreeSet<(u32, u32)> = failures
        .iter()
        .filter(|f| f.check == PreflightCheck::Mtu && f.to_rank.is_none())
        .map(|f| (f.rail, f.from_rank))
        .collect();
    let rails: BTreeSet<u32> = mtus.iter().map(|(_, r, _)| *r).collect();
    let mut out = Vec::new();
    for rail in rails {
        let Some((want, from_pool)) = job_mtu(results, &mtus, rail) else {
            continue;
        };
        for (rank, _, mtu) in mtus.iter().filter(|(_, r, m)| *r == rail && *m != want) {
            if said.contains(&(rail, *rank)) {
                continue;
            }
            let whose = if from_pool {
                "the pool's"
            } else {
                "most ranks'"
            };
            out.push(PreflightFailure {
                rail,
                from_rank: *rank,
                to_rank: None,
                check: PreflightCheck::Mtu,
                detail: format!("its interface has MTU {mtu}, {whose} is {want}"),
            });
        }
    }
    out
}

/// Per-rail summary of the pairs' round trips.
fn rail_rtt(rtt: &[PairRtt]) -> Vec<RailRtt> {
    let mut by_rail: BTreeMap<u32, Vec<&PairRtt>> = BTreeMap::new();
    for p in rtt.iter().filter(|p| p.received > 0) {
        by_rail.entry(p.rail).or_default().push(p);
    }
    by_rail
        .into_iter()
        .map(|(rail, pairs)| {
            let mut p50: Vec<u32> = pairs.iter().map(|p| p.p50_us).collect();
            p50.sort_unstable();
            RailRtt {
                rail,
                pairs: u32::try_from(pairs.len()).unwrap_or(u32::MAX),
                p50_us: p50.get(p50.len() / 2).copied().unwrap_or(0),
                p99_us: pairs.iter().map(|p| p.p99_us).max().unwrap_or(0),
            }
        })
        .collect()
}

/// The report of a preflight.
pub fn report(g: Gathered<'_>) -> PreflightReport {
    let mut failures = g.roster.problems.clone();
    // Which rank an interface's MAC belongs to, to name a duplicate's holder.
    let macs: HashMap<&str, (u32, u32)> = g
        .results
        .iter()
        .flat_map(|r| r.ifaces.iter().map(|i| (i.mac.as_str(), (i.rank, i.rail))))
        .collect();
    for r in &g.results {
        for f in &r.findings {
            let mut failure = f.failure.clone();
            if let Some(mac) = &f.other_mac {
                match macs.get(mac.as_str()) {
                    Some((rank, rail)) => {
                        failure.detail = format!("{} (rank {rank}, rail {rail})", failure.detail)
                    }
                    None => failure.detail = format!("{} (not a rank of this job)", failure.detail),
                }
            }
            failures.push(failure);
        }
    }
    failures.extend(mtu_settings(&g.results, &failures));
    for (node, why) in &g.silent {
        let on_node = g.roster.targets.iter().filter(|t| &t.node == node);
        failures.extend(on_node.map(|t: &Target| PreflightFailure {
            rail: t.rail,
            from_rank: t.rank,
            to_rank: None,
            check: PreflightCheck::NoResult,
            detail: format!("node {node}: {why}"),
        }));
    }
    failures.sort_by_key(|f| {
        (
            f.rail,
            f.from_rank,
            f.to_rank.map_or(0, |t| u64::from(t) + 1),
            f.check,
        )
    });
    failures.dedup();
    let mut rtt: Vec<PairRtt> = g
        .results
        .iter()
        .flat_map(|r| r.rtt.iter().copied())
        .collect();
    rtt.sort_by_key(|p| (p.rail, p.from_rank, p.to_rank));
    let mut skipped: Vec<String> = g.results.iter().flat_map(|r| r.skipped.clone()).collect();
    skipped.sort();
    let mut notes: Vec<String> = g.results.iter().flat_map(|r| r.notes.clone()).collect();
    notes.sort();
    let ranks: BTreeSet<u32> = g.roster.targets.iter().map(|t| t.rank).collect();
    let mut nodes: Vec<String> = g.results.iter().map(|r| r.node.clone()).collect();
    nodes.sort();
    PreflightReport {
        job: g.job.to_owned(),
        ok: failures.is_empty(),
        pairs: g.results.iter().map(|r| r.pairs).sum(),
        seconds: (g.seconds * 1000.0).round() / 1000.0,
        ranks: u32::try_from(ranks.len()).unwrap_or(u32::MAX),
        rails: g.roster.rails.clone(),
        nodes,
        rail_rtt: rail_rtt(&rtt),
        rtt,
        failures,
        skipped,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::super::roster::{roster, tests as fixtures};
    use super::super::task::{IfaceSeen, NodeFinding};
    use super::*;
    use jobnet_api::AttachmentState;

    fn seen(rank: u32, rail: u32, mtu: u32) -> IfaceSeen {
        IfaceSeen {
            rank,
            rail,
            mtu,
            mac: format!("02:00:00:00:{rank:02x}:{rail:02x}"),
        }
    }

    #[test]
    fn duplicates_name_their_holder_mtus_are_compared_and_silence_fails() {
        let d = fixtures::detail(
            1,
            (0..4)
                .map(|r| fixtures::member(r, &format!("n{}", r / 2), 1, AttachmentState::Committed))
                .collect(),
        );
        let ros = roster(&d, None);
        let dup = NodeFinding {
            failure: PreflightFailure {
                rail: 0,
                from_rank: 0,
                to_rank: None,
                check: PreflightCheck::DuplicateAddress,
                detail: "10.0.0.2 is also answered by 02:00:00:00:01:00".into(),
            },
            other_mac: Some("02:00:00:00:01:00".into()),
        };
        let n0 = NodeResult {
            node: "n0".into(),
            findings: vec![dup],
            ifaces: vec![seen(0, 0, 1500), seen(1, 0, 1400)],
            pairs: 6,
            ..Default::default()
        };
        let g = Gathered {
            job: "j",
            roster: &ros,
            results: vec![n0],
            silent: [("n1".to_string(), "no result in 5 s".to_string())].into(),
            seconds: 1.23456,
        };
        let r = report(g);
        assert!(!r.ok);
        assert_eq!(r.seconds, 1.235);
        let lines: Vec<String> = r.failures.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "rail 0: rank 0: duplicate-address: 10.0.0.2 is also answered by 02:00:00:00:01:00 (rank 1, rail 0)",
                "rail 0: rank 1: mtu: its interface has MTU 1400, most ranks' is 1500",
                "rail 0: rank 2: no-result: node n1: no result in 5 s",
                "rail 0: rank 3: no-result: node n1: no result in 5 s",
            ]
        );
        assert_eq!(r.pairs, 6);
        assert_eq!(r.ranks, 4);
    }

    #[test]
    fn a_clean_run_is_ok_and_sums_round_trips_per_rail() {
        let d = fixtures::detail(
            1,
            vec![fixtures::member(0, "n0", 1, AttachmentState::Committed)],
        );
        let ros = roster(&d, None);
        let pair = |to, p50, p99| PairRtt {
            rail: 0,
            from_rank: 0,
            to_rank: to,
            p50_us: p50,
            p99_us: p99,
            sent: 4,
            received: 4,
        };
        let n0 = NodeResult {
            node: "n0".into(),
            job_mtu: Some(1500),
            ifaces: vec![seen(0, 0, 1500)],
            rtt: vec![pair(2, 30, 90), pair(1, 10, 20), pair(3, 20, 400)],
            pairs: 3,
            ..Default::default()
        };
        let r = report(Gathered {
            job: "j",
            roster: &ros,
            results: vec![n0],
            silent: BTreeMap::new(),
            seconds: 0.5,
        });
        assert!(r.ok, "{:?}", r.failures);
        assert_eq!(
            r.rtt.iter().map(|p| p.to_rank).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(
            r.rail_rtt,
            vec![RailRtt {
                rail: 0,
                pairs: 3,
                p50_us: 20,
                p99_us: 400
            }]
        );
    }
}

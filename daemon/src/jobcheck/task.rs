//! What a preflight posts in the store: the request every node reads (the
//! job's ranks per rail as the asking node saw them, so every node probes
//! the same set) and the result each node writes back.

use std::net::Ipv4Addr;

use jobnet_api::{PairRtt, PreflightFailure};
use serde::{Deserialize, Serialize};

/// Largest result a node posts; past it the per-pair round trips are left
/// out (the failures are what must arrive).
pub const MAX_RESULT_BYTES: usize = 1 << 20;

/// One rank's address on one rail, and the node holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The rank.
    pub rank: u32,
    /// The rail.
    pub rail: u32,
    /// The node holding it.
    pub node: String,
    /// Its IPv4 address on the rail.
    pub addr: Ipv4Addr,
}

/// A preflight request, as posted under `preflight/<pool>/<job>/<id>`.
/// Targets are packed as `[rank, rail, node index, IPv4 as u32]`, so that a
/// job of thousands of ranks on several rails fits one store value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The job.
    pub job: String,
    /// The node that asked (and gathers the results).
    pub coordinator: String,
    /// When it was posted (ms since the epoch, the coordinator's clock).
    pub created_ms: u64,
    /// The whole run's deadline, from `created_ms`.
    pub timeout_ms: u64,
    /// How long a node may probe, from when it notices the request.
    pub budget_ms: u64,
    /// Timed requests per pair.
    pub samples: u32,
    /// Seed of the peer sample of large jobs.
    pub seed: u64,
    /// Nodes holding ranks.
    nodes: Vec<String>,
    /// Every rank's address on every rail.
    targets: Vec<[u32; 4]>,
}

impl Task {
    /// A request to probe `targets`; the other fields are for the caller to set.
    pub fn new(job: &str, coordinator: &str, targets: &[Target]) -> Self {
        let mut nodes: Vec<String> = targets.iter().map(|t| t.node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        let packed = targets
            .iter()
            .map(|t| {
                let n = nodes.binary_search(&t.node).unwrap_or(0);
                [
                    t.rank,
                    t.rail,
                    u32::try_from(n).unwrap_or(u32::MAX),
                    u32::from(t.addr),
                ]
            })
            .collect();
        Self {
            job: job.to_owned(),
            coordinator: coordinator.to_owned(),
            created_ms: 0,
            timeout_ms: 0,
            budget_ms: 0,
            samples: 1,
            seed: 0,
            nodes,
            targets: packed,
        }
    }

    /// The targets (entries naming no node are skipped).
    pub fn targets(&self) -> Vec<Target> {
        self.targets
            .iter()
            .filter_map(|[rank, rail, node, addr]| {
                let node = self.nodes.get(usize::try_from(*node).ok()?)?;
                Some(Target {
                    rank: *rank,
                    rail: *rail,
                    node: node.clone(),
                    addr: Ipv4Addr::from(*addr),
                })
            })
            .collect()
    }

    /// True when `node` holds one of the ranks.
    pub fn names(&self, node: &str) -> bool {
        self.nodes.iter().any(|n| n == node)
    }

    /// True once nobody can still be waiting for this request.
    pub fn stale(&self, now_ms: u64, grace_ms: u64) -> bool {
        now_ms
            > self
                .created_ms
                .saturating_add(self.timeout_ms)
                .saturating_add(grace_ms)
    }
}

/// One failure as a node found it; `other_mac` lets the gatherer name the
/// rank behind a duplicate address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFinding {
    /// The failure.
    #[serde(flatten)]
    pub failure: PreflightFailure,
    /// The MAC that answered for the rank's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_mac: Option<String>,
}

/// What one rank's interface looked like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfaceSeen {
    /// The rank.
    pub rank: u32,
    /// The rail.
    pub rail: u32,
    /// Its MTU.
    pub mtu: u32,
    /// Its MAC.
    pub mac: String,
}

/// A node's result, as posted under `preflight-results/.../<node>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeResult {
    /// The node.
    pub node: String,
    /// The MTU the pool gives the job's attachments, if it sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_mtu: Option<u32>,
    /// Failed checks.
    pub findings: Vec<NodeFinding>,
    /// Interfaces of the node's ranks.
    pub ifaces: Vec<IfaceSeen>,
    /// Round trips per probed pair.
    pub rtt: Vec<PairRtt>,
    /// Pairs probed.
    pub pairs: u64,
    /// Checks that could not run.
    pub skipped: Vec<String>,
    /// What may explain failures on this node.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl NodeResult {
    /// The result as posted: without the round trips when it would be too
    /// large for the store.
    pub fn encode(mut self) -> Vec<u8> {
        let bytes = serde_json::to_vec(&self).unwrap_or_default();
        if bytes.len() <= MAX_RESULT_BYTES {
            return bytes;
        }
        self.rtt.clear();
        self.skipped.push(format!(
            "node {}: per-pair round trips left out (result too large)",
            self.node
        ));
        self.findings.truncate(10_000);
        serde_json::to_vec(&self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_results_drop_their_round_trips() {
        let pair = PairRtt {
            rail: 0,
            from_rank: 1,
            to_rank: 2,
            p50_us: 10,
            p99_us: 20,
            sent: 8,
            received: 8,
        };
        let big = NodeResult {
            node: "n".into(),
            rtt: vec![pair; 30_000],
            ..Default::default()
        };
        let back: NodeResult = serde_json::from_slice(&big.encode()).unwrap();
        assert!(back.rtt.is_empty());
        assert_eq!(back.skipped.len(), 1);
        let small = NodeResult {
            node: "n".into(),
            rtt: vec![pair; 3],
            ..Default::default()
        };
        let back: NodeResult = serde_json::from_slice(&small.clone().encode()).unwrap();
        assert_eq!(back, small);
    }

    #[test]
    fn a_task_is_stale_after_its_timeout_and_grace() {
        let t = Task {
            created_ms: 1000,
            timeout_ms: 500,
            ..Task::new("j", "n0", &[])
        };
        assert!(!t.stale(1600, 200));
        assert!(t.stale(1701, 200));
    }

    #[test]
    fn targets_pack_and_unpack() {
        let t = |rank, rail, node: &str, addr: [u8; 4]| Target {
            rank,
            rail,
            node: node.into(),
            addr: addr.into(),
        };
        let targets = vec![
            t(0, 0, "n1", [10, 0, 0, 2]),
            t(0, 1, "n1", [10, 0, 1, 2]),
            t(1, 0, "n0", [10, 0, 0, 3]),
        ];
        let task = Task::new("j", "n0", &targets);
        let back: Task = serde_json::from_slice(&serde_json::to_vec(&task).unwrap()).unwrap();
        assert_eq!(back.targets(), targets);
        assert!(back.names("n0") && back.names("n1") && !back.names("n2"));
    }
}

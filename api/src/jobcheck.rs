//! Bodies of the job readiness calls: waiting until a job's ranks are
//! attached (`GET /v1/jobs/{job}/wait`) and checking its network end to end
//! (`POST /v1/jobs/{job}/preflight`).
//!
//! The preflight report keeps the snake_case field names launchers already
//! parse (`from_rank`, `to_rank`); the rest of the API is camelCase.

use serde::{Deserialize, Serialize};

/// Longest wait the server grants; longer asks are cut to it.
pub const MAX_WAIT_MS: u64 = 3_600_000;
/// Wait asked for when the query names none.
pub const DEFAULT_WAIT_MS: u64 = 300_000;
/// Most ranks a wait or preflight may name.
pub const MAX_RANKS: u32 = 1 << 20;

/// `GET /v1/jobs/{job}/wait?ranks=N&timeoutMs=T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobWaitQuery {
    /// Ranks `0..ranks` must be attached.
    pub ranks: u32,
    /// How long the server may hold the request (capped at [`MAX_WAIT_MS`]).
    pub timeout_ms: u64,
}

impl JobWaitQuery {
    /// Parses the URL query; `ranks` is required, unknown keys are an error.
    pub fn from_query(query: Option<&str>) -> Result<Self, String> {
        let mut ranks = None;
        let mut timeout_ms = DEFAULT_WAIT_MS;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "ranks" => {
                    ranks = Some(
                        v.parse::<u32>()
                            .ok()
                            .filter(|n| (1..=MAX_RANKS).contains(n))
                            .ok_or_else(|| format!("ranks must be 1-{MAX_RANKS}, not {v:?}"))?,
                    )
                }
                "timeoutMs" => {
                    timeout_ms = v
                        .parse::<u64>()
                        .map_err(|_| format!("timeoutMs must be a number of ms, not {v:?}"))?
                }
                other => return Err(format!("unknown query parameter {other:?}")),
            }
        }
        let ranks = ranks.ok_or_else(|| "the query needs ranks=N".to_string())?;
        Ok(Self { ranks, timeout_ms })
    }

    /// The query string, with its leading `?`.
    pub fn to_query(&self) -> String {
        format!("?ranks={}&timeoutMs={}", self.ranks, self.timeout_ms)
    }
}

/// Why a rank counts as missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingState {
    /// No attachment holds the rank on these rails.
    Absent,
    /// Reserved but not committed yet (the plugin is still at work).
    Reserved,
}

/// One rank that is not attached on every rail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingRank {
    /// The rank.
    pub rank: u32,
    /// Rails it lacks.
    pub rails: Vec<u32>,
    /// Reserved somewhere, or nowhere at all.
    pub state: MissingState,
    /// The node holding its reservation, when reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Answer of `GET /v1/jobs/{job}/wait`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobWaitResponse {
    /// The job.
    pub job: String,
    /// Every rank `0..ranks` is committed on every rail.
    pub ready: bool,
    /// Ranks waited for.
    pub ranks: u32,
    /// The job's rails.
    pub rails: Vec<u32>,
    /// Ranks committed on every rail (any rank number).
    pub attached: u32,
    /// Ranks below `ranks` still missing, lowest first (at most
    /// [`JobWaitResponse::MISSING_LISTED`]).
    pub missing: Vec<MissingRank>,
    /// How many ranks are missing in all.
    pub missing_total: u32,
    /// How long the server waited.
    pub waited_ms: u64,
    /// The wait the server granted (the asked one, capped).
    pub timeout_ms: u64,
}

impl JobWaitResponse {
    /// Most missing ranks one answer lists.
    pub const MISSING_LISTED: usize = 256;
}

/// `POST /v1/jobs/{job}/preflight` (every field optional; an empty body is fine).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreflightRequest {
    /// Whole-run deadline (default 60 s, 2 s to 600 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Timed echo requests per pair (default 8, 1 to 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u32>,
    /// Ranks `0..ranks` must be attached (unset: the ranks recorded now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranks: Option<u32>,
}

/// What a preflight failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreflightCheck {
    /// The rank's pod interface is missing, down or without carrier.
    Link,
    /// The rank is not attached (committed) on the rail.
    Attachment,
    /// No echo reply from the other rank.
    Reachability,
    /// A don't-fragment probe of the job's MTU does not get through, or the
    /// interface's MTU is not the job's.
    Mtu,
    /// Another host answers for the rank's address.
    DuplicateAddress,
    /// Another job's pod on the same node answers.
    Isolation,
    /// The node holding the rank sent no result in time.
    NoResult,
}

impl PreflightCheck {
    /// The name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Link => "link",
            Self::Attachment => "attachment",
            Self::Reachability => "reachability",
            Self::Mtu => "mtu",
            Self::DuplicateAddress => "duplicate-address",
            Self::Isolation => "isolation",
            Self::NoResult => "no-result",
        }
    }
}

/// One failed check. `to_rank` is absent for checks of one rank alone
/// (link, duplicate address, isolation, MTU setting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreflightFailure {
    /// Rail index.
    pub rail: u32,
    /// The rank that probed (or whose check failed).
    pub from_rank: u32,
    /// The rank it probed (`null` for a check of one rank).
    #[serde(default)]
    pub to_rank: Option<u32>,
    /// Which check.
    pub check: PreflightCheck,
    /// What was seen.
    pub detail: String,
}

impl std::fmt::Display for PreflightFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rail {}: rank {}", self.rail, self.from_rank)?;
        if let Some(to) = self.to_rank {
            write!(f, " -> rank {to}")?;
        }
        write!(f, ": {}: {}", self.check.as_str(), self.detail)
    }
}

/// Round-trip times of one probed pair, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRtt {
    /// Rail index.
    pub rail: u32,
    /// The probing rank.
    pub from_rank: u32,
    /// The probed rank.
    pub to_rank: u32,
    /// Median round trip.
    pub p50_us: u32,
    /// 99th percentile round trip (the largest of few samples).
    pub p99_us: u32,
    /// Timed requests sent.
    pub sent: u16,
    /// Replies received.
    pub received: u16,
}

/// Per-rail summary of the round trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RailRtt {
    /// Rail index.
    pub rail: u32,
    /// Pairs with at least one timed reply.
    pub pairs: u32,
    /// Median of the pairs' medians.
    pub p50_us: u32,
    /// Largest p99 of any pair.
    pub p99_us: u32,
}

/// Answer of `POST /v1/jobs/{job}/preflight`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreflightReport {
    /// The job.
    pub job: String,
    /// Every check passed.
    pub ok: bool,
    /// Every failed check, by rail then rank.
    pub failures: Vec<PreflightFailure>,
    /// Directed (rank, rank, rail) pairs probed.
    pub pairs: u64,
    /// Wall time of the whole run.
    pub seconds: f64,
    /// Ranks probed.
    pub ranks: u32,
    /// Rails probed.
    pub rails: Vec<u32>,
    /// Nodes that ran probes for their ranks.
    pub nodes: Vec<String>,
    /// Round trips per rail.
    pub rail_rtt: Vec<RailRtt>,
    /// Round trips per probed pair.
    pub rtt: Vec<PairRtt>,
    /// Checks that could not run, and why (e.g. no other job's pod on a node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// What the nodes saw that may explain failures (e.g. a neighbour table
    /// too small for the job's mesh).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_query_round_trips_and_refuses_bad_input() {
        let q = JobWaitQuery {
            ranks: 8,
            timeout_ms: 1500,
        };
        let s = q.to_query();
        assert_eq!(JobWaitQuery::from_query(s.strip_prefix('?')), Ok(q), "{s}");
        let d = JobWaitQuery::from_query(Some("ranks=3")).unwrap();
        assert_eq!(d.timeout_ms, DEFAULT_WAIT_MS);
        for bad in [
            "",
            "ranks=0",
            "ranks=x",
            "ranks=2&timeoutMs=-1",
            "ranks=2&x=1",
        ] {
            assert!(JobWaitQuery::from_query(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn failures_read_as_pairs_or_single_ranks() {
        let pair = PreflightFailure {
            rail: 1,
            from_rank: 3,
            to_rank: Some(7),
            check: PreflightCheck::Mtu,
            detail: "no reply".into(),
        };
        assert_eq!(pair.to_string(), "rail 1: rank 3 -> rank 7: mtu: no reply");
        let one = PreflightFailure {
            to_rank: None,
            check: PreflightCheck::DuplicateAddress,
            ..pair
        };
        assert_eq!(
            one.to_string(),
            "rail 1: rank 3: duplicate-address: no reply"
        );
        let json = serde_json::to_value(&one).unwrap();
        assert_eq!(json["check"], "duplicate-address");
        assert_eq!(json["from_rank"], 3);
        assert!(json["to_rank"].is_null());
    }
}

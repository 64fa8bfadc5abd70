//! jobnetctl's text for `job wait` and `job preflight`, and its durations.

use std::fmt::Write as _;
use std::time::Duration;

use jobnet_api::{JobWaitResponse, MissingState, PreflightReport};

/// Failures listed in the table; the rest are counted (all are in `--json`).
pub const MAX_LISTED: usize = 200;

/// Parses `300s`, `5m`, `1h`, `1500ms` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 300s, 5m, 1500ms)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => return Err(format!("unknown unit {other:?} in {s:?} (ms, s, m, h)")),
    };
    Ok(d)
}

fn list(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// `job wait`: one line when ready, else the missing ranks.
pub fn wait_text(w: &JobWaitResponse) -> String {
    let waited = w.waited_ms as f64 / 1000.0;
    if w.ready {
        return format!(
            "job {}: ranks 0..{} attached on rail(s) {} (waited {waited:.1} s)\n",
            w.job,
            w.ranks.saturating_sub(1),
            list(&w.rails)
        );
    }
    let mut out = format!(
        "job {}: NOT READY after {waited:.1} s: {} of {} ranks missing on rail(s) {}\n",
        w.job,
        w.missing_total,
        w.ranks,
        list(&w.rails)
    );
    for m in &w.missing {
        let how = match (m.state, &m.node) {
            (MissingState::Reserved, Some(n)) => format!("reserved on {n}, not committed"),
            (MissingState::Reserved, None) => "reserved, not committed".to_owned(),
            (MissingState::Absent, _) => "not attached".to_owned(),
        };
        let _ = writeln!(out, "  rank {}: rail(s) {}: {how}", m.rank, list(&m.rails));
    }
    let more = (w.missing_total as usize).saturating_sub(w.missing.len());
    if more > 0 {
        let _ = writeln!(out, "  ... and {more} more");
    }
    out
}

/// `job preflight`: the verdict, round trips per rail, every failed pair.
pub fn preflight_text(r: &PreflightReport) -> String {
    let verdict = if r.ok { "PASSED" } else { "FAILED" };
    let mut out = format!(
        "job {}: preflight {verdict}: {} ranks, rail(s) {}, {} pairs probed from {} node(s) in {:.1} s\n",
        r.job,
        r.ranks,
        list(&r.rails),
        r.pairs,
        r.nodes.len(),
        r.seconds
    );
    for rr in &r.rail_rtt {
        let _ = writeln!(
            out,
            "rail {}: round trip p50 {} us, worst p99 {} us over {} pairs",
            rr.rail, rr.p50_us, rr.p99_us, rr.pairs
        );
    }
    for f in r.failures.iter().take(MAX_LISTED) {
        let _ = writeln!(out, "{f}");
    }
    if r.failures.len() > MAX_LISTED {
        let _ = writeln!(
            out,
            "... and {} more failures (--json lists them all)",
            r.failures.len() - MAX_LISTED
        );
    }
    for s in &r.skipped {
        let _ = writeln!(out, "skipped: {s}");
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobnet_api::{MissingRank, PreflightCheck, PreflightFailure, RailRtt};

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5 min").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-3s").is_err());
    }

    #[test]
    fn wait_names_the_missing_ranks() {
        let w = JobWaitResponse {
            job: "llama".into(),
            ready: false,
            ranks: 4,
            rails: vec![0, 1],
            attached: 2,
            missing: vec![
                MissingRank {
                    rank: 2,
                    rails: vec![1],
                    state: MissingState::Reserved,
                    node: Some("node1".into()),
                },
                MissingRank {
                    rank: 3,
                    rails: vec![0, 1],
                    state: MissingState::Absent,
                    node: None,
                },
            ],
            missing_total: 2,
            waited_ms: 2000,
            timeout_ms: 2000,
        };
        assert_eq!(
            wait_text(&w),
            "job llama: NOT READY after 2.0 s: 2 of 4 ranks missing on rail(s) 0,1\n\
             \x20 rank 2: rail(s) 1: reserved on node1, not committed\n\
             \x20 rank 3: rail(s) 0,1: not attached\n"
        );
        let ready = JobWaitResponse {
            ready: true,
            missing: Vec::new(),
            missing_total: 0,
            ..w
        };
        assert_eq!(
            wait_text(&ready),
            "job llama: ranks 0..3 attached on rail(s) 0,1 (waited 2.0 s)\n"
        );
    }

    #[test]
    fn preflight_lists_failed_pairs() {
        let r = PreflightReport {
            job: "llama".into(),
            ok: false,
            failures: vec![PreflightFailure {
                rail: 0,
                from_rank: 1,
                to_rank: Some(2),
                check: PreflightCheck::Reachability,
                detail: "no echo reply".into(),
            }],
            pairs: 12,
            seconds: 1.25,
            ranks: 4,
            rails: vec![0],
            nodes: vec!["n0".into(), "n1".into()],
            rail_rtt: vec![RailRtt {
                rail: 0,
                pairs: 11,
                p50_us: 80,
                p99_us: 400,
            }],
            rtt: Vec::new(),
            skipped: vec!["isolation on rail 0 of node n1: no other job's pod on the node".into()],
            notes: Vec::new(),
        };
        let t = preflight_text(&r);
        assert!(
            t.starts_with("job llama: preflight FAILED: 4 ranks, rail(s) 0, 12 pairs"),
            "{t}"
        );
        assert!(
            t.contains("\nrail 0: rank 1 -> rank 2: reachability: no echo reply\n"),
            "{t}"
        );
        assert!(
            t.contains("round trip p50 80 us, worst p99 400 us over 11 pairs"),
            "{t}"
        );
        assert!(t.contains("skipped: isolation on rail 0"), "{t}");
    }
}

//! Is a job ready: is every rank `0..N` committed on every rail of the job?

use std::collections::{BTreeMap, BTreeSet};

use jobnet_api::{AttachmentState, JobDetail, JobWaitResponse, MissingRank, MissingState};

use super::roster::job_rails;

/// One look at a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Every rank below the wanted count is committed on every rail.
    pub ready: bool,
    /// The job's rails.
    pub rails: Vec<u32>,
    /// Ranks committed on every rail (any rank number).
    pub attached: u32,
    /// Missing ranks, lowest first, at most [`JobWaitResponse::MISSING_LISTED`].
    pub missing: Vec<MissingRank>,
    /// Missing ranks in all.
    pub missing_total: u32,
}

/// Rails a member holds: its VFs' and its addresses'.
fn rails_of(m: &jobnet_api::JobMember) -> impl Iterator<Item = u32> + '_ {
    m.vfs
        .iter()
        .map(|v| v.rail)
        .chain(m.addresses.iter().map(|a| a.rail))
}

/// Looks at `detail` (None: the job is not recorded yet) for ranks
/// `0..ranks`; a job without subnets yet has `default_rails`.
pub fn readiness(detail: Option<&JobDetail>, ranks: u32, default_rails: &[u32]) -> Readiness {
    let rails = detail
        .map(job_rails)
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| default_rails.to_vec());
    let mut committed: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    let mut reserved: BTreeMap<u32, (BTreeSet<u32>, String)> = BTreeMap::new();
    for m in detail.map(|d| d.members.as_slice()).unwrap_or(&[]) {
        let Some(rank) = m.rank else { continue };
        if m.state == AttachmentState::Committed {
            committed.entry(rank).or_default().extend(rails_of(m));
        } else {
            let e = reserved
                .entry(rank)
                .or_insert_with(|| (BTreeSet::new(), m.node.clone()));
            e.0.extend(rails_of(m));
        }
    }
    let complete =
        |have: Option<&BTreeSet<u32>>| rails.iter().all(|r| have.is_some_and(|h| h.contains(r)));
    let attached = committed.values().filter(|h| complete(Some(h))).count();
    let mut missing = Vec::new();
    let mut missing_total = 0u32;
    for rank in 0..ranks {
        let have = committed.get(&rank);
        if complete(have) {
            continue;
        }
        missing_total += 1;
        if missing.len() >= JobWaitResponse::MISSING_LISTED {
            continue;
        }
        let lacking: Vec<u32> = rails
            .iter()
            .copied()
            .filter(|r| !have.is_some_and(|h| h.contains(r)))
            .collect();
        let held = reserved
            .get(&rank)
            .filter(|(rs, _)| lacking.iter().any(|r| rs.contains(r)));
        missing.push(MissingRank {
            rank,
            rails: lacking,
            state: if held.is_some() {
                MissingState::Reserved
            } else {
                MissingState::Absent
            },
            node: held.map(|(_, n)| n.clone()),
        });
    }
    Readiness {
        ready: missing_total == 0,
        rails,
        attached: u32::try_from(attached).unwrap_or(u32::MAX),
        missing,
        missing_total,
    }
}

#[cfg(test)]
mod tests {
    use super::super::roster::tests::{detail, member};
    use super::*;

    #[test]
    fn ready_only_when_every_rank_is_committed_on_every_rail() {
        let mut half = member(1, "n1", 2, AttachmentState::Committed);
        half.vfs.truncate(1);
        half.addresses.truncate(1);
        let d = detail(
            2,
            vec![
                member(0, "n0", 2, AttachmentState::Committed),
                half,
                member(2, "n2", 2, AttachmentState::Reserved),
            ],
        );
        let r = readiness(Some(&d), 4, &[0]);
        assert!(!r.ready);
        assert_eq!(r.rails, vec![0, 1]);
        assert_eq!(r.attached, 1);
        assert_eq!(r.missing_total, 3);
        let m: Vec<(u32, Vec<u32>, MissingState, Option<&str>)> = r
            .missing
            .iter()
            .map(|m| (m.rank, m.rails.clone(), m.state, m.node.as_deref()))
            .collect();
        assert_eq!(
            m,
            vec![
                (1, vec![1], MissingState::Absent, None),
                (2, vec![0, 1], MissingState::Reserved, Some("n2")),
                (3, vec![0, 1], MissingState::Absent, None),
            ]
        );
        assert!(readiness(Some(&d), 1, &[0]).ready);
    }

    #[test]
    fn an_unknown_job_misses_every_rank_on_the_default_rails() {
        let r = readiness(None, 3, &[0, 1]);
        assert!(!r.ready);
        assert_eq!(r.rails, vec![0, 1]);
        assert_eq!(r.missing_total, 3);
        let big = readiness(None, 100_000, &[0]);
        assert_eq!(big.missing.len(), JobWaitResponse::MISSING_LISTED);
        assert_eq!(big.missing_total, 100_000);
    }
}

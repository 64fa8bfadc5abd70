//! A job's ranks per rail as the cluster store lists them: what a preflight
//! probes, and what it cannot (ranks not committed, or not there at all).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use jobnet_api::{
    rail_ifname, AttachmentState, JobDetail, PreflightCheck, PreflightFailure, RailAddress,
    VfAssignment,
};

use super::task::Target;

/// What a preflight of one job probes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    /// Every committed rank's interface on every rail, by (rank, rail).
    pub targets: Vec<Target>,
    /// Ranks that cannot be probed, as failures.
    pub problems: Vec<PreflightFailure>,
    /// The job's rails.
    pub rails: Vec<u32>,
}

/// The job's rails: those it has a subnet on.
pub fn job_rails(detail: &JobDetail) -> Vec<u32> {
    let rails: BTreeSet<u32> = detail.summary.subnets.iter().map(|s| s.rail).collect();
    rails.into_iter().collect()
}

/// An attachment's interfaces as (rail, name in the pod, IPv4 address):
/// one per VF in rail order, named as the plugin names them; without VFs
/// (not a jobnetd-chosen device) one interface for its addresses' rails.
pub fn rail_interfaces(
    ifname: &str,
    vfs: &[VfAssignment],
    addresses: &[RailAddress],
) -> Vec<(u32, String, Option<Ipv4Addr>)> {
    let v4 = |rail: u32| {
        addresses
            .iter()
            .filter(|a| a.rail == rail)
            .find_map(|a| match a.address.addr() {
                IpAddr::V4(v) => Some(v),
                IpAddr::V6(_) => None,
            })
    };
    if vfs.is_empty() {
        let rails: BTreeSet<u32> = addresses.iter().map(|a| a.rail).collect();
        return rails
            .into_iter()
            .map(|r| (r, ifname.to_owned(), v4(r)))
            .collect();
    }
    vfs.iter()
        .enumerate()
        .map(|(i, vf)| (vf.rail, rail_ifname(ifname, i, vf.rail), v4(vf.rail)))
        .collect()
}

fn problem(rail: u32, rank: u32, detail: String) -> PreflightFailure {
    PreflightFailure {
        rail,
        from_rank: rank,
        to_rank: None,
        check: PreflightCheck::Attachment,
        detail,
    }
}

/// The roster of `detail`; with `want` ranks, ranks `0..want` missing on a
/// rail are problems too.
pub fn roster(detail: &JobDetail, want: Option<u32>) -> Roster {
    let rails = job_rails(detail);
    let mut seen: BTreeMap<(u32, u32), Target> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut reserved: BTreeSet<(u32, u32)> = BTreeSet::new();
    for m in &detail.members {
        let Some(rank) = m.rank else { continue };
        for (rail, _, addr) in rail_interfaces(&m.key.ifname, &m.vfs, &m.addresses) {
            if m.state != AttachmentState::Committed {
                reserved.insert((rank, rail));
                continue;
            }
            let Some(addr) = addr else {
                problems.push(problem(
                    rail,
                    rank,
                    format!("no IPv4 address on node {} (only IPv4 is probed)", m.node),
                ));
                continue;
            };
            seen.entry((rank, rail)).or_insert_with(|| Target {
                rank,
                rail,
                node: m.node.clone(),
                addr,
            });
        }
    }
    for &(rank, rail) in &reserved {
        if !seen.contains_key(&(rank, rail)) {
            problems.push(problem(
                rail,
                rank,
                "reserved, not committed yet: not probed".into(),
            ));
        }
    }
    for rank in 0..want.unwrap_or(0) {
        for &rail in &rails {
            let known = seen.contains_key(&(rank, rail)) || reserved.contains(&(rank, rail));
            if !known {
                problems.push(problem(rail, rank, "not attached".into()));
            }
        }
    }
    Roster {
        targets: seen.into_values().collect(),
        problems,
        rails,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jobnet_api::{AttachmentKey, IsolationMode, JobMember, JobSummary, RailSubnet};

    /// A member with `rails` rails, rank `rank`, addresses 10.0.<rail>.<rank+2>.
    pub(crate) fn member(rank: u32, node: &str, rails: u32, state: AttachmentState) -> JobMember {
        let pci = |i: u32| format!("0000:3b:0{}.{}", 1 + i, rank % 8).parse().unwrap();
        JobMember {
            rank: Some(rank),
            node: node.into(),
            key: AttachmentKey::new(format!("c{rank}"), "net1"),
            state,
            addresses: (0..rails)
                .map(|r| RailAddress {
                    rail: r,
                    address: format!("10.0.{r}.{}/24", rank + 2).parse().unwrap(),
                    gateway: None,
                    isolation_id: None,
                })
                .collect(),
            vfs: (0..rails)
                .map(|r| VfAssignment {
                    rail: r,
                    pci: pci(r),
                    pf_pci: pci(r),
                    pf: None,
                    vf_index: rank,
                    netdev: None,
                })
                .collect(),
        }
    }

    /// A job of `members` on `rails` rails.
    pub(crate) fn detail(rails: u32, members: Vec<JobMember>) -> JobDetail {
        JobDetail {
            summary: JobSummary {
                job: "j".into(),
                pool: "p".into(),
                isolation: jobnet_api::Isolation {
                    mode: IsolationMode::Vxlan,
                    id: Some(1000),
                },
                subnets: (0..rails)
                    .map(|r| RailSubnet {
                        rail: r,
                        subnet: format!("10.0.{r}.0/24").parse().unwrap(),
                        gateway: None,
                        isolation_id: None,
                    })
                    .collect(),
                attachments: 0,
            },
            members,
        }
    }

    #[test]
    fn committed_ranks_become_targets_and_interfaces_get_rail_names() {
        let d = detail(
            2,
            vec![
                member(0, "n0", 2, AttachmentState::Committed),
                member(1, "n1", 2, AttachmentState::Reserved),
            ],
        );
        let r = roster(&d, Some(3));
        assert_eq!(r.rails, vec![0, 1]);
        let t: Vec<(u32, u32, &str, String)> = r
            .targets
            .iter()
            .map(|t| (t.rank, t.rail, t.node.as_str(), t.addr.to_string()))
            .collect();
        assert_eq!(
            t,
            vec![
                (0, 0, "n0", "10.0.0.2".to_string()),
                (0, 1, "n0", "10.0.1.2".to_string())
            ]
        );
        let m = member(0, "n0", 2, AttachmentState::Committed);
        let names: Vec<String> = rail_interfaces(&m.key.ifname, &m.vfs, &m.addresses)
            .into_iter()
            .map(|(rail, name, _)| format!("{rail}:{name}"))
            .collect();
        assert_eq!(names, vec!["0:net1", "1:net1r1"]);
        let p: Vec<String> = r.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            p,
            vec![
                "rail 0: rank 1: attachment: reserved, not committed yet: not probed",
                "rail 1: rank 1: attachment: reserved, not committed yet: not probed",
                "rail 0: rank 2: attachment: not attached",
                "rail 1: rank 2: attachment: not attached",
            ]
        );
    }
}

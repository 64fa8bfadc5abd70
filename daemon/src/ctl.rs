//! jobnetctl's output: human tables and host files built from API answers.

pub mod topology;

use std::fmt::Write as _;

use jobnet_api::{
    ApiError, Attachment, AttachmentKey, AttachmentState, ErrorCode, ForgetNodeResponse,
    GcResponse, Isolation, IsolationMode, JobDetail, JobMember, JobSummary, NodeView, RailAddress,
    StatusResponse, VfAssignment, VfInfo, VfState,
};

/// Host-file flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostfileFormat {
    /// Open MPI / MPICH style: `ADDR slots=N`.
    Mpi,
    /// One address per line (torchrun, pdsh, ...).
    Plain,
}

/// Left-aligned columns separated by two spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{cell:<w$}");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn isolation(i: &Isolation) -> String {
    match (i.mode, i.id) {
        (IsolationMode::None, _) => "none".into(),
        (m, Some(id)) => format!("{}:{id}", mode_name(m)),
        (m, None) => mode_name(m).into(),
    }
}

fn mode_name(m: IsolationMode) -> &'static str {
    match m {
        IsolationMode::VfVlan => "vf-vlan",
        IsolationMode::Vxlan => "vxlan",
        IsolationMode::Pkey => "pkey",
        IsolationMode::None => "none",
    }
}

fn state(s: AttachmentState) -> &'static str {
    match s {
        AttachmentState::Reserved => "reserved",
        AttachmentState::Committed => "committed",
    }
}

fn addresses(a: &[RailAddress]) -> String {
    let v: Vec<String> = a
        .iter()
        .map(|r| format!("r{}={}", r.rail, r.address))
        .collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

fn vfs(v: &[VfAssignment]) -> String {
    let v: Vec<String> = v.iter().map(|x| format!("r{}={}", x.rail, x.pci)).collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

/// `jobnetctl nodes`: one line per node, stale ones flagged.
pub fn nodes_table(nodes: &[NodeView]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                format!("{}{}", n.node, if n.this_node { " (this)" } else { "" }),
                if n.alive { "alive" } else { "STALE" }.into(),
                n.attachments.to_string(),
                n.version.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = table(&["NODE", "STATE", "ATTACHMENTS", "VERSION"], &rows);
    if nodes.iter().any(|n| !n.alive) {
        out.push_str(
            "\nSTALE: its jobnetd holds no liveness lease. Its records stay (its pods may still run);\n\
             if the node will not return: jobnetctl node forget <node>\n",
        );
    }
    out
}

/// `jobnetctl node forget`.
pub fn forget_text(r: &ForgetNodeResponse) -> String {
    let mut out = format!(
        "node {} forgotten: {} attachment(s) released\n",
        r.node,
        r.released.len()
    );
    for k in &r.released {
        let _ = writeln!(out, "  {}/{}", k.container_id, k.ifname);
    }
    out
}

/// `jobnetctl status`.
pub fn status_table(s: &StatusResponse) -> String {
    let mut out = format!(
        "node {}  version {}  api {}  up {}s  attachments {}  free VFs {}\n\n",
        s.node, s.version, s.api_version, s.uptime_secs, s.attachments, s.free_vfs
    );
    let rows: Vec<Vec<String>> = s
        .pools
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                mode_name(p.isolation).into(),
                p.rails.to_string(),
                format!("{}/{}", p.free_vfs, p.total_vfs),
                p.jobs.to_string(),
                opt(p.free_subnets),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "POOL",
            "ISOLATION",
            "RAILS",
            "FREE VFS",
            "JOBS",
            "FREE SUBNETS",
        ],
        &rows,
    ));
    out
}

/// `jobnetctl jobs`.
pub fn jobs_table(jobs: &[JobSummary]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let subnets: Vec<String> = j
                .subnets
                .iter()
                .map(|s| format!("r{}={}", s.rail, s.subnet))
                .collect();
            vec![
                j.job.clone(),
                j.pool.clone(),
                isolation(&j.isolation),
                j.attachments.to_string(),
                subnets.join(","),
            ]
        })
        .collect();
    table(
        &["JOB", "POOL", "ISOLATION", "ATTACHMENTS", "SUBNETS"],
        &rows,
    )
}

/// `jobnetctl job show`.
pub fn job_table(d: &JobDetail) -> String {
    let s = &d.summary;
    let mut out = format!(
        "job {}  pool {}  isolation {}  attachments {}\n",
        s.job,
        s.pool,
        isolation(&s.isolation),
        s.attachments
    );
    for sub in &s.subnets {
        let _ = writeln!(
            out,
            "  rail {}: {}  gateway {}",
            sub.rail,
            sub.subnet,
            opt(sub.gateway)
        );
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = d
        .members
        .iter()
        .map(|m| {
            vec![
                opt(m.rank),
                m.node.clone(),
                m.key.to_string(),
                state(m.state).into(),
                addresses(&m.addresses),
                vfs(&m.vfs),
            ]
        })
        .collect();
    out.push_str(&table(
        &["RANK", "NODE", "ATTACHMENT", "STATE", "ADDRESSES", "VFS"],
        &rows,
    ));
    out
}

/// `jobnetctl job hostfile`: ranked members in rank order, then unranked ones.
pub fn hostfile(
    d: &JobDetail,
    rail: u32,
    format: HostfileFormat,
    slots: u32,
) -> Result<String, ApiError> {
    let mut members: Vec<_> = d.members.iter().collect();
    // Members come rank-ordered from the daemon; sort again so the file never depends on it.
    members.sort_by_key(|m| (m.rank.is_none(), m.rank, m.key.clone()));
    let mut out = String::new();
    for m in members {
        let Some(addr) = m.addresses.iter().find(|a| a.rail == rail) else {
            continue;
        };
        match format {
            HostfileFormat::Mpi => {
                let _ = writeln!(out, "{} slots={slots}", addr.address.addr());
            }
            HostfileFormat::Plain => {
                let _ = writeln!(out, "{}", addr.address.addr());
            }
        }
    }
    if out.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("job {:?} has no address on rail {rail}", d.summary.job),
        ));
    }
    Ok(out)
}

/// `jobnetctl vfs`.
pub fn vfs_table(v: &[VfInfo]) -> String {
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|x| {
            let (st, owner) = match &x.state {
                VfState::Free => ("free".to_owned(), "-".to_owned()),
                VfState::Owned { owner } => ("owned".to_owned(), owner.to_string()),
                VfState::Dpdk => ("dpdk".to_owned(), opt(x.driver.clone())),
            };
            vec![
                x.pci.to_string(),
                opt(x.pf.clone()),
                x.vf_index.to_string(),
                opt(x.netdev.clone()),
                x.pool.clone(),
                x.rail.to_string(),
                st,
                owner,
            ]
        })
        .collect();
    table(
        &[
            "VF", "PF", "INDEX", "NETDEV", "POOL", "RAIL", "STATE", "OWNER",
        ],
        &rows,
    )
}

/// `jobnetctl attachments`.
pub fn attachments_table(a: &[Attachment]) -> String {
    let rows: Vec<Vec<String>> = a
        .iter()
        .map(|x| {
            vec![
                x.key().to_string(),
                x.job.clone(),
                opt(x.rank),
                state(x.state).into(),
                addresses(&x.addresses),
                vfs(&x.vfs),
                x.netns.clone(),
            ]
        })
        .collect();
    table(
        &[
            "ATTACHMENT",
            "JOB",
            "RANK",
            "STATE",
            "ADDRESSES",
            "VFS",
            "NETNS",
        ],
        &rows,
    )
}

/// `jobnetctl gc`.
pub fn gc_text(r: &GcResponse) -> String {
    let mut out = format!("released {}\n", r.released.len());
    for k in &r.released {
        let _ = writeln!(out, "  {k}");
    }
    out
}

/// The member of `d` with rank `rank`.
pub fn rank_member(d: &JobDetail, rank: u32) -> Result<&JobMember, ApiError> {
    d.members
        .iter()
        .find(|m| m.rank == Some(rank))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("job {:?} has no rank {rank}", d.summary.job),
            )
        })
}

/// Parses `containerID/ifname`.
pub fn parse_key(s: &str) -> Result<AttachmentKey, ApiError> {
    match s.rsplit_once('/') {
        Some((c, i)) if !c.is_empty() && !i.is_empty() => Ok(AttachmentKey::new(c, i)),
        _ => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("{s:?} is not containerID/ifname"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobnet_api::{JobMember, RailSubnet};

    fn member(rank: Option<u32>, cid: &str, addr: &str) -> JobMember {
        JobMember {
            rank,
            node: "n1".into(),
            key: AttachmentKey::new(cid, "net1"),
            state: AttachmentState::Committed,
            addresses: vec![RailAddress {
                rail: 0,
                address: addr.parse().unwrap(),
                gateway: None,
                isolation_id: Some(7),
            }],
            vfs: vec![],
        }
    }

    fn detail(members: Vec<JobMember>) -> JobDetail {
        JobDetail {
            summary: JobSummary {
                job: "j".into(),
                pool: "p".into(),
                isolation: Isolation {
                    mode: IsolationMode::Vxlan,
                    id: Some(7),
                },
                subnets: vec![RailSubnet {
                    rail: 0,
                    subnet: "10.0.0.0/24".parse().unwrap(),
                    gateway: Some("10.0.0.1".parse().unwrap()),
                    isolation_id: Some(7),
                }],
                attachments: u32::try_from(members.len()).unwrap(),
            },
            members,
        }
    }

    #[test]
    fn hostfile_is_rank_ordered_with_unranked_last() {
        let d = detail(vec![
            member(None, "z", "10.0.0.250/24"),
            member(Some(1), "b", "10.0.0.3/24"),
            member(Some(0), "a", "10.0.0.2/24"),
        ]);
        let mpi = hostfile(&d, 0, HostfileFormat::Mpi, 1).unwrap();
        assert_eq!(
            mpi,
            "10.0.0.2 slots=1\n10.0.0.3 slots=1\n10.0.0.250 slots=1\n"
        );
        let plain = hostfile(&d, 0, HostfileFormat::Plain, 1).unwrap();
        assert_eq!(plain, "10.0.0.2\n10.0.0.3\n10.0.0.250\n");
        assert!(hostfile(&d, 3, HostfileFormat::Plain, 1).is_err());
    }

    #[test]
    fn job_table_lists_subnets_and_members() {
        let d = detail(vec![member(Some(0), "a", "10.0.0.2/24")]);
        let t = job_table(&d);
        assert!(t.contains("isolation vxlan:7"), "{t}");
        assert!(t.contains("rail 0: 10.0.0.0/24  gateway 10.0.0.1"), "{t}");
        assert!(t.contains("a/net1"), "{t}");
        assert!(t.contains("r0=10.0.0.2/24"), "{t}");
    }

    #[test]
    fn rank_member_finds_the_rank_or_says_which_is_missing() {
        let d = detail(vec![
            member(Some(1), "b", "10.0.0.3/24"),
            member(None, "z", "10.0.0.9/24"),
        ]);
        assert_eq!(rank_member(&d, 1).unwrap().key.container_id, "b");
        let e = rank_member(&d, 0).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.message.contains("rank 0"), "{}", e.message);
    }

    #[test]
    fn parse_key_needs_both_parts() {
        assert_eq!(
            parse_key("abc/net1").unwrap(),
            AttachmentKey::new("abc", "net1")
        );
        assert!(parse_key("abc").is_err());
        assert!(parse_key("/net1").is_err());
    }
}

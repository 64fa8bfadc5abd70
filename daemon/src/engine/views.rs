//! The API's views of what the engine holds: an attachment, a job, a VF.

use jobnet_api as api;
use jobnet_ipam::{self as ipam, Store};

use super::convert::{isolation, rail_addresses, rail_subnets};
use super::records::AttRecord;
use super::{Engine, PoolSettings};
use crate::inventory::VfEntry;

/// An attachment as the API shows it: IPAM's allocation, the daemon's
/// details record when there is one (else `node`, no netns, no VFs) and the
/// pool's settings.
fn attachment_view(
    node: &str,
    settings: Option<&PoolSettings>,
    a: &ipam::Attachment,
    rec: Option<&AttRecord>,
) -> api::Attachment {
    api::Attachment {
        container_id: a.key.container_id.clone(),
        ifname: a.key.ifname.clone(),
        netns: rec.map(|r| r.netns.clone()).unwrap_or_default(),
        node: rec
            .map(|r| r.node.clone())
            .unwrap_or_else(|| node.to_owned()),
        job: a.job.clone(),
        rank: a.rank,
        pool: a.pool.clone(),
        state: match a.state {
            ipam::AttachmentState::Reserved { .. } => api::AttachmentState::Reserved,
            ipam::AttachmentState::Committed => api::AttachmentState::Committed,
        },
        vfs: rec.map(|r| r.vfs.clone()).unwrap_or_default(),
        addresses: rail_addresses(&a.rails),
        isolation: isolation(
            settings.map_or(api::IsolationMode::None, |s| s.isolation),
            a.isolation,
        ),
        mtu: settings.and_then(|s| s.mtu),
        network: rec.and_then(|r| r.network.clone()),
        reserved_at_ms: a.created_ms,
    }
}

/// A job network with its attachment count; `pool_mode` stands in when the
/// job has no isolation ID.
fn job_summary(
    pool_mode: api::IsolationMode,
    j: &ipam::JobNetwork,
    attachments: u32,
) -> api::JobSummary {
    api::JobSummary {
        job: j.job.clone(),
        pool: j.pool.clone(),
        isolation: isolation(pool_mode, j.isolation),
        subnets: rail_subnets(&j.rails),
        attachments,
    }
}

/// One member of a job, from its attachment's view.
pub(super) fn job_member(key: api::AttachmentKey, v: api::Attachment) -> api::JobMember {
    api::JobMember {
        rank: v.rank,
        node: v.node,
        key,
        state: v.state,
        addresses: v.addresses,
        vfs: v.vfs,
    }
}

/// Sorts members by rank, the unranked last, ties by key.
pub(super) fn rank_order(members: &mut [api::JobMember]) {
    members.sort_by(|a, b| {
        (a.rank.is_none(), a.rank, &a.key).cmp(&(b.rank.is_none(), b.rank, &b.key))
    });
}

/// One VF of the inventory with its state: owned, userspace-bound or free.
pub(super) fn vf_info(e: &VfEntry, owner: Option<&api::AttachmentKey>) -> api::VfInfo {
    let state = if let Some(owner) = owner {
        api::VfState::Owned {
            owner: owner.clone(),
        }
    } else if e.info.is_dpdk() {
        api::VfState::Dpdk
    } else {
        api::VfState::Free
    };
    api::VfInfo {
        pci: e.info.pci,
        pf_pci: e.info.pf_pci,
        pf: e.info.pf_netdevs.first().cloned(),
        vf_index: e.info.vf_index,
        netdev: e.info.netdevs.first().cloned(),
        driver: e.info.driver.clone(),
        pool: e.pool.clone(),
        rail: u32::from(e.rail),
        state,
    }
}

impl<S: Store> Engine<S> {
    /// `a` as the API shows it, with this engine's pools and node.
    pub(super) fn view(&self, a: &ipam::Attachment, rec: Option<&AttRecord>) -> api::Attachment {
        attachment_view(&self.node, self.pools.get(&a.pool), a, rec)
    }

    /// `j` as the API lists it.
    pub(super) fn summary(&self, j: &ipam::JobNetwork, attachments: u32) -> api::JobSummary {
        let pool_mode = self
            .pools
            .get(&j.pool)
            .map_or(api::IsolationMode::None, |s| s.isolation);
        job_summary(pool_mode, j, attachments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(id: u32) -> ipam::Isolation {
        ipam::Isolation {
            mode: ipam::IsolationMode::Vxlan,
            id,
        }
    }

    fn attachment(state: ipam::AttachmentState) -> ipam::Attachment {
        ipam::Attachment {
            key: ipam::AttachmentKey::new("c1", "net1"),
            pool: "rdma".into(),
            job: "llama".into(),
            rank: Some(3),
            isolation: Some(iso(7)),
            rails: vec![ipam::RailAddresses {
                rail: 0,
                rail_name: "r0".into(),
                ips: vec!["10.0.0.5/24".parse().unwrap()],
                gateways: vec!["10.0.0.1".parse().unwrap()],
                isolation: Some(iso(7)),
            }],
            state,
            records: Vec::new(),
            created_ms: 42,
        }
    }

    fn settings() -> PoolSettings {
        PoolSettings {
            isolation: api::IsolationMode::Vxlan,
            mtu: Some(9000),
            rails: 1,
        }
    }

    fn vf(pci: &str) -> api::VfAssignment {
        api::VfAssignment {
            rail: 0,
            pci: pci.parse().unwrap(),
            pf_pci: "0000:3b:00.0".parse().unwrap(),
            pf: None,
            vf_index: 0,
            netdev: None,
        }
    }

    #[test]
    fn an_attachment_shows_its_record_and_pool_settings() {
        let rec = AttRecord {
            node: "n2".into(),
            netns: "/run/netns/p".into(),
            network: Some("rdma-net".into()),
            vfs: vec![vf("0000:3b:00.2")],
        };
        let a = attachment(ipam::AttachmentState::Committed);
        let v = attachment_view("n1", Some(&settings()), &a, Some(&rec));
        assert_eq!(v.key(), api::AttachmentKey::new("c1", "net1"));
        assert_eq!(v.node, "n2");
        assert_eq!(v.netns, "/run/netns/p");
        assert_eq!(v.network.as_deref(), Some("rdma-net"));
        assert_eq!(v.state, api::AttachmentState::Committed);
        assert_eq!(v.vfs, rec.vfs);
        assert_eq!(v.mtu, Some(9000));
        assert_eq!(v.isolation.id, Some(7));
        assert_eq!(v.addresses.len(), 1);
        assert_eq!(v.reserved_at_ms, 42);
    }

    #[test]
    fn an_attachment_without_record_or_pool_is_this_nodes_and_bare() {
        let mut a = attachment(ipam::AttachmentState::Reserved { expires_at_ms: 9 });
        a.isolation = None;
        let v = attachment_view("n1", None, &a, None);
        assert_eq!(v.node, "n1");
        assert_eq!(v.state, api::AttachmentState::Reserved);
        assert!(v.netns.is_empty() && v.vfs.is_empty() && v.network.is_none());
        assert_eq!(v.mtu, None);
        assert_eq!(v.isolation.mode, api::IsolationMode::None);
        assert_eq!(v.isolation.id, None);
    }

    #[test]
    fn a_job_without_an_id_shows_the_pool_mode() {
        let j = ipam::JobNetwork {
            pool: "rdma".into(),
            job: "llama".into(),
            isolation: None,
            rails: Vec::new(),
            world_size: 0,
            draining_since_ms: None,
            created_ms: 0,
        };
        let s = job_summary(api::IsolationMode::VfVlan, &j, 4);
        assert_eq!((s.job.as_str(), s.pool.as_str()), ("llama", "rdma"));
        assert_eq!(s.isolation.mode, api::IsolationMode::VfVlan);
        assert_eq!(s.attachments, 4);
    }

    #[test]
    fn members_are_in_rank_order_with_the_unranked_last() {
        let view = |rank, cid: &str| {
            let mut a = attachment(ipam::AttachmentState::Committed);
            a.rank = rank;
            a.key = ipam::AttachmentKey::new(cid, "net1");
            let v = attachment_view("n1", None, &a, None);
            job_member(v.key(), v)
        };
        let mut m = vec![
            view(None, "b"),
            view(Some(2), "x"),
            view(None, "a"),
            view(Some(0), "y"),
        ];
        rank_order(&mut m);
        let order: Vec<(Option<u32>, &str)> = m
            .iter()
            .map(|m| (m.rank, m.key.container_id.as_str()))
            .collect();
        assert_eq!(
            order,
            [(Some(0), "y"), (Some(2), "x"), (None, "a"), (None, "b")]
        );
        assert_eq!(m[0].addresses.len(), 1);
    }

    #[test]
    fn a_vf_is_owned_userspace_bound_or_free() {
        let entry = |driver: &str| VfEntry {
            pool: "rdma".into(),
            rail: 1,
            info: jobnet_hw::sriov::VfInfo {
                pci: "0000:3b:00.2".parse().unwrap(),
                pf_pci: "0000:3b:00.0".parse().unwrap(),
                pf_netdevs: vec!["ens1".into()],
                vf_index: 0,
                netdevs: vec!["ens1v0".into()],
                driver: Some(driver.into()),
                numa_node: None,
                vendor: 0x15b3,
                device: 0x101e,
                rdma_devices: Vec::new(),
                representor: None,
            },
        };
        let owner = api::AttachmentKey::new("c1", "net1");
        let owned = vf_info(&entry("mlx5_core"), Some(&owner));
        assert_eq!(owned.state, api::VfState::Owned { owner });
        assert_eq!(owned.pf.as_deref(), Some("ens1"));
        assert_eq!(owned.netdev.as_deref(), Some("ens1v0"));
        assert_eq!(owned.rail, 1);
        assert_eq!(vf_info(&entry("vfio-pci"), None).state, api::VfState::Dpdk);
        assert_eq!(vf_info(&entry("mlx5_core"), None).state, api::VfState::Free);
    }
}

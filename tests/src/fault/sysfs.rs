//! Keeping a node's fake sysfs in step with the kernel for every VF at
//! once. Real sysfs follows a VF's netdev through renames and netns moves
//! by itself; the fake tree only shows what it is told (see
//! [`crate::fabric`]). A stream that moves VFs after every step needs one
//! `ip` call per sync, not one per VF and netns.

use std::collections::HashMap;

use crate::fabric::ip::{self, IpLink};
use crate::fabric::sysfs::{Netdev, SysfsWriter};
use crate::fabric::{Fabric, FabricError, VfId};

/// The alias the fabric gives each VF netdev (it survives renames and
/// netns moves), mapped to the VF.
pub fn vf_aliases(fabric: &Fabric) -> HashMap<String, VfId> {
    let id = fabric.id().as_str();
    fabric
        .vfs()
        .iter()
        .filter(|v| v.netdev.is_some())
        .map(|v| {
            (
                format!(
                    "jobnet-fabric:{id}:{}:{}:{}",
                    v.id.node, v.id.nic, v.id.index
                ),
                v.id,
            )
        })
        .collect()
}

/// Checks that [`vf_aliases`] names the VFs as the fabric does, by asking
/// the fabric where each VF of `node` is; panics when one does not match.
/// Call it once, while every VF is in the node.
pub fn check_aliases(fabric: &Fabric, node: usize) {
    let aliases = vf_aliases(fabric);
    for vf in fabric.vfs().iter().filter(|v| v.id.node == node) {
        if vf.netdev.is_none() {
            continue;
        }
        let loc = fabric
            .vf_location(vf.id)
            .expect("locate VF")
            .unwrap_or_else(|| panic!("VF {:?} is nowhere", vf.id));
        let alias = loc.link.ifalias.unwrap_or_default();
        assert_eq!(
            aliases.get(&alias),
            Some(&vf.id),
            "the fabric's alias of {:?} is {alias:?}",
            vf.id
        );
    }
}

/// What sysfs shows of one VF netdev.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    name: String,
    address: String,
    ifindex: u32,
    mtu: u32,
}

/// The fake sysfs of one node, synced with the kernel on request.
#[derive(Debug, Default)]
pub struct SysfsSync {
    shown: HashMap<VfId, Option<Shown>>,
}

impl SysfsSync {
    /// Nothing known yet: the first sync writes every VF.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes node `node`'s sysfs show every VF as the kernel has it: its
    /// netdev under its current name when it is in the node netns, none
    /// otherwise. Returns the VF links in the node netns.
    pub fn sync(
        &mut self,
        fabric: &Fabric,
        node: usize,
    ) -> Result<HashMap<VfId, IpLink>, FabricError> {
        let n = fabric.node(node).ok_or(FabricError::NoSuchVf(VfId {
            node,
            nic: 0,
            index: 0,
        }))?;
        let aliases = vf_aliases(fabric);
        let here: HashMap<VfId, IpLink> = ip::links(&n.ip_netns())?
            .into_iter()
            .filter_map(|l| Some((*aliases.get(l.ifalias.as_deref()?)?, l)))
            .filter(|(vf, _)| vf.node == node)
            .collect();
        let io_err = |source| FabricError::Io {
            path: n.sysfs_root.clone(),
            source,
        };
        let w = SysfsWriter::create(&n.sysfs_root).map_err(io_err)?;
        let mut changed = Vec::new();
        for vf in fabric.vfs().iter().filter(|v| v.id.node == node) {
            if vf.netdev.is_none() {
                continue;
            }
            let want = here.get(&vf.id).map(|l| Shown {
                name: l.ifname.clone(),
                address: l.address.clone().unwrap_or_default(),
                ifindex: l.ifindex,
                mtu: l.mtu.unwrap_or(1500),
            });
            if self.shown.get(&vf.id) != Some(&want) {
                changed.push((vf, want));
            }
        }
        // Stale entries go first: a name one VF gave up may be another's now.
        for (vf, _) in &changed {
            let dir = fabric
                .layout()
                .function_dir(vf.id.nic, vf.pci)
                .ok_or(FabricError::NoSuchVf(vf.id))?;
            for old in w.netdevs(&dir) {
                w.remove_netdev(&dir, &old).map_err(io_err)?;
            }
        }
        for (vf, want) in changed {
            let dir = fabric
                .layout()
                .function_dir(vf.id.nic, vf.pci)
                .ok_or(FabricError::NoSuchVf(vf.id))?;
            if let Some(s) = &want {
                w.add_netdev(
                    &dir,
                    &Netdev {
                        name: &s.name,
                        address: &s.address,
                        ifindex: s.ifindex,
                        mtu: s.mtu,
                        phys_port_name: None,
                        phys_switch_id: None,
                    },
                )
                .map_err(io_err)?;
                if let Some(dev) = &vf.rdma_device {
                    w.set_rdma_netdev(&dir, dev, &s.name).map_err(io_err)?;
                }
            }
            self.shown.insert(vf.id, want);
        }
        Ok(here)
    }
}

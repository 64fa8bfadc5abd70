//! Live device and port data through libibverbs (cargo feature `verbs`).
//!
//! `ibverbs::devices()` fails with `ENOSYS` where the kernel has no RDMA;
//! that is the normal [`VerbsInventory::NoRdma`], not an error. The
//! `ibverbs` crate opens a context on port 1 only and only while that port
//! is ACTIVE or ARMED, so the GID table covers port 1; other ports are
//! described by sysfs (`jobnet_hw::rdma`) and [`crate::RdmaClient::ports`].

use std::net::Ipv6Addr;

use crate::error::{RdmaError, Result};

/// What libibverbs sees on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerbsInventory {
    /// The kernel has no RDMA support (`ENOSYS`/`ENODEV`/`EPROTONOSUPPORT`).
    NoRdma,
    /// The verbs devices (possibly none).
    Devices(Vec<VerbsDevice>),
}

/// One verbs device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerbsDevice {
    /// Device name, e.g. `mlx5_0`.
    pub name: String,
    /// Node GUID, when readable.
    pub guid: Option<u64>,
    /// Kernel device index (the one RDMA netlink uses), when libibverbs knows it.
    pub index: Option<u32>,
    /// Port 1 as far as the verbs context shows it.
    pub port1: PortStatus,
}

/// Port 1 of a device as the `ibverbs` crate reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortStatus {
    /// ACTIVE or ARMED, with its GID table.
    Usable {
        /// Valid GID entries.
        gids: Vec<VerbsGid>,
    },
    /// Not ACTIVE/ARMED, or the context could not be opened (the reason).
    Unusable(String),
}

/// Kind of a GID entry (`enum ibv_gid_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerbsGidKind {
    /// InfiniBand.
    Ib,
    /// RoCE v1.
    RoceV1,
    /// RoCE v2.
    RoceV2,
    /// A value newer than this code.
    Other(u32),
}

impl VerbsGidKind {
    /// Maps the `ibv_gid_type` numbers (0 IB, 1 RoCE v1, 2 RoCE v2).
    pub fn from_raw(v: u32) -> Self {
        match v {
            0 => Self::Ib,
            1 => Self::RoceV1,
            2 => Self::RoceV2,
            other => Self::Other(other),
        }
    }
}

/// One GID table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerbsGid {
    /// Port number.
    pub port: u32,
    /// Index in the port's GID table (the `NCCL_IB_GID_INDEX` value).
    pub index: u32,
    /// The GID as an IPv6 address (IPv4 is `::ffff:a.b.c.d`).
    pub gid: Ipv6Addr,
    /// IB, RoCE v1 or v2.
    pub kind: VerbsGidKind,
    /// ifindex of the netdev carrying the GID (0 for none).
    pub ndev_ifindex: u32,
}

/// Lists the verbs devices, or [`VerbsInventory::NoRdma`] without kernel RDMA.
pub fn inventory() -> Result<VerbsInventory> {
    let list = match ibverbs::devices() {
        Ok(list) => list,
        Err(e) => return classify_list_error(e),
    };
    let devices = list
        .iter()
        .map(|dev| VerbsDevice {
            name: dev
                .name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            guid: dev.guid().ok().map(u64::from),
            index: dev.index().ok().and_then(|i| u32::try_from(i).ok()),
            port1: match dev.open() {
                Ok(ctx) => PortStatus::Usable {
                    gids: ctx
                        .gid_table()
                        .iter()
                        .map(|g| VerbsGid {
                            port: g.port_num,
                            index: g.gid_index,
                            gid: gid_addr(g.gid.subnet_prefix(), g.gid.interface_id()),
                            kind: VerbsGidKind::from_raw(g.gid_type),
                            ndev_ifindex: g.ndev_ifindex,
                        })
                        .collect(),
                },
                Err(e) => PortStatus::Unusable(e.to_string()),
            },
        })
        .collect();
    Ok(VerbsInventory::Devices(devices))
}

/// `ENOSYS` and friends mean "no RDMA here"; anything else is a real error.
pub fn classify_list_error(e: std::io::Error) -> Result<VerbsInventory> {
    match e.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::ENODEV) | Some(libc::EPROTONOSUPPORT) => {
            Ok(VerbsInventory::NoRdma)
        }
        _ => Err(RdmaError::Io {
            op: "ibv_get_device_list",
            source: e,
        }),
    }
}

fn gid_addr(subnet_prefix: u64, interface_id: u64) -> Ipv6Addr {
    Ipv6Addr::from((u128::from(subnet_prefix) << 64) | u128::from(interface_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_kernel_rdma_is_no_rdma_not_an_error() {
        for errno in [libc::ENOSYS, libc::ENODEV, libc::EPROTONOSUPPORT] {
            let r = classify_list_error(std::io::Error::from_raw_os_error(errno));
            assert_eq!(r.unwrap(), VerbsInventory::NoRdma);
        }
        let r = classify_list_error(std::io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(r, Err(RdmaError::Io { .. })));
    }

    #[test]
    fn live_inventory_matches_the_kernel() {
        // Without RDMA netlink (this VM) libibverbs must say "no RDMA" too.
        let has_rdma = crate::RdmaSocket::open().is_ok();
        let inv = inventory().unwrap();
        eprintln!("verbs inventory: {inv:?}");
        match inv {
            VerbsInventory::NoRdma => assert!(!has_rdma),
            VerbsInventory::Devices(devs) => {
                assert!(has_rdma || devs.is_empty());
                for d in devs {
                    assert!(!d.name.is_empty());
                }
            }
        }
    }

    #[test]
    fn gid_halves_make_an_ipv6_address() {
        let a = gid_addr(0, 0x0000_ffff_0a00_0001);
        assert_eq!(a.to_string(), "::ffff:10.0.0.1");
        assert_eq!(VerbsGidKind::from_raw(2), VerbsGidKind::RoceV2);
        assert_eq!(VerbsGidKind::from_raw(9), VerbsGidKind::Other(9));
    }
}

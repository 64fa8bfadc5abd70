//! IPAM answers and errors as the API speaks them.

use jobnet_api::{self as api, ApiError, ErrorCode};
use jobnet_ipam::store::StoreError;
use jobnet_ipam::{self as ipam, IpamError};

/// The API error (with its stable code) for an IPAM failure.
pub(super) fn api_err(e: IpamError) -> ApiError {
    let code = match &e {
        IpamError::UnknownPool(_) => ErrorCode::UnknownPool,
        IpamError::UnknownRail { .. } | IpamError::InvalidRequest(_) => ErrorCode::InvalidArgument,
        IpamError::PoolExhausted { .. }
        | IpamError::IsolationExhausted(_)
        | IpamError::SubnetExhausted { .. }
        | IpamError::RankOutOfRange { .. } => ErrorCode::PoolExhausted,
        IpamError::RankInUse { .. }
        | IpamError::KeyInUse { .. }
        | IpamError::GangConflict { .. }
        | IpamError::NodeAlive(_) => ErrorCode::Conflict,
        IpamError::NotFound(_) => ErrorCode::UnknownAttachment,
        IpamError::RecordExists(_) => ErrorCode::DeviceBusy,
        // The cluster store cannot answer now (no quorum, deadline): retryable.
        IpamError::Contention | IpamError::Store(StoreError::Unavailable(_)) => {
            ErrorCode::Unavailable
        }
        IpamError::Store(_) | IpamError::Corrupt { .. } => ErrorCode::StoreFailure,
    };
    ApiError::new(code, e.to_string())
}

/// An IPAM attachment key as the API's.
pub(super) fn to_api_key(k: &ipam::AttachmentKey) -> api::AttachmentKey {
    api::AttachmentKey::new(k.container_id.clone(), k.ifname.clone())
}

/// An API attachment key as IPAM's.
pub(super) fn to_ipam_key(k: &api::AttachmentKey) -> ipam::AttachmentKey {
    ipam::AttachmentKey::new(k.container_id.clone(), k.ifname.clone())
}

/// An IPAM isolation mode as the API's.
pub(super) fn mode(m: ipam::IsolationMode) -> api::IsolationMode {
    match m {
        ipam::IsolationMode::VfVlan => api::IsolationMode::VfVlan,
        ipam::IsolationMode::Vxlan => api::IsolationMode::Vxlan,
        ipam::IsolationMode::Pkey => api::IsolationMode::Pkey,
        ipam::IsolationMode::None => api::IsolationMode::None,
    }
}

/// The job's isolation, or the pool's mode without an ID when it has none.
pub(super) fn isolation(
    pool_mode: api::IsolationMode,
    i: Option<ipam::Isolation>,
) -> api::Isolation {
    match i {
        Some(i) => api::Isolation {
            mode: mode(i.mode),
            id: Some(i.id),
        },
        None => api::Isolation {
            mode: pool_mode,
            id: None,
        },
    }
}

/// The gateway of the same family as `addr`, if any.
fn gateway_for(addr: &ipnet::IpNet, gateways: &[std::net::IpAddr]) -> Option<std::net::IpAddr> {
    gateways
        .iter()
        .copied()
        .find(|g| g.is_ipv4() == addr.addr().is_ipv4())
}

/// One API address per rail and family.
pub(super) fn rail_addresses(rails: &[ipam::RailAddresses]) -> Vec<api::RailAddress> {
    rails
        .iter()
        .flat_map(|r| {
            r.ips.iter().map(|ip| api::RailAddress {
                rail: u32::from(r.rail),
                address: *ip,
                gateway: gateway_for(ip, &r.gateways),
                isolation_id: r.isolation.map(|i| i.id),
            })
        })
        .collect()
}

/// One API subnet per rail and family.
pub(super) fn rail_subnets(rails: &[ipam::RailSubnet]) -> Vec<api::RailSubnet> {
    rails
        .iter()
        .flat_map(|r| {
            r.subnets.iter().map(|net| api::RailSubnet {
                rail: u32::from(r.rail),
                subnet: *net,
                gateway: gateway_for(net, &r.gateways),
                isolation_id: r.isolation.map(|i| i.id),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ipam::AttachmentKey {
        ipam::AttachmentKey::new("c1", "net1")
    }

    #[test]
    fn ipam_errors_map_to_their_api_codes() {
        let fam = ipam::Family::V4;
        let cases = [
            (IpamError::UnknownPool("p".into()), ErrorCode::UnknownPool),
            (
                IpamError::UnknownRail {
                    pool: "p".into(),
                    rail: 3,
                },
                ErrorCode::InvalidArgument,
            ),
            (
                IpamError::InvalidRequest("x".into()),
                ErrorCode::InvalidArgument,
            ),
            (
                IpamError::PoolExhausted {
                    pool: "p".into(),
                    family: fam,
                },
                ErrorCode::PoolExhausted,
            ),
            (
                IpamError::IsolationExhausted("p".into()),
                ErrorCode::PoolExhausted,
            ),
            (
                IpamError::RankOutOfRange { rank: 9, limit: 4 },
                ErrorCode::PoolExhausted,
            ),
            (
                IpamError::RankInUse {
                    rank: 1,
                    holder: key(),
                    node: "n2".into(),
                },
                ErrorCode::Conflict,
            ),
            (IpamError::NodeAlive("n2".into()), ErrorCode::Conflict),
            (IpamError::NotFound(key()), ErrorCode::UnknownAttachment),
            (
                IpamError::RecordExists("vf/n1/0000:3b:00.2".into()),
                ErrorCode::DeviceBusy,
            ),
            (IpamError::Contention, ErrorCode::Unavailable),
            (
                IpamError::Store(StoreError::Unavailable("no quorum".into())),
                ErrorCode::Unavailable,
            ),
            (
                IpamError::Store(StoreError::Backend("disk".into())),
                ErrorCode::StoreFailure,
            ),
            (
                IpamError::Corrupt {
                    key: "k".into(),
                    reason: "r".into(),
                },
                ErrorCode::StoreFailure,
            ),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let a = api_err(e);
            assert_eq!(a.code, code, "{text}");
            assert_eq!(a.message, text);
        }
    }

    #[test]
    fn keys_round_trip_between_ipam_and_api() {
        let k = to_api_key(&key());
        assert_eq!(k, api::AttachmentKey::new("c1", "net1"));
        assert_eq!(to_ipam_key(&k), key());
    }

    #[test]
    fn isolation_without_an_id_keeps_the_pool_mode() {
        let none = isolation(api::IsolationMode::Vxlan, None);
        assert_eq!(none.mode, api::IsolationMode::Vxlan);
        assert_eq!(none.id, None);
        let job = isolation(
            api::IsolationMode::None,
            Some(ipam::Isolation {
                mode: ipam::IsolationMode::VfVlan,
                id: 1001,
            }),
        );
        assert_eq!(job.mode, api::IsolationMode::VfVlan);
        assert_eq!(job.id, Some(1001));
    }

    #[test]
    fn each_address_gets_the_gateway_of_its_family() {
        let rails = [ipam::RailAddresses {
            rail: 1,
            rail_name: "r1".into(),
            ips: vec![
                "10.0.0.2/24".parse().unwrap(),
                "fd00::2/64".parse().unwrap(),
            ],
            gateways: vec!["fd00::1".parse().unwrap(), "10.0.0.1".parse().unwrap()],
            isolation: Some(ipam::Isolation {
                mode: ipam::IsolationMode::Vxlan,
                id: 7,
            }),
        }];
        let a = rail_addresses(&rails);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].rail, 1);
        assert_eq!(a[0].gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(a[1].gateway, Some("fd00::1".parse().unwrap()));
        assert!(a.iter().all(|x| x.isolation_id == Some(7)));
        let subnets = [ipam::RailSubnet {
            rail: 0,
            rail_name: "r0".into(),
            subnets: vec!["10.0.0.0/24".parse().unwrap()],
            gateways: Vec::new(),
            isolation: None,
        }];
        let s = rail_subnets(&subnets);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].gateway, None);
        assert_eq!(s[0].isolation_id, None);
    }
}

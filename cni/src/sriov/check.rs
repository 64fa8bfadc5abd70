//! CHECK: is what ADD did still true?

use std::path::Path;

use ipnet::IpNet;
use jobnet_netlink::{Handle, Netns, RouteFamily, TABLE_MAIN};

use super::attach::format_hw_addr;
use super::attach::Context;
use super::cache;
use super::owner;
use super::rdma::RdmaNs;
use super::record::{AttachmentRecord, RdmaIsolationApplied};

/// A difference between what ADD did and what the kernel shows now.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No cache for this attachment: ADD never finished here.
    #[error("no attachment {container_id}/{ifname} on this node: {source}")]
    Unknown {
        /// Container ID.
        container_id: String,
        /// Interface name.
        ifname: String,
        /// Why the cache could not be read.
        source: cache::CacheError,
    },
    /// The pod netns cannot be opened.
    #[error("pod network namespace: {0}")]
    Netns(#[from] jobnet_netlink::NetnsError),
    /// Something differs.
    #[error("{0}")]
    Mismatch(String),
}

/// Verifies interface, MAC, MTU, addresses, routes and VF ownership.
/// `expected_ips` come from prevResult (the runtime's view).
pub async fn check(
    ctx: &Context<'_>,
    container_id: &str,
    ifname: &str,
    netns: &Path,
    expected_ips: &[IpNet],
) -> Result<(), CheckError> {
    let path = cache::path_for(ctx.state, container_id, ifname);
    let rec: AttachmentRecord = cache::load(&path).map_err(|source| CheckError::Unknown {
        container_id: container_id.into(),
        ifname: ifname.into(),
        source,
    })?;
    let mismatch = |m: String| Err(CheckError::Mismatch(m));
    match owner::owner_of(ctx.state, rec.pci) {
        Some(o) if o.container_id == container_id && o.ifname == ifname => {}
        Some(o) => {
            return mismatch(format!(
                "VF {} is owned by {}/{}, not by this attachment",
                rec.pci, o.container_id, o.ifname
            ))
        }
        None => return mismatch(format!("VF {} has no ownership record", rec.pci)),
    }
    if rec.dpdk {
        return Ok(());
    }
    let Some(pod_state) = &rec.pod else {
        return mismatch("ADD did not finish for this attachment".into());
    };
    let ns = Netns::open(netns)?;
    let pod = Handle::in_netns(&ns).map_err(|e| CheckError::Mismatch(e.to_string()))?;
    let link = match pod.link_by_name(ifname).await {
        Ok(l) => l,
        Err(e) => return mismatch(format!("interface {ifname} not found in the pod: {e}")),
    };
    if link.index != pod_state.index {
        return mismatch(format!(
            "interface {ifname} is another device (index {} instead of {})",
            link.index, pod_state.index
        ));
    }
    if !pod_state.hw_addr.is_empty() {
        // The full address: the only identity an IPoIB interface has.
        if link.hw_addr != pod_state.hw_addr {
            return mismatch(format!(
                "hardware address of {ifname} is {}, expected {}",
                format_hw_addr(&link.hw_addr),
                format_hw_addr(&pod_state.hw_addr)
            ));
        }
    } else if link.mac() != pod_state.mac {
        return mismatch(format!(
            "MAC of {ifname} is {:?}, expected {:?}",
            link.mac().map(|m| m.to_string()),
            pod_state.mac.map(|m| m.to_string())
        ));
    }
    if link.mtu != pod_state.mtu {
        return mismatch(format!(
            "MTU of {ifname} is {}, expected {}",
            link.mtu, pod_state.mtu
        ));
    }
    if !link.admin_up {
        return mismatch(format!("{ifname} is down"));
    }
    let have: Vec<IpNet> = pod
        .addresses(Some(link.index))
        .await
        .map_err(|e| CheckError::Mismatch(e.to_string()))?
        .into_iter()
        .map(|a| a.addr)
        .collect();
    for want in pod_state.addresses.iter().chain(expected_ips) {
        if !have.contains(want) {
            return mismatch(format!("address {want} missing on {ifname}"));
        }
    }
    for want in &pod_state.routes {
        let family = if want.dst.addr().is_ipv4() {
            RouteFamily::V4
        } else {
            RouteFamily::V6
        };
        let table = want.table.or(Some(TABLE_MAIN));
        let routes = pod
            .routes(family, table)
            .await
            .map_err(|e| CheckError::Mismatch(e.to_string()))?;
        // The kernel reports a default route without a destination.
        let any = match family {
            RouteFamily::V4 => IpNet::V4(Default::default()),
            RouteFamily::V6 => IpNet::V6(Default::default()),
        };
        let present = routes.iter().any(|r| {
            r.dst.unwrap_or(any) == want.dst
                && r.oif == Some(link.index)
                && r.gateway == want.gateway
        });
        if !present {
            let via = want
                .gateway
                .map(|g| format!(" via {g}"))
                .unwrap_or_default();
            return mismatch(format!("route {}{via} missing on {ifname}", want.dst));
        }
    }
    if let Some(r) = &rec.rdma {
        if r.isolation == RdmaIsolationApplied::Exclusive {
            if let Err(e) = ctx.rdma.device_index(RdmaNs::Pod(&ns), &r.device) {
                return mismatch(format!(
                    "RDMA device {} is not in the pod network namespace: {e}",
                    r.device
                ));
            }
        }
    }
    Ok(())
}

//! CHECK: is what ADD did still true?

use std::path::Path;

use ipnet::IpNet;
use jobnet_netlink::{Handle, Netns, RouteFamily};

use super::attach::Context;
use super::attach::{format_hw_addr, IPOIB_HW_ADDR_LEN};
use super::cache;
use super::owner;
use super::rdma::RdmaNs;
use super::record::{AttachmentRecord, Ownership, RdmaIsolationApplied};

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

/// Verifies what ADD itself set: the VF is still owned by this attachment
/// and is the interface `ifname` in the pod, up, with the MAC and MTU ADD
/// set (only when the config or jobnetd gave them), its addresses and
/// `expected_ips` (prevResult, the runtime's view) and the routes ADD added.
///
/// What ADD left alone is not checked: a later plugin in a chain (`tuning`,
/// `sbr`, ...) may change it, and extra addresses or routes are fine.
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
    // Through jobnetd the daemon's reservation is the owner (CHECK asks
    // it); only a local record can be checked here.
    match owner::owner_of(ctx.state, rec.pci) {
        Some(o) if o.container_id == container_id && o.ifname == ifname => {}
        _ if rec.ownership == Ownership::Daemon => {}
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
    if let Some(want) = pod_state.configured_mac {
        if link.mac() != Some(want) {
            return mismatch(format!(
                "MAC of {ifname} is {}, expected {want} (configured)",
                link.mac()
                    .map_or_else(|| format_hw_addr(&link.hw_addr), |m| m.to_string())
            ));
        }
    }
    let guid_set = rec
        .pf_side
        .as_ref()
        .is_some_and(|p| p.applied.ib_port_guid.is_some() || p.applied.ib_node_guid.is_some());
    let ipoib = pod_state.hw_addr.len() == IPOIB_HW_ADDR_LEN;
    if guid_set && ipoib && link.hw_addr != pod_state.hw_addr {
        // The GUID ADD set is part of an IPoIB interface's address, its
        // only identity.
        return mismatch(format!(
            "hardware address of {ifname} is {}, expected {}",
            format_hw_addr(&link.hw_addr),
            format_hw_addr(&pod_state.hw_addr)
        ));
    }
    if let Some(want) = pod_state.configured_mtu {
        if link.mtu != want {
            return mismatch(format!(
                "MTU of {ifname} is {}, expected {want} (configured)",
                link.mtu
            ));
        }
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
        let (family, any) = if want.dst.addr().is_ipv4() {
            (RouteFamily::V4, IpNet::V4(Default::default()))
        } else {
            (RouteFamily::V6, IpNet::V6(Default::default()))
        };
        // A route ADD put in the main table may since have been moved to a
        // policy-routing table (`sbr` does that): it still counts. One in a
        // table the config named must be in that table.
        let routes = pod
            .routes(family, want.table)
            .await
            .map_err(|e| CheckError::Mismatch(e.to_string()))?;
        let dst = want.dst.trunc();
        // The kernel reports a default route without a destination.
        let present = routes.iter().any(|r| {
            r.dst.unwrap_or(any) == dst && r.oif == Some(link.index) && r.gateway == want.gateway
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

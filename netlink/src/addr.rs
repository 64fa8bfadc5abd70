//! Interface addresses (`ip addr add/del/show`), IPv4 and IPv6.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope},
    AddressFamily, RouteNetlinkMessage,
};

use crate::{error::NetlinkError, handle::Handle};

/// An address assigned to an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// Interface index the address is on.
    pub index: u32,
    /// Address with its prefix length.
    pub addr: IpNet,
    /// Scope (universe, link, host, ...).
    pub scope: AddressScope,
    /// True while IPv6 duplicate address detection has not finished.
    pub tentative: bool,
}

/// Options for adding an address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressOptions {
    /// Skip IPv6 duplicate address detection so the address is usable at
    /// once (the job's IPAM already guarantees uniqueness).
    pub nodad: bool,
}

fn family_of(ip: &IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Builds the RTM_NEWADDR/RTM_DELADDR body for `addr` on `index`. IPv4
/// gets IFA_LOCAL and a broadcast address as `ip addr add ... brd +` does.
pub fn build_address(index: u32, addr: IpNet, opts: AddressOptions) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family_of(&addr.addr());
    msg.header.prefix_len = addr.prefix_len();
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Address(addr.addr()));
    if let IpNet::V4(v4) = addr {
        msg.attributes.push(AddressAttribute::Local(addr.addr()));
        if v4.prefix_len() < 31 {
            msg.attributes
                .push(AddressAttribute::Broadcast(v4.broadcast()));
        }
    }
    if opts.nodad {
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    msg
}

fn parse_address(msg: &AddressMessage) -> Option<Address> {
    let mut local = None;
    let mut address = None;
    let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Flags(f) => flags = *f,
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    // point-to-point links, so prefer the former.
    let ip = local.or(address)?;
    let addr = IpNet::new(ip, msg.header.prefix_len).ok()?;
    Some(Address {
        index: msg.header.index,
        addr,
        scope: msg.header.scope,
        tentative: flags.contains(AddressFlags::Tentative),
    })
}

impl Handle {
    /// Adds `addr` to link `index`.
    pub async fn add_address(&self, index: u32, addr: IpNet) -> Result<(), NetlinkError> {
        self.add_address_with(index, addr, AddressOptions::default())
            .await
    }

    /// Adds `addr` to link `index` with options.
    pub async fn add_address_with(
        &self,
        index: u32,
        addr: IpNet,
        opts: AddressOptions,
    ) -> Result<(), NetlinkError> {
        let msg = build_address(index, addr, opts);
        self.request(
            "add address",
            &format!("{addr} on link #{index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await?;
        Ok(())
    }

    /// Removes `addr` from link `index`.
    pub async fn delete_address(&self, index: u32, addr: IpNet) -> Result<(), NetlinkError> {
        let msg = build_address(index, addr, AddressOptions::default());
        self.request(
            "delete address",
            &format!("{addr} on link #{index}"),
            RouteNetlinkMessage::DelAddress(msg),
            0,
        )
        .await?;
        Ok(())
    }

    /// Lists addresses, of one link when `index` is given, else of all links.
    pub async fn addresses(&self, index: Option<u32>) -> Result<Vec<Address>, NetlinkError> {
        let replies = self
            .dump(
                "list addresses",
                &"all",
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            )
            .await?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => parse_address(a),
                _ => None,
            })
            .filter(|a| match index {
                Some(i) => a.index == i,
                None => true,
            })
            .collect())
    }
}

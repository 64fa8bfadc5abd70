//! Creating veth pairs, the peer born directly in another namespace. Only
//! test fabrics and benchmarks wire namespaces this way, never jobnet on a
//! node, so this is built with the `testing` feature alone.

use std::os::fd::AsRawFd;

use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};

use crate::{
    error::{ErrorKind, NetlinkError},
    handle::Handle,
    link::validate_ifname,
    netns::Netns,
};

/// Builds the RTM_NEWLINK for a veth pair; the peer is created directly in
/// `peer_netns_fd` when given, so it never exists in this namespace.
pub fn build_veth(name: &str, peer: &str, peer_netns_fd: Option<i32>) -> LinkMessage {
    let mut peer_msg = LinkMessage::default();
    peer_msg
        .attributes
        .push(LinkAttribute::IfName(peer.to_string()));
    if let Some(fd) = peer_netns_fd {
        peer_msg.attributes.push(LinkAttribute::NetNsFd(fd));
    }
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
    ]));
    msg
}

impl Handle {
    /// Creates a veth pair `name` (here) and `peer` (in `peer_ns`, or here).
    pub async fn create_veth(
        &self,
        name: &str,
        peer: &str,
        peer_ns: Option<&Netns>,
    ) -> Result<(), NetlinkError> {
        validate_ifname(peer)
            .map_err(|e| NetlinkError::new("create veth", name, ErrorKind::InvalidInput(e)))?;
        let msg = build_veth(name, peer, peer_ns.map(|n| n.as_raw_fd()));
        self.create_link("create veth", name, msg).await
    }
}

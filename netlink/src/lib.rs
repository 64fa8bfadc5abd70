//! jobnet's kernel networking layer: network namespaces and every rtnetlink
//! operation a VF attach needs (links, addresses, routes, PF-side VF
//! settings, announcements, bridges and VXLAN devices; with the `testing`
//! feature also veth pairs for test fabrics).
//!
//! Every operation goes through a [`Handle`] bound to one namespace. Make
//! one per namespace per command and reuse it: each request is one round
//! trip on an already open socket.

#![warn(missing_docs)]

mod addr;
mod announce;
mod error;
mod handle;
mod link;
mod mac;
mod netns;
mod route;
#[cfg(feature = "testing")]
mod veth;
mod vf;
mod virtual_link;

pub use addr::{build_address, Address, AddressOptions};
pub use announce::{
    announce_addresses, enable_kernel_announcements, garp_frame, icmpv6_checksum,
    unsolicited_na_frame,
};
pub use error::{ErrorKind, NetlinkError, NetnsError};
pub use handle::Handle;
pub use link::{
    build_link_update, build_move_to_netns, validate_ifname, Link, LinkUpdate, OperState,
    MAC_BUSY_ATTEMPTS, MAC_BUSY_FIRST_DELAY, MAX_IFNAME_LEN,
};
pub use mac::{MacAddr, ParseMacError};
pub use netns::{NamedNetns, Netns, NetnsGuard, NETNS_RUN_DIR};
pub use route::{build_route, Route, RouteFamily, TABLE_MAIN};
#[cfg(feature = "testing")]
pub use veth::build_veth;
pub use vf::{
    build_vf_info, build_vf_message, vf_message_bytes, vf_message_payload, vf_states_from_message,
    VfLinkStateConfig, VfSettings, VfSettingsError, VfState, VfVlanConfig, VlanProto, MAX_VLAN_ID,
    MAX_VLAN_QOS,
};
pub use virtual_link::{build_bridge, build_vxlan, VxlanConfig, VXLAN_PORT};

/// Route scopes, as used by [`Route::scope`] and [`Address::scope`].
pub use netlink_packet_route::{address::AddressScope, route::RouteScope};
/// The rtnetlink crate, for requests this crate does not wrap.
pub use rtnetlink;

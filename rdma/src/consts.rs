//! Numbers of the RDMA netlink ABI, as in `<rdma/rdma_netlink.h>` and
//! `<linux/netlink.h>`.
//!
//! Every value here is checked by `tests/uapi_header.rs` against a vendored
//! copy of the kernel's uapi header (version noted in `tests/uapi/README.md`)
//! and against the installed header for the names it has.

/// Netlink protocol number of the RDMA subsystem (`NETLINK_RDMA`).
pub const NETLINK_RDMA: i32 = 20;

/// The NLDEV client (`RDMA_NL_NLDEV`), the device interface of RDMA netlink.
pub const RDMA_NL_NLDEV: u16 = 5;

/// Builds an RDMA netlink message type from client and op (`RDMA_NL_GET_TYPE`).
pub const fn rdma_nl_type(client: u16, op: u16) -> u16 {
    (client << 10) + op
}

/// The client part of an RDMA netlink message type (`RDMA_NL_GET_CLIENT`).
pub const fn rdma_nl_client(msg_type: u16) -> u16 {
    (msg_type & (((1 << 6) - 1) << 10)) >> 10
}

/// The op part of an RDMA netlink message type (`RDMA_NL_GET_OP`).
pub const fn rdma_nl_op(msg_type: u16) -> u16 {
    msg_type & ((1 << 10) - 1)
}

/// NLDEV commands (`enum rdma_nldev_command`).
pub mod cmd {
    /// `RDMA_NLDEV_CMD_GET`: one device, or all devices when dumped.
    pub const GET: u16 = 1;
    /// `RDMA_NLDEV_CMD_SET`: rename a device or move it to another netns.
    pub const SET: u16 = 2;
    /// `RDMA_NLDEV_CMD_PORT_GET`: ports of a device (dump).
    pub const PORT_GET: u16 = 5;
    /// `RDMA_NLDEV_CMD_SYS_GET`: subsystem-wide settings.
    pub const SYS_GET: u16 = 6;
    /// `RDMA_NLDEV_CMD_SYS_SET`: change subsystem-wide settings.
    pub const SYS_SET: u16 = 7;
    /// `RDMA_NLDEV_CMD_GET_CHARDEV`: the `/dev` node of a device's ABI.
    pub const GET_CHARDEV: u16 = 15;
}

/// NLDEV attribute types (`enum rdma_nldev_attr`).
pub mod attr {
    /// `RDMA_NLDEV_ATTR_PAD`: alignment filler before 64-bit values.
    pub const PAD: u16 = 0;
    /// `RDMA_NLDEV_ATTR_DEV_INDEX` (u32).
    pub const DEV_INDEX: u16 = 1;
    /// `RDMA_NLDEV_ATTR_DEV_NAME` (string).
    pub const DEV_NAME: u16 = 2;
    /// `RDMA_NLDEV_ATTR_PORT_INDEX` (u32): port count in GET, port number in PORT_GET.
    pub const PORT_INDEX: u16 = 3;
    /// `RDMA_NLDEV_ATTR_CAP_FLAGS` (u64).
    pub const CAP_FLAGS: u16 = 4;
    /// `RDMA_NLDEV_ATTR_FW_VERSION` (string).
    pub const FW_VERSION: u16 = 5;
    /// `RDMA_NLDEV_ATTR_NODE_GUID` (u64, host byte order).
    pub const NODE_GUID: u16 = 6;
    /// `RDMA_NLDEV_ATTR_SYS_IMAGE_GUID` (u64, host byte order).
    pub const SYS_IMAGE_GUID: u16 = 7;
    /// `RDMA_NLDEV_ATTR_SUBNET_PREFIX` (u64, host byte order).
    pub const SUBNET_PREFIX: u16 = 8;
    /// `RDMA_NLDEV_ATTR_LID` (u32).
    pub const LID: u16 = 9;
    /// `RDMA_NLDEV_ATTR_SM_LID` (u32).
    pub const SM_LID: u16 = 10;
    /// `RDMA_NLDEV_ATTR_LMC` (u8).
    pub const LMC: u16 = 11;
    /// `RDMA_NLDEV_ATTR_PORT_STATE` (u8).
    pub const PORT_STATE: u16 = 12;
    /// `RDMA_NLDEV_ATTR_PORT_PHYS_STATE` (u8).
    pub const PORT_PHYS_STATE: u16 = 13;
    /// `RDMA_NLDEV_ATTR_DEV_NODE_TYPE` (u8).
    pub const DEV_NODE_TYPE: u16 = 14;
    /// `RDMA_NLDEV_ATTR_NDEV_INDEX` (u32): netdev behind a port.
    pub const NDEV_INDEX: u16 = 50;
    /// `RDMA_NLDEV_ATTR_NDEV_NAME` (string): netdev behind a port.
    pub const NDEV_NAME: u16 = 51;
    /// `RDMA_NLDEV_SYS_ATTR_NETNS_MODE` (u8): 1 shared, 0 exclusive.
    pub const SYS_NETNS_MODE: u16 = 66;
    /// `RDMA_NLDEV_ATTR_DEV_PROTOCOL` (string): ib, roce, iw, ...
    pub const DEV_PROTOCOL: u16 = 67;
    /// `RDMA_NLDEV_NET_NS_FD` (u32): file descriptor of a netns.
    pub const NET_NS_FD: u16 = 68;
    /// `RDMA_NLDEV_ATTR_CHARDEV_TYPE` (string): uverbs, umad, ...
    pub const CHARDEV_TYPE: u16 = 69;
    /// `RDMA_NLDEV_ATTR_CHARDEV_NAME` (string): file name under `/dev/infiniband`.
    pub const CHARDEV_NAME: u16 = 70;
    /// `RDMA_NLDEV_ATTR_CHARDEV_ABI` (u64).
    pub const CHARDEV_ABI: u16 = 71;
    /// `RDMA_NLDEV_ATTR_CHARDEV` (u64): the dev_t.
    pub const CHARDEV: u16 = 72;
    /// `RDMA_NLDEV_SYS_ATTR_COPY_ON_FORK` (u8).
    pub const SYS_COPY_ON_FORK: u16 = 93;
    /// `RDMA_NLDEV_SYS_ATTR_PRIVILEGED_QKEY_MODE` (u8).
    pub const SYS_PRIVILEGED_QKEY_MODE: u16 = 96;
}

/// Generic netlink framing (`<linux/netlink.h>`).
pub mod nl {
    /// Size of `struct nlmsghdr`.
    pub const NLMSG_HDRLEN: usize = 16;
    /// Size of `struct nlattr`.
    pub const NLA_HDRLEN: usize = 4;
    /// Alignment of messages and attributes.
    pub const NLA_ALIGNTO: usize = 4;

    /// `NLMSG_NOOP`.
    pub const NLMSG_NOOP: u16 = 1;
    /// `NLMSG_ERROR`: an error, or an acknowledgement when the errno is 0.
    pub const NLMSG_ERROR: u16 = 2;
    /// `NLMSG_DONE`: end of a multi-part dump.
    pub const NLMSG_DONE: u16 = 3;
    /// `NLMSG_OVERRUN`.
    pub const NLMSG_OVERRUN: u16 = 4;

    /// `NLM_F_REQUEST`.
    pub const NLM_F_REQUEST: u16 = 0x01;
    /// `NLM_F_MULTI`: part of a multi-part reply.
    pub const NLM_F_MULTI: u16 = 0x02;
    /// `NLM_F_ACK`.
    pub const NLM_F_ACK: u16 = 0x04;
    /// `NLM_F_ROOT`.
    pub const NLM_F_ROOT: u16 = 0x100;
    /// `NLM_F_MATCH`.
    pub const NLM_F_MATCH: u16 = 0x200;
    /// `NLM_F_DUMP` (`ROOT | MATCH`).
    pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
    /// `NLM_F_CAPPED` on an error: the echoed request is only its header.
    pub const NLM_F_CAPPED: u16 = 0x100;
    /// `NLM_F_ACK_TLVS` on an error: extended-ack attributes follow.
    pub const NLM_F_ACK_TLVS: u16 = 0x200;

    /// `NLA_F_NESTED`.
    pub const NLA_F_NESTED: u16 = 1 << 15;
    /// `NLA_F_NET_BYTEORDER`.
    pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
    /// `NLA_TYPE_MASK`: attribute type without the flag bits.
    pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

    /// `NLMSGERR_ATTR_MSG`: human-readable extended-ack message.
    pub const NLMSGERR_ATTR_MSG: u16 = 1;

    /// `NETLINK_CAP_ACK` socket option.
    pub const NETLINK_CAP_ACK: i32 = 10;
    /// `NETLINK_EXT_ACK` socket option.
    pub const NETLINK_EXT_ACK: i32 = 11;
}

/// Values of `RDMA_NLDEV_ATTR_DEV_NODE_TYPE` (`RDMA_NODE_*`).
pub mod node_type {
    /// `RDMA_NODE_IB_CA`.
    pub const IB_CA: u8 = 1;
    /// `RDMA_NODE_IB_SWITCH`.
    pub const IB_SWITCH: u8 = 2;
    /// `RDMA_NODE_IB_ROUTER`.
    pub const IB_ROUTER: u8 = 3;
    /// `RDMA_NODE_RNIC` (iWARP).
    pub const RNIC: u8 = 4;
    /// `RDMA_NODE_USNIC`.
    pub const USNIC: u8 = 5;
    /// `RDMA_NODE_USNIC_UDP`.
    pub const USNIC_UDP: u8 = 6;
    /// `RDMA_NODE_UNSPECIFIED`.
    pub const UNSPECIFIED: u8 = 7;
}

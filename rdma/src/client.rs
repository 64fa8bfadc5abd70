//! The NLDEV client: typed requests and replies on top of a [`Transport`].

use std::fmt;
use std::os::fd::{AsFd, AsRawFd};

use crate::consts::{attr, cmd, nl, rdma_nl_type, RDMA_NL_NLDEV};
use crate::error::{RdmaError, Result};
use crate::message::{messages, Attr, Attrs, DecodeError, ErrorBody, Header, MessageBuilder};
use crate::transport::{RdmaSocket, Transport};

/// Longest RDMA device name the kernel accepts (`IB_DEVICE_NAME_MAX` minus the NUL).
pub const MAX_DEVICE_NAME: usize = 63;

/// A 64-bit InfiniBand GUID, printed the way sysfs does (`0002:c903:0031:7c10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub u64);

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:04x}:{:04x}:{:04x}:{:04x}",
            (v >> 48) & 0xffff,
            (v >> 32) & 0xffff,
            (v >> 16) & 0xffff,
            v & 0xffff
        )
    }
}

/// Whether RDMA devices are visible in every netns or owned by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetnsMode {
    /// Every network namespace sees every RDMA device (the kernel default).
    Shared,
    /// Each RDMA device lives in exactly one network namespace.
    Exclusive,
}

impl NetnsMode {
    /// The value of `RDMA_NLDEV_SYS_ATTR_NETNS_MODE` (1 shared, 0 exclusive).
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Shared => 1,
            Self::Exclusive => 0,
        }
    }

    /// Reads `RDMA_NLDEV_SYS_ATTR_NETNS_MODE`; other values are not defined.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Shared),
            0 => Some(Self::Exclusive),
            _ => None,
        }
    }
}

impl fmt::Display for NetnsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Shared => "shared",
            Self::Exclusive => "exclusive",
        })
    }
}

/// One RDMA device as `RDMA_NLDEV_CMD_GET` reports it.
///
/// The kernel does not report a device's netns: in exclusive mode a
/// socket sees exactly the devices of the netns it was opened in, so the
/// netns is the socket's (see [`RdmaSocket::open_in_netns`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    /// Kernel device index (stable while the device exists).
    pub index: u32,
    /// Device name, e.g. `mlx5_0`.
    pub name: String,
    /// Number of ports (ports are numbered from 1).
    pub port_count: u32,
    /// Device capability flags.
    pub cap_flags: Option<u64>,
    /// Firmware version, when the driver reports one.
    pub fw_version: Option<String>,
    /// Node GUID.
    pub node_guid: Option<Guid>,
    /// System image GUID.
    pub sys_image_guid: Option<Guid>,
    /// `RDMA_NODE_*` value (1 = IB CA, 4 = iWARP RNIC, ...).
    pub node_type: Option<u8>,
    /// Protocol name: `ib`, `roce`, `iw`, `opa`, `usnic`.
    pub protocol: Option<String>,
}

/// One port as `RDMA_NLDEV_CMD_PORT_GET` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortInfo {
    /// Index of the device the port belongs to.
    pub dev_index: u32,
    /// Port number (from 1).
    pub port: u32,
    /// Port capability flags.
    pub cap_flags: Option<u64>,
    /// IB subnet prefix.
    pub subnet_prefix: Option<u64>,
    /// IB local identifier.
    pub lid: Option<u32>,
    /// LID of the subnet manager.
    pub sm_lid: Option<u32>,
    /// LID mask control.
    pub lmc: Option<u8>,
    /// Logical state (`IB_PORT_*`: 1 down, 2 init, 3 armed, 4 active).
    pub state: Option<u8>,
    /// Physical state (5 = LinkUp).
    pub phys_state: Option<u8>,
    /// Index of the netdev behind the port (RoCE/iWARP), when visible.
    pub netdev_index: Option<u32>,
    /// Name of the netdev behind the port, when visible.
    pub netdev_name: Option<String>,
}

/// Subsystem-wide settings from `RDMA_NLDEV_CMD_SYS_GET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemInfo {
    /// Netns mode of the RDMA subsystem.
    pub netns_mode: NetnsMode,
    /// Whether fork() copies RDMA-pinned pages (kernel 5.13+).
    pub copy_on_fork: Option<bool>,
    /// Whether non-privileged users may use the privileged Q_Key (6.6+).
    pub privileged_qkey: Option<bool>,
}

/// A character device as `RDMA_NLDEV_CMD_GET_CHARDEV` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChardevInfo {
    /// File name under `/dev/infiniband`, e.g. `uverbs0`.
    pub name: String,
    /// The `dev_t` (major/minor, kernel encoding).
    pub dev: u64,
    /// ABI revision of the interface.
    pub abi: Option<u64>,
}

impl ChardevInfo {
    /// The node's path, `/dev/infiniband/<name>`.
    pub fn path(&self) -> std::path::PathBuf {
        std::path::Path::new("/dev/infiniband").join(&self.name)
    }
}

/// A reply message kept after its datagram is gone.
#[derive(Debug, Clone)]
struct Reply {
    payload: Vec<u8>,
}

impl Reply {
    fn attrs(&self) -> Attrs<'_> {
        Attrs::new(&self.payload)
    }
}

/// Client of the RDMA netlink NLDEV interface.
///
/// Sequence numbers start at 1 and grow by one per request, so a test can
/// predict every request's bytes.
#[derive(Debug)]
pub struct RdmaClient<T: Transport = RdmaSocket> {
    transport: T,
    seq: u32,
}

impl RdmaClient<RdmaSocket> {
    /// Opens a client on a new socket in the calling thread's netns.
    pub fn open() -> Result<Self> {
        Ok(Self::with_transport(RdmaSocket::open()?))
    }

    /// Opens a client whose socket lives in the netns behind `netns`.
    pub fn open_in_netns(netns: impl AsFd) -> Result<Self> {
        Ok(Self::with_transport(RdmaSocket::open_in_netns(netns)?))
    }
}

impl<T: Transport> RdmaClient<T> {
    /// Wraps a transport (a socket, or a recording transport in tests).
    pub fn with_transport(transport: T) -> Self {
        Self { transport, seq: 0 }
    }

    /// The transport, e.g. to inspect what a test transport recorded.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably (e.g. to script more replies).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Gives the transport back.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Lists the RDMA devices visible from the socket's netns.
    pub fn devices(&mut self) -> Result<Vec<DeviceInfo>> {
        self.exchange(cmd::GET, true, |b| b)?
            .iter()
            .map(|r| decode_device(r.attrs()))
            .collect()
    }

    /// One device by kernel index (`ENODEV` when absent).
    pub fn device(&mut self, index: u32) -> Result<DeviceInfo> {
        let replies = self.exchange(cmd::GET, false, |b| b.attr_u32(attr::DEV_INDEX, index))?;
        let reply = single(replies)?;
        decode_device(reply.attrs())
    }

    /// One device by name ([`RdmaError::NoSuchDevice`] when absent).
    ///
    /// The kernel looks devices up by index only, so this lists them all.
    pub fn device_by_name(&mut self, name: &str) -> Result<DeviceInfo> {
        self.devices()?
            .into_iter()
            .find(|d| d.name == name)
            .ok_or_else(|| RdmaError::NoSuchDevice(name.to_owned()))
    }

    /// The ports of device `index`.
    pub fn ports(&mut self, index: u32) -> Result<Vec<PortInfo>> {
        self.exchange(cmd::PORT_GET, true, |b| b.attr_u32(attr::DEV_INDEX, index))?
            .iter()
            .map(|r| decode_port(r.attrs()))
            .collect()
    }

    /// Subsystem-wide settings.
    pub fn system(&mut self) -> Result<SystemInfo> {
        let reply = single(self.exchange(cmd::SYS_GET, false, |b| b)?)?;
        decode_system(reply.attrs())
    }

    /// The subsystem's netns mode.
    pub fn netns_mode(&mut self) -> Result<NetnsMode> {
        Ok(self.system()?.netns_mode)
    }

    /// Switches the netns mode (needs CAP_NET_ADMIN in the initial netns;
    /// the kernel refuses with `EBUSY` while other netns exist).
    pub fn set_netns_mode(&mut self, mode: NetnsMode) -> Result<()> {
        self.exchange(cmd::SYS_SET, false, |b| {
            b.attr_u8(attr::SYS_NETNS_MODE, mode.as_u8())
        })?;
        Ok(())
    }

    /// Moves device `index` into the netns behind `netns` (exclusive mode only;
    /// shared mode answers `EOPNOTSUPP`).
    ///
    /// After the move the device is gone from this socket's netns: to move it
    /// back, open a client in the netns it now lives in.
    pub fn move_to_netns(&mut self, index: u32, netns: impl AsFd) -> Result<()> {
        let fd = u32::try_from(netns.as_fd().as_raw_fd())
            .map_err(|_| RdmaError::Unexpected("negative file descriptor".to_owned()))?;
        self.exchange(cmd::SET, false, |b| {
            b.attr_u32(attr::DEV_INDEX, index)
                .attr_u32(attr::NET_NS_FD, fd)
        })?;
        Ok(())
    }

    /// Renames device `index`.
    pub fn rename(&mut self, index: u32, new_name: &str) -> Result<()> {
        validate_name(new_name)?;
        self.exchange(cmd::SET, false, |b| {
            b.attr_u32(attr::DEV_INDEX, index)
                .attr_str(attr::DEV_NAME, new_name)
        })?;
        Ok(())
    }

    /// The character device of interface `kind` (`uverbs`, `umad`, `rdma_cm`)
    /// for device `index`, or the device-less one (e.g. `rdma_cm`) with `None`.
    pub fn chardev(&mut self, index: Option<u32>, kind: &str) -> Result<ChardevInfo> {
        validate_name(kind)?;
        let reply = single(self.exchange(cmd::GET_CHARDEV, false, |b| {
            let b = match index {
                Some(i) => b.attr_u32(attr::DEV_INDEX, i),
                None => b,
            };
            b.attr_str(attr::CHARDEV_TYPE, kind)
        })?)?;
        decode_chardev(reply.attrs())
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.seq = 1;
        }
        self.seq
    }

    /// Sends one NLDEV request and collects the replies up to the ack
    /// (plain requests) or `NLMSG_DONE` (dumps).
    fn exchange(
        &mut self,
        op: u16,
        dump: bool,
        attrs: impl FnOnce(MessageBuilder) -> MessageBuilder,
    ) -> Result<Vec<Reply>> {
        let seq = self.next_seq();
        let msg_type = rdma_nl_type(RDMA_NL_NLDEV, op);
        let flags = if dump {
            nl::NLM_F_REQUEST | nl::NLM_F_ACK | nl::NLM_F_DUMP
        } else {
            nl::NLM_F_REQUEST | nl::NLM_F_ACK
        };
        let request = attrs(MessageBuilder::new(msg_type, flags, seq)).finish();
        self.transport.send(&request)?;

        let mut replies = Vec::new();
        loop {
            let datagram = self.transport.recv()?;
            for msg in messages(&datagram) {
                let msg = msg?;
                // Late answers to an earlier, abandoned request.
                if msg.header.seq != seq {
                    continue;
                }
                match msg.header.msg_type {
                    nl::NLMSG_NOOP => {}
                    nl::NLMSG_ERROR => {
                        let body = ErrorBody::parse(msg.payload, msg.header.flags)?;
                        return match body.errno {
                            0 => Ok(replies),
                            errno => Err(RdmaError::Kernel {
                                errno,
                                message: body.ext_msg,
                            }),
                        };
                    }
                    nl::NLMSG_DONE => {
                        check_done(&msg.header, msg.payload)?;
                        return Ok(replies);
                    }
                    nl::NLMSG_OVERRUN => {
                        return Err(RdmaError::Unexpected("netlink overrun".to_owned()))
                    }
                    t if t == msg_type => replies.push(Reply {
                        payload: msg.payload.to_vec(),
                    }),
                    other => {
                        return Err(RdmaError::Unexpected(format!(
                            "message type {other:#x} in answer to {msg_type:#x}"
                        )))
                    }
                }
            }
        }
    }
}

/// A dump can end with a negative errno in `NLMSG_DONE`.
fn check_done(header: &Header, payload: &[u8]) -> Result<()> {
    let code = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .unwrap_or(0);
    if code >= 0 {
        return Ok(());
    }
    let body = ErrorBody::parse(payload, header.flags & nl::NLM_F_ACK_TLVS)
        .ok()
        .and_then(|b| b.ext_msg);
    Err(RdmaError::Kernel {
        errno: code.checked_neg().unwrap_or(i32::MAX),
        message: body,
    })
}

fn single(replies: Vec<Reply>) -> Result<Reply> {
    let count = replies.len();
    let mut it = replies.into_iter();
    match (it.next(), count) {
        (Some(r), 1) => Ok(r),
        _ => Err(RdmaError::Unexpected(format!(
            "expected one reply message, got {count}"
        ))),
    }
}

/// Rejects names the kernel would refuse or that could be read as paths.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_DEVICE_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'%');
    if ok {
        Ok(())
    } else {
        Err(RdmaError::InvalidName(name.chars().take(80).collect()))
    }
}

fn each_attr<'a>(attrs: Attrs<'a>, mut f: impl FnMut(Attr<'a>) -> Result<()>) -> Result<()> {
    for a in attrs {
        let a = a?;
        if a.kind != attr::PAD {
            f(a)?;
        }
    }
    Ok(())
}

fn decode_device(attrs: Attrs<'_>) -> Result<DeviceInfo> {
    let mut index = None;
    let mut name = None;
    let mut d = DeviceInfo::default();
    each_attr(attrs, |a| {
        match a.kind {
            attr::DEV_INDEX => index = Some(a.as_u32()?),
            attr::DEV_NAME => name = Some(a.as_str()?.to_owned()),
            attr::PORT_INDEX => d.port_count = a.as_u32()?,
            attr::CAP_FLAGS => d.cap_flags = Some(a.as_u64()?),
            attr::FW_VERSION => d.fw_version = Some(a.as_str()?.to_owned()),
            attr::NODE_GUID => d.node_guid = Some(Guid(a.as_u64()?)),
            attr::SYS_IMAGE_GUID => d.sys_image_guid = Some(Guid(a.as_u64()?)),
            attr::DEV_NODE_TYPE => d.node_type = Some(a.as_u8()?),
            attr::DEV_PROTOCOL => d.protocol = Some(a.as_str()?.to_owned()),
            _ => {}
        }
        Ok(())
    })?;
    d.index = index.ok_or(DecodeError::MissingAttr {
        attr: attr::DEV_INDEX,
    })?;
    d.name = name.ok_or(DecodeError::MissingAttr {
        attr: attr::DEV_NAME,
    })?;
    Ok(d)
}

fn decode_port(attrs: Attrs<'_>) -> Result<PortInfo> {
    let mut dev_index = None;
    let mut port = None;
    let mut p = PortInfo::default();
    each_attr(attrs, |a| {
        match a.kind {
            attr::DEV_INDEX => dev_index = Some(a.as_u32()?),
            attr::PORT_INDEX => port = Some(a.as_u32()?),
            attr::CAP_FLAGS => p.cap_flags = Some(a.as_u64()?),
            attr::SUBNET_PREFIX => p.subnet_prefix = Some(a.as_u64()?),
            attr::LID => p.lid = Some(a.as_u32()?),
            attr::SM_LID => p.sm_lid = Some(a.as_u32()?),
            attr::LMC => p.lmc = Some(a.as_u8()?),
            attr::PORT_STATE => p.state = Some(a.as_u8()?),
            attr::PORT_PHYS_STATE => p.phys_state = Some(a.as_u8()?),
            attr::NDEV_INDEX => p.netdev_index = Some(a.as_u32()?),
            attr::NDEV_NAME => p.netdev_name = Some(a.as_str()?.to_owned()),
            _ => {}
        }
        Ok(())
    })?;
    p.dev_index = dev_index.ok_or(DecodeError::MissingAttr {
        attr: attr::DEV_INDEX,
    })?;
    p.port = port.ok_or(DecodeError::MissingAttr {
        attr: attr::PORT_INDEX,
    })?;
    Ok(p)
}

fn decode_flag(a: &Attr<'_>) -> Result<bool> {
    match a.as_u8()? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(DecodeError::BadValue {
            attr: a.kind,
            value: u64::from(v),
        }
        .into()),
    }
}

fn decode_system(attrs: Attrs<'_>) -> Result<SystemInfo> {
    let mut mode = None;
    let mut copy_on_fork = None;
    let mut privileged_qkey = None;
    each_attr(attrs, |a| {
        match a.kind {
            attr::SYS_NETNS_MODE => {
                let v = a.as_u8()?;
                mode = Some(NetnsMode::from_u8(v).ok_or(DecodeError::BadValue {
                    attr: a.kind,
                    value: u64::from(v),
                })?);
            }
            attr::SYS_COPY_ON_FORK => copy_on_fork = Some(decode_flag(&a)?),
            attr::SYS_PRIVILEGED_QKEY_MODE => privileged_qkey = Some(decode_flag(&a)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(SystemInfo {
        netns_mode: mode.ok_or(DecodeError::MissingAttr {
            attr: attr::SYS_NETNS_MODE,
        })?,
        copy_on_fork,
        privileged_qkey,
    })
}

fn decode_chardev(attrs: Attrs<'_>) -> Result<ChardevInfo> {
    let mut name = None;
    let mut dev = None;
    let mut abi = None;
    each_attr(attrs, |a| {
        match a.kind {
            attr::CHARDEV_NAME => name = Some(a.as_str()?.to_owned()),
            attr::CHARDEV => dev = Some(a.as_u64()?),
            attr::CHARDEV_ABI => abi = Some(a.as_u64()?),
            _ => {}
        }
        Ok(())
    })?;
    let name = name.ok_or(DecodeError::MissingAttr {
        attr: attr::CHARDEV_NAME,
    })?;
    // The name becomes a path under /dev/infiniband: never trust it blindly.
    validate_name(&name)?;
    Ok(ChardevInfo {
        name,
        dev: dev.ok_or(DecodeError::MissingAttr {
            attr: attr::CHARDEV,
        })?,
        abi,
    })
}

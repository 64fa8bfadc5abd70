//! Moving request and reply datagrams: the [`Transport`] trait, the real
//! [`RdmaSocket`], and [`ReplayTransport`] which records requests and plays
//! back scripted replies for tests.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::consts::{nl, NETLINK_RDMA};
use crate::error::{RdmaError, Result};
use crate::message::{self, Header, MessageBuilder};

/// Sends one request datagram and receives reply datagrams.
///
/// The request/reply logic (sequence numbers, multi-part dumps, acks and
/// errors) lives above this trait, so a test transport exercises it too.
pub trait Transport {
    /// Sends one complete request datagram.
    fn send(&mut self, datagram: &[u8]) -> Result<()>;
    /// Receives the next datagram from the kernel (may hold several messages).
    fn recv(&mut self) -> Result<Vec<u8>>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn send(&mut self, datagram: &[u8]) -> Result<()> {
        (**self).send(datagram)
    }
    fn recv(&mut self) -> Result<Vec<u8>> {
        (**self).recv()
    }
}

/// Largest reply datagram accepted; NLDEV replies are a page or two.
const RECV_BUF: usize = 64 * 1024;

/// How long [`RdmaSocket`] waits for a reply before giving up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A `NETLINK_RDMA` socket.
///
/// A netlink socket talks to the network namespace it was created in, and
/// in exclusive mode each netns sees only its own RDMA devices. Create it
/// with [`RdmaSocket::open`] on the current thread's netns, or with
/// [`RdmaSocket::open_in_netns`], which creates it on a short-lived thread
/// that has `setns`-ed into the target (never `setns` an async runtime's
/// worker thread). The socket keeps its netns when handed to other threads.
#[derive(Debug)]
pub struct RdmaSocket {
    fd: OwnedFd,
}

impl RdmaSocket {
    /// Opens a socket in the calling thread's network namespace.
    ///
    /// Returns [`RdmaError::NotAvailable`] when the kernel has no RDMA.
    pub fn open() -> Result<Self> {
        Self::open_protocol(NETLINK_RDMA)
    }

    /// Opens a netlink socket of `protocol`; only tests use another than RDMA.
    fn open_protocol(protocol: i32) -> Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            let err = std::io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EPROTONOSUPPORT) => RdmaError::NotAvailable,
                _ => RdmaError::Io {
                    op: "socket",
                    source: err,
                },
            });
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = Self { fd };
        sock.bind()?;
        // Best effort: older kernels lack these and work without them.
        let _ = sock.set_int_opt(libc::SOL_NETLINK, nl::NETLINK_EXT_ACK, 1);
        let _ = sock.set_int_opt(libc::SOL_NETLINK, nl::NETLINK_CAP_ACK, 1);
        sock.set_timeout(DEFAULT_TIMEOUT)?;
        Ok(sock)
    }

    /// Opens a socket inside the network namespace `netns` (an fd of
    /// `/proc/<pid>/ns/net` or `/run/netns/<name>`), leaving the caller's
    /// thread where it is.
    pub fn open_in_netns(netns: impl AsFd) -> Result<Self> {
        let fd = netns
            .as_fd()
            .try_clone_to_owned()
            .map_err(RdmaError::io("dup"))?;
        let worker = std::thread::Builder::new()
            .name("rdma-netns".into())
            .spawn(move || -> Result<Self> {
                // SAFETY: setns on this thread only; the thread ends right after.
                if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(RdmaError::Io {
                        op: "setns",
                        source: std::io::Error::last_os_error(),
                    });
                }
                Self::open()
            })
            .map_err(RdmaError::io("spawn"))?;
        worker.join().unwrap_or_else(|_| {
            Err(RdmaError::Unexpected(
                "netns worker thread panicked".to_owned(),
            ))
        })
    }

    /// Sets how long `recv` waits for the kernel.
    pub fn set_timeout(&self, timeout: Duration) -> Result<()> {
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        // SAFETY: passes a valid timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::addr_of!(tv).cast(),
                socklen_of::<libc::timeval>(),
            )
        };
        if rc != 0 {
            return Err(RdmaError::io("setsockopt(SO_RCVTIMEO)")(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn bind(&self) -> Result<()> {
        let addr = kernel_addr();
        // SAFETY: passes a valid sockaddr_nl of the size given.
        let rc = unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                std::ptr::addr_of!(addr).cast(),
                socklen_of::<libc::sockaddr_nl>(),
            )
        };
        if rc != 0 {
            return Err(RdmaError::io("bind")(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn set_int_opt(&self, level: i32, name: i32, value: i32) -> std::io::Result<()> {
        // SAFETY: passes a valid int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                std::ptr::addr_of!(value).cast(),
                socklen_of::<i32>(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

impl AsFd for RdmaSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Transport for RdmaSocket {
    fn send(&mut self, datagram: &[u8]) -> Result<()> {
        let addr = kernel_addr();
        // SAFETY: buffer and address are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                std::ptr::addr_of!(addr).cast(),
                socklen_of::<libc::sockaddr_nl>(),
            )
        };
        match usize::try_from(n) {
            Ok(sent) if sent == datagram.len() => Ok(()),
            Ok(sent) => Err(RdmaError::Unexpected(format!(
                "short send: {sent} of {} bytes",
                datagram.len()
            ))),
            Err(_) => Err(RdmaError::io("sendto")(std::io::Error::last_os_error())),
        }
    }

    fn recv(&mut self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let mut from = kernel_addr();
            let mut from_len = socklen_of::<libc::sockaddr_nl>();
            // SAFETY: buffer and address are valid for the lengths given;
            // MSG_TRUNC makes the return value the datagram's full size.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                    std::ptr::addr_of_mut!(from).cast(),
                    &mut from_len,
                )
            };
            let n = match usize::try_from(n) {
                Ok(n) => n,
                Err(_) => {
                    let err = std::io::Error::last_os_error();
                    if err.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(RdmaError::io("recvfrom")(err));
                }
            };
            if n > buf.len() {
                return Err(RdmaError::Unexpected(format!(
                    "reply datagram of {n} bytes exceeds {} byte buffer",
                    buf.len()
                )));
            }
            // Only the kernel (port 0) may answer; drop anything else.
            if from.nl_pid != 0 {
                continue;
            }
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or(16);
    addr
}

fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// One scripted answer of a [`ReplayTransport`].
#[derive(Debug)]
enum Scripted {
    Datagram(Vec<u8>),
    Errno(i32),
    Ack,
    Fail(RdmaError),
}

/// A transport for tests: records every request and answers with scripted
/// datagrams in the kernel's format, in order.
///
/// By default the sequence number of every scripted reply message is
/// rewritten to the one of the latest request, so scripts need not know
/// it; [`ReplayTransport::keep_seq`] turns that off. With
/// [`ReplayTransport::acking`], an exhausted script answers each request
/// with an acknowledgement, which is how the kernel answers a successful
/// `SET`/`SYS_SET`.
#[derive(Debug, Default)]
pub struct ReplayTransport {
    sent: Vec<Vec<u8>>,
    script: VecDeque<Scripted>,
    keep_seq: bool,
    ack_when_empty: bool,
    last_header: Option<Header>,
    acked_last: bool,
}

impl ReplayTransport {
    /// An empty transport: every `recv` fails until replies are pushed.
    pub fn new() -> Self {
        Self::default()
    }

    /// A transport that acknowledges every request the script does not answer.
    pub fn acking() -> Self {
        Self {
            ack_when_empty: true,
            ..Self::default()
        }
    }

    /// Leaves sequence numbers of scripted replies as they are.
    pub fn keep_seq(mut self) -> Self {
        self.keep_seq = true;
        self
    }

    /// Queues a reply datagram (one or more kernel messages).
    pub fn push_reply(&mut self, datagram: Vec<u8>) -> &mut Self {
        self.script.push_back(Scripted::Datagram(datagram));
        self
    }

    /// Queues the kernel's refusal of the request then pending, with a
    /// positive `errno` (e.g. `ENODEV` when the device is gone).
    pub fn push_errno(&mut self, errno: i32) -> &mut Self {
        self.script.push_back(Scripted::Errno(errno));
        self
    }

    /// Queues an acknowledgement of the request then pending.
    pub fn push_ack(&mut self) -> &mut Self {
        self.script.push_back(Scripted::Ack);
        self
    }

    /// Queues a failure of `recv` (e.g. a timeout).
    pub fn push_failure(&mut self, err: RdmaError) -> &mut Self {
        self.script.push_back(Scripted::Fail(err));
        self
    }

    /// Every request sent so far, in order.
    pub fn sent(&self) -> &[Vec<u8>] {
        &self.sent
    }

    /// Takes the recorded requests, leaving the record empty.
    pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.sent)
    }

    /// How many scripted replies have not been consumed.
    pub fn pending(&self) -> usize {
        self.script.len()
    }

    /// Header of the latest request (an empty one before any request).
    fn pending_header(&self) -> Header {
        self.last_header.unwrap_or(Header {
            len: 16,
            msg_type: 0,
            flags: 0,
            seq: 0,
            pid: 0,
        })
    }

    fn rewrite_seq(&self, mut datagram: Vec<u8>) -> Vec<u8> {
        let Some(seq) = self.last_header.map(|h| h.seq) else {
            return datagram;
        };
        let mut offset = 0usize;
        while let Some(rest) = datagram.get(offset..) {
            let Ok(header) = Header::parse(rest) else {
                break;
            };
            let len = usize::try_from(header.len).unwrap_or(0);
            if len < nl::NLMSG_HDRLEN {
                break;
            }
            if let Some(field) = datagram.get_mut(offset + 8..offset + 12) {
                field.copy_from_slice(&seq.to_ne_bytes());
            }
            offset += message::align(len);
        }
        datagram
    }
}

impl Transport for ReplayTransport {
    fn send(&mut self, datagram: &[u8]) -> Result<()> {
        self.sent.push(datagram.to_vec());
        self.last_header = Header::parse(datagram).ok();
        self.acked_last = false;
        Ok(())
    }

    fn recv(&mut self) -> Result<Vec<u8>> {
        match self.script.pop_front() {
            Some(Scripted::Datagram(d)) if self.keep_seq => Ok(d),
            Some(Scripted::Datagram(d)) => Ok(self.rewrite_seq(d)),
            Some(Scripted::Errno(errno)) => Ok(kernel_reply::error(&self.pending_header(), errno)),
            Some(Scripted::Ack) => Ok(kernel_reply::ack(&self.pending_header())),
            Some(Scripted::Fail(e)) => Err(e),
            None => match self.last_header {
                Some(h) if self.ack_when_empty && !self.acked_last => {
                    self.acked_last = true;
                    Ok(kernel_reply::ack(&h))
                }
                _ => Err(RdmaError::Io {
                    op: "recvfrom",
                    source: std::io::Error::from(std::io::ErrorKind::WouldBlock),
                }),
            },
        }
    }
}

/// Builders of replies in the kernel's exact format, for scripting a
/// [`ReplayTransport`].
pub mod kernel_reply {
    use super::*;
    use crate::consts::{attr, cmd, rdma_nl_type, RDMA_NL_NLDEV};

    /// An acknowledgement (`NLMSG_ERROR` with errno 0, capped) of `request`.
    pub fn ack(request: &Header) -> Vec<u8> {
        error(request, 0)
    }

    /// An `NLMSG_ERROR` with `errno` (positive) echoing `request`'s header,
    /// as a socket with `NETLINK_CAP_ACK` receives it.
    pub fn error(request: &Header, errno: i32) -> Vec<u8> {
        MessageBuilder::new(nl::NLMSG_ERROR, nl::NLM_F_CAPPED, request.seq)
            .raw(&errno.wrapping_neg().to_ne_bytes())
            .raw(&request.to_bytes())
            .finish()
    }

    /// The `NLMSG_DONE` that ends a dump (payload: the int 0).
    pub fn done(seq: u32) -> Vec<u8> {
        MessageBuilder::new(nl::NLMSG_DONE, nl::NLM_F_MULTI, seq)
            .raw(&0i32.to_ne_bytes())
            .finish()
    }

    /// A `RDMA_NLDEV_CMD_GET` reply for one device, attributes in the
    /// kernel's order; `multi` inside a dump.
    pub fn device(seq: u32, multi: bool, dev: &crate::client::DeviceInfo) -> Vec<u8> {
        let flags = if multi { nl::NLM_F_MULTI } else { 0 };
        let mut b = MessageBuilder::new(rdma_nl_type(RDMA_NL_NLDEV, cmd::GET), flags, seq)
            .attr_u32(attr::DEV_INDEX, dev.index)
            .attr_str(attr::DEV_NAME, &dev.name)
            .attr_u32(attr::PORT_INDEX, dev.port_count);
        if let Some(c) = dev.cap_flags {
            b = b.attr_u64(attr::CAP_FLAGS, c);
        }
        if let Some(fw) = &dev.fw_version {
            b = b.attr_str(attr::FW_VERSION, fw);
        }
        if let Some(g) = dev.node_guid {
            b = b.attr_u64(attr::NODE_GUID, g.0);
        }
        if let Some(g) = dev.sys_image_guid {
            b = b.attr_u64(attr::SYS_IMAGE_GUID, g.0);
        }
        if let Some(t) = dev.node_type {
            b = b.attr_u8(attr::DEV_NODE_TYPE, t);
        }
        if let Some(p) = &dev.protocol {
            b = b.attr_str(attr::DEV_PROTOCOL, p);
        }
        b.finish()
    }

    /// A `RDMA_NLDEV_CMD_SYS_GET` reply carrying the netns mode.
    pub fn sys(seq: u32, mode: crate::client::NetnsMode) -> Vec<u8> {
        MessageBuilder::new(rdma_nl_type(RDMA_NL_NLDEV, cmd::SYS_GET), 0, seq)
            .attr_u8(attr::SYS_NETNS_MODE, mode.as_u8())
            .finish()
    }

    /// Concatenates messages into one datagram.
    pub fn datagram(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The socket plumbing (bind, sendto, recvfrom, framing) against a
    /// netlink family this kernel has: an RTM_GETLINK dump in a fresh
    /// netns, which holds exactly `lo`.
    #[test]
    fn socket_round_trip_with_rtnetlink_in_fresh_netns() {
        let names = std::thread::spawn(|| -> Vec<String> {
            // SAFETY: unshare affects only this short-lived thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let mut sock = RdmaSocket::open_protocol(libc::NETLINK_ROUTE).unwrap();
            sock.set_timeout(Duration::from_secs(2)).unwrap();
            const RTM_GETLINK: u16 = 18;
            const RTM_NEWLINK: u16 = 16;
            const IFLA_IFNAME: u16 = 3;
            // struct ifinfomsg (16 bytes), all zero: every family.
            let req = MessageBuilder::new(RTM_GETLINK, nl::NLM_F_REQUEST | nl::NLM_F_DUMP, 7)
                .raw(&[0u8; 16])
                .finish();
            sock.send(&req).unwrap();
            let mut names = Vec::new();
            loop {
                let dgram = sock.recv().unwrap();
                for m in message::messages(&dgram) {
                    let m = m.unwrap();
                    assert_eq!(m.header.seq, 7);
                    match m.header.msg_type {
                        nl::NLMSG_DONE => return names,
                        RTM_NEWLINK => {
                            let attrs = message::Attrs::new(m.payload.get(16..).unwrap());
                            for a in attrs {
                                let a = a.unwrap();
                                if a.kind == IFLA_IFNAME {
                                    names.push(a.as_str().unwrap().to_owned());
                                }
                            }
                        }
                        other => panic!("unexpected message type {other}"),
                    }
                }
            }
        })
        .join()
        .unwrap();
        assert_eq!(names, ["lo"]);
    }

    #[test]
    fn replay_rewrites_sequence_numbers_of_every_message() {
        let mut t = ReplayTransport::new();
        let a = MessageBuilder::new(nl::NLMSG_NOOP, 0, 0).finish();
        let b = MessageBuilder::new(nl::NLMSG_DONE, 0, 0)
            .raw(&[0; 4])
            .finish();
        t.push_reply([a, b].concat());
        let req = MessageBuilder::new(0x1401, 5, 42).finish();
        t.send(&req).unwrap();
        let got = t.recv().unwrap();
        let seqs: Vec<u32> = message::messages(&got)
            .map(|m| m.unwrap().header.seq)
            .collect();
        assert_eq!(seqs, [42, 42]);
        assert!(t.recv().is_err(), "script exhausted");
    }
}

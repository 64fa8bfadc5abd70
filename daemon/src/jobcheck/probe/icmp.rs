//! ICMP echo over a raw socket bound to one pod interface, with the
//! don't-fragment bit set on every request (`IP_PMTUDISC_PROBE`: the size
//! asked for leaves as one packet or the send fails, whatever the kernel's
//! path MTU cache says).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::sys;

/// IPv4 header without options plus the ICMP echo header.
pub const HEADERS: usize = 20 + 8;
/// Bytes of payload that identify our own requests.
const TOKEN: usize = 8;
/// `ICMP_FILTER` (linux/icmp.h): a mask of ICMP types a raw socket drops.
const ICMP_FILTER: i32 = 1;
/// `SO_TIMESTAMPNS` / `SCM_TIMESTAMPNS` (asm-generic, x86 and arm64): the
/// kernel stamps each packet when it arrives, so a reply's time does not
/// include how late this thread was scheduled.
const SO_TIMESTAMPNS: i32 = 35;
const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in data.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).map_or(0, |b| u32::from(*b));
        sum = sum.wrapping_add(hi | lo);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request of `payload_len` bytes of payload starting with `token`.
pub fn echo_request(id: u16, seq: u16, token: u64, payload_len: usize) -> Vec<u8> {
    let mut p = vec![ECHO_REQUEST, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    let tok = token.to_be_bytes();
    p.extend((0..payload_len.max(TOKEN)).map(|i| tok.get(i).copied().unwrap_or(i as u8)));
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// The sender and sequence number of an echo reply to (`id`, `token`) in
/// `packet` (an IPv4 packet as a raw socket reads it); None for anything else.
pub fn parse_reply(packet: &[u8], id: u16, token: u64) -> Option<(Ipv4Addr, u16)> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if ihl < 20 || packet.get(9) != Some(&1) {
        return None;
    }
    let src = Ipv4Addr::new(
        *packet.get(12)?,
        *packet.get(13)?,
        *packet.get(14)?,
        *packet.get(15)?,
    );
    let icmp = packet.get(ihl..)?;
    if icmp.len() < 8 + TOKEN || icmp[0] != ECHO_REPLY || icmp[1] != 0 {
        return None;
    }
    let got_id = u16::from_be_bytes([icmp[4], icmp[5]]);
    let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
    (got_id == id && icmp[8..8 + TOKEN] == token.to_be_bytes()).then_some((src, seq))
}

/// One reply to one of our requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Who answered.
    pub from: Ipv4Addr,
    /// The request's sequence number.
    pub seq: u16,
    /// When the kernel received it, if it said.
    pub at: Option<SystemTime>,
}

/// The receive time in a `recvmsg` control buffer, if the kernel put one.
fn arrival(msg: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros stay inside its
    // control buffer, and the payload is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == SO_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                let secs = u64::try_from(ts.tv_sec).ok()?;
                let nanos = u32::try_from(ts.tv_nsec).ok()?;
                return UNIX_EPOCH.checked_add(Duration::new(secs, nanos));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// A raw ICMP socket on one interface of the calling thread's netns.
#[derive(Debug)]
pub struct EchoSocket {
    fd: OwnedFd,
    id: u16,
    token: u64,
    buf: Vec<u8>,
}

impl EchoSocket {
    /// Opens the socket on `ifname`; replies to other sockets' requests
    /// are told apart by identifier and token.
    pub fn open(ifname: &str) -> io::Result<Self> {
        let fd = sys::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)?;
        sys::bind_to_device(&fd, ifname)?;
        sys::setsockopt(
            &fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            &libc::IP_PMTUDISC_PROBE,
        )?;
        // Everything but echo replies stays in the kernel.
        let mask: u32 = !(1u32 << ECHO_REPLY);
        sys::setsockopt(&fd, libc::SOL_RAW, ICMP_FILTER, &mask)?;
        sys::setsockopt(&fd, libc::SOL_SOCKET, SO_TIMESTAMPNS, &1i32)?;
        let r = sys::random_u64();
        Ok(Self {
            fd,
            id: (r >> 48) as u16,
            token: sys::random_u64(),
            buf: vec![0u8; 65_536],
        })
    }

    /// Sends one echo request whose IP packet is `ip_len` bytes long.
    pub fn send(&self, to: Ipv4Addr, seq: u16, ip_len: usize) -> io::Result<()> {
        let pkt = echo_request(self.id, seq, self.token, ip_len.saturating_sub(HEADERS));
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(to).to_be(),
            },
            sin_zero: [0; 8],
        };
        sys::send_to(&self.fd, &pkt, &addr)
    }

    /// The next reply to one of our requests, waiting until `until` at most.
    pub fn recv(&mut self, until: Instant) -> io::Result<Option<Reply>> {
        while sys::readable_before(&self.fd, until)? {
            let mut iov = libc::iovec {
                iov_base: self.buf.as_mut_ptr().cast(),
                iov_len: self.buf.len(),
            };
            let mut control = [0u64; 16];
            // SAFETY: msghdr is plain old data; zeroes are a valid start.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            // SAFETY: every buffer `msg` points to is valid and writable.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if sys::transient(&e) {
                    continue;
                }
                return Err(e);
            }
            let n = usize::try_from(n).unwrap_or(0);
            let parsed = self
                .buf
                .get(..n)
                .and_then(|p| parse_reply(p, self.id, self.token));
            if let Some((from, seq)) = parsed {
                return Ok(Some(Reply {
                    from,
                    seq,
                    at: arrival(&msg),
                }));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo reply as the peer's kernel builds it from `req`.
    fn reply_to(req: &[u8], src: Ipv4Addr) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&[10, 0, 0, 1]);
        let mut icmp = req.to_vec();
        icmp[0] = ECHO_REPLY;
        icmp[2] = 0;
        icmp[3] = 0;
        let c = checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        ip.extend(icmp);
        ip
    }

    #[test]
    fn requests_checksum_to_zero_and_replies_match_only_their_sender() {
        let req = echo_request(7, 300, 0xfeed, 56);
        assert_eq!(req.len(), 8 + 56);
        assert_eq!(checksum(&req), 0);
        let from = Ipv4Addr::new(10, 0, 0, 9);
        let rep = reply_to(&req, from);
        assert_eq!(parse_reply(&rep, 7, 0xfeed), Some((from, 300)));
        assert_eq!(parse_reply(&rep, 8, 0xfeed), None);
        assert_eq!(parse_reply(&rep, 7, 0xbeef), None);
        assert_eq!(parse_reply(&rep[..30], 7, 0xfeed), None);
        assert_eq!(parse_reply(&[], 7, 0xfeed), None);
        // A tiny payload still carries the whole token.
        assert_eq!(echo_request(1, 1, 2, 0).len(), 8 + TOKEN);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }
}

//! ARP probes (RFC 5227: sender address 0.0.0.0) on one pod interface,
//! through a packet socket. A host that holds the probed address answers
//! whatever its routes say, so the same probe tells whether another host
//! uses a rank's own address and whether another job's pod is reachable on
//! this rail's link at all.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use super::sys;

const ARP_LEN: usize = 28;
const OP_REQUEST: u16 = 1;
const OP_REPLY: u16 = 2;

/// An ARP packet's addresses (Ethernet/IPv4 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket {
    /// Request or reply.
    pub reply: bool,
    /// Sender hardware address.
    pub sha: [u8; 6],
    /// Sender protocol address.
    pub spa: Ipv4Addr,
    /// Target protocol address.
    pub tpa: Ipv4Addr,
}

/// An ARP probe for `target` from `mac`: who has `target`? (sender 0.0.0.0).
pub fn probe_packet(mac: [u8; 6], target: Ipv4Addr) -> [u8; ARP_LEN] {
    let mut p = [0u8; ARP_LEN];
    p[0..2].copy_from_slice(&1u16.to_be_bytes());
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&OP_REQUEST.to_be_bytes());
    p[8..14].copy_from_slice(&mac);
    p[24..28].copy_from_slice(&target.octets());
    p
}

/// Parses an Ethernet/IPv4 ARP packet (as a `SOCK_DGRAM` packet socket reads it).
pub fn parse(p: &[u8]) -> Option<ArpPacket> {
    let p = p.get(..ARP_LEN)?;
    if p[0..6] != [0, 1, 8, 0, 6, 4] {
        return None;
    }
    let op = u16::from_be_bytes([p[6], p[7]]);
    let mut sha = [0u8; 6];
    sha.copy_from_slice(&p[8..14]);
    let ip = |at: usize| Ipv4Addr::new(p[at], p[at + 1], p[at + 2], p[at + 3]);
    Some(ArpPacket {
        reply: op == OP_REPLY,
        sha,
        spa: ip(14),
        tpa: ip(24),
    })
}

/// A packet socket hearing ARP on one interface.
#[derive(Debug)]
pub struct ArpSocket {
    fd: OwnedFd,
    index: u32,
    mac: [u8; 6],
}

fn link_addr(index: u32, dest: [u8; 6]) -> io::Result<libc::sockaddr_ll> {
    let mut addr = [0u8; 8];
    addr[..6].copy_from_slice(&dest);
    Ok(libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: (libc::ETH_P_ARP as u16).to_be(),
        sll_ifindex: i32::try_from(index)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: addr,
    })
}

impl ArpSocket {
    /// Opens the socket on interface `index` whose own address is `mac`.
    pub fn open(index: u32, mac: [u8; 6]) -> io::Result<Self> {
        let proto = i32::from((libc::ETH_P_ARP as u16).to_be());
        let fd = sys::socket(libc::AF_PACKET, libc::SOCK_DGRAM, proto)?;
        let addr = link_addr(index, [0; 6])?;
        // SAFETY: `addr` is a valid sockaddr_ll for the length given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, index, mac })
    }

    /// Broadcasts a probe for `target`.
    pub fn probe(&self, target: Ipv4Addr) -> io::Result<()> {
        let pkt = probe_packet(self.mac, target);
        let addr = link_addr(self.index, [0xff; 6])?;
        sys::send_to(&self.fd, &pkt, &addr)
    }

    /// The next ARP packet another host sent on the link, waiting until
    /// `until` at most (our own frames are skipped).
    pub fn recv(&self, until: Instant) -> io::Result<Option<ArpPacket>> {
        let mut buf = [0u8; 256];
        while sys::readable_before(&self.fd, until)? {
            // SAFETY: sockaddr_ll is plain old data; zeroes are valid.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf`, `from` and `len` are valid and writable.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if sys::transient(&e) {
                    continue;
                }
                return Err(e);
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let n = usize::try_from(n).unwrap_or(0);
            match buf.get(..n).and_then(parse) {
                Some(p) if p.sha != self.mac => return Ok(Some(p)),
                _ => {}
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_have_no_sender_address_and_parse_back() {
        let mac = [2, 0, 0, 0, 0, 7];
        let target = Ipv4Addr::new(198, 18, 0, 4);
        let p = probe_packet(mac, target);
        let seen = parse(&p).unwrap();
        assert_eq!(
            seen,
            ArpPacket {
                reply: false,
                sha: mac,
                spa: Ipv4Addr::UNSPECIFIED,
                tpa: target,
            }
        );
        let mut reply = p;
        reply[7] = 2;
        assert!(parse(&reply).unwrap().reply);
        assert_eq!(parse(&p[..20]), None);
        let mut not_ipv4 = p;
        not_ipv4[2] = 0x86;
        assert_eq!(parse(&not_ipv4), None);
    }
}

//! Telling neighbours about an interface's addresses after it moved:
//! gratuitous ARP for IPv4 and unsolicited neighbour advertisements for
//! IPv6, sent from an AF_PACKET socket made in the interface's namespace.
//! Best effort: the caller logs errors and carries on.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use crate::{
    error::{ErrorKind, NetlinkError},
    mac::MacAddr,
    netns::Netns,
};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const BROADCAST: [u8; 6] = [0xff; 6];
/// Ethernet address of the IPv6 all-nodes group ff02::1.
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
/// NA "override" flag: replace existing cache entries with our MAC.
const NA_FLAG_OVERRIDE: u32 = 0x2000_0000;

/// Builds a gratuitous ARP request frame announcing `ip` at `mac`.
pub fn garp_frame(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&1u16.to_be_bytes()); // request
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f
}

/// Builds an unsolicited neighbour advertisement frame for `ip` at `mac`,
/// sent to all nodes with the override flag (RFC 4861 section 7.2.6).
pub fn unsolicited_na_frame(mac: MacAddr, ip: Ipv6Addr) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[ICMPV6_NEIGHBOR_ADVERT, 0, 0, 0]);
    icmp.extend_from_slice(&NA_FLAG_OVERRIDE.to_be_bytes());
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[2, 1]); // option: target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac.0);
    let sum = icmpv6_checksum(&ip, &ALL_NODES, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&ALL_NODES_MAC);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.push(58); // next header: ICMPv6
    f.push(255); // hop limit: receivers drop NDP with anything else
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&ALL_NODES.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The ICMPv6 checksum over the IPv6 pseudo-header and `body`.
pub fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, body: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for chunk in bytes.chunks(2) {
            let hi = u32::from(chunk[0]) << 8;
            let lo = chunk.get(1).copied().map_or(0, u32::from);
            sum += hi | lo;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(body.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(body);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn send_frame(
    sock: &OwnedFd,
    ifindex: u32,
    dst: [u8; 6],
    proto: u16,
    frame: &[u8],
) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto.to_be();
    addr.sll_ifindex =
        i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&dst);
    // SAFETY: frame and addr are valid for the lengths given.
    let rc = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn packet_socket() -> io::Result<OwnedFd> {
    // Protocol 0: the socket only sends and never queues received frames.
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Announces every address of `addrs` on interface `ifindex` (in `ns`, with
/// MAC `mac`): one gratuitous ARP per IPv4 address and one unsolicited NA
/// per IPv6 address. Every address is tried; the first error is returned.
pub fn announce_addresses(
    ns: &Netns,
    ifindex: u32,
    mac: MacAddr,
    addrs: &[IpAddr],
) -> Result<(), NetlinkError> {
    let target = format!("link #{ifindex}");
    let sock = ns
        .run(packet_socket)
        .map_err(|e| NetlinkError::new("announce", &target, ErrorKind::Netns(e)))?
        .map_err(|e| NetlinkError::new("announce", &target, ErrorKind::Io(e)))?;
    let mut first_err = None;
    for addr in addrs {
        let res = match addr {
            IpAddr::V4(v4) => {
                send_frame(&sock, ifindex, BROADCAST, ETH_P_ARP, &garp_frame(mac, *v4))
            }
            IpAddr::V6(v6) => send_frame(
                &sock,
                ifindex,
                ALL_NODES_MAC,
                ETH_P_IPV6,
                &unsolicited_na_frame(mac, *v6),
            ),
        };
        if let Err(e) = res {
            first_err.get_or_insert(NetlinkError::new(
                "announce",
                format!("{addr} on {target}"),
                ErrorKind::Io(e),
            ));
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Asks the kernel to announce `ifname`'s addresses itself when the link
/// comes up: `arp_notify` (gratuitous ARP for IPv4) and `ndisc_notify`
/// (unsolicited neighbour advertisement for IPv6) in `ns`. Cheaper than
/// sending frames from a packet socket, whose release waits for an RCU
/// grace period. A family that is disabled in `ns` is skipped.
pub fn enable_kernel_announcements(ns: &Netns, ifname: &str) -> Result<(), NetlinkError> {
    crate::link::validate_ifname(ifname)
        .map_err(|e| NetlinkError::new("announce", ifname, ErrorKind::InvalidInput(e)))?;
    let paths = [
        format!("/proc/sys/net/ipv4/conf/{ifname}/arp_notify"),
        format!("/proc/sys/net/ipv6/conf/{ifname}/ndisc_notify"),
    ];
    ns.run(|| {
        for p in &paths {
            match std::fs::write(p, b"1") {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .map_err(|e| NetlinkError::new("announce", ifname, ErrorKind::Netns(e)))?
    .map_err(|e| NetlinkError::new("announce", ifname, ErrorKind::Io(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_frame_with_checksum_folds_to_zero() {
        let mac = MacAddr([2, 0, 0, 0, 0, 7]);
        let ip: Ipv6Addr = "fd00::7".parse().unwrap();
        let f = unsolicited_na_frame(mac, ip);
        assert_eq!(f.len(), 14 + 40 + 32);
        // Re-summing a body that contains its own checksum gives 0.
        assert_eq!(icmpv6_checksum(&ip, &ALL_NODES, &f[54..]), 0);
        assert_eq!(f[54], ICMPV6_NEIGHBOR_ADVERT);
        assert_eq!(&f[62..78], &ip.octets());
    }

    #[test]
    fn garp_frame_layout() {
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let f = garp_frame(mac, Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[28..32], &[10, 1, 2, 3]);
        assert_eq!(&f[38..42], &[10, 1, 2, 3]);
        assert_eq!(&f[22..28], &mac.0);
    }
}

//! What a pod interface looks like from inside its netns: index, state,
//! MTU and MAC, read with the classic `SIOCGIF*` ioctls (sysfs would show
//! jobnetd's own netns, not the thread's).

use std::io;
use std::os::fd::AsRawFd;

use super::sys;

/// One interface as the probing thread's netns has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfaceFacts {
    /// Interface index.
    pub index: u32,
    /// Administratively up.
    pub up: bool,
    /// Operationally up (carrier).
    pub running: bool,
    /// MTU.
    pub mtu: u32,
    /// Hardware address.
    pub mac: [u8; 6],
}

/// Formats a MAC the way `ip link` does.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn request(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

fn ioctl(fd: &std::os::fd::OwnedFd, op: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: `req` is a valid ifreq the kernel reads and fills in place.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), op as _, req as *mut libc::ifreq) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads interface `name` in the calling thread's netns; `None` when the
/// netns has no such interface.
pub fn read(name: &str) -> io::Result<Option<IfaceFacts>> {
    let fd = sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut req = request(name)?;
    match ioctl(&fd, libc::SIOCGIFINDEX, &mut req) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
        Err(e) => return Err(e),
    }
    // SAFETY: SIOCGIFINDEX filled the ifindex member.
    let index = u32::try_from(unsafe { req.ifr_ifru.ifru_ifindex }).unwrap_or(0);
    let mut req = request(name)?;
    ioctl(&fd, libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
    let mut req = request(name)?;
    ioctl(&fd, libc::SIOCGIFMTU, &mut req)?;
    // SAFETY: SIOCGIFMTU filled the mtu member.
    let mtu = u32::try_from(unsafe { req.ifr_ifru.ifru_mtu }).unwrap_or(0);
    let mut req = request(name)?;
    ioctl(&fd, libc::SIOCGIFHWADDR, &mut req)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(data.iter()) {
        *d = *s as u8;
    }
    Ok(Some(IfaceFacts {
        index,
        up: flags & libc::IFF_UP != 0,
        running: flags & libc::IFF_RUNNING != 0,
        mtu,
        mac,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_read_and_a_missing_name_is_none() {
        let lo = read("lo").unwrap().expect("every netns has lo");
        assert!(lo.index >= 1);
        assert!(lo.mtu >= 1280);
        assert_eq!(read("jn-no-such0").unwrap(), None);
        assert!(read("").is_err());
        assert_eq!(mac_text(&[2, 0, 0xab, 1, 2, 3]), "02:00:ab:01:02:03");
    }
}

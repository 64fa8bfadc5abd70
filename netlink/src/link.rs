//! Link (netdev) queries and changes: the `ip link` subset a VF attach needs.

use std::{os::fd::AsRawFd, time::Duration};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    link::{LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage, Prop, State},
    RouteNetlinkMessage,
};
use nix::errno::Errno;

use crate::{
    error::{ErrorKind, NetlinkError},
    handle::Handle,
    mac::MacAddr,
    netns::Netns,
};

/// Operational state of a link (RFC 2863), as the kernel reports it.
pub type OperState = State;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// How often a MAC change refused with EBUSY is tried in total.
pub const MAC_BUSY_ATTEMPTS: u32 = 5;
/// Delay before the first MAC retry; doubled for each further retry.
pub const MAC_BUSY_FIRST_DELAY: Duration = Duration::from_millis(10);

/// A snapshot of one link as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index (unique within its namespace).
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address (6 bytes for Ethernet, 20 for IPoIB); empty if none.
    pub hw_addr: Vec<u8>,
    /// Permanent hardware address, when the driver reports one.
    pub perm_hw_addr: Option<Vec<u8>>,
    /// MTU in bytes.
    pub mtu: u32,
    /// True when the link is administratively up (IFF_UP).
    pub admin_up: bool,
    /// Operational state.
    pub oper_state: OperState,
    /// Alternative names.
    pub altnames: Vec<String>,
    /// Interface alias (`ip link set ... alias`), if set.
    pub alias: Option<String>,
    /// Index of the master (bridge, bond) this link is enslaved to.
    pub master: Option<u32>,
    /// Link kind (`veth`, `bridge`, ...) for virtual links.
    pub kind: Option<String>,
    /// Number of VFs, for an SR-IOV PF reporting it.
    pub num_vfs: Option<u32>,
}

impl Link {
    /// The hardware address as an Ethernet MAC, when it is one.
    pub fn mac(&self) -> Option<MacAddr> {
        MacAddr::from_slice(&self.hw_addr)
    }

    pub(crate) fn from_message(msg: &LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            hw_addr: Vec::new(),
            perm_hw_addr: None,
            mtu: 0,
            admin_up: msg.header.flags.contains(LinkFlags::Up),
            oper_state: State::Unknown,
            altnames: Vec::new(),
            alias: None,
            master: None,
            kind: None,
            num_vfs: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Address(a) => link.hw_addr = a.clone(),
                LinkAttribute::PermAddress(a) => link.perm_hw_addr = Some(a.clone()),
                LinkAttribute::Mtu(m) => link.mtu = *m,
                LinkAttribute::OperState(s) => link.oper_state = *s,
                LinkAttribute::IfAlias(a) => link.alias = Some(a.clone()),
                LinkAttribute::Controller(m) => link.master = Some(*m),
                LinkAttribute::NumVf(n) => link.num_vfs = Some(*n),
                LinkAttribute::PropList(props) => {
                    for p in props {
                        if let Prop::AltIfName(n) = p {
                            link.altnames.push(n.clone());
                        }
                    }
                }
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(k) = info {
                            link.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// Several link changes applied in one RTM_SETLINK (one round trip). The
/// kernel applies them in its own fixed order and stops at the first
/// failure, so a failed update may be partly applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkUpdate {
    /// New name.
    pub name: Option<String>,
    /// New MAC address.
    pub mac: Option<MacAddr>,
    /// New MTU.
    pub mtu: Option<u32>,
    /// Bring up (`Some(true)`) or down (`Some(false)`).
    pub up: Option<bool>,
}

/// Checks an interface name against the kernel's rules, before sending it.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_IFNAME_LEN {
        return Err(format!("interface name {name:?} must be 1..=15 bytes"));
    }
    if name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        return Err(format!(
            "interface name {name:?} contains a forbidden character"
        ));
    }
    Ok(())
}

fn check_name(
    op: &'static str,
    target: &(dyn std::fmt::Display + Sync),
    name: &str,
) -> Result<(), NetlinkError> {
    validate_ifname(name).map_err(|e| NetlinkError::new(op, target, ErrorKind::InvalidInput(e)))
}

/// A link message addressed to `index` with no attributes.
pub(crate) fn link_message(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

/// Builds the RTM_SETLINK for a [`LinkUpdate`].
pub fn build_link_update(index: u32, update: &LinkUpdate) -> LinkMessage {
    let mut msg = link_message(index);
    if let Some(name) = &update.name {
        msg.attributes.push(LinkAttribute::IfName(name.clone()));
    }
    if let Some(mac) = update.mac {
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    if let Some(mtu) = update.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(up) = update.up {
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
    }
    msg
}

/// Builds the RTM_SETLINK that moves link `index` into the namespace whose
/// fd is `netns_fd`, optionally renaming it in the same message so that it
/// never appears there under its old name.
pub fn build_move_to_netns(index: u32, netns_fd: i32, new_name: Option<&str>) -> LinkMessage {
    let mut msg = link_message(index);
    msg.attributes.push(LinkAttribute::NetNsFd(netns_fd));
    if let Some(name) = new_name {
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
    }
    msg
}

fn link_target(index: u32) -> String {
    format!("link #{index}")
}

fn first_link(
    op: &'static str,
    target: &(dyn std::fmt::Display + Sync),
    replies: Vec<RouteNetlinkMessage>,
) -> Result<Link, NetlinkError> {
    replies
        .into_iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(&l)),
            _ => None,
        })
        .ok_or_else(|| NetlinkError::new(op, target, ErrorKind::LinkNotFound))
}

/// Runs `op` until it does not fail with EBUSY, at most
/// [`MAC_BUSY_ATTEMPTS`] times, doubling the delay between attempts.
pub(crate) async fn retry_while_busy<F, Fut>(mut op: F) -> Result<(), NetlinkError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), NetlinkError>>,
{
    let mut delay = MAC_BUSY_FIRST_DELAY;
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_busy() && attempt < MAC_BUSY_ATTEMPTS => {
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Maps the kernel's "no such device" to the typed not-found kind.
fn not_found_as_typed(e: NetlinkError) -> NetlinkError {
    match e.kind {
        ErrorKind::Kernel {
            errno: Errno::ENODEV,
            ..
        } => NetlinkError {
            kind: ErrorKind::LinkNotFound,
            ..e
        },
        _ => e,
    }
}

impl Handle {
    /// Looks a link up by name (the kernel also matches altnames).
    pub async fn link_by_name(&self, name: &str) -> Result<Link, NetlinkError> {
        const OP: &str = "get link";
        check_name(OP, &name, name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let replies = self
            .get(OP, &name, RouteNetlinkMessage::GetLink(msg))
            .await
            .map_err(not_found_as_typed)?;
        first_link(OP, &name, replies)
    }

    /// Looks a link up by index.
    pub async fn link_by_index(&self, index: u32) -> Result<Link, NetlinkError> {
        const OP: &str = "get link";
        let target = link_target(index);
        let mut msg = link_message(index);
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let replies = self
            .get(OP, &target, RouteNetlinkMessage::GetLink(msg))
            .await
            .map_err(not_found_as_typed)?;
        first_link(OP, &target, replies)
    }

    /// Lists every link of the namespace.
    pub async fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let replies = self
            .dump("list links", &"all", RouteNetlinkMessage::GetLink(msg))
            .await?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(&l)),
                _ => None,
            })
            .collect())
    }

    async fn set_link(
        &self,
        op: &'static str,
        index: u32,
        msg: LinkMessage,
    ) -> Result<(), NetlinkError> {
        self.request(
            op,
            &link_target(index),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
        .await
        .map_err(not_found_as_typed)?;
        Ok(())
    }

    /// Applies several changes in one message (see [`LinkUpdate`]).
    pub async fn update_link(&self, index: u32, update: &LinkUpdate) -> Result<(), NetlinkError> {
        if let Some(name) = &update.name {
            check_name("update link", &link_target(index), name)?;
        }
        self.set_link("update link", index, build_link_update(index, update))
            .await
    }

    /// Renames a link (it must be down on most drivers).
    pub async fn set_link_name(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        check_name("rename link", &link_target(index), name)?;
        let update = LinkUpdate {
            name: Some(name.to_string()),
            ..Default::default()
        };
        self.set_link("rename link", index, build_link_update(index, &update))
            .await
    }

    /// Sets the MAC address, retrying with exponential backoff while the
    /// driver answers EBUSY (some VF drivers do for a moment after a move).
    pub async fn set_mac(&self, index: u32, mac: MacAddr) -> Result<(), NetlinkError> {
        let update = LinkUpdate {
            mac: Some(mac),
            ..Default::default()
        };
        retry_while_busy(|| self.set_link("set mac", index, build_link_update(index, &update)))
            .await
    }

    /// Sets the MTU.
    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let update = LinkUpdate {
            mtu: Some(mtu),
            ..Default::default()
        };
        self.set_link("set mtu", index, build_link_update(index, &update))
            .await
    }

    /// Brings a link administratively up.
    pub async fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        let update = LinkUpdate {
            up: Some(true),
            ..Default::default()
        };
        self.set_link("set up", index, build_link_update(index, &update))
            .await
    }

    /// Brings a link administratively down.
    pub async fn set_down(&self, index: u32) -> Result<(), NetlinkError> {
        let update = LinkUpdate {
            up: Some(false),
            ..Default::default()
        };
        self.set_link("set down", index, build_link_update(index, &update))
            .await
    }

    /// Moves link `index` of this handle's namespace into `ns`, renamed to
    /// `new_name` in the same message when given. The index may change in
    /// the new namespace; look it up there by name.
    ///
    /// The kernel moves first and renames second: if `new_name` is taken in
    /// `ns`, the link lands there under its previous name and this returns
    /// [`ErrorKind::MovedNotRenamed`] (checked with one extra lookup, on the
    /// error path only). Use a name nobody else uses (a temporary one).
    pub async fn move_to_netns(
        &self,
        index: u32,
        ns: &Netns,
        new_name: Option<&str>,
    ) -> Result<(), NetlinkError> {
        if let Some(name) = new_name {
            check_name("move link", &link_target(index), name)?;
        }
        let msg = build_move_to_netns(index, ns.as_raw_fd(), new_name);
        let err = match self.set_link("move link", index, msg).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if let (Some(_), ErrorKind::Kernel { errno, message }) = (new_name, &err.kind) {
            let still_here = self.link_by_index(index).await;
            if matches!(&still_here, Err(e) if matches!(e.kind, ErrorKind::LinkNotFound)) {
                return Err(NetlinkError {
                    kind: ErrorKind::MovedNotRenamed {
                        errno: *errno,
                        message: message.clone(),
                    },
                    ..err
                });
            }
        }
        Err(err)
    }

    /// Adds alternative names to a link (RTM_NEWLINKPROP).
    pub async fn add_altnames(&self, index: u32, names: &[String]) -> Result<(), NetlinkError> {
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::PropList(
            names.iter().cloned().map(Prop::AltIfName).collect(),
        ));
        self.request(
            "add altnames",
            &link_target(index),
            RouteNetlinkMessage::NewLinkProp(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
        .map_err(not_found_as_typed)?;
        Ok(())
    }

    /// Removes alternative names from a link (RTM_DELLINKPROP), e.g. those a
    /// VF picked up under a previous name.
    pub async fn delete_altnames(&self, index: u32, names: &[String]) -> Result<(), NetlinkError> {
        if names.is_empty() {
            return Ok(());
        }
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::PropList(
            names.iter().cloned().map(Prop::AltIfName).collect(),
        ));
        self.request(
            "delete altnames",
            &link_target(index),
            RouteNetlinkMessage::DelLinkProp(msg),
            0,
        )
        .await
        .map_err(not_found_as_typed)?;
        Ok(())
    }

    /// Deletes a (virtual) link.
    pub async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        self.request(
            "delete link",
            &link_target(index),
            RouteNetlinkMessage::DelLink(link_message(index)),
            0,
        )
        .await
        .map_err(not_found_as_typed)?;
        Ok(())
    }

    /// Enslaves link `index` to `master` (a bridge), or releases it with `None`.
    pub async fn set_master(&self, index: u32, master: Option<u32>) -> Result<(), NetlinkError> {
        let mut msg = link_message(index);
        msg.attributes
            .push(LinkAttribute::Controller(master.unwrap_or(0)));
        self.set_link("set master", index, msg).await
    }

    pub(crate) async fn create_link(
        &self,
        op: &'static str,
        name: &str,
        msg: LinkMessage,
    ) -> Result<(), NetlinkError> {
        check_name(op, &name, name)?;
        self.request(
            op,
            &name,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn kernel(errno: Errno) -> NetlinkError {
        NetlinkError::new(
            "set mac",
            "test",
            ErrorKind::Kernel {
                errno,
                message: None,
            },
        )
    }

    #[tokio::test]
    async fn busy_is_retried_until_success() {
        let calls = Cell::new(0);
        let res = retry_while_busy(|| {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(kernel(Errno::EBUSY))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(res.is_ok());
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn busy_retries_are_bounded_and_other_errors_are_not_retried() {
        let calls = Cell::new(0);
        let start = std::time::Instant::now();
        let res = retry_while_busy(|| {
            calls.set(calls.get() + 1);
            async { Err(kernel(Errno::EBUSY)) }
        })
        .await;
        assert!(res.unwrap_err().is_busy());
        assert_eq!(calls.get(), MAC_BUSY_ATTEMPTS);
        // 10 + 20 + 40 + 80 ms of backoff.
        assert!(start.elapsed() >= Duration::from_millis(150));

        calls.set(0);
        let res = retry_while_busy(|| {
            calls.set(calls.get() + 1);
            async { Err(kernel(Errno::EINVAL)) }
        })
        .await;
        assert_eq!(res.unwrap_err().errno(), Some(Errno::EINVAL));
        assert_eq!(calls.get(), 1);
    }
}

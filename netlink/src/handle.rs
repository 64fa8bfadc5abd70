//! A netlink route connection bound to one network namespace.

use std::os::fd::{FromRawFd, IntoRawFd};

use futures::StreamExt;
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, TokioSocket};
use nix::errno::Errno;

use crate::{
    error::{ErrorKind, NetlinkError},
    netns::Netns,
};

/// Flag the kernel sets on an error message that carries extended-ack TLVs.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// Extended-ack attribute carrying a human-readable message.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// A route-netlink connection whose socket lives in one network namespace.
/// Every operation on it acts in that namespace. Cheap to clone; the
/// connection task ends when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Handle {
    inner: rtnetlink::Handle,
}

impl Handle {
    /// Connects in the calling thread's network namespace.
    pub fn new() -> Result<Self, NetlinkError> {
        let socket = make_socket()
            .map_err(|e| NetlinkError::new("connect", "current netns", ErrorKind::Io(e)))?;
        Self::from_socket(socket, "current netns")
    }

    /// Connects in `ns`. The socket is made on a short-lived thread that
    /// entered `ns`; no thread of the caller changes namespace.
    pub fn in_netns(ns: &Netns) -> Result<Self, NetlinkError> {
        let target = ns.path().display().to_string();
        let socket = ns
            .run(make_socket)
            .map_err(|e| NetlinkError::new("connect", &target, ErrorKind::Netns(e)))?
            .map_err(|e| NetlinkError::new("connect", &target, ErrorKind::Io(e)))?;
        Self::from_socket(socket, &target)
    }

    fn from_socket(socket: Socket, target: &str) -> Result<Self, NetlinkError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| NetlinkError::new("connect", target, ErrorKind::NoRuntime))?;
        // SAFETY: the fd comes straight from a Socket we own and give up here.
        let socket = unsafe { TokioSocket::from_raw_fd(socket.into_raw_fd()) };
        let (conn, inner, _unsolicited) = rtnetlink::from_socket(socket);
        runtime.spawn(conn);
        Ok(Handle { inner })
    }

    /// The underlying rtnetlink handle, for requests this crate does not wrap.
    pub fn rtnetlink(&self) -> &rtnetlink::Handle {
        &self.inner
    }

    /// Sends one request that expects an acknowledgement and returns any
    /// messages answered before it.
    pub(crate) async fn request(
        &self,
        op: &'static str,
        target: &(dyn std::fmt::Display + Sync),
        message: RouteNetlinkMessage,
        extra_flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.send(op, target, message, NLM_F_REQUEST | NLM_F_ACK | extra_flags)
            .await
    }

    /// Sends one dump request and returns every message of the dump.
    pub(crate) async fn dump(
        &self,
        op: &'static str,
        target: &(dyn std::fmt::Display + Sync),
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.send(op, target, message, NLM_F_REQUEST | NLM_F_DUMP)
            .await
    }

    /// Sends a request that returns a single object (a GET by key).
    pub(crate) async fn get(
        &self,
        op: &'static str,
        target: &(dyn std::fmt::Display + Sync),
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.send(op, target, message, NLM_F_REQUEST).await
    }

    async fn send(
        &self,
        op: &'static str,
        target: &(dyn std::fmt::Display + Sync),
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = flags;
        let mut inner = self.inner.clone();
        let mut responses = inner
            .request(request)
            .map_err(|_| NetlinkError::new(op, target, ErrorKind::ConnectionClosed))?;
        let mut out = Vec::new();
        while let Some(msg) = responses.next().await {
            let outer_flags = msg.header.flags;
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m),
                NetlinkPayload::Error(e) => {
                    if let Some(code) = e.code {
                        let errno = Errno::from_raw(-code.get());
                        let message = extack_message(outer_flags, &e.header);
                        return Err(NetlinkError::new(
                            op,
                            target,
                            ErrorKind::Kernel { errno, message },
                        ));
                    }
                }
                NetlinkPayload::Overrun(_) => {
                    return Err(NetlinkError::new(
                        op,
                        target,
                        ErrorKind::UnexpectedReply("overrun".into()),
                    ))
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

fn make_socket() -> std::io::Result<Socket> {
    let socket = Socket::new(NETLINK_ROUTE)?;
    // Best effort: older kernels lack these; errors are still reported then,
    // just without the kernel's explanation.
    let _ = socket.set_ext_ack(true);
    let _ = socket.set_cap_ack(true);
    socket.set_non_blocking(true)?;
    Ok(socket)
}

/// Extracts the kernel's extended-ack message from an error's payload: the
/// echoed request header (only the header when capped) followed by TLVs.
fn extack_message(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed_len = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        let len = u32::from_ne_bytes(payload.get(0..4)?.try_into().ok()?) as usize;
        (len + 3) & !3
    };
    let mut rest = payload.get(echoed_len..)?;
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 {
            return None;
        }
        let value = rest.get(4..len)?;
        if kind == NLMSGERR_ATTR_MSG {
            let text = value.split(|b| *b == 0).next().unwrap_or(value);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        rest = rest.get(((len + 3) & !3).min(rest.len())..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extack_message_found_after_capped_header() {
        let mut payload = vec![0u8; 16];
        let text = b"VF not supported\0";
        let len = (4 + text.len()) as u16;
        payload.extend_from_slice(&len.to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        let msg = extack_message(NLM_F_ACK_TLVS | NLM_F_CAPPED, &payload);
        assert_eq!(msg.as_deref(), Some("VF not supported"));
        assert_eq!(extack_message(NLM_F_CAPPED, &payload), None);
    }
}

//! Every request the client builds, compared byte for byte with messages
//! assembled by hand from the uapi layout: `struct nlmsghdr` (u32 len,
//! u16 type, u16 flags, u32 seq, u32 pid; host order) followed directly by
//! `struct nlattr` TLVs (u16 len, u16 type, payload padded to 4 bytes).
#![cfg(target_endian = "little")]

use std::os::fd::AsRawFd;

use jobnet_rdma::{NetnsMode, RdmaClient, RdmaError, ReplayTransport};

/// Client whose transport acknowledges everything and answers GET-type
/// requests with nothing (the replies are not what these tests look at).
fn client() -> RdmaClient<ReplayTransport> {
    RdmaClient::with_transport(ReplayTransport::acking())
}

fn last_sent(c: &RdmaClient<ReplayTransport>) -> Vec<u8> {
    c.transport().sent().last().cloned().unwrap()
}

#[test]
fn device_dump_request() {
    let mut c = client();
    // An ack instead of NLMSG_DONE still ends the exchange: empty list.
    assert_eq!(c.devices().unwrap(), vec![]);
    #[rustfmt::skip]
    let expected = [
        0x10, 0x00, 0x00, 0x00, // nlmsg_len 16
        0x01, 0x14,             // type (RDMA_NL_NLDEV << 10) + RDMA_NLDEV_CMD_GET = 0x1401
        0x05, 0x03,             // NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP
        0x01, 0x00, 0x00, 0x00, // seq 1
        0x00, 0x00, 0x00, 0x00, // pid 0
    ];
    assert_eq!(last_sent(&c), expected);
}

#[test]
fn device_get_by_index_request() {
    let mut c = client();
    // No reply message before the ack: the client reports it, after sending.
    assert!(matches!(c.device(3), Err(RdmaError::Unexpected(_))));
    #[rustfmt::skip]
    let expected = [
        0x18, 0x00, 0x00, 0x00, // len 24
        0x01, 0x14, 0x05, 0x00, // GET, REQUEST | ACK
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x01, 0x00, // nla_len 8, RDMA_NLDEV_ATTR_DEV_INDEX
        0x03, 0x00, 0x00, 0x00, // 3
    ];
    assert_eq!(last_sent(&c), expected);
}

#[test]
fn sys_get_request() {
    let mut c = client();
    assert!(c.system().is_err());
    #[rustfmt::skip]
    let expected = [
        0x10, 0x00, 0x00, 0x00,
        0x06, 0x14,             // RDMA_NLDEV_CMD_SYS_GET
        0x05, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(last_sent(&c), expected);
}

#[test]
fn sys_set_netns_mode_requests() {
    let mut c = client();
    c.set_netns_mode(NetnsMode::Exclusive).unwrap();
    c.set_netns_mode(NetnsMode::Shared).unwrap();
    #[rustfmt::skip]
    let exclusive = [
        0x18, 0x00, 0x00, 0x00, // len 24
        0x07, 0x14,             // RDMA_NLDEV_CMD_SYS_SET
        0x05, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x05, 0x00, 0x42, 0x00, // nla_len 5, RDMA_NLDEV_SYS_ATTR_NETNS_MODE (66)
        0x00, 0x00, 0x00, 0x00, // u8 0 = exclusive, 3 bytes padding
    ];
    #[rustfmt::skip]
    let shared = [
        0x18, 0x00, 0x00, 0x00,
        0x07, 0x14, 0x05, 0x00,
        0x02, 0x00, 0x00, 0x00, // seq 2
        0x00, 0x00, 0x00, 0x00,
        0x05, 0x00, 0x42, 0x00,
        0x01, 0x00, 0x00, 0x00, // u8 1 = shared
    ];
    assert_eq!(c.transport().sent(), &[exclusive.to_vec(), shared.to_vec()]);
}

#[test]
fn move_to_netns_request() {
    let netns = std::fs::File::open("/proc/self/ns/net").unwrap();
    let fd = u32::try_from(netns.as_raw_fd()).unwrap().to_le_bytes();
    let mut c = client();
    c.move_to_netns(7, &netns).unwrap();
    #[rustfmt::skip]
    let expected = [
        0x20, 0x00, 0x00, 0x00, // len 32
        0x02, 0x14,             // RDMA_NLDEV_CMD_SET
        0x05, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x01, 0x00, // RDMA_NLDEV_ATTR_DEV_INDEX
        0x07, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x44, 0x00, // RDMA_NLDEV_NET_NS_FD (68)
        fd[0], fd[1], fd[2], fd[3],
    ];
    assert_eq!(last_sent(&c), expected);
}

#[test]
fn rename_request_has_nul_terminated_padded_name() {
    let mut c = client();
    c.rename(2, "mlx5_9").unwrap();
    #[rustfmt::skip]
    let expected = [
        0x24, 0x00, 0x00, 0x00, // len 36
        0x02, 0x14, 0x05, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00,
        0x0b, 0x00, 0x02, 0x00, // nla_len 4 + 7, RDMA_NLDEV_ATTR_DEV_NAME
        b'm', b'l', b'x', b'5', b'_', b'9', 0x00, // "mlx5_9\0"
        0x00,                   // padding
    ];
    assert_eq!(last_sent(&c), expected);
}

#[test]
fn rename_rejects_bad_names_without_sending() {
    let mut c = client();
    for bad in ["", "a/b", "..", "x y", "mlx%d", &"n".repeat(64)] {
        assert!(
            matches!(c.rename(1, bad), Err(RdmaError::InvalidName(_))),
            "{bad:?}"
        );
    }
    assert!(c.transport().sent().is_empty());
}

#[test]
fn port_dump_request() {
    let mut c = client();
    assert_eq!(c.ports(4).unwrap(), vec![]);
    #[rustfmt::skip]
    let expected = [
        0x18, 0x00, 0x00, 0x00,
        0x05, 0x14,             // RDMA_NLDEV_CMD_PORT_GET
        0x05, 0x03,             // REQUEST | ACK | DUMP
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00,
    ];
    assert_eq!(last_sent(&c), expected);
}

#[test]
fn chardev_request() {
    let mut c = client();
    assert!(c.chardev(Some(0), "uverbs").is_err());
    #[rustfmt::skip]
    let expected = [
        0x24, 0x00, 0x00, 0x00, // len 36
        0x0f, 0x14,             // RDMA_NLDEV_CMD_GET_CHARDEV
        0x05, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x0b, 0x00, 0x45, 0x00, // RDMA_NLDEV_ATTR_CHARDEV_TYPE (69)
        b'u', b'v', b'e', b'r', b'b', b's', 0x00, 0x00,
    ];
    assert_eq!(last_sent(&c), expected);
}

#[test]
fn sequence_numbers_increase_per_request() {
    let mut c = client();
    c.set_netns_mode(NetnsMode::Shared).unwrap();
    c.devices().unwrap();
    c.set_netns_mode(NetnsMode::Shared).unwrap();
    let seqs: Vec<u32> = c
        .transport()
        .sent()
        .iter()
        .map(|m| u32::from_le_bytes([m[8], m[9], m[10], m[11]]))
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
}

#[test]
fn scripted_errno_and_ack_answer_the_pending_request() {
    let netns = std::fs::File::open("/proc/self/ns/net").unwrap();
    let mut t = ReplayTransport::new();
    t.push_errno(libc::ENODEV).push_ack();
    let mut c = RdmaClient::with_transport(t);
    let err = c.move_to_netns(5, &netns).unwrap_err();
    assert!(err.is_no_device(), "{err:?}");
    assert_eq!(err.errno(), Some(libc::ENODEV));
    c.move_to_netns(5, &netns).unwrap();
    assert_eq!(c.transport().sent().len(), 2);
    assert_eq!(c.transport().pending(), 0);
    // Nothing scripted and not acking: a timeout-like I/O error.
    assert!(matches!(
        c.set_netns_mode(NetnsMode::Shared),
        Err(RdmaError::Io { .. })
    ));
}

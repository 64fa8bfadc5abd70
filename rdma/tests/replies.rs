//! Decoding of replies in the kernel's format, assembled byte by byte:
//! a two-device dump, a SYS_GET reply, errors with errno and extended-ack
//! text, truncated and garbage datagrams (which must never panic).
#![cfg(target_endian = "little")]

use jobnet_rdma::message::{self, Attrs, ErrorBody};
use jobnet_rdma::{
    DecodeError, DeviceInfo, Guid, NetnsMode, PortInfo, RdmaClient, RdmaError, ReplayTransport,
};

/// `struct nlmsghdr` followed by `body`, little-endian, as the kernel lays it out.
fn nlmsg(msg_type: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&(16 + body.len() as u32).to_le_bytes());
    m.extend_from_slice(&msg_type.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&0x0000_3039u32.to_le_bytes()); // our port id, as the kernel fills it
    m.extend_from_slice(body);
    m
}

/// One `struct nlattr` with its padding.
fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&(4 + payload.len() as u16).to_le_bytes());
    a.extend_from_slice(&kind.to_le_bytes());
    a.extend_from_slice(payload);
    while a.len() % 4 != 0 {
        a.push(0);
    }
    a
}

const GET: u16 = 0x1401;
const PORT_GET: u16 = 0x1405;
const SYS_GET: u16 = 0x1406;
const MULTI: u16 = 0x2;

/// mlx5_0: RoCE, one port, attributes in the order fill_dev_info() emits.
#[rustfmt::skip]
fn mlx5_0_body() -> Vec<u8> {
    [
        vec![0x08, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00],            // DEV_INDEX 0
        vec![0x0b, 0x00, 0x02, 0x00, b'm', b'l', b'x', b'5', b'_', b'0', 0x00, 0x00], // DEV_NAME
        vec![0x08, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00],            // PORT_INDEX 1
        vec![0x0c, 0x00, 0x04, 0x00, 0x26, 0xbc, 0x34, 0x1c, 0x00, 0x00, 0x00, 0x00], // CAP_FLAGS
        nla(5, b"16.35.2000\0"),                                          // FW_VERSION
        vec![0x0c, 0x00, 0x06, 0x00, 0x10, 0x7c, 0x31, 0x00, 0x03, 0xc9, 0x02, 0x00], // NODE_GUID
        vec![0x0c, 0x00, 0x07, 0x00, 0x10, 0x7c, 0x31, 0x00, 0x03, 0xc9, 0x02, 0x00], // SYS_IMAGE_GUID
        vec![0x05, 0x00, 0x0e, 0x00, 0x01, 0x00, 0x00, 0x00],            // DEV_NODE_TYPE 1 (CA)
        vec![0x05, 0x00, 0x54, 0x00, 0x01, 0x00, 0x00, 0x00],            // DEV_DIM (84), ignored
        vec![0x09, 0x00, 0x43, 0x00, b'r', b'o', b'c', b'e', 0x00, 0x00, 0x00, 0x00], // DEV_PROTOCOL
    ]
    .concat()
}

/// mlx5_1: InfiniBand, two ports, with a PAD attribute before a u64 as a
/// kernel without efficient unaligned access inserts it.
#[rustfmt::skip]
fn mlx5_1_body() -> Vec<u8> {
    [
        nla(1, &1u32.to_le_bytes()),
        nla(2, b"mlx5_1\0"),
        nla(3, &2u32.to_le_bytes()),
        vec![0x04, 0x00, 0x00, 0x00],                                    // PAD
        nla(6, &0x0002_c903_0031_7c11u64.to_le_bytes()),
        nla(14, &[1]),
        nla(67, b"ib\0"),
    ]
    .concat()
}

fn mlx5_0() -> DeviceInfo {
    DeviceInfo {
        index: 0,
        name: "mlx5_0".into(),
        port_count: 1,
        cap_flags: Some(0x1c34_bc26),
        fw_version: Some("16.35.2000".into()),
        node_guid: Some(Guid(0x0002_c903_0031_7c10)),
        sys_image_guid: Some(Guid(0x0002_c903_0031_7c10)),
        node_type: Some(1),
        protocol: Some("roce".into()),
    }
}

/// An `NLMSG_ERROR` with errno 0 and a capped echo, as the kernel acks.
fn ack(seq: u32) -> Vec<u8> {
    nlmsg(2, 0x100, seq, &[0u8; 20])
}

/// The `NLMSG_DONE` closing a dump.
fn done(seq: u32) -> Vec<u8> {
    nlmsg(3, MULTI, seq, &0i32.to_le_bytes())
}

fn replay(datagrams: Vec<Vec<u8>>) -> RdmaClient<ReplayTransport> {
    let mut t = ReplayTransport::new().keep_seq();
    for d in datagrams {
        t.push_reply(d);
    }
    RdmaClient::with_transport(t)
}

fn two_device_dump(seq: u32) -> Vec<Vec<u8>> {
    vec![
        [
            nlmsg(GET, MULTI, seq, &mlx5_0_body()),
            nlmsg(GET, MULTI, seq, &mlx5_1_body()),
        ]
        .concat(),
        nlmsg(3, MULTI, seq, &0i32.to_le_bytes()), // NLMSG_DONE
    ]
}

#[test]
fn decodes_two_device_dump() {
    let mut c = replay(two_device_dump(1));
    let devs = c.devices().unwrap();
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[0], mlx5_0());
    assert_eq!(
        devs[1],
        DeviceInfo {
            index: 1,
            name: "mlx5_1".into(),
            port_count: 2,
            node_guid: Some(Guid(0x0002_c903_0031_7c11)),
            node_type: Some(1),
            protocol: Some("ib".into()),
            ..Default::default()
        }
    );
    assert_eq!(
        devs[0].node_guid.unwrap().to_string(),
        "0002:c903:0031:7c10"
    );
    assert_eq!(c.transport().pending(), 0);
}

#[test]
fn device_by_name_finds_and_misses() {
    let mut c = replay([two_device_dump(1), two_device_dump(2)].concat());
    assert_eq!(c.device_by_name("mlx5_1").unwrap().index, 1);
    let err = c.device_by_name("mlx5_7").unwrap_err();
    assert!(matches!(&err, RdmaError::NoSuchDevice(n) if n == "mlx5_7"));
    assert!(err.is_no_device());
}

#[test]
fn kernel_reply_builder_matches_kernel_layout() {
    // The builder offered to other crates' tests must produce exactly the
    // hand-assembled kernel bytes (apart from the port id it leaves 0).
    let mut built = jobnet_rdma::kernel_reply::device(1, true, &mlx5_0());
    let mut by_hand = nlmsg(GET, MULTI, 1, &mlx5_0_body());
    built[12..16].fill(0);
    by_hand[12..16].fill(0);
    // DEV_DIM is not modelled; drop it from the hand-made copy.
    let dim = [0x05, 0x00, 0x54, 0x00, 0x01, 0x00, 0x00, 0x00];
    let pos = by_hand.windows(8).position(|w| w == dim).unwrap();
    by_hand.drain(pos..pos + 8);
    let len = by_hand.len() as u32;
    by_hand[0..4].copy_from_slice(&len.to_le_bytes());
    assert_eq!(built, by_hand);
}

#[test]
fn decodes_sys_get_reply_and_ack() {
    #[rustfmt::skip]
    let reply = [
        0x28, 0x00, 0x00, 0x00, // len 40
        0x06, 0x14,             // SYS_GET
        0x00, 0x00,             // no flags
        0x01, 0x00, 0x00, 0x00, // seq 1
        0x39, 0x30, 0x00, 0x00, // port id
        0x05, 0x00, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, // NETNS_MODE 0 = exclusive
        0x05, 0x00, 0x60, 0x00, 0x00, 0x00, 0x00, 0x00, // PRIVILEGED_QKEY_MODE (96) 0
        0x05, 0x00, 0x5d, 0x00, 0x01, 0x00, 0x00, 0x00, // COPY_ON_FORK (93) 1
    ];
    #[rustfmt::skip]
    let ack = [
        0x24, 0x00, 0x00, 0x00, // len 36
        0x02, 0x00,             // NLMSG_ERROR
        0x00, 0x01,             // NLM_F_CAPPED
        0x01, 0x00, 0x00, 0x00, 0x39, 0x30, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, // error 0: ack
        0x10, 0x00, 0x00, 0x00, 0x06, 0x14, 0x05, 0x00, // echoed request header
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let mut c = replay(vec![reply.to_vec(), ack.to_vec()]);
    let sys = c.system().unwrap();
    assert_eq!(sys.netns_mode, NetnsMode::Exclusive);
    assert_eq!(sys.copy_on_fork, Some(true));
    assert_eq!(sys.privileged_qkey, Some(false));

    let mut c = replay(vec![[reply.to_vec(), ack.to_vec()].concat()]);
    assert_eq!(c.netns_mode().unwrap(), NetnsMode::Exclusive);
}

#[test]
fn netns_mode_out_of_range_is_a_decode_error() {
    let body = nla(66, &[7]);
    let mut c = replay(vec![nlmsg(SYS_GET, 0, 1, &body), ack(1)]);
    assert!(matches!(
        c.netns_mode(),
        Err(RdmaError::Decode(DecodeError::BadValue {
            attr: 66,
            value: 7
        }))
    ));
}

#[test]
fn error_reply_carries_errno_and_extack_message() {
    #[rustfmt::skip]
    let err = [
        0x3c, 0x00, 0x00, 0x00, // len 60
        0x02, 0x00,             // NLMSG_ERROR
        0x00, 0x03,             // NLM_F_CAPPED | NLM_F_ACK_TLVS
        0x01, 0x00, 0x00, 0x00, 0x39, 0x30, 0x00, 0x00,
        0xa1, 0xff, 0xff, 0xff, // -95 (EOPNOTSUPP)
        0x20, 0x00, 0x00, 0x00, 0x02, 0x14, 0x05, 0x00, // echoed header of the SET
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x17, 0x00, 0x01, 0x00, // NLMSGERR_ATTR_MSG, len 4 + 19
        b'n', b'e', b't', b'n', b's', b' ', b'm', b'o', b'd', b'e', b' ',
        b's', b'h', b'a', b'r', b'e', b'd', b'!', 0x00,
        0x00,                   // padding
    ];
    let netns = std::fs::File::open("/proc/self/ns/net").unwrap();
    let mut c = replay(vec![err.to_vec()]);
    match c.move_to_netns(0, &netns) {
        Err(RdmaError::Kernel { errno, message }) => {
            assert_eq!(errno, libc::EOPNOTSUPP);
            assert_eq!(message.as_deref(), Some("netns mode shared!"));
        }
        other => panic!("expected kernel error, got {other:?}"),
    }
}

#[test]
fn uncapped_error_echoing_whole_request_is_parsed() {
    // Without NETLINK_CAP_ACK the kernel echoes the full request.
    let request = nlmsg(0x1402, 5, 1, &nla(1, &9u32.to_le_bytes()));
    let mut body = (-19i32).to_le_bytes().to_vec(); // ENODEV
    body.extend_from_slice(&request);
    body.extend(nla(1, b"no such device\0"));
    let e = ErrorBody::parse(&body, 0x200).unwrap();
    assert_eq!(e.errno, libc::ENODEV);
    assert_eq!(e.ext_msg.as_deref(), Some("no such device"));

    let mut c = replay(vec![nlmsg(2, 0x200, 1, &body)]);
    let err = c.device(9).unwrap_err();
    assert!(err.is_no_device(), "{err:?}");
}

#[test]
fn dump_ending_with_error_in_done_fails() {
    let done = nlmsg(3, MULTI, 1, &(-16i32).to_le_bytes()); // EBUSY
    let mut c = replay(vec![nlmsg(GET, MULTI, 1, &mlx5_0_body()), done]);
    assert!(matches!(
        c.devices(),
        Err(RdmaError::Kernel {
            errno: libc::EBUSY,
            ..
        })
    ));
}

#[test]
fn replies_to_other_sequence_numbers_are_skipped() {
    let stale = nlmsg(GET, MULTI, 41, &mlx5_1_body());
    let mut dgrams = vec![stale];
    dgrams.extend(two_device_dump(1));
    let mut c = replay(dgrams);
    assert_eq!(c.devices().unwrap().len(), 2);
}

#[test]
fn unexpected_message_type_is_an_error() {
    let mut c = replay(vec![nlmsg(PORT_GET, MULTI, 1, &mlx5_0_body())]);
    assert!(matches!(c.devices(), Err(RdmaError::Unexpected(_))));
}

#[test]
fn decodes_port_dump() {
    #[rustfmt::skip]
    let port1 = [
        nla(1, &0u32.to_le_bytes()),
        nla(2, b"mlx5_0\0"),
        nla(3, &1u32.to_le_bytes()),
        nla(4, &0x0000_0000_0465_0000u64.to_le_bytes()),
        nla(8, &0xfe80_0000_0000_0000u64.to_le_bytes()),
        nla(12, &[4]),                     // ACTIVE
        nla(13, &[5]),                     // LinkUp
        nla(50, &7u32.to_le_bytes()),
        nla(51, b"ens1f0\0"),
    ]
    .concat();
    let mut c = replay(vec![
        nlmsg(PORT_GET, MULTI, 1, &port1),
        nlmsg(3, MULTI, 1, &0i32.to_le_bytes()),
    ]);
    assert_eq!(
        c.ports(0).unwrap(),
        vec![PortInfo {
            dev_index: 0,
            port: 1,
            cap_flags: Some(0x0465_0000),
            subnet_prefix: Some(0xfe80_0000_0000_0000),
            state: Some(4),
            phys_state: Some(5),
            netdev_index: Some(7),
            netdev_name: Some("ens1f0".into()),
            ..Default::default()
        }]
    );
}

#[test]
fn decodes_chardev_and_rejects_path_like_names() {
    let ok = [
        nla(72, &((231u64 << 20) | 192).to_le_bytes()),
        nla(71, &1u64.to_le_bytes()),
        nla(70, b"uverbs0\0"),
    ]
    .concat();
    let ack = nlmsg(2, 0x100, 1, &[0u8; 20]);
    let mut c = replay(vec![nlmsg(0x140f, 0, 1, &ok), ack]);
    let cd = c.chardev(Some(0), "uverbs").unwrap();
    assert_eq!(cd.name, "uverbs0");
    assert_eq!(cd.path(), std::path::Path::new("/dev/infiniband/uverbs0"));
    assert_eq!(cd.abi, Some(1));

    let evil = [nla(72, &1u64.to_le_bytes()), nla(70, b"../../etc/shadow\0")].concat();
    let mut c = replay(vec![
        nlmsg(0x140f, 0, 1, &evil),
        nlmsg(2, 0x100, 1, &[0u8; 20]),
    ]);
    assert!(matches!(
        c.chardev(None, "rdma_cm"),
        Err(RdmaError::InvalidName(_))
    ));
}

#[test]
fn truncated_message_is_a_decode_error() {
    let full = nlmsg(GET, MULTI, 1, &mlx5_0_body());
    // Header claims the full length, the datagram stops 20 bytes short.
    let cut = full[..full.len() - 20].to_vec();
    let mut c = replay(vec![cut]);
    assert!(matches!(
        c.devices(),
        Err(RdmaError::Decode(DecodeError::Truncated { .. }))
    ));
    // Shorter than a header.
    let mut c = replay(vec![full[..10].to_vec()]);
    assert!(matches!(
        c.devices(),
        Err(RdmaError::Decode(DecodeError::Truncated {
            what: "nlmsghdr",
            ..
        }))
    ));
}

#[test]
fn attribute_overrunning_its_message_is_a_decode_error() {
    // nla_len 0x40 inside a message whose payload has 8 bytes.
    let body = [0x40, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00];
    let mut c = replay(vec![nlmsg(GET, MULTI, 1, &body), done(1)]);
    assert!(matches!(
        c.devices(),
        Err(RdmaError::Decode(DecodeError::Truncated { .. }))
    ));
    // Wrong payload size for a u32.
    let body = nla(1, &[1, 2]);
    let mut c = replay(vec![nlmsg(GET, MULTI, 1, &body), done(1)]);
    assert!(matches!(
        c.devices(),
        Err(RdmaError::Decode(DecodeError::BadAttr { attr: 1, .. }))
    ));
    // Length smaller than the attribute header.
    let body = [0x02, 0x00, 0x01, 0x00];
    let mut c = replay(vec![nlmsg(GET, MULTI, 1, &body), done(1)]);
    assert!(matches!(
        c.devices(),
        Err(RdmaError::Decode(DecodeError::BadLength { .. }))
    ));
}

#[test]
fn missing_device_name_is_a_decode_error() {
    let body = nla(1, &3u32.to_le_bytes());
    let mut c = replay(vec![nlmsg(GET, MULTI, 1, &body), done(1)]);
    assert!(matches!(
        c.devices(),
        Err(RdmaError::Decode(DecodeError::MissingAttr { attr: 2 }))
    ));
}

/// xorshift64: deterministic garbage without a dependency.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn every_prefix_and_random_garbage_never_panics() {
    let valid = two_device_dump(1).concat();
    let mut inputs: Vec<Vec<u8>> = (0..valid.len()).map(|n| valid[..n].to_vec()).collect();
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        let len = (xorshift(&mut s) % 200) as usize;
        let mut g: Vec<u8> = (0..len).map(|_| xorshift(&mut s) as u8).collect();
        // Make some of them look like plausible headers to reach deeper code.
        if g.len() >= 16 && xorshift(&mut s) & 1 == 0 {
            let len = g.len() as u32;
            g[0..4].copy_from_slice(&len.to_le_bytes());
            g[4..6].copy_from_slice(&GET.to_le_bytes());
            g[8..12].copy_from_slice(&1u32.to_le_bytes());
        }
        inputs.push(g);
    }
    // Flip single bytes of the valid dump, too.
    for i in 0..valid.len() {
        let mut v = valid.clone();
        v[i] ^= 0xff;
        inputs.push(v);
    }
    let mut errors = 0;
    for input in &inputs {
        for m in message::messages(input).flatten() {
            for a in Attrs::new(m.payload).flatten() {
                let _ = (a.as_u8(), a.as_u32(), a.as_u64(), a.as_str());
            }
            let _ = ErrorBody::parse(m.payload, 0x300);
        }
        let mut c = replay(vec![input.clone()]);
        if c.devices().is_err() {
            errors += 1;
        }
    }
    // Most garbage must be rejected (an empty replay also ends in an error).
    assert!(errors > inputs.len() / 2, "{errors} of {}", inputs.len());
}

//! The PF-side VF settings jobnet sends must be the very bytes iproute2's
//! `ip link set <pf> vf <n> ...` sends. A veth stands in for the PF: the
//! message is captured with strace from iproute2, compared with our
//! builder's output, and the kernel's answer to both (a veth has no VFs,
//! so EOPNOTSUPP once the message parsed) must agree.
//!
//! iproute2 sends `ip link set` as RTM_NEWLINK without NLM_F_CREATE; we send
//! RTM_SETLINK. The kernel handles both with the same do_setlink(), so the
//! comparison covers the payload (ifinfomsg + attributes), not the type.

mod common;

use std::process::Command;

use common::{unique, TestNs};
use jobnet_netlink::{
    vf_message_bytes, vf_message_payload, MacAddr, VfLinkStateConfig, VfSettings, VfVlanConfig,
    VlanProto,
};

const RTM_NEWLINK: u16 = 16;
const RTM_SETLINK: u16 = 19;
const IFLA_VFINFO_LIST: u16 = 22;
const IFLA_VF_INFO: u16 = 1;

/// One message iproute2 sent, as strace printed it.
struct Captured {
    msg_type: u16,
    flags: String,
    payload: Vec<u8>,
}

/// Decodes strace's `"\x0a\x00..."` string (with `-xx` every byte is hex).
fn decode_hex_string(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find("\\x") {
        let hex = &rest[pos + 2..pos + 4];
        out.push(u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad hex {hex:?} in {s}")));
        rest = &rest[pos + 4..];
    }
    out
}

/// Extracts every netlink message from strace's sendmsg lines.
fn parse_strace(output: &str) -> Vec<Captured> {
    let mut out = Vec::new();
    for line in output.lines().filter(|l| l.contains("sendmsg(")) {
        let Some(t) = line.find("nlmsg_type=") else {
            continue;
        };
        let after = &line[t + "nlmsg_type=".len()..];
        let type_str: String = after
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == 'x')
            .collect();
        let msg_type = u16::from_str_radix(type_str.trim_start_matches("0x"), 16)
            .unwrap_or_else(|_| panic!("strace printed an unexpected nlmsg_type: {line}"));
        let f = line.find("nlmsg_flags=").expect("flags") + "nlmsg_flags=".len();
        let flags: String = line[f..].chars().take_while(|c| *c != ',').collect();
        // The payload follows the decoded header: `}, "\x..."`.
        let p = line[t..].find("}, \"").expect("payload") + t + 4;
        let end = line[p..].find('"').expect("payload end") + p;
        out.push(Captured {
            msg_type,
            flags,
            payload: decode_hex_string(&line[p..end]),
        });
    }
    out
}

/// Runs `ip -n <ns> link set <pf> vf <vf> <args>` under strace; returns the
/// RTM_NEWLINK request it sent, ip's exit success, and its stderr.
fn iproute2_vf_message(ns: &str, pf: &str, vf: u32, args: &str) -> (Vec<u8>, bool, String) {
    let vf = vf.to_string();
    let mut cmd = Command::new("strace");
    cmd.args([
        "-f",
        "-e",
        "trace=sendmsg",
        "-xx",
        "-s",
        "65536",
        "ip",
        "-n",
        ns,
        "link",
        "set",
        pf,
        "vf",
        &vf,
    ]);
    cmd.args(args.split_whitespace());
    let out = cmd
        .output()
        .expect("strace must be installed (apt-get install strace)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let msgs = parse_strace(&stderr);
    let setlink: Vec<_> = msgs
        .into_iter()
        .filter(|m| m.msg_type == RTM_NEWLINK && m.flags.contains("NLM_F_ACK"))
        .collect();
    assert_eq!(
        setlink.len(),
        1,
        "expected one RTM_NEWLINK request from ip, strace said:\n{stderr}"
    );
    let ip_stderr: String = stderr
        .lines()
        .filter(|l| !l.contains("sendmsg(") && !l.starts_with("+++"))
        .collect();
    (
        setlink
            .into_iter()
            .next()
            .map(|m| m.payload)
            .unwrap_or_default(),
        out.status.success(),
        ip_stderr,
    )
}

/// A netlink attribute: (type without flags, value bytes).
fn parse_nlas(mut buf: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        assert!(
            len >= 4 && len <= buf.len(),
            "malformed attribute in {buf:?}"
        );
        out.push((kind, buf[4..len].to_vec()));
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    out
}

/// ifinfomsg and the IFLA_VF_INFO children, sorted: equal when both carry
/// the same nested attributes with the same bytes, whatever their order.
fn semantic(payload: &[u8]) -> (Vec<u8>, Vec<(u16, Vec<u8>)>) {
    let ifinfo = payload[..16].to_vec();
    let top = parse_nlas(&payload[16..]);
    assert_eq!(top.len(), 1, "only IFLA_VFINFO_LIST expected");
    assert_eq!(top[0].0, IFLA_VFINFO_LIST);
    let infos = parse_nlas(&top[0].1);
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].0, IFLA_VF_INFO);
    let mut children = parse_nlas(&infos[0].1);
    children.sort();
    (ifinfo, children)
}

const IFLA_VF_IB_NODE_GUID: u16 = 10;
const IFLA_VF_IB_PORT_GUID: u16 = 11;

/// Zeroes the 4 padding bytes between `vf` and `guid` in struct
/// ifla_vf_guid. iproute2 fills that struct on the stack without clearing
/// it, so those bytes are whatever was there (seen: 0 alone, 1 after other
/// arguments); the kernel never reads them. Everything else stays exact.
fn clear_guid_padding(payload: &mut [u8]) {
    // ifinfomsg (16) + IFLA_VFINFO_LIST header (4) + IFLA_VF_INFO header (4).
    let mut off = 16 + 4 + 4;
    while off + 4 <= payload.len() {
        let len = u16::from_ne_bytes([payload[off], payload[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([payload[off + 2], payload[off + 3]]) & 0x3fff;
        if len < 4 {
            break;
        }
        if (kind == IFLA_VF_IB_NODE_GUID || kind == IFLA_VF_IB_PORT_GUID) && len >= 4 + 16 {
            payload[off + 8..off + 12].fill(0);
        }
        off += (len + 3) & !3;
    }
}

struct Case {
    args: &'static str,
    settings: VfSettings,
}

fn cases() -> Vec<Case> {
    let s = VfSettings::default;
    let vlan = |id, qos, proto| VfVlanConfig { id, qos, proto };
    vec![
        Case { args: "mac 02:11:22:33:44:55", settings: VfSettings { mac: Some(MacAddr([2, 0x11, 0x22, 0x33, 0x44, 0x55])), ..s() } },
        Case { args: "vlan 100 qos 3", settings: VfSettings { vlan: Some(vlan(100, 3, VlanProto::Dot1Q)), ..s() } },
        Case { args: "vlan 100 qos 3 proto 802.1Q", settings: VfSettings { vlan: Some(vlan(100, 3, VlanProto::Dot1Q)), ..s() } },
        Case { args: "vlan 4000 qos 7 proto 802.1ad", settings: VfSettings { vlan: Some(vlan(4000, 7, VlanProto::Dot1Ad)), ..s() } },
        Case { args: "vlan 0", settings: VfSettings { vlan: Some(vlan(0, 0, VlanProto::Dot1Q)), ..s() } },
        Case { args: "spoofchk on", settings: VfSettings { spoofchk: Some(true), ..s() } },
        Case { args: "spoofchk off", settings: VfSettings { spoofchk: Some(false), ..s() } },
        Case { args: "trust on", settings: VfSettings { trust: Some(true), ..s() } },
        Case { args: "trust off", settings: VfSettings { trust: Some(false), ..s() } },
        Case { args: "min_tx_rate 10 max_tx_rate 100", settings: VfSettings { min_tx_rate: Some(10), max_tx_rate: Some(100), ..s() } },
        // iproute2 reads the current minimum (none on a veth: 0) to send both.
        Case { args: "max_tx_rate 250", settings: VfSettings { min_tx_rate: Some(0), max_tx_rate: Some(250), ..s() } },
        Case { args: "state enable", settings: VfSettings { link_state: Some(VfLinkStateConfig::Enable), ..s() } },
        Case { args: "state disable", settings: VfSettings { link_state: Some(VfLinkStateConfig::Disable), ..s() } },
        Case { args: "state auto", settings: VfSettings { link_state: Some(VfLinkStateConfig::Auto), ..s() } },
        Case { args: "node_guid 00:11:22:33:44:55:66:77", settings: VfSettings { ib_node_guid: Some(0x0011_2233_4455_6677), ..s() } },
        Case { args: "port_guid 10:11:22:33:44:55:66:78", settings: VfSettings { ib_port_guid: Some(0x1011_2233_4455_6678), ..s() } },
        // Everything at once, arguments in the order our builder emits
        // (iproute2 appends the rate last whatever its position): byte-identical.
        Case {
            args: "mac 02:aa:bb:cc:dd:01 vlan 42 qos 1 min_tx_rate 5 spoofchk off state disable trust on node_guid 00:00:00:00:00:00:0a:0b port_guid 00:00:00:00:00:00:0c:0d max_tx_rate 50",
            settings: VfSettings {
                mac: Some(MacAddr([2, 0xaa, 0xbb, 0xcc, 0xdd, 1])),
                vlan: Some(vlan(42, 1, VlanProto::Dot1Q)),
                min_tx_rate: Some(5),
                max_tx_rate: Some(50),
                spoofchk: Some(false),
                link_state: Some(VfLinkStateConfig::Disable),
                trust: Some(true),
                ib_node_guid: Some(0x0a0b),
                ib_port_guid: Some(0x0c0d),
            },
        },
    ]
}

#[tokio::test]
async fn every_vf_setting_matches_iproute2_bytes_and_kernel_answer() {
    let t = TestNs::new("vf");
    let (pf, peer) = (unique("pf"), unique("pp"));
    t.handle.create_veth(&pf, &peer, None).await.unwrap();
    let pf_index = t.handle.link_by_name(&pf).await.unwrap().index;
    let vf = 2;
    // A veth reports no VFs; the read-back is empty rather than an error.
    assert!(t.handle.vf_states(pf_index).await.unwrap().is_empty());
    let bad = VfSettings {
        vlan: Some(VfVlanConfig {
            id: 5000,
            qos: 0,
            proto: VlanProto::Dot1Q,
        }),
        ..Default::default()
    };
    let err = t.handle.set_vf(pf_index, vf, &bad).await.unwrap_err();
    assert!(
        matches!(err.kind, jobnet_netlink::ErrorKind::InvalidInput(_)),
        "{err}"
    );
    for case in cases() {
        let (mut theirs, ip_ok, ip_err) = iproute2_vf_message(t.name(), &pf, vf, case.args);
        let ours = vf_message_payload(pf_index, vf, &case.settings).unwrap();
        let mut ours_cleared = ours.clone();
        clear_guid_padding(&mut ours_cleared);
        assert_eq!(ours_cleared, ours, "we must send zeroed padding");
        clear_guid_padding(&mut theirs);
        assert_eq!(ours, theirs, "bytes differ for `{}`", case.args);

        // Same answer from the kernel: the message parsed, the veth refused.
        assert!(
            !ip_ok && ip_err.contains("Operation not supported"),
            "ip said: {ip_err}"
        );
        let err = t
            .handle
            .set_vf(pf_index, vf, &case.settings)
            .await
            .unwrap_err();
        assert!(err.is_not_supported(), "`{}`: {err}", case.args);
    }
}

#[tokio::test]
async fn attribute_order_differences_compare_semantically() {
    // iproute2 emits attributes in command-line order, we in the kernel's
    // processing order; the kernel reads them by type, so the same set of
    // nested attributes with the same bytes is the same request.
    let t = TestNs::new("vo");
    let (pf, peer) = (unique("pf"), unique("pp"));
    t.handle.create_veth(&pf, &peer, None).await.unwrap();
    let pf_index = t.handle.link_by_name(&pf).await.unwrap().index;
    let settings = VfSettings {
        mac: Some(MacAddr([2, 0, 0, 0, 0, 0x33])),
        vlan: Some(VfVlanConfig {
            id: 7,
            qos: 2,
            proto: VlanProto::Dot1Ad,
        }),
        trust: Some(false),
        spoofchk: Some(true),
        link_state: Some(VfLinkStateConfig::Auto),
        ib_node_guid: Some(1),
        ib_port_guid: Some(2),
        ..Default::default()
    };
    let (mut theirs, _, _) = iproute2_vf_message(
        t.name(),
        &pf,
        5,
        "port_guid 00:00:00:00:00:00:00:02 trust off state auto node_guid 00:00:00:00:00:00:00:01 spoofchk on vlan 7 qos 2 proto 802.1ad mac 02:00:00:00:00:33",
    );
    clear_guid_padding(&mut theirs);
    let ours = vf_message_payload(pf_index, 5, &settings).unwrap();
    assert_ne!(ours, theirs, "orders differ, so raw bytes should too");
    assert_eq!(semantic(&ours), semantic(&theirs));
    // A real difference is still caught.
    let other = VfSettings {
        trust: Some(true),
        ..settings
    };
    assert_ne!(
        semantic(&vf_message_payload(pf_index, 5, &other).unwrap()),
        semantic(&theirs)
    );
}

#[test]
fn full_request_has_setlink_header() {
    let s = VfSettings {
        trust: Some(true),
        ..Default::default()
    };
    let bytes = vf_message_bytes(9, 1, &s, 77).unwrap();
    let len = u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize;
    assert_eq!(len, bytes.len());
    assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), RTM_SETLINK);
    assert_eq!(u16::from_ne_bytes([bytes[6], bytes[7]]), 0x5); // REQUEST | ACK
    assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 77);
    assert_eq!(&bytes[16..], &vf_message_payload(9, 1, &s).unwrap()[..]);
}

//! Checks every constant of `jobnet_rdma::consts` against the uapi headers
//! installed on this machine (`linux-libc-dev`), parsed at test time.

use std::collections::HashMap;

use jobnet_rdma::consts::{self, attr, cmd, nl, node_type};

const RDMA_HEADER: &str = "/usr/include/rdma/rdma_netlink.h";
const NETLINK_HEADER: &str = "/usr/include/linux/netlink.h";

/// Removes `/* ... */` and `// ...` comments.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find("*/") {
            Some(end) => rest = &rest[start + 2 + end + 2..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Evaluates the constant expressions these headers use: numbers, known
/// names, `a << b`, `a | b`, parentheses around the whole.
fn eval(expr: &str, known: &HashMap<String, i64>) -> Option<i64> {
    let e = expr.trim();
    let e = e
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .unwrap_or(e)
        .trim();
    if e.contains('|') {
        return e
            .split('|')
            .map(|t| eval(t, known))
            .try_fold(0, |acc, v| v.map(|v| acc | v));
    }
    if let Some((a, b)) = e.split_once("<<") {
        return Some(eval(a, known)? << eval(b, known)?);
    }
    if let Some(hex) = e.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Ok(v) = e.parse::<i64>() {
        return Some(v);
    }
    known.get(e).copied()
}

/// Every `#define NAME value` and enumerator with a computable value.
fn parse_header(path: &str) -> Option<HashMap<String, i64>> {
    let src = strip_comments(&std::fs::read_to_string(path).ok()?);
    let mut known = HashMap::new();
    for line in src.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("#define") {
            if let Some(name) = words.next() {
                if !name.contains('(') {
                    let value: Vec<&str> = words.collect();
                    if let Some(v) = eval(&value.join(" "), &known) {
                        known.insert(name.to_owned(), v);
                    }
                }
            }
        }
    }
    let mut rest = src.as_str();
    while let Some(pos) = rest.find("enum") {
        rest = &rest[pos + 4..];
        let (Some(open), Some(close)) = (rest.find('{'), rest.find('}')) else {
            break;
        };
        if close < open {
            continue;
        }
        let mut next: Option<i64> = Some(0);
        for entry in rest[open + 1..close].split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let (name, value) = match entry.split_once('=') {
                Some((n, v)) => (n.trim(), eval(v, &known)),
                None => (entry, next),
            };
            if let Some(v) = value {
                known.insert(name.to_owned(), v);
            }
            next = value.map(|v| v + 1);
        }
        rest = &rest[close + 1..];
    }
    Some(known)
}

fn check(known: &HashMap<String, i64>, pairs: &[(&str, i64)]) {
    let mut wrong = Vec::new();
    for (name, ours) in pairs {
        match known.get(*name) {
            Some(v) if v == ours => {}
            Some(v) => wrong.push(format!("{name}: header {v}, ours {ours}")),
            None => wrong.push(format!("{name}: not found in header")),
        }
    }
    assert!(wrong.is_empty(), "constants disagree with uapi: {wrong:#?}");
}

#[test]
fn rdma_constants_match_rdma_netlink_h() {
    let Some(h) = parse_header(RDMA_HEADER) else {
        eprintln!("{RDMA_HEADER} not installed; skipping (install linux-libc-dev)");
        return;
    };
    // The parser must have understood the file, or the check means nothing.
    assert!(h.len() > 200, "parsed only {} names", h.len());
    check(
        &h,
        &[
            ("RDMA_NL_NLDEV", consts::RDMA_NL_NLDEV.into()),
            ("RDMA_NLDEV_CMD_GET", cmd::GET.into()),
            ("RDMA_NLDEV_CMD_SET", cmd::SET.into()),
            ("RDMA_NLDEV_CMD_PORT_GET", cmd::PORT_GET.into()),
            ("RDMA_NLDEV_CMD_SYS_GET", cmd::SYS_GET.into()),
            ("RDMA_NLDEV_CMD_SYS_SET", cmd::SYS_SET.into()),
            ("RDMA_NLDEV_CMD_GET_CHARDEV", cmd::GET_CHARDEV.into()),
            ("RDMA_NLDEV_ATTR_PAD", attr::PAD.into()),
            ("RDMA_NLDEV_ATTR_DEV_INDEX", attr::DEV_INDEX.into()),
            ("RDMA_NLDEV_ATTR_DEV_NAME", attr::DEV_NAME.into()),
            ("RDMA_NLDEV_ATTR_PORT_INDEX", attr::PORT_INDEX.into()),
            ("RDMA_NLDEV_ATTR_CAP_FLAGS", attr::CAP_FLAGS.into()),
            ("RDMA_NLDEV_ATTR_FW_VERSION", attr::FW_VERSION.into()),
            ("RDMA_NLDEV_ATTR_NODE_GUID", attr::NODE_GUID.into()),
            (
                "RDMA_NLDEV_ATTR_SYS_IMAGE_GUID",
                attr::SYS_IMAGE_GUID.into(),
            ),
            ("RDMA_NLDEV_ATTR_SUBNET_PREFIX", attr::SUBNET_PREFIX.into()),
            ("RDMA_NLDEV_ATTR_LID", attr::LID.into()),
            ("RDMA_NLDEV_ATTR_SM_LID", attr::SM_LID.into()),
            ("RDMA_NLDEV_ATTR_LMC", attr::LMC.into()),
            ("RDMA_NLDEV_ATTR_PORT_STATE", attr::PORT_STATE.into()),
            (
                "RDMA_NLDEV_ATTR_PORT_PHYS_STATE",
                attr::PORT_PHYS_STATE.into(),
            ),
            ("RDMA_NLDEV_ATTR_DEV_NODE_TYPE", attr::DEV_NODE_TYPE.into()),
            ("RDMA_NLDEV_ATTR_NDEV_INDEX", attr::NDEV_INDEX.into()),
            ("RDMA_NLDEV_ATTR_NDEV_NAME", attr::NDEV_NAME.into()),
            (
                "RDMA_NLDEV_SYS_ATTR_NETNS_MODE",
                attr::SYS_NETNS_MODE.into(),
            ),
            ("RDMA_NLDEV_ATTR_DEV_PROTOCOL", attr::DEV_PROTOCOL.into()),
            ("RDMA_NLDEV_NET_NS_FD", attr::NET_NS_FD.into()),
            ("RDMA_NLDEV_ATTR_CHARDEV_TYPE", attr::CHARDEV_TYPE.into()),
            ("RDMA_NLDEV_ATTR_CHARDEV_NAME", attr::CHARDEV_NAME.into()),
            ("RDMA_NLDEV_ATTR_CHARDEV_ABI", attr::CHARDEV_ABI.into()),
            ("RDMA_NLDEV_ATTR_CHARDEV", attr::CHARDEV.into()),
            (
                "RDMA_NLDEV_SYS_ATTR_COPY_ON_FORK",
                attr::SYS_COPY_ON_FORK.into(),
            ),
            (
                "RDMA_NLDEV_SYS_ATTR_PRIVILEGED_QKEY_MODE",
                attr::SYS_PRIVILEGED_QKEY_MODE.into(),
            ),
            ("RDMA_NODE_IB_CA", node_type::IB_CA.into()),
            ("RDMA_NODE_IB_SWITCH", node_type::IB_SWITCH.into()),
            ("RDMA_NODE_IB_ROUTER", node_type::IB_ROUTER.into()),
            ("RDMA_NODE_RNIC", node_type::RNIC.into()),
            ("RDMA_NODE_USNIC", node_type::USNIC.into()),
            ("RDMA_NODE_USNIC_UDP", node_type::USNIC_UDP.into()),
            ("RDMA_NODE_UNSPECIFIED", node_type::UNSPECIFIED.into()),
        ],
    );
}

#[test]
fn netlink_constants_match_netlink_h() {
    let Some(h) = parse_header(NETLINK_HEADER) else {
        eprintln!("{NETLINK_HEADER} not installed; skipping");
        return;
    };
    check(
        &h,
        &[
            ("NETLINK_RDMA", consts::NETLINK_RDMA.into()),
            ("NLMSG_NOOP", nl::NLMSG_NOOP.into()),
            ("NLMSG_ERROR", nl::NLMSG_ERROR.into()),
            ("NLMSG_DONE", nl::NLMSG_DONE.into()),
            ("NLMSG_OVERRUN", nl::NLMSG_OVERRUN.into()),
            ("NLM_F_REQUEST", nl::NLM_F_REQUEST.into()),
            ("NLM_F_MULTI", nl::NLM_F_MULTI.into()),
            ("NLM_F_ACK", nl::NLM_F_ACK.into()),
            ("NLM_F_ROOT", nl::NLM_F_ROOT.into()),
            ("NLM_F_MATCH", nl::NLM_F_MATCH.into()),
            ("NLM_F_DUMP", nl::NLM_F_DUMP.into()),
            ("NLM_F_CAPPED", nl::NLM_F_CAPPED.into()),
            ("NLM_F_ACK_TLVS", nl::NLM_F_ACK_TLVS.into()),
            ("NLA_F_NESTED", nl::NLA_F_NESTED.into()),
            ("NLA_F_NET_BYTEORDER", nl::NLA_F_NET_BYTEORDER.into()),
            ("NLMSGERR_ATTR_MSG", nl::NLMSGERR_ATTR_MSG.into()),
            ("NETLINK_CAP_ACK", nl::NETLINK_CAP_ACK.into()),
            ("NETLINK_EXT_ACK", nl::NETLINK_EXT_ACK.into()),
        ],
    );
}

#[test]
fn type_macros_match_rdma_nl_get_type() {
    // RDMA_NL_GET_TYPE(client, op) = (client << 10) + op, and back.
    let t = consts::rdma_nl_type(consts::RDMA_NL_NLDEV, cmd::SYS_SET);
    assert_eq!(t, (5 << 10) + 7);
    assert_eq!(t, 0x1407);
    assert_eq!(consts::rdma_nl_client(t), consts::RDMA_NL_NLDEV);
    assert_eq!(consts::rdma_nl_op(t), cmd::SYS_SET);
}

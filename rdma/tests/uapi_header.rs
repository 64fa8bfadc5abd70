//! Checks every constant of `jobnet_rdma::consts` against the kernel's uapi
//! headers, parsed at test time. `rdma_netlink.h` is checked against the
//! copy vendored in `tests/uapi/` (see its README) on every machine, and
//! against the one installed here (`linux-libc-dev`) for the names that one
//! defines: an older installed header is no reason to fail, nor to check
//! nothing.

mod common;

use std::collections::HashMap;
use std::io::Write;

use jobnet_rdma::consts::{self, attr, cmd, nl, node_type};

/// Kernel release of the vendored header (keep in step with its README).
const VENDORED_KERNEL: &str = "Linux 6.12.95";
const VENDORED_RDMA_HEADER: &str = include_str!("uapi/rdma_netlink.h");
const INSTALLED_RDMA_HEADER: &str = "/usr/include/rdma/rdma_netlink.h";
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
fn parse_header(src: &str) -> HashMap<String, i64> {
    let src = strip_comments(src);
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
    known
}

fn read_header(path: &str) -> Option<HashMap<String, i64>> {
    std::fs::read_to_string(path).ok().map(|s| parse_header(&s))
}

/// Fails unless the parser understood the file: with few names parsed, an
/// empty mismatch list would mean nothing.
fn assert_parsed(what: &str, h: &HashMap<String, i64>) {
    assert!(h.len() > 200, "{what}: parsed only {} names", h.len());
}

/// Every `RDMA_*` constant jobnet uses, with its value in `consts`.
fn rdma_constants() -> Vec<(&'static str, i64)> {
    vec![
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
    ]
}

/// How `ours` compares with a header's names.
#[derive(Debug, Default)]
struct Comparison {
    /// `NAME: header X, ours Y` for every value that differs.
    wrong: Vec<String>,
    /// Names the header does not define.
    missing: Vec<&'static str>,
}

fn compare(known: &HashMap<String, i64>, ours: &[(&'static str, i64)]) -> Comparison {
    let mut c = Comparison::default();
    for &(name, value) in ours {
        match known.get(name) {
            Some(&v) if v == value => {}
            Some(&v) => c.wrong.push(format!("{name}: header {v}, ours {value}")),
            None => c.missing.push(name),
        }
    }
    c
}

#[test]
fn rdma_constants_match_the_vendored_rdma_netlink_h() {
    let h = parse_header(VENDORED_RDMA_HEADER);
    assert_parsed("vendored rdma_netlink.h", &h);
    let c = compare(&h, &rdma_constants());
    assert!(
        c.wrong.is_empty() && c.missing.is_empty(),
        "constants disagree with {VENDORED_KERNEL}'s rdma_netlink.h: {c:#?}"
    );
}

#[test]
fn rdma_constants_match_the_installed_rdma_netlink_h() {
    let Some(h) = read_header(INSTALLED_RDMA_HEADER) else {
        common::skip(
            "uapi_header::rdma_constants_match_the_installed_rdma_netlink_h",
            &format!("{INSTALLED_RDMA_HEADER} not installed (linux-libc-dev)"),
        );
        return;
    };
    assert_parsed(INSTALLED_RDMA_HEADER, &h);
    let c = compare(&h, &rdma_constants());
    assert!(
        c.wrong.is_empty(),
        "constants disagree with {INSTALLED_RDMA_HEADER}: {:#?}",
        c.wrong
    );
    if !c.missing.is_empty() {
        // Not a failure: the vendored test above covers these.
        // One write, so the line does not interleave with libtest's output.
        let line = format!(
            "uapi_header: {INSTALLED_RDMA_HEADER} is older and lacks {}: checked against \
             the vendored {VENDORED_KERNEL} header only\n",
            c.missing.join(", "),
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// uapi enums only grow, so the two headers agree on every name both have,
/// except the counts and maxima that grow with them. A vendored copy that
/// was edited by hand, or an installed header that is not the kernel's,
/// shows up here.
#[test]
fn vendored_and_installed_rdma_netlink_h_agree_where_both_define_a_name() {
    let Some(installed) = read_header(INSTALLED_RDMA_HEADER) else {
        common::skip(
            "uapi_header::vendored_and_installed_rdma_netlink_h_agree_where_both_define_a_name",
            &format!("{INSTALLED_RDMA_HEADER} not installed (linux-libc-dev)"),
        );
        return;
    };
    let vendored = parse_header(VENDORED_RDMA_HEADER);
    let mut differ: Vec<String> = installed
        .iter()
        .filter(|(name, _)| !name.ends_with("_MAX") && !name.contains("_NUM_"))
        .filter_map(|(name, v)| match vendored.get(name) {
            Some(w) if w != v => Some(format!("{name}: installed {v}, vendored {w}")),
            _ => None,
        })
        .collect();
    differ.sort();
    assert!(differ.is_empty(), "{differ:#?}");
}

#[test]
fn the_comparison_reports_wrong_and_missing_constants() {
    let h = parse_header(VENDORED_RDMA_HEADER);
    let c = compare(
        &h,
        &[
            ("RDMA_NLDEV_ATTR_DEV_INDEX", 1),
            ("RDMA_NLDEV_NET_NS_FD", 69),
            ("RDMA_NLDEV_ATTR_NO_SUCH_THING", 1),
        ],
    );
    assert_eq!(c.wrong, ["RDMA_NLDEV_NET_NS_FD: header 68, ours 69"]);
    assert_eq!(c.missing, ["RDMA_NLDEV_ATTR_NO_SUCH_THING"]);
}

#[test]
fn netlink_constants_match_netlink_h() {
    let Some(h) = read_header(NETLINK_HEADER) else {
        common::skip(
            "uapi_header::netlink_constants_match_netlink_h",
            &format!("{NETLINK_HEADER} not installed (linux-libc-dev)"),
        );
        return;
    };
    let c = compare(
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
    assert!(
        c.wrong.is_empty() && c.missing.is_empty(),
        "constants disagree with {NETLINK_HEADER}: {c:#?}"
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

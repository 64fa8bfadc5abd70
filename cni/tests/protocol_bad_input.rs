//! Table-driven bad input against the real binary: each case must give the
//! exact CNI error code, a non-zero exit and exactly one JSON error object
//! on stdout, and must leave nothing behind.

mod common;

use common::{jobnet, Netns};
use serde_json::json;

fn conf(extra: serde_json::Value) -> Vec<u8> {
    let mut c = json!({"cniVersion": "1.0.0", "name": "bad-input", "type": "jobnet"});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c.to_string().into_bytes()
}

struct Case {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    stdin: Vec<u8>,
    code: u64,
    /// The cniVersion the error must carry.
    version: &'static str,
}

#[test]
fn bad_input_gives_exact_codes() {
    let ns = Netns::new("jnbad");
    let good_ns = ns.path();
    let base = |cmd: &str| -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", cmd.to_owned()),
            ("CNI_CONTAINERID", "ctr1".to_owned()),
            ("CNI_NETNS", good_ns.clone()),
            ("CNI_IFNAME", "net1".to_owned()),
            ("CNI_PATH", "/nonexistent".to_owned()),
        ]
    };
    let set = |cmd: &str, key: &'static str, value: &str| {
        let mut e = base(cmd);
        e.retain(|(k, _)| *k != key);
        e.push((key, value.to_owned()));
        e
    };
    let without = |cmd: &str, key: &str| {
        let mut e = base(cmd);
        e.retain(|(k, _)| *k != key);
        e
    };
    let ok = conf(json!({}));
    let case = |name, env, stdin: &[u8], code, version| Case {
        name,
        env,
        stdin: stdin.to_vec(),
        code,
        version,
    };
    let huge = {
        let mut v =
            b"{\"cniVersion\":\"1.0.0\",\"name\":\"x\",\"type\":\"jobnet\",\"pad\":\"".to_vec();
        v.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
        v.extend(b"\"}");
        v
    };
    let cases = vec![
        // Decode failures (6).
        case(
            "malformed JSON",
            base("ADD"),
            b"{\"cniVersion\": \"1.0.0\",",
            6,
            "1.1.0",
        ),
        case("not an object", base("ADD"), b"[1,2,3]", 6, "1.1.0"),
        case("empty stdin", base("ADD"), b"", 6, "1.1.0"),
        case("huge stdin", base("ADD"), &huge, 6, "1.1.0"),
        case(
            "CNI_ARGS malformed",
            set("ADD", "CNI_ARGS", "K8S_POD_NAME"),
            &ok,
            6,
            "1.0.0",
        ),
        // Versions (1).
        case(
            "too-new cniVersion",
            base("ADD"),
            &conf(json!({"cniVersion": "2.0.0"})),
            1,
            "1.1.0",
        ),
        case(
            "too-old cniVersion",
            base("ADD"),
            &conf(json!({"cniVersion": "0.2.0"})),
            1,
            "1.1.0",
        ),
        case(
            "garbage cniVersion",
            base("DEL"),
            &conf(json!({"cniVersion": "latest"})),
            1,
            "1.1.0",
        ),
        case(
            "no cniVersion",
            base("ADD"),
            br#"{"name":"n","type":"jobnet"}"#,
            1,
            "1.1.0",
        ),
        case(
            "CHECK on 0.3.1",
            base("CHECK"),
            &conf(json!({"cniVersion": "0.3.1"})),
            1,
            "0.3.1",
        ),
        case("STATUS on 1.0.0", base("STATUS"), &ok, 1, "1.0.0"),
        case("GC on 1.0.0", base("GC"), &ok, 1, "1.0.0"),
        // Environment (4).
        case(
            "no CNI_COMMAND",
            without("ADD", "CNI_COMMAND"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "unknown CNI_COMMAND",
            set("ADD", "CNI_COMMAND", "ATTACH"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "lower-case command",
            set("ADD", "CNI_COMMAND", "add"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "ADD no container id",
            without("ADD", "CNI_CONTAINERID"),
            &ok,
            4,
            "1.0.0",
        ),
        case("ADD no netns", without("ADD", "CNI_NETNS"), &ok, 4, "1.0.0"),
        case(
            "ADD no ifname",
            without("ADD", "CNI_IFNAME"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "CHECK no netns",
            without("CHECK", "CNI_NETNS"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "DEL no container id",
            without("DEL", "CNI_CONTAINERID"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "DEL no ifname",
            without("DEL", "CNI_IFNAME"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "GC no CNI_PATH",
            without("GC", "CNI_PATH"),
            &conf(json!({"cniVersion": "1.1.0"})),
            4,
            "1.1.0",
        ),
        case(
            "ifname empty",
            set("ADD", "CNI_IFNAME", ""),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "ifname 16 bytes",
            set("ADD", "CNI_IFNAME", "abcdefghijklmnop"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "ifname slash",
            set("ADD", "CNI_IFNAME", "a/b"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "ifname colon",
            set("DEL", "CNI_IFNAME", "eth0:1"),
            &ok,
            4,
            "1.0.0",
        ),
        case("ifname dot", set("ADD", "CNI_IFNAME", "."), &ok, 4, "1.0.0"),
        case(
            "ifname dotdot",
            set("DEL", "CNI_IFNAME", ".."),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "ifname space",
            set("ADD", "CNI_IFNAME", "net 1"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "ifname tab",
            set("CHECK", "CNI_IFNAME", "net\t1"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "container id ../",
            set("ADD", "CNI_CONTAINERID", "../../etc/passwd"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "container id inner ../",
            set("DEL", "CNI_CONTAINERID", "abc/../../x"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "container id leading dot",
            set("ADD", "CNI_CONTAINERID", ".x"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "netns is /tmp",
            set("ADD", "CNI_NETNS", "/tmp"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "netns missing file",
            set("CHECK", "CNI_NETNS", "/run/netns/jobnet-none"),
            &conf(json!({"cniVersion": "0.4.0"})),
            4,
            "0.4.0",
        ),
        case(
            "netns relative",
            set("ADD", "CNI_NETNS", "run/netns/x"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "netns is a mount ns",
            set("ADD", "CNI_NETNS", "/proc/1/ns/mnt"),
            &ok,
            4,
            "1.0.0",
        ),
        case(
            "netns is the plugin's own",
            set("ADD", "CNI_NETNS", "/proc/self/ns/net"),
            &ok,
            4,
            "1.0.0",
        ),
        // Unsupported field (2).
        case(
            "CNI_ARGS unknown key",
            set("ADD", "CNI_ARGS", "FOO=bar"),
            &ok,
            2,
            "1.0.0",
        ),
        // Invalid config (7).
        case(
            "no name",
            base("ADD"),
            br#"{"cniVersion":"1.0.0","type":"jobnet"}"#,
            7,
            "1.0.0",
        ),
        case(
            "bad CIDR in runtimeConfig.ips",
            base("ADD"),
            &conf(json!({"runtimeConfig": {"ips": ["10.0.0.1/40"]}})),
            7,
            "1.0.0",
        ),
        case(
            "address without prefix",
            base("ADD"),
            &conf(json!({"runtimeConfig": {"ips": ["10.0.0.1"]}})),
            7,
            "1.0.0",
        ),
        case(
            "vlan 4095",
            base("ADD"),
            &conf(json!({"vlan": 4095})),
            7,
            "1.0.0",
        ),
        case(
            "vlan string",
            base("ADD"),
            &conf(json!({"vlan": "7"})),
            7,
            "1.0.0",
        ),
        case(
            "qos 8",
            base("ADD"),
            &conf(json!({"vlan": 7, "vlanQoS": 8})),
            7,
            "1.0.0",
        ),
        case(
            "proto without vlan",
            base("ADD"),
            &conf(json!({"vlanProto": "802.1ad"})),
            7,
            "1.0.0",
        ),
        case("mtu 67", base("ADD"), &conf(json!({"mtu": 67})), 7, "1.0.0"),
        case(
            "mtu 70000",
            base("ADD"),
            &conf(json!({"mtu": 70000})),
            7,
            "1.0.0",
        ),
        case(
            "mac short",
            base("ADD"),
            &conf(json!({"mac": "02:00:00:00:00"})),
            7,
            "1.0.0",
        ),
        case(
            "mac multicast",
            base("ADD"),
            &conf(json!({"runtimeConfig": {"mac": "01:00:5e:00:00:01"}})),
            7,
            "1.0.0",
        ),
        case(
            "rates inverted",
            base("ADD"),
            &conf(json!({"min_tx_rate": 100, "max_tx_rate": 10})),
            7,
            "1.0.0",
        ),
        case(
            "bad deviceID",
            base("ADD"),
            &conf(json!({"deviceID": "0000:3b:02.9"})),
            7,
            "1.0.0",
        ),
        case(
            "ipam type path",
            base("ADD"),
            &conf(json!({"ipam": {"type": "../../bin/sh"}})),
            7,
            "1.0.0",
        ),
        case(
            "ipam not in CNI_PATH",
            base("ADD"),
            &conf(json!({"ipam": {"type": "host-local"}})),
            7,
            "1.0.0",
        ),
        case(
            "GC without valid-attachments",
            base("GC"),
            &conf(json!({"cniVersion": "1.1.0"})),
            7,
            "1.1.0",
        ),
        case("CHECK without prevResult", base("CHECK"), &ok, 7, "1.0.0"),
        // CHECK finds the attachment missing (106).
        case(
            "CHECK prevResult lacks interface",
            base("CHECK"),
            &conf(json!({"prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}]}})),
            106,
            "1.0.0",
        ),
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let env: Vec<(&str, &str)> = c.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = jobnet(&env, &c.stdin);
        let result = std::panic::catch_unwind(|| {
            let v = run.expect_error(c.code);
            assert_eq!(v["cniVersion"], c.version, "{run:?}");
        });
        if result.is_err() {
            failures.push(format!("{}: {:?}", c.name, run));
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
    // Nothing left behind: the namespace is still empty (only lo).
    let links = std::process::Command::new("ip")
        .args(["-n", &ns.name, "-o", "link"])
        .output()
        .expect("ip link");
    let text = String::from_utf8_lossy(&links.stdout);
    assert_eq!(text.lines().count(), 1, "unexpected links: {text}");
}

//! Version conversions, checked field by field against literal JSON.

use serde_json::json;

use super::*;

fn full_v11() -> serde_json::Value {
    json!({
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "net1", "mac": "02:00:00:00:00:01", "mtu": 9000,
             "sandbox": "/run/netns/p1", "socketPath": "/run/x.sock", "pciID": "0000:3b:02.1"},
            {"name": "vf-host"}
        ],
        "ips": [
            {"interface": 0, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
            {"interface": 0, "address": "fd00::5/64"}
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 8950, "advmss": 8910,
             "priority": 100, "table": 200, "scope": 0},
            {"dst": "fd00:1::/48"}
        ],
        "dns": {"nameservers": ["10.1.0.1"], "domain": "job.local",
                "search": ["job.local"], "options": ["ndots:2"]}
    })
}

#[test]
fn v11_round_trips_unchanged() {
    let (v, r) = CniResult::parse(&full_v11(), CniVersion::V0_3_0, "prevResult").unwrap();
    assert_eq!(v, CniVersion::V1_1_0);
    assert_eq!(r.interfaces.len(), 2);
    assert_eq!(r.interfaces[0].pci_id.as_deref(), Some("0000:3b:02.1"));
    assert_eq!(r.routes[0].table, Some(200));
    assert_eq!(r.to_json(CniVersion::V1_1_0), full_v11());
}

#[test]
fn v11_to_v100_drops_fields_100_lacks() {
    let (_, r) = CniResult::parse(&full_v11(), CniVersion::V1_1_0, "r").unwrap();
    assert_eq!(
        r.to_json(CniVersion::V1_0_0),
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/p1"},
                {"name": "vf-host"}
            ],
            "ips": [
                {"interface": 0, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
                {"interface": 0, "address": "fd00::5/64"}
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.1.0.1"},
                {"dst": "fd00:1::/48"}
            ],
            "dns": {"nameservers": ["10.1.0.1"], "domain": "job.local",
                    "search": ["job.local"], "options": ["ndots:2"]}
        })
    );
}

#[test]
fn v1_to_v04x_adds_ip_version() {
    let (_, r) = CniResult::parse(&full_v11(), CniVersion::V1_1_0, "r").unwrap();
    for v in [CniVersion::V0_3_0, CniVersion::V0_3_1, CniVersion::V0_4_0] {
        assert_eq!(
            r.to_json(v),
            json!({
                "cniVersion": v.as_str(),
                "interfaces": [
                    {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/p1"},
                    {"name": "vf-host"}
                ],
                "ips": [
                    {"version": "4", "interface": 0, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
                    {"version": "6", "interface": 0, "address": "fd00::5/64"}
                ],
                "routes": [
                    {"dst": "0.0.0.0/0", "gw": "10.1.0.1"},
                    {"dst": "fd00:1::/48"}
                ],
                "dns": {"nameservers": ["10.1.0.1"], "domain": "job.local",
                        "search": ["job.local"], "options": ["ndots:2"]}
            }),
            "{v}"
        );
    }
}

fn v040() -> serde_json::Value {
    json!({
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0", "mac": "0a:58:0a:01:00:05", "sandbox": "/proc/42/ns/net"}],
        "ips": [{"version": "4", "interface": 0, "address": "10.88.0.5/16", "gateway": "10.88.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {}
    })
}

#[test]
fn v04x_to_v1_removes_ip_version() {
    for src in ["0.3.0", "0.3.1", "0.4.0"] {
        let mut input = v040();
        input["cniVersion"] = json!(src);
        let (v, r) = CniResult::parse(&input, CniVersion::V1_1_0, "r").unwrap();
        assert_eq!(v.as_str(), src);
        for to in [CniVersion::V1_0_0, CniVersion::V1_1_0] {
            assert_eq!(
                r.to_json(to),
                json!({
                    "cniVersion": to.as_str(),
                    "interfaces": [{"name": "eth0", "mac": "0a:58:0a:01:00:05", "sandbox": "/proc/42/ns/net"}],
                    "ips": [{"interface": 0, "address": "10.88.0.5/16", "gateway": "10.88.0.1"}],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }),
                "{src} -> {to}"
            );
        }
        // And back: the 0.x layout is reproduced exactly (empty dns left out).
        let mut back = input.clone();
        back.as_object_mut().unwrap().remove("dns");
        assert_eq!(r.to_json(v), back);
    }
}

#[test]
fn v04x_between_minor_versions_only_relabels() {
    let (_, r) = CniResult::parse(&v040(), CniVersion::V0_4_0, "r").unwrap();
    let out = r.to_json(CniVersion::V0_3_1);
    assert_eq!(out["cniVersion"], "0.3.1");
    assert_eq!(out["ips"], v040()["ips"]);
    assert_eq!(out["interfaces"], v040()["interfaces"]);
}

#[test]
fn ipam_result_without_interfaces() {
    let ipam =
        json!({"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.2/24", "gateway": "10.9.0.1"}]});
    let (_, r) = CniResult::parse(&ipam, CniVersion::V1_0_0, "ipam").unwrap();
    assert!(r.interfaces.is_empty());
    assert_eq!(r.ips[0].interface, None);
    assert_eq!(r.to_json(CniVersion::V1_0_0), ipam);
    let v04 = r.to_json(CniVersion::V0_4_0);
    assert_eq!(
        v04,
        json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.9.0.2/24", "gateway": "10.9.0.1"}]})
    );
}

#[test]
fn missing_version_uses_default_and_conversion_helper() {
    let j = json!({"ips": [{"version": "6", "address": "fd00::2/64"}]});
    let (v, r) = CniResult::parse(&j, CniVersion::V0_4_0, "r").unwrap();
    assert_eq!(v, CniVersion::V0_4_0);
    let (_, r11) = CniResult::parse(&full_v11(), CniVersion::V1_1_0, "r").unwrap();
    let down = r11.convert(CniVersion::V0_4_0);
    assert_eq!(down.interfaces[0].pci_id, None);
    assert_eq!(down.routes[0].mtu, None);
    assert_eq!(r.ips[0].address.to_string(), "fd00::2/64");
}

#[test]
fn malformed_results_are_rejected() {
    let cases = [
        (json!("x"), ErrorCode::DecodeFailure),
        (
            json!({"cniVersion": "9.9.9"}),
            ErrorCode::IncompatibleVersion,
        ),
        (json!({"cniVersion": 4}), ErrorCode::DecodeFailure),
        (
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.300/24"}]}),
            ErrorCode::DecodeFailure,
        ),
        (
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.3"}]}),
            ErrorCode::DecodeFailure,
        ),
        (
            json!({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.3/24"}]}),
            ErrorCode::DecodeFailure,
        ),
        (
            json!({"cniVersion": "1.1.0", "routes": [{"gw": "10.0.0.1"}]}),
            ErrorCode::DecodeFailure,
        ),
        (
            json!({"cniVersion": "1.1.0", "interfaces": [{"mac": "x"}]}),
            ErrorCode::DecodeFailure,
        ),
    ];
    for (j, code) in cases {
        let e = CniResult::parse(&j, CniVersion::V1_1_0, "prevResult").unwrap_err();
        assert_eq!(e.code, code, "{j}: {e}");
    }
}

//! Config parsing: every field, defaults, and the error code of each bad value.

use serde_json::json;

use super::*;
use crate::protocol::error::ErrorCode;

fn parse(v: serde_json::Value) -> Result<NetConf, CniError> {
    NetConf::parse(v.to_string().as_bytes())
}

fn base() -> serde_json::Value {
    json!({"cniVersion": "1.1.0", "name": "job-net", "type": "jobnet"})
}

fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut b = base();
    b[key] = value;
    b
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(base()).unwrap();
    assert_eq!(c.cni_version, CniVersion::V1_1_0);
    assert_eq!(c.name.as_str(), "job-net");
    assert_eq!(c.plugin_type.as_str(), "jobnet");
    assert_eq!(c.cni_args, ConfArgs::default());
    assert_eq!(c.runtime, RuntimeConfig::default());
    assert_eq!(c.device(), None);
    assert_eq!(c.prev_result, None);
    assert_eq!(c.ipam, None);
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.log_file, None);
    assert_eq!(c.valid_attachments, None);
    assert_eq!(c.jobnet, JobnetConf::default());
    assert_eq!(
        c.jobnet.daemon_socket,
        PathBuf::from("/run/jobnet/jobnetd.sock")
    );
    assert_eq!(c.raw, base().to_string().into_bytes());
}

#[test]
fn full_config_parses_every_field() {
    let c = parse(json!({
        "cniVersion": "1.0.0",
        "name": "rdma-net",
        "type": "jobnet",
        "deviceID": "0000:3b:02.1",
        "pciBusID": "0000:3b:02.2",
        "args": {"cni": {"job": "llama", "rank": 3, "gpus": ["0000:1a:00.0", 1], "guid": "00:11:22:33:44:55:66:77", "other": 1}},
        "runtimeConfig": {
            "deviceID": "0000:3b:02.3", "mac": "02:00:00:00:00:09",
            "ips": ["10.1.0.5/24", "fd00::5/64"], "infinibandGUID": "aa:11:22:33:44:55:66:77",
            "CNIDeviceInfoFile": "/var/run/k8s.cni.cncf.io/devinfo/cni/x.json",
            "portMappings": []
        },
        "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"},
        "dns": {"nameservers": ["10.1.0.1"], "search": ["a"]},
        "logLevel": "debug",
        "logFile": "/var/log/jobnet.log",
        "cni.dev/valid-attachments": [{"containerID": "abc", "ifname": "net1"}],
        "job": "override",
        "mtu": 9000,
        "mac": "02:00:00:00:00:08",
        "vlan": 100, "vlanQoS": 5, "vlanProto": "802.1ad",
        "spoofchk": "off", "trust": true,
        "min_tx_rate": 100, "max_tx_rate": 1000,
        "link_state": "enable",
        "rdma": {"isolation": "exclusive", "required": true},
        "rails": "all",
        "daemonSocket": "/run/x/jobnetd.sock",
        "someMultusKey": {"whatever": true}
    }))
    .unwrap();
    assert_eq!(c.cni_version, CniVersion::V1_0_0);
    assert_eq!(c.device(), Some("0000:3b:02.3".parse().unwrap()));
    assert_eq!(c.device_id, Some("0000:3b:02.1".parse().unwrap()));
    assert_eq!(c.pci_bus_id, Some("0000:3b:02.2".parse().unwrap()));
    assert_eq!(c.cni_args.job.as_ref().unwrap().as_str(), "llama");
    assert_eq!(c.cni_args.rank, Some(Rank(3)));
    assert_eq!(
        c.cni_args.gpus,
        Some(vec![
            GpuRef::Pci("0000:1a:00.0".parse().unwrap()),
            GpuRef::Index(1)
        ])
    );
    assert_eq!(
        c.cni_args.guid.unwrap().to_string(),
        "00:11:22:33:44:55:66:77"
    );
    assert_eq!(c.mac().unwrap().to_string(), "02:00:00:00:00:09");
    assert_eq!(c.ib_guid().unwrap().to_string(), "aa:11:22:33:44:55:66:77");
    assert_eq!(c.runtime.ips.len(), 2);
    assert_eq!(c.runtime.ips[0].to_string(), "10.1.0.5/24");
    assert_eq!(
        c.runtime.device_info_file.as_deref(),
        Some(Path::new("/var/run/k8s.cni.cncf.io/devinfo/cni/x.json"))
    );
    let ipam = c.ipam.as_ref().unwrap();
    assert_eq!(ipam.plugin.as_str(), "host-local");
    assert_eq!(ipam.raw["subnet"], "10.1.0.0/24");
    assert_eq!(c.dns.nameservers, vec!["10.1.0.1".to_owned()]);
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(
        c.log_file.as_deref(),
        Some(Path::new("/var/log/jobnet.log"))
    );
    let va = c.valid_attachments.as_ref().unwrap();
    assert_eq!(va[0].container_id.as_str(), "abc");
    assert_eq!(va[0].ifname.as_str(), "net1");
    let j = &c.jobnet;
    assert_eq!(j.job.as_ref().unwrap().as_str(), "override");
    assert_eq!(j.mtu.unwrap().get(), 9000);
    let vlan = j.vlan.unwrap();
    assert_eq!(
        (vlan.id.get(), vlan.qos.get(), vlan.proto),
        (100, 5, VlanProto::Dot1Ad)
    );
    assert_eq!((j.spoofchk, j.trust), (Some(false), Some(true)));
    assert_eq!((j.min_tx_rate, j.max_tx_rate), (Some(100), Some(1000)));
    assert_eq!(j.link_state, Some(LinkState::Enable));
    assert_eq!(
        j.rdma,
        RdmaConf {
            isolation: RdmaIsolation::Exclusive,
            required: true
        }
    );
    assert_eq!(j.rails, Rails::All);
    assert_eq!(j.daemon_socket, PathBuf::from("/run/x/jobnetd.sock"));
}

#[test]
fn device_id_priority_and_ipam_without_type() {
    let c = parse(with("pciBusID", json!("0000:3b:02.2"))).unwrap();
    assert_eq!(c.device(), Some("0000:3b:02.2".parse().unwrap()));
    let mut b = with("pciBusID", json!("0000:3b:02.2"));
    b["deviceID"] = json!("0000:3b:02.1");
    assert_eq!(
        parse(b).unwrap().device(),
        Some("0000:3b:02.1".parse().unwrap())
    );
    assert_eq!(parse(with("ipam", json!({}))).unwrap().ipam, None);
}

#[test]
fn cni_versions_list_picks_newest_supported() {
    let c =
        parse(json!({"cniVersions": ["0.3.1", "1.0.0", "9.0.0"], "name": "n", "type": "jobnet"}))
            .unwrap();
    assert_eq!(c.cni_version, CniVersion::V1_0_0);
    let e = parse(json!({"cniVersions": ["9.0.0"], "name": "n", "type": "jobnet"})).unwrap_err();
    assert_eq!(e.code, ErrorCode::IncompatibleVersion);
    // cniVersion wins when both are present: the runtime inserted its choice.
    let c = parse(
        json!({"cniVersion": "0.4.0", "cniVersions": ["1.1.0"], "name": "n", "type": "jobnet"}),
    )
    .unwrap();
    assert_eq!(c.cni_version, CniVersion::V0_4_0);
}

#[test]
fn prev_result_is_parsed_in_its_own_version() {
    let c = parse(json!({
        "cniVersion": "1.0.0", "name": "n", "type": "jobnet",
        "prevResult": {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}]}
    }))
    .unwrap();
    let p = c.prev_result.unwrap();
    assert_eq!(p.version, CniVersion::V0_4_0);
    assert_eq!(p.result.ips[0].address.to_string(), "10.0.0.2/24");
}

#[test]
fn bad_values_have_the_right_codes() {
    use ErrorCode::*;
    let cases: Vec<(serde_json::Value, ErrorCode)> = vec![
        (json!({"name": "n", "type": "jobnet"}), IncompatibleVersion),
        (with("cniVersion", json!("0.2.0")), IncompatibleVersion),
        (with("cniVersion", json!("1.2.0")), IncompatibleVersion),
        (with("cniVersion", json!(1)), DecodeFailure),
        (json!([1, 2]), DecodeFailure),
        (
            json!({"cniVersion": "1.1.0", "type": "jobnet"}),
            InvalidNetworkConfig,
        ),
        (
            json!({"cniVersion": "1.1.0", "name": "n"}),
            InvalidNetworkConfig,
        ),
        (with("name", json!("../x")), InvalidNetworkConfig),
        (with("type", json!("../bin/sh")), InvalidNetworkConfig),
        (with("vlan", json!(4095)), InvalidNetworkConfig),
        (with("vlan", json!(-1)), InvalidNetworkConfig),
        (with("vlan", json!("10")), InvalidNetworkConfig),
        (with("vlanQoS", json!(3)), InvalidNetworkConfig),
        (with("vlanProto", json!("802.1ad")), InvalidNetworkConfig),
        (with("mtu", json!(67)), InvalidNetworkConfig),
        (with("mtu", json!(65536)), InvalidNetworkConfig),
        (with("mtu", json!(1e10)), InvalidNetworkConfig),
        (
            with("mac", json!("zz:00:00:00:00:00")),
            InvalidNetworkConfig,
        ),
        (
            with("mac", json!("01:00:00:00:00:00")),
            InvalidNetworkConfig,
        ),
        (with("link_state", json!("up")), InvalidNetworkConfig),
        (with("spoofchk", json!("maybe")), InvalidNetworkConfig),
        (with("min_tx_rate", json!(-5)), InvalidNetworkConfig),
        (
            with("rdma", json!({"isolation": "total"})),
            InvalidNetworkConfig,
        ),
        (with("rdma", json!("exclusive")), InvalidNetworkConfig),
        (with("rails", json!("two")), InvalidNetworkConfig),
        (
            with("daemonSocket", json!("relative.sock")),
            InvalidNetworkConfig,
        ),
        (
            with("logFile", json!("/var/log/../../etc/passwd")),
            InvalidNetworkConfig,
        ),
        (with("logLevel", json!("trace")), InvalidNetworkConfig),
        (with("deviceID", json!("0000:3b:02")), InvalidNetworkConfig),
        (
            with("runtimeConfig", json!({"ips": ["10.0.0.1/33"]})),
            InvalidNetworkConfig,
        ),
        (
            with("runtimeConfig", json!({"ips": ["10.0.0.1"]})),
            InvalidNetworkConfig,
        ),
        (
            with("runtimeConfig", json!({"ips": "10.0.0.1/24"})),
            InvalidNetworkConfig,
        ),
        (
            with("runtimeConfig", json!({"mac": "02:00"})),
            InvalidNetworkConfig,
        ),
        (
            with("runtimeConfig", json!({"infinibandGUID": "00:11"})),
            InvalidNetworkConfig,
        ),
        (
            with("runtimeConfig", json!({"CNIDeviceInfoFile": "x.json"})),
            InvalidNetworkConfig,
        ),
        (
            with("args", json!({"cni": {"rank": -1}})),
            InvalidNetworkConfig,
        ),
        (
            with("args", json!({"cni": {"gpus": "0,1"}})),
            InvalidNetworkConfig,
        ),
        (
            with("ipam", json!({"type": "../../bin/sh"})),
            InvalidNetworkConfig,
        ),
        (with("ipam", json!({"type": 5})), InvalidNetworkConfig),
        (with("ipam", json!("host-local")), InvalidNetworkConfig),
        (
            with("dns", json!({"nameservers": ["not-an-ip"]})),
            InvalidNetworkConfig,
        ),
        (
            with(
                "cni.dev/valid-attachments",
                json!([{"containerID": "../x", "ifname": "a"}]),
            ),
            InvalidNetworkConfig,
        ),
        (
            with("prevResult", json!({"cniVersion": "7.0.0"})),
            IncompatibleVersion,
        ),
        (
            with("prevResult", json!({"ips": [{"address": "x"}]})),
            DecodeFailure,
        ),
    ];
    for (conf, code) in cases {
        let e = parse(conf.clone()).unwrap_err();
        assert_eq!(e.code, code, "{conf}: {e}");
    }
    let e = parse(with("vlan", json!(5000))).unwrap_err();
    assert!(e.msg.contains("\"vlan\""), "{e}");
    let e = parse(with("runtimeConfig", json!({"ips": ["10.0.0.1/33"]}))).unwrap_err();
    assert!(e.msg.contains("runtimeConfig.ips"), "{e}");
}

#[test]
fn syntax_errors_and_oversize_are_code_6() {
    for bad in [&b"{"[..], b"", b"not json", b"{\"cniVersion\": \"1.1.0\",}"] {
        assert_eq!(
            NetConf::parse(bad).unwrap_err().code,
            ErrorCode::DecodeFailure
        );
    }
    let huge = vec![b' '; MAX_CONFIG_BYTES + 1];
    let e = NetConf::parse(&huge).unwrap_err();
    assert_eq!(e.code, ErrorCode::DecodeFailure);
    assert!(e.msg.contains("larger than"), "{e}");
    assert_eq!(
        peek_version(base().to_string().as_bytes()),
        Some(CniVersion::V1_1_0)
    );
    assert_eq!(peek_version(b"{"), None);
}

//! The API socket refuses what it must: bad JSON, big bodies, unknown
//! versions and paths, wrong methods, and peers that are not root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

#[test]
fn malformed_json_is_400_with_a_json_error() {
    let d = Daemon::start(sysfs(1, 2));
    for body in [&b"{not json"[..], b"[]", b"", b"{\"containerID\":\"c\"}"] {
        let (status, resp) = raw_http(&d.socket, &post("/v1/attachments/reserve", body));
        assert_eq!(status, 400, "body {body:?}: {resp}");
        let e: serde_json::Value = serde_json::from_str(&resp).unwrap();
        assert_eq!(e["code"], "malformed-request", "{resp}");
    }
    // Unknown fields are refused too: a typo must not silently drop a setting.
    let (status, resp) = raw_http(
        &d.socket,
        &post(
            "/v1/attachments/reserve",
            br#"{"containerID":"c","ifname":"net1","netns":"/x","job":"j","devceID":"x"}"#,
        ),
    );
    assert_eq!(status, 400, "{resp}");
    // Valid JSON, invalid values: 400 invalid-argument.
    let (status, resp) = raw_http(
        &d.socket,
        &post(
            "/v1/attachments/reserve",
            br#"{"containerID":"../../etc","ifname":"net1","netns":"/x","job":"j"}"#,
        ),
    );
    assert_eq!(status, 400, "{resp}");
    assert!(resp.contains("invalid-argument"), "{resp}");
}

#[test]
fn oversized_body_is_413_declared_or_chunked() {
    let d = Daemon::start(sysfs(1, 1));
    let big = vec![b' '; 100 * 1024];
    let (status, resp) = raw_http(&d.socket, &post("/v1/attachments/reserve", &big));
    assert_eq!(status, 413, "{resp}");
    assert!(resp.contains("body-too-large"), "{resp}");
    // Chunked, no Content-Length: the limit applies while reading.
    let mut req = b"POST /v1/gc HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        req.extend_from_slice(format!("{:x}\r\n", 8192).as_bytes());
        req.extend_from_slice(&[b' '; 8192]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let (status, resp) = raw_http(&d.socket, &req);
    assert_eq!(status, 413, "{resp}");
    // The daemon is still fine afterwards.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(rt.block_on(d.client().status()).is_ok());
}

#[test]
fn unknown_version_path_and_method() {
    let d = Daemon::start(sysfs(1, 1));
    let get = |path: &str| {
        raw_http(
            &d.socket,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let (status, body) = get("/v2/status");
    assert_eq!(status, 404);
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["code"], "not-found");
    assert!(e["message"].as_str().unwrap().contains("/v1/"), "{body}");
    let (status, body) = get("/v1/nope");
    assert_eq!(status, 404, "{body}");
    let (status, body) = get("/v1/attachments/reserve");
    assert_eq!(status, 405, "{body}");
    assert!(body.contains("method-not-allowed"));
    let (status, body) = get("/v1/status");
    assert_eq!(status, 200, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["node"], "node-a");
    assert_eq!(s["apiVersion"], "v1");
}

#[test]
fn socket_is_0600_and_non_root_peer_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        jobnet_tests::skip(
            "api_hardening::socket_is_0600_and_non_root_peer_is_refused",
            "needs root to drop to nobody",
        );
        return;
    }
    let d = Daemon::start(sysfs(1, 1));
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let as_nobody = || {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_jobnetctl"))
            .arg("--socket")
            .arg(&d.socket)
            .args(["--json", "status"])
            .output()
            .unwrap()
    };
    // With mode 0600 nobody cannot even connect.
    let out = as_nobody();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unavailable"), "{err}");
    // Loosen the mode as a careless operator might: peer credentials still refuse.
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("forbidden"), "{err}");
    assert!(
        d.log().contains("refusing non-root API peer"),
        "{}",
        d.log()
    );
    // Root still gets in.
    let (ok, out, err) = d.ctl(&["--json", "status"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"node\": \"node-a\""), "{out}");
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let mut d = Daemon::start(sysfs(1, 1));
    let status = d.stop();
    assert!(status.success(), "{status}: {}", d.log());
    assert!(!d.socket.exists());
    assert!(d.log().contains("jobnetd stopped"));
}

#[test]
fn second_daemon_on_the_same_socket_refuses_to_start() {
    let d = Daemon::start(sysfs(1, 1));
    let out = Command::new(env!("CARGO_BIN_EXE_jobnetd"))
        .arg("--config")
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // The store is locked or the socket is in use: either way, the first daemon keeps running.
    assert!(
        err.contains("another jobnetd") || err.contains("state"),
        "{err}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(rt.block_on(d.client().status()).is_ok());
}

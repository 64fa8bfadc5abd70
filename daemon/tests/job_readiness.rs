//! `job wait` and `job preflight` through the real jobnetd on one node (fake
//! sysfs, embedded store): the long poll answers on a commit and at its
//! deadline, its cap, refused input, the preflight's verdict and exit
//! codes, and the per-job gauges on /metrics. The fabric tests
//! (`tests/tests/preflight.rs`) probe real pods across nodes.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use jobnet_api::{
    AttachmentKey, Client, MissingState, PreflightCheck, PreflightRequest, MAX_WAIT_MS,
};
use jobnet_tests::harness::Pod;

/// Reserves and commits rank `rank` of `job` in container `c<rank>`.
async fn attach(c: &Client, job: &str, rank: u32, netns: &str) -> AttachmentKey {
    let mut req = reserve_req(&format!("c{rank}"), job, Some(rank));
    req.netns = netns.into();
    let a = c.reserve(&req).await.unwrap();
    c.commit(&a.key()).await.unwrap();
    a.key()
}

/// The daemon's /metrics text.
fn metrics(d: &Daemon) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.metrics_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_answers_on_the_commit_and_at_its_deadline() {
    let d = Daemon::start(sysfs(1, 4));
    let c = d.client();
    {
        for r in 0..2 {
            attach(&c, "j", r, "/proc/self/ns/net").await;
        }
        let w = c.job_wait("j", 2, Duration::from_secs(5)).await.unwrap();
        assert!(w.ready, "{w:?}");
        assert_eq!((w.attached, w.rails.as_slice()), (2, &[0][..]), "{w:?}");

        let started = Instant::now();
        let w = c.job_wait("j", 3, Duration::from_secs(1)).await.unwrap();
        assert!(
            !w.ready && started.elapsed() >= Duration::from_secs(1),
            "{w:?}"
        );
        assert_eq!(w.missing_total, 1, "{w:?}");
        assert_eq!(
            (w.missing[0].rank, w.missing[0].state),
            (2, MissingState::Absent)
        );

        // Reserved, not committed: named as such, with its node.
        let a2 = c.reserve(&reserve_req("c2", "j", Some(2))).await.unwrap();
        let w = c
            .job_wait("j", 3, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(w.missing[0].state, MissingState::Reserved, "{w:?}");
        assert_eq!(w.missing[0].node.as_deref(), Some("node-a"), "{w:?}");

        // A waiter answers when the commit lands, well before its deadline.
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.job_wait("j", 3, Duration::from_secs(30)).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiter.is_finished(), "answered before rank 2 committed");
        c.commit(&a2.key()).await.unwrap();
        let committed = Instant::now();
        let w = waiter.await.unwrap().unwrap();
        assert!(w.ready, "{w:?}");
        assert!(
            committed.elapsed() < Duration::from_secs(1),
            "{:?}",
            committed.elapsed()
        );

        // Longer waits are cut to the server's cap.
        let w = c.job_wait("j", 3, Duration::from_secs(7200)).await.unwrap();
        assert_eq!(w.timeout_ms, MAX_WAIT_MS, "{w:?}");

        // A job nobody attached yet: every rank missing, on the pool's rails.
        let w = c
            .job_wait("nope", 2, Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(
            (w.ready, w.missing_total, w.rails.as_slice()),
            (false, 2, &[0][..])
        );
    }
    let m = metrics(&d);
    assert!(m.contains("jobnet_job_ranks_attached{job=\"j\"} 3"), "{m}");
    assert!(m.contains("jobnet_job_ranks_expected{job=\"j\"} 3"), "{m}");

    // Refused input.
    for (req, status, code) in [
        (get("/v1/jobs/j/wait?ranks=0"), 400, "invalid-argument"),
        (get("/v1/jobs/j/wait"), 400, "invalid-argument"),
        (get("/v1/jobs/j/wait?ranks=1&x=2"), 400, "invalid-argument"),
        (
            get("/v1/jobs/bad%2Fname/wait?ranks=1"),
            400,
            "invalid-argument",
        ),
        (post("/v1/jobs/j/wait", b""), 405, "method-not-allowed"),
        (get("/v1/jobs/j/preflight"), 405, "method-not-allowed"),
        (
            post("/v1/jobs/j/preflight", b"{\"bogus\":1}"),
            400,
            "malformed-request",
        ),
        (post("/v1/jobs/nope/preflight", b""), 404, "not-found"),
    ] {
        let (got, body) = raw_http(&d.socket, &req);
        assert_eq!(got, status, "{}: {body}", String::from_utf8_lossy(&req));
        assert!(body.contains(code), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_of_pods_without_their_interfaces_fails_naming_them() {
    if !nix::unistd::Uid::effective().is_root() {
        jobnet_tests::skip(
            "job_readiness::preflight_of_pods_without_their_interfaces_fails_naming_them",
            "needs root (a pod netns)",
        );
        return;
    }
    // Empty pods: the probes find no net1 in them.
    let pod = Pod::new("jrd");
    let netns = pod.path().display().to_string();
    let d = Daemon::start(sysfs(1, 4));
    let c = d.client();
    for r in 0..2 {
        attach(&c, "j", r, &netns).await;
    }
    let req = PreflightRequest {
        timeout_ms: Some(10_000),
        ranks: Some(3),
        ..Default::default()
    };
    let report = c.preflight("j", &req).await.unwrap();
    assert!(!report.ok);
    assert_eq!((report.pairs, report.ranks), (2, 2), "{report:?}");
    assert_eq!(report.nodes, vec!["node-a".to_string()]);
    let lines: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
    for want in [
        "rail 0: rank 0: link: net1 is not in the pod's netns",
        "rail 0: rank 0 -> rank 1: reachability: not probed: net1 is not in the pod's netns",
        "rail 0: rank 1: link: net1 is not in the pod's netns",
        "rail 0: rank 2: attachment: not attached",
    ] {
        assert!(lines.iter().any(|l| l == want), "{want}: {lines:#?}");
    }
    assert!(report
        .failures
        .iter()
        .all(|f| f.check != PreflightCheck::NoResult));

    // jobnetctl: exit 1 with the table, or with the JSON.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jobnetctl"))
        .args(["--socket", &d.socket.display().to_string()])
        .args(["job", "preflight", "j", "--timeout", "10s"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(table.contains("preflight FAILED"), "{table}");
    assert!(
        table.contains("rail 0: rank 1: link: net1 is not in the pod's netns"),
        "{table}"
    );
    let (ok, json, _) = d.ctl(&["--json", "job", "preflight", "j", "--timeout", "10s"]);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["failures"][0]["from_rank"].is_u64(), "{v}");

    let m = metrics(&d);
    assert!(m.contains("jobnet_job_preflight_ok{job=\"j\"} 0"), "{m}");
    assert!(
        m.contains("jobnet_job_preflight_timestamp_seconds{job=\"j\"} 1"),
        "{m}"
    );
}

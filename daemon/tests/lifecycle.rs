//! Reserve, commit, release through the real jobnetd: idempotency, VF
//! ownership, exhaustion, restart, reconciliation and jobnetctl.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use jobnet_api::{
    AttachmentKey, AttachmentState, ErrorCode, GangReserveRequest, GcRequest, Rails, VfState,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn reserve_commit_release_are_idempotent() {
    let d = Daemon::start(sysfs(1, 4));
    let c = d.client();
    rt().block_on(async {
        let req = reserve_req("c1", "job-a", Some(0));
        let a = c.reserve(&req).await.unwrap();
        assert_eq!(a.state, AttachmentState::Reserved);
        assert_eq!(a.node, "node-a");
        assert_eq!(a.vfs.len(), 1);
        // Dual-stack pool: one v4 and one v6 address on rail 0, rank 0 = 2nd usable.
        assert_eq!(a.addresses.len(), 2, "{a:?}");
        assert!(
            a.addresses[0].address.to_string().ends_with(".2/24"),
            "{a:?}"
        );
        assert!(a.addresses[1].address.addr().is_ipv6());
        assert_eq!(a.isolation.mode, jobnet_api::IsolationMode::VfVlan);
        assert!(a.isolation.id.is_some_and(|id| (1000..=1999).contains(&id)));
        // Same key again: same answer, no second VF.
        let again = c.reserve(&req).await.unwrap();
        assert_eq!(again, a);
        // Same key, another job: conflict.
        let mut other = req.clone();
        other.job = "job-b".into();
        assert_eq!(
            c.reserve(&other).await.unwrap_err().code,
            ErrorCode::Conflict
        );

        let committed = c.commit(&a.key()).await.unwrap();
        assert_eq!(committed.state, AttachmentState::Committed);
        assert_eq!(c.commit(&a.key()).await.unwrap(), committed);
        assert_eq!(c.check(&a.key()).await.unwrap(), committed);

        assert!(c.release(&a.key()).await.unwrap().released);
        assert!(!c.release(&a.key()).await.unwrap().released);
        assert_eq!(
            c.check(&a.key()).await.unwrap_err().code,
            ErrorCode::UnknownAttachment
        );
        assert_eq!(
            c.commit(&a.key()).await.unwrap_err().code,
            ErrorCode::UnknownAttachment
        );
        // The VF is free again.
        let vfs = c.vfs().await.unwrap();
        assert!(vfs.iter().all(|v| v.state == VfState::Free), "{vfs:?}");
    });
}

#[test]
fn vf_ownership_device_id_dpdk_and_exhaustion() {
    let s = sysfs(1, 3);
    let pf = "0000:10:00.0";
    let dpdk = FakeSysfs::vf_addr(pf, 2);
    s.set_driver(&dpdk, "vfio-pci");
    let d = Daemon::start(s);
    let c = d.client();
    rt().block_on(async {
        let vf0 = FakeSysfs::vf_addr(pf, 0).parse().unwrap();
        let mut r1 = reserve_req("c1", "j", None);
        r1.device_id = Some(vf0);
        let a1 = c.reserve(&r1).await.unwrap();
        assert_eq!(a1.vfs[0].pci, vf0);
        assert_eq!(a1.vfs[0].vf_index, 0);
        assert_eq!(a1.vfs[0].pf.as_deref(), Some("ens0f0"));
        // Another attachment asking for the same VF: busy (CNI 101).
        let mut r2 = reserve_req("c2", "j", None);
        r2.device_id = Some(vf0);
        let e = c.reserve(&r2).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::DeviceBusy, "{e}");
        assert_eq!(e.cni_code(), 101);
        // Same key with another deviceID: conflict, the recorded VF stays.
        let mut r1b = r1.clone();
        r1b.device_id = Some(FakeSysfs::vf_addr(pf, 1).parse().unwrap());
        assert_eq!(c.reserve(&r1b).await.unwrap_err().code, ErrorCode::Conflict);
        // DPDK VF is never handed out.
        let mut r3 = reserve_req("c3", "j", None);
        r3.device_id = Some(dpdk.parse().unwrap());
        assert_eq!(
            c.reserve(&r3).await.unwrap_err().code,
            ErrorCode::DeviceUnavailable
        );
        // Not a VF of this node.
        let mut r4 = reserve_req("c4", "j", None);
        r4.device_id = Some("0000:99:00.1".parse().unwrap());
        assert_eq!(
            c.reserve(&r4).await.unwrap_err().code,
            ErrorCode::UnknownDevice
        );
        // Daemon-picked: the only free VF is VF 1; then none is left.
        let a5 = c.reserve(&reserve_req("c5", "j", None)).await.unwrap();
        assert_eq!(a5.vfs[0].vf_index, 1);
        let e = c.reserve(&reserve_req("c6", "j", None)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NoFreeDevice, "{e}");
        let vfs = c.vfs().await.unwrap();
        let states: Vec<_> = vfs.iter().map(|v| v.state.clone()).collect();
        assert!(matches!(&states[0], VfState::Owned { owner } if owner.container_id == "c1"));
        assert!(matches!(&states[1], VfState::Owned { owner } if owner.container_id == "c5"));
        assert_eq!(states[2], VfState::Dpdk);
        assert_eq!(vfs[2].driver.as_deref(), Some("vfio-pci"));
        let st = c.status().await.unwrap();
        assert_eq!(st.free_vfs, 0);
        assert_eq!(st.pools[0].total_vfs, 2);
    });
}

#[test]
fn all_rails_gets_one_vf_and_address_per_rail() {
    let opts = Opts {
        pools: r#"
[[pools]]
name = "rails"
cidrs = ["10.50.0.0/16"]
rails = 2
pfs = ["ens0f0", "ens1f0"]
mtu = 4000
"#
        .into(),
        ..Opts::default()
    };
    let d = Daemon::start_with(sysfs(2, 2), opts);
    let c = d.client();
    rt().block_on(async {
        let mut r = reserve_req("c1", "j", Some(3));
        r.rails = Rails::All;
        let a = c.reserve(&r).await.unwrap();
        assert_eq!(a.mtu, Some(4000));
        let rails: Vec<u32> = a.vfs.iter().map(|v| v.rail).collect();
        assert_eq!(rails, vec![0, 1]);
        assert_eq!(a.vfs[1].pf.as_deref(), Some("ens1f0"));
        let arails: Vec<u32> = a.addresses.iter().map(|x| x.rail).collect();
        assert_eq!(arails, vec![0, 1]);
        assert_ne!(a.addresses[0].address, a.addresses[1].address);
        // One rail: any rail with a free VF, address only there.
        let b = c.reserve(&reserve_req("c2", "j", Some(4))).await.unwrap();
        assert_eq!(b.vfs.len(), 1);
        assert_eq!(b.addresses.len(), 1);
        assert_eq!(b.addresses[0].rail, b.vfs[0].rail);
    });
}

#[test]
fn concurrent_reserves_never_share_a_vf_or_address() {
    // 4 PFs x 128 VFs; 500 reserves over 50 jobs of 10 ranks, from 64 tasks, each sent twice.
    let d = Daemon::start(sysfs(4, 128));
    let c = d.client();
    let runtime = rt();
    let atts = runtime.block_on(async {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..500u32 {
            let c = c.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _p = sem.acquire_owned().await.unwrap();
                let req = reserve_req(&format!("c{i}"), &format!("job{}", i % 50), Some(i / 50));
                let a = c.reserve(&req).await.unwrap();
                let b = c.reserve(&req).await.unwrap();
                assert_eq!(a, b, "retry changed the answer");
                a
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    assert_eq!(atts.len(), 500);
    let vfs: HashSet<_> = atts.iter().map(|a| a.vfs[0].pci).collect();
    assert_eq!(vfs.len(), 500, "a VF was handed out twice");
    let addrs: HashSet<_> = atts
        .iter()
        .flat_map(|a| a.addresses.iter().map(|x| x.address.addr()))
        .collect();
    assert_eq!(addrs.len(), 1000, "an address was handed out twice");
    // Rank r of every job has the same host part: rank-deterministic.
    for a in &atts {
        let v4 = a.addresses[0].address.addr().to_string();
        let host: u32 = v4.rsplit('.').next().unwrap().parse().unwrap();
        assert_eq!(host, a.rank.unwrap() + 2, "{a:?}");
    }
    runtime.block_on(async {
        let st = c.status().await.unwrap();
        assert_eq!(st.attachments, 500);
        assert_eq!(st.free_vfs, 12);
        assert_eq!(st.pools[0].jobs, 50);
    });
}

#[test]
fn restart_keeps_state_and_ownership() {
    let mut d = Daemon::start(sysfs(1, 4));
    let runtime = rt();
    let (a, b) = runtime.block_on(async {
        let c = d.client();
        let a = c.reserve(&reserve_req("c1", "j", Some(0))).await.unwrap();
        c.commit(&a.key()).await.unwrap();
        let b = c.reserve(&reserve_req("c2", "j", Some(1))).await.unwrap();
        (a, b)
    });
    assert!(d.stop().success());
    d.spawn();
    let n = runtime.block_on(async {
        let c = d.client();
        let a2 = c.check(&a.key()).await.unwrap();
        assert_eq!(a2.state, AttachmentState::Committed);
        assert_eq!(a2.vfs, a.vfs);
        assert_eq!(a2.addresses, a.addresses);
        assert_eq!(
            c.check(&b.key()).await.unwrap().state,
            AttachmentState::Reserved
        );
        // Ownership survived: the VF of c1 is refused to another attachment.
        let mut r = reserve_req("c3", "j", None);
        r.device_id = Some(a.vfs[0].pci);
        assert_eq!(c.reserve(&r).await.unwrap_err().code, ErrorCode::DeviceBusy);
        // And a new daemon-picked VF is none of the two.
        let n = c.reserve(&reserve_req("c4", "j", None)).await.unwrap();
        assert!(n.vfs[0].pci != a.vfs[0].pci && n.vfs[0].pci != b.vfs[0].pci);
        n
    });
    // SIGKILL: every commit is still there. A reservation not committed
    // yet may be gone (the store takes a reserve to disk with the next
    // durable write, its commit): its commit is then refused as for an
    // expired one, which fails the plugin's ADD with "try again".
    let committed_since = runtime.block_on(async {
        d.client().commit(&n.key()).await.unwrap();
        n
    });
    d.kill();
    d.spawn();
    runtime.block_on(async {
        let c = d.client();
        let left = c.attachments().await.unwrap();
        for k in [a.key(), committed_since.key()] {
            let found = left.iter().find(|x| x.key() == k);
            assert_eq!(
                found.map(|x| x.state),
                Some(AttachmentState::Committed),
                "{k:?} lost: {left:?}"
            );
        }
        match c.commit(&b.key()).await {
            Ok(x) => assert_eq!(x.state, AttachmentState::Committed),
            Err(e) => assert_eq!(e.code, ErrorCode::UnknownAttachment, "{e:?}"),
        }
    });
}

/// A network namespace made with `ip netns add`, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = unique("jnd");
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        Self(name)
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
    fn delete(&self) {
        if std::path::Path::new(&self.path()).exists() {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn reconcile_releases_dead_netns_and_expired_reservations() {
    if !nix::unistd::geteuid().is_root() {
        jobnet_tests::skip(
            "reconcile_releases_dead_netns_and_expired_reservations",
            "needs root for network namespaces",
        );
        return;
    }
    let opts = Opts {
        pools: r#"
[[pools]]
name = "p"
cidrs = ["10.60.0.0/16"]
reservation_timeout_secs = 2
"#
        .into(),
        netns_grace_secs: 0,
        reconcile_interval_secs: 1,
    };
    let d = Daemon::start_with(sysfs(1, 5), opts);
    let live = Netns::new();
    let doomed = Netns::new();
    let runtime = rt();
    let c = d.client();
    runtime.block_on(async {
        for (cid, ns) in [("live", live.path()), ("doomed", doomed.path())] {
            let mut r = reserve_req(cid, "j", None);
            r.netns = ns;
            let a = c.reserve(&r).await.unwrap();
            c.commit(&a.key()).await.unwrap();
        }
        // A runtime whose netns directory is not mounted into jobnetd: not
        // visible is not dead, the attachment must stay.
        let mut invisible = reserve_req("invisible", "j", None);
        invisible.netns = "/jobnet-test-unmounted-runtime/netns/cni-1".into();
        let a = c.reserve(&invisible).await.unwrap();
        c.commit(&a.key()).await.unwrap();
        let mut gone = reserve_req("gone", "j", None);
        gone.netns = "/run/netns/jobnet-test-never-existed".into();
        c.reserve(&gone).await.unwrap();
        let mut uncommitted = reserve_req("late", "j", None);
        uncommitted.netns = live.path();
        c.reserve(&uncommitted).await.unwrap();
    });
    doomed.delete();
    let keys = |c: &jobnet_api::Client| {
        let mut v: Vec<String> = runtime
            .block_on(c.attachments())
            .unwrap()
            .into_iter()
            .map(|a| a.container_id)
            .collect();
        v.sort();
        v
    };
    wait_until("dead netns and expired reservation released", || {
        keys(&c) == vec!["invisible".to_string(), "live".to_string()]
    });
    // Two more passes that saw the invisible netns, and it is still there.
    let seen = |d: &Daemon| d.log().matches("netns paths not visible").count();
    let before = seen(&d);
    wait_until("two more reconciliations", || seen(&d) >= before + 2);
    assert_eq!(keys(&c), vec!["invisible".to_string(), "live".to_string()]);
    // The status counter followed the releases and the expiry.
    let st = runtime.block_on(c.status()).unwrap();
    assert_eq!(st.attachments, 2, "status counts what is recorded");
    let vfs = runtime.block_on(c.vfs()).unwrap();
    let owned = vfs
        .iter()
        .filter(|v| matches!(v.state, VfState::Owned { .. }))
        .count();
    assert_eq!(owned, 2, "{vfs:?}");
    let metrics = http_get_metrics(d.metrics_port);
    assert!(
        metrics.contains("jobnet_reconciled_releases_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jobnet_free_vfs{pool=\"p\"} 3"),
        "{metrics}"
    );
}

fn http_get_metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn gc_releases_everything_not_valid() {
    let opts = Opts {
        netns_grace_secs: 0,
        ..Opts::default()
    };
    let d = Daemon::start_with(sysfs(1, 4), opts);
    let c = d.client();
    rt().block_on(async {
        for (cid, net) in [("a", "n1"), ("b", "n1"), ("c", "n2")] {
            let mut r = reserve_req(cid, "j", None);
            r.network = Some(net.into());
            c.reserve(&r).await.unwrap();
        }
        let r = c
            .gc(&GcRequest {
                valid: vec![AttachmentKey::new("a", "net1")],
                network: Some("n1".into()),
            })
            .await
            .unwrap();
        assert_eq!(r.released, vec![AttachmentKey::new("b", "net1")]);
        let left: Vec<String> = c
            .attachments()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.container_id)
            .collect();
        assert_eq!(left, vec!["a", "c"]);
    });
    // jobnetctl gc without scope: releases c too.
    let (ok, out, err) = d.ctl(&["gc", "--keep", "a/net1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("released 1") && out.contains("c/net1"),
        "{out}"
    );
}

#[test]
fn gang_reserve_and_jobnetctl_match_the_api() {
    let d = Daemon::start(sysfs(1, 8));
    let c = d.client();
    let runtime = rt();
    let atts = runtime.block_on(async {
        let g = c
            .gang_reserve(&GangReserveRequest {
                job: "train".into(),
                ranks: 4,
                pool: None,
            })
            .await
            .unwrap();
        assert_eq!(g.ranks.len(), 4);
        // Reverse order of arrival; ranks still get their gang addresses.
        let mut atts = Vec::new();
        for rank in (0..4u32).rev() {
            let a = c
                .reserve(&reserve_req(&format!("pod{rank}"), "train", Some(rank)))
                .await
                .unwrap();
            assert_eq!(a.addresses, g.ranks[rank as usize].addresses);
            c.commit(&a.key()).await.unwrap();
            atts.push(a);
        }
        c.reserve(&reserve_req("other", "eval", None))
            .await
            .unwrap();
        atts
    });
    // --json output is exactly the API's answer.
    let (ok, out, err) = d.ctl(&["--json", "job", "show", "train"]);
    assert!(ok, "{err}");
    let from_ctl: jobnet_api::JobDetail = serde_json::from_str(&out).unwrap();
    let from_api = runtime.block_on(c.job("train")).unwrap();
    assert_eq!(from_ctl, from_api);
    let ranks: Vec<Option<u32>> = from_api.members.iter().map(|m| m.rank).collect();
    assert_eq!(ranks, vec![Some(0), Some(1), Some(2), Some(3)]);
    // Host file: one line per rank, rank order, the rank's rail-0 address.
    let (ok, out, _) = d.ctl(&["job", "hostfile", "train"]);
    assert!(ok);
    let mut expected: Vec<_> = atts.iter().collect();
    expected.sort_by_key(|a| a.rank);
    let want: String = expected
        .iter()
        .map(|a| format!("{} slots=1\n", a.addresses[0].address.addr()))
        .collect();
    assert_eq!(out, want);
    // Tables carry the same facts.
    let (ok, out, _) = d.ctl(&["jobs"]);
    assert!(ok);
    assert!(
        out.contains("train") && out.contains("eval") && out.contains("vf-vlan:"),
        "{out}"
    );
    let (ok, out, _) = d.ctl(&["job", "show", "train"]);
    assert!(ok);
    for a in &atts {
        assert!(out.contains(&a.addresses[0].address.to_string()), "{out}");
        assert!(out.contains(&a.vfs[0].pci.to_string()), "{out}");
    }
    let (ok, out, _) = d.ctl(&["vfs"]);
    assert!(ok);
    assert!(out.contains("pod0/net1") && out.contains("owned"), "{out}");
    let (ok, out, _) = d.ctl(&["status"]);
    assert!(ok);
    assert!(out.contains("node node-a") && out.contains("3/8"), "{out}");
    let (ok, out, _) = d.ctl(&["--json", "attachments"]);
    assert!(ok);
    let list: Vec<jobnet_api::Attachment> = serde_json::from_str(&out).unwrap();
    assert_eq!(list, runtime.block_on(c.attachments()).unwrap());
    let (ok, _, err) = d.ctl(&["job", "show", "nope"]);
    assert!(!ok && err.contains("not-found"), "{err}");
}

#[test]
fn listings_come_in_bounded_pages() {
    let d = Daemon::start(sysfs(1, 8));
    let runtime = rt();
    let c = d.client();
    runtime.block_on(async {
        for i in 0..7 {
            let r = reserve_req(&format!("p{i}"), &format!("job{}", i % 4), None);
            c.reserve(&r).await.unwrap();
        }
    });
    // Raw pages: 3 + 3 + 1, each token continuing after the last item.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = token.as_ref().map_or(String::new(), |t| {
            format!("&continue={}", jobnet_api::paths::encode_segment(t))
        });
        let req = format!(
            "GET /v1/attachments?limit=3{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = raw_http(&d.socket, req.as_bytes());
        assert_eq!(status, 200, "{body}");
        let page: jobnet_api::Page<jobnet_api::Attachment> = serde_json::from_str(&body).unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|a| a.container_id.clone()));
        pages += 1;
        match page.next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 7, "every attachment once: {seen:?}");
    // The client follows the tokens; jobs page the same way.
    assert_eq!(runtime.block_on(c.attachments()).unwrap().len(), 7);
    let page = runtime
        .block_on(c.jobs_page(&jobnet_api::PageRequest {
            limit: Some(3),
            token: None,
        }))
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert!(page.next.is_some());
    assert_eq!(runtime.block_on(c.jobs()).unwrap().len(), 4);
    // Bad paging input is refused, not guessed at.
    for q in ["limit=0", "limit=x", "limit=3&continue=nonsense", "page=2"] {
        let req =
            format!("GET /v1/attachments?{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, body) = raw_http(&d.socket, req.as_bytes());
        assert_eq!(status, 400, "{q}: {body}");
    }
    // Status counts without scanning, and agrees.
    assert_eq!(runtime.block_on(c.status()).unwrap().attachments, 7);
}

#[test]
fn startup_pass_behind_the_api_releases_what_died_while_jobnetd_was_down() {
    if !nix::unistd::geteuid().is_root() {
        jobnet_tests::skip(
            "startup_pass_behind_the_api_releases_what_died_while_jobnetd_was_down",
            "needs root for network namespaces",
        );
        return;
    }
    // Only the pass at start can release anything: the periodic one is an hour away.
    let opts = Opts {
        netns_grace_secs: 0,
        reconcile_interval_secs: 3600,
        ..Opts::default()
    };
    let mut d = Daemon::start_with(sysfs(1, 4), opts);
    let live = Netns::new();
    let doomed = Netns::new();
    let runtime = rt();
    let (kept, dead) = runtime.block_on(async {
        let c = d.client();
        let mut out = Vec::new();
        for (cid, ns) in [("live", live.path()), ("doomed", doomed.path())] {
            let mut r = reserve_req(cid, "j", None);
            r.netns = ns;
            let a = c.reserve(&r).await.unwrap();
            out.push(c.commit(&a.key()).await.unwrap());
        }
        (out.remove(0), out.remove(0))
    });
    let passes = d.startup_passes();
    assert!(d.stop().success());
    doomed.delete();
    d.spawn();
    let c = d.client();
    d.wait_startup_passes(passes + 1);
    runtime.block_on(async {
        let left: Vec<_> = c
            .attachments()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.key())
            .collect();
        assert_eq!(left, vec![kept.key()]);
        // The dead pod's VF is free again, the live one's still owned.
        let vfs = c.vfs().await.unwrap();
        let state = |pci| vfs.iter().find(|v| v.pci == pci).map(|v| v.state.clone());
        assert!(matches!(state(dead.vfs[0].pci), Some(VfState::Free)));
        assert!(matches!(
            state(kept.vfs[0].pci),
            Some(VfState::Owned { .. })
        ));
        // Its hints are where the pass left them: answered for the live pod.
        c.hints(&kept.key()).await.unwrap();
    });
}

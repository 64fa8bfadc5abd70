//! Many clients at once: no address handed out twice, per-job subnets disjoint, idempotent retries.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ipnet::IpNet;
use jobnet_ipam::Attachment;

const POOLS: &str = r#"
[[pools]]
name = "fabric"
cidrs = ["10.64.0.0/16", "fd00:64::/56"]
subnet_prefix = { v4 = 26, v6 = 64 }
isolation = { mode = "vxlan", first = 5000, last = 5999 }
rails = 2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_reserves_over_fifty_jobs() {
    let fx = common::fixture(POOLS);
    let ipam = Arc::new(fx.ipam);
    let mut tasks = Vec::new();
    // Every request is sent twice at the same time to exercise idempotency under races;
    // half the pods know their rank, half take next-free addresses.
    for i in 0..500u32 {
        for _dup in 0..2 {
            let ipam = Arc::clone(&ipam);
            tasks.push(tokio::spawn(async move {
                let job = format!("job-{}", i % 50);
                let idx = i / 50;
                let rank = (idx % 2 == 0).then_some(idx / 2);
                let r = common::req("fabric", &job, &format!("pod-{i}"), rank);
                let a = ipam.reserve(r).await.unwrap();
                ipam.commit(&a.key).await.unwrap();
                a
            }));
        }
    }
    let mut results: Vec<Attachment> = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let ipam = Arc::into_inner(ipam).unwrap();

    // Duplicate requests got identical answers.
    let mut by_key: HashMap<String, Attachment> = HashMap::new();
    for a in &results {
        if let Some(prev) = by_key.insert(a.key.container_id.clone(), a.clone()) {
            assert_eq!(
                prev.rails, a.rails,
                "retry of {} answered differently",
                a.key
            );
        }
    }
    assert_eq!(by_key.len(), 500);

    let jobs = ipam.jobs(Some("fabric")).await.unwrap();
    assert_eq!(jobs.len(), 50);
    let mut all_subnets: Vec<IpNet> = Vec::new();
    let mut ids = HashSet::new();
    for j in &jobs {
        assert!(ids.insert(j.isolation.unwrap().id), "isolation id reused");
        for r in &j.rails {
            assert_eq!(r.subnets.len(), 2, "dual-stack subnet per rail");
            all_subnets.extend(&r.subnets);
        }
    }
    for (i, a) in all_subnets.iter().enumerate() {
        for b in &all_subnets[i + 1..] {
            assert!(!a.contains(b) && !b.contains(a), "{a} and {b} overlap");
        }
    }
    let job_of: HashMap<&str, _> = jobs.iter().map(|j| (j.job.as_str(), j)).collect();
    let mut seen = HashSet::new();
    for a in by_key.values() {
        let j = job_of[a.job.as_str()];
        assert_eq!(a.rails.len(), 2);
        for ra in &a.rails {
            let rail = &j.rails[usize::from(ra.rail)];
            assert_eq!(ra.ips.len(), 2);
            for ip in &ra.ips {
                assert!(seen.insert(ip.addr()), "{} handed out twice", ip.addr());
                assert!(
                    rail.subnets
                        .iter()
                        .any(|s| s.contains(&ip.addr()) && s.prefix_len() == ip.prefix_len()),
                    "{ip} outside job {} rail {} subnets {:?}",
                    a.job,
                    ra.rail,
                    rail.subnets
                );
            }
            // Rank-deterministic: rank r is the r-th address after the gateway.
            if let Some(rank) = a.rank {
                let v4 = rail.subnets[0];
                let expect = u32::from(match v4.network() {
                    std::net::IpAddr::V4(n) => n,
                    _ => unreachable!(),
                }) + 2
                    + rank;
                assert_eq!(ra.ips[0].addr(), std::net::IpAddr::V4(expect.into()));
            }
        }
    }
    // 500 distinct attachments x 2 rails x 2 families.
    assert_eq!(seen.len(), 2000);
    let all = ipam.attachments(usize::MAX).await.unwrap();
    for a in &all {
        assert_eq!(a.state, jobnet_ipam::AttachmentState::Committed);
    }
    // Counting and paging agree with the full listing.
    assert_eq!(ipam.count_attachments().await.unwrap(), 500);
    assert_eq!(ipam.count_jobs(Some("fabric")).await.unwrap(), 50);
    assert_eq!(ipam.count_jobs(None).await.unwrap(), 50);
    assert_eq!(
        ipam.count_job_attachments("fabric", "job-7").await.unwrap(),
        10
    );
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = ipam.attachments_page(after.as_ref(), 64).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let (commits, txns) = ipam.store().commit_stats();
    assert!(
        commits < txns,
        "group commit folded nothing: {commits} commits for {txns} txns"
    );
}

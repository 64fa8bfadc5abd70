//! Several nodes allocating from one store, as jobnetd on every node of a
//! cluster does: job identity created once whatever the order, ranks held
//! once cluster-wide, unranked addresses from per-node blocks, the job kept
//! until its last member on any node leaves, per-rail VNIs, forgetting a node.
//!
//! Every scenario runs on one embedded store shared by the nodes (fast, no
//! server) and, with the `etcd` feature, on a real etcd member where each
//! node has its own client connection.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::req;
use futures::future::join_all;
use jobnet_ipam::{
    AttachmentKey, GangRequest, Ipam, IpamError, JobNetwork, ManualClock, NodeInfo, Pool,
    RedbStore, Store, BLOCK_SIZE,
};

const T0: u64 = 1_700_000_000_000;

const POOLS: &str = r#"
[[pools]]
name = "rdma"
cidrs = ["198.18.0.0/16"]
subnet_prefix = { v4 = 24 }
isolation = { mode = "vxlan", first = 1000, last = 1999 }
rails = ["r0", "r1"]
grace_period_secs = 60

[[pools]]
name = "small"
cidrs = ["10.7.0.0/24"]
subnet_prefix = { v4 = 27 }
isolation = { mode = "vf-vlan", first = 10, last = 20 }
grace_period_secs = 0
"#;

fn pools() -> Vec<Pool> {
    common::pools(POOLS)
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes one store handle per node, all onto the same data.
trait Backend: Send + Sync {
    type S: Store;
    fn open(&self) -> BoxFut<'_, Self::S>;
}

/// One redb store shared by every node of the test (the dir lives as long as it).
struct Shared(Arc<RedbStore>, #[allow(dead_code)] tempfile::TempDir);

impl Shared {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RedbStore::open(dir.path()).expect("open redb");
        Self(Arc::new(store), dir)
    }
}

impl Backend for Shared {
    type S = Arc<RedbStore>;
    fn open(&self) -> BoxFut<'_, Arc<RedbStore>> {
        Box::pin(async move { self.0.clone() })
    }
}

struct Cluster<B: Backend> {
    backend: B,
    clock: Arc<ManualClock>,
}

impl<B: Backend> Cluster<B> {
    fn new(backend: B) -> Self {
        Self {
            backend,
            clock: Arc::new(ManualClock::new(T0)),
        }
    }

    async fn node(&self, name: &str) -> Ipam<B::S> {
        Ipam::new(self.backend.open().await, pools(), self.clock.clone()).on_node(name)
    }
}

/// What every node must agree on about a job.
fn identity(j: &JobNetwork) -> String {
    let rails: Vec<String> = j
        .rails
        .iter()
        .map(|r| format!("{}:{:?}:{:?}", r.rail, r.subnets, r.isolation.map(|i| i.id)))
        .collect();
    rails.join(" ")
}

async fn job_identity_is_the_same_in_any_order<B: Backend>(c: Cluster<B>) {
    let nodes = [c.node("n0").await, c.node("n1").await, c.node("n2").await];
    let jobs = ["jx", "jy", "jz"];
    // Node i attaches the jobs in its own rotation, all nodes at once.
    let mut tasks = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        tasks.push(async move {
            for k in 0..jobs.len() {
                let job = jobs[(i + k) % jobs.len()];
                let rank = u32::try_from(i).expect("small");
                node.reserve(req("rdma", job, &format!("{job}-{i}"), Some(rank)))
                    .await
                    .unwrap_or_else(|e| panic!("n{i} {job}: {e}"));
            }
        });
    }
    join_all(tasks).await;
    let mut seen_subnets = HashSet::new();
    let mut seen_ids = HashSet::new();
    for job in jobs {
        let views: Vec<String> = join_all(nodes.iter().map(|n| async move {
            let j = n.job("rdma", job).await.expect("read").expect("job exists");
            identity(&j)
        }))
        .await;
        assert!(
            views.iter().all(|v| *v == views[0]),
            "{job}: nodes disagree: {views:#?}"
        );
        let j = nodes[0].job("rdma", job).await.expect("read").expect("job");
        for r in &j.rails {
            for s in &r.subnets {
                assert!(seen_subnets.insert(*s), "{job}: subnet {s} shared");
            }
            let id = r.isolation.expect("vxlan pool isolates").id;
            assert!(seen_ids.insert(id), "{job}: VNI {id} shared");
        }
        // Every rank's attachment is visible from any node, with its node.
        let members = nodes[2]
            .job_attachments("rdma", job)
            .await
            .expect("members");
        let by_rank: BTreeMap<u32, String> = members
            .iter()
            .map(|(n, a)| (a.rank.expect("ranked"), n.clone()))
            .collect();
        let want: BTreeMap<u32, String> = (0..3).map(|i| (i, format!("n{i}"))).collect();
        assert_eq!(by_rank, want, "{job}");
    }
    assert_eq!(seen_ids.len(), 6, "one VNI per rail per job");
}

async fn a_rank_is_held_once_cluster_wide<B: Backend>(c: Cluster<B>) {
    let a = c.node("a").await;
    let b = c.node("b").await;
    let first = a.reserve(req("rdma", "j", "pa", Some(0))).await.expect("a");
    match b.reserve(req("rdma", "j", "pb", Some(0))).await {
        Err(IpamError::RankInUse {
            rank: 0,
            holder,
            node,
        }) => {
            assert_eq!(holder.container_id, "pa");
            assert_eq!(node, "a");
        }
        other => panic!("rank 0 on b while a holds it: {other:?}"),
    }
    a.release(&AttachmentKey::new("pa", "net1"))
        .await
        .expect("release");
    let again = b.reserve(req("rdma", "j", "pb", Some(0))).await.expect("b");
    assert_eq!(first.rails, again.rails, "a rank's address is its rank's");
}

async fn unranked_addresses_come_from_per_node_blocks<B: Backend>(c: Cluster<B>) {
    // /27: 30 usable, gateway .1, so two blocks of 16 (the lower one short).
    let nodes = [c.node("n0").await, c.node("n1").await, c.node("n2").await];
    let mut all = BTreeSet::new();
    let mut per_node: Vec<Vec<IpAddr>> = vec![Vec::new(); 3];
    for round in 0..3 {
        for (i, n) in nodes.iter().enumerate() {
            let a = n
                .reserve(req("small", "u", &format!("u{i}-{round}"), None))
                .await
                .expect("reserve");
            let ip = a.rails[0].ips[0].addr();
            assert!(all.insert(ip), "{ip} given twice");
            per_node[i].push(ip);
        }
    }
    let block_of = |ip: &IpAddr| {
        let IpAddr::V4(v4) = ip else { unreachable!() };
        // Offsets count down from the top usable (.30) in blocks of BLOCK_SIZE.
        (30 - u64::from(v4.octets()[3] % 32)) / BLOCK_SIZE
    };
    let b0: BTreeSet<u64> = per_node[0].iter().map(block_of).collect();
    let b1: BTreeSet<u64> = per_node[1].iter().map(block_of).collect();
    assert_eq!(b0.len(), 1, "node 0 stays in its block: {:?}", per_node[0]);
    assert_eq!(b1.len(), 1, "node 1 stays in its block: {:?}", per_node[1]);
    assert_ne!(b0, b1, "nodes 0 and 1 share a block");
    // Node 2 found no free block (two blocks, two nodes) and borrowed safely.
    assert_eq!(all.len(), 9);
    // Fill the subnet: exactly the allowed addresses, then exhaustion.
    let mut n = 0;
    loop {
        match nodes[n % 3]
            .reserve(req("small", "u", &format!("fill{n}"), None))
            .await
        {
            Ok(a) => assert!(all.insert(a.rails[0].ips[0].addr())),
            Err(IpamError::SubnetExhausted { .. }) => break,
            Err(e) => panic!("{e}"),
        }
        n += 1;
    }
    assert_eq!(all.len(), 29, "30 usable minus the gateway");
}

async fn a_job_lives_until_its_last_member_anywhere_leaves<B: Backend>(c: Cluster<B>) {
    let a = c.node("a").await;
    let b = c.node("b").await;
    let ja = a
        .reserve(req("rdma", "long", "la", Some(0)))
        .await
        .expect("a");
    b.reserve(req("rdma", "long", "lb", Some(1)))
        .await
        .expect("b");
    b.commit(&AttachmentKey::new("lb", "net1"))
        .await
        .expect("commit b");
    a.release(&AttachmentKey::new("la", "net1"))
        .await
        .expect("rel a");
    c.clock.advance_ms(3_600_000);
    a.sweep().await.expect("sweep a");
    b.sweep().await.expect("sweep b");
    let j = a
        .job("rdma", "long")
        .await
        .expect("read")
        .expect("still there");
    assert_eq!(j.draining_since_ms, None, "b still holds a member");
    b.release(&AttachmentKey::new("lb", "net1"))
        .await
        .expect("rel b");
    let j = a
        .job("rdma", "long")
        .await
        .expect("read")
        .expect("in grace");
    assert!(j.draining_since_ms.is_some());
    c.clock.advance_ms(61_000);
    // Any node's sweep may release it; the other finds nothing to do.
    let (ra, rb) = tokio::join!(a.sweep(), b.sweep());
    let released = ra.expect("sweep a").released_jobs + rb.expect("sweep b").released_jobs;
    assert_eq!(released, 1);
    assert!(b.job("rdma", "long").await.expect("read").is_none());
    // The released identity is free again for a new job.
    let again = b
        .reserve(req("rdma", "next", "n0", Some(0)))
        .await
        .expect("new");
    assert_eq!(again.rails.len(), 2);
    assert!(ja.isolation.is_some());
}

async fn gangs_hold_cluster_wide<B: Backend>(c: Cluster<B>) {
    let a = c.node("a").await;
    let b = c.node("b").await;
    let g = a
        .gang_reserve(GangRequest {
            pool: "rdma".into(),
            job: "g".into(),
            world_size: 4,
        })
        .await
        .expect("gang");
    let r2 = b
        .reserve(req("rdma", "g", "g2", Some(2)))
        .await
        .expect("rank 2 on b");
    assert_eq!(r2.rails[0].ips, g.ranks[2].rails[0].ips);
    match b.reserve(req("rdma", "g", "g9", Some(9))).await {
        Err(IpamError::RankOutOfRange { rank: 9, .. }) => {}
        other => panic!("rank beyond the gang: {other:?}"),
    }
    // Unranked addresses stay above the gang's ranks on every node.
    let u = a
        .reserve(req("rdma", "g", "gu", None))
        .await
        .expect("unranked");
    let rank_ips: HashSet<_> = g.ranks.iter().map(|r| r.rails[0].ips[0]).collect();
    assert!(!rank_ips.contains(&u.rails[0].ips[0]));
}

async fn forgetting_a_node_releases_only_its_holdings<B: Backend>(c: Cluster<B>) {
    let a = c.node("a").await;
    let b = c.node("b").await;
    let info = NodeInfo {
        version: "test".into(),
        started_ms: T0,
    };
    a.register_node(&info, Duration::from_secs(5))
        .await
        .expect("register a");
    b.register_node(&info, Duration::from_secs(5))
        .await
        .expect("register b");
    a.reserve(req("rdma", "f", "fa", Some(0))).await.expect("a");
    b.reserve(req("rdma", "f", "fb", Some(1))).await.expect("b");
    let nodes = b.nodes().await.expect("nodes");
    assert_eq!(
        nodes
            .iter()
            .map(|n| (n.node.as_str(), n.attachments))
            .collect::<Vec<_>>(),
        [("a", 1), ("b", 1)]
    );
    match b.forget_node("a", false).await {
        Err(IpamError::NodeAlive(n)) => assert_eq!(n, "a"),
        other => panic!("forgetting a live node: {other:?}"),
    }
    let report = b.forget_node("a", true).await.expect("forget");
    assert_eq!(report.released, [AttachmentKey::new("fa", "net1")]);
    assert!(report.removed);
    let left: Vec<String> = b
        .nodes()
        .await
        .expect("nodes")
        .into_iter()
        .map(|n| n.node)
        .collect();
    assert_eq!(left, ["b"]);
    // Rank 0 is free for another node; b's rank 1 and the job are untouched.
    b.reserve(req("rdma", "f", "fa2", Some(0)))
        .await
        .expect("rank 0 again");
    assert_eq!(
        b.job_attachments("rdma", "f").await.expect("members").len(),
        2
    );
}

macro_rules! on_embedded {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Cluster::new(super::Shared::new())).await;
                }
            )*
        }
    };
}

/// Runs macro `$m` over every scenario, so each backend runs them all.
macro_rules! every_scenario {
    ($m:ident) => {
        $m!(
            job_identity_is_the_same_in_any_order,
            a_rank_is_held_once_cluster_wide,
            unranked_addresses_come_from_per_node_blocks,
            a_job_lives_until_its_last_member_anywhere_leaves,
            gangs_hold_cluster_wide,
            forgetting_a_node_releases_only_its_holdings,
        );
    };
}

every_scenario!(on_embedded);

#[cfg(feature = "etcd")]
mod on_etcd {
    use super::*;
    use jobnet_ipam::{EtcdOptions, EtcdStore};
    use jobnet_tests::etcd::{EtcdCluster, EtcdError, EtcdSpec};

    /// A real one-member etcd; every node connects on its own.
    pub struct Etcd(EtcdCluster);

    impl Backend for Etcd {
        type S = EtcdStore;
        fn open(&self) -> BoxFut<'_, EtcdStore> {
            Box::pin(async move {
                let opts = EtcdOptions {
                    prefix: "/jobnet-test/".into(),
                    timeout: Duration::from_secs(5),
                    ..EtcdOptions::new(self.0.endpoints())
                };
                EtcdStore::connect(opts).await.expect("connect to etcd")
            })
        }
    }

    /// A cluster on etcd; `None` (reported as a skip) when etcd is not installed.
    pub fn etcd(test: &str) -> Option<Cluster<Etcd>> {
        match tokio::task::block_in_place(|| EtcdCluster::start(EtcdSpec::members(1))) {
            Ok(c) => Some(Cluster::new(Etcd(c))),
            Err(e @ EtcdError::Missing(_)) => {
                jobnet_tests::skip(test, &e.to_string());
                None
            }
            Err(e) => panic!("{test}: starting etcd: {e}"),
        }
    }

    macro_rules! on_etcd {
        ($($name:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(c) = etcd(concat!("cluster::on_etcd::", stringify!($name))) {
                        super::$name(c).await;
                    }
                }
            )*
        };
    }

    every_scenario!(on_etcd);
}

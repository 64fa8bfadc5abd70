//! A store written with the first single-node key layout is moved to the
//! cluster layout on start: every attachment, job and claim is kept, and a
//! release afterwards leaves nothing behind.

mod common;

use common::{pools, T0};
use jobnet_ipam::store::{prefix_end, Op, Store, Txn, TxnOutcome};
use jobnet_ipam::{AttachmentKey, Ipam, ManualClock, RedbStore};
use std::sync::Arc;

const POOL: &str = r#"
[[pools]]
name = "rdma"
cidrs = ["198.18.0.0/16"]
subnet_prefix = { v4 = 24 }
gateway = "none"
isolation = { mode = "vxlan", first = 1000, last = 1999 }
grace_period_secs = 0
"#;

/// The keys and values jobnetd 0.1's first layout wrote for one committed
/// attachment (rank 0 of job llama, VNI 1000, subnet index 0).
fn legacy_state() -> Vec<(String, String)> {
    let addr = format!("ip/rdma/llama/0/4/{:016x}", u64::MAX - 1);
    let rows: Vec<(&str, String)> = vec![
        (
            "j/rdma/llama",
            r#"{"isolation_id":1000,"subnets":[{"rail":0,"family":"v4","index":0,"net":"198.18.0.0/24"}],"world_size":0,"draining_since_ms":null,"created_ms":1700000000000}"#.into(),
        ),
        ("s/rdma/4/0000000000000000", r#""llama""#.into()),
        ("i/rdma/000003e8", r#""llama""#.into()),
        ("m/rdma/llama/c1/net1", String::new()),
        ("r/att%2Fc1%2Fnet1", r#"{"node":"n0","netns":"/run/netns/p"}"#.into()),
        (
            "a/c1/net1",
            format!(
                r#"{{"key":{{"container_id":"c1","ifname":"net1"}},"pool":"rdma","job":"llama","rank":0,"isolation":{{"mode":"vxlan","id":1000}},"rails":[{{"rail":0,"rail_name":"rail0","ips":["198.18.0.1/24"],"gateways":[]}}],"state":{{"state":"committed"}},"records":["att/c1/net1"],"created_ms":1700000000000,"addr_keys":["{addr}"]}}"#
            ),
        ),
    ];
    let mut rows: Vec<(String, String)> =
        rows.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    rows.push((
        addr,
        r#"{"key":{"container_id":"c1","ifname":"net1"},"rank":0}"#.into(),
    ));
    rows
}

#[tokio::test]
async fn a_legacy_store_keeps_everything_and_releases_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    let ops = legacy_state()
        .into_iter()
        .map(|(k, v)| Op::Put(k, v.into_bytes()))
        .collect();
    let out = store
        .txn(Txn {
            compares: vec![],
            ops,
        })
        .await
        .unwrap();
    assert!(matches!(out, TxnOutcome::Committed(_)));
    let clock = Arc::new(ManualClock::new(T0));
    let ipam = Ipam::new(store, pools(POOL), clock.clone());

    assert_eq!(ipam.migrate_legacy_layout().await.unwrap(), 7);
    assert_eq!(ipam.migrate_legacy_layout().await.unwrap(), 0, "idempotent");

    let key = AttachmentKey::new("c1", "net1");
    let a = ipam
        .attachment(&key)
        .await
        .unwrap()
        .expect("attachment kept");
    assert_eq!(a.rails[0].ips[0].to_string(), "198.18.0.1/24");
    let j = ipam.job("rdma", "llama").await.unwrap().expect("job kept");
    assert_eq!(j.isolation.map(|i| i.id), Some(1000));
    assert!(ipam.record("att/c1/net1").await.unwrap().is_some());
    assert_eq!(
        ipam.job_attachments("rdma", "llama").await.unwrap().len(),
        1
    );
    // The rank is still held: another attachment cannot take it.
    let taken = ipam
        .reserve(common::req("rdma", "llama", "c2", Some(0)))
        .await;
    assert!(taken.is_err(), "rank 0 still held: {taken:?}");
    // The next new job gets other claims than the migrated one.
    let other = ipam
        .reserve(common::req("rdma", "gpt", "c3", Some(0)))
        .await
        .unwrap();
    assert_ne!(other.isolation.map(|i| i.id), Some(1000));
    assert_ne!(other.rails[0].ips[0].to_string(), "198.18.0.1/24");

    // Releasing everything and sweeping the jobs leaves an empty store.
    ipam.release(&key).await.unwrap().expect("released");
    ipam.release(&AttachmentKey::new("c3", "net1"))
        .await
        .unwrap();
    clock.advance_ms(1);
    ipam.sweep().await.unwrap();
    let left = ipam.store().range("", &prefix_end("~"), 100).await.unwrap();
    let left: Vec<&str> = left
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !k.starts_with("registry/") && !k.starts_with("alive/"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

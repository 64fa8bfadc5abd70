//! Exhaustion, gang reservations, IPv6, timeouts, grace period, durability, records, config.

mod common;

use std::net::IpAddr;

use common::{fixture, req, T0};
use jobnet_ipam::{
    AttachmentKey, AttachmentState, ConfigError, Family, GangRequest, IpamError, Pool, PoolConfig,
    RailSelection, RecordWrite,
};

const SMALL: &str = r#"
[[pools]]
name = "small"
cidrs = ["10.0.0.0/22"]
subnet_prefix = { v4 = 24 }
isolation = { mode = "vf-vlan", first = 100, last = 102 }
grace_period_secs = 60
reservation_timeout_secs = 30

[[pools]]
name = "tiny"
cidrs = ["10.9.0.0/28"]
subnet_prefix = { v4 = 29 }
exclude = ["10.9.0.4"]

[[pools]]
name = "v6"
cidrs = ["fd00:10::/60"]
gateway = "none"
rails = ["mlx5_0", "mlx5_1"]

[[pools]]
name = "dual"
cidrs = ["192.168.0.0/16", "fd00:20::/48"]
subnet_prefix = { v4 = 24, v6 = 64 }
isolation = { mode = "vxlan", first = 10, last = 20 }
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn pool_isolation_and_subnet_exhaustion() {
    let fx = fixture(SMALL);
    // Three isolation IDs but four /24s: the fourth job runs out of IDs first.
    for j in 0..3 {
        let a = fx
            .ipam
            .reserve(req("small", &format!("j{j}"), &format!("c{j}"), None))
            .await
            .unwrap();
        assert_eq!(a.isolation.unwrap().id, 100 + j);
    }
    let e = fx
        .ipam
        .reserve(req("small", "j3", "c3", None))
        .await
        .unwrap_err();
    assert!(
        matches!(e, IpamError::IsolationExhausted(ref p) if p == "small"),
        "{e:?}"
    );
    // A failed carve leaves nothing behind.
    assert!(fx.ipam.job("small", "j3").await.unwrap().is_none());
    assert!(fx
        .ipam
        .attachment(&AttachmentKey::new("c3", "net1"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        fx.ipam.usage("small").await.unwrap().subnets,
        vec![(Family::V4, 3, 4)]
    );

    // /28 into /29s: two job subnets; 10.9.0.4 (excluded) lies in the first.
    let a = fx
        .ipam
        .reserve(req("tiny", "t0", "x0", Some(0)))
        .await
        .unwrap();
    assert_eq!(a.rails[0].ips[0].to_string(), "10.9.0.2/29");
    assert_eq!(a.rails[0].gateways, vec![ip("10.9.0.1")]);
    // Usable .1-.6, gateway .1, .4 excluded: ranks 0..3 are .2 .3 .5 .6.
    let r2 = fx
        .ipam
        .reserve(req("tiny", "t0", "x2", Some(2)))
        .await
        .unwrap();
    assert_eq!(r2.rails[0].ips[0].addr(), ip("10.9.0.5"));
    let e = fx
        .ipam
        .reserve(req("tiny", "t0", "x9", Some(4)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, IpamError::RankOutOfRange { rank: 4, limit: 4 }),
        "{e:?}"
    );
    let n1 = fx
        .ipam
        .reserve(req("tiny", "t0", "n1", None))
        .await
        .unwrap();
    assert_eq!(
        n1.rails[0].ips[0].addr(),
        ip("10.9.0.6"),
        "next-free comes from the top"
    );
    let n2 = fx
        .ipam
        .reserve(req("tiny", "t0", "n2", None))
        .await
        .unwrap();
    assert_eq!(n2.rails[0].ips[0].addr(), ip("10.9.0.3"));
    let e = fx
        .ipam
        .reserve(req("tiny", "t0", "n3", None))
        .await
        .unwrap_err();
    assert!(
        matches!(e, IpamError::SubnetExhausted { rail: 0, .. }),
        "{e:?}"
    );
    // Rank 1's address went to a next-free pod: asking for rank 1 is a clear conflict.
    let e = fx
        .ipam
        .reserve(req("tiny", "t0", "x1", Some(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, IpamError::RankInUse { rank: 1, ref holder, .. } if holder.container_id == "n2"),
        "{e:?}"
    );
    // Second job takes the other /29; third finds the pool exhausted.
    fx.ipam
        .reserve(req("tiny", "t1", "y0", None))
        .await
        .unwrap();
    let e = fx
        .ipam
        .reserve(req("tiny", "t2", "z0", None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            IpamError::PoolExhausted {
                family: Family::V4,
                ..
            }
        ),
        "{e:?}"
    );
    // Same key in another job is refused, same key same job is idempotent.
    let e = fx
        .ipam
        .reserve(req("tiny", "t1", "x0", Some(0)))
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::KeyInUse { .. }), "{e:?}");
    assert_eq!(
        fx.ipam
            .reserve(req("tiny", "t0", "x0", Some(0)))
            .await
            .unwrap(),
        a
    );
}

#[tokio::test]
async fn gang_reserve_is_all_or_nothing() {
    let fx = fixture(SMALL);
    // 300 ranks cannot fit a /24 (253 allowed): error, and no job, subnet or ID is left.
    let e = fx
        .ipam
        .gang_reserve(GangRequest {
            pool: "small".into(),
            job: "big".into(),
            world_size: 300,
        })
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::SubnetExhausted { .. }), "{e:?}");
    assert!(fx.ipam.job("small", "big").await.unwrap().is_none());
    let u = fx.ipam.usage("small").await.unwrap();
    assert_eq!(
        (u.subnets, u.isolation_ids),
        (vec![(Family::V4, 0, 4)], Some((0, 3)))
    );

    let g = fx
        .ipam
        .gang_reserve(GangRequest {
            pool: "small".into(),
            job: "g".into(),
            world_size: 8,
        })
        .await
        .unwrap();
    assert_eq!(g.ranks.len(), 8);
    assert_eq!(g.job.world_size, 8);
    // Ranks that arrive later get exactly the gang's addresses; next-free stays above them.
    for r in [7u32, 0, 3] {
        let a = fx
            .ipam
            .reserve(req("small", "g", &format!("r{r}"), Some(r)))
            .await
            .unwrap();
        assert_eq!(a.rails, g.ranks[r as usize].rails);
    }
    let n = fx
        .ipam
        .reserve(req("small", "g", "free", None))
        .await
        .unwrap();
    let rank_ips: Vec<IpAddr> = g.ranks.iter().map(|r| r.rails[0].ips[0].addr()).collect();
    assert!(!rank_ips.contains(&n.rails[0].ips[0].addr()));
    let e = fx
        .ipam
        .reserve(req("small", "g", "r8", Some(8)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, IpamError::RankOutOfRange { rank: 8, limit: 8 }),
        "{e:?}"
    );

    // Growing the gang over a next-free address in the new rank range fails and changes nothing.
    let tiny = fixture(SMALL);
    tiny.ipam
        .reserve(req("tiny", "t", "a", None))
        .await
        .unwrap(); // takes .6 (rank slot 3)
    let e = tiny
        .ipam
        .gang_reserve(GangRequest {
            pool: "tiny".into(),
            job: "t".into(),
            world_size: 4,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e, IpamError::GangConflict { address, .. } if address == ip("10.9.0.6")),
        "{e:?}"
    );
    assert_eq!(
        tiny.ipam
            .job("tiny", "t")
            .await
            .unwrap()
            .unwrap()
            .world_size,
        0
    );
    let g3 = tiny
        .ipam
        .gang_reserve(GangRequest {
            pool: "tiny".into(),
            job: "t".into(),
            world_size: 3,
        })
        .await
        .unwrap();
    assert_eq!(g3.ranks[2].rails[0].ips[0].addr(), ip("10.9.0.5"));
}

#[tokio::test]
async fn ipv6_and_dual_stack() {
    let fx = fixture(SMALL);
    let mut r = req("v6", "j", "c0", Some(0));
    r.rails = RailSelection::One(1);
    let a = fx.ipam.reserve(r).await.unwrap();
    assert_eq!(a.rails.len(), 1);
    assert_eq!(
        (a.rails[0].rail, a.rails[0].rail_name.as_str()),
        (1, "mlx5_1")
    );
    // No gateway: rank 0 is ::1 of the rail's /64.
    let job = fx.ipam.job("v6", "j").await.unwrap().unwrap();
    let sub = job.rails[1].subnets[0];
    assert_eq!(sub.prefix_len(), 64);
    assert!(sub.contains(&a.rails[0].ips[0].addr()));
    assert!(a.rails[0].gateways.is_empty());
    let expected = u128::from(match sub.network() {
        IpAddr::V6(n) => n,
        _ => unreachable!(),
    }) + 1;
    assert_eq!(a.rails[0].ips[0].addr(), IpAddr::V6(expected.into()));
    let e = fx
        .ipam
        .reserve(ReserveRail::one(req("v6", "j", "c1", None), 2))
        .await
        .unwrap_err();
    assert!(matches!(e, IpamError::UnknownRail { rail: 2, .. }), "{e:?}");

    let d = fx
        .ipam
        .reserve(req("dual", "d", "d0", Some(5)))
        .await
        .unwrap();
    let ips = &d.rails[0].ips;
    assert_eq!(ips.len(), 2);
    assert!(ips[0].addr().is_ipv4() && ips[1].addr().is_ipv6());
    assert_eq!((ips[0].prefix_len(), ips[1].prefix_len()), (24, 64));
    assert_eq!(d.rails[0].gateways.len(), 2);
    let dj = fx.ipam.job("dual", "d").await.unwrap().unwrap();
    assert!(dj.rails[0].subnets[0].contains(&ips[0].addr()));
    assert!(dj.rails[0].subnets[1].contains(&ips[1].addr()));
    // Rank 5 with a gateway at offset 1: offset 7 in both families.
    assert!(ips[0].addr().to_string().ends_with(".7"), "{}", ips[0]);
    assert!(ips[1].addr().to_string().ends_with("::7"), "{}", ips[1]);
}

struct ReserveRail;
impl ReserveRail {
    fn one(mut r: jobnet_ipam::ReserveRequest, rail: u16) -> jobnet_ipam::ReserveRequest {
        r.rails = RailSelection::One(rail);
        r
    }
}

#[tokio::test]
async fn uncommitted_reservation_times_out() {
    let fx = fixture(SMALL);
    let a = fx
        .ipam
        .reserve(req("small", "j", "late", None))
        .await
        .unwrap();
    assert_eq!(
        a.state,
        AttachmentState::Reserved {
            expires_at_ms: T0 + 30_000
        }
    );
    let b = fx
        .ipam
        .reserve(req("small", "j", "ok", None))
        .await
        .unwrap();
    fx.ipam.commit(&b.key).await.unwrap();
    fx.clock.advance_ms(29_999);
    assert_eq!(fx.ipam.sweep().await.unwrap().expired_reservations, 0);
    fx.clock.advance_ms(1);
    assert_eq!(fx.ipam.sweep().await.unwrap().expired_reservations, 1);
    assert!(fx.ipam.attachment(&a.key).await.unwrap().is_none());
    assert!(matches!(
        fx.ipam.commit(&a.key).await,
        Err(IpamError::NotFound(_))
    ));
    assert_eq!(
        fx.ipam.attachment(&b.key).await.unwrap().unwrap().state,
        AttachmentState::Committed
    );
    // The expired address is free again: next-free hands it out once more.
    let c = fx
        .ipam
        .reserve(req("small", "j", "again", None))
        .await
        .unwrap();
    assert_eq!(c.rails[0].ips, a.rails[0].ips);
}

#[tokio::test]
async fn empty_job_released_after_grace_period() {
    let fx = fixture(SMALL);
    let a = fx
        .ipam
        .reserve(req("small", "j", "c0", Some(0)))
        .await
        .unwrap();
    fx.ipam.commit(&a.key).await.unwrap();
    assert_eq!(fx.ipam.release(&a.key).await.unwrap().unwrap().key, a.key);
    assert!(
        fx.ipam.release(&a.key).await.unwrap().is_none(),
        "release is idempotent"
    );
    let draining = fx.ipam.job("small", "j").await.unwrap().unwrap();
    assert_eq!(draining.draining_since_ms, Some(T0));
    // Back within the grace period: same subnet and isolation ID, draining cancelled.
    fx.clock.advance_ms(59_000);
    assert_eq!(fx.ipam.sweep().await.unwrap().released_jobs, 0);
    let b = fx
        .ipam
        .reserve(req("small", "j", "c1", Some(0)))
        .await
        .unwrap();
    assert_eq!(b.rails, a.rails);
    assert_eq!(b.isolation, a.isolation);
    assert_eq!(
        fx.ipam
            .job("small", "j")
            .await
            .unwrap()
            .unwrap()
            .draining_since_ms,
        None
    );
    fx.ipam.release(&b.key).await.unwrap();
    fx.clock.advance_ms(59_999);
    assert_eq!(fx.ipam.sweep().await.unwrap().released_jobs, 0);
    fx.clock.advance_ms(1);
    assert_eq!(fx.ipam.sweep().await.unwrap().released_jobs, 1);
    assert!(fx.ipam.job("small", "j").await.unwrap().is_none());
    let u = fx.ipam.usage("small").await.unwrap();
    assert_eq!(
        (u.subnets, u.isolation_ids),
        (vec![(Family::V4, 0, 4)], Some((0, 3)))
    );
    // A job with a live attachment never drains.
    let c = fx
        .ipam
        .reserve(req("small", "k", "c2", None))
        .await
        .unwrap();
    fx.ipam.commit(&c.key).await.unwrap();
    fx.clock.advance_ms(10 * 60_000);
    assert_eq!(fx.ipam.sweep().await.unwrap(), Default::default());
    assert!(fx.ipam.job("small", "k").await.unwrap().is_some());
}

#[tokio::test]
async fn reopened_store_keeps_committed_state() {
    let fx = fixture(SMALL);
    let mut committed = Vec::new();
    for i in 0..5 {
        let a = fx
            .ipam
            .reserve(req("dual", "d", &format!("c{i}"), Some(i)))
            .await
            .unwrap();
        committed.push(fx.ipam.commit(&a.key).await.unwrap());
    }
    let pending = fx
        .ipam
        .reserve(req("dual", "d", "pending", None))
        .await
        .unwrap();
    let failed = fx.ipam.reserve(req("tiny", "t", "bad", Some(99))).await;
    assert!(failed.is_err());
    let job = fx.ipam.job("dual", "d").await.unwrap().unwrap();

    let fx = fx.reopen();
    for a in &committed {
        assert_eq!(fx.ipam.attachment(&a.key).await.unwrap().as_ref(), Some(a));
    }
    assert_eq!(fx.ipam.job("dual", "d").await.unwrap().unwrap(), job);
    // Failed requests left nothing; the uncommitted reservation is still held until its timeout.
    assert!(fx.ipam.job("tiny", "t").await.unwrap().is_none());
    assert_eq!(
        fx.ipam
            .attachment(&pending.key)
            .await
            .unwrap()
            .unwrap()
            .state,
        pending.state
    );
    fx.clock.advance_ms(120_000);
    assert_eq!(fx.ipam.sweep().await.unwrap().expired_reservations, 1);
    // The reopened allocator knows the job's subnet is taken.
    let other = fx.ipam.reserve(req("dual", "e", "x", None)).await.unwrap();
    let oj = fx.ipam.job("dual", "e").await.unwrap().unwrap();
    assert_ne!(oj.rails[0].subnets, job.rails[0].subnets);
    assert_ne!(oj.isolation, job.isolation);
    let _ = other;
    let (commits, txns) = fx.ipam.store().commit_stats();
    assert!(commits >= 1 && txns >= commits);
}

#[tokio::test]
async fn records_share_the_reservation_transaction() {
    let fx = fixture(SMALL);
    let vf = |owner: &str| RecordWrite {
        key: "vf/0000:3b:00.2".into(),
        value: serde_json::json!({ "owner": owner }),
        if_absent: true,
    };
    let mut r = req("small", "j", "c0", None);
    r.records.push(vf("c0"));
    let a = fx.ipam.reserve(r.clone()).await.unwrap();
    assert_eq!(a.records, vec!["vf/0000:3b:00.2".to_string()]);
    assert_eq!(
        fx.ipam.reserve(r).await.unwrap(),
        a,
        "idempotent despite if_absent"
    );
    let mut r2 = req("small", "j", "c1", None);
    r2.records.push(vf("c1"));
    let e = fx.ipam.reserve(r2).await.unwrap_err();
    assert!(
        matches!(e, IpamError::RecordExists(ref k) if k == "vf/0000:3b:00.2"),
        "{e:?}"
    );
    assert!(fx
        .ipam
        .attachment(&AttachmentKey::new("c1", "net1"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        fx.ipam.record("vf/0000:3b:00.2").await.unwrap(),
        Some(serde_json::json!({ "owner": "c0" }))
    );
    fx.ipam
        .put_records(vec![RecordWrite {
            key: "node/x".into(),
            value: 1.into(),
            if_absent: false,
        }])
        .await
        .unwrap();
    assert_eq!(fx.ipam.records("vf/").await.unwrap().len(), 1);
    fx.ipam.release(&a.key).await.unwrap();
    assert_eq!(fx.ipam.record("vf/0000:3b:00.2").await.unwrap(), None);
    assert_eq!(fx.ipam.record("node/x").await.unwrap(), Some(1.into()));
    fx.ipam
        .delete_records(&["node/x".to_string()])
        .await
        .unwrap();
    assert_eq!(fx.ipam.record("node/x").await.unwrap(), None);
}

#[test]
fn config_validation_errors() {
    let parse = |t: &str| -> Result<Vec<Pool>, ConfigError> {
        #[derive(serde::Deserialize)]
        struct F {
            pools: Vec<PoolConfig>,
        }
        Pool::from_configs(toml::from_str::<F>(t).unwrap().pools)
    };
    let e = parse("[[pools]]\nname='a'\ncidrs=['10.0.0.0/24']\nsubnet_prefix={v4=16}").unwrap_err();
    assert!(
        matches!(e, ConfigError::BadPrefix { prefix: 16, .. }),
        "{e}"
    );
    let e = parse("[[pools]]\nname='a'\ncidrs=['fd00::/48']\nsubnet_prefix={v6=56}").unwrap_err();
    assert!(matches!(e, ConfigError::BadPrefix { min: 64, .. }), "{e}");
    let e = parse("[[pools]]\nname='a'\ncidrs=['10.0.0.1/24']").unwrap_err();
    assert!(matches!(e, ConfigError::HostBits { .. }), "{e}");
    let e = parse("[[pools]]\nname='a'\ncidrs=['10.0.0.0/16','10.0.1.0/24']").unwrap_err();
    assert!(matches!(e, ConfigError::Overlap { .. }), "{e}");
    let e = parse(
        "[[pools]]\nname='a'\ncidrs=['10.0.0.0/16']\nisolation={mode='vf-vlan',first=0,last=5000}",
    )
    .unwrap_err();
    assert!(
        matches!(e, ConfigError::BadIsolationRange { max: 4094, .. }),
        "{e}"
    );
    let e = parse("[[pools]]\nname='a'\ncidrs=['10.0.0.0/16']\nrails=0").unwrap_err();
    assert!(matches!(e, ConfigError::BadRails { .. }), "{e}");
    let e = parse("[[pools]]\nname='a b'\ncidrs=['10.0.0.0/16']").unwrap_err();
    assert!(matches!(e, ConfigError::BadName(_)), "{e}");
    let e = parse(
        "[[pools]]\nname='a'\ncidrs=['10.0.0.0/16']\n[[pools]]\nname='a'\ncidrs=['10.1.0.0/16']",
    )
    .unwrap_err();
    assert_eq!(e, ConfigError::DuplicatePool("a".into()));
    let ok = parse(
        "[[pools]]\nname='a'\ncidrs=['10.0.0.0/8']\nisolation={mode='pkey'}\nrails=['x','y']",
    )
    .unwrap();
    assert_eq!(ok[0].isolation_range(), Some((1, 0x7ffe)));
    assert_eq!(ok[0].subnet_capacity(Family::V4), 65536);
    assert_eq!(ok[0].rail_names(), ["x", "y"]);
}

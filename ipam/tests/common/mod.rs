//! Shared fixtures: a redb store in a temp dir, pools from TOML, a manual clock.
#![allow(dead_code)]

use std::sync::Arc;

use jobnet_ipam::{
    AttachmentKey, Ipam, ManualClock, Pool, PoolConfig, RailSelection, RedbStore, ReserveRequest,
};

pub const T0: u64 = 1_700_000_000_000;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub ipam: Ipam<RedbStore>,
    pub pools: Vec<Pool>,
}

pub fn pools(toml_text: &str) -> Vec<Pool> {
    #[derive(serde::Deserialize)]
    struct File {
        pools: Vec<PoolConfig>,
    }
    let f: File = toml::from_str(toml_text).unwrap();
    Pool::from_configs(f.pools).unwrap()
}

pub fn fixture(toml_text: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let pools = pools(toml_text);
    let store = RedbStore::open(dir.path()).unwrap();
    let ipam = Ipam::new(store, pools.clone(), clock.clone());
    Fixture {
        dir,
        clock,
        ipam,
        pools,
    }
}

impl Fixture {
    /// Drops the allocator and its store, then opens the same state dir again.
    pub fn reopen(self) -> Fixture {
        let Fixture {
            dir,
            clock,
            ipam,
            pools,
        } = self;
        drop(ipam);
        let store = RedbStore::open(dir.path()).unwrap();
        let ipam = Ipam::new(store, pools.clone(), clock.clone());
        Fixture {
            dir,
            clock,
            ipam,
            pools,
        }
    }
}

pub fn req(pool: &str, job: &str, cid: &str, rank: Option<u32>) -> ReserveRequest {
    ReserveRequest {
        pool: pool.into(),
        job: job.into(),
        key: AttachmentKey::new(cid, "net1"),
        rank,
        rails: RailSelection::All,
        records: Vec::new(),
    }
}

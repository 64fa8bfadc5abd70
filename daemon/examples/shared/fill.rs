//! A state dir holding many committed attachments, and the `jobnetd` binary
//! that benchmarks start on it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use jobnet_api::{ReserveRequest, VfAssignment};
use jobnet_daemon::config::Config;
use jobnet_daemon::engine::Engine;
use jobnet_daemon::metrics::Metrics;
use jobnet_hw::PciAddr;
use jobnet_ipam::{RedbStore, SystemClock};

/// A distinct, never-present PCI address per attachment (domain 0x1000 and up).
fn fake_vf(i: usize) -> VfAssignment {
    let pci = PciAddr::new(
        0x1000 + u16::try_from(i >> 16).unwrap_or(0),
        u8::try_from((i >> 8) & 0xff).unwrap_or(0),
        u8::try_from((i >> 3) & 0x1f).unwrap_or(0),
        u8::try_from(i & 7).unwrap_or(0),
    )
    .expect("valid PCI address");
    VfAssignment {
        rail: 0,
        pci,
        pf_pci: pci,
        pf: Some("ens9f0".into()),
        vf_index: u32::try_from(i & 0xff).unwrap_or(0),
        netdev: None,
    }
}

/// Records `attachments` committed attachments spread over `jobs` jobs
/// (ranks in order) in `cfg`'s state dir, through the engine, so the
/// records are exactly what the API writes.
pub async fn fill(cfg: &Config, jobs: usize, attachments: usize) {
    let store = RedbStore::open(&cfg.state_dir).expect("store");
    let engine = Arc::new(
        Engine::start(cfg, store, Arc::new(SystemClock), Arc::new(Metrics::new()))
            .await
            .expect("engine"),
    );
    let jobs = jobs.max(1);
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..256 {
        let engine = engine.clone();
        let next = next.clone();
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= attachments {
                    return;
                }
                let req = ReserveRequest {
                    container_id: format!("c{i:07}"),
                    ifname: "net1".into(),
                    // Always alive, so reconciliation keeps every attachment.
                    netns: "/proc/1/ns/net".into(),
                    job: format!("job{:05}", i % jobs),
                    rank: Some(u32::try_from(i / jobs).unwrap_or(0)),
                    gpus: vec![],
                    device_id: None,
                    rails: Default::default(),
                    pool: None,
                    network: Some("rdma-net".into()),
                };
                engine
                    .import_committed(req, vec![fake_vf(i)])
                    .await
                    .expect("import");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("fill task");
    }
}

/// `given`, else the `jobnetd` built next to this example's directory.
pub fn jobnetd_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("current exe");
        // target/<profile>/examples/<bench> -> target/<profile>/jobnetd
        exe.parent()
            .and_then(Path::parent)
            .map(|d| d.join("jobnetd"))
            .expect("target dir")
    })
}

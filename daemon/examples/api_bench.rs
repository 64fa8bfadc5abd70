//! Reserve+commit throughput and latency through jobnetd's socket, in-process
//! daemon over a fake sysfs with 1024 VFs. Usage: `api_bench [CLIENTS] [ROUNDS]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobnet_api::{Client, ReserveRequest};
use jobnet_daemon::config::Config;
use jobnet_daemon::testing::FakeSysfs;

const PFS: u32 = 8;
const VFS: u32 = 128;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let sys = FakeSysfs::new();
    for i in 0..PFS {
        sys.pf(
            &format!("0000:{:02x}:00.0", 0x10 + i),
            &format!("ens{i}f0"),
            VFS,
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("s.sock");
    let cfg = Config::from_toml(&format!(
        "socket = \"{}\"\nstate_dir = \"{}/state\"\nrun_dir = \"{}/run\"\nsysfs_root = \"{}\"\nmetrics_addr = \"off\"\n\
         [[pools]]\nname = \"p\"\ncidrs = [\"10.0.0.0/8\"]\n",
        socket.display(),
        dir.path().display(),
        dir.path().display(),
        sys.path().display()
    ))
    .expect("config");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(jobnet_daemon::run::run(cfg, async {
        let _ = rx.await;
    }));
    while tokio::net::UnixStream::connect(&socket).await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = Client::new(&socket);
    let total = (PFS * VFS) as usize;
    let mut lat: Vec<Duration> = Vec::new();
    let mut busy = Duration::ZERO;
    for round in 0..rounds {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let c = client.clone();
            let next = next.clone();
            set.spawn(async move {
                let mut l = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return l;
                    }
                    let req = ReserveRequest {
                        container_id: format!("r{round}c{i}"),
                        ifname: "net1".into(),
                        netns: "/proc/self/ns/net".into(),
                        job: format!("job{}", i % 64),
                        rank: Some(u32::try_from(i / 64).unwrap_or(0)),
                        gpus: vec![],
                        device_id: None,
                        rails: Default::default(),
                        pool: None,
                        network: None,
                    };
                    let t = Instant::now();
                    let a = c.reserve(&req).await.expect("reserve");
                    c.commit(&a.key()).await.expect("commit");
                    l.push(t.elapsed());
                }
            });
        }
        while let Some(r) = set.join_next().await {
            lat.extend(r.expect("task"));
        }
        busy += started.elapsed();
        for a in client.attachments().await.expect("list") {
            client.release(&a.key()).await.expect("release");
        }
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "clients={clients} ops={} throughput={:.0}/s p50={:?} p99={:?}",
        lat.len(),
        lat.len() as f64 / busy.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
    let _ = tx.send(());
    let _ = daemon.await;
}

//! Reserve+commit throughput and latency through jobnetd's socket: an
//! in-process daemon (`jobnet_daemon::run::run`, exactly what `jobnetd`
//! runs, hints included) over a fake sysfs with 1024 VFs; clients open one
//! connection per call, as the CNI plugin does.
//!
//! Usage: `api_bench [CLIENTS] [ROUNDS] [engine]` (defaults 64 and 3; with
//! `engine`, the bare attachment engine is served, without the topology and
//! hints layer `jobnetd` puts around it). Each round
//! reserves and commits every VF once (job `i % 64`, rank `i / 64`), then
//! releases everything. Prints one line:
//! `clients=64 ops=3072 throughput=5200/s p50=… p99=… cpu=…% cpu_per_op=…us`
//! where `cpu` is the process's CPU time over the measured wall time (200% = both
//! cores busy; less means other processes had the CPU or the run waited on disk)
//! and `cpu_per_op` that CPU time per reserve+commit (clients included).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobnet_api::{Client, ReserveRequest};
use jobnet_daemon::config::Config;
use jobnet_tests::fake_sysfs::FakeSysfs;

const PFS: u32 = 8;
const VFS: u32 = 128;

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: `ru` is plain old data that getrusage fills.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer for the duration of the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The attachment engine alone behind the API server (no topology checks,
/// no hints files): separates the engine's cost from the layers around it.
async fn serve_engine(cfg: Config, stop: tokio::sync::oneshot::Receiver<()>) {
    let store = jobnet_ipam::RedbStore::open(&cfg.state_dir).expect("store");
    let metrics = Arc::new(jobnet_daemon::metrics::Metrics::new());
    let engine = Arc::new(
        jobnet_daemon::engine::Engine::start(
            &cfg,
            store,
            Arc::new(jobnet_ipam::SystemClock),
            metrics.clone(),
        )
        .await
        .expect("engine"),
    );
    let listener = jobnet_daemon::server::bind(&cfg.socket).expect("bind");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let no_checks = Arc::new(jobnet_daemon::jobcheck::NoJobChecks);
    let serving = tokio::spawn(jobnet_daemon::server::serve(
        listener, engine, no_checks, metrics, rx,
    ));
    let _ = stop.await;
    let _ = tx.send(true);
    let _ = serving.await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let rounds: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let engine_only = args.next().as_deref() == Some("engine");
    let sys = FakeSysfs::new();
    for i in 0..PFS {
        sys.pf(
            &format!("0000:{:02x}:00.0", 0x10 + i),
            &format!("ens{i}f0"),
            VFS,
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The run dir (hints files) is tmpfs in production (/run); here /run is
    // on disk, so use /dev/shm when there is one. State stays on disk: the
    // durability of every answer is part of what is measured.
    let run_dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("run dir");
    let socket = dir.path().join("s.sock");
    let cfg = Config::from_toml(&format!(
        "socket = \"{}\"\nstate_dir = \"{}/state\"\nrun_dir = \"{}\"\nsysfs_root = \"{}\"\nmetrics_addr = \"off\"\n\
         [[pools]]\nname = \"p\"\ncidrs = [\"10.0.0.0/8\"]\n",
        socket.display(),
        dir.path().display(),
        run_dir.path().display(),
        sys.path().display()
    ))
    .expect("config");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = if engine_only {
        tokio::spawn(serve_engine(cfg, stop_rx))
    } else {
        tokio::spawn(async move {
            if let Err(e) = jobnet_daemon::run::run(cfg, async {
                let _ = stop_rx.await;
            })
            .await
            {
                eprintln!("jobnetd: {e}");
            }
        })
    };
    while tokio::net::UnixStream::connect(&socket).await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = Client::new(&socket);
    let total = (PFS * VFS) as usize;
    let mut lat: Vec<Duration> = Vec::new();
    let mut busy = Duration::ZERO;
    let mut cpu = Duration::ZERO;
    for round in 0..rounds {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let cpu_started = cpu_time();
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
        cpu += cpu_time() - cpu_started;
        for a in client.attachments().await.expect("list") {
            client.release(&a.key()).await.expect("release");
        }
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "clients={clients} ops={} throughput={:.0}/s p50={:.2}ms p99={:.2}ms cpu={:.0}% cpu_per_op={:.0}us",
        lat.len(),
        lat.len() as f64 / busy.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        100.0 * cpu.as_secs_f64() / busy.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / lat.len() as f64,
    );
    let _ = stop_tx.send(());
    let _ = daemon.await;
}

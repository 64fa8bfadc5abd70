//! Wiring of the running daemon: store, engine, API socket, metrics,
//! periodic reconciliation and graceful shutdown.

use std::future::Future;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jobnet_ipam::{Clock, EtcdOptions, EtcdStore, EtcdTls, RedbStore, Store, SystemClock};
use tokio::sync::watch;

use crate::config::{Config, MetricsAddr, StoreBackend, StoreConfig};
use crate::engine::{Engine, StartError};
use crate::hints::HintStore;
use crate::hints_handler::TopologyHandler;
use crate::jobcheck::{self, JobChecks};
use crate::metrics::{self, Metrics};
use crate::server::{self, ListenError};
use crate::topology::{NodeTopology, TopologySelector};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A directory could not be created.
    #[error("creating {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The state store could not be opened.
    #[error("opening state in {path}: {message}")]
    Store {
        /// State directory.
        path: String,
        /// What the store said.
        message: String,
    },
    /// The engine could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The API socket could not be set up.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The metrics listener could not be bound.
    #[error("binding metrics on {addr}: {source}")]
    Metrics {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn make_dir(path: &Path, mode: u32) -> Result<(), RunError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|source| RunError::Dir {
            path: path.display().to_string(),
            source,
        })
}

/// How long a node stays "alive" in the cluster store after its jobnetd stops
/// renewing (etcd lease TTL).
pub const NODE_LEASE: Duration = Duration::from_secs(10);

/// The etcd client options of a `[store]` section.
pub fn etcd_options(store: &StoreConfig) -> EtcdOptions {
    let mut prefix = store.prefix.clone();
    if !prefix.ends_with('/') {
        // So that "/jobnet" and "/jobnet2" never see each other's keys.
        prefix.push('/');
    }
    EtcdOptions {
        prefix,
        timeout: Duration::from_millis(store.timeout_ms),
        tls: store.ca_file.as_ref().map(|ca| EtcdTls {
            ca_file: ca.clone(),
            cert_file: store.cert_file.clone(),
            key_file: store.key_file.clone(),
        }),
        ..EtcdOptions::new(store.endpoints.clone())
    }
}

/// Runs jobnetd until `shutdown` resolves, then drains and flushes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    make_dir(&config.state_dir, 0o700)?;
    make_dir(&config.run_dir, 0o755)?;
    match config.store.backend {
        StoreBackend::Embedded => {
            let store = RedbStore::open(&config.state_dir).map_err(|e| RunError::Store {
                path: config.state_dir.display().to_string(),
                message: e.to_string(),
            })?;
            run_with(config, store, shutdown).await
        }
        StoreBackend::Etcd => {
            let store = EtcdStore::connect(etcd_options(&config.store))
                .await
                .map_err(|e| RunError::Store {
                    path: config.store.endpoints.join(","),
                    message: e.to_string(),
                })?;
            tracing::info!(endpoints = ?config.store.endpoints, prefix = %config.store.prefix, "cluster store: etcd");
            run_with(config, store, shutdown).await
        }
    }
}

async fn run_with<S: Store>(
    config: Config,
    store: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new());
    let topo = Arc::new(NodeTopology::from_config(&config));
    let engine = Arc::new(
        Engine::start(&config, store, Arc::new(SystemClock), metrics.clone())
            .await?
            .with_selector(Box::new(TopologySelector::new(topo.clone()))),
    );
    let info = jobnet_ipam::NodeInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_ms: SystemClock.now_ms(),
    };
    match engine.ipam().register_node(&info, NODE_LEASE).await {
        Ok(()) => tracing::info!(node = %engine.node(), "registered in the store"),
        // Liveness is for operators; allocation works without it.
        Err(e) => tracing::warn!(error = %e, "registering the node failed"),
    }
    let pool_rails = config
        .pools
        .iter()
        .map(|p| (p.ipam.name.clone(), p.rail_count()))
        .collect();
    let hints = Arc::new(HintStore::new(&config.run_dir, config.sysfs(), pool_rails));
    let handler = Arc::new(TopologyHandler::new(engine.clone(), topo, hints));
    // Orphaned job bridges go before the API answers (a cheap link scan);
    // the per-attachment passes run behind it, below.
    engine.sweep_bridges().await;
    if let Err(e) = engine.load_counters().await {
        tracing::warn!(error = %e, "counting attachments failed; status counts from zero");
    }
    let listener = server::bind(&config.socket)?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let metrics_task = match config.metrics_addr {
        MetricsAddr::Off => None,
        MetricsAddr::On(addr) => {
            let l = metrics::bind(addr)
                .await
                .map_err(|source| RunError::Metrics {
                    addr: addr.to_string(),
                    source,
                })?;
            let bound = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(addr = %bound, "metrics listening");
            Some(tokio::spawn(metrics::serve(
                l,
                metrics.clone(),
                stop_rx.clone(),
            )))
        }
    };

    let reconcile_task = {
        let engine = engine.clone();
        let handler = handler.clone();
        let mut stop = stop_rx.clone();
        let every = Duration::from_secs(config.reconcile_interval_secs);
        tokio::spawn(async move {
            // The startup pass runs while the API already answers: the VF
            // owners are loaded, so requests are decided exactly as after
            // it, and the pass takes its key locks like every periodic one.
            startup_pass(&engine, &handler).await;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tick.tick() => {}
                }
                match engine.reconcile().await {
                    Ok(r) if r != Default::default() => tracing::info!(
                        expired = r.expired,
                        netns_gone = r.netns_gone,
                        retried_releases = r.retried_releases,
                        jobs_released = r.jobs_released,
                        bridges_removed = r.bridges_removed,
                        netns_unknown = r.netns_unknown,
                        "reconciled"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
                }
                // Topology and hints follow what reconciliation found.
                if let Err(e) = handler.refresh().await {
                    tracing::warn!(error = %e, "refreshing topology and hints failed");
                }
            }
        })
    };

    let default_rails = config
        .pools
        .iter()
        .find(|p| p.ipam.name == config.default_pool_name())
        .map_or(1, |p| p.rail_count());
    let checks = Arc::new(JobChecks::new(
        engine.clone(),
        metrics.clone(),
        (0..u32::from(default_rails)).collect(),
        stop_rx.clone(),
    ));
    let agent_task = tokio::spawn(jobcheck::agent::run(checks.clone()));

    tracing::info!(socket = %config.socket.display(), node = %engine.node(), "jobnetd ready");
    let serving = tokio::spawn(server::serve(
        listener,
        handler.clone(),
        checks.clone(),
        metrics.clone(),
        stop_rx,
    ));
    shutdown.await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    if let Err(e) = serving.await {
        tracing::warn!(error = %e, "API server task failed");
    }
    let _ = reconcile_task.await;
    let _ = agent_task.await;
    drop(checks);
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    let _ = std::fs::remove_file(&config.socket);
    drop(handler);
    // Last reference: dropping the engine closes the store after its pending commits.
    drop(engine);
    tracing::info!("jobnetd stopped");
    Ok(())
}

/// The first reconciliation and hints pass after a start (queued releases,
/// expired reservations, dead netns, hints files a reboot wiped).
async fn startup_pass<S: Store>(engine: &Engine<S>, handler: &TopologyHandler<Engine<S>>) {
    match engine.reconcile().await {
        Ok(r) => tracing::info!(
            expired = r.expired,
            netns_gone = r.netns_gone,
            retried_releases = r.retried_releases,
            jobs_released = r.jobs_released,
            "startup reconciliation done"
        ),
        Err(e) => tracing::warn!(error = %e, "startup reconciliation failed"),
    }
    match handler.refresh().await {
        Ok(r) => tracing::info!(
            written = r.written,
            removed = r.removed,
            "startup hints pass done"
        ),
        Err(e) => tracing::warn!(error = %e, "rebuilding hints failed"),
    }
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed when
/// this is called (inside the runtime), not when the future is first
/// polled: a signal that arrives while the daemon is still starting must
/// stop it cleanly, not kill it with the default action.
pub fn termination_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let streams = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = streams else {
            tracing::warn!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    }
}

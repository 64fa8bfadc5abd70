//! Every node's side of a preflight: looks for requests in the store (one
//! small range read every [`POLL`], or at once when this node posted one),
//! probes its own ranks for each request naming them, posts the result, and
//! removes requests nobody can be waiting for any more. Between requests it
//! refreshes the per-job gauges.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jobnet_ipam::PreflightId;

use super::local::probe_node;
use super::task::Task;
use super::{now_ms, JobChecks, JobSource};

/// How often a node looks for preflight requests.
pub const POLL: Duration = Duration::from_millis(500);
/// How often the per-job gauges are re-read.
const GAUGES_EVERY: Duration = Duration::from_secs(5);
/// Most open requests one look reads.
const MAX_OPEN: usize = 64;
/// How long past its deadline a request stays before any node removes it
/// (its asker died). Generous, so that nodes' clocks need not agree.
const STALE_GRACE_MS: u64 = 600_000;

/// Runs until the checks' stop signal.
pub async fn run<J: JobSource>(checks: Arc<JobChecks<J>>) {
    let mut stop = checks.stop.clone();
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gauges = tokio::time::interval(GAUGES_EVERY);
    gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: HashSet<PreflightId> = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = checks.wake.notified() => {}
            _ = poll.tick() => {}
            _ = gauges.tick() => {
                checks.refresh_gauges().await;
                continue;
            }
        }
        let open = match checks.source.tasks(MAX_OPEN).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "looking for preflight requests");
                continue;
            }
        };
        let present: HashSet<&PreflightId> = open.iter().map(|(id, _)| id).collect();
        seen.retain(|id| present.contains(id));
        let now = now_ms();
        let mut fresh = Vec::new();
        for (id, bytes) in &open {
            if !seen.insert(id.clone()) {
                continue;
            }
            match serde_json::from_slice::<Task>(bytes) {
                Ok(t) if t.stale(now, STALE_GRACE_MS) => {
                    if let Err(e) = checks.source.drop_task(id).await {
                        tracing::debug!(error = %e, "removing a stale preflight request");
                    }
                }
                Ok(t) => fresh.push((id.clone(), t)),
                Err(e) => tracing::warn!(job = %id.job, error = %e, "unreadable preflight request"),
            }
        }
        let me = checks.source.node_name().to_owned();
        for (id, task) in fresh {
            if task.names(&me) {
                tokio::spawn(answer(checks.clone(), id, task));
            }
        }
    }
}

/// Probes this node's ranks for one request and posts the result.
async fn answer<J: JobSource>(checks: Arc<JobChecks<J>>, id: PreflightId, task: Task) {
    let noticed = Instant::now();
    let Ok(_permit) = checks.local_runs.clone().acquire_owned().await else {
        return;
    };
    let until = noticed + Duration::from_millis(task.budget_ms);
    let cut = Arc::new(AtomicBool::new(false));
    let probing = probe_node(checks.source.as_ref(), &task, until, cut.clone());
    tokio::pin!(probing);
    let mut stop = checks.stop.clone();
    let result = tokio::select! {
        r = &mut probing => r,
        _ = stop.changed() => {
            // jobnetd stops: the probe threads end their phases at once.
            cut.store(true, Ordering::Relaxed);
            probing.await
        }
    };
    tracing::info!(job = %task.job, coordinator = %task.coordinator, pairs = result.pairs,
        findings = result.findings.len(), "preflight probes done");
    if let Err(e) = checks.source.post_result(&id, result.encode()).await {
        tracing::warn!(job = %task.job, error = %e, "posting the preflight result failed");
    }
}

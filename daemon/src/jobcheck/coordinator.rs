//! `POST /v1/jobs/{job}/preflight` on the asking node: posts the job's
//! ranks per rail as a request every node's agent picks up, waits for the
//! nodes' results (counting them, reading them once), removes the request
//! and merges what came back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jobnet_api::{ApiError, ErrorCode, PreflightReport, PreflightRequest, MAX_RANKS};
use jobnet_ipam::PreflightId;

use super::merge::{report, Gathered};
use super::probe::random_u64;
use super::readiness::readiness;
use super::roster::roster;
use super::task::{NodeResult, Task};
use super::{now_ms, JobChecks, JobSource, MAX_PREFLIGHTS};
use crate::validate;

/// Deadline when the request names none.
const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Shortest and longest deadlines granted.
const MIN_TIMEOUT_MS: u64 = 2_000;
const MAX_TIMEOUT_MS: u64 = 600_000;
/// Timed requests per pair when the request names none, and the most.
const DEFAULT_SAMPLES: u32 = 8;
const MAX_SAMPLES: u32 = 32;
/// What the nodes leave of the deadline for noticing the request (one poll)
/// and posting their result.
const NOTICE_AND_POST: Duration = Duration::from_millis(1500);
/// Largest request posted: below etcd's default request limit (1.5 MiB)
/// with room for the transaction around it; about 40,000 rank-rails.
const MAX_TASK_BYTES: usize = 1 << 20;
/// Longest pause between counts of the results.
const MAX_COUNT_PAUSE: Duration = Duration::from_millis(200);

impl<J: JobSource> JobChecks<J> {
    /// Checks `job`'s network end to end from every node holding its ranks.
    pub async fn preflight(
        &self,
        job: String,
        req: PreflightRequest,
    ) -> Result<PreflightReport, ApiError> {
        validate::job(&job)?;
        if req.ranks.is_some_and(|n| n == 0 || n > MAX_RANKS) {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!("ranks must be 1-{MAX_RANKS}"),
            ));
        }
        let _permit = self.preflights.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("{MAX_PREFLIGHTS} preflights run on this jobnetd already: try again later"),
            )
        })?;
        let started = Instant::now();
        let timeout = req
            .timeout_ms
            .unwrap_or(DEFAULT_TIMEOUT_MS)
            .clamp(MIN_TIMEOUT_MS, MAX_TIMEOUT_MS);
        let detail = self.source.job_detail(&job).await?.ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("no job {job:?} is recorded"))
        })?;
        let ros = roster(&detail, req.ranks);
        let nodes: BTreeSet<String> = ros.targets.iter().map(|t| t.node.clone()).collect();
        let mut silent = BTreeMap::new();
        match self.source.alive_nodes().await {
            Ok(alive) => {
                for n in nodes.iter().filter(|n| !alive.contains(n)) {
                    silent.insert(n.clone(), "its jobnetd is not alive: not probed".to_owned());
                }
            }
            Err(e) => tracing::debug!(error = %e, "node liveness unknown; asking every node"),
        }
        let asked: BTreeSet<String> = nodes
            .into_iter()
            .filter(|n| !silent.contains_key(n))
            .collect();
        let id = PreflightId {
            pool: detail.summary.pool.clone(),
            job: job.clone(),
            id: format!("{:016x}", random_u64()),
        };
        let mut results = Vec::new();
        if !asked.is_empty() {
            let deadline = started + Duration::from_millis(timeout);
            let mut task = Task::new(&job, self.source.node_name(), &ros.targets);
            task.created_ms = now_ms();
            task.timeout_ms = timeout;
            task.budget_ms = timeout
                .saturating_sub(u64::try_from(NOTICE_AND_POST.as_millis()).unwrap_or(u64::MAX));
            task.samples = req.samples.unwrap_or(DEFAULT_SAMPLES).clamp(1, MAX_SAMPLES);
            task.seed = random_u64();
            let bytes = serde_json::to_vec(&task)
                .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
            if bytes.len() > MAX_TASK_BYTES {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "job {job:?} has too many ranks and rails for one preflight request ({} bytes, at most {MAX_TASK_BYTES})",
                        bytes.len()
                    ),
                ));
            }
            self.source.post_task(&id, bytes).await?;
            self.wake.notify_one();
            results = self.gather(&id, asked.len(), deadline).await;
            if let Err(e) = self.source.drop_task(&id).await {
                tracing::warn!(job = %job, error = %e, "removing the preflight request failed; a later sweep removes it");
            }
        }
        let mut arrived = BTreeSet::new();
        let mut decoded = Vec::new();
        for (node, bytes) in results {
            match serde_json::from_slice::<NodeResult>(&bytes) {
                Ok(r) if asked.contains(&node) => {
                    arrived.insert(node);
                    decoded.push(r);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(node = %node, error = %e, "unreadable preflight result"),
            }
        }
        for n in asked.difference(&arrived) {
            silent.insert(
                n.clone(),
                format!(
                    "no result within {:.0} s",
                    Duration::from_millis(timeout).as_secs_f64()
                ),
            );
        }
        let out = report(Gathered {
            job: &job,
            roster: &ros,
            results: decoded,
            silent,
            seconds: started.elapsed().as_secs_f64(),
        });
        let attached = readiness(Some(&detail), 0, &self.default_rails).attached;
        self.metrics.jobs.ranks(&job, attached, req.ranks);
        self.metrics
            .jobs
            .preflight(&job, out.ok, now_ms() as f64 / 1000.0);
        tracing::info!(job = %job, ok = out.ok, failures = out.failures.len(), pairs = out.pairs,
            seconds = out.seconds, "preflight done");
        Ok(out)
    }

    /// Waits until `want` nodes posted a result or `deadline`, then reads them.
    async fn gather(
        &self,
        id: &PreflightId,
        want: usize,
        deadline: Instant,
    ) -> Vec<(String, Vec<u8>)> {
        let mut pause = Duration::from_millis(20);
        let mut stop = self.stop.clone();
        loop {
            match self.source.count_results(id).await {
                Ok(n) if usize::try_from(n).unwrap_or(usize::MAX) >= want => break,
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "counting preflight results"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause.min(left)) => {}
                _ = stop.changed() => break,
            }
            pause = (pause * 2).min(MAX_COUNT_PAUSE);
        }
        match self.source.results(id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading preflight results failed");
                Vec::new()
            }
        }
    }
}

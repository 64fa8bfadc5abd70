//! Before the GPUs burn: is a job's network ready, and does it work?
//!
//! - `GET /v1/jobs/{job}/wait` ([`JobChecks::wait`], `wait`): answers once
//!   ranks `0..N` are committed on every rail of the job cluster-wide, or at
//!   the deadline with the missing ranks. Waiters wake on this node's
//!   commits and look again with a growing pause for other nodes'.
//! - `POST /v1/jobs/{job}/preflight` ([`JobChecks::preflight`],
//!   `coordinator`): the asking node posts the job's ranks per rail in the
//!   store; every node's [`agent`] notices the request, probes its own
//!   ranks from inside their pods' netns (`local`, [`probe`]) and posts
//!   what it found; the asking node gathers the results into one report
//!   (`merge`).
//! - per-job gauges ([`gauges`]).

pub mod agent;
mod coordinator;
pub mod gauges;
mod local;
mod merge;
mod plan;
pub mod probe;
mod readiness;
pub mod render;
mod roster;
pub mod source;
mod task;
mod wait;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jobnet_api::{
    ApiError, Attachment, AttachmentState, ErrorCode, JobWaitQuery, JobWaitResponse,
    PreflightReport, PreflightRequest,
};
use tokio::sync::{watch, Notify, Semaphore};

use crate::metrics::Metrics;
pub use source::JobSource;

/// Waits open at once; more are refused (`unavailable`), so waiters cannot
/// pile up without bound.
pub const MAX_WAITERS: usize = 256;
/// Preflights this node coordinates at once.
pub const MAX_PREFLIGHTS: usize = 4;
/// Preflights this node probes for at once.
const MAX_LOCAL_RUNS: usize = 2;
/// Jobs whose gauges one refresh reads at most.
const GAUGE_BATCH: usize = 64;

/// The job readiness calls the API server routes, and the commits they
/// hear of.
pub trait JobActions: Send + Sync + 'static {
    /// `GET /v1/jobs/{job}/wait`.
    fn wait(
        &self,
        job: String,
        q: JobWaitQuery,
    ) -> impl Future<Output = Result<JobWaitResponse, ApiError>> + Send;
    /// `POST /v1/jobs/{job}/preflight`.
    fn preflight(
        &self,
        job: String,
        req: PreflightRequest,
    ) -> impl Future<Output = Result<PreflightReport, ApiError>> + Send;
    /// An attachment was committed through this node's API.
    fn committed(&self, att: &Attachment);
}

/// No job checks: both calls answer `not-found` (a server with the engine
/// alone, as benchmarks run it).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoJobChecks;

impl JobActions for NoJobChecks {
    async fn wait(&self, _job: String, _q: JobWaitQuery) -> Result<JobWaitResponse, ApiError> {
        Err(ApiError::new(
            ErrorCode::NotFound,
            "job wait is not served here",
        ))
    }

    async fn preflight(
        &self,
        _job: String,
        _req: PreflightRequest,
    ) -> Result<PreflightReport, ApiError> {
        Err(ApiError::new(
            ErrorCode::NotFound,
            "job preflight is not served here",
        ))
    }

    fn committed(&self, _att: &Attachment) {}
}

/// Job wait, preflight and the per-job gauges of one node.
pub struct JobChecks<J> {
    source: Arc<J>,
    metrics: Arc<Metrics>,
    /// Rails of a job not recorded yet (the default pool's).
    default_rails: Vec<u32>,
    /// Bumped on every commit through this node: wakes the waiters.
    commits: watch::Sender<u64>,
    waiters: Arc<Semaphore>,
    preflights: Arc<Semaphore>,
    local_runs: Arc<Semaphore>,
    /// Wakes this node's agent when this node posted a request.
    wake: Notify,
    stop: watch::Receiver<bool>,
    /// Jobs committed to here since the gauges were last refreshed.
    dirty: Mutex<BTreeSet<String>>,
    /// The last job whose gauges were refreshed: the next refresh goes on
    /// after it, so every job gets its turn.
    gauge_cursor: Mutex<Option<String>>,
}

impl<J> std::fmt::Debug for JobChecks<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobChecks").finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl<J: JobSource> JobChecks<J> {
    /// Job checks over `source`; `default_rails` are the rails of a job
    /// not recorded yet; everything ends when `stop` turns true.
    pub fn new(
        source: Arc<J>,
        metrics: Arc<Metrics>,
        default_rails: Vec<u32>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            source,
            metrics,
            default_rails,
            commits: watch::Sender::new(0),
            waiters: Arc::new(Semaphore::new(MAX_WAITERS)),
            preflights: Arc::new(Semaphore::new(MAX_PREFLIGHTS)),
            local_runs: Arc::new(Semaphore::new(MAX_LOCAL_RUNS)),
            wake: Notify::new(),
            stop,
            dirty: Mutex::new(BTreeSet::new()),
            gauge_cursor: Mutex::new(None),
        }
    }

    /// Re-reads the ranks of the jobs committed to since the last refresh
    /// and of up to [`GAUGE_BATCH`] jobs with gauges, taking turns; drops the
    /// series of jobs that are gone.
    pub async fn refresh_gauges(&self) {
        let dirty: BTreeSet<String> = {
            let mut d = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
            // A burst of new jobs is read over several refreshes.
            let later = d.iter().nth(GAUGE_BATCH).cloned();
            let rest = later.map(|k| d.split_off(&k)).unwrap_or_default();
            std::mem::replace(&mut *d, rest)
        };
        let known = self.metrics.jobs.jobs();
        let cursor = self
            .gauge_cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let split = cursor.map_or(0, |c| known.partition_point(|j| *j <= c));
        let turn: Vec<String> = known[split..]
            .iter()
            .chain(&known[..split])
            .filter(|j| !dirty.contains(*j))
            .take(GAUGE_BATCH)
            .cloned()
            .collect();
        if let Some(last) = turn.last() {
            *self.gauge_cursor.lock().unwrap_or_else(|e| e.into_inner()) = Some(last.clone());
        }
        for job in dirty.into_iter().chain(turn) {
            match self.source.job_detail(&job).await {
                Ok(None) => self.metrics.jobs.forget(&job),
                Ok(Some(d)) => {
                    let r = readiness::readiness(Some(&d), 0, &self.default_rails);
                    let world = self
                        .source
                        .world_size(&d.summary.pool, &job)
                        .await
                        .ok()
                        .flatten();
                    self.metrics.jobs.ranks(&job, r.attached, world);
                }
                Err(e) => tracing::debug!(job = %job, error = %e, "refreshing job gauges"),
            }
        }
    }
}

impl<J: JobSource> JobActions for JobChecks<J> {
    async fn wait(&self, job: String, q: JobWaitQuery) -> Result<JobWaitResponse, ApiError> {
        JobChecks::wait(self, job, q).await
    }

    async fn preflight(
        &self,
        job: String,
        req: PreflightRequest,
    ) -> Result<PreflightReport, ApiError> {
        JobChecks::preflight(self, job, req).await
    }

    fn committed(&self, att: &Attachment) {
        if att.state != AttachmentState::Committed {
            return;
        }
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        if dirty.len() < gauges::MAX_JOBS {
            dirty.insert(att.job.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobnet_api::{AttachmentKey, JobDetail, Page, PageRequest};
    use jobnet_ipam::PreflightId;

    /// A store that knows jobs `j0..jN` (each with no member) and counts reads.
    struct Jobs {
        known: usize,
        reads: Mutex<Vec<String>>,
    }

    fn gone() -> ApiError {
        ApiError::new(ErrorCode::NotFound, "not in this fake")
    }

    impl JobSource for Jobs {
        fn node_name(&self) -> &str {
            "n0"
        }
        async fn job_detail(&self, job: &str) -> Result<Option<JobDetail>, ApiError> {
            self.reads.lock().unwrap().push(job.to_owned());
            let n: usize = job.trim_start_matches('j').parse().unwrap_or(usize::MAX);
            Ok((n < self.known).then(|| roster::tests::detail(1, Vec::new())))
        }
        async fn world_size(&self, _: &str, _: &str) -> Result<Option<u32>, ApiError> {
            Ok(Some(8))
        }
        async fn attachment(&self, _: AttachmentKey) -> Result<Attachment, ApiError> {
            Err(gone())
        }
        async fn local_attachments(&self, _: PageRequest) -> Result<Page<Attachment>, ApiError> {
            Err(gone())
        }
        async fn alive_nodes(&self) -> Result<Vec<String>, ApiError> {
            Err(gone())
        }
        async fn post_task(&self, _: &PreflightId, _: Vec<u8>) -> Result<(), ApiError> {
            Err(gone())
        }
        async fn tasks(&self, _: usize) -> Result<Vec<(PreflightId, Vec<u8>)>, ApiError> {
            Err(gone())
        }
        async fn post_result(&self, _: &PreflightId, _: Vec<u8>) -> Result<(), ApiError> {
            Err(gone())
        }
        async fn count_results(&self, _: &PreflightId) -> Result<u64, ApiError> {
            Err(gone())
        }
        async fn results(&self, _: &PreflightId) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
            Err(gone())
        }
        async fn drop_task(&self, _: &PreflightId) -> Result<(), ApiError> {
            Err(gone())
        }
    }

    #[tokio::test]
    async fn gauges_take_turns_and_go_with_their_job() {
        let source = Arc::new(Jobs {
            known: GAUGE_BATCH * 2,
            reads: Mutex::new(Vec::new()),
        });
        let metrics = Arc::new(Metrics::new());
        let (_tx, rx) = watch::channel(false);
        let checks = JobChecks::new(source.clone(), metrics.clone(), vec![0], rx);
        for i in 0..GAUGE_BATCH * 2 {
            metrics.jobs.ranks(&format!("j{i}"), 0, None);
        }
        checks.refresh_gauges().await;
        checks.refresh_gauges().await;
        let read: BTreeSet<String> = source.reads.lock().unwrap().drain(..).collect();
        assert_eq!(read.len(), GAUGE_BATCH * 2, "two refreshes cover every job");
        // A job the store no longer has loses its series on its turn.
        metrics.jobs.ranks("j999", 0, None);
        for _ in 0..3 {
            checks.refresh_gauges().await;
        }
        assert!(!metrics.jobs.jobs().contains(&"j999".to_string()));
        assert!(metrics
            .encode()
            .contains("jobnet_job_ranks_expected{job=\"j0\"} 8"));
    }
}

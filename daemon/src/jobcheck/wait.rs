//! `GET /v1/jobs/{job}/wait`: a long poll. The server holds the request
//! until the job is ready or the deadline passes; it looks again at once
//! after a commit on this node and, for other nodes' commits, after a pause
//! that doubles up to [`MAX_PAUSE`].

use std::time::{Duration, Instant};

use jobnet_api::{ApiError, ErrorCode, JobWaitQuery, JobWaitResponse, MAX_WAIT_MS};

use super::readiness::{readiness, Readiness};
use super::{JobChecks, JobSource, MAX_WAITERS};
use crate::validate;

/// First pause between looks without a local commit.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause between looks: how late a commit on another node is seen.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// After a local commit, how long to let others of the same burst land
/// before looking (one look per burst, not per commit).
const COALESCE: Duration = Duration::from_millis(20);

fn answer(
    job: &str,
    q: &JobWaitQuery,
    r: Readiness,
    started: Instant,
    granted: u64,
) -> JobWaitResponse {
    JobWaitResponse {
        job: job.to_owned(),
        ready: r.ready,
        ranks: q.ranks,
        rails: r.rails,
        attached: r.attached,
        missing: r.missing,
        missing_total: r.missing_total,
        waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        timeout_ms: granted,
    }
}

fn shutting_down() -> ApiError {
    ApiError::new(ErrorCode::Unavailable, "jobnetd is shutting down")
}

impl<J: JobSource> JobChecks<J> {
    /// Answers once ranks `0..q.ranks` of `job` are committed on every rail,
    /// or at the deadline (capped at [`MAX_WAIT_MS`]) with what is missing.
    pub async fn wait(&self, job: String, q: JobWaitQuery) -> Result<JobWaitResponse, ApiError> {
        validate::job(&job)?;
        let _permit = self.waiters.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("{MAX_WAITERS} waits are open on this jobnetd: try again later"),
            )
        })?;
        let granted = q.timeout_ms.min(MAX_WAIT_MS);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(granted);
        let mut commits = self.commits.subscribe();
        let mut stop = self.stop.clone();
        let mut pause = FIRST_PAUSE;
        let mut last: Result<Readiness, ApiError> = Err(ApiError::new(
            ErrorCode::Timeout,
            "the job could not be read before the deadline",
        ));
        loop {
            commits.borrow_and_update();
            match self.source.job_detail(&job).await {
                Ok(d) => {
                    let r = readiness(d.as_ref(), q.ranks, &self.default_rails);
                    self.metrics.jobs.ranks(&job, r.attached, Some(q.ranks));
                    if r.ready {
                        return Ok(answer(&job, &q, r, started, granted));
                    }
                    last = Ok(r);
                }
                // The store cannot answer now: a wait rides that out.
                Err(e) if e.code == ErrorCode::Unavailable => last = last.or(Err(e)),
                Err(e) => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if *stop.borrow() {
                return Err(shutting_down());
            }
            tokio::select! {
                changed = commits.changed() => {
                    if changed.is_ok() {
                        tokio::time::sleep(COALESCE.min(left)).await;
                    } else {
                        tokio::time::sleep(pause.min(left)).await;
                    }
                }
                _ = tokio::time::sleep(pause.min(left)) => pause = (pause * 2).min(MAX_PAUSE),
                _ = stop.changed() => return Err(shutting_down()),
            }
        }
        last.map(|r| answer(&job, &q, r, started, granted))
    }
}

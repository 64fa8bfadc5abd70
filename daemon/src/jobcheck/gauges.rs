//! Per-job gauges: ranks attached, ranks expected, the last preflight's
//! verdict and time. Only jobs this node has looked at get a series, and at
//! most [`MAX_JOBS`] of them, so a busy cluster cannot grow the exposition
//! without bound.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Most jobs with series at once.
pub const MAX_JOBS: usize = 1024;

/// Label of the per-job gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    /// Job name.
    pub job: String,
}

/// The per-job gauges.
#[derive(Debug, Default)]
pub struct JobGauges {
    attached: Family<JobLabel, Gauge>,
    expected: Family<JobLabel, Gauge>,
    preflight_ok: Family<JobLabel, Gauge>,
    preflight_time: Family<JobLabel, Gauge<f64, AtomicU64>>,
    jobs: Mutex<BTreeSet<String>>,
}

impl JobGauges {
    /// Creates the gauges and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let g = Self::default();
        registry.register(
            "job_ranks_attached",
            "Ranks of the job committed on every rail, cluster-wide",
            g.attached.clone(),
        );
        registry.register(
            "job_ranks_expected",
            "Ranks the job should have (the last wait, else its gang world size)",
            g.expected.clone(),
        );
        registry.register(
            "job_preflight_ok",
            "1 when the job's last preflight passed, 0 when it failed",
            g.preflight_ok.clone(),
        );
        registry.register(
            "job_preflight_timestamp_seconds",
            "When the job's last preflight ended (Unix time)",
            g.preflight_time.clone(),
        );
        g
    }

    /// True when `job` has (or may get) series.
    fn admit(&self, job: &str) -> bool {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.contains(job) {
            return true;
        }
        if jobs.len() >= MAX_JOBS {
            return false;
        }
        jobs.insert(job.to_owned())
    }

    fn label(job: &str) -> JobLabel {
        JobLabel {
            job: job.to_owned(),
        }
    }

    /// Sets the ranks attached (and expected, when known).
    pub fn ranks(&self, job: &str, attached: u32, expected: Option<u32>) {
        if !self.admit(job) {
            return;
        }
        let l = Self::label(job);
        self.attached.get_or_create(&l).set(i64::from(attached));
        if let Some(n) = expected {
            self.expected.get_or_create(&l).set(i64::from(n));
        }
    }

    /// Records a preflight's verdict, ended at `unix_secs`.
    pub fn preflight(&self, job: &str, ok: bool, unix_secs: f64) {
        if !self.admit(job) {
            return;
        }
        let l = Self::label(job);
        self.preflight_ok.get_or_create(&l).set(i64::from(ok));
        self.preflight_time.get_or_create(&l).set(unix_secs);
    }

    /// Drops a job's series (it is gone from the store).
    pub fn forget(&self, job: &str) {
        let l = Self::label(job);
        self.attached.remove(&l);
        self.expected.remove(&l);
        self.preflight_ok.remove(&l);
        self.preflight_time.remove(&l);
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(job);
    }

    /// Jobs with series.
    pub fn jobs(&self) -> Vec<String> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, r).unwrap();
        out
    }

    #[test]
    fn series_appear_per_job_and_go_with_it() {
        let mut r = Registry::with_prefix("jobnet");
        let g = JobGauges::register(&mut r);
        g.ranks("llama", 3, Some(4));
        g.preflight("llama", true, 1_700_000_000.5);
        let t = text(&r);
        assert!(
            t.contains("jobnet_job_ranks_attached{job=\"llama\"} 3"),
            "{t}"
        );
        assert!(
            t.contains("jobnet_job_ranks_expected{job=\"llama\"} 4"),
            "{t}"
        );
        assert!(
            t.contains("jobnet_job_preflight_ok{job=\"llama\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("jobnet_job_preflight_timestamp_seconds{job=\"llama\"} 1700000000.5"),
            "{t}"
        );
        assert_eq!(g.jobs(), vec!["llama".to_string()]);
        g.forget("llama");
        assert!(!text(&r).contains("llama"));
        for i in 0..MAX_JOBS + 5 {
            g.ranks(&format!("j{i}"), 1, None);
        }
        assert_eq!(g.jobs().len(), MAX_JOBS);
    }
}

//! Reconciliation: what a periodic pass puts right (expired reservations,
//! drained jobs, attachments whose netns is gone, releases the store could
//! not take, orphaned job bridges).

use jobnet_api::ApiError;
use jobnet_ipam::Store;

use super::convert::{api_err, to_api_key};
use super::{lock, Engine, PAGE};
use crate::netns;

/// What one reconciliation pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Reservations released because they were not committed in time.
    pub expired: usize,
    /// Jobs whose subnets were released after their grace period.
    pub jobs_released: usize,
    /// Attachments released because their netns no longer exists.
    pub netns_gone: usize,
    /// Releases queued while the store was unavailable that landed now.
    pub retried_releases: usize,
    /// Job bridges and tunnels removed because no attachment uses them.
    pub bridges_removed: usize,
    /// Attachments kept because jobnetd cannot see their netns path (its
    /// directory is not mounted into jobnetd's container).
    pub netns_unknown: usize,
}

impl<S: Store> Engine<S> {
    /// Retries the releases the store could not take; keeps those that fail again.
    async fn retry_queued_releases(&self) -> usize {
        let queued = std::mem::take(&mut *lock(&self.retry_releases));
        let mut landed = 0;
        for key in queued {
            let _g = self.key_locks.lock(key.clone()).await;
            match self.release_locked(&key).await {
                Ok(_) => {
                    landed += 1;
                    tracing::info!(attachment = %key, "queued release landed");
                }
                Err(e) => {
                    tracing::debug!(attachment = %key, error = %e, "queued release still failing");
                    lock(&self.retry_releases).insert(key);
                }
            }
        }
        landed
    }

    /// Removes the node's job bridges and tunnels no attachment uses (`vxlan`
    /// pools); returns how many went.
    pub async fn sweep_bridges(&self) -> usize {
        if !self.has_vxlan {
            return 0;
        }
        match self.isolator.sweep().await {
            Ok(removed) => removed.len(),
            Err(e) => {
                tracing::warn!(error = %e, "sweeping orphaned job bridges failed");
                0
            }
        }
    }

    /// One reconciliation pass: expire reservations and drained jobs, re-read
    /// devices and owners, release attachments whose netns is gone.
    pub async fn reconcile(&self) -> Result<ReconcileReport, ApiError> {
        let mut report = ReconcileReport {
            retried_releases: self.retry_queued_releases().await,
            ..ReconcileReport::default()
        };
        let sweep = self.ipam.sweep().await.map_err(api_err)?;
        report.expired = sweep.expired_reservations;
        self.metrics
            .attachments
            .dec_by(i64::try_from(sweep.expired_reservations).unwrap_or(0));
        report.jobs_released = sweep.released_jobs;
        if let Err(e) = self.rescan() {
            tracing::warn!(error = %e, "device rescan failed; keeping the previous inventory");
        }
        let mut after = None;
        loop {
            let page = self.attachment_page(after.as_ref()).await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(a, _)| a.key.clone());
            for (a, rec) in &page {
                let Some(rec) = rec else { continue };
                if rec.node != self.node || self.in_grace(a) {
                    continue;
                }
                match netns::state(&rec.netns) {
                    netns::NetnsState::Alive => continue,
                    netns::NetnsState::Unknown => {
                        // Not visible from here is not dead: keep it, say so.
                        report.netns_unknown += 1;
                        continue;
                    }
                    netns::NetnsState::Gone => {}
                }
                let key = to_api_key(&a.key);
                let _g = self.key_locks.lock(key.clone()).await;
                if self.release_locked(&key).await?.released {
                    self.metrics.reconciled.inc();
                    tracing::info!(attachment = %key, netns = %rec.netns, "released: netns is gone");
                    report.netns_gone += 1;
                }
            }
            if !full {
                break;
            }
        }
        if report.netns_unknown > 0 {
            tracing::warn!(
                attachments = report.netns_unknown,
                "netns paths not visible to jobnetd: those attachments are kept; mount the runtime's netns directory into jobnetd (deploy/ mounts /run/netns and /var/run/netns)"
            );
        }
        self.reload_owners().await?;
        report.bridges_removed = self.sweep_bridges().await;
        self.update_gauges();
        Ok(report)
    }

    /// Sets the attachment counter from the store: once, before the API
    /// answers. Later it moves only with each reserve, release and expiry; a
    /// recount while requests run would race them (a reserve written before
    /// the count and counted after it is counted twice).
    pub async fn load_counters(&self) -> Result<(), ApiError> {
        let n = self.ipam.count_attachments().await.map_err(api_err)?;
        self.metrics
            .attachments
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        self.update_gauges();
        Ok(())
    }
}

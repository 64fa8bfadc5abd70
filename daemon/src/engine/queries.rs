//! The engine's read-only answers: CHECK, status and the listings.

use jobnet_api::{self as api, ApiError, ErrorCode};
use jobnet_ipam::{self as ipam, Store};

use super::commands::unknown;
use super::convert::{api_err, to_api_key, to_ipam_key};
use super::records::{att_record_key, AttRecord};
use super::views::{job_member, rank_order, vf_info};
use super::{lock, Engine};
use crate::validate;

/// The answer for a `continue` token this API did not give.
fn bad_token(t: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidArgument,
        format!("continue token {t:?} is not one this API gave"),
    )
}

impl<S: Store> Engine<S> {
    /// The recorded attachment, or `unknown-attachment`.
    pub async fn check(&self, key: api::AttachmentKey) -> Result<api::Attachment, ApiError> {
        validate::key(&key)?;
        let att = self
            .ipam
            .attachment(&to_ipam_key(&key))
            .await
            .map_err(api_err)?
            .ok_or_else(|| unknown(&key))?;
        let rec = self.att_record(&key).await?;
        Ok(self.view(&att, rec.as_ref()))
    }

    /// Daemon health and free resources.
    pub async fn status(&self) -> Result<api::StatusResponse, ApiError> {
        let counts = self.vf_counts();
        let mut pools = Vec::new();
        for (name, s) in &self.pools {
            let usage = self.ipam.usage(name).await.map_err(api_err)?;
            let jobs = self.ipam.count_jobs(Some(name)).await.map_err(api_err)?;
            let free_subnets = usage
                .subnets
                .iter()
                .map(|(_, u, t)| t.saturating_sub(*u))
                .min();
            let (total, free) = counts.get(name).copied().unwrap_or((0, 0));
            self.metrics.set_pool(name, free, free_subnets);
            pools.push(api::PoolStatus {
                name: name.clone(),
                isolation: s.isolation,
                rails: u32::from(s.rails),
                total_vfs: total,
                free_vfs: free,
                jobs: u32::try_from(jobs).unwrap_or(u32::MAX),
                free_subnets,
            });
        }
        // A counter the engine maintains (reserve, release, each
        // reconciliation), so status costs no scan of the store.
        let attachments = u64::try_from(self.metrics.attachments.get()).unwrap_or(0);
        Ok(api::StatusResponse {
            node: self.node.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            api_version: api::API_VERSION.to_owned(),
            uptime_secs: self.started.elapsed().as_secs(),
            attachments: u32::try_from(attachments).unwrap_or(u32::MAX),
            free_vfs: pools.iter().map(|p| p.free_vfs).sum(),
            pools,
        })
    }

    /// One page of this node's attachments, as the nearest store replica has
    /// them (answered even while the cluster store has no quorum). The
    /// `continue` token is the last attachment's `containerID/ifname`.
    pub async fn attachments(
        &self,
        page: api::PageRequest,
    ) -> Result<api::Page<api::Attachment>, ApiError> {
        let limit = page.limit();
        let after = match page.token.as_deref() {
            None => None,
            Some(t) => Some(
                t.split_once('/')
                    .map(|(c, i)| ipam::AttachmentKey::new(c, i))
                    .ok_or_else(|| bad_token(t))?,
            ),
        };
        let scope = self.ipam.node().to_owned();
        let atts = self
            .ipam
            .attachments_view_page(after.as_ref(), limit)
            .await
            .map_err(api_err)?;
        let mut items = Vec::with_capacity(atts.len());
        for a in &atts {
            let rec = self
                .ipam
                .record_relaxed_on(&scope, &att_record_key(&to_api_key(&a.key)))
                .await
                .map_err(api_err)?
                .and_then(AttRecord::decode);
            items.push(self.view(a, rec.as_ref()));
        }
        let next = (atts.len() == limit)
            .then(|| {
                atts.last()
                    .map(|a| format!("{}/{}", a.key.container_id, a.key.ifname))
            })
            .flatten();
        Ok(api::Page { items, next })
    }

    /// One page of the jobs known to the store (every node's with etcd). The
    /// `continue` token is the last job's `pool/job`.
    pub async fn jobs(
        &self,
        page: api::PageRequest,
    ) -> Result<api::Page<api::JobSummary>, ApiError> {
        let limit = page.limit();
        let after = match page.token.as_deref() {
            None => None,
            Some(t) => Some(t.split_once('/').ok_or_else(|| bad_token(t))?),
        };
        let jobs = self.ipam.jobs_page(after, limit).await.map_err(api_err)?;
        let mut items = Vec::with_capacity(jobs.len());
        for j in &jobs {
            let n = self
                .ipam
                .count_job_attachments(&j.pool, &j.job)
                .await
                .map_err(api_err)?;
            items.push(self.summary(j, u32::try_from(n).unwrap_or(u32::MAX)));
        }
        let next = (jobs.len() == limit)
            .then(|| jobs.last().map(|j| format!("{}/{}", j.pool, j.job)))
            .flatten();
        Ok(api::Page { items, next })
    }

    /// One job (the first pool that has it) with its members in rank order.
    pub async fn job(&self, name: String) -> Result<api::JobDetail, ApiError> {
        validate::job(&name)?;
        let mut found = None;
        for pool in self.pools.keys() {
            if let Some(j) = self.ipam.job(pool, &name).await.map_err(api_err)? {
                found = Some(j);
                break;
            }
        }
        let j = found.ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("no job {name:?} is recorded"))
        })?;
        let atts = self
            .ipam
            .job_attachments(&j.pool, &j.job)
            .await
            .map_err(api_err)?;
        let mut members = Vec::with_capacity(atts.len());
        for (scope, a) in &atts {
            let key = to_api_key(&a.key);
            let rec = self
                .ipam
                .record_relaxed_on(scope, &att_record_key(&key))
                .await
                .map_err(api_err)?
                .and_then(AttRecord::decode);
            members.push(job_member(key, self.view(a, rec.as_ref())));
        }
        rank_order(&mut members);
        let n = u32::try_from(members.len()).unwrap_or(u32::MAX);
        Ok(api::JobDetail {
            summary: self.summary(&j, n),
            members,
        })
    }

    /// Every VF with its state.
    pub async fn vfs(&self) -> Result<Vec<api::VfInfo>, ApiError> {
        let book = lock(&self.book);
        let inv = book.inventory().clone();
        let mut out: Vec<api::VfInfo> =
            inv.all().map(|e| vf_info(e, book.owner(e.pci()))).collect();
        out.sort_by(|a, b| (&a.pool, a.rail, a.pci).cmp(&(&b.pool, b.rail, b.pci)));
        Ok(out)
    }

    /// The nodes of the store, alive or stale (with the embedded store: this one).
    pub async fn nodes(&self) -> Result<Vec<api::NodeView>, ApiError> {
        let scope = self.ipam.node();
        Ok(self
            .ipam
            .nodes()
            .await
            .map_err(api_err)?
            .into_iter()
            .map(|n| api::NodeView {
                this_node: n.node == scope,
                // The embedded store records its one node as `local`.
                node: if n.node == ipam::LOCAL_NODE && scope == ipam::LOCAL_NODE {
                    self.node.clone()
                } else {
                    n.node
                },
                alive: n.alive,
                version: n.info.as_ref().map(|i| i.version.clone()),
                started_ms: n.info.map(|i| i.started_ms),
                attachments: n.attachments,
            })
            .collect())
    }
}

//! Read-only views, daemon records and pool usage.

use super::*;

impl<S: Store> Ipam<S> {
    /// One attachment.
    pub async fn attachment(&self, key: &AttachmentKey) -> Result<Option<Attachment>, IpamError> {
        self.attachment_on(&self.node, key).await
    }

    /// One attachment that `node` recorded (linearizable: what a decision needs).
    pub async fn attachment_on(
        &self,
        node: &str,
        key: &AttachmentKey,
    ) -> Result<Option<Attachment>, IpamError> {
        let akey = keys::attachment(node, key);
        match self.store.get(&akey).await? {
            None => Ok(None),
            Some(v) => Ok(Some(decode::<StoredAttachment>(&akey, &v)?.att)),
        }
    }

    /// One attachment of this node as the nearest replica has it: answered
    /// without quorum, possibly a moment old (for views and device cleanup).
    pub async fn attachment_relaxed(
        &self,
        key: &AttachmentKey,
    ) -> Result<Option<Attachment>, IpamError> {
        self.attachment_relaxed_on(&self.node, key).await
    }

    /// One attachment as the nearest replica has it (for views).
    async fn attachment_relaxed_on(
        &self,
        node: &str,
        key: &AttachmentKey,
    ) -> Result<Option<Attachment>, IpamError> {
        let akey = keys::attachment(node, key);
        match self.store.get_relaxed(&akey).await? {
            None => Ok(None),
            Some(v) => Ok(Some(decode::<StoredAttachment>(&akey, &v)?.att)),
        }
    }

    /// All attachments of this node (at most `limit`), in key order.
    pub async fn attachments(&self, limit: usize) -> Result<Vec<Attachment>, IpamError> {
        self.attachments_page_on(&self.node, None, limit).await
    }

    /// At most `limit` attachments of this node in key order, starting after `after` (paging).
    pub async fn attachments_page(
        &self,
        after: Option<&AttachmentKey>,
        limit: usize,
    ) -> Result<Vec<Attachment>, IpamError> {
        self.attachments_page_on(&self.node, after, limit).await
    }

    /// At most `limit` attachments that `node` recorded, in key order, after
    /// `after` (linearizable: reconciliation and isolation decide on it).
    pub async fn attachments_page_on(
        &self,
        node: &str,
        after: Option<&AttachmentKey>,
        limit: usize,
    ) -> Result<Vec<Attachment>, IpamError> {
        let p = keys::attachments_prefix(node);
        let start = after.map_or_else(|| p.clone(), |k| key_after(&keys::attachment(node, k)));
        self.store
            .range(&start, &prefix_end(&p), limit)
            .await?
            .iter()
            .map(|(k, v)| decode::<StoredAttachment>(k, v).map(|s| s.att))
            .collect()
    }

    /// [`Ipam::attachments_page`] as the nearest replica has it (listings).
    pub async fn attachments_view_page(
        &self,
        after: Option<&AttachmentKey>,
        limit: usize,
    ) -> Result<Vec<Attachment>, IpamError> {
        let p = keys::attachments_prefix(&self.node);
        let start = after.map_or_else(
            || p.clone(),
            |k| key_after(&keys::attachment(&self.node, k)),
        );
        self.store
            .range_relaxed(&start, &prefix_end(&p), limit)
            .await?
            .iter()
            .map(|(k, v)| decode::<StoredAttachment>(k, v).map(|s| s.att))
            .collect()
    }

    /// Number of this node's attachments (reserved and committed), without reading them.
    pub async fn count_attachments(&self) -> Result<u64, IpamError> {
        let p = keys::attachments_prefix(&self.node);
        Ok(self.store.count_relaxed(&p, &prefix_end(&p)).await?)
    }

    /// Number of job networks of a pool (or of every pool), without reading them.
    pub async fn count_jobs(&self, pool: Option<&str>) -> Result<u64, IpamError> {
        let prefix = match pool {
            Some(p) => keys::job_prefix_of_pool(p),
            None => keys::JOB_PREFIX.to_string(),
        };
        Ok(self
            .store
            .count_relaxed(&prefix, &prefix_end(&prefix))
            .await?)
    }

    /// Number of attachments of one job on every node, without reading them.
    pub async fn count_job_attachments(&self, pool: &str, job: &str) -> Result<u64, IpamError> {
        let mp = keys::members_prefix(pool, job);
        Ok(self.store.count_relaxed(&mp, &prefix_end(&mp)).await?)
    }

    /// The attachments of one job on every node, each with its node.
    pub async fn job_attachments(
        &self,
        pool: &str,
        job: &str,
    ) -> Result<Vec<(String, Attachment)>, IpamError> {
        let mp = keys::members_prefix(pool, job);
        let mut out = Vec::new();
        for (k, _) in self
            .store
            .range_relaxed(&mp, &prefix_end(&mp), usize::MAX)
            .await?
        {
            let Some((node, key)) = k.strip_prefix(&mp).and_then(keys::parse_member_tail) else {
                continue;
            };
            if let Some(a) = self.attachment_relaxed_on(&node, &key).await? {
                out.push((node, a));
            }
        }
        Ok(out)
    }

    /// One job network.
    pub async fn job(&self, pool: &str, job: &str) -> Result<Option<JobNetwork>, IpamError> {
        let rt = self.rt(pool)?;
        let jkey = keys::job(pool, job);
        match self.store.get_relaxed(&jkey).await? {
            None => Ok(None),
            Some(v) => Ok(Some(job_view(&rt.pool, job, &decode(&jkey, &v)?))),
        }
    }

    /// All job networks of a pool (or of every pool).
    pub async fn jobs(&self, pool: Option<&str>) -> Result<Vec<JobNetwork>, IpamError> {
        let prefix = match pool {
            Some(p) => keys::job_prefix_of_pool(p),
            None => keys::JOB_PREFIX.to_string(),
        };
        let mut out = Vec::new();
        for (k, v) in self
            .store
            .range_relaxed(&prefix, &prefix_end(&prefix), usize::MAX)
            .await?
        {
            let Some((p, j)) = keys::parse_job(&k) else {
                continue;
            };
            let Ok(rt) = self.rt(&p) else {
                continue;
            };
            out.push(job_view(&rt.pool, &j, &decode(&k, &v)?));
        }
        Ok(out)
    }

    /// At most `limit` job networks of every pool in key order, after the job
    /// `after` = (pool, job) (paging; as the nearest replica has them).
    pub async fn jobs_page(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<JobNetwork>, IpamError> {
        let p = keys::JOB_PREFIX;
        let start = after.map_or_else(
            || p.to_string(),
            |(pool, job)| key_after(&keys::job(pool, job)),
        );
        let mut out = Vec::new();
        for (k, v) in self
            .store
            .range_relaxed(&start, &prefix_end(p), limit)
            .await?
        {
            let Some((pool, job)) = keys::parse_job(&k) else {
                continue;
            };
            let Ok(rt) = self.rt(&pool) else {
                continue;
            };
            out.push(job_view(&rt.pool, &job, &decode(&k, &v)?));
        }
        Ok(out)
    }

    /// Writes daemon records in one durable transaction (all or nothing).
    pub async fn put_records(&self, writes: Vec<RecordWrite>) -> Result<(), IpamError> {
        let mut txn = Txn::default();
        for w in writes {
            check_len("record key", &w.key, MAX_RECORD_KEY)?;
            let k = keys::record(&self.node, &w.key);
            if w.if_absent {
                txn.compares.push(Compare::Absent(k.clone()));
            }
            txn.ops.push(Op::Put(k, encode(&w.value)));
        }
        match self.store.txn(txn).await? {
            TxnOutcome::Committed(_) => Ok(()),
            TxnOutcome::Conflict(k) => Err(IpamError::RecordExists(
                k.strip_prefix(&keys::records_prefix(&self.node))
                    .and_then(keys::unesc)
                    .unwrap_or(k),
            )),
        }
    }

    /// Deletes daemon records in one durable transaction (absent keys are fine).
    pub async fn delete_records(&self, keys_to_delete: &[String]) -> Result<(), IpamError> {
        let ops = keys_to_delete
            .iter()
            .map(|k| Op::Delete(keys::record(&self.node, k)))
            .collect();
        self.store
            .txn(Txn {
                compares: Vec::new(),
                ops,
            })
            .await?;
        Ok(())
    }

    /// Reads a daemon record of this node.
    pub async fn record(&self, key: &str) -> Result<Option<serde_json::Value>, IpamError> {
        self.record_on(&self.node, key).await
    }

    /// Reads a daemon record that `node` wrote (linearizable).
    pub async fn record_on(
        &self,
        node: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, IpamError> {
        let k = keys::record(node, key);
        match self.store.get(&k).await? {
            None => Ok(None),
            Some(v) => decode(&k, &v).map(Some),
        }
    }

    /// A daemon record that `node` wrote, as the nearest replica has it (views).
    pub async fn record_relaxed_on(
        &self,
        node: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, IpamError> {
        let k = keys::record(node, key);
        match self.store.get_relaxed(&k).await? {
            None => Ok(None),
            Some(v) => decode(&k, &v).map(Some),
        }
    }

    /// Daemon records whose key starts with `prefix`, in key order.
    pub async fn records(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, serde_json::Value)>, IpamError> {
        let p = keys::record(&self.node, prefix);
        let rp = keys::records_prefix(&self.node);
        let mut out = Vec::new();
        for (k, v) in self
            .store
            .range_relaxed(&p, &prefix_end(&p), usize::MAX)
            .await?
        {
            let Some(key) = k.strip_prefix(&rp).and_then(keys::unesc) else {
                continue;
            };
            out.push((key, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// At most `limit` daemon records whose key starts with `prefix`, in key order,
    /// starting after the record key `after` (paging).
    pub async fn records_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, serde_json::Value)>, IpamError> {
        let p = keys::record(&self.node, prefix);
        let rp = keys::records_prefix(&self.node);
        let start = after.map_or_else(|| p.clone(), |a| key_after(&keys::record(&self.node, a)));
        let mut out = Vec::new();
        for (k, v) in self.store.range(&start, &prefix_end(&p), limit).await? {
            let Some(key) = k.strip_prefix(&rp).and_then(keys::unesc) else {
                continue;
            };
            out.push((key, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// How much of a pool is in use.
    pub async fn usage(&self, pool: &str) -> Result<PoolUsage, IpamError> {
        let rt = self.rt(pool)?;
        self.load_index(rt).await?;
        let idx = lock(&rt.index);
        let subnets = rt
            .pool
            .families
            .iter()
            .zip(&idx.subnets)
            .map(|(plan, set)| (plan.family, set.taken.len() as u64, plan.total()))
            .collect();
        let isolation_ids = rt
            .pool
            .isolation_range()
            .map(|(a, b)| (idx.isolation.taken.len() as u64, u64::from(b - a) + 1));
        Ok(PoolUsage {
            pool: pool.to_string(),
            subnets,
            isolation_ids,
        })
    }
}

fn job_view(pool: &Pool, job: &str, rec: &JobRecord) -> JobNetwork {
    let rails = rails_of(rec, RailSelection::All)
        .into_iter()
        .map(|(rail, subnets)| {
            let layouts: Vec<SubnetLayout> = subnets.iter().map(|s| layout_of(pool, s)).collect();
            RailSubnet {
                rail,
                rail_name: rail_name(pool, rail),
                subnets: layouts.iter().map(SubnetLayout::net).collect(),
                gateways: layouts.iter().filter_map(SubnetLayout::gateway).collect(),
                isolation: isolation_on(pool, rec, rail),
            }
        })
        .collect();
    JobNetwork {
        pool: pool.name().to_string(),
        job: job.to_string(),
        isolation: isolation_of(pool, rec),
        rails,
        world_size: rec.world_size,
        draining_since_ms: rec.draining_since_ms,
        created_ms: rec.created_ms,
    }
}

pub(super) fn gang_view(pool: &Pool, job: &str, rec: &JobRecord, world_size: u32) -> Gang {
    let rails = rails_of(rec, RailSelection::All);
    let layouts: Vec<(u16, Vec<SubnetLayout>)> = rails
        .iter()
        .map(|(r, ss)| (*r, ss.iter().map(|s| layout_of(pool, s)).collect()))
        .collect();
    let ranks = (0..world_size)
        .map(|rank| RankAddresses {
            rank,
            rails: layouts
                .iter()
                .map(|(rail, ls)| RailAddresses {
                    rail: *rail,
                    rail_name: rail_name(pool, *rail),
                    ips: ls
                        .iter()
                        .filter_map(|l| l.nth_allowed(u64::from(rank)).map(|o| l.host(o)))
                        .collect(),
                    gateways: ls.iter().filter_map(SubnetLayout::gateway).collect(),
                    isolation: isolation_on(pool, rec, *rail),
                })
                .collect(),
        })
        .collect();
    Gang {
        job: job_view(pool, job, rec),
        ranks,
    }
}

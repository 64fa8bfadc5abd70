//! Commit, release, and the sweep that expires reservations and drains jobs.

use super::*;

impl<S: Store> Ipam<S> {
    /// Commits a reservation. Idempotent; [`IpamError::NotFound`] if it was released or expired.
    pub async fn commit(&self, key: &AttachmentKey) -> Result<Attachment, IpamError> {
        let akey = keys::attachment(&self.node, key);
        // The reservation as this process wrote it, if it did: no read needed.
        let mut remembered = self.take_reservation(key);
        for _ in 0..MAX_ATTEMPTS {
            let (mut st, rev) = match remembered.take() {
                Some(r) => r,
                None => {
                    let v = self
                        .store
                        .get(&akey)
                        .await?
                        .ok_or_else(|| IpamError::NotFound(key.clone()))?;
                    (decode::<StoredAttachment>(&akey, &v)?, v.mod_revision)
                }
            };
            let AttachmentState::Reserved { expires_at_ms } = st.att.state else {
                return Ok(st.att);
            };
            st.att.state = AttachmentState::Committed;
            let txn = Txn {
                compares: vec![Compare::ModRevision(akey.clone(), rev)],
                ops: vec![
                    Op::Put(akey.clone(), encode(&st)),
                    Op::Delete(keys::pending(&self.node, expires_at_ms, key)),
                ],
            };
            if let TxnOutcome::Committed(_) = self.store.txn(txn).await? {
                return Ok(st.att);
            }
        }
        Err(IpamError::Contention)
    }

    /// Releases an attachment (reserved or committed) and the records it owns.
    /// Returns what was released; `None` if there was nothing (idempotent).
    pub async fn release(&self, key: &AttachmentKey) -> Result<Option<Attachment>, IpamError> {
        self.release_if(&self.node, key, |_| true).await
    }

    /// Releases an attachment that `node` recorded: for an operator removing a
    /// node that will not come back (its pods are gone with it).
    pub async fn release_on(
        &self,
        node: &str,
        key: &AttachmentKey,
    ) -> Result<Option<Attachment>, IpamError> {
        self.release_if(node, key, |_| true).await
    }

    async fn release_if(
        &self,
        node: &str,
        key: &AttachmentKey,
        cond: impl Fn(&Attachment) -> bool,
    ) -> Result<Option<Attachment>, IpamError> {
        let akey = keys::attachment(node, key);
        if node == self.node {
            self.take_reservation(key);
        }
        for _ in 0..MAX_ATTEMPTS {
            let Some(v) = self.store.get(&akey).await? else {
                return Ok(None);
            };
            let st: StoredAttachment = decode(&akey, &v)?;
            if !cond(&st.att) {
                return Ok(None);
            }
            let mut ops = vec![
                Op::Delete(akey.clone()),
                Op::Delete(keys::member(&st.att.pool, &st.att.job, node, key)),
            ];
            if let AttachmentState::Reserved { expires_at_ms } = st.att.state {
                ops.push(Op::Delete(keys::pending(node, expires_at_ms, key)));
            }
            ops.extend(st.addr_keys.iter().cloned().map(Op::Delete));
            ops.extend(
                st.att
                    .records
                    .iter()
                    .map(|r| Op::Delete(keys::record(node, r))),
            );
            let txn = Txn {
                compares: vec![Compare::ModRevision(akey.clone(), v.mod_revision)],
                ops,
            };
            if let TxnOutcome::Committed(_) = self.store.txn(txn).await? {
                if let Err(e) = self.after_leave(&st.att.pool, &st.att.job).await {
                    // The release itself is durable; a job left undrained is retried by the sweep.
                    tracing::warn!(pool = %st.att.pool, job = %st.att.job, error = %e, "marking job draining failed");
                }
                return Ok(Some(st.att));
            }
        }
        Err(IpamError::Contention)
    }

    /// Marks the job draining if it has no attachment left.
    async fn after_leave(&self, pool: &str, job: &str) -> Result<(), IpamError> {
        let jkey = keys::job(pool, job);
        let mp = keys::members_prefix(pool, job);
        for _ in 0..MAX_ATTEMPTS {
            if !self.store.range(&mp, &prefix_end(&mp), 1).await?.is_empty() {
                return Ok(());
            }
            let Some(v) = self.store.get(&jkey).await? else {
                return Ok(());
            };
            let mut rec: JobRecord = decode(&jkey, &v)?;
            if rec.draining_since_ms.is_some() {
                return Ok(());
            }
            rec.draining_since_ms = Some(self.clock.now_ms());
            let txn = Txn {
                compares: vec![Compare::ModRevision(jkey.clone(), v.mod_revision)],
                ops: vec![
                    Op::Put(jkey.clone(), encode(&rec)),
                    Op::Put(keys::draining(pool, job), Vec::new()),
                ],
            };
            if let TxnOutcome::Committed(rev) = self.store.txn(txn).await? {
                self.put_cached_job(&jkey, &rec, rev);
                return Ok(());
            }
        }
        Err(IpamError::Contention)
    }

    /// Sweeps with the injected clock's current time (see [`Ipam::expire`]).
    pub async fn sweep(&self) -> Result<SweepReport, IpamError> {
        self.expire(self.clock.now_ms()).await
    }

    /// Releases reservations whose deadline is <= `now_ms` and jobs that have been
    /// empty for their pool's grace period. The daemon calls this periodically.
    pub async fn expire(&self, now_ms: u64) -> Result<SweepReport, IpamError> {
        let mut report = SweepReport::default();
        let pp = keys::pending_prefix(&self.node);
        let end = format!("{pp}{:016x}", now_ms.saturating_add(1));
        let due = self.store.range(&pp, &end, SWEEP_BATCH).await?;
        for (k, _) in due {
            let Some((_, key)) = keys::parse_pending(&self.node, &k) else {
                continue;
            };
            let expired = |a: &Attachment| matches!(a.state, AttachmentState::Reserved { expires_at_ms } if expires_at_ms <= now_ms);
            if self.release_if(&self.node, &key, expired).await?.is_some() {
                report.expired_reservations += 1;
            }
        }
        let dp = keys::DRAINING_PREFIX;
        for (k, _) in self.store.range(dp, &prefix_end(dp), SWEEP_BATCH).await? {
            let Some((pool, job)) = keys::parse_draining(&k) else {
                continue;
            };
            let Ok(rt) = self.rt(&pool) else {
                continue;
            };
            if self.release_job(rt, &job, now_ms).await? {
                report.released_jobs += 1;
            }
        }
        Ok(report)
    }

    /// Deletes a draining job whose grace period is over; undrains it if it has members.
    async fn release_job(&self, rt: &PoolRt, job: &str, now_ms: u64) -> Result<bool, IpamError> {
        let pool = rt.pool.name();
        let jkey = keys::job(pool, job);
        let dkey = keys::draining(pool, job);
        let mp = keys::members_prefix(pool, job);
        for _ in 0..MAX_ATTEMPTS {
            let Some(v) = self.store.get(&jkey).await? else {
                self.store
                    .txn(Txn {
                        compares: vec![Compare::Absent(jkey.clone())],
                        ops: vec![Op::Delete(dkey.clone())],
                    })
                    .await?;
                return Ok(false);
            };
            let mut rec: JobRecord = decode(&jkey, &v)?;
            let Some(since) = rec.draining_since_ms else {
                return Ok(false);
            };
            let has_members = !self.store.range(&mp, &prefix_end(&mp), 1).await?.is_empty();
            let mut txn = Txn {
                compares: vec![Compare::ModRevision(jkey.clone(), v.mod_revision)],
                ops: vec![Op::Delete(dkey.clone())],
            };
            if has_members {
                rec.draining_since_ms = None;
                txn.ops.push(Op::Put(jkey.clone(), encode(&rec)));
            } else if since.saturating_add(rt.pool.grace_ms()) <= now_ms {
                txn.ops.push(Op::Delete(jkey.clone()));
                txn.ops
                    .push(Op::DeletePrefix(keys::job_addrs_prefix(pool, job)));
                txn.ops
                    .push(Op::DeletePrefix(keys::job_blocks_prefix(pool, job)));
                for s in &rec.subnets {
                    txn.ops
                        .push(Op::Delete(keys::subnet(pool, s.family, s.index)));
                }
                for &id in &rec.isolation_ids {
                    txn.ops.push(Op::Delete(keys::isolation(pool, id)));
                }
            } else {
                return Ok(false);
            }
            if let TxnOutcome::Committed(_) = self.store.txn(txn).await? {
                self.forget_job(&jkey);
                if has_members {
                    return Ok(false);
                }
                let mut idx = lock(&rt.index);
                for s in &rec.subnets {
                    if let Some(pi) = rt.pool.families.iter().position(|p| p.family == s.family) {
                        if let Some(set) = idx.subnets.get_mut(pi) {
                            set.taken.remove(&s.index);
                        }
                    }
                }
                for &id in &rec.isolation_ids {
                    idx.isolation.taken.remove(&u64::from(id));
                }
                return Ok(true);
            }
        }
        Err(IpamError::Contention)
    }
}

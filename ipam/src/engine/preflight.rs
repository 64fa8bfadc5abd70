//! The preflight board: a job preflight asked on one node is posted as a
//! request key every node's jobnetd polls for, and each node posts what its
//! probes found under a result key of its own. The values are opaque here
//! (the daemon encodes them); this module only keeps the key layout.

use super::*;

/// One preflight run: which job, and the run's own ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PreflightId {
    /// Pool of the job.
    pub pool: String,
    /// The job.
    pub job: String,
    /// The run (unique per request).
    pub id: String,
}

impl<S: Store> Ipam<S> {
    /// Posts a preflight request (fails with [`IpamError::RecordExists`] if
    /// its ID is taken).
    pub async fn put_preflight(&self, id: &PreflightId, value: Vec<u8>) -> Result<(), IpamError> {
        let k = keys::preflight(&id.pool, &id.job, &id.id);
        let txn = Txn {
            compares: vec![Compare::Absent(k.clone())],
            ops: vec![Op::Put(k.clone(), value)],
        };
        match self.store.txn(txn).await? {
            TxnOutcome::Committed(_) => Ok(()),
            TxnOutcome::Conflict(_) => Err(IpamError::RecordExists(k)),
        }
    }

    /// At most `limit` open preflight requests, as the nearest replica has
    /// them (a poll: a request seen a moment late is fine).
    pub async fn preflights(&self, limit: usize) -> Result<Vec<(PreflightId, Vec<u8>)>, IpamError> {
        let p = keys::PREFLIGHT_PREFIX;
        Ok(self
            .store
            .range_relaxed(p, &prefix_end(p), limit)
            .await?
            .into_iter()
            .filter_map(|(k, v)| {
                let (pool, job, id) = keys::parse_preflight(&k)?;
                Some((PreflightId { pool, job, id }, v.value))
            })
            .collect())
    }

    /// Posts (or replaces) what `node` found for a preflight.
    pub async fn put_preflight_result(
        &self,
        id: &PreflightId,
        node: &str,
        value: Vec<u8>,
    ) -> Result<(), IpamError> {
        let k = keys::preflight_result(&id.pool, &id.job, &id.id, node);
        self.store
            .txn(Txn {
                compares: Vec::new(),
                ops: vec![Op::Put(k, value)],
            })
            .await?;
        Ok(())
    }

    /// How many nodes posted a result, without reading them.
    pub async fn count_preflight_results(&self, id: &PreflightId) -> Result<u64, IpamError> {
        let p = keys::preflight_results_prefix(&id.pool, &id.job, &id.id);
        Ok(self.store.count_relaxed(&p, &prefix_end(&p)).await?)
    }

    /// Every node's result of a preflight, by node (at most `limit`).
    pub async fn preflight_results(
        &self,
        id: &PreflightId,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, IpamError> {
        let p = keys::preflight_results_prefix(&id.pool, &id.job, &id.id);
        Ok(self
            .store
            .range_relaxed(&p, &prefix_end(&p), limit)
            .await?
            .into_iter()
            .filter_map(|(k, v)| Some((keys::unesc(k.strip_prefix(&p)?)?, v.value)))
            .collect())
    }

    /// Removes a preflight request and its results (absent keys are fine).
    pub async fn delete_preflight(&self, id: &PreflightId) -> Result<(), IpamError> {
        self.store
            .txn(Txn {
                compares: Vec::new(),
                ops: vec![
                    Op::Delete(keys::preflight(&id.pool, &id.job, &id.id)),
                    Op::DeletePrefix(keys::preflight_results_prefix(&id.pool, &id.job, &id.id)),
                ],
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RedbStore;
    use crate::ManualClock;

    #[tokio::test]
    async fn requests_and_results_live_apart_and_go_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let ipam = Ipam::new(store, Vec::new(), Arc::new(ManualClock::new(0)));
        let id = PreflightId {
            pool: "p".into(),
            job: "j/1".into(),
            id: "abc".into(),
        };
        ipam.put_preflight(&id, b"req".to_vec()).await.unwrap();
        assert!(ipam.put_preflight(&id, b"again".to_vec()).await.is_err());
        ipam.put_preflight_result(&id, "n1", b"r1".to_vec())
            .await
            .unwrap();
        ipam.put_preflight_result(&id, "n/2", b"r2".to_vec())
            .await
            .unwrap();
        assert_eq!(
            ipam.preflights(10).await.unwrap(),
            vec![(id.clone(), b"req".to_vec())]
        );
        assert_eq!(ipam.count_preflight_results(&id).await.unwrap(), 2);
        let mut got = ipam.preflight_results(&id, 10).await.unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("n/2".to_string(), b"r2".to_vec()),
                ("n1".to_string(), b"r1".to_vec())
            ]
        );
        ipam.delete_preflight(&id).await.unwrap();
        assert!(ipam.preflights(10).await.unwrap().is_empty());
        assert_eq!(ipam.count_preflight_results(&id).await.unwrap(), 0);
    }
}

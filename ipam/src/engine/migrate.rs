//! Moving an embedded store written by jobnet 0.1's first layout (single-node
//! keys such as `a/<cid>/<ifname>`, `j/<pool>/<job>`) to the cluster layout
//! of [`crate::keys`], so an upgraded jobnetd keeps every attachment.

use super::*;

/// Keys moved per transaction; each batch moves whole keys (put new, delete
/// old), so a crash between batches leaves a store the next start finishes.
const MIGRATE_BATCH: usize = 2048;

/// Legacy prefixes and where their keys go (the node scope is the embedded
/// store's own, [`LOCAL_NODE`]).
fn legacy_target(key: &str) -> Option<String> {
    let local = |rest: &str, kind: &str| format!("{}{kind}/{rest}", keys::node_prefix(LOCAL_NODE));
    let (head, rest) = key.split_once('/')?;
    Some(match head {
        "a" => local(rest, "attachments"),
        "p" => local(rest, "pending"),
        "r" => local(rest, "records"),
        "j" => format!("{}{rest}", keys::JOB_PREFIX),
        "d" => format!("{}{rest}", keys::DRAINING_PREFIX),
        "ip" => format!("addrs/{rest}"),
        "s" => format!("{}{rest}", keys::SUBNET_INDEX_PREFIX),
        "i" => format!("{}{rest}", keys::ID_INDEX_PREFIX),
        "m" => {
            // m/<pool>/<job>/<cid>/<ifname> -> members/<pool>/<job>/local/<cid>/<ifname>
            let mut parts = rest.splitn(3, '/');
            let (pool, job, tail) = (parts.next()?, parts.next()?, parts.next()?);
            format!("members/{pool}/{job}/{}/{tail}", keys::esc(LOCAL_NODE))
        }
        _ => return None,
    })
}

/// A legacy job record named one isolation ID; the cluster layout lists them.
fn upgrade_job(value: &[u8]) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(value) else {
        return value.to_vec();
    };
    if let Some(obj) = v.as_object_mut() {
        if let Some(id) = obj.remove("isolation_id") {
            let ids = if id.is_null() { vec![] } else { vec![id] };
            obj.insert("isolation_ids".into(), serde_json::Value::Array(ids));
        }
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| value.to_vec())
}

/// A legacy attachment lists the legacy keys of its addresses.
fn upgrade_attachment(value: &[u8]) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(value) else {
        return value.to_vec();
    };
    if let Some(keys) = v.get_mut("addr_keys").and_then(|k| k.as_array_mut()) {
        for k in keys.iter_mut() {
            if let Some(new) = k.as_str().and_then(legacy_target) {
                *k = serde_json::Value::String(new);
            }
        }
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| value.to_vec())
}

impl<S: Store> Ipam<S> {
    /// Moves keys of the first single-node layout to the current one; returns
    /// how many keys moved (0 for a store that never had them).
    pub async fn migrate_legacy_layout(&self) -> Result<usize, IpamError> {
        let mut moved = 0;
        let mut conflicts = 0;
        for head in ["a/", "p/", "r/", "j/", "d/", "ip/", "s/", "i/", "m/"] {
            loop {
                let page = self
                    .store
                    .range(head, &prefix_end(head), MIGRATE_BATCH)
                    .await?;
                if page.is_empty() {
                    break;
                }
                let mut txn = Txn::default();
                for (k, v) in &page {
                    let Some(target) = legacy_target(k) else {
                        continue;
                    };
                    let value = match head {
                        "j/" => upgrade_job(&v.value),
                        "a/" => upgrade_attachment(&v.value),
                        _ => v.value.clone(),
                    };
                    txn.compares
                        .push(Compare::ModRevision(k.clone(), v.mod_revision));
                    txn.ops.push(Op::Put(target, value));
                    txn.ops.push(Op::Delete(k.clone()));
                }
                if txn.ops.is_empty() {
                    break;
                }
                match self.store.txn(txn).await? {
                    TxnOutcome::Committed(_) => moved += page.len(),
                    // Nothing else writes while jobnetd starts; a conflict means
                    // another process shares the store: give up rather than loop.
                    TxnOutcome::Conflict(_) if conflicts < MAX_ATTEMPTS => conflicts += 1,
                    TxnOutcome::Conflict(_) => return Err(IpamError::Contention),
                }
            }
        }
        if moved > 0 {
            tracing::info!(keys = moved, "moved the store to the cluster key layout");
            for rt in self.pools.values() {
                lock(&rt.index).loaded = false;
            }
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_keys_map_into_the_cluster_layout() {
        let cases = [
            ("a/c1/net1", "nodes/local/attachments/c1/net1"),
            (
                "p/0000000000000001/c1/net1",
                "nodes/local/pending/0000000000000001/c1/net1",
            ),
            (
                "r/vf%2Fn%2F0000:03:00.2",
                "nodes/local/records/vf%2Fn%2F0000:03:00.2",
            ),
            ("j/rdma/llama", "jobs/rdma/llama"),
            ("d/rdma/llama", "draining/rdma/llama"),
            ("ip/rdma/llama/0/4/ffff", "addrs/rdma/llama/0/4/ffff"),
            (
                "s/rdma/4/0000000000000003",
                "index/subnets/rdma/4/0000000000000003",
            ),
            ("i/rdma/000003e8", "index/ids/rdma/000003e8"),
            ("m/rdma/llama/c1/net1", "members/rdma/llama/local/c1/net1"),
        ];
        for (old, new) in cases {
            assert_eq!(legacy_target(old).as_deref(), Some(new), "{old}");
        }
        assert_eq!(legacy_target("jobs/rdma/x"), None);
        let job = upgrade_job(br#"{"isolation_id":1000,"subnets":[],"world_size":0}"#);
        let v: serde_json::Value = serde_json::from_slice(&job).unwrap();
        assert_eq!(v["isolation_ids"], serde_json::json!([1000]));
        assert!(v.get("isolation_id").is_none());
    }
}

//! Nodes of a cluster store: the registry, liveness, and forgetting a node
//! that will not come back.

use std::time::Duration;

use super::*;
use crate::model::{ForgetReport, NodeInfo, NodeStatus};

/// Most attachments released per page while forgetting a node.
const FORGET_PAGE: usize = 256;

impl<S: Store> Ipam<S> {
    /// Records this node in the registry and keeps its liveness key present
    /// while the process lives (a lease of `ttl` on etcd).
    pub async fn register_node(&self, info: &NodeInfo, ttl: Duration) -> Result<(), IpamError> {
        let value = encode(info);
        match self
            .store
            .txn(Txn {
                compares: Vec::new(),
                ops: vec![Op::Put(keys::registry(&self.node), value.clone())],
            })
            .await?
        {
            TxnOutcome::Committed(_) => {}
            TxnOutcome::Conflict(k) => {
                return Err(IpamError::Corrupt {
                    key: k,
                    reason: "unconditional write reported a conflict".into(),
                })
            }
        }
        self.store
            .put_alive(&keys::alive(&self.node), value, ttl)
            .await?;
        Ok(())
    }

    /// Every registered node, with whether its jobnetd is alive and how many
    /// attachments it holds.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, IpamError> {
        let rp = keys::REGISTRY_PREFIX;
        let alive: HashSet<String> = self
            .store
            .range_relaxed(
                keys::ALIVE_PREFIX,
                &prefix_end(keys::ALIVE_PREFIX),
                usize::MAX,
            )
            .await?
            .into_iter()
            .filter_map(|(k, _)| keys::unesc(k.strip_prefix(keys::ALIVE_PREFIX)?))
            .collect();
        let mut out = Vec::new();
        for (k, v) in self
            .store
            .range_relaxed(rp, &prefix_end(rp), usize::MAX)
            .await?
        {
            let Some(node) = k.strip_prefix(rp).and_then(keys::unesc) else {
                continue;
            };
            let info: Option<NodeInfo> = decode(&k, &v).ok();
            let ap = keys::attachments_prefix(&node);
            let attachments = self.store.count_relaxed(&ap, &prefix_end(&ap)).await?;
            out.push(NodeStatus {
                alive: alive.contains(&node),
                node,
                info,
                attachments,
            });
        }
        Ok(out)
    }

    /// Releases every attachment `node` holds (addresses, ranks, memberships,
    /// records) and removes the node from the registry: for a node that will
    /// not return. Refuses a node whose jobnetd is alive unless `force`.
    pub async fn forget_node(&self, node: &str, force: bool) -> Result<ForgetReport, IpamError> {
        check_len("node", node, MAX_NAME)?;
        if !force && self.store.get(&keys::alive(node)).await?.is_some() {
            return Err(IpamError::NodeAlive(node.to_string()));
        }
        let mut report = ForgetReport::default();
        let ap = keys::attachments_prefix(node);
        let mut start = ap.clone();
        loop {
            // Linearizable and by cursor: every attachment is seen once.
            let page = self
                .store
                .range(&start, &prefix_end(&ap), FORGET_PAGE)
                .await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            start = key_after(last);
            for (k, _) in &page {
                let Some(key) = k.strip_prefix(&ap).and_then(keys::parse_att_tail) else {
                    continue;
                };
                if self.release_on(node, &key).await?.is_some() {
                    report.released.push(key);
                }
            }
        }
        let outcome = self
            .store
            .txn(Txn {
                compares: Vec::new(),
                ops: vec![
                    Op::DeletePrefix(keys::node_prefix(node)),
                    Op::Delete(keys::registry(node)),
                    Op::Delete(keys::alive(node)),
                ],
            })
            .await?;
        report.removed = matches!(outcome, TxnOutcome::Committed(_));
        Ok(report)
    }
}

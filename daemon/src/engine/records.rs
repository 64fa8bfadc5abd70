//! The daemon's own records in the store, owned by an attachment and
//! deleted with it: VF owners (`vf/<node>/<pci>`) and attachment details
//! (`att/<containerID>/<ifname>`).

use std::collections::HashMap;

use jobnet_api::{self as api, ApiError, ErrorCode};
use jobnet_hw::PciAddr;
use jobnet_ipam::{RecordWrite, Store};
use serde::{Deserialize, Serialize};

use super::convert::api_err;
use super::{lock, Engine, PAGE};
use crate::inventory::VfEntry;

/// Record key prefix of VF owners.
const VF_PREFIX: &str = "vf/";
/// Reads of the VF owners one reload makes at most while owners change.
const RELOAD_TRIES: usize = 3;
/// Record key prefix of attachment details.
const ATT_PREFIX: &str = "att/";

/// What the daemon stores about an attachment besides its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct AttRecord {
    pub(super) node: String,
    pub(super) netns: String,
    #[serde(default)]
    pub(super) network: Option<String>,
    pub(super) vfs: Vec<api::VfAssignment>,
}

impl AttRecord {
    /// The record in a stored value; None when it is not one (a foreign
    /// or damaged value shows as an attachment without details).
    pub(super) fn decode(v: serde_json::Value) -> Option<Self> {
        serde_json::from_value(v).ok()
    }
}

/// Owner record of one VF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct VfOwner {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// The owner key of a stored VF owner record.
fn decode_owner(v: serde_json::Value) -> Result<api::AttachmentKey, serde_json::Error> {
    let o: VfOwner = serde_json::from_value(v)?;
    Ok(api::AttachmentKey::new(o.container_id, o.ifname))
}

/// Prefix of `node`'s VF owner records.
pub(super) fn vf_owner_prefix(node: &str) -> String {
    format!("{VF_PREFIX}{node}/")
}

fn vf_record_key(node: &str, pci: PciAddr) -> String {
    format!("{}{pci}", vf_owner_prefix(node))
}

/// The VF an owner record key under `prefix` names.
pub(super) fn vf_of_record(prefix: &str, key: &str) -> Option<PciAddr> {
    key.strip_prefix(prefix).and_then(|p| p.parse().ok())
}

/// Key of an attachment's details record.
pub(super) fn att_record_key(k: &api::AttachmentKey) -> String {
    format!("{ATT_PREFIX}{}/{}", k.container_id, k.ifname)
}

/// What the details record says about one VF of the inventory.
pub(super) fn assignment(e: &VfEntry) -> api::VfAssignment {
    api::VfAssignment {
        rail: u32::from(e.rail),
        pci: e.info.pci,
        pf_pci: e.info.pf_pci,
        pf: e.info.pf_netdevs.first().cloned(),
        vf_index: e.info.vf_index,
        netdev: e.info.netdevs.first().cloned(),
    }
}

/// The daemon records an attachment on `node` owns: one owner record per VF
/// (written only if absent, so a VF never gets two owners) and its details.
pub(super) fn attachment_records(
    node: &str,
    key: &api::AttachmentKey,
    record: &AttRecord,
) -> Result<Vec<RecordWrite>, ApiError> {
    let mut records: Vec<RecordWrite> = record
        .vfs
        .iter()
        .map(|v| RecordWrite {
            key: vf_record_key(node, v.pci),
            value: serde_json::json!(VfOwner {
                container_id: key.container_id.clone(),
                ifname: key.ifname.clone(),
            }),
            if_absent: true,
        })
        .collect();
    records.push(RecordWrite {
        key: att_record_key(key),
        value: serde_json::to_value(record)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?,
        if_absent: false,
    });
    Ok(records)
}

impl<S: Store> Engine<S> {
    /// Rebuilds the VF owner mirror from this node's `vf/` records.
    ///
    /// Reads the records a page at a time and keeps only VFs of the inventory
    /// (the others cannot be chosen or listed), so memory follows the node's
    /// VFs, not the number of records in the store.
    pub(super) async fn reload_owners(&self) -> Result<(), ApiError> {
        // A reserve or release that lands while the records are read makes
        // the read older than the book: applying it would free a VF a
        // reserve has just recorded (the next reserve of it is refused by
        // the store) or keep one just released. Such a read is dropped and
        // done again; past a few tries the book stays as it is until the
        // next pass (it changes only with durable writes, so it is right).
        for _ in 0..RELOAD_TRIES {
            let before = lock(&self.book).owner_changes();
            let owners = self.read_owners().await?;
            let mut book = lock(&self.book);
            if book.owner_changes() == before {
                book.set_owners(owners);
                return Ok(());
            }
        }
        tracing::debug!("VF owners changed during every reload; the book stays as it is");
        Ok(())
    }

    /// This node's VF owner records, for the VFs the inventory knows.
    async fn read_owners(&self) -> Result<HashMap<PciAddr, api::AttachmentKey>, ApiError> {
        let prefix = vf_owner_prefix(&self.node);
        let inv = self.inventory();
        let mut owners = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .ipam
                .records_page(&prefix, after.as_deref(), PAGE)
                .await
                .map_err(api_err)?;
            let full = page.len() == PAGE;
            for (k, v) in &page {
                let Some(pci) = vf_of_record(&prefix, k).filter(|p| inv.knows(*p)) else {
                    continue;
                };
                match decode_owner(v.clone()) {
                    Ok(owner) => {
                        owners.insert(pci, owner);
                    }
                    Err(e) => {
                        tracing::warn!(record = %k, error = %e, "unreadable VF owner record")
                    }
                }
            }
            after = page.into_iter().next_back().map(|(k, _)| k);
            if !full || after.is_none() {
                break;
            }
        }
        Ok(owners)
    }

    /// The details record of `key`, read linearizably.
    pub(super) async fn att_record(
        &self,
        key: &api::AttachmentKey,
    ) -> Result<Option<AttRecord>, ApiError> {
        let v = self
            .ipam
            .record(&att_record_key(key))
            .await
            .map_err(api_err)?;
        Ok(v.and_then(AttRecord::decode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pci(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    fn record() -> AttRecord {
        AttRecord {
            node: "n1".into(),
            netns: "/run/netns/p".into(),
            network: Some("rdma-net".into()),
            vfs: vec![
                api::VfAssignment {
                    rail: 0,
                    pci: pci("0000:3b:00.2"),
                    pf_pci: pci("0000:3b:00.0"),
                    pf: Some("ens1".into()),
                    vf_index: 0,
                    netdev: Some("ens1v0".into()),
                },
                api::VfAssignment {
                    rail: 1,
                    pci: pci("0000:5e:00.3"),
                    pf_pci: pci("0000:5e:00.0"),
                    pf: None,
                    vf_index: 1,
                    netdev: None,
                },
            ],
        }
    }

    #[test]
    fn keys_name_the_node_the_vf_and_the_attachment() {
        let vf = pci("0000:3b:00.2");
        assert_eq!(vf_record_key("n1", vf), "vf/n1/0000:3b:00.2");
        assert_eq!(vf_owner_prefix("n1"), "vf/n1/");
        assert_eq!(
            att_record_key(&api::AttachmentKey::new("abc", "net1")),
            "att/abc/net1"
        );
    }

    #[test]
    fn only_this_nodes_owner_keys_name_a_vf() {
        let prefix = vf_owner_prefix("n1");
        let vf = pci("0000:3b:00.2");
        assert_eq!(vf_of_record(&prefix, &vf_record_key("n1", vf)), Some(vf));
        assert_eq!(vf_of_record(&prefix, &vf_record_key("n10", vf)), None);
        assert_eq!(vf_of_record(&prefix, "vf/n1/not-a-pci"), None);
        assert_eq!(vf_of_record(&prefix, "att/abc/net1"), None);
    }

    #[test]
    fn an_attachment_writes_one_exclusive_owner_per_vf_then_its_details() {
        let key = api::AttachmentKey::new("abc", "net1");
        let rec = record();
        let writes = attachment_records("n1", &key, &rec).unwrap();
        let keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(
            keys,
            ["vf/n1/0000:3b:00.2", "vf/n1/0000:5e:00.3", "att/abc/net1"]
        );
        assert_eq!(
            writes.iter().map(|w| w.if_absent).collect::<Vec<_>>(),
            [true, true, false]
        );
        for w in &writes[..2] {
            assert_eq!(
                w.value,
                serde_json::json!({"containerID": "abc", "ifname": "net1"})
            );
            assert_eq!(decode_owner(w.value.clone()).unwrap(), key);
        }
        assert_eq!(AttRecord::decode(writes[2].value.clone()), Some(rec));
    }

    #[test]
    fn details_from_before_networks_were_recorded_still_decode() {
        let v = serde_json::json!({"node": "n1", "netns": "/proc/1/ns/net", "vfs": []});
        let rec = AttRecord::decode(v).unwrap();
        assert_eq!(rec.network, None);
        assert!(rec.vfs.is_empty());
        assert_eq!(AttRecord::decode(serde_json::json!({"node": 1})), None);
        assert!(decode_owner(serde_json::json!({"ifname": "net1"})).is_err());
    }
}

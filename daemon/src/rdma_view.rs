//! `jobnetctl rdma`: the node's RDMA devices as sysfs describes them, and
//! their live port data through libibverbs where the kernel has RDMA.
//! Read locally; jobnetd need not run.

use std::fmt::Write;

use jobnet_hw::rdma::{all_devices, RdmaDevice};
use jobnet_hw::SysfsRoot;
use jobnet_rdma::verbs::{self, PortStatus, VerbsInventory};

/// What `jobnetctl rdma` shows.
#[derive(Debug)]
pub struct RdmaView {
    /// Devices under `class/infiniband` of the sysfs root.
    pub sysfs: Result<Vec<RdmaDevice>, String>,
    /// What libibverbs sees.
    pub verbs: Result<VerbsInventory, String>,
}

impl RdmaView {
    /// Reads both sources.
    pub fn read(root: &SysfsRoot) -> Self {
        Self {
            sysfs: all_devices(root).map_err(|e| e.to_string()),
            verbs: verbs::inventory().map_err(|e| e.to_string()),
        }
    }

    /// The view as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let verbs = match &self.verbs {
            Ok(VerbsInventory::NoRdma) => serde_json::json!({"available": false}),
            Ok(VerbsInventory::Devices(ds)) => serde_json::json!({
                "available": true,
                "devices": ds.iter().map(|d| serde_json::json!({
                    "name": d.name,
                    "guid": d.guid.map(|g| format!("{g:016x}")),
                    "index": d.index,
                    "port1": match &d.port1 {
                        PortStatus::Usable { gids } => serde_json::json!({
                            "usable": true,
                            "gids": gids.iter().map(|g| serde_json::json!({
                                "index": g.index, "gid": g.gid.to_string(),
                                "kind": format!("{:?}", g.kind),
                            })).collect::<Vec<_>>(),
                        }),
                        PortStatus::Unusable(why) => serde_json::json!({"usable": false, "reason": why}),
                    },
                })).collect::<Vec<_>>(),
            }),
            Err(e) => serde_json::json!({"error": e}),
        };
        let sysfs = match &self.sysfs {
            Ok(ds) => serde_json::to_value(ds).unwrap_or(serde_json::Value::Null),
            Err(e) => serde_json::json!({"error": e}),
        };
        serde_json::json!({"sysfs": sysfs, "verbs": verbs})
    }

    /// The view as text tables.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.sysfs {
            Ok(ds) if ds.is_empty() => out.push_str("sysfs: no RDMA devices\n"),
            Ok(ds) => {
                let _ = writeln!(
                    out,
                    "{:<12} {:<5} {:<10} {:<14} {:<11} {:>5}",
                    "DEVICE", "PORT", "STATE", "RATE", "LINK", "GIDS"
                );
                for d in ds {
                    for p in &d.ports {
                        let state = p
                            .state
                            .as_ref()
                            .map(|s| format!("{s:?}"))
                            .unwrap_or_else(|| "-".into());
                        let rate = p
                            .rate
                            .as_ref()
                            .map(|r| format!("{} Gb/s", r.mbit_per_s / 1000))
                            .unwrap_or_else(|| "-".into());
                        let link = p
                            .link_layer
                            .as_ref()
                            .map(|l| format!("{l:?}"))
                            .unwrap_or_else(|| "-".into());
                        let _ = writeln!(
                            out,
                            "{:<12} {:<5} {:<10} {:<14} {:<11} {:>5}",
                            d.name.to_string(),
                            p.number,
                            state,
                            rate,
                            link,
                            p.gids.len()
                        );
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(out, "sysfs: {e}");
            }
        }
        match &self.verbs {
            Ok(VerbsInventory::NoRdma) => {
                out.push_str("live port data (libibverbs): this kernel has no RDMA support\n")
            }
            Ok(VerbsInventory::Devices(ds)) => {
                let _ = writeln!(out, "live port data (libibverbs): {} device(s)", ds.len());
                for d in ds {
                    let port = match &d.port1 {
                        PortStatus::Usable { gids } => {
                            format!("port 1 usable, {} GIDs", gids.len())
                        }
                        PortStatus::Unusable(why) => format!("port 1 unusable: {why}"),
                    };
                    let _ = writeln!(out, "  {}: {port}", d.name);
                }
            }
            Err(e) => {
                let _ = writeln!(out, "live port data (libibverbs): {e}");
            }
        }
        out
    }
}

//! The device-info file (Network Plumbing WG Device Info Spec 1.1.0) that
//! Multus copies into the pod's network-status annotation.

use std::path::{Path, PathBuf};

use jobnet_hw::PciAddr;

use super::record::RdmaIsolationApplied;

/// Top-level key of jobnet's own section in the document. The spec has no
/// field for character devices; readers that do not know the key ignore it.
pub const JOBNET_KEY: &str = "jobnet";

/// Spec version written into every file.
pub const DEVICE_INFO_VERSION: &str = "1.1.0";
/// Directory used when the runtime names no file (`CNIDeviceInfoFile`).
pub const DEFAULT_DEVINFO_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo/cni";

/// `pci` section of a device-info file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PciDeviceInfo {
    /// The VF's PCI address.
    #[serde(rename = "pci-address")]
    pub pci_address: PciAddr,
    /// The PF's PCI address.
    #[serde(rename = "pf-pci-address", skip_serializing_if = "Option::is_none")]
    pub pf_pci_address: Option<PciAddr>,
    /// The RDMA device that belongs to the VF, when it has one.
    #[serde(rename = "rdma-device", skip_serializing_if = "Option::is_none")]
    pub rdma_device: Option<String>,
}

/// jobnet's own section (`"jobnet"`): what a runtime or device plugin
/// needs to give the pod its RDMA device (see docs/rdma.md).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct JobnetDeviceInfo {
    /// `exclusive` (the RDMA device was moved into the pod netns) or `shared`.
    #[serde(
        rename = "rdma-isolation",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub rdma_isolation: Option<RdmaIsolationApplied>,
    /// Character devices to mount into the pod (`/dev/infiniband/uverbsN`,
    /// `/dev/infiniband/rdma_cm`).
    #[serde(
        rename = "char-devices",
        skip_serializing_if = "Vec::is_empty",
        default
    )]
    pub char_devices: Vec<PathBuf>,
}

/// A whole device-info document of type `pci`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceInfo {
    /// Always `pci` for jobnet.
    #[serde(rename = "type")]
    pub kind: String,
    /// Spec version.
    pub version: String,
    /// The PCI details.
    pub pci: PciDeviceInfo,
    /// jobnet's own section, when there is something to say.
    #[serde(rename = "jobnet", skip_serializing_if = "Option::is_none", default)]
    pub jobnet: Option<JobnetDeviceInfo>,
}

impl DeviceInfo {
    /// A `pci` device-info document.
    pub fn pci(info: PciDeviceInfo) -> Self {
        Self {
            kind: "pci".into(),
            version: DEVICE_INFO_VERSION.into(),
            pci: info,
            jobnet: None,
        }
    }
}

/// Where the file goes: the runtime's choice, else a name built from
/// validated identifiers under [`DEFAULT_DEVINFO_DIR`].
pub fn path_for(
    explicit: Option<&Path>,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_owned();
    }
    // The network name is free text in the config: keep only safe bytes.
    let net: String = network
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    Path::new(DEFAULT_DEVINFO_DIR).join(format!("{net}-{container_id}-{ifname}-device-info.json"))
}

/// Writes the file (creating its directory), atomically.
pub fn write(path: &Path, info: &DeviceInfo) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let body = serde_json::to_vec_pretty(info).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// Removes the file and any temp file of it (a write cut short leaves
/// one); missing ones are fine.
pub fn remove(path: &Path) -> std::io::Result<()> {
    for p in [path.with_extension("tmp"), path.to_owned()] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_matches_spec_field_names() {
        let info = DeviceInfo::pci(PciDeviceInfo {
            pci_address: "0000:3b:00.2".parse().unwrap(),
            pf_pci_address: Some("0000:3b:00.0".parse().unwrap()),
            rdma_device: Some("mlx5_4".into()),
        });
        let v: serde_json::Value = serde_json::to_value(&info).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "pci",
                "version": "1.1.0",
                "pci": {
                    "pci-address": "0000:3b:00.2",
                    "pf-pci-address": "0000:3b:00.0",
                    "rdma-device": "mlx5_4"
                }
            })
        );
        let no_rdma = DeviceInfo::pci(PciDeviceInfo {
            pci_address: "0000:3b:00.2".parse().unwrap(),
            pf_pci_address: None,
            rdma_device: None,
        });
        let v = serde_json::to_value(&no_rdma).unwrap();
        assert!(v["pci"].get("rdma-device").is_none());
        assert!(v.get(JOBNET_KEY).is_none());
    }

    #[test]
    fn jobnet_section_names_char_devices() {
        let mut info = DeviceInfo::pci(PciDeviceInfo {
            pci_address: "0000:3b:00.2".parse().unwrap(),
            pf_pci_address: None,
            rdma_device: Some("mlx5_4".into()),
        });
        info.jobnet = Some(JobnetDeviceInfo {
            rdma_isolation: Some(RdmaIsolationApplied::Exclusive),
            char_devices: vec![
                "/dev/infiniband/uverbs4".into(),
                "/dev/infiniband/rdma_cm".into(),
            ],
        });
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!(
            v[JOBNET_KEY],
            serde_json::json!({
                "rdma-isolation": "exclusive",
                "char-devices": ["/dev/infiniband/uverbs4", "/dev/infiniband/rdma_cm"]
            })
        );
        let back: DeviceInfo = serde_json::from_value(v).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn default_path_sanitizes_network_name() {
        let p = path_for(None, "../evil net", "abc", "net1");
        assert_eq!(
            p,
            Path::new(DEFAULT_DEVINFO_DIR).join("___evil_net-abc-net1-device-info.json")
        );
        let explicit = Path::new("/tmp/x.json");
        assert_eq!(path_for(Some(explicit), "n", "c", "i"), explicit);
    }

    #[test]
    fn write_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/dev.json");
        let info = DeviceInfo::pci(PciDeviceInfo {
            pci_address: "0000:3b:00.2".parse().unwrap(),
            pf_pci_address: None,
            rdma_device: None,
        });
        write(&p, &info).unwrap();
        let back: DeviceInfo = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(back, info);
        remove(&p).unwrap();
        remove(&p).unwrap();
    }
}

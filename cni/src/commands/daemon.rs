//! Talking to jobnetd for configs without an `ipam` section: the daemon
//! owns job subnets, addresses, isolation IDs and the VF pool.
//!
//! ADD reserves, attaches, then commits; any failure after the reserve
//! releases it. DEL releases after the local undo; when the daemon cannot be
//! reached the release is queued as a file under the state directory and
//! delivered by the next plugin run that reaches the daemon (the daemon's
//! own reconciliation also releases attachments whose netns is gone).

use std::path::{Path, PathBuf};

use jobnet_api::{ApiError, AttachmentKey, Client, ErrorCode as ApiCode};

use crate::protocol::error::{CniError, ErrorCode};

/// Directory (under the state dir) of releases not yet delivered.
const PENDING_DIR: &str = "pending-release";
/// How many queued releases one run delivers at most (keeps ADD fast).
const FLUSH_LIMIT: usize = 32;

/// A client for the daemon socket named by the config.
pub fn client(socket: &Path) -> Client {
    Client::new(socket)
}

/// The CNI error for an API error; an unreachable daemon is "try again later".
pub fn api_error(e: &ApiError) -> CniError {
    CniError::new(
        ErrorCode::from_number(e.cni_code()),
        format!("jobnetd: {e}"),
    )
}

/// The CNI error for a failed commit of a fresh attach, which the caller
/// has undone: a reservation jobnetd no longer knows (it expired while the
/// VF was being attached) is transient, so the runtime should try again.
pub fn commit_error(e: &ApiError) -> CniError {
    if e.code == ApiCode::UnknownAttachment {
        return CniError::new(
            ErrorCode::TryAgainLater,
            "jobnetd no longer holds the reservation of this attachment (it expired while the VF was being attached); the VF was put back, try again",
        )
        .with_details(e.to_string());
    }
    api_error(e)
}

/// The CNI error for a failed commit of a retried ADD whose attachment is
/// complete and was left in place: as [`commit_error`], without the undo.
pub fn replay_commit_error(e: &ApiError) -> CniError {
    if e.code == ApiCode::UnknownAttachment {
        return CniError::new(
            ErrorCode::TryAgainLater,
            "jobnetd no longer holds the reservation of this attachment; the attachment was left in place, try again",
        )
        .with_details(e.to_string());
    }
    api_error(e)
}

/// True when the error means the daemon was not reached at all.
pub fn unreachable(e: &ApiError) -> bool {
    matches!(e.code, ApiCode::Unavailable | ApiCode::Timeout)
}

fn pending_path(state_root: &Path, key: &AttachmentKey) -> PathBuf {
    // Both parts are validated CNI names (no `/`, no leading `.`).
    state_root
        .join(PENDING_DIR)
        .join(format!("{}.{}.json", key.container_id, key.ifname))
}

/// Records a release to deliver later.
pub fn queue_release(state_root: &Path, key: &AttachmentKey) -> std::io::Result<()> {
    let path = pending_path(state_root, key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let body = serde_json::to_vec(key).map_err(std::io::Error::other)?;
    std::fs::write(temp_path(&path), body)?;
    std::fs::rename(temp_path(&path), &path)
}

/// The temp file a queued release is written to first: same stem as the
/// queued file, so a later run for the attachment finds one a crash left.
fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("tmp")
}

/// Forgets a queued release of `key` (and a temp file of one): it was
/// delivered.
pub fn drop_queued(state_root: &Path, key: &AttachmentKey) {
    let path = pending_path(state_root, key);
    for p in [temp_path(&path), path] {
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove a queued release");
            }
        }
    }
}

/// Delivers queued releases; stops at the first one the daemon does not take.
pub async fn flush_releases(client: &Client, state_root: &Path) {
    flush_releases_except(client, state_root, &[]).await;
}

/// [`flush_releases`], leaving the queued releases of `keep` queued (GC's
/// valid attachments: a runtime that lists one holds it again).
pub async fn flush_releases_except(client: &Client, state_root: &Path, keep: &[AttachmentKey]) {
    let Ok(entries) = std::fs::read_dir(state_root.join(PENDING_DIR)) else {
        return;
    };
    for entry in entries.flatten().take(FLUSH_LIMIT) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let key: Option<AttachmentKey> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(key) = key else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        if keep.contains(&key) {
            continue;
        }
        match client.release(&key).await {
            Ok(_) => {
                tracing::info!(attachment = %key, "delivered queued release");
                let _ = std::fs::remove_file(&path);
            }
            Err(e) if unreachable(&e) => return,
            Err(e) => {
                tracing::warn!(attachment = %key, error = %e, "queued release refused; dropping it");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// Applies the job's isolation from jobnetd to the attach: a VLAN on the VF
/// for `vf-vlan` pools; `none` needs nothing. Other modes are refused until
/// they are implemented, rather than silently leaving the job unisolated.
pub fn apply_isolation(
    spec: &mut crate::sriov::AttachSpec,
    iso: &jobnet_api::Isolation,
) -> Result<(), CniError> {
    use jobnet_api::IsolationMode;
    match iso.mode {
        // vxlan lives in the node: jobnetd's commit joins the job's bridge.
        IsolationMode::None | IsolationMode::Vxlan => Ok(()),
        IsolationMode::VfVlan => {
            let id = iso
                .id
                .and_then(|i| u16::try_from(i).ok())
                .filter(|i| *i <= jobnet_netlink::MAX_VLAN_ID)
                .ok_or_else(|| {
                    CniError::new(
                        ErrorCode::DaemonProtocol,
                        format!(
                            "jobnetd gave VLAN isolation without a valid VLAN ID ({:?})",
                            iso.id
                        ),
                    )
                })?;
            spec.pf_settings.vlan = Some(jobnet_netlink::VfVlanConfig {
                id,
                qos: 0,
                proto: jobnet_netlink::VlanProto::Dot1Q,
            });
            Ok(())
        }
        other => Err(CniError::new(
            ErrorCode::UnsupportedField,
            format!(
                "isolation mode {other:?} of this pool is not supported by this jobnet version"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_release_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let key = AttachmentKey::new("abc", "net1");
        queue_release(dir.path(), &key).unwrap();
        let p = pending_path(dir.path(), &key);
        let back: AttachmentKey = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(back, key);
    }

    #[test]
    fn flush_against_absent_daemon_keeps_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let key = AttachmentKey::new("abc", "net1");
        queue_release(dir.path(), &key).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = client(&dir.path().join("no-such.sock"));
        rt.block_on(flush_releases(&c, dir.path()));
        assert!(pending_path(dir.path(), &key).exists());
    }
}

//! GC of what the plugin keeps itself: attachments of one network that the
//! runtime no longer lists (`cni.dev/valid-attachments`) are undone like a
//! DEL would (VF home, cache, device-info file, owner record), and files a
//! killed run left behind go too. Other networks' files are not touched:
//! the list only speaks for its own network.

use std::collections::HashSet;
use std::time::Duration;

use super::attach::Context;
use super::cache;
use super::detach::{detach, DetachOutcome};
use super::lockfile::{self, Open};
use super::owner;
use super::record::AttachmentRecord;

/// An attachment whose lock is held is being worked on right now: it is
/// not garbage, so GC does not wait for it.
const GC_LOCK_WAIT: Duration = Duration::ZERO;

/// An attachment: (container ID, ifname).
pub type Key = (String, String);

/// What GC did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Attachments undone and forgotten.
    pub collected: Vec<Key>,
    /// Attachments left for a later GC (in use, or their VF was busy).
    pub skipped: Vec<Key>,
    /// Leftover files removed (temp files, unheld locks).
    pub files: usize,
}

/// Collects the attachments of `network` not in `valid`.
pub async fn collect(ctx: &Context<'_>, network: &str, valid: &[Key]) -> GcReport {
    let caches = cache::list::<AttachmentRecord>(ctx.state);
    let mut keep: HashSet<Key> = valid.iter().cloned().collect();
    // The other rails of a valid `rails: all` attachment are valid too.
    for rec in caches.iter().filter_map(|(_, r)| r.as_ref()) {
        if keep.contains(&(rec.container_id.clone(), rec.ifname.clone())) {
            for s in &rec.siblings {
                keep.insert((rec.container_id.clone(), s.clone()));
            }
        }
    }
    let mut report = GcReport::default();
    let mut done: HashSet<Key> = HashSet::new();
    let ours = |n: Option<&str>| n == Some(network);
    for rec in caches.into_iter().filter_map(|(_, r)| r) {
        let key = (rec.container_id.clone(), rec.ifname.clone());
        if ours(rec.network.as_deref()) && !keep.contains(&key) && done.insert(key.clone()) {
            collect_one(ctx, key, &mut report).await;
        }
    }
    // Owner records without a cache: a run killed before it saved one.
    for (_, rec) in owner::records(ctx.state, |r| ours(r.network.as_deref())) {
        let key = (rec.container_id.clone(), rec.ifname.clone());
        if !keep.contains(&key) && done.insert(key.clone()) {
            collect_one(ctx, key, &mut report).await;
        }
    }
    report.files += remove_leftover_files(ctx, &keep, &ours);
    report
}

async fn collect_one(ctx: &Context<'_>, key: Key, report: &mut GcReport) {
    let (cid, ifname) = (&key.0, &key.1);
    let lock = match lockfile::lock_attachment(ctx.state, cid, ifname, GC_LOCK_WAIT, ctx.faults) {
        Ok(l) => l,
        Err(e) => {
            tracing::info!(container = %cid, %ifname, error = %e, "GC: attachment in use; left for later");
            report.skipped.push(key);
            return;
        }
    };
    let outcome = detach(ctx, cid, ifname, None, None, None).await;
    drop(lock);
    tracing::info!(container = %cid, %ifname, ?outcome, "GC: attachment collected");
    if matches!(outcome, DetachOutcome::Busy { .. }) {
        report.skipped.push(key);
    } else {
        report.collected.push(key);
    }
}

/// Temp files of this network's collected attachments whose cache is gone
/// (a save cut short before its rename), and attachment locks nobody holds
/// (a killed run's; any network's: an unheld lock guards nothing).
fn remove_leftover_files(
    ctx: &Context<'_>,
    keep: &HashSet<Key>,
    ours: &dyn Fn(Option<&str>) -> bool,
) -> usize {
    let Ok(dir) = std::fs::read_dir(ctx.state.attachments()) else {
        return 0;
    };
    let mut removed = 0;
    for path in dir.flatten().map(|e| e.path()) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.ends_with(".lock") {
            if let Ok(Some(l)) = lockfile::acquire(&path, Open::Existing, GC_LOCK_WAIT, ctx.faults)
            {
                if l.remove().is_ok() {
                    removed += 1;
                }
            }
        } else if name.ends_with(".json.tmp") {
            let rec = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<AttachmentRecord>(&b).ok());
            let Some(rec) = rec else { continue };
            let key = (rec.container_id.clone(), rec.ifname.clone());
            let cache_gone = !cache::path_for(ctx.state, &key.0, &key.1).exists();
            if ours(rec.network.as_deref()) && !keep.contains(&key) && cache_gone {
                let Ok(lock) =
                    lockfile::lock_attachment(ctx.state, &key.0, &key.1, GC_LOCK_WAIT, ctx.faults)
                else {
                    continue;
                };
                if cache::remove(&cache::path_for(ctx.state, &key.0, &key.1)).is_ok() {
                    removed += 1;
                }
                drop(lock);
            }
        }
    }
    removed
}

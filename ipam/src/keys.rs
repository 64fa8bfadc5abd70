//! Store key layout. Every variable component is escaped so that no caller
//! string can contain `/` or leave its prefix; keys stay ASCII.
//!
//! Keys are either *cluster* keys, which every node of a cluster shares (the
//! job's identity and its address space), or *node* keys under
//! `nodes/<node>/`, which only that node's jobnetd writes. With the embedded
//! store there is one node, `local`.
//!
//! | key | value | scope |
//! |---|---|---|
//! | `jobs/<pool>/<job>` | job record: subnets per rail and family, isolation IDs, world size | cluster |
//! | `index/subnets/<pool>/<4\|6>/<index:016x>` | job holding that job subnet | cluster |
//! | `index/ids/<pool>/<id:08x>` | job holding that isolation ID | cluster |
//! | `draining/<pool>/<job>` | (empty) the job has no attachment left | cluster |
//! | `addrs/<pool>/<job>/<rail>/<4\|6>/<!offset:016x>` | holder: node, attachment, rank (offset inverted: key order = highest first) | cluster |
//! | `blocks/<pool>/<job>/<rail>/<4\|6>/<block:08x>` | node whose unranked addresses come from that block | cluster |
//! | `members/<pool>/<job>/<node>/<cid>/<ifname>` | (empty) job membership, cluster-wide | cluster |
//! | `nodes/<node>/attachments/<cid>/<ifname>` | attachment record | node |
//! | `nodes/<node>/pending/<deadline:016x>/<cid>/<ifname>` | uncommitted reservation, by deadline | node |
//! | `nodes/<node>/records/<key>` | daemon record (VF owner, attachment details) | node |
//! | `registry/<node>` | the node's jobnetd: version, when it last started | cluster |
//! | `alive/<node>` | liveness, bound to a lease that the node's jobnetd keeps alive | cluster |
//! | `preflight/<pool>/<job>/<id>` | a job preflight asked on some node: its ranks per rail, budget | cluster |
//! | `preflight-results/<pool>/<job>/<id>/<node>` | what one node's probes of its ranks found | cluster |
//!
//! A rank's address is derived from the rank, so the `addrs/` key of a rank
//! is the cluster-wide lock on that rank: two nodes cannot both hold it.

use std::fmt::Write;

use crate::model::{AttachmentKey, Family};

/// Escapes a component: keeps `[A-Za-z0-9._:-]`, percent-encodes the rest.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Reverses [`esc`].
pub(crate) fn unesc(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn fam(f: Family) -> char {
    match f {
        Family::V4 => '4',
        Family::V6 => '6',
    }
}

fn att_tail(k: &AttachmentKey) -> String {
    format!("{}/{}", esc(&k.container_id), esc(&k.ifname))
}

/// Parses the `<cid>/<ifname>` tail of an attachment-keyed index.
pub(crate) fn parse_att_tail(tail: &str) -> Option<AttachmentKey> {
    let (c, i) = tail.split_once('/')?;
    Some(AttachmentKey::new(unesc(c)?, unesc(i)?))
}

/// The scope of one node's keys: `nodes/<node>/`.
pub(crate) fn node_prefix(node: &str) -> String {
    format!("{NODES_PREFIX}{}/", esc(node))
}

/// Parent of every node's keys.
pub(crate) const NODES_PREFIX: &str = "nodes/";

pub(crate) const REGISTRY_PREFIX: &str = "registry/";

pub(crate) fn registry(node: &str) -> String {
    format!("{REGISTRY_PREFIX}{}", esc(node))
}

pub(crate) fn attachments_prefix(node: &str) -> String {
    format!("{}attachments/", node_prefix(node))
}

pub(crate) fn attachment(node: &str, k: &AttachmentKey) -> String {
    format!("{}{}", attachments_prefix(node), att_tail(k))
}

pub(crate) fn pending_prefix(node: &str) -> String {
    format!("{}pending/", node_prefix(node))
}

pub(crate) fn pending(node: &str, deadline_ms: u64, k: &AttachmentKey) -> String {
    format!("{}{deadline_ms:016x}/{}", pending_prefix(node), att_tail(k))
}

/// Parses a pending key of `node` into (deadline, attachment).
pub(crate) fn parse_pending(node: &str, key: &str) -> Option<(u64, AttachmentKey)> {
    let rest = key.strip_prefix(&pending_prefix(node))?;
    let (d, tail) = rest.split_once('/')?;
    Some((u64::from_str_radix(d, 16).ok()?, parse_att_tail(tail)?))
}

pub(crate) fn records_prefix(node: &str) -> String {
    format!("{}records/", node_prefix(node))
}

pub(crate) fn record(node: &str, key: &str) -> String {
    format!("{}{}", records_prefix(node), esc(key))
}

pub(crate) const ALIVE_PREFIX: &str = "alive/";

pub(crate) fn alive(node: &str) -> String {
    format!("{ALIVE_PREFIX}{}", esc(node))
}

pub(crate) const JOB_PREFIX: &str = "jobs/";

pub(crate) fn job(pool: &str, job: &str) -> String {
    format!("{JOB_PREFIX}{}/{}", esc(pool), esc(job))
}

pub(crate) fn job_prefix_of_pool(pool: &str) -> String {
    format!("{JOB_PREFIX}{}/", esc(pool))
}

/// Parses a job key into (pool, job).
pub(crate) fn parse_job(key: &str) -> Option<(String, String)> {
    let (p, j) = key.strip_prefix(JOB_PREFIX)?.split_once('/')?;
    Some((unesc(p)?, unesc(j)?))
}

pub(crate) fn member(pool: &str, job: &str, node: &str, k: &AttachmentKey) -> String {
    format!("{}{}/{}", members_prefix(pool, job), esc(node), att_tail(k))
}

pub(crate) fn members_prefix(pool: &str, job: &str) -> String {
    format!("members/{}/{}/", esc(pool), esc(job))
}

/// Parses the `<node>/<cid>/<ifname>` tail of a member key.
pub(crate) fn parse_member_tail(tail: &str) -> Option<(String, AttachmentKey)> {
    let (n, rest) = tail.split_once('/')?;
    Some((unesc(n)?, parse_att_tail(rest)?))
}

pub(crate) const DRAINING_PREFIX: &str = "draining/";

pub(crate) fn draining(pool: &str, job: &str) -> String {
    format!("{DRAINING_PREFIX}{}/{}", esc(pool), esc(job))
}

/// Parses a draining key into (pool, job).
pub(crate) fn parse_draining(key: &str) -> Option<(String, String)> {
    let (p, j) = key.strip_prefix(DRAINING_PREFIX)?.split_once('/')?;
    Some((unesc(p)?, unesc(j)?))
}

pub(crate) fn addr(pool: &str, job: &str, rail: u16, f: Family, offset: u64) -> String {
    format!(
        "{}{:016x}",
        addr_prefix(pool, job, rail, f),
        u64::MAX - offset
    )
}

pub(crate) fn addr_prefix(pool: &str, job: &str, rail: u16, f: Family) -> String {
    format!("addrs/{}/{}/{rail}/{}/", esc(pool), esc(job), fam(f))
}

pub(crate) fn job_addrs_prefix(pool: &str, job: &str) -> String {
    format!("addrs/{}/{}/", esc(pool), esc(job))
}

/// The host offset encoded at the end of an address key.
pub(crate) fn parse_addr_offset(key: &str) -> Option<u64> {
    let (_, hex) = key.rsplit_once('/')?;
    u64::from_str_radix(hex, 16).ok().map(|inv| u64::MAX - inv)
}

pub(crate) fn block(pool: &str, job: &str, rail: u16, f: Family, block: u64) -> String {
    format!("{}{block:08x}", block_prefix(pool, job, rail, f))
}

pub(crate) fn block_prefix(pool: &str, job: &str, rail: u16, f: Family) -> String {
    format!("blocks/{}/{}/{rail}/{}/", esc(pool), esc(job), fam(f))
}

pub(crate) fn job_blocks_prefix(pool: &str, job: &str) -> String {
    format!("blocks/{}/{}/", esc(pool), esc(job))
}

pub(crate) fn subnet(pool: &str, f: Family, index: u64) -> String {
    format!("{}{index:016x}", subnets_prefix(pool, f))
}

pub(crate) fn subnets_prefix(pool: &str, f: Family) -> String {
    format!("{SUBNET_INDEX_PREFIX}{}/{}/", esc(pool), fam(f))
}

/// Parent of every pool's subnet claims.
pub(crate) const SUBNET_INDEX_PREFIX: &str = "index/subnets/";

/// Parent of every pool's isolation ID claims.
pub(crate) const ID_INDEX_PREFIX: &str = "index/ids/";

pub(crate) fn parse_index(key: &str) -> Option<u64> {
    let (_, hex) = key.rsplit_once('/')?;
    u64::from_str_radix(hex, 16).ok()
}

/// Parent of every preflight request; results live apart, so that polling
/// for requests never reads results.
pub(crate) const PREFLIGHT_PREFIX: &str = "preflight/";

pub(crate) fn preflight(pool: &str, job: &str, id: &str) -> String {
    format!("{PREFLIGHT_PREFIX}{}/{}/{}", esc(pool), esc(job), esc(id))
}

/// Parses a preflight request key into (pool, job, id).
pub(crate) fn parse_preflight(key: &str) -> Option<(String, String, String)> {
    let mut parts = key.strip_prefix(PREFLIGHT_PREFIX)?.split('/');
    let (p, j, i) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((unesc(p)?, unesc(j)?, unesc(i)?))
}

pub(crate) fn preflight_results_prefix(pool: &str, job: &str, id: &str) -> String {
    format!("preflight-results/{}/{}/{}/", esc(pool), esc(job), esc(id))
}

pub(crate) fn preflight_result(pool: &str, job: &str, id: &str, node: &str) -> String {
    format!("{}{}", preflight_results_prefix(pool, job, id), esc(node))
}

pub(crate) fn isolation(pool: &str, id: u32) -> String {
    format!("{}{id:08x}", isolation_prefix(pool))
}

pub(crate) fn isolation_prefix(pool: &str) -> String {
    format!("{ID_INDEX_PREFIX}{}/", esc(pool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_and_hides_separators() {
        for s in ["abc", "a/b", "%2F", "ünï code", "..", ""] {
            let e = esc(s);
            assert!(!e.contains('/'));
            assert_eq!(unesc(&e).as_deref(), Some(s));
        }
        let k = AttachmentKey::new("c/1", "net1");
        assert_eq!(
            parse_pending("n/1", &pending("n/1", 42, &k)),
            Some((42, k.clone()))
        );
        assert!(attachment("n/1", &k).starts_with(&node_prefix("n/1")));
        let m = member("p", "j", "n/1", &k);
        assert_eq!(
            m.strip_prefix(&members_prefix("p", "j"))
                .and_then(parse_member_tail),
            Some(("n/1".to_string(), k))
        );
        assert_eq!(
            parse_job(&job("p/1", "j")),
            Some(("p/1".to_string(), "j".to_string()))
        );
        assert_eq!(
            parse_addr_offset(&addr("p", "j", 0, Family::V4, 7)),
            Some(7)
        );
        assert!(addr("p", "j", 0, Family::V4, 9) < addr("p", "j", 0, Family::V4, 8));
        let pf = preflight("p/1", "j", "id 1");
        assert_eq!(
            parse_preflight(&pf),
            Some(("p/1".to_string(), "j".to_string(), "id 1".to_string()))
        );
        let r = preflight_result("p/1", "j", "id 1", "n/1");
        assert!(!r.starts_with(PREFLIGHT_PREFIX));
        assert_eq!(parse_preflight(&format!("{pf}/x")), None);
    }
}

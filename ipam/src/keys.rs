//! Store key layout. Every variable component is escaped so that no caller
//! string can contain `/` or leave its prefix; keys stay ASCII.
//!
//! | key | value |
//! |---|---|
//! | `a/<cid>/<ifname>` | attachment record |
//! | `p/<deadline:016x>/<cid>/<ifname>` | pending (uncommitted) reservation index |
//! | `j/<pool>/<job>` | job record |
//! | `m/<pool>/<job>/<cid>/<ifname>` | job membership index |
//! | `d/<pool>/<job>` | draining job index |
//! | `ip/<pool>/<job>/<rail>/<4|6>/<!offset:016x>` | address holder (offset inverted: key order = highest first) |
//! | `s/<pool>/<4|6>/<index:016x>` | job subnet claim |
//! | `i/<pool>/<id:08x>` | isolation ID claim |
//! | `r/<key>` | daemon record |

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

pub(crate) fn attachment(k: &AttachmentKey) -> String {
    format!("a/{}", att_tail(k))
}

pub(crate) const ATTACHMENT_PREFIX: &str = "a/";

pub(crate) const PENDING_PREFIX: &str = "p/";

pub(crate) fn pending(deadline_ms: u64, k: &AttachmentKey) -> String {
    format!("p/{deadline_ms:016x}/{}", att_tail(k))
}

/// Parses a pending key into (deadline, attachment).
pub(crate) fn parse_pending(key: &str) -> Option<(u64, AttachmentKey)> {
    let rest = key.strip_prefix(PENDING_PREFIX)?;
    let (d, tail) = rest.split_once('/')?;
    Some((u64::from_str_radix(d, 16).ok()?, parse_att_tail(tail)?))
}

pub(crate) const JOB_PREFIX: &str = "j/";

pub(crate) fn job(pool: &str, job: &str) -> String {
    format!("j/{}/{}", esc(pool), esc(job))
}

pub(crate) fn job_prefix_of_pool(pool: &str) -> String {
    format!("j/{}/", esc(pool))
}

pub(crate) fn member(pool: &str, job: &str, k: &AttachmentKey) -> String {
    format!("m/{}/{}/{}", esc(pool), esc(job), att_tail(k))
}

pub(crate) fn members_prefix(pool: &str, job: &str) -> String {
    format!("m/{}/{}/", esc(pool), esc(job))
}

pub(crate) const DRAINING_PREFIX: &str = "d/";

pub(crate) fn draining(pool: &str, job: &str) -> String {
    format!("d/{}/{}", esc(pool), esc(job))
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
    format!("ip/{}/{}/{rail}/{}/", esc(pool), esc(job), fam(f))
}

pub(crate) fn job_addrs_prefix(pool: &str, job: &str) -> String {
    format!("ip/{}/{}/", esc(pool), esc(job))
}

/// The host offset encoded at the end of an address key.
pub(crate) fn parse_addr_offset(key: &str) -> Option<u64> {
    let (_, hex) = key.rsplit_once('/')?;
    u64::from_str_radix(hex, 16).ok().map(|inv| u64::MAX - inv)
}

pub(crate) fn subnet(pool: &str, f: Family, index: u64) -> String {
    format!("s/{}/{}/{index:016x}", esc(pool), fam(f))
}

pub(crate) fn subnets_prefix(pool: &str, f: Family) -> String {
    format!("s/{}/{}/", esc(pool), fam(f))
}

pub(crate) fn parse_index(key: &str) -> Option<u64> {
    let (_, hex) = key.rsplit_once('/')?;
    u64::from_str_radix(hex, 16).ok()
}

pub(crate) fn isolation(pool: &str, id: u32) -> String {
    format!("i/{}/{id:08x}", esc(pool))
}

pub(crate) fn isolation_prefix(pool: &str) -> String {
    format!("i/{}/", esc(pool))
}

pub(crate) const RECORD_PREFIX: &str = "r/";

pub(crate) fn record(key: &str) -> String {
    format!("r/{}", esc(key))
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
        assert_eq!(parse_pending(&pending(42, &k)), Some((42, k)));
        assert_eq!(
            parse_addr_offset(&addr("p", "j", 0, Family::V4, 7)),
            Some(7)
        );
        assert!(addr("p", "j", 0, Family::V4, 9) < addr("p", "j", 0, Family::V4, 8));
    }
}

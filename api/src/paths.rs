//! URL paths of API version 1, shared by the client and the daemon.

/// Prefix of every version-1 path.
pub const PREFIX: &str = "/v1";
/// `POST`: reserve an attachment.
pub const RESERVE: &str = "/v1/attachments/reserve";
/// `POST`: commit a reservation.
pub const COMMIT: &str = "/v1/attachments/commit";
/// `POST`: release an attachment.
pub const RELEASE: &str = "/v1/attachments/release";
/// `POST`: look an attachment up.
pub const CHECK: &str = "/v1/attachments/check";
/// `GET`: every attachment.
pub const ATTACHMENTS: &str = "/v1/attachments";
/// `GET`: daemon status.
pub const STATUS: &str = "/v1/status";
/// `POST`: garbage-collect attachments.
pub const GC: &str = "/v1/gc";
/// `GET`: jobs; `GET {JOBS}/{job}`: one job.
pub const JOBS: &str = "/v1/jobs";
/// `GET`: VFs.
pub const VFS: &str = "/v1/vfs";
/// `POST`: gang reservation.
pub const GANG: &str = "/v1/gang";
/// `GET`: the node's GPU/NIC topology (matrix view).
pub const TOPOLOGY: &str = "/v1/topology";
/// `GET`: the nodes of the store (one with the embedded store), alive or stale.
pub const NODES: &str = "/v1/nodes";
/// `POST`: release everything a node that will not return holds.
pub const FORGET_NODE: &str = "/v1/nodes/forget";
/// Last segment of an attachment's hints path (see [`hints`]).
pub const HINTS_SUFFIX: &str = "/hints";

/// `GET`: the collective-ops hints of an attachment's pod,
/// `/v1/attachments/{containerID}/{ifname}/hints` with encoded segments.
pub fn hints(container_id: &str, ifname: &str) -> String {
    format!(
        "{ATTACHMENTS}/{}/{}{HINTS_SUFFIX}",
        encode_segment(container_id),
        encode_segment(ifname)
    )
}

/// The (containerID, ifname) of a hints path, decoded; None for any other path.
pub fn parse_hints(path: &str) -> Option<(String, String)> {
    let rest = path
        .strip_prefix(ATTACHMENTS)?
        .strip_prefix('/')?
        .strip_suffix(HINTS_SUFFIX)?;
    let (cid, ifname) = rest.split_once('/')?;
    if ifname.contains('/') {
        return None;
    }
    Some((decode_segment(cid)?, decode_segment(ifname)?))
}

/// Path of one job, with the name percent-encoded as a path segment.
pub fn job(name: &str) -> String {
    format!("{JOBS}/{}", encode_segment(name))
}

/// What a `/v1/jobs/{job}/<action>` path asks of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    /// `GET .../wait`: answer once the job's ranks are attached.
    Wait,
    /// `POST .../preflight`: check the job's network end to end.
    Preflight,
}

impl JobAction {
    fn segment(self) -> &'static str {
        match self {
            Self::Wait => "wait",
            Self::Preflight => "preflight",
        }
    }
}

/// Path of an action on one job (`/v1/jobs/{job}/wait`, `.../preflight`).
pub fn job_action(name: &str, action: JobAction) -> String {
    format!("{}/{}", job(name), action.segment())
}

/// The decoded job and the action of a job action path; None for any other path.
pub fn parse_job_action(path: &str) -> Option<(String, JobAction)> {
    let (seg, action) = path
        .strip_prefix(JOBS)?
        .strip_prefix('/')?
        .split_once('/')?;
    let action = [JobAction::Wait, JobAction::Preflight]
        .into_iter()
        .find(|a| a.segment() == action)?;
    Some((decode_segment(seg)?, action))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`encode_segment`]; `None` on a bad escape or non-UTF-8 result.
pub fn decode_segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_round_trip_through_the_path() {
        for name in ["llama-70b", "a/b c", "ü%x", ""] {
            let p = job(name);
            let seg = p.strip_prefix("/v1/jobs/").unwrap();
            assert!(!seg.contains('/'));
            assert_eq!(decode_segment(seg).as_deref(), Some(name));
        }
        assert_eq!(decode_segment("%G0"), None);
        assert_eq!(decode_segment("%4"), None);
    }

    #[test]
    fn job_action_paths_round_trip() {
        let p = job_action("a b", JobAction::Wait);
        assert_eq!(p, "/v1/jobs/a%20b/wait");
        assert_eq!(parse_job_action(&p), Some(("a b".into(), JobAction::Wait)));
        assert_eq!(
            parse_job_action("/v1/jobs/x/preflight"),
            Some(("x".into(), JobAction::Preflight))
        );
        assert_eq!(parse_job_action("/v1/jobs/x"), None);
        assert_eq!(parse_job_action("/v1/jobs/x/other"), None);
        assert_eq!(parse_job_action("/v1/jobs/x/wait/more"), None);
    }

    #[test]
    fn hints_paths_round_trip_and_reject_other_shapes() {
        let p = hints("abc.1", "net1");
        assert_eq!(p, "/v1/attachments/abc.1/net1/hints");
        assert_eq!(parse_hints(&p), Some(("abc.1".into(), "net1".into())));
        assert_eq!(
            parse_hints(&hints("a/b", "x y")),
            Some(("a/b".into(), "x y".into()))
        );
        assert_eq!(parse_hints("/v1/attachments/reserve"), None);
        assert_eq!(parse_hints("/v1/attachments/a/b/c/hints"), None);
        assert_eq!(parse_hints("/v1/attachments/a/hints"), None);
    }
}

//! jobnetd API requests as the daemon takes them: the JSON body decoded
//! into the type its endpoint expects (`serde_json::from_slice`, as the
//! server's `parse` does), then the checks the engine runs before touching
//! state (`daemon/src/validate.rs`, compiled in from the daemon's source so
//! the fuzz build need not build the whole daemon), and the path segments
//! the GET routes decode.
//!
//! Byte 0 picks the endpoint; the rest is the body (or the request path,
//! with its query after a `?`).
#![no_main]

use jobnet_api::paths;
use jobnet_api::{
    AttachmentKey, ForgetNodeRequest, GangReserveRequest, GcRequest, JobWaitQuery, PageRequest,
    PreflightRequest, ReserveRequest,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[allow(dead_code)]
#[path = "../../daemon/src/validate.rs"]
mod validate;

/// Decodes like the server and checks that what was accepted survives a
/// trip back to JSON unchanged (the CLI and the CNI plugin send re-encoded values).
fn decode<T>(body: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(body).ok()?;
    let text =
        serde_json::to_vec(&value).unwrap_or_else(|e| panic!("cannot re-encode {value:?}: {e}"));
    let back: T = serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("own encoding of {value:?} rejected: {e}"));
    assert_eq!(back, value, "JSON round trip changed the value");
    Some(value)
}

/// What a validated key may be used for: a path component, a map key.
fn check_valid_key(k: &AttachmentKey) {
    for part in [&k.container_id, &k.ifname] {
        assert!(!part.is_empty() && !part.contains('/') && !part.contains('\0'));
    }
}

fn check_valid_name(name: &str) {
    assert!(!name.is_empty() && !name.contains('/') && !name.contains('\0'));
}

fuzz_target!(|data: &[u8]| {
    let Some((&endpoint, body)) = data.split_first() else {
        return;
    };
    match endpoint % 12 {
        0 => {
            if let Some(r) = decode::<ReserveRequest>(body) {
                if validate::reserve(&r).is_ok() {
                    check_valid_key(&r.key());
                    check_valid_name(&r.job);
                    assert!(r.netns.starts_with('/'));
                    let _ = r.key().to_string();
                }
            }
        }
        1..=3 => {
            if let Some(k) = decode::<AttachmentKey>(body) {
                if validate::key(&k).is_ok() {
                    check_valid_key(&k);
                }
            }
        }
        4 => {
            if let Some(g) = decode::<GcRequest>(body) {
                for k in &g.valid {
                    let _ = validate::key(k);
                }
            }
        }
        5 => {
            if let Some(g) = decode::<GangReserveRequest>(body) {
                if validate::job(&g.job).is_ok() {
                    check_valid_name(&g.job);
                }
            }
        }
        6 => {
            if let Some(f) = decode::<ForgetNodeRequest>(body) {
                if validate::job(&f.node).is_ok() {
                    check_valid_name(&f.node);
                }
            }
        }
        7 => {
            // GET /v1/jobs/{job}: one percent-encoded segment.
            let seg = String::from_utf8_lossy(body);
            if seg.contains('/') {
                return;
            }
            if let Some(job) = paths::decode_segment(&seg) {
                assert_eq!(
                    paths::decode_segment(&paths::encode_segment(&job)),
                    Some(job.clone())
                );
                let path = paths::job(&job);
                assert_eq!(
                    path.matches('/').count(),
                    3,
                    "job path {path:?} has extra segments"
                );
                if validate::job(&job).is_ok() {
                    check_valid_name(&job);
                }
            }
        }
        9 => {
            // ?limit=N&continue=TOKEN of the paged listings.
            let query = String::from_utf8_lossy(body);
            if let Ok(page) = PageRequest::from_query(Some(&query)) {
                let again = page.to_query();
                let again = again.strip_prefix('?').unwrap_or(&again);
                assert_eq!(PageRequest::from_query(Some(again)), Ok(page.clone()));
                assert!((1..=jobnet_api::MAX_PAGE as usize).contains(&page.limit()));
            }
        }
        10 => {
            // GET /v1/jobs/{job}/wait?ranks=N&timeoutMs=T, POST .../preflight
            let text = String::from_utf8_lossy(body);
            let (path, query) = match text.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (&*text, None),
            };
            if let Some((job, action)) = paths::parse_job_action(path) {
                assert_eq!(
                    paths::parse_job_action(&paths::job_action(&job, action)),
                    Some((job.clone(), action)),
                    "job action path does not round-trip"
                );
                if validate::job(&job).is_ok() {
                    check_valid_name(&job);
                }
            }
            if let Ok(wait) = JobWaitQuery::from_query(query) {
                let again = wait.to_query();
                let again = again.strip_prefix('?').unwrap_or(&again);
                assert_eq!(JobWaitQuery::from_query(Some(again)), Ok(wait));
            }
        }
        11 => {
            // An empty preflight body asks for the defaults.
            if !body.is_empty() {
                let _ = decode::<PreflightRequest>(body);
            }
        }
        _ => {
            // GET /v1/attachments/{containerID}/{ifname}/hints
            let path = String::from_utf8_lossy(body);
            if let Some((cid, ifname)) = paths::parse_hints(&path) {
                let key = AttachmentKey::new(cid, ifname);
                assert_eq!(
                    paths::parse_hints(&paths::hints(&key.container_id, &key.ifname)),
                    Some((key.container_id.clone(), key.ifname.clone())),
                    "hints path does not round-trip"
                );
                if validate::key(&key).is_ok() {
                    check_valid_key(&key);
                }
            }
        }
    }
});

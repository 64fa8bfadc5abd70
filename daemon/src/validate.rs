//! Input checks on API requests, before anything touches state.

use jobnet_api::{ApiError, AttachmentKey, ErrorCode, ReserveRequest};

/// Longest container ID accepted.
const MAX_CONTAINER_ID: usize = 256;
/// Longest job, pool or network name accepted.
const MAX_NAME: usize = 253;
/// Longest netns path accepted.
const MAX_PATH: usize = 4096;
/// Most GPUs one request may list.
const MAX_GPUS: usize = 64;

fn bad(msg: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, msg)
}

fn name_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A CNI container ID: 1-256 of `[A-Za-z0-9._-]`.
pub fn container_id(s: &str) -> Result<(), ApiError> {
    if s.is_empty() || s.len() > MAX_CONTAINER_ID || !name_chars(s) {
        return Err(bad(format!(
            "containerID must be 1-{MAX_CONTAINER_ID} characters of A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(())
}

/// An attachment key: valid container ID and interface name.
pub fn key(k: &AttachmentKey) -> Result<(), ApiError> {
    container_id(&k.container_id)?;
    jobnet_hw::sriov::validate_netdev_name(&k.ifname).map_err(|_| {
        bad(format!(
            "ifname {:?} is not a valid interface name",
            k.ifname
        ))
    })
}

/// A job, pool or network name: 1-253 of `[A-Za-z0-9._-]`.
pub fn name(what: &str, s: &str) -> Result<(), ApiError> {
    if s.is_empty() || s.len() > MAX_NAME || !name_chars(s) {
        return Err(bad(format!(
            "{what} must be 1-{MAX_NAME} characters of A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(())
}

/// A job name.
pub fn job(s: &str) -> Result<(), ApiError> {
    name("job", s)
}

/// Everything in a reserve request.
pub fn reserve(r: &ReserveRequest) -> Result<(), ApiError> {
    key(&r.key())?;
    job(&r.job)?;
    if let Some(p) = &r.pool {
        name("pool", p)?;
    }
    if let Some(n) = &r.network {
        name("network", n)?;
    }
    if !r.netns.starts_with('/') || r.netns.len() > MAX_PATH || r.netns.contains('\0') {
        return Err(bad("netns must be an absolute path".into()));
    }
    if r.gpus.len() > MAX_GPUS || r.gpus.iter().any(|g| g.is_empty() || g.len() > 64) {
        return Err(bad(format!("at most {MAX_GPUS} GPUs of 1-64 characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> ReserveRequest {
        serde_json::from_str(
            r#"{"containerID":"abc123","ifname":"net1","netns":"/run/netns/x","job":"j-1"}"#,
        )
        .unwrap()
    }

    #[test]
    fn accepts_normal_and_rejects_hostile_input() {
        assert!(reserve(&req()).is_ok());
        let mut r = req();
        r.container_id = "../../etc".into();
        assert_eq!(reserve(&r).unwrap_err().code, ErrorCode::InvalidArgument);
        let mut r = req();
        r.ifname = "a/b".into();
        assert!(reserve(&r).is_err());
        let mut r = req();
        r.ifname = "0123456789abcdef".into();
        assert!(reserve(&r).is_err());
        let mut r = req();
        r.netns = "relative".into();
        assert!(reserve(&r).is_err());
        let mut r = req();
        r.job = "a b".into();
        assert!(reserve(&r).is_err());
        let mut r = req();
        r.job = "x".repeat(254);
        assert!(reserve(&r).is_err());
    }
}

//! The API server: HTTP/1.1 + JSON over a root-only Unix socket.
//!
//! Every connection's peer credentials are checked on accept; requests are
//! size-limited, routed under `/v1/`, and answered with the typed body or an
//! [`ApiError`] body. Shutdown stops accepting, lets in-flight requests finish
//! and then returns.

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use jobnet_api::paths;
use jobnet_api::{
    ApiError, Attachment, AttachmentKey, ErrorCode, ForgetNodeRequest, ForgetNodeResponse,
    GangReservation, GangReserveRequest, GcRequest, GcResponse, JobDetail, JobSummary,
    JobWaitQuery, NodeView, Page, PageRequest, PodHints, PreflightRequest, ReleaseResponse,
    ReserveRequest, StatusResponse, VfInfo,
};
use jobnet_hw::topology::TopoView;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::jobcheck::JobActions;
use crate::metrics::Metrics;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// What the API does; the daemon's engine implements it (tests may stub it).
pub trait ApiHandler: Send + Sync + 'static {
    /// Reserves an attachment.
    fn reserve(
        &self,
        req: ReserveRequest,
    ) -> impl Future<Output = Result<Attachment, ApiError>> + Send;
    /// Commits a reservation.
    fn commit(
        &self,
        key: AttachmentKey,
    ) -> impl Future<Output = Result<Attachment, ApiError>> + Send;
    /// Releases an attachment.
    fn release(
        &self,
        key: AttachmentKey,
    ) -> impl Future<Output = Result<ReleaseResponse, ApiError>> + Send;
    /// Returns a recorded attachment.
    fn check(
        &self,
        key: AttachmentKey,
    ) -> impl Future<Output = Result<Attachment, ApiError>> + Send;
    /// Daemon status.
    fn status(&self) -> impl Future<Output = Result<StatusResponse, ApiError>> + Send;
    /// Releases everything not valid.
    fn gc(&self, req: GcRequest) -> impl Future<Output = Result<GcResponse, ApiError>> + Send;
    /// Lists jobs, a page at a time.
    fn jobs(
        &self,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<JobSummary>, ApiError>> + Send;
    /// Shows one job.
    fn job(&self, job: String) -> impl Future<Output = Result<JobDetail, ApiError>> + Send;
    /// Lists the node's attachments, a page at a time.
    fn attachments(
        &self,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<Attachment>, ApiError>> + Send;
    /// Lists VFs.
    fn vfs(&self) -> impl Future<Output = Result<Vec<VfInfo>, ApiError>> + Send;
    /// Gang reservation.
    fn gang_reserve(
        &self,
        req: GangReserveRequest,
    ) -> impl Future<Output = Result<GangReservation, ApiError>> + Send;
    /// The nodes of the store.
    fn nodes(&self) -> impl Future<Output = Result<Vec<NodeView>, ApiError>> + Send;
    /// Forgets a node that will not return.
    fn forget_node(
        &self,
        req: ForgetNodeRequest,
    ) -> impl Future<Output = Result<ForgetNodeResponse, ApiError>> + Send;
    /// The node's GPU/NIC topology (handlers without one answer not-found).
    fn topology(&self) -> impl Future<Output = Result<TopoView, ApiError>> + Send {
        async {
            Err(ApiError::new(
                ErrorCode::NotFound,
                "no topology on this daemon",
            ))
        }
    }
    /// The collective-ops hints of an attachment's pod.
    fn hints(&self, key: AttachmentKey) -> impl Future<Output = Result<PodHints, ApiError>> + Send {
        async move {
            Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no hints for {key} on this daemon"),
            ))
        }
    }
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another daemon answers on the socket.
    #[error("another jobnetd is listening on {0}")]
    InUse(String),
    /// The path exists and is not a socket.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(String),
    /// An OS call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Binds the API socket with mode 0600, replacing a stale socket file.
pub fn bind(path: &Path) -> Result<UnixListener, ListenError> {
    let shown = path.display().to_string();
    let io = |what: &'static str| {
        let shown = shown.clone();
        move |source| ListenError::Io {
            what,
            path: shown,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating directory of"))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) => {
            use std::os::unix::fs::FileTypeExt;
            if !md.file_type().is_socket() {
                return Err(ListenError::NotASocket(shown));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ListenError::InUse(shown));
            }
            std::fs::remove_file(path).map_err(io("removing stale socket"))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspecting")(e)),
    }
    let std_listener = std::os::unix::net::UnixListener::bind(path).map_err(io("binding"))?;
    // Peer credentials are checked on every accept too, so the short window
    // before the chmod grants nothing.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io("chmod"))?;
    std_listener
        .set_nonblocking(true)
        .map_err(io("setting non-blocking"))?;
    UnixListener::from_std(std_listener).map_err(io("registering"))
}

/// Serves the API on `listener` until `shutdown` becomes true, then drains;
/// the job readiness calls go to `jobs`.
pub async fn serve<H: ApiHandler, K: JobActions>(
    listener: UnixListener,
    handler: Arc<H>,
    jobs: Arc<K>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own_uid = unsafe { libc::geteuid() };
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let allowed = match stream.peer_cred() {
            Ok(cred) if cred.uid() == 0 || cred.uid() == own_uid => true,
            Ok(cred) => {
                tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), "refusing non-root API peer");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "no peer credentials; refusing");
                false
            }
        };
        if !allowed {
            metrics.error(ErrorCode::Forbidden);
            conns.spawn(refuse(stream));
            continue;
        }
        conns.spawn(serve_conn(
            stream,
            handler.clone(),
            jobs.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight API connections did not finish in time");
        conns.abort_all();
    }
}

/// Answers one 403 without reading what the peer sent, then closes.
async fn refuse(stream: UnixStream) {
    let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(error_response(&ApiError::new(
            ErrorCode::Forbidden,
            "the jobnetd API is for root only",
        )))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(2))
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), svc);
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
}

async fn serve_conn<H: ApiHandler, K: JobActions>(
    stream: UnixStream,
    handler: Arc<H>,
    jobs: Arc<K>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let jobs = jobs.clone();
        let metrics = metrics.clone();
        async move { Ok::<_, Infallible>(handle(handler.as_ref(), jobs.as_ref(), &metrics, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "API connection ended with an error");
    }
}

/// Handles one request: limits, routing, decoding, the call, the answer.
pub async fn handle<H: ApiHandler, K: JobActions>(
    handler: &H,
    jobs: &K,
    metrics: &Metrics,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let endpoint = endpoint_name(&method, &path);
    let result = match read_body(req).await {
        Ok(body) => route(handler, jobs, &method, &path, query.as_deref(), body).await,
        Err(e) => Err(e),
    };
    metrics.observe_request(endpoint, started.elapsed());
    match result {
        Ok(bytes) => json_response(StatusCode::OK, bytes),
        Err(e) => {
            metrics.error(e.code);
            if e.code.http_status() >= 500 {
                tracing::warn!(%method, %path, code = %e.code, message = %e.message, "API error");
            } else {
                tracing::debug!(%method, %path, code = %e.code, message = %e.message, "API error");
            }
            error_response(&e)
        }
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("request body exceeds {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(ApiError::new(
            ErrorCode::MalformedRequest,
            format!("reading request body: {e}"),
        )),
    }
}

/// Operation name for metrics (bounded set: unknown paths are "other").
fn endpoint_name(method: &Method, path: &str) -> &'static str {
    match (method, path) {
        (&Method::POST, paths::RESERVE) => "reserve",
        (&Method::POST, paths::COMMIT) => "commit",
        (&Method::POST, paths::RELEASE) => "release",
        (&Method::POST, paths::CHECK) => "check",
        (&Method::GET, paths::ATTACHMENTS) => "attachments",
        (&Method::GET, paths::STATUS) => "status",
        (&Method::POST, paths::GC) => "gc",
        (&Method::GET, paths::JOBS) => "jobs",
        (&Method::GET, paths::VFS) => "vfs",
        (&Method::POST, paths::GANG) => "gang",
        (&Method::GET, paths::TOPOLOGY) => "topology",
        (&Method::GET, paths::NODES) => "nodes",
        (&Method::POST, paths::FORGET_NODE) => "forget-node",
        (_, p) if paths::parse_job_action(p).is_some_and(|(_, a)| a == paths::JobAction::Wait) => {
            "job-wait"
        }
        (_, p) if paths::parse_job_action(p).is_some() => "preflight",
        (&Method::GET, p) if p.starts_with("/v1/jobs/") => "job",
        (&Method::GET, p) if paths::parse_hints(p).is_some() => "hints",
        _ => "other",
    }
}

async fn route<H: ApiHandler, K: JobActions>(
    h: &H,
    jobs: &K,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: Bytes,
) -> Result<Bytes, ApiError> {
    let page =
        || PageRequest::from_query(query).map_err(|m| ApiError::new(ErrorCode::InvalidArgument, m));
    let is_post = *method == Method::POST;
    let is_get = *method == Method::GET;
    match path {
        paths::RESERVE if is_post => to_json(&h.reserve(parse(&body)?).await?),
        paths::COMMIT if is_post => {
            let att = h.commit(parse(&body)?).await?;
            jobs.committed(&att);
            to_json(&att)
        }
        paths::RELEASE if is_post => to_json(&h.release(parse(&body)?).await?),
        paths::CHECK if is_post => to_json(&h.check(parse(&body)?).await?),
        paths::GC if is_post => to_json(&h.gc(parse(&body)?).await?),
        paths::GANG if is_post => to_json(&h.gang_reserve(parse(&body)?).await?),
        paths::FORGET_NODE if is_post => to_json(&h.forget_node(parse(&body)?).await?),
        paths::NODES if is_get => to_json(&h.nodes().await?),
        paths::STATUS if is_get => to_json(&h.status().await?),
        paths::JOBS if is_get => to_json(&h.jobs(page()?).await?),
        paths::ATTACHMENTS if is_get => to_json(&h.attachments(page()?).await?),
        paths::VFS if is_get => to_json(&h.vfs().await?),
        paths::TOPOLOGY if is_get => to_json(&h.topology().await?),
        p if paths::parse_job_action(p).is_some() => {
            job_action(jobs, method, p, query, &body).await
        }
        p if is_get && p.starts_with("/v1/jobs/") => {
            let seg = p.trim_start_matches("/v1/jobs/");
            let job = (!seg.contains('/'))
                .then(|| paths::decode_segment(seg))
                .flatten()
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidArgument, "bad job name in path"))?;
            to_json(&h.job(job).await?)
        }
        p if is_get && p.ends_with(paths::HINTS_SUFFIX) && p.starts_with(paths::ATTACHMENTS) => {
            let (cid, ifname) = paths::parse_hints(p).ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidArgument, "bad attachment in hints path")
            })?;
            to_json(&h.hints(AttachmentKey::new(cid, ifname)).await?)
        }
        paths::RESERVE
        | paths::COMMIT
        | paths::RELEASE
        | paths::CHECK
        | paths::GC
        | paths::GANG
        | paths::STATUS
        | paths::JOBS
        | paths::ATTACHMENTS
        | paths::VFS
        | paths::NODES
        | paths::FORGET_NODE
        | paths::TOPOLOGY => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        )),
        p if p == paths::PREFIX || p.starts_with("/v1/") => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no such API path {p}"),
        )),
        p => Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "unknown API version or path {}: this daemon serves /v1/",
                p.chars().take(128).collect::<String>()
            ),
        )),
    }
}

/// `GET /v1/jobs/{job}/wait` and `POST /v1/jobs/{job}/preflight`.
async fn job_action<K: JobActions>(
    jobs: &K,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Bytes, ApiError> {
    let bad = |m: String| ApiError::new(ErrorCode::InvalidArgument, m);
    let (job, action) =
        paths::parse_job_action(path).ok_or_else(|| bad("bad job name in path".into()))?;
    match (action, method) {
        (paths::JobAction::Wait, &Method::GET) => to_json(
            &jobs
                .wait(job, JobWaitQuery::from_query(query).map_err(bad)?)
                .await?,
        ),
        (paths::JobAction::Preflight, &Method::POST) => {
            // An empty body asks for the defaults.
            let req = if body.is_empty() {
                PreflightRequest::default()
            } else {
                parse(body)?
            };
            to_json(&jobs.preflight(job, req).await?)
        }
        _ => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        )),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedRequest,
            format!("invalid JSON body: {e}"),
        )
    })
}

fn to_json<T: Serialize>(v: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("encoding answer: {e}")))
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The JSON error body with the code's HTTP status.
pub fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(e).unwrap_or_else(|_| b"{\"code\":\"internal\"}".to_vec());
    json_response(status, Bytes::from(body))
}

//! A small client for jobnetd's Unix socket: one HTTP/1.1 connection per call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::error::{ApiError, ErrorCode};
use crate::jobcheck::*;
use crate::paths;
use crate::types::*;

/// Default daemon socket.
pub const DEFAULT_SOCKET: &str = "/run/jobnet/jobnetd.sock";
/// Environment variable that overrides the socket path for tools.
pub const SOCKET_ENV: &str = "JOBNET_SOCKET";
/// Largest answer the client accepts (a node with 100k attachments fits).
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// Async client of jobnetd's API. Cheap to clone; holds no connection.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Client {
    /// A client for the daemon listening on `socket`, with default timeouts (2 s connect, 30 s call).
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Sets the connect and whole-call timeouts.
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// The socket path this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Reserves addresses and VF(s) for an attachment (idempotent per key).
    pub async fn reserve(&self, req: &ReserveRequest) -> Result<Attachment, ApiError> {
        self.post(paths::RESERVE, req).await
    }

    /// Commits a reservation once the pod interface exists (idempotent).
    pub async fn commit(&self, key: &AttachmentKey) -> Result<Attachment, ApiError> {
        self.post(paths::COMMIT, key).await
    }

    /// Releases an attachment; `released: false` when nothing was recorded.
    pub async fn release(&self, key: &AttachmentKey) -> Result<ReleaseResponse, ApiError> {
        self.post(paths::RELEASE, key).await
    }

    /// Returns the recorded attachment, or `unknown-attachment`.
    pub async fn check(&self, key: &AttachmentKey) -> Result<Attachment, ApiError> {
        self.post(paths::CHECK, key).await
    }

    /// Daemon health and free resources.
    pub async fn status(&self) -> Result<StatusResponse, ApiError> {
        self.get(paths::STATUS).await
    }

    /// Releases every attachment not listed as valid.
    pub async fn gc(&self, req: &GcRequest) -> Result<GcResponse, ApiError> {
        self.post(paths::GC, req).await
    }

    /// Jobs known to the store (cluster-wide with etcd), every page.
    pub async fn jobs(&self) -> Result<Vec<JobSummary>, ApiError> {
        self.all_pages(paths::JOBS).await
    }

    /// One page of jobs.
    pub async fn jobs_page(&self, page: &PageRequest) -> Result<Page<JobSummary>, ApiError> {
        self.get(&format!("{}{}", paths::JOBS, page.to_query()))
            .await
    }

    /// One job with its members in rank order.
    pub async fn job(&self, job: &str) -> Result<JobDetail, ApiError> {
        self.get(&paths::job(job)).await
    }

    /// Every recorded attachment of the node, every page.
    pub async fn attachments(&self) -> Result<Vec<Attachment>, ApiError> {
        self.all_pages(paths::ATTACHMENTS).await
    }

    /// One page of the node's attachments.
    pub async fn attachments_page(&self, page: &PageRequest) -> Result<Page<Attachment>, ApiError> {
        self.get(&format!("{}{}", paths::ATTACHMENTS, page.to_query()))
            .await
    }

    /// Follows `continue` tokens until the last page (a bounded number of
    /// requests per page, each answer bounded by the server's page size).
    async fn all_pages<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, ApiError> {
        let mut out = Vec::new();
        let mut req = PageRequest::default();
        loop {
            let page: Page<T> = self.get(&format!("{path}{}", req.to_query())).await?;
            out.extend(page.items);
            match page.next {
                Some(t) if req.token.as_ref() != Some(&t) => req.token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Every VF the daemon manages, with its state.
    pub async fn vfs(&self) -> Result<Vec<VfInfo>, ApiError> {
        self.get(paths::VFS).await
    }

    /// Reserves a whole job's subnets and rank addresses, all or nothing.
    pub async fn gang_reserve(
        &self,
        req: &GangReserveRequest,
    ) -> Result<GangReservation, ApiError> {
        self.post(paths::GANG, req).await
    }

    /// The nodes of the store, alive or stale.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ApiError> {
        self.get(paths::NODES).await
    }

    /// Releases everything a node that will not return holds.
    pub async fn forget_node(
        &self,
        req: &ForgetNodeRequest,
    ) -> Result<ForgetNodeResponse, ApiError> {
        self.post(paths::FORGET_NODE, req).await
    }

    /// The collective-ops hints of the pod an attachment belongs to.
    pub async fn hints(&self, key: &AttachmentKey) -> Result<PodHints, ApiError> {
        self.get(&paths::hints(&key.container_id, &key.ifname))
            .await
    }

    /// GETs `path` and decodes the JSON answer as `T`: for answers whose
    /// type is not this crate's (the topology view of [`paths::TOPOLOGY`]).
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.get(path).await
    }

    /// Waits (on the server, up to `timeout`) until ranks `0..ranks` of
    /// `job` are attached on every rail; the answer says whether they are.
    pub async fn job_wait(
        &self,
        job: &str,
        ranks: u32,
        timeout: Duration,
    ) -> Result<JobWaitResponse, ApiError> {
        let q = JobWaitQuery {
            ranks,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let path = format!(
            "{}{}",
            paths::job_action(job, paths::JobAction::Wait),
            q.to_query()
        );
        self.outliving(timeout).get(&path).await
    }

    /// Checks `job`'s network end to end from every node holding its ranks.
    pub async fn preflight(
        &self,
        job: &str,
        req: &PreflightRequest,
    ) -> Result<PreflightReport, ApiError> {
        let budget = Duration::from_millis(req.timeout_ms.unwrap_or(60_000));
        self.outliving(budget)
            .post(&paths::job_action(job, paths::JobAction::Preflight), req)
            .await
    }

    /// This client with a call timeout past a server-side wait of `wait`.
    fn outliving(&self, wait: Duration) -> Self {
        let call = wait.saturating_add(Duration::from_secs(15));
        self.clone()
            .with_timeouts(self.connect_timeout, call.max(self.request_timeout))
    }

    async fn get<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, ApiError> {
        self.call(Method::GET, path, Bytes::new()).await
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, ApiError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("encoding request: {e}")))?;
        self.call(Method::POST, path, Bytes::from(body)).await
    }

    async fn call<Resp: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Resp, ApiError> {
        let (status, bytes) = tokio::time::timeout(self.request_timeout, async {
            let stream = self.connect().await?;
            exchange(stream, method, path, body).await
        })
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Timeout,
                format!("jobnetd did not answer within {:?}", self.request_timeout),
            )
        })??;
        decode(status, &bytes)
    }

    async fn connect(&self) -> Result<UnixStream, ApiError> {
        let unavailable = |detail: String| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "cannot reach jobnetd at {}: {detail}",
                    self.socket.display()
                ),
            )
        };
        match tokio::time::timeout(self.connect_timeout, UnixStream::connect(&self.socket)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(unavailable(e.to_string())),
            Err(_) => Err(unavailable("connect timed out".into())),
        }
    }
}

/// Sends one request on a fresh connection and reads the whole answer.
async fn exchange(
    stream: UnixStream,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), ApiError> {
    let broken = |what: &str, e: &dyn std::fmt::Display| {
        ApiError::new(ErrorCode::Unavailable, format!("jobnetd {what}: {e}"))
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| broken("handshake", &e))?;
    // The connection future drives the socket; it ends when the sender is dropped.
    let driver = tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "jobnetd")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("building request: {e}")))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| broken("closed the connection", &e))?;
    let status = resp.status();
    let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| broken("answer unreadable", &e))?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok((status, bytes))
}

/// Turns a status and body into the typed answer or the daemon's error.
fn decode<Resp: DeserializeOwned>(status: StatusCode, bytes: &[u8]) -> Result<Resp, ApiError> {
    if status.is_success() {
        return serde_json::from_slice(bytes).map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("unexpected answer from jobnetd: {e}"),
            )
        });
    }
    match serde_json::from_slice::<ApiError>(bytes) {
        Ok(err) => Err(err),
        Err(_) => Err(ApiError::new(
            ErrorCode::Internal,
            format!(
                "jobnetd answered {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
            ),
        )),
    }
}

/// Blocking wrapper for callers without a runtime: each call runs on a private
/// current-thread runtime. Do not use it from inside an async context.
#[derive(Debug)]
pub struct BlockingClient {
    inner: Client,
    rt: tokio::runtime::Runtime,
}

impl BlockingClient {
    /// A blocking client for the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Result<Self, ApiError> {
        Self::from_client(Client::new(socket))
    }

    /// Wraps an async client (keeps its timeouts).
    pub fn from_client(inner: Client) -> Result<Self, ApiError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("tokio runtime: {e}")))?;
        Ok(Self { inner, rt })
    }

    /// See [`Client::reserve`].
    pub fn reserve(&self, req: &ReserveRequest) -> Result<Attachment, ApiError> {
        self.rt.block_on(self.inner.reserve(req))
    }

    /// See [`Client::commit`].
    pub fn commit(&self, key: &AttachmentKey) -> Result<Attachment, ApiError> {
        self.rt.block_on(self.inner.commit(key))
    }

    /// See [`Client::release`].
    pub fn release(&self, key: &AttachmentKey) -> Result<ReleaseResponse, ApiError> {
        self.rt.block_on(self.inner.release(key))
    }

    /// See [`Client::check`].
    pub fn check(&self, key: &AttachmentKey) -> Result<Attachment, ApiError> {
        self.rt.block_on(self.inner.check(key))
    }

    /// See [`Client::status`].
    pub fn status(&self) -> Result<StatusResponse, ApiError> {
        self.rt.block_on(self.inner.status())
    }

    /// See [`Client::gc`].
    pub fn gc(&self, req: &GcRequest) -> Result<GcResponse, ApiError> {
        self.rt.block_on(self.inner.gc(req))
    }

    /// See [`Client::jobs`].
    pub fn jobs(&self) -> Result<Vec<JobSummary>, ApiError> {
        self.rt.block_on(self.inner.jobs())
    }

    /// See [`Client::job`].
    pub fn job(&self, job: &str) -> Result<JobDetail, ApiError> {
        self.rt.block_on(self.inner.job(job))
    }

    /// See [`Client::attachments`].
    pub fn attachments(&self) -> Result<Vec<Attachment>, ApiError> {
        self.rt.block_on(self.inner.attachments())
    }

    /// See [`Client::vfs`].
    pub fn vfs(&self) -> Result<Vec<VfInfo>, ApiError> {
        self.rt.block_on(self.inner.vfs())
    }

    /// See [`Client::gang_reserve`].
    pub fn gang_reserve(&self, req: &GangReserveRequest) -> Result<GangReservation, ApiError> {
        self.rt.block_on(self.inner.gang_reserve(req))
    }

    /// See [`Client::nodes`].
    pub fn nodes(&self) -> Result<Vec<NodeView>, ApiError> {
        self.rt.block_on(self.inner.nodes())
    }

    /// See [`Client::forget_node`].
    pub fn forget_node(&self, req: &ForgetNodeRequest) -> Result<ForgetNodeResponse, ApiError> {
        self.rt.block_on(self.inner.forget_node(req))
    }

    /// See [`Client::hints`].
    pub fn hints(&self, key: &AttachmentKey) -> Result<PodHints, ApiError> {
        self.rt.block_on(self.inner.hints(key))
    }

    /// See [`Client::get_json`].
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.rt.block_on(self.inner.get_json(path))
    }

    /// See [`Client::job_wait`].
    pub fn job_wait(
        &self,
        job: &str,
        ranks: u32,
        timeout: Duration,
    ) -> Result<JobWaitResponse, ApiError> {
        self.rt.block_on(self.inner.job_wait(job, ranks, timeout))
    }

    /// See [`Client::preflight`].
    pub fn preflight(
        &self,
        job: &str,
        req: &PreflightRequest,
    ) -> Result<PreflightReport, ApiError> {
        self.rt.block_on(self.inner.preflight(job, req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_socket_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let c = Client::new(dir.path().join("nope.sock"));
        let e = c.status().await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert_eq!(e.cni_code(), 11);
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        // Accept and hold the connection without answering.
        let hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let c = Client::new(&path)
            .with_timeouts(Duration::from_millis(200), Duration::from_millis(200));
        let e = c.status().await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Timeout);
        hold.abort();
    }

    #[test]
    fn decode_maps_error_bodies_and_garbage() {
        let body = br#"{"code":"device-busy","message":"VF 0000:3b:00.2 owned by c/net1"}"#;
        let e = decode::<StatusResponse>(StatusCode::CONFLICT, body).unwrap_err();
        assert_eq!(e.code, ErrorCode::DeviceBusy);
        let e = decode::<StatusResponse>(StatusCode::BAD_GATEWAY, b"<html>").unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(e.message.contains("502"));
        let ok: ReleaseResponse = decode(StatusCode::OK, br#"{"released":true}"#).unwrap();
        assert!(ok.released);
    }

    #[tokio::test]
    async fn hints_and_get_json_ask_their_paths_and_read_error_bodies() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let hints = PodHints {
            container_id: "c/1".into(),
            attachments: vec!["net1".into()],
            dir: "/run/jobnet/pods/c".into(),
            env: Vec::new(),
            nccl_env: "NCCL_CROSS_NIC=0\n".into(),
            topo_xml: String::new(),
        };
        let answers = [
            (
                "GET /v1/attachments/c%2F1/net1/hints HTTP/1.1\r\n",
                "200 OK",
                serde_json::to_string(&hints).unwrap(),
            ),
            (
                "GET /v1/topology HTTP/1.1\r\n",
                "404 Not Found",
                r#"{"code":"not-found","message":"no topology"}"#.to_owned(),
            ),
        ];
        // A plain thread: the server side needs no runtime of its own.
        let server = std::thread::spawn(move || {
            for (request, status, body) in answers {
                let (mut c, _) = listener.accept().unwrap();
                let mut buf = vec![0u8; 4096];
                let n = c.read(&mut buf).unwrap();
                let got = String::from_utf8_lossy(&buf[..n]).into_owned();
                assert!(got.starts_with(request), "{got}");
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                c.write_all(answer.as_bytes()).unwrap();
            }
        });
        let c = Client::new(&path);
        assert_eq!(
            c.hints(&AttachmentKey::new("c/1", "net1")).await.unwrap(),
            hints
        );
        let e = c
            .get_json::<serde_json::Value>(paths::TOPOLOGY)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert_eq!(e.message, "no topology");
        server.join().unwrap();
    }

    #[test]
    fn blocking_client_reports_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let c = BlockingClient::new(dir.path().join("x.sock")).unwrap();
        let key = AttachmentKey::new("c", "net1");
        assert_eq!(c.release(&key).unwrap_err().code, ErrorCode::Unavailable);
        assert_eq!(c.hints(&key).unwrap_err().code, ErrorCode::Unavailable);
        let topo = c.get_json::<serde_json::Value>(paths::TOPOLOGY);
        assert_eq!(topo.unwrap_err().code, ErrorCode::Unavailable);
    }
}

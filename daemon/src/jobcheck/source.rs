//! What the job checks need from the node's engine and the cluster store,
//! as one trait so the checks can be tested without a kernel or a store.

use std::future::Future;

use jobnet_api::{ApiError, Attachment, AttachmentKey, ErrorCode, JobDetail, Page, PageRequest};
use jobnet_ipam::store::StoreError;
use jobnet_ipam::{IpamError, PreflightId, Store};

use crate::engine::Engine;

/// The engine and store calls behind job wait and preflight.
pub trait JobSource: Send + Sync + 'static {
    /// This node's name.
    fn node_name(&self) -> &str;
    /// The job with its members on every node; `None` while it is not recorded.
    fn job_detail(
        &self,
        job: &str,
    ) -> impl Future<Output = Result<Option<JobDetail>, ApiError>> + Send;
    /// The job's gang world size, when a gang reservation set one.
    fn world_size(
        &self,
        pool: &str,
        job: &str,
    ) -> impl Future<Output = Result<Option<u32>, ApiError>> + Send;
    /// One attachment of this node, as recorded.
    fn attachment(
        &self,
        key: AttachmentKey,
    ) -> impl Future<Output = Result<Attachment, ApiError>> + Send;
    /// One page of this node's attachments.
    fn local_attachments(
        &self,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<Attachment>, ApiError>> + Send;
    /// Nodes whose jobnetd is alive.
    fn alive_nodes(&self) -> impl Future<Output = Result<Vec<String>, ApiError>> + Send;
    /// Posts a preflight request.
    fn post_task(
        &self,
        id: &PreflightId,
        task: Vec<u8>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Open preflight requests (at most `limit`).
    fn tasks(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(PreflightId, Vec<u8>)>, ApiError>> + Send;
    /// Posts this node's result of a preflight.
    fn post_result(
        &self,
        id: &PreflightId,
        result: Vec<u8>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// How many nodes posted a result.
    fn count_results(&self, id: &PreflightId)
        -> impl Future<Output = Result<u64, ApiError>> + Send;
    /// Every posted result, by node.
    fn results(
        &self,
        id: &PreflightId,
    ) -> impl Future<Output = Result<Vec<(String, Vec<u8>)>, ApiError>> + Send;
    /// Removes a request and its results.
    fn drop_task(&self, id: &PreflightId) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// Most results one preflight gathers (one per node).
const MAX_RESULTS: usize = 4096;

fn store_err(e: IpamError) -> ApiError {
    let code = match &e {
        IpamError::Store(StoreError::Unavailable(_)) | IpamError::Contention => {
            ErrorCode::Unavailable
        }
        IpamError::RecordExists(_) => ErrorCode::Conflict,
        _ => ErrorCode::StoreFailure,
    };
    ApiError::new(code, e.to_string())
}

impl<S: Store> JobSource for Engine<S> {
    fn node_name(&self) -> &str {
        self.node()
    }

    async fn job_detail(&self, job: &str) -> Result<Option<JobDetail>, ApiError> {
        match self.job(job.to_owned()).await {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.code == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn world_size(&self, pool: &str, job: &str) -> Result<Option<u32>, ApiError> {
        let j = self.ipam().job(pool, job).await.map_err(store_err)?;
        Ok(j.map(|j| j.world_size).filter(|n| *n > 0))
    }

    async fn attachment(&self, key: AttachmentKey) -> Result<Attachment, ApiError> {
        self.check(key).await
    }

    async fn local_attachments(&self, page: PageRequest) -> Result<Page<Attachment>, ApiError> {
        self.attachments(page).await
    }

    async fn alive_nodes(&self) -> Result<Vec<String>, ApiError> {
        Ok(self
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.alive)
            .map(|n| n.node)
            .collect())
    }

    async fn post_task(&self, id: &PreflightId, task: Vec<u8>) -> Result<(), ApiError> {
        self.ipam().put_preflight(id, task).await.map_err(store_err)
    }

    async fn tasks(&self, limit: usize) -> Result<Vec<(PreflightId, Vec<u8>)>, ApiError> {
        self.ipam().preflights(limit).await.map_err(store_err)
    }

    async fn post_result(&self, id: &PreflightId, result: Vec<u8>) -> Result<(), ApiError> {
        self.ipam()
            .put_preflight_result(id, self.node(), result)
            .await
            .map_err(store_err)
    }

    async fn count_results(&self, id: &PreflightId) -> Result<u64, ApiError> {
        self.ipam()
            .count_preflight_results(id)
            .await
            .map_err(store_err)
    }

    async fn results(&self, id: &PreflightId) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
        self.ipam()
            .preflight_results(id, MAX_RESULTS)
            .await
            .map_err(store_err)
    }

    async fn drop_task(&self, id: &PreflightId) -> Result<(), ApiError> {
        self.ipam().delete_preflight(id).await.map_err(store_err)
    }
}

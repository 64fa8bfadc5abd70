//! The engine as the API server's handler.

use jobnet_api::{self as api, ApiError};
use jobnet_ipam::Store;

use super::Engine;

impl<S: Store> crate::server::ApiHandler for Engine<S> {
    async fn reserve(&self, req: api::ReserveRequest) -> Result<api::Attachment, ApiError> {
        Engine::reserve(self, req).await
    }
    async fn commit(&self, key: api::AttachmentKey) -> Result<api::Attachment, ApiError> {
        Engine::commit(self, key).await
    }
    async fn release(&self, key: api::AttachmentKey) -> Result<api::ReleaseResponse, ApiError> {
        Engine::release(self, key).await
    }
    async fn check(&self, key: api::AttachmentKey) -> Result<api::Attachment, ApiError> {
        Engine::check(self, key).await
    }
    async fn status(&self) -> Result<api::StatusResponse, ApiError> {
        Engine::status(self).await
    }
    async fn gc(&self, req: api::GcRequest) -> Result<api::GcResponse, ApiError> {
        Engine::gc(self, req).await
    }
    async fn jobs(&self, page: api::PageRequest) -> Result<api::Page<api::JobSummary>, ApiError> {
        Engine::jobs(self, page).await
    }
    async fn job(&self, job: String) -> Result<api::JobDetail, ApiError> {
        Engine::job(self, job).await
    }
    async fn attachments(
        &self,
        page: api::PageRequest,
    ) -> Result<api::Page<api::Attachment>, ApiError> {
        Engine::attachments(self, page).await
    }
    async fn vfs(&self) -> Result<Vec<api::VfInfo>, ApiError> {
        Engine::vfs(self).await
    }
    async fn gang_reserve(
        &self,
        req: api::GangReserveRequest,
    ) -> Result<api::GangReservation, ApiError> {
        Engine::gang_reserve(self, req).await
    }
    async fn nodes(&self) -> Result<Vec<api::NodeView>, ApiError> {
        Engine::nodes(self).await
    }
    async fn forget_node(
        &self,
        req: api::ForgetNodeRequest,
    ) -> Result<api::ForgetNodeResponse, ApiError> {
        Engine::forget_node(self, req).await
    }
}

//! jobnetd's API, version 1: request/response types, the error body with its
//! stable codes, the URL paths, and a client over the daemon's Unix socket.
//!
//! ```no_run
//! # async fn f(req: jobnet_api::ReserveRequest) -> Result<(), jobnet_api::ApiError> {
//! let client = jobnet_api::Client::new(jobnet_api::DEFAULT_SOCKET);
//! let attachment = client.reserve(&req).await?;
//! client.commit(&attachment.key()).await?;
//! # Ok(()) }
//! ```

pub mod client;
pub mod error;
pub mod ifnames;
pub mod jobcheck;
pub mod paths;
pub mod types;

pub use client::{BlockingClient, Client, DEFAULT_SOCKET, SOCKET_ENV};
pub use error::{ApiError, ErrorCode};
pub use ifnames::rail_ifname;
pub use jobcheck::*;
pub use types::*;

/// The API version this crate speaks.
pub const API_VERSION: &str = "v1";

//! Job-scoped IPAM for jobnet: every training job gets its own subnet per rail,
//! an isolation ID and rank-ordered addresses, stored durably.
//!
//! # Shape
//! - [`config`]: pools as the daemon's TOML describes them, validated into [`Pool`].
//! - [`Ipam`]: the allocator. All operations are `async fn`s that never block a
//!   tokio worker for long (reads are short local lookups; writes are handed to
//!   the store, which for redb is a dedicated group-commit thread). A caller
//!   outside tokio can drive them with any executor (e.g. `futures::executor::block_on`).
//! - [`store::Store`]: a compare-and-swap key/value store (read with revisions,
//!   conditional write batch). [`store::RedbStore`] is the embedded backend: every
//!   transaction is fsynced before it is acknowledged and concurrent transactions
//!   are batched into one redb commit.
//!
//! # Lifecycle
//! 1. [`Ipam::reserve`] for `(container_id, ifname)`: on the job's first reservation
//!    its subnets (one per rail and address family) and isolation ID are carved;
//!    then the attachment gets its addresses. Idempotent: a repeated reserve with
//!    the same key returns the same attachment.
//! 2. [`Ipam::commit`] makes it permanent; [`Ipam::release`] undoes it. A reservation
//!    not committed within the pool's `reservation_timeout_secs` is released by
//!    [`Ipam::expire`] (the daemon calls it periodically).
//! 3. When a job's last attachment leaves, the job starts draining; after the pool's
//!    `grace_period_secs` [`Ipam::expire`] releases its subnets and isolation ID. A new
//!    reservation during the grace period keeps the job (same subnets, same ID).
//!
//! # Address formula
//! Inside a job subnet the *usable* host offsets are `1 ..= size-2` for IPv4
//! (all offsets for /31 and /32) and `1 ..= size-1` for IPv6. The gateway (policy
//! `first`) is the first usable offset. The *allowed* offsets are the usable ones
//! minus the gateway and the pool's exclusions, in ascending order. Rank `r` gets
//! the `r`-th allowed offset (0-based) in every rail subnet of every family, so with
//! a gateway rank 0 is `.2`, rank 1 is `.3`, and so on. Attachments without a rank
//! get the highest free allowed offset (next-free from the top), never one below the
//! job's gang world size, so they don't collide with rank addresses.

pub mod clock;
pub mod config;
mod engine;
pub mod error;
mod keys;
mod layout;
pub mod model;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{GatewayPolicy, IsolationConfig, IsolationMode, Pool, PoolConfig, Rails};
pub use engine::{Ipam, PoolUsage, PreflightId, BLOCK_SIZE, LOCAL_NODE};
pub use error::{ConfigError, IpamError};
pub use model::{
    Attachment, AttachmentKey, AttachmentState, Family, ForgetReport, Gang, GangRequest, Isolation,
    JobNetwork, NodeInfo, NodeStatus, RailAddresses, RailSelection, RailSubnet, RankAddresses,
    RecordWrite, ReserveRequest, SweepReport,
};
#[cfg(feature = "etcd")]
pub use store::{EtcdOptions, EtcdStore, EtcdTls};
pub use store::{RedbStore, Store};

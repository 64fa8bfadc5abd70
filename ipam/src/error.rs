//! Error types: configuration errors and allocation errors, as values the daemon maps to CNI codes.

use crate::model::{AttachmentKey, Family};
use crate::store::StoreError;

/// A pool configuration that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The pool name is empty, too long or has characters other than `[A-Za-z0-9._-]`.
    #[error("pool name {0:?} is invalid (1-63 characters of A-Z a-z 0-9 . _ -)")]
    BadName(String),
    /// Two pools share a name.
    #[error("pool {0:?} is defined twice")]
    DuplicatePool(String),
    /// The pool lists no CIDR.
    #[error("pool {0:?} has no cidrs")]
    NoCidrs(String),
    /// A CIDR has host bits set.
    #[error("pool {pool:?}: {cidr} has host bits set (did you mean {network}?)")]
    HostBits {
        /// Pool name.
        pool: String,
        /// CIDR as written.
        cidr: String,
        /// The network it probably meant.
        network: String,
    },
    /// Two CIDRs of the pool overlap.
    #[error("pool {pool:?}: cidrs {a} and {b} overlap")]
    Overlap {
        /// Pool name.
        pool: String,
        /// First CIDR.
        a: String,
        /// Second CIDR.
        b: String,
    },
    /// The job subnet prefix does not fit a CIDR of the pool.
    #[error("pool {pool:?}: job subnet /{prefix} does not fit {cidr} (allowed /{min}../{max})")]
    BadPrefix {
        /// Pool name.
        pool: String,
        /// The CIDR.
        cidr: String,
        /// The configured job prefix.
        prefix: u8,
        /// Smallest allowed prefix for this CIDR.
        min: u8,
        /// Largest allowed prefix.
        max: u8,
    },
    /// An isolation ID range is empty or outside what the mode allows.
    #[error("pool {pool:?}: isolation {mode} range {first}-{last} invalid (allowed {min}-{max}, first <= last)")]
    BadIsolationRange {
        /// Pool name.
        pool: String,
        /// Mode name.
        mode: String,
        /// Configured first ID.
        first: u32,
        /// Configured last ID.
        last: u32,
        /// Smallest ID the mode allows.
        min: u32,
        /// Largest ID the mode allows.
        max: u32,
    },
    /// Rails are misconfigured (zero, too many, empty or duplicate names).
    #[error("pool {pool:?}: rails invalid: {reason}")]
    BadRails {
        /// Pool name.
        pool: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why an IPAM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// No pool with this name is configured.
    #[error("unknown pool {0:?}")]
    UnknownPool(String),
    /// The request asked for a rail the pool does not have.
    #[error("pool {pool:?} has no rail {rail}")]
    UnknownRail {
        /// Pool name.
        pool: String,
        /// Requested rail index.
        rail: u16,
    },
    /// A request field is unusable (empty or oversized name, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The pool has no free job subnet left for this family.
    #[error("pool {pool:?} has no free {family} job subnet")]
    PoolExhausted {
        /// Pool name.
        pool: String,
        /// Address family that ran out.
        family: Family,
    },
    /// The pool has no free isolation ID left.
    #[error("pool {0:?} has no free isolation ID")]
    IsolationExhausted(String),
    /// The job's subnet on a rail has no free address left.
    #[error("job {job:?} in pool {pool:?}: {family} subnet of rail {rail} is full")]
    SubnetExhausted {
        /// Pool name.
        pool: String,
        /// Job name.
        job: String,
        /// Rail index.
        rail: u16,
        /// Address family.
        family: Family,
    },
    /// The rank has no address: beyond the subnet or the job's gang world size.
    #[error("rank {rank} is out of range (limit {limit})")]
    RankOutOfRange {
        /// Requested rank.
        rank: u32,
        /// Number of ranks the job can hold.
        limit: u64,
    },
    /// Another attachment, on this node or another, holds this rank's address.
    #[error("rank {rank} address is held by {holder} on node {node:?}")]
    RankInUse {
        /// Requested rank.
        rank: u32,
        /// Current holder (`rank: None` means an address given out next-free).
        holder: AttachmentKey,
        /// The node of the holder.
        node: String,
    },
    /// The attachment key is already reserved for another pool or job.
    #[error("{key} is already reserved for job {job:?} in pool {pool:?}")]
    KeyInUse {
        /// The attachment key.
        key: AttachmentKey,
        /// Pool that holds it.
        pool: String,
        /// Job that holds it.
        job: String,
    },
    /// No attachment with this key.
    #[error("no attachment {0}")]
    NotFound(AttachmentKey),
    /// A record written with `if_absent` already exists.
    #[error("record {0:?} already exists")]
    RecordExists(String),
    /// A gang cannot be placed because an address given out next-free sits in a rank slot.
    #[error("gang of {world_size} for job {job:?}: rank slot {address} is held by a non-rank attachment")]
    GangConflict {
        /// Job name.
        job: String,
        /// Requested world size.
        world_size: u32,
        /// The address in the rank range that is taken.
        address: std::net::IpAddr,
    },
    /// The node's jobnetd is alive: forgetting it would release live pods' state.
    #[error("node {0:?} is alive (its jobnetd holds its liveness lease); stop it first or force")]
    NodeAlive(String),
    /// Too many concurrent conflicting updates; try again later.
    #[error("too much contention, try again")]
    Contention,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored value could not be decoded.
    #[error("corrupt record at {key:?}: {reason}")]
    Corrupt {
        /// Store key.
        key: String,
        /// Decoder message.
        reason: String,
    },
}

//! jobnetd, the per-node jobnet daemon: configuration, VF inventory, the
//! attachment engine on top of jobnet-ipam, the API server, metrics and
//! reconciliation. `jobnetctl` is its command-line client.

pub mod config;
pub mod ctl;
pub mod engine;
pub mod hints;
pub mod hints_handler;
pub mod install;
pub mod inventory;
pub mod isolation;
pub mod jobcheck;
pub mod keylock;
pub mod metrics;
pub mod netns;
pub mod rdma_view;
pub mod run;
pub mod server;
pub mod topology;
pub mod validate;

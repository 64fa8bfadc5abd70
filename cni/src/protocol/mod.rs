//! The CNI protocol: environment, config, results, errors and delegation,
//! independent of what jobnet does to devices.

pub mod args;
pub mod config;
pub mod env;
pub mod error;
pub mod ipam;
pub mod names;
pub mod result;
pub mod values;
pub mod version;

pub use args::CniArgs;
pub use config::NetConf;
pub use env::{Attachment, CniPath, Command, EnvMap, Invocation};
pub use error::{CniError, ErrorCode};
pub use names::{ContainerId, IfName, NetnsPath, NetworkName, PluginName};
pub use result::CniResult;
pub use version::CniVersion;

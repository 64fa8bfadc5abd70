//! Test fixtures for jobnet: the simulated SR-IOV fabric that every
//! network-namespace test, benchmark and the demo build on.

pub mod etcd;
pub mod fabric;
pub mod fake_sysfs;
pub mod fault;
pub mod harness;
pub mod topo_layouts;
pub use harness::skip;

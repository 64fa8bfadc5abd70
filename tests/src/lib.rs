//! Test fixtures for jobnet: the simulated SR-IOV fabric that every
//! network-namespace test, benchmark and the demo build on.

pub mod fabric;
pub mod topo_layouts;

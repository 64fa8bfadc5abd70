//! Fault injection for long randomized streams of CNI operations against a
//! fabric node (`tests/tests/fault_suite.rs`, `scripts/soak.sh`): plugin
//! runs that can be SIGKILLed at any moment, a jobnetd that can be killed
//! and started again on its state, pod network namespaces that die the way
//! the kernel lets them die, the node's fake sysfs kept in step with the
//! kernel after every step, and the audit of what a stream left behind.

pub mod audit;
pub mod jobnetd;
pub mod podns;
pub mod rng;
pub mod run;
pub mod sysfs;

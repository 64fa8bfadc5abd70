//! The harness every binary-level test of the plugin shares (each test file
//! says `mod common;`): running the `jobnet` binary, inside a simulated
//! fabric node when it does device work; network namespaces that are always
//! removed; and the kernel's view of a pod, read with `ip -j`.
#![allow(dead_code)]

pub mod ipam;
pub mod kernel;
pub mod node;
pub mod pod;
pub mod run;

#[allow(unused_imports)]
pub use node::{CniCall, Node, VfSnapshot};
#[allow(unused_imports)]
pub use pod::{unique, Netns};
#[allow(unused_imports)]
pub use run::{jobnet, run_bin, run_cmd, wait_within, Run};

//! The steps of an ADD, named so that logs, errors and fault-injection
//! tests speak of the same things.

use std::fmt;

/// One step of attaching a VF, in the order ADD performs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Save the original state to the attachment cache.
    SaveCache,
    /// Apply PF-side VF settings (VLAN, MAC, spoofchk, ...).
    PfSettings,
    /// Take the netdev down in the host.
    LinkDown,
    /// Drop alternative names that could collide in the pod.
    DropAltnames,
    /// Move the netdev into the pod netns under a temporary name.
    MoveToPod,
    /// Rename it to the requested interface name.
    Rename,
    /// Move the VF's RDMA device into the pod netns (exclusive isolation).
    RdmaMove,
    /// Set the pod-side MAC.
    SetMac,
    /// Set the MTU.
    SetMtu,
    /// Add the addresses.
    Addresses,
    /// Bring the interface up.
    LinkUp,
    /// Add the routes.
    Routes,
    /// Write the device-info file.
    DevInfo,
}

impl Step {
    /// Every step, in order (tests inject a failure at each).
    pub const ALL: [Step; 13] = [
        Step::SaveCache,
        Step::PfSettings,
        Step::LinkDown,
        Step::DropAltnames,
        Step::MoveToPod,
        Step::Rename,
        Step::RdmaMove,
        Step::SetMac,
        Step::SetMtu,
        Step::Addresses,
        Step::LinkUp,
        Step::Routes,
        Step::DevInfo,
    ];
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::SaveCache => "save attachment cache",
            Step::PfSettings => "apply PF-side VF settings",
            Step::LinkDown => "set link down",
            Step::DropAltnames => "drop alternative names",
            Step::MoveToPod => "move into pod netns",
            Step::Rename => "rename in pod netns",
            Step::RdmaMove => "move RDMA device into pod netns",
            Step::SetMac => "set MAC",
            Step::SetMtu => "set MTU",
            Step::Addresses => "add addresses",
            Step::LinkUp => "set link up",
            Step::Routes => "add routes",
            Step::DevInfo => "write device-info file",
        })
    }
}

/// Called before each step; a test returns an error to make the step fail.
pub trait FaultHook: Sync {
    /// `Err` makes `step` fail as if the kernel had refused it.
    fn before(&self, step: Step) -> Result<(), super::AttachError>;

    /// Called with a lock file open but not yet locked: a race test pauses
    /// here to let other operations change the file under it.
    fn before_lock(&self, _path: &std::path::Path) {}
}

/// The production hook: never fails.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFaults;

impl FaultHook for NoFaults {
    fn before(&self, _: Step) -> Result<(), super::AttachError> {
        Ok(())
    }
}

/// Fails exactly at one step (for rollback tests).
#[derive(Debug, Clone, Copy)]
pub struct FailAt(pub Step);

impl FaultHook for FailAt {
    fn before(&self, step: Step) -> Result<(), super::AttachError> {
        if step == self.0 {
            Err(super::AttachError::Injected(step))
        } else {
            Ok(())
        }
    }
}

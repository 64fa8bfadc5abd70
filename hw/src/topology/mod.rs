//! GPU/NIC/PCIe topology from sysfs, NCCL path classes, rails and hints.

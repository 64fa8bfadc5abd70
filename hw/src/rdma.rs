//! RDMA devices found in sysfs (owned by the RDMA work).

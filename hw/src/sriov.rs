//! SR-IOV physical and virtual functions found in sysfs.

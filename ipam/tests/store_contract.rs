//! The store contract, run against the embedded (redb) and the etcd backend.
